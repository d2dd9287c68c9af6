"""A file job's first pass: the chosen face's whole track, kept on disk, so the second pass runs no MediaPipe.

With the whole track known before anything is edited:
- the face memory (``reenact.memory``) is filled from every frame and frozen before the edit starts;
- short gaps (a fast head turn lost the face for a few frames) are bridged: the face's landmarks, blendshapes and
  pose are interpolated across them, so those frames are edited like their neighbours instead of coming out
  unedited between edited ones (with the next one's paint beside the lips);
- where the face is really lost, the edit fades out before and in after (``FaceTrack.fade``), instead of popping.

The track is one fixed-size record per frame in a file (``RECORD``, about 6 KB), read back a frame at a time: memory
stays flat however long the video.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from reenact.face.align import FaceAligner
from reenact.face.aus import blendshapes_to_aus
from reenact.face.tracker import FaceObservation, FaceTracker
from reenact.memory import FaceMemory
from reenact.pipeline import AlignStage, FrameState, TrackStage, stream
from reenact.video import Frame

RECORD = np.dtype([
    ("found", "?"), ("time", "f8"), ("landmarks", "f4", (478, 3)), ("blendshapes", "f4", (52,)), ("pose", "f4", (4, 4)),
    ("box", "f4", (4,)),
])  # fmt: skip
BRIDGE_S = 0.5  # a gap this short (seconds) is bridged; a longer one is a real loss
FADE_S = 0.3  # the edit fades out and in over this long around a real loss


class FaceTrack:
    """The chosen face in every frame of a video (``record``), bridged over short gaps; indexable by frame. Only
    each frame's time and whether it has a face stay in memory (9 bytes a frame); a face is read from the file when
    asked for, so memory stays flat however long the video."""

    def __init__(self, path: Path, found: np.ndarray, times: np.ndarray) -> None:
        self.path = path
        self.found = found
        self.times = times
        self._file = open(path, "r+b")  # noqa: SIM115 (kept open for the second pass; closed by ``close``)
        self._lost_times = times[~found]

    def __len__(self) -> int:
        return len(self.found)

    def close(self) -> None:
        self._file.close()

    def _row(self, index: int) -> np.ndarray:
        return np.frombuffer(os.pread(self._file.fileno(), RECORD.itemsize, index * RECORD.itemsize), RECORD)[0]

    def _write(self, index: int, row: np.ndarray) -> None:
        os.pwrite(self._file.fileno(), row.tobytes(), index * RECORD.itemsize)

    @classmethod
    def record(cls, frames: Iterable[Frame], tracker: FaceTracker, folder: Path, crop_size: int = 256,
               memory: FaceMemory | None = None, advance: Callable[[bool], None] | None = None,
               bridge_s: float = BRIDGE_S) -> FaceTrack:
        """Track ``frames`` (decode and MediaPipe overlapping, as in the one-pass pipeline), write the track under
        ``folder``, let ``memory`` observe each aligned crop (then freeze it), and bridge gaps up to ``bridge_s``."""
        path = folder / "track.bin"
        found: list[bool] = []
        times: list[float] = []
        observe = None if memory is None else _Observer(memory)
        stages = [TrackStage(tracker), AlignStage(FaceAligner(crop_size))] + ([observe] if observe else [])
        with open(path, "wb") as out:
            row = np.zeros(1, RECORD)
            for state in stream(frames, stages):
                face = state.face
                row["found"], row["time"] = face is not None, state.frame.time
                if face is not None:
                    row["landmarks"], row["blendshapes"], row["pose"], row["box"] = (
                        face.landmarks, face.blendshapes, face.pose, face.box)
                out.write(row.tobytes())
                found.append(face is not None)
                times.append(state.frame.time)
                if advance is not None:
                    advance(face is not None)
        if memory is not None:
            memory.frozen = True
        track = cls(path, np.array(found, bool), np.array(times, np.float64))
        track.bridge(bridge_s)
        return track

    def bridge(self, bridge_s: float) -> int:
        """Fill each run of frames without a face that lasts at most ``bridge_s`` and has a face on both sides, by
        linear interpolation of the face between them. Returns the frames filled."""
        found, times = self.found, self.times
        filled = 0
        i = 0
        while i < len(found):
            if found[i]:
                i += 1
                continue
            j = i
            while j < len(found) and not found[j]:
                j += 1
            if i > 0 and j < len(found) and times[j] - times[i - 1] <= bridge_s + 1e-9:
                before, after = self._row(i - 1), self._row(j)
                for k in range(i, j):
                    w = (times[k] - times[i - 1]) / (times[j] - times[i - 1]) if times[j] > times[i - 1] else 0.5
                    row = before.copy()
                    row["time"] = times[k]
                    for name in ("landmarks", "blendshapes", "pose", "box"):
                        row[name] = (1 - w) * before[name] + w * after[name]
                    self._write(k, row)
                found[i:j] = True
                filled += j - i
            i = j
        self._lost_times = times[~found]
        return filled

    def face(self, index: int) -> FaceObservation | None:
        """The face in frame ``index`` (tracked or bridged), or None."""
        if index >= len(self.found) or not self.found[index]:
            return None
        row = self._row(index)
        return FaceObservation(np.array(row["landmarks"]), np.array(row["blendshapes"]), np.array(row["pose"]),
                               tuple(float(v) for v in row["box"]))

    def fade(self, t: float) -> float:
        """How much of an edit applies at time t: 1 away from real losses, falling to 0 over ``FADE_S`` towards
        one."""
        lost = self._lost_times  # in time order
        if not len(lost):
            return 1.0
        k = int(np.searchsorted(lost, t))
        nearest = min(abs(lost[max(k - 1, 0)] - t), abs(lost[min(k, len(lost) - 1)] - t))
        return float(np.clip(nearest / FADE_S, 0.0, 1.0))


class _Observer:
    """The first pass's last stage: the memory observes each aligned crop."""

    __name__ = "memory"

    def __init__(self, memory: FaceMemory) -> None:
        self.memory = memory

    def __call__(self, state: FrameState) -> FrameState:
        if state.face is not None and state.crop is not None and state.alignment is not None:
            self.memory.observe(state.crop, state.alignment.to_crop(state.face.xy), state.frame.time)
        state.crop = None  # not kept past this stage
        return state


class CachedTrackStage:
    """The second pass's tracking: the first pass's face for each frame, no MediaPipe."""

    __name__ = "track"

    def __init__(self, track: FaceTrack) -> None:
        self.track = track

    def __call__(self, frame: Frame) -> FrameState:
        face = self.track.face(frame.index)
        return FrameState(frame, face, None if face is None else blendshapes_to_aus(face.blendshapes))


def scratch_folder() -> tempfile.TemporaryDirectory[str]:
    """Where a job's track file lives while it runs (removed after)."""
    return tempfile.TemporaryDirectory(prefix="reenact-track-")
