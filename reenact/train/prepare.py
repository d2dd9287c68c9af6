"""Turn face videos into a compact training set: aligned face crops plus per-frame labels.

Layout of the output folder::

    index.json          {"crop_size", "stride", "au_names", "clips": [{"id", "source", "identity", "frames",
                         "frames_total", "fps"}, ...]}: frames kept (= npz rows) and frames decoded, per clip
    clips/<id>.mp4      the kept aligned crops (crop_size square, upright), H.264 crf 12 yuv444p, source pts kept
    clips/<id>.npz      one row per crop, same order: frame, time, aus, blendshapes, landmarks, pose, openface
                        (see CLIP_ARRAYS), and ``meta``: a JSON string with id, source, identity, frames, frames_total,
                        fps, crop_size, stride

Crops come from the same tracker, smoothed aligner and threaded pipeline as inference. A clip is complete
when both its files exist; the npz is written last (atomically), so a clip with an npz is done and a rerun
skips it. index.json is rebuilt at the end from every complete clip in the folder.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import multiprocessing
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reenact.errors import NoFaceError, ReenactError
from reenact.face.align import FaceAligner
from reenact.face.aus import AU_NAMES
from reenact.face.tracker import FaceTracker
from reenact.files import StrPath, atomic_output
from reenact.pipeline import AlignStage, FrameState, TrackStage, stream
from reenact.progress import FrameProgress
from reenact.train.dataset import CLIP_ARRAYS, PIX_FMT, clip_files, write_clip_arrays
from reenact.video import VideoReader, VideoWriter, probe

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi"})
CRF = 12


@dataclass(frozen=True)
class ClipSource:
    """A video to prepare and its clip id (relative path without extension, '/'-separated)."""

    id: str
    path: Path


@dataclass(frozen=True)
class ClipFailure:
    id: str
    path: Path
    reason: str


@dataclass(frozen=True)
class PrepareReport:
    """What one prepare_dataset run did. ``frames_*`` count the clips done in this run."""

    out_dir: Path
    done: tuple[str, ...]
    skipped: tuple[str, ...]  # already complete from an earlier run
    failed: tuple[ClipFailure, ...]
    frames_read: int
    frames_kept: int
    seconds: float


def find_clips(
    videos: Sequence[StrPath], exclude: StrPath | None = None, extensions: frozenset[str] = VIDEO_EXTENSIONS
) -> list[ClipSource]:
    """Video files (by ``extensions``) named or found (recursively) in folders; ids relative to the folder given,
    else the stem.

    Hidden files are left out (they are other tools' temporaries), and so is anything under ``exclude``
    (the output folder, should it lie inside an input folder).
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    clips = []
    for given in map(Path, videos):
        if not given.is_dir():
            clips.append(ClipSource(given.stem, given))
            continue
        for path in sorted(given.rglob("*")):
            rel = path.relative_to(given)
            hidden = any(part.startswith(".") for part in rel.parts)
            if hidden or path.suffix.lower() not in extensions or not path.is_file():
                continue
            if skip is not None and path.resolve().is_relative_to(skip):
                continue
            clips.append(ClipSource(rel.with_suffix("").as_posix(), path))
    return clips


@dataclass(frozen=True)
class ManifestRow:
    name: str  # ``file`` without its extension, e.g. grid_s1/bbaf2n: the name of its OpenFace labels too
    identity: str


def read_manifest(path: StrPath) -> dict[str, ManifestRow]:
    """Rows of a CSV with ``file`` (relative to the CSV's folder) and ``identity``, by name and by resolved path."""
    path = Path(path)
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            file = Path(row["file"])
            entry = ManifestRow(file.with_suffix("").as_posix(), row["identity"])
            rows[entry.name] = rows[str((path.parent / file).resolve())] = entry
    return rows


def _manifest_row(manifest: dict[str, ManifestRow], clip_id: str, source: Path) -> ManifestRow | None:
    # By file first: then a clip prepared from a subfolder (ids relative to it) still finds its row.
    return manifest.get(str(source.resolve())) or manifest.get(clip_id)


def read_openface(path: StrPath, frames: np.ndarray) -> np.ndarray:
    """OpenFace AU intensities (len(frames), 17) for 0-based source frames; NaN where it failed or has no row."""
    labels: dict[int, list[float]] = {}
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            row = {k.strip(): v for k, v in row.items()}  # some OpenFace versions pad the header with spaces
            if float(row["success"]) != 0:
                labels[int(row["frame"]) - 1] = [float(row[f"{au}_r"]) for au in AU_NAMES]  # frames are 1-based
    missing = [np.nan] * len(AU_NAMES)
    return np.array([labels.get(int(i), missing) for i in frames], dtype=np.float32).reshape(-1, len(AU_NAMES))


class _Rows:
    """The npz columns of the kept frames, gathered as they stream by."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in CLIP_ARRAYS if name != "openface"}

    def add(self, state: FrameState) -> None:
        face, alignment = state.face, state.alignment
        assert face is not None and alignment is not None and state.aus is not None
        values = {
            "frame": state.frame.index,
            "time": state.frame.time,
            "aus": state.aus,
            "blendshapes": face.blendshapes,
            "landmarks": alignment.to_crop(face.xy),
            "pose": face.head_pose_degrees(),
        }
        for name, value in values.items():
            self.columns[name].append(value)

    def arrays(self) -> dict[str, np.ndarray]:
        dtypes = {"frame": np.int64, "time": np.float64, "blendshapes": np.float16}
        return {name: np.asarray(rows, dtype=dtypes.get(name, np.float32)) for name, rows in self.columns.items()}


@dataclass(frozen=True)
class _Job:
    clip: ClipSource
    clips_dir: Path
    crop_size: int
    stride: int
    labels: Path | None
    identity: str
    frame_count: int  # as the container says (0 if unknown): for the progress bar
    face_model: Path | None


@dataclass(frozen=True)
class _Result:
    job: _Job
    frames_read: int = 0
    faces: int = 0
    kept: int = 0
    error: str | None = None


def _prepare_clip(job: _Job) -> _Result:
    """Track, align and write one clip's mp4 then npz; raises on a bad clip and leaves nothing behind."""
    clip = job.clip
    mp4, npz = clip_files(job.clips_dir, clip.id)
    mp4.parent.mkdir(parents=True, exist_ok=True)
    info = probe(clip.path)
    like = dataclasses.replace(info, width=job.crop_size, height=job.crop_size, rotation=0)
    rows, frames_read, faces = _Rows(), 0, 0
    with ExitStack() as stack:
        writer = stack.enter_context(VideoWriter(mp4, like, crf=CRF, pix_fmt=PIX_FMT))
        reader = stack.enter_context(VideoReader(clip.path))
        tracker = stack.enter_context(FaceTracker(job.face_model))  # a fresh one: no tracking state across clips
        # Every frame is tracked and aligned, so the smoothed crops are exactly those inference would see.
        for state in stream(reader, [TrackStage(tracker), AlignStage(FaceAligner(job.crop_size))]):
            frames_read += 1
            if state.face is None or state.crop is None:
                continue
            faces += 1
            if state.frame.index % job.stride == 0:
                writer.write(state.frame.replace(image=state.crop))
                rows.add(state)
        kept = len(rows.columns["frame"])
        if not kept:  # raised inside the writer's context, so no mp4 is left either
            raise NoFaceError(f"no face in any kept frame of the {frames_read} frames")
    arrays = rows.arrays()
    labels = job.labels
    if labels is not None and labels.is_file():
        arrays["openface"] = read_openface(labels, arrays["frame"])
    else:
        arrays["openface"] = np.full((kept, len(AU_NAMES)), np.nan, np.float32)
    meta = {
        "id": clip.id, "source": str(clip.path.absolute()), "identity": job.identity, "frames": kept,
        "frames_total": frames_read, "fps": float(info.fps) if info.fps else None, "crop_size": job.crop_size,
        "stride": job.stride,
    }  # fmt: skip
    write_clip_arrays(npz, meta, arrays)
    return _Result(job, frames_read, faces, kept)


def _run_job(job: _Job) -> _Result:
    """_prepare_clip, with a bad clip turned into a result: one clip must not stop a long run."""
    try:
        return _prepare_clip(job)
    except ReenactError as e:
        return _Result(job, error=str(e))
    except Exception as e:  # a bug or an odd file: reported with its type, the run goes on
        return _Result(job, error=f"{type(e).__name__}: {e}")


def _run_jobs(jobs: list[_Job], workers: int) -> Iterator[_Result]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_run_job, jobs)
        return
    # spawn: MediaPipe is not fork-safe once initialised, and each worker builds its own trackers anyway.
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(_run_job, jobs)


