"""Transfer by the driving face's own landmark motion (`reenact.retarget`), on real MediaPipe landmarks and clips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from reenact.face.align import estimate_alignment
from reenact.face.aus import AU_NAMES
from reenact.face.tracker import FaceTracker
from reenact.face.regions import FACE_SIDES
from reenact.model.coords import normalise
from reenact.retarget import _BROWS, _LIDS, _UPPER_LIDS, READ_SHARES, DrivingMotion, Retargeter, proportions

from readings import mouth_gaps, per_frame

pytestmark = pytest.mark.usefixtures("require_face_model")

UPPER_LIDS = _UPPER_LIDS
CORNERS = [61, 291]


@pytest.fixture(scope="module")
def face(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut's 478 landmarks in her aligned 256 crop, normalised."""
    with FaceTracker(video_mode=False) as tracker:
        found = tracker(astronaut, 0.0)
    return normalise(estimate_alignment(found.xy, 256).to_crop(found.xy), 256).astype(np.float64)


def driving_clip(face: np.ndarray, frames: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A driving track made from a real face: at rest but for frames 20-29, where the upper lids come down by
    half the eye's opening and the mouth corners go out and up; the AUs say so. The head sits still."""
    opening = proportions(face)[0]
    points = np.repeat(face[None], frames, axis=0)
    aus = np.zeros((frames, len(AU_NAMES)), np.float32)
    points[20:30, UPPER_LIDS, 1] += 0.5 * opening
    points[20:30, CORNERS[0]] += (-0.01, -0.01)
    points[20:30, CORNERS[1]] += (0.01, -0.01)
    aus[20:30, AU_NAMES.index("AU45")] = 2.5
    aus[20:30, AU_NAMES.index("AU12")] = 2.0
    return np.arange(frames) / 25.0, points, aus, np.zeros((frames, 3), np.float32)


def test_the_driving_motion_is_its_landmarks_moves_from_its_rest(face: np.ndarray) -> None:
    times, points, aus, poses = driving_clip(face)
    motion = DrivingMotion.from_track(times, points, aus, poses, pose_basis=None)
    assert np.allclose(motion.rest, face, atol=1e-6)  # the calm frames are the rest
    assert np.abs(motion.at(times[5])[0]).max() < 1e-6  # a frame at rest does not move
    moved, _ = motion.at(times[25])
    opening = proportions(face)[0]
    assert np.allclose(moved[UPPER_LIDS, 1], 0.5 * opening / READ_SHARES["eyes"], atol=1e-3)
    assert np.allclose(moved[CORNERS], [(-0.01, -0.01), (0.01, -0.01)], atol=1e-3)


def test_the_drivers_brows_and_lids_are_carried_as_far_as_they_moved_not_as_far_as_mediapipe_places_them(
        face: np.ndarray) -> None:
    """Real faces' brows and lids moved further than MediaPipe's landmarks say (``READ_SHARES``, from the pixels of
    real frames: probes/pixel_travel.py), so a driver whose brow points rose by 0.02 is carried as having risen 0.02
    over the brows' share, and its lids' travel likewise; its mouth as read. Read as MediaPipe placed them
    (``read_shares={}``), all as read."""
    times, points, aus, poses = driving_clip(face)
    brows = [i for side in _BROWS for i in side]
    points[20:30, brows, 1] -= 0.02
    moved, _ = DrivingMotion.from_track(times, points, aus, poses, pose_basis=None).at(times[25])
    assert np.allclose(moved[brows, 1], -0.02 / READ_SHARES["brows"], atol=1e-3)
    assert np.allclose(moved[UPPER_LIDS, 1], 0.5 * proportions(face)[0] / READ_SHARES["eyes"], atol=1e-3)
    assert READ_SHARES["brows"] < 1 and READ_SHARES["eyes"] < 1
    assert np.allclose(moved[CORNERS], [(-0.01, -0.01), (0.01, -0.01)], atol=1e-3)
    read, _ = DrivingMotion.from_track(times, points, aus, poses, pose_basis=None, read_shares={}).at(times[25])
    assert np.allclose(read[brows, 1], -0.02, atol=1e-3)
    assert np.allclose(read[UPPER_LIDS, 1], 0.5 * proportions(face)[0], atol=1e-3)


def test_lid_travel_is_scaled_by_the_source_eyes_opening(face: np.ndarray) -> None:
    """A source whose eyes open half as wide as the driver's closes them by half the driver's lid travel (so both
    close to the same share), while the mouth, as wide as the driver's, moves as the driver's."""
    times, points, aus, poses = driving_clip(face)
    motion = DrivingMotion.from_track(times, points, aus, poses, pose_basis=None)
    narrow = face.copy()
    for upper, lower in _LIDS:
        middle = (narrow[list(upper), 1].mean() + narrow[list(lower), 1].mean()) / 2
        for line in (upper, lower):
            narrow[list(line), 1] = middle + 0.5 * (narrow[list(line), 1] - middle)
    same = Retargeter(motion)(face, times[25])
    half = Retargeter(motion)(narrow, times[25])
    # Moves are where content comes from: a landmark displaced down by d has a move of -d.
    assert np.allclose(half[UPPER_LIDS, 1], 0.5 * same[UPPER_LIDS, 1], rtol=0.02)
    assert np.allclose(half[CORNERS], same[CORNERS], atol=1e-6)
    assert np.allclose(same[UPPER_LIDS, 1], -0.5 * proportions(face)[0] / READ_SHARES["eyes"], atol=1e-3)


def test_only_the_chosen_aus_regions_move(face: np.ndarray) -> None:
    times, points, aus, poses = driving_clip(face)
    motion = DrivingMotion.from_track(times, points, aus, poses, pose_basis=None)
    mouth_only = Retargeter(motion, aus=("AU12",))(face, times[25])
    assert np.abs(mouth_only[UPPER_LIDS]).max() == 0  # the lids are not in the smile's region
    assert np.abs(mouth_only[CORNERS]).max() > 0.009


def test_an_absolute_transfer_takes_the_sources_own_expression_out_but_not_its_blinks(face: np.ndarray) -> None:
    """Absolute: the source's own smile is taken back and the driver's put in; its own blink stays (a warp cannot
    open a closed eye), while the driver's blink is carried as in a relative transfer."""
    times, points, aus, poses = driving_clip(face)
    driver = DrivingMotion.from_track(times, points, aus, poses, pose_basis=None)
    # The source smiles and blinks in frames 0-9, while the driver is at rest.
    own_points = np.roll(points, -20, axis=0)
    own = DrivingMotion.from_track(times, own_points, np.roll(aus, -20, axis=0), poses, pose_basis=None)
    relative, absolute = Retargeter(driver), Retargeter(driver, own=own)  # each keeps the frames it saw
    at_source_smile = absolute(own_points[5], times[5])
    assert np.allclose(at_source_smile[CORNERS], [(-0.01, -0.01), (0.01, -0.01)], atol=1e-3)  # corners pulled back
    assert np.abs(at_source_smile[UPPER_LIDS]).max() < 1e-6  # its closing lids left closed
    assert np.abs(relative(own_points[5], times[5])).max() < 1e-6  # relative: its own expression stays as it is
    # Where the source is at rest, both carry the driver's blink and smile alike.
    assert np.allclose(Retargeter(driver, own=own)(face, times[25]), Retargeter(driver)(face, times[25]), atol=1e-6)


def test_a_head_turn_is_not_taken_for_expression(face: np.ndarray) -> None:
    """With the model's per-degree fields, a driving head that only turns leaves (nearly) no expression motion."""
    from reenact.model.io import load_generator
    from reenact.model.networks import pose_features

    basis = load_generator(None).motion.pose_basis.detach().numpy().astype(np.float64)
    frames = 30
    poses = np.zeros((frames, 3), np.float32)
    poses[15:, 1] = 8.0  # a yaw of 8 degrees for the second half
    turned = face - np.einsum("k,kpc->pc", pose_features(poses[-1].astype(np.float64) - 0.0), basis)
    points = np.where(np.arange(frames)[:, None, None] >= 15, turned[None], face[None])
    aus = np.zeros((frames, len(AU_NAMES)), np.float32)
    motion = DrivingMotion.from_track(np.arange(frames) / 25.0, points, aus, poses, pose_basis=basis)
    raw = DrivingMotion.from_track(np.arange(frames) / 25.0, points, aus, poses, pose_basis=None)
    left, plain = np.abs(motion.displacement[20]).max(), np.abs(raw.displacement[20]).max()
    assert plain > 0.005  # the turn moves the landmarks in the aligned crop...
    # ...and the per-degree fields account for two thirds of it where most is left (0.016 of 0.051; the outline's
    # sides, which moved most, carry no expression motion at all: reenact.face.regions.FACE_SIDES)
    assert left < plain / 3
    assert np.abs(raw.displacement[20][list(FACE_SIDES)]).max() == 0.0


def test_a_driver_turned_past_what_the_fields_take_out_gives_its_rest_not_its_turn(face: np.ndarray) -> None:
    """Frames where the driving head is turned further from its rest's pose than the per-degree fields were fitted
    on (a cut to a three-quarter view) carry no expression: what is left of the turn in their landmarks is not one.
    A frame in the trusted range still does; a followed turn stops at ``FOLLOWED_TURN``."""
    from reenact.retarget import FOLLOWED_TURN

    times, points, aus, poses = driving_clip(face, frames=60)
    points[40:] += np.random.default_rng(0).normal(0, 0.02, points[40:].shape)  # a turned face's landmarks
    poses[40:, 1] = 25.0
    motion = DrivingMotion.from_track(times, points, aus, poses, pose_basis=None)
    assert np.abs(motion.displacement[25]).max() > 0.01  # the expression in front is carried...
    assert np.abs(motion.displacement[40:]).max() == 0.0  # ...the turned frames give the rest
    assert np.abs(motion.turns).max() == FOLLOWED_TURN


def test_a_still_driven_by_a_clip_that_cuts_to_a_turned_head_keeps_its_face(shared_data: Path,
                                                                            tmp_path: Path) -> None:
    """A still of a held-out speaker driven by a shouting driver whose clip cuts, at frame 30, to a three-quarter view
    (25 degrees from its first shot). The turned frames' landmarks, read as expression, swirled her hair into her
    cheek and moved her whole face (MediaPipe's landmarks on the output 0.05 of the face's width from hers); now those
    frames give her at rest, and the frontal shot's expression still shows."""
    from readings import per_frame

    with av.open(str(shared_data / "train" / "sadtalker" / "WDA_KatieHill_000.mp4")) as clip:
        image = next(f for i, f in enumerate(clip.decode(video=0)) if i == 10).to_ndarray(format="rgb24")
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), image[:, :, ::-1])
    with FaceTracker(video_mode=False) as tracker:
        source = tracker(image, 0.0).xy[:468, :2]
    out = tmp_path / "out.mp4"
    result = _run("transfer", still, shared_data / "train" / "styletalk" / "furious_talk2_clip1.mp4", "-o", out)
    assert result.returncode == 0, result.stderr
    width = np.ptp(source[:, 0])
    apart = per_frame(out, lambda xy: float(np.linalg.norm(xy[:468, :2] - source, axis=1).mean() / width))
    assert np.nanmax(apart[:30]) > 0.02  # the frontal shot's shouting moves her face (0.033 measured)
    assert np.nanmax(apart[32:]) < 0.01  # the turned shot leaves it as it is (0.0016; 0.055 before)


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reenact", *map(str, args), "--quiet"], capture_output=True, text=True,
                          timeout=600)


