"""One opened clip in the studio: tracked once, its frames kept, previews of one frame and the whole render.

Nothing here imports Gradio: the page (``reenact.studio.app``) calls these, and so do the benchmark and tests.

Opening a clip tracks it once with the first pass that ``reenact edit`` runs (``reenact.tracks.FaceTrack``: the
face in every frame, on disk, and the face memory filled from it), and decodes its frames once into a scratch file.
A preview then costs one frame's alignment, one generator call and one paste-back, with no MediaPipe and no
decoding; a render runs ``reenact.api.edit_video`` with that track, so it tracks nothing again either.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from reenact.api import EncodeOptions, GeneratorOptions, PathLike, TrackingOptions, edit_video, pick_device
from reenact.errors import InputError, NoFaceError, ReenactError
from reenact.face.align import FaceAligner, crop_face
from reenact.face.aus import AU_NAMES, blendshapes_to_aus
from reenact.face.tracker import FaceObservation, FaceTracker, smallest_face
from reenact.memory import FaceMemory
from reenact.pipeline import EditPasteStage, FrameState
from reenact.tracks import FaceTrack
from reenact.video import Frame, VideoReader, probe

MAX_SECONDS = 60.0  # the longest clip the studio opens (its frames are kept on disk while the page is open)
MAX_MEGABYTES = 200  # the largest upload the page takes (Gradio refuses larger files before they arrive)


def check_clip(path: PathLike, what: str = "clips"):
    """The clip's VideoInfo; InputError for what the studio does not open (not a video, longer than MAX_SECONDS)."""
    info = probe(path)
    if info.duration is not None and info.duration > MAX_SECONDS:
        raise InputError(f"{path}: {info.duration:.0f} s long; the studio opens {what} up to {MAX_SECONDS:.0f} s "
                         f"(the command line takes longer ones)")
    return info


class RenderCancelled(ReenactError):
    """The render was cancelled from the page; no output was written."""


@cache
def loaded_generator(model: PathLike | None, texture_strength: float | None, device: str):
    """The generator's weights, loaded once per model and texture strength for the whole server."""
    return GeneratorOptions(model=model, texture_strength=texture_strength).load(device)


@dataclass(frozen=True)
class Preview:
    """A frame as it is (with the tracked face drawn on when asked) and as the edit makes it."""

    before: np.ndarray  # (H, W, 3) uint8 RGB
    after: np.ndarray
    face: bool  # whether the frame has a face (no face: ``after`` is ``before``)
    seconds: float  # the edit's time, alignment to paste-back


