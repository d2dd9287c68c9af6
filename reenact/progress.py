"""Rich progress bars: frames done, fps, ETA and faces found for frame work; jobs done and ETA for a batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11


class _FpsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f} fps" if speed else "  ... fps", style="progress.data.speed")


def _bar(enabled: bool, *columns: ProgressColumn) -> Progress:
    """A bar on stderr, drawn only when stderr is a terminal (a log file gets the CLI's summary only)."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *columns,
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=True,  # the CLI prints a summary (or a one-line error) instead
    )


class _Progress:
    """A bar as a context manager: drawn between enter and exit."""

    _progress: Progress

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


class FrameProgress(_Progress):
    """Context manager: ``advance(face_found)`` once per frame. Drawn on stderr when it is a terminal."""

    def __init__(self, description: str, total: int | None, enabled: bool = True) -> None:
        self._progress = _bar(enabled, _FpsColumn(), TimeRemainingColumn(), TextColumn("faces {task.fields[faces]}"))
        self._task = self._progress.add_task(description, total=total, faces=0)
        self.frames = 0
        self.faces = 0

    def advance(self, face_found: bool) -> None:
        self.frames += 1
        self.faces += int(face_found)
        self._progress.update(self._task, advance=1, faces=self.faces)


class JobProgress(_Progress):
    """Context manager: ``advance()`` once per finished job (jobs done of total, ETA), on a terminal only."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self._progress = _bar(enabled, TimeRemainingColumn())
        self._task = self._progress.add_task("batch", total=total)

    def advance(self) -> None:
        self._progress.update(self._task, advance=1)


class LiveStatus(_Progress):
    """Live mode's one-line status (frames out, fps, latency, drops), drawn on stderr when it is a terminal."""

    def __init__(self, enabled: bool = True) -> None:
        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]live[/] {task.fields[text]}"), console=console,
            disable=not (enabled and console.is_terminal), transient=True,
        )
        self._task = self._progress.add_task("live", total=None, text="starting...")

    def update(self, frames: int, fps: float, latency_ms: float, dropped: int) -> None:
        text = f"{frames} frames  {fps:5.1f} fps  latency {latency_ms:4.0f} ms  dropped {dropped}"
        self._progress.update(self._task, text=text)
