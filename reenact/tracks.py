"""A file job's first pass: the chosen face's whole track, kept on disk, so the second pass runs no MediaPipe.

With the whole track known before anything is edited:
- the face memory (``reenact.memory``) is filled from every frame and frozen before the edit starts;
- short gaps (a fast head turn lost the face for a few frames) are bridged: the face's landmarks, blendshapes and
  pose are interpolated across them, so those frames are edited like their neighbours instead of coming out
  unedited between edited ones (with the next one's paint beside the lips);
- where the face is really lost, the edit fades out before and in after (``FaceTrack.fade``), instead of popping.

The track is one fixed-size record per frame in a file (``RECORD``), read through a memory map: memory stays flat
however long the video.
"""

from __future__ import annotations

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
    """The chosen face in every frame of a video (``record``), bridged over short gaps; indexable by frame."""

    def __init__(self, path: Path, frames: int) -> None:
        self.path = path
        self.rows = np.memmap(path, dtype=RECORD, mode="r+", shape=(frames,)) if frames else np.zeros(0, RECORD)
        self._lost_times = self.rows["time"][~self.rows["found"]] if frames else np.zeros(0)

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def record(cls, frames: Iterable[Frame], tracker: FaceTracker, folder: Path, crop_size: int = 256,
               memory: FaceMemory | None = None, advance: Callable[[bool], None] | None = None,
               bridge_s: float = BRIDGE_S) -> FaceTrack:
        """Track ``frames`` (decode and MediaPipe overlapping, as in the one-pass pipeline), write the track under
        ``folder``, let ``memory`` observe each aligned crop (then freeze it), and bridge gaps up to ``bridge_s``."""
        path = folder / "track.bin"
        count = 0
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
                count += 1
                if advance is not None:
                    advance(face is not None)
        if memory is not None:
            memory.frozen = True
        track = cls(path, count)
        track.bridge(bridge_s)
        return track

    def bridge(self, bridge_s: float) -> int:
        """Fill each run of frames without a face that lasts at most ``bridge_s`` and has a face on both sides, by
        linear interpolation of the face between them. Returns the frames filled."""
        rows, found = self.rows, self.rows["found"].copy()
        filled = 0
        i = 0
        while i < len(rows):
            if found[i]:
                i += 1
                continue
            j = i
            while j < len(rows) and not found[j]:
                j += 1
            if i > 0 and j < len(rows) and rows["time"][j] - rows["time"][i - 1] <= bridge_s + 1e-9:
                t0, t1 = rows["time"][i - 1], rows["time"][j]
                for k in range(i, j):
                    w = (rows["time"][k] - t0) / (t1 - t0) if t1 > t0 else 0.5
                    for name in ("landmarks", "blendshapes", "pose", "box"):
                        rows[name][k] = (1 - w) * rows[name][i - 1] + w * rows[name][j]
                    rows["found"][k] = True
                filled += j - i
            i = j
        self._lost_times = rows["time"][~rows["found"]]
        return filled

    def face(self, index: int) -> FaceObservation | None:
        """The face in frame ``index`` (tracked or bridged), or None."""
        if index >= len(self.rows) or not self.rows["found"][index]:
            return None
        row = self.rows[index]
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
