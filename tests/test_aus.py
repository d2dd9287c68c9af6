"""Action Units from real faces through the real tracker: scale, blinks, sides, CSV format."""

from __future__ import annotations

import csv
import gzip
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from reenact.face.aus import (
    AU_NAMES,
    AU_SOURCES,
    CSV_COLUMNS,
    blendshapes_to_aus,
    coupled_aus,
    lateral_aus,
    parse_au_name,
)
from reenact.face.tracker import FaceTracker
from reenact.video import VideoReader

pytestmark = pytest.mark.usefixtures("require_face_model")
BLINK_CLIP = "video-retalking/3"  # 5 s talking head with six blinks


def au(values: np.ndarray, name: str) -> float:
    return float(values[AU_NAMES.index(name)])


def track_clip(path: Path) -> list:
    with FaceTracker() as tracker, VideoReader(path) as reader:
        return [tracker(frame.image, frame.time) for frame in reader]


def test_the_smiling_astronaut_reads_a_broad_smile(astronaut: np.ndarray) -> None:
    with FaceTracker(video_mode=False) as tracker:
        face = tracker(astronaut, 0.0)
    aus = blendshapes_to_aus(face.blendshapes)
    assert au(aus, "AU12") >= 2.0
    assert au(aus, "AU45") < 0.5 and au(aus, "AU26") < 1.0  # eyes open, jaw not dropped


def test_resting_faces_read_low(shared_data: Path) -> None:
    """First frames of GRID clips: the speaker at rest, mouth closed, before the sentence starts."""
    clips = sorted((shared_data / "train" / "grid_s1").glob("*.mp4"))[:40:4]
    rows = []
    with FaceTracker(video_mode=False) as tracker:
        for clip in clips:
            with VideoReader(clip) as reader:
                rows.append(blendshapes_to_aus(tracker(next(iter(reader)).image, 0.0).blendshapes))
    resting = np.array(rows)
    for name in ("AU12", "AU06", "AU25", "AU26", "AU45", "AU02", "AU05"):
        assert resting[:, AU_NAMES.index(name)].max() <= 0.5, name
    assert resting.mean() < 0.3


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    return list(zip(edges[::2], edges[1::2]))


def test_the_au45_curve_shows_each_blink(shared_data: Path) -> None:
    """Full blinks as OpenFace sees them (a run of AU45 > 1 peaking at 2 or more) each give an AU45 peak here,
    and frames away from any lid movement stay low. (Half-lowered lids, OpenFace peaks under 2, are left out.)"""
    with gzip.open(shared_data / "train_aus" / f"{BLINK_CLIP}.csv.gz", "rt") as f:
        reference = np.array([float(row["AU45_r"]) for row in csv.DictReader(f)])
    faces = track_clip(shared_data / "train" / f"{BLINK_CLIP}.mp4")
    ours = np.array([au(blendshapes_to_aus(face.blendshapes), "AU45") for face in faces])
    assert len(ours) == len(reference)
    lid_moves = runs(reference > 1.0)
    blinks = [(a, b) for a, b in lid_moves if reference[a:b].max() >= 2.0]
    assert len(blinks) >= 5
    for a, b in blinks:
        assert ours[max(0, a - 2) : b + 2].max() >= 1.5, (a, b)
    near_blink = np.zeros(len(ours), bool)
    for a, b in lid_moves:
        near_blink[max(0, a - 3) : b + 3] = True
    assert ours[~near_blink].max() < 0.8


def test_a_wink_reads_on_one_side(shared_data: Path) -> None:
    """Winks made from a real blink: one half of the face from the closed-eye frame, the other half from an
    open-eye frame two frames earlier. The image's left is the subject's right (MediaPipe's and ARKit's sides)."""
    with VideoReader(shared_data / "train" / f"{BLINK_CLIP}.mp4") as reader:
        frames = [frame.image for frame in reader][:16]
    with FaceTracker(video_mode=False) as tracker:
        closed = int(np.argmax([au(blendshapes_to_aus(tracker(f, 0).blendshapes), "AU45") for f in frames]))
        opened = frames[closed - 2]
        nose_x = int(tracker(opened, 0).xy[1, 0])  # landmark 1: the nose tip
        for closed_side, image_half in (("R", np.s_[:, :nose_x]), ("L", np.s_[:, nose_x:])):
            wink = opened.copy()
            wink[image_half] = frames[closed][image_half]
            sides = lateral_aus(tracker(wink, 0).blendshapes)
            open_side = "L" if closed_side == "R" else "R"
            assert sides[f"AU45_{closed_side}"] >= sides[f"AU45_{open_side}"] + 0.5, sides
            assert sides[f"AU45_{open_side}"] < 0.5, sides


def test_au_names_parse() -> None:
    assert parse_au_name("au12") == parse_au_name("12") == parse_au_name("AU12_r") == "AU12"
    with pytest.raises(ValueError, match="AU99"):
        parse_au_name("AU99")


def test_au_cli_on_an_image_writes_openface_columns_and_a_plot(astronaut: np.ndarray, tmp_path: Path) -> None:
    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), astronaut[:, :, ::-1])
    out, plot = tmp_path / "aus.csv", tmp_path / "aus.png"
    result = subprocess.run(
        [sys.executable, "-m", "reenact", "au", str(image), "-o", str(out), "--plot", str(plot), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with open(out) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    assert CSV_COLUMNS[:5] == ("frame", "timestamp", "confidence", "success", "AU01_r") and "AU45_r" in CSV_COLUMNS
    assert len(rows) == 1 and rows[0]["success"] == "1" and float(rows[0]["AU12_r"]) >= 2.0
    assert cv2.imread(str(plot)).shape[0] > 300


def test_au_cli_on_a_clip_has_a_row_per_frame(shared_data: Path, tmp_path: Path) -> None:
    clip = shared_data / "train" / f"{BLINK_CLIP}.mp4"
    out = tmp_path / "aus.csv"
    result = subprocess.run(
        [sys.executable, "-m", "reenact", "au", str(clip), "-o", str(out), "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    with open(out) as f:
        rows = list(csv.DictReader(f))
    with VideoReader(clip) as reader:
        times = [frame.time for frame in reader]
    assert [int(r["frame"]) for r in rows] == list(range(1, len(times) + 1))
    assert [float(r["timestamp"]) for r in rows] == pytest.approx(times, abs=6e-4)
    assert max(float(r["AU45_r"]) for r in rows) >= 1.5


def test_coupled_aus_are_those_read_from_a_shared_blendshape() -> None:
    assert coupled_aus("AU26") == ("AU25",) and coupled_aus("AU12") == ("AU06",)
    assert coupled_aus("AU45") == () and coupled_aus("AU15") == ()
    for au in AU_NAMES:
        for other in coupled_aus(au):
            assert au in coupled_aus(other)  # sharing is mutual
            assert set(AU_SOURCES[au]) & set(AU_SOURCES[other])
