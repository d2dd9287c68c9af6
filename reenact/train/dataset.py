"""A prepared dataset (``reenact prepare``'s folder, layout in ``reenact.train.prepare``): loading it, and packing a
smaller copy of it to carry to another machine.

Loading needs neither MediaPipe nor PyAV (crops decode with PyAV where it is installed, else with OpenCV), so a
GPU machine with only torch and OpenCV can train from a packed copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reenact.files import StrPath, atomic_output

# The npz arrays, one row per kept frame: name -> what a row holds.
CLIP_ARRAYS: dict[str, str] = {
    "frame": "int64 source frame index (0-based, decode order)",
    "time": "float64 presentation time in seconds",
    "aus": "float32 (17,) our AU intensities from MediaPipe blendshapes, AU_NAMES order",
    "blendshapes": "float16 (52,) MediaPipe blendshapes",
    "landmarks": "float32 (478, 2) MediaPipe landmarks in crop pixels",
    "pose": "float32 (3,) head pitch, yaw, roll in degrees",
    "openface": "float32 (17,) OpenFace AU intensities (AU_NAMES order), NaN where unlabelled",
}


# Crops are stored 4:4:4: at 128 px, 4:2:0 chroma costs 5 dB on the GRID clips (36.4 vs 41.3 dB PSNR) for the same
# file size.
PIX_FMT = "yuv444p"


def clip_files(clips_dir: Path, clip_id: str) -> tuple[Path, Path]:
    base = clips_dir / clip_id
    return base.with_name(base.name + ".mp4"), base.with_name(base.name + ".npz")  # ids may contain dots


@dataclass(frozen=True)
class PreparedClip:
    """One prepared clip: crops (N, S, S, 3) uint8 and the CLIP_ARRAYS rows, in the same order."""

    id: str
    source: str
    identity: str
    fps: float | None
    crops: np.ndarray
    frame: np.ndarray
    time: np.ndarray
    aus: np.ndarray
    blendshapes: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray
    openface: np.ndarray


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset in memory, clips in index.json's (id) order."""

    root: Path
    crop_size: int
    stride: int
    au_names: tuple[str, ...]
    clips: tuple[PreparedClip, ...]

    @property
    def identities(self) -> tuple[str, ...]:
        """The distinct identities, sorted: an identity's position is its class index."""
        return tuple(sorted({clip.identity for clip in self.clips}))


def write_clip_arrays(npz: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """A clip's npz (its CLIP_ARRAYS rows and ``meta`` as JSON), put in place whole: a clip with an npz is done."""
    with atomic_output(npz) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)


def decode_crops(mp4: Path) -> np.ndarray:
    """All frames of a crops clip as (N, S, S, 3) RGB uint8."""
    try:
        from reenact.video import VideoReader
    except ImportError:  # no PyAV (e.g. a bare GPU machine): OpenCV's own FFmpeg reads our H.264 clips too
        capture = cv2.VideoCapture(str(mp4))
        frames = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        capture.release()
        return np.stack(frames)
    with VideoReader(mp4) as reader:
        return np.stack([frame.image for frame in reader])


def load_clip(out_dir: StrPath, entry: dict[str, Any]) -> PreparedClip:
    """Decode one clip of index.json (an entry of its ``clips``) with its arrays."""
    mp4, npz = clip_files(Path(out_dir) / "clips", entry["id"])
    with np.load(npz) as data:
        # A packed copy stores landmarks in float16; training works in float32.
        arrays = {name: data[name].astype(np.float32) if name == "landmarks" else data[name] for name in CLIP_ARRAYS}
    crops = decode_crops(mp4)
    if len(crops) != len(arrays["frame"]):
        raise ValueError(f"{mp4}: {len(crops)} crops but {len(arrays['frame'])} rows in {npz.name}")
    return PreparedClip(entry["id"], entry["source"], entry["identity"], entry["fps"], crops, **arrays)


def load_dataset(out_dir: StrPath, clips: Iterable[str] | None = None, threads: int = 4) -> PreparedDataset:
    """Load a prepared dataset (all clips, or those ids) into memory: ~50 KB per frame at 128 px.

    Clips decode in ``threads`` threads (PyAV decodes and converts without the GIL): 3x faster on 2 cores.
    """
    root = Path(out_dir)
    index = json.loads((root / "index.json").read_text())
    wanted = None if clips is None else set(clips)
    entries = [e for e in index["clips"] if wanted is None or e["id"] in wanted]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        loaded = tuple(pool.map(lambda entry: load_clip(root, entry), entries))
    return PreparedDataset(root, index["crop_size"], index["stride"], tuple(index["au_names"]), loaded)


def pack_dataset(
    dataset_dir: StrPath, out_dir: StrPath, identities: Iterable[str] | None = None, stride: int = 1,
    max_frames_per_identity: int | None = None, crf: int = 20,
) -> dict[str, int]:
    """A smaller copy of a prepared dataset, in the same layout, to carry to a training machine.

    Keeps the clips of ``identities`` (all when None), every ``stride``-th frame, at most
    ``max_frames_per_identity`` frames of each person (whole clips, in index order, so pairs within a clip stay);
    re-encodes the crops at ``crf`` (yuv444p) and stores landmarks in float16 (1/16 px at 128 px). Returns counts.
    """
    from reenact.video import VideoReader, VideoWriter

    source, out = Path(dataset_dir), Path(out_dir)
    index = json.loads((source / "index.json").read_text())
    wanted = None if identities is None else set(identities)
    taken: dict[str, int] = {}
    entries = []
    for entry in index["clips"]:
        person = entry["identity"]
        if wanted is not None and person not in wanted:
            continue
        if max_frames_per_identity is not None and taken.get(person, 0) >= max_frames_per_identity:
            continue
        keep = np.arange(0, entry["frames"], stride)
        if len(keep) < 2:
            continue
        taken[person] = taken.get(person, 0) + len(keep)
        src_mp4, src_npz = clip_files(source / "clips", entry["id"])
        mp4, npz = clip_files(out / "clips", entry["id"])
        mp4.parent.mkdir(parents=True, exist_ok=True)
        with VideoReader(src_mp4) as reader, VideoWriter(mp4, reader.info, crf=crf, pix_fmt=PIX_FMT) as writer:
            for i, frame in enumerate(reader):
                if i % stride == 0:
                    writer.write(frame)
        with np.load(src_npz) as data:
            arrays = {name: data[name][keep] for name in CLIP_ARRAYS}
            meta = json.loads(str(data["meta"]))
        meta |= {"frames": int(len(keep)), "stride": meta["stride"] * stride}
        arrays["landmarks"] = arrays["landmarks"].astype(np.float16)
        write_clip_arrays(npz, meta, arrays)
        entries.append({**entry, "frames": int(len(keep))})
    packed = {**index, "stride": index["stride"] * stride, "clips": entries}
    with atomic_output(out / "index.json") as tmp:
        tmp.write_text(json.dumps(packed, indent=1) + "\n")
    return {"clips": len(entries), "frames": sum(taken.values()), "identities": len(taken)}