def _complete_clips(clips_dir: Path) -> dict[str, dict[str, Any]]:
    """Meta of every complete clip (npz and mp4 present) under clips_dir, by id."""
    found = {}
    for npz in sorted(clips_dir.rglob("*.npz")):
        clip_id = npz.relative_to(clips_dir).as_posix().removesuffix(".npz")
        if npz.name.startswith(".") or not clip_files(clips_dir, clip_id)[0].is_file():
            continue  # a temporary, or an mp4 lost since: not complete
        with np.load(npz) as data:
            found[clip_id] = json.loads(str(data["meta"]))
    return found


def _write_index(
    out_dir: Path, crop_size: int, stride: int, clips: dict[str, dict[str, Any]], manifest: dict[str, ManifestRow]
) -> None:
    entries = []
    for clip_id, meta in sorted(clips.items()):
        # The manifest given now wins over the identity stored at preparation (it may have been fixed since).
        row = _manifest_row(manifest, clip_id, Path(meta["source"]))
        entries.append({
            "id": clip_id, "source": meta["source"], "identity": row.identity if row else meta["identity"],
            "frames": meta["frames"], "frames_total": meta["frames_total"], "fps": meta["fps"],
        })  # fmt: skip
    index = {"crop_size": crop_size, "stride": stride, "au_names": list(AU_NAMES), "clips": entries}
    with atomic_output(out_dir / "index.json") as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n")


