"""A rich progress bar for frame work: frames done, fps, ETA and faces found."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class _FpsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} fps" if speed else "  ... fps", style="progress.data.speed")


class FrameProgress:
    """Context manager: ``advance(face_found)`` once per frame. Drawn on stderr when it is a terminal."""

    def __init__(self, description: str, total: int | None, enabled: bool = True) -> None:
        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _FpsColumn(),
            TimeRemainingColumn(),
            TextColumn("faces {task.fields[faces]}"),
            console=console,
            disable=not (enabled and console.is_terminal),  # a log file gets the CLI's summary line only
            transient=True,  # the CLI prints a one-line summary (or a one-line error) instead
        )
        self._task = self._progress.add_task(description, total=total, faces=0)
        self.frames = 0
        self.faces = 0

    def advance(self, face_found: bool) -> None:
        self.frames += 1
        self.faces += int(face_found)
        self._progress.update(self._task, advance=1, faces=self.faces)

    def __enter__(self) -> FrameProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