def test_a_transfer_follows_the_driving_mouth(astronaut: np.ndarray, shared_data: Path, tmp_path: Path) -> None:
    """A talking driver onto the astronaut, by its landmarks: MediaPipe on the output finds her lips opening and
    closing with the driver's (the lips' gap, frame by frame, correlates with the driver's)."""
    still = tmp_path / "astronaut.png"
    cv2.imwrite(str(still), astronaut[:, :, ::-1])
    driving = shared_data / "train" / "grid_s1" / "bbaf2n.mp4"
    out = tmp_path / "out.mp4"
    result = _run("transfer", still, driving, "-o", out)
    assert result.returncode == 0, result.stderr

    driver, output = mouth_gaps(driving), mouth_gaps(out)
    ok = ~np.isnan(driver) & ~np.isnan(output)
    assert ok.sum() > 60
    assert np.corrcoef(driver[ok], output[ok])[0, 1] > 0.8
    assert np.ptp(output[ok]) > 0.5 * np.ptp(driver[ok])  # and opens about as far (scaled by the face)


def test_a_still_driving_image_has_no_landmark_motion(astronaut: np.ndarray, shared_data: Path,
                                                     tmp_path: Path) -> None:
    still = tmp_path / "astronaut.png"
    cv2.imwrite(str(still), astronaut[:, :, ::-1])
    out = tmp_path / "out.mp4"
    result = _run("transfer", shared_data / "train" / "grid_s1" / "bbaf2n.mp4", still, "-o", out, "--mode",
                  "absolute", "--motion", "landmarks")
    assert result.returncode == 2 and "--motion aus" in result.stderr  # options that contradict each other
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def brow_heights(path: Path) -> np.ndarray:
    """Per frame of a video, its face's brows' height over its upper lids in the aligned crop (NaN: no face)."""
    return per_frame(path, lambda xy: proportions(normalise(estimate_alignment(xy, 256).to_crop(xy), 256))[1])