class StudioClip:
    """A video or image opened in the studio: its track, its frames and the edits previewed and rendered on it."""

    def __init__(self, path: PathLike, tracking: TrackingOptions = TrackingOptions(),
                 progress: Callable[[int, int | None], None] | None = None) -> None:
        """Probe, check the limits, track the chosen face once and decode every frame; ``progress(done, total)`` is
        called as frames are tracked. Raises InputError (not a video, too long) or NoFaceError (no face at all)."""
        self.path = Path(path)
        self.info = check_clip(self.path)
        self.tracking = tracking
        self.folder = Path(tempfile.mkdtemp(prefix="reenact-studio-"))
        _OPEN.add(self)
        try:
            self._open(progress)
        except BaseException:
            self.close()
            raise

    def _open(self, progress: Callable[[int, int | None], None] | None) -> None:
        total = self.info.frame_count
        done = [0]

        def advance(found: bool) -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

        self.memory = FaceMemory()
        self.track = FaceTrack.record(self.info, lambda: FaceTracker(self.tracking.face_model, self.tracking.face),
                                      self.folder, self.tracking.crop_size, self.memory, advance)
        if not self.track.found.any():
            looked = f"looked for faces down to {smallest_face(self.info.width, self.info.height)} px wide"
            what = "the image" if self.info.is_image else f"any of the {len(self.track)} frames of"
            raise NoFaceError(f"no face found in {what} {self.path.name} ({looked})")
        count = len(self.track)
        shape = (count, self.info.height, self.info.width, 3)
        self.frames = np.lib.format.open_memmap(self.folder / "frames.npy", "w+", np.uint8, shape)
        self.stamps: list[tuple[int | None, object]] = []
        with VideoReader(self.path) as reader:
            for frame in reader:
                if frame.index >= count:
                    break
                self.frames[frame.index] = frame.image
                self.stamps.append((frame.pts, frame.time_base))
        self.aus = np.full((count, len(AU_NAMES)), np.nan, np.float32)
        for i in np.flatnonzero(self.track.found):
            face = self.track.face(int(i))
            self.aus[i] = blendshapes_to_aus(face.blendshapes)

    def close(self) -> None:
        """Remove the clip's scratch files (track, frames, renders not yet downloaded)."""
        track = getattr(self, "track", None)
        if track is not None:
            track.close()
        self.frames = None
        shutil.rmtree(self.folder, ignore_errors=True)
        _OPEN.discard(self)

    def __len__(self) -> int:
        return len(self.track)

    @property
    def times(self) -> np.ndarray:
        return self.track.times

    def frame(self, index: int) -> Frame:
        index = int(np.clip(index, 0, len(self) - 1))
        pts, time_base = self.stamps[index]
        return Frame(index, pts, time_base, np.array(self.frames[index]))

    def face(self, index: int) -> FaceObservation | None:
        return self.track.face(int(np.clip(index, 0, len(self) - 1)))

    def tracked(self, index: int) -> np.ndarray:
        """The frame with the tracked face's landmarks and crop outline drawn on: what reenact sees."""
        from reenact.overlay import draw_crop_outline, draw_landmarks

        frame = self.frame(index)
        image = frame.image.copy()
        face = self.face(index)
        if face is not None:
            alignment = FaceAligner(self.tracking.crop_size, smooth=False)(face.xy, frame.time)
            draw_landmarks(image, face.xy)
            draw_crop_outline(image, alignment.corners_in_frame())
        return image

    def plot_aus(self, path: PathLike) -> None:
        """The clip's AU curves, as ``reenact au --plot`` draws them."""
        from reenact.plot import plot_au_curves

        plot_au_curves(self.times, self.aus, path, title=self.path.name)

    def editor(self, target: Callable[[np.ndarray, float], np.ndarray], generator: GeneratorOptions,
               smooth: bool, threads: int | None = 1, **kwargs):
        """A GeneratorEditor on this clip's face memory and fade, with the server's loaded weights."""
        from reenact.editing import GeneratorEditor

        device = pick_device(generator.device)
        model = loaded_generator(generator.model, generator.texture_strength, device)
        moves = kwargs.pop("landmark_moves", None)
        return GeneratorEditor(model, target, smooth, device, threads=threads,
                               landmark_moves=None if moves is None else moves(model),
                               memory=self.memory if generator.memory else None, fade=self.track.fade, **kwargs)

    def preview(self, index: int, target: Callable[[np.ndarray, float], np.ndarray],
                generator: GeneratorOptions = GeneratorOptions(), at: float | None = None, **kwargs) -> Preview:
        """Frame ``index`` edited toward ``target`` as the render edits it (one frame, no smoothing over time).
        ``at``: the time in seconds to edit it at, in place of the frame's own (a still image, which a transfer
        animates along the driving clip's timeline). ``kwargs``: the editor's (``asked``, ``head_turn``,
        ``landmark_moves`` as a factory of the loaded model)."""
        frame = self.frame(index)
        if at is not None:
            frame = Frame(frame.index, round(at / float(frame.time_base)), frame.time_base, frame.image)
        face = self.face(index)
        if face is None:
            return Preview(frame.image, frame.image, False, 0.0)
        started = time.perf_counter()
        alignment = FaceAligner(self.tracking.crop_size, smooth=False)(face.xy, frame.time)
        state = FrameState(frame, face, blendshapes_to_aus(face.blendshapes), alignment,
                           crop_face(frame.image, alignment))
        editor = self.editor(target, generator, smooth=False, threads=1, **kwargs)  # 1: see GeneratorEditor
        edited = EditPasteStage(editor)(state)
        return Preview(frame.image, edited.frame.image, True, time.perf_counter() - started)

    def render(self, output: PathLike, target: Callable[[np.ndarray, float], np.ndarray],
               generator: GeneratorOptions = GeneratorOptions(), encode: EncodeOptions = EncodeOptions(),
               progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
               **kwargs):
        """The whole clip edited toward ``target`` into ``output`` (audio kept, written atomically), with this
        clip's track: ``reenact.api.edit_video``. ``progress(done, total)`` after each frame; ``cancel`` set:
        RenderCancelled, and nothing is written."""
        editor = self.editor(target, generator, smooth=generator.smooth, **kwargs)
        counted = _CountedTrack(self.track, progress, cancel)
        return edit_video(self.path, output, editor, self.tracking, encode, False, counted)


_OPEN: weakref.WeakSet[StudioClip] = weakref.WeakSet()


def close_all() -> None:
    """Close every clip still open (the server is stopping): their scratch files go."""
    for clip in list(_OPEN):
        clip.close()


class _CountedTrack:
    """The clip's track as the render's second pass reads it (one ``face`` call per frame, in order), counting the
    frames for the progress bar and stopping the render when cancelled."""

    def __init__(self, track: FaceTrack, progress: Callable[[int, int], None] | None,
                 cancel: threading.Event | None) -> None:
        self.track = track
        self.progress = progress
        self.cancel = cancel

    def face(self, index: int) -> FaceObservation | None:
        if self.cancel is not None and self.cancel.is_set():
            raise RenderCancelled("render cancelled; no output written")
        if self.progress is not None:
            self.progress(index + 1, len(self.track))
        return self.track.face(index)

    def __getattr__(self, name: str):
        return getattr(self.track, name)


def copy_name(path: PathLike, suffix: str) -> str:
    """``talk.mp4`` -> ``talk_edited.mp4``: the file name a render is offered under."""
    path = Path(path)
    return f"{path.stem}_{suffix}{path.suffix.lower()}"


__all__ = ["MAX_MEGABYTES", "MAX_SECONDS", "Preview", "RenderCancelled", "StudioClip", "check_clip", "copy_name"]
