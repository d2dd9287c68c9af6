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

import itertools
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reenact.errors import OutputError
from reenact.face.align import FaceAligner
from reenact.face.aus import blendshapes_to_aus
from reenact.face.tracker import FaceObservation, FaceTracker
from reenact.memory import FaceMemory
from reenact.pipeline import AlignStage, FrameState, TrackStage, stream
from reenact.video import Frame, VideoInfo, VideoReader

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
    def record(cls, video: VideoInfo, open_tracker: Callable[[], FaceTracker], folder: Path, crop_size: int = 256,
               memory: FaceMemory | None = None, advance: Callable[[bool], None] | None = None,
               bridge_s: float = BRIDGE_S, segments: int | None = None) -> FaceTrack:
        """Track ``video`` (its probe, made by the caller), write the track under ``folder``, let ``memory`` observe
        each aligned crop (then freeze it), and bridge gaps up to ``bridge_s``.

        MediaPipe keeps one core busy per tracker, so the clip is cut into up to ``segments`` consecutive parts
        (default: one per core, at most ``MAX_SEGMENTS``, none shorter than ``SEGMENT_FRAMES``), each tracked by its
        own tracker (``open_tracker``) side by side. A part whose first face is not where the part before left it
        (another person was chosen afresh) is tracked again following that face, so the track is one person's."""
        path = video.path
        starts = segment_starts(video.frame_count, segments or min(os.cpu_count() or 1, MAX_SEGMENTS))
        file = folder / "track.bin"
        file.touch()
        lock = threading.Lock()

        def counted(found: bool) -> None:
            if advance is not None:
                with lock:
                    advance(found)

        def run(k: int, follow: FaceObservation | None = None) -> _Segment:
            stop = starts[k + 1] if k + 1 < len(starts) else None
            own = None if memory is None or memory.frozen else FaceMemory()
            return _track_segment(path, starts[k], stop, open_tracker, file, crop_size, own, counted, follow)

        with ThreadPoolExecutor(len(starts), thread_name_prefix="reenact-segment") as pool:
            parts = list(pool.map(run, range(len(starts))))
        for k in range(1, len(parts)):
            if parts[k].starts_elsewhere(parts[k - 1]):
                parts[k] = run(k, follow=parts[k - 1].last)
        if memory is not None:
            for part in parts:
                if part.memory is not None:
                    memory.merge(part.memory)
            memory.frozen = True
        found = np.concatenate([part.found for part in parts])
        times = np.concatenate([part.times for part in parts])
        track = cls(file, found, times)
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


SEGMENT_FRAMES = 100  # a first pass's segment is at least this long (a fresh tracker costs a detection)
WARM_FRAMES = 5  # a segment's tracker first follows the face over this many frames before its own (a smooth seam)
MAX_SEGMENTS = 4  # trackers side by side at most: each later one first decodes (unconverted) what comes before it


def segment_starts(frame_count: int | None, cores: int) -> list[int]:
    """The first frame of each segment a first pass tracks side by side: one segment where the count is unknown."""
    if not frame_count:
        return [0]
    n = max(1, min(cores, frame_count // SEGMENT_FRAMES))
    return [round(k * frame_count / n) for k in range(n)]


@dataclass
class _Segment:
    """What one segment's tracker found: per frame whether there was a face and when, its first and last faces
    (to join segments into one person's track), and the memory filled from it."""

    found: np.ndarray
    times: np.ndarray
    first: FaceObservation | None
    last: FaceObservation | None
    memory: FaceMemory | None

    def starts_elsewhere(self, before: _Segment) -> bool:
        """Whether this segment's first face is not the one the segment before ended on: a fresh tracker chose
        another person (by the trackers' own rule for following a face)."""
        if self.first is None or before.last is None or not self.found[0] or not before.found[-1]:
            return False
        return not before.last.reaches(self.first.centre)


def _track_segment(path: Path, start: int, stop: int | None, open_tracker: Callable[[], FaceTracker], file: Path,
                   crop_size: int, memory: FaceMemory | None, advance: Callable[[bool], None],
                   follow: FaceObservation | None) -> _Segment:
    """Track frames [start, stop) of the video (to its end where ``stop`` is None) into their records of ``file``
    (decode and MediaPipe overlapping, as in the one-pass pipeline); ``follow``: a face to keep following."""
    found: list[bool] = []
    times: list[float] = []
    first = last = None
    observe = [] if memory is None else [_Observer(memory)]
    row = np.zeros(1, RECORD)
    warm = 0 if start == 0 or follow is not None else WARM_FRAMES
    with VideoReader(path, first=start - warm) as reader, open_tracker() as tracker, open(file, "r+b") as out:
        if follow is not None:
            tracker.follow(follow)
        frames = reader if stop is None else itertools.takewhile(lambda f: f.index < stop, reader)
        for state in stream(frames, [TrackStage(tracker), AlignStage(FaceAligner(crop_size)), *observe]):
            if state.frame.index < start:  # warming up: the segment before records these
                continue
            face = state.face
            row.fill(0)
            row["found"], row["time"] = face is not None, state.frame.time
            if face is not None:
                row["landmarks"], row["blendshapes"], row["pose"], row["box"] = (
                    face.landmarks, face.blendshapes, face.pose, face.box)
                first = face if not found else first  # the segment's first frame's face (None if it has none)
                last = face
            try:
                os.pwrite(out.fileno(), row.tobytes(), state.frame.index * RECORD.itemsize)
            except OSError as e:  # the scratch folder's disk is full (or the file size limit reached)
                raise OutputError(f"{file.parent.parent}: cannot write the face track to this scratch folder "
                                  f"({e.strerror or e}); free space there or point TMPDIR elsewhere") from e
            found.append(face is not None)
            times.append(state.frame.time)
            advance(face is not None)
    return _Segment(np.array(found, bool), np.array(times, np.float64), first, last, memory)


class _Observer:
    """The first pass's last stage: the memory observes each aligned crop."""

    __name__ = "memory"

    def __init__(self, memory: FaceMemory) -> None:
        self.memory = memory

    def __call__(self, state: FrameState) -> FrameState:
        if state.face is not None and state.crop is not None and state.alignment is not None:
            face = state.face
            self.memory.observe(state.crop, state.alignment.to_crop(face.xy), state.frame.time,
                                blendshapes_to_aus(face.blendshapes), np.array(face.head_pose_degrees()))
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
