"""Dataset preparation on real video with the real tracker: layout, labels, resume, bad files, stride, loading."""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from reenact.face.align import STABLE_LANDMARKS, TEMPLATE, FaceAligner
from reenact.face.aus import AU_NAMES
from reenact.face.tracker import FaceTracker
from reenact.pipeline import AlignStage, TrackStage, stream
from reenact.train.dataset import load_dataset
from reenact.train.prepare import PrepareReport, find_clips, prepare_dataset, read_openface
from reenact.video import VideoReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from synthetic_clip import write_synthetic_clip  # noqa: E402

SIZE = 128
GRID = Path("train") / "grid_s1" / "bbaf2n.mp4"
EYE_CORNERS = [STABLE_LANDMARKS.index(i) for i in (33, 133, 362, 263)]


def _write_blank_clip(path: Path, frames: int = 10) -> None:
    """A readable video without a face."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        grey = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 90, np.uint8), format="rgb24")
        for _ in range(frames):
            container.mux(video.encode(grey))
        container.mux(video.encode(None))


@dataclass(frozen=True)
class Prepared:
    inputs: Path
    out: Path
    report: PrepareReport
    grid: Path
    kwargs: dict[str, object]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, require_face_model: Path) -> Prepared:
    """One run over a folder (synthetic face, faceless clip, non-video, hidden file) plus the GRID clip, 2 workers."""
    root = tmp_path_factory.mktemp("prepare")
    inputs = root / "videos"
    (inputs / "synth").mkdir(parents=True)
    write_synthetic_clip(inputs / "synth" / "astro.mp4", 0.8)  # 20 frames
    _write_blank_clip(inputs / "blank.mp4")
    (inputs / "broken.mp4").write_bytes(b"not a video at all")
    (inputs / ".hidden.mp4").write_bytes(b"skipped")
    kwargs: dict[str, object] = dict(
        crop_size=SIZE, labels_dir=shared_data / "train_aus", manifest=shared_data / "train" / "MANIFEST.csv",
        progress=False,
    )  # fmt: skip
    grid = shared_data / GRID
    report = prepare_dataset([inputs, grid], root / "out", workers=2, **kwargs)
    return Prepared(inputs, root / "out", report, grid, kwargs)


def _npz(prepared: Prepared, clip_id: str) -> dict[str, np.ndarray]:
    with np.load(prepared.out / "clips" / f"{clip_id}.npz") as data:
        return {name: data[name] for name in data.files}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


def test_good_clips_done_and_bad_ones_reported(prepared: Prepared) -> None:
    report = prepared.report
    assert report.done == ("bbaf2n", "synth/astro")
    assert report.skipped == ()
    reasons = {f.id: f.reason for f in report.failed}
    assert set(reasons) == {"blank", "broken"}  # the hidden file is not a clip
    assert "no face" in reasons["blank"] and "not a video" in reasons["broken"]
    assert report.frames_kept == report.frames_read == 75 + 20
    assert not (prepared.out / "clips" / "blank.mp4").exists()
    assert not [p for p in (prepared.out / "clips").rglob(".*")]  # no temporaries left


def test_index_and_arrays(prepared: Prepared) -> None:
    index = json.loads((prepared.out / "index.json").read_text())
    assert index["crop_size"] == SIZE and index["stride"] == 1 and index["au_names"] == list(AU_NAMES)
    entries = {e["id"]: e for e in index["clips"]}
    assert entries["bbaf2n"]["identity"] == "GRID-s1"  # from the manifest, matched by file
    assert entries["synth/astro"]["identity"] == "synth"  # no manifest row: the first folder
    assert entries["bbaf2n"]["frames"] == entries["bbaf2n"]["frames_total"] == 75
    assert entries["bbaf2n"]["fps"] == 25.0 and entries["bbaf2n"]["source"] == str(prepared.grid)
    data = _npz(prepared, "bbaf2n")
    n = 75
    shapes = {
        "frame": (n,), "time": (n,), "aus": (n, 17), "blendshapes": (n, 52), "landmarks": (n, 478, 2),
        "pose": (n, 3), "openface": (n, 17),
    }  # fmt: skip
    for name, shape in shapes.items():
        assert data[name].shape == shape, name
    assert data["blendshapes"].dtype == np.float16 and data["landmarks"].dtype == np.float32
    np.testing.assert_array_equal(data["frame"], np.arange(n))
    np.testing.assert_allclose(data["time"], np.arange(n) / 25.0, atol=1e-6)
    assert np.all(np.abs(data["pose"]) < 30)  # a speaker facing the camera


def test_openface_labels_filled_from_the_csv(prepared: Prepared, shared_data: Path) -> None:
    openface = _npz(prepared, "bbaf2n")["openface"]
    assert not np.isnan(openface).any()
    with gzip.open(shared_data / "train_aus" / "grid_s1" / "bbaf2n.csv.gz", "rt") as f:
        header = [c.strip() for c in f.readline().split(",")]
        first = dict(zip(header, f.readline().split(",")))
    np.testing.assert_allclose(openface[0], [float(first[f"{au}_r"]) for au in AU_NAMES])
    assert np.isnan(_npz(prepared, "synth/astro")["openface"]).all()  # no labels for it


def test_read_openface_drops_failed_frames(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv.gz"
    header = "frame, success, " + ", ".join(f"{au}_r" for au in AU_NAMES)  # OpenFace pads with spaces
    rows = [f"1, 1, {', '.join(['1.5'] * 17)}", f"2, 0, {', '.join(['0'] * 17)}"]
    path.write_bytes(gzip.compress("\n".join([header, *rows]).encode()))
    labels = read_openface(path, np.array([0, 1, 2]))
    assert labels.shape == (3, 17) and np.all(labels[0] == 1.5) and np.isnan(labels[1:]).all()


def test_crops_match_landmarks(prepared: Prepared) -> None:
    for clip_id in ("bbaf2n", "synth/astro"):
        landmarks = _npz(prepared, clip_id)["landmarks"]
        assert landmarks.min() >= 0 and landmarks.max() < SIZE
        # The aligner puts the eye corners at the template's place, frame after frame.
        eyes = landmarks[:, [33, 133, 362, 263]]
        assert np.abs(eyes - TEMPLATE[EYE_CORNERS] * SIZE).max() < 0.04 * SIZE
        assert eyes.std(axis=0).max() < 1.5  # GRID: 0.9 px (the corners move a little with blinks)


def test_resume_skips_complete_clips(prepared: Prepared) -> None:
    files = sorted((prepared.out / "clips").rglob("*.*"))
    stamps = [p.stat().st_mtime_ns for p in files]
    again = prepare_dataset([prepared.inputs, prepared.grid], prepared.out, **prepared.kwargs)  # type: ignore[arg-type]
    assert again.done == () and sorted(again.skipped) == ["bbaf2n", "synth/astro"]
    assert [p.stat().st_mtime_ns for p in files] == stamps
    index = json.loads((prepared.out / "index.json").read_text())
    assert [e["id"] for e in index["clips"]] == ["bbaf2n", "synth/astro"]
    with pytest.raises(ValueError, match="crop size"):
        prepare_dataset([prepared.grid], prepared.out, crop_size=SIZE * 2, progress=False)


def test_stride_keeps_every_nth_frame_of_the_same_track(prepared: Prepared, tmp_path: Path) -> None:
    clip = prepared.inputs / "synth" / "astro.mp4"
    report = prepare_dataset([clip], tmp_path, crop_size=SIZE, stride=3, progress=False)
    assert report.done == ("astro",) and report.frames_read == 20 and report.frames_kept == 7
    with np.load(tmp_path / "clips" / "astro.npz") as strided:
        np.testing.assert_array_equal(strided["frame"], np.arange(0, 20, 3))
        full = _npz(prepared, "synth/astro")
        # Every frame is still tracked and aligned, so the kept rows are those of the full run.
        np.testing.assert_allclose(strided["landmarks"], full["landmarks"][::3], atol=1e-3)
    with VideoReader(tmp_path / "clips" / "astro.mp4") as reader:
        assert [round(f.time * 25) for f in reader] == list(range(0, 20, 3))  # source timing kept


def test_load_dataset_round_trip(prepared: Prepared) -> None:
    dataset = load_dataset(prepared.out)
    assert dataset.crop_size == SIZE and dataset.au_names == AU_NAMES
    assert [c.id for c in dataset.clips] == ["bbaf2n", "synth/astro"]
    assert dataset.identities == ("GRID-s1", "synth")
    for clip in dataset.clips:
        assert clip.crops.shape == (len(clip.frame), SIZE, SIZE, 3) and clip.crops.dtype == np.uint8
        # The stored crops are those the pipeline cuts, up to the encoder's loss.
        with FaceTracker() as tracker, VideoReader(clip.source) as reader:
            states = stream(reader, [TrackStage(tracker), AlignStage(FaceAligner(SIZE))])
            direct = np.stack([s.crop for s in states if s.crop is not None])
        assert _psnr(clip.crops, direct) > 35


def test_find_clips_ids(tmp_path: Path) -> None:
    for name in ("a/b/one.mp4", "two.MOV", "notes.txt", ".x.mp4", "c/.tmp/three.mkv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    clips = find_clips([tmp_path, tmp_path / "elsewhere" / "four.webm"], exclude=tmp_path / "a")
    assert [c.id for c in clips] == ["two", "four"]
    assert [c.id for c in find_clips([tmp_path])] == ["a/b/one", "two"]