class _ClipProgress(FrameProgress):
    """FrameProgress advanced a whole clip at a time (results come back per clip), clips done in its label."""

    def __init__(self, clips: int, frames: int | None, enabled: bool) -> None:
        super().__init__(f"prepare 0/{clips} clips", frames, enabled)
        self._clips, self._done = clips, 0

    def clip_done(self, frames: int, faces: int) -> None:
        for i in range(frames):
            self.advance(i < faces)
        self._done += 1
        self._progress.update(self._task, description=f"prepare {self._done}/{self._clips} clips")


def _plan(
    videos: Sequence[StrPath], out: Path, existing: dict[str, dict[str, Any]], rows: dict[str, ManifestRow],
    labels_dir: StrPath | None, crop_size: int, stride: int, face_model: StrPath | None,
) -> tuple[list[_Job], list[str], list[ClipFailure]]:
    """Jobs (longest clip first), ids already complete, and clips that fail before any work."""
    jobs: list[tuple[int, _Job]] = []
    skipped: list[str] = []
    failed: list[ClipFailure] = []
    seen: dict[str, Path] = {}
    model = Path(face_model) if face_model is not None else None
    for clip in find_clips(videos, exclude=out):
        if clip.id in seen:
            failed.append(ClipFailure(clip.id, clip.path, f"same clip id as {seen[clip.id]}"))
            continue
        seen[clip.id] = clip.path
        if clip.id in existing:
            skipped.append(clip.id)
            continue
        try:
            count = probe(clip.path).frame_count or 0  # unreadable files fail here, before a worker is spent on them
        except ReenactError as e:
            failed.append(ClipFailure(clip.id, clip.path, str(e)))
            continue
        row = _manifest_row(rows, clip.id, clip.path)
        name, identity = (row.name, row.identity) if row else (clip.id, clip.id.split("/")[0])
        labels = Path(labels_dir) / f"{name}.csv.gz" if labels_dir is not None else None
        jobs.append((count, _Job(clip, out / "clips", crop_size, stride, labels, identity, count, model)))
    # Longest first, so that no worker is left alone with a long clip at the end.
    return [job for _, job in sorted(jobs, key=lambda j: -j[0])], skipped, failed