def test_an_absolute_transfer_of_a_video_onto_itself_gives_its_own_brows_back(shared_data: Path,
                                                                              tmp_path: Path) -> None:
    """A talking, nodding held-out speaker's clip driving itself, brows only. Relative, her own brow moves are kept
    and her moves from her rest are added again: they come out about 1.4 times as large. Absolute, her own are
    taken back first: they come out about as they were."""
    clip = shared_data / "train" / "styletalk" / "happyenglish_clip1.mp4"
    source = brow_heights(clip)
    slopes = {}
    for mode in ("relative", "absolute"):
        out = tmp_path / f"{mode}.mp4"
        result = _run("transfer", clip, clip, "-o", out, "--mode", mode, "--aus", "AU01,AU02,AU04", "--no-memory",
                      "--crf", "30")
        assert result.returncode == 0, result.stderr
        output = brow_heights(out)
        n = min(len(source), len(output))
        ok = ~np.isnan(source[:n]) & ~np.isnan(output[:n])
        x, y = source[:n][ok] - source[:n][ok].mean(), output[:n][ok] - output[:n][ok].mean()
        assert ok.sum() > 100
        slopes[mode] = float(x @ y / (x @ x))
    assert 0.85 < slopes["absolute"] < 1.25, slopes
    assert slopes["relative"] > slopes["absolute"] + 0.15, slopes