def prepare_dataset(
    videos: Sequence[StrPath],
    out_dir: StrPath,
    crop_size: int = 128,
    stride: int = 1,
    labels_dir: StrPath | None = None,
    manifest: StrPath | None = None,
    workers: int = 1,
    progress: bool = True,
    face_model: StrPath | None = None,
) -> PrepareReport:
    """Prepare every video in ``videos`` (files or folders) into ``out_dir``; see the module docstring.

    Keeps every frame whose index is a multiple of ``stride`` and that has a face. ``manifest`` (CSV with
    ``file``, ``identity``) is matched by file, else by clip id: it gives the identity (else the id's first
    folder, or the stem) and the name of the OpenFace labels, ``labels_dir/<name>.csv.gz`` (else the clip id),
    used when present. Complete clips are skipped; a bad clip is reported (a warning line on stderr when
    ``progress``) and the run goes on. ``workers`` > 1 prepares clips in that many processes.
    Raises ValueError if ``out_dir`` holds clips made with another crop size or stride.
    """
    started = time.perf_counter()
    FaceAligner(crop_size)  # validates crop_size before any work
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    out = Path(out_dir)
    existing = _complete_clips(out / "clips")
    for meta in existing.values():
        if (meta["crop_size"], meta["stride"]) != (crop_size, stride):
            raise ValueError(
                f"{out} holds clips of crop size {meta['crop_size']}, stride {meta['stride']}; "
                f"use another folder for crop size {crop_size}, stride {stride}"
            )
    rows = read_manifest(manifest) if manifest is not None else {}
    jobs, skipped, failed = _plan(videos, out, existing, rows, labels_dir, crop_size, stride, face_model)
    for failure in failed:
        _warn(failure, progress)
    done: list[str] = []
    frames_read = frames_kept = 0
    counts = [job.frame_count for job in jobs]
    with _ClipProgress(len(jobs), None if 0 in counts else sum(counts), progress) as bar:
        for result in _run_jobs(jobs, workers):
            # A failed clip still moves the bar by the frames it was expected to have.
            bar.clip_done(result.frames_read or result.job.frame_count, result.faces)
            if result.error is not None:
                failed.append(ClipFailure(result.job.clip.id, result.job.clip.path, result.error))
                _warn(failed[-1], progress)
                continue
            done.append(result.job.clip.id)
            frames_read += result.frames_read
            frames_kept += result.kept
    complete = _complete_clips(out / "clips")
    if not complete:  # an empty dataset would only fail later, in train or eval, further from the cause
        why = f"{len(failed)} failed; {failed[0].id}: {failed[0].reason}" if failed else "no video found in what was given"
        raise ReenactError(f"{out}: no clip was prepared ({why})")
    _write_index(out, crop_size, stride, complete, rows)
    return PrepareReport(
        out, tuple(sorted(done)), tuple(skipped), tuple(failed), frames_read, frames_kept, time.perf_counter() - started
    )


def _warn(failure: ClipFailure, enabled: bool) -> None:
    if enabled:
        print(f"reenact: warning: skipped {failure.id}: {failure.reason}", file=sys.stderr, flush=True)
