"""Tests for reenact.face.align on real MediaPipe landmarks (scikit-image's astronaut, a shared clip).

The astronaut, the shared data folder and the face landmarker model come from conftest.py's fixtures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from reenact.face.align import (
    FACE_OVAL,
    MAX_CROP_SIZE,
    MIN_CROP_SIZE,
    STABLE_LANDMARKS,
    TEMPLATE,
    Alignment,
    FaceAligner,
    crop_face,
    edit_mask,
    estimate_alignment,
    face_mask,
    paste_back,
)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR in dB of two uint8 images, over the pixels where `where` is true (all by default)."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        d = d[where]
    mse = float(np.mean(d * d))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def landmarker(face_model: Path | None) -> Iterator[object]:
    """MediaPipe FaceLandmarker in image mode (module-scoped: creating one costs ~0.3 s)."""
    if face_model is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the face landmarker model is required under CI")
        pytest.skip("the face landmarker model is not available here (set REENACT_FACE_LANDMARKER)")
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(face_model)),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=1,
    )
    lm = vision.FaceLandmarker.create_from_options(options)
    yield lm
    lm.close()


def detect(landmarker: object, rgb: np.ndarray) -> np.ndarray:
    """(478, 2) landmarks in pixels of an RGB uint8 image."""
    import mediapipe as mp

    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
    result = landmarker.detect(image)  # type: ignore[attr-defined]
    assert result.face_landmarks, "no face found"
    h, w = rgb.shape[:2]
    return np.array([(p.x * w, p.y * h) for p in result.face_landmarks[0]], dtype=np.float64)


@pytest.fixture(scope="module")
def astro_lm(landmarker: object, astronaut: np.ndarray) -> np.ndarray:
    return detect(landmarker, astronaut)


def corner_path(aligns: list[Alignment]) -> np.ndarray:
    """(frames, 4, 2) crop corners in the frame, in crop pixels of the first frame (shake in crop px)."""
    return np.array([a.corners_in_frame() for a in aligns]) * aligns[0].scale


# --- template and geometry ---------------------------------------------------------------------------


def test_template_is_sane() -> None:
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    assert TEMPLATE.shape == (len(STABLE_LANDMARKS), 2)
    assert len(set(STABLE_LANDMARKS)) == len(STABLE_LANDMARKS)
    assert np.all((TEMPLATE > 0.2) & (TEMPLATE < 0.8))
    # No lips, eyelids or brows: they move with expression.
    moving = set()
    for group in ("FACE_LANDMARKS_LIPS", "FACE_LANDMARKS_LEFT_EYEBROW", "FACE_LANDMARKS_RIGHT_EYEBROW"):
        for c in getattr(FaceLandmarksConnections, group):
            moving |= {c.start, c.end}
    for group in ("FACE_LANDMARKS_LEFT_EYE", "FACE_LANDMARKS_RIGHT_EYE"):
        for c in getattr(FaceLandmarksConnections, group):
            moving |= {c.start, c.end}
    moving -= {33, 133, 362, 263}  # eye corners do not move with the lids
    assert not moving & set(STABLE_LANDMARKS)
    # Left-right symmetric about x = 0.5.
    mirrored = np.sort(np.round(np.c_[1.0 - TEMPLATE[:, 0], TEMPLATE[:, 1]], 4), axis=0)
    np.testing.assert_allclose(mirrored, np.sort(np.round(TEMPLATE, 4), axis=0), atol=2e-4)
    oval = [c.start for c in FaceLandmarksConnections.FACE_LANDMARKS_FACE_OVAL]
    assert list(FACE_OVAL) == oval


def test_template_round_trip() -> None:
    # Landmarks that are exactly the template under a known similarity give back that similarity.
    size = 256
    angle, scale, shift = math.radians(-20.0), 1.7, np.array([400.0, 250.0])
    rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    lm = np.zeros((478, 2))
    lm[list(STABLE_LANDMARKS)] = (TEMPLATE * size) @ rot.T + shift  # crop -> frame
    a = estimate_alignment(lm, size)
    np.testing.assert_allclose(a.to_crop(lm[list(STABLE_LANDMARKS)]), TEMPLATE * size, atol=1e-9)
    np.testing.assert_allclose(a.inverse[:, :2], rot, atol=1e-12)
    np.testing.assert_allclose(a.inverse[:, 2], shift, atol=1e-9)
    assert a.scale == pytest.approx(1 / scale)
    assert a.angle == pytest.approx(-angle)
    pts = np.random.default_rng(0).uniform(-100, 900, size=(50, 2))
    np.testing.assert_allclose(a.to_frame(a.to_crop(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(a.matrix @ np.vstack([a.inverse, [0, 0, 1]]), np.eye(3)[:2], atol=1e-12)


@pytest.mark.parametrize("bad", [MIN_CROP_SIZE - 1, MAX_CROP_SIZE + 1, 0, 128.0])
def test_crop_size_validated(bad: object) -> None:
    lm = np.random.default_rng(0).uniform(0, 100, size=(478, 2))
    with pytest.raises(ValueError):
        FaceAligner(crop_size=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        estimate_alignment(lm, bad)  # type: ignore[arg-type]
    for ok in (MIN_CROP_SIZE, MAX_CROP_SIZE):
        assert FaceAligner(crop_size=ok)(lm, 0.0).crop_size == ok


def test_bad_landmarks_rejected() -> None:
    with pytest.raises(ValueError):
        estimate_alignment(np.zeros((10, 2)))
    lm = np.random.default_rng(0).uniform(0, 100, size=(478, 2))
    lm[5, 0] = np.nan
    with pytest.raises(ValueError):
        estimate_alignment(lm)
    with pytest.raises(ValueError):
        estimate_alignment(np.ones((478, 2)))  # all at one point


# --- alignment on the astronaut ----------------------------------------------------------------------


def test_crop_contains_face(astronaut: np.ndarray, astro_lm: np.ndarray) -> None:
    size = 256
    a = estimate_alignment(astro_lm, size)
    in_crop = a.to_crop(astro_lm)
    # The whole mesh (forehead to chin, both cheeks) lies inside the crop with a margin.
    assert np.all(in_crop > 0.12 * size) and np.all(in_crop < 0.88 * size)
    # Eyes level and where the template puts them.
    right_eye, left_eye = in_crop[[33, 133]].mean(axis=0), in_crop[[362, 263]].mean(axis=0)
    assert abs(right_eye[1] - left_eye[1]) < 0.01 * size
    t = dict(zip(STABLE_LANDMARKS, TEMPLATE * size))
    for idx in (33, 133, 362, 263, 168):
        assert np.linalg.norm(in_crop[idx] - t[idx]) < 0.025 * size, idx
    rms = np.sqrt(np.mean(np.sum((in_crop[list(STABLE_LANDMARKS)] - TEMPLATE * size) ** 2, axis=1)))
    assert rms < 0.02 * size
    crop = crop_face(astronaut, a)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8


def test_similarity_transformed_image_gives_same_crop(
    landmarker: object, astronaut: np.ndarray, astro_lm: np.ndarray
) -> None:
    size = 256
    m = cv2.getRotationMatrix2D((256.0, 256.0), 15.0, 0.7)
    m[:, 2] += np.array([40.0, -25.0])
    moved = cv2.warpAffine(astronaut, m, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    a0 = estimate_alignment(astro_lm, size)
    ref = crop_face(astronaut, a0)
    face = face_mask(a0.to_crop(astro_lm), size) > 0.5
    # Landmarks moved exactly: the fit is equivariant, so only resampling differs.
    exact = crop_face(moved, estimate_alignment(astro_lm @ m[:, :2].T + m[:, 2], size))
    # Landmarks re-detected on the moved image: MediaPipe's own error adds to that.
    lm_moved = detect(landmarker, moved)
    redetected = crop_face(moved, estimate_alignment(lm_moved, size))
    p_exact, p_redet = psnr(ref, exact, face), psnr(ref, redetected, face)
    # Measured 37.5 dB and 32.4 dB; the face shrank to 0.7x, so some detail is lost.
    assert p_exact > 35.0, p_exact
    assert p_redet > 30.0, p_redet


def test_crop_of_upscaled_frame_matches(astronaut: np.ndarray, astro_lm: np.ndarray) -> None:
    # A 4x upscaled frame is cropped through the box-filter path (crop scale < 0.5).
    size = 256
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    lm_big = (astro_lm + 0.5) * 4.0 - 0.5  # pixel centres scale about the image corner
    a_big = estimate_alignment(lm_big, size)
    assert a_big.scale < 0.5
    ref = crop_face(astronaut, estimate_alignment(astro_lm, size))
    got = crop_face(big, a_big)
    face = face_mask(a_big.to_crop(lm_big), size) > 0.5
    assert psnr(ref, got, face) > 38.0  # measured 43.3 dB


# --- temporal stability ------------------------------------------------------------------------------


def test_still_head_gives_still_crop(astro_lm: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    frames = [astro_lm + rng.normal(0.0, 0.5, size=astro_lm.shape) for _ in range(100)]
    ts = np.arange(100) / 30.0
    smooth = FaceAligner(256)
    raw = FaceAligner(256, smooth=False)
    c_s = corner_path([smooth(f, t) for f, t in zip(frames, ts)])
    c_r = corner_path([raw(f, t) for f, t in zip(frames, ts)])
    step_s = np.linalg.norm(np.diff(c_s, axis=0), axis=-1).max()
    step_r = np.linalg.norm(np.diff(c_r, axis=0), axis=-1).max()
    span_s = np.linalg.norm(c_s - c_s.mean(axis=0), axis=-1).max()
    span_r = np.linalg.norm(c_r - c_r.mean(axis=0), axis=-1).max()
    # 0.5 px of noise on this small face (45 px between the eyes, crop scale 1.33) shakes the raw
    # crop's corners by up to ~3 px a frame. Measured smoothed: 0.063 px. The span (farthest corner
    # from its mean over the 100 frames) is mostly the slow settling from the noisy first frame.
    assert step_s < 0.1 and step_r / step_s > 20.0, (step_s, step_r)
    assert span_s < 0.5 * span_r, (span_s, span_r)


def test_moving_head_is_tracked(astro_lm: np.ndarray) -> None:
    size = 256
    fa = FaceAligner(size)
    raw_of = FaceAligner(size, smooth=False)
    fps = 30.0
    worst = 0.0
    last_offset = 0.0
    for i in range(150):
        t = i / fps
        # Still for 1 s, then 300 px/s to the right with a slow turn for 2 s, then still again.
        move = np.clip(t - 1.0, 0.0, 2.0)
        ang = math.radians(10.0 * move)
        rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        lm = (astro_lm - 256.0) @ rot.T + 256.0 + [300.0 * move, 0.0]
        got, raw = fa(lm, t), raw_of(lm, t)
        offset = np.linalg.norm(got.to_crop(raw.corners_in_frame()) - raw.to_crop(raw.corners_in_frame()), axis=1).max()
        worst = max(worst, offset)
        if t > 3.0:
            assert offset <= last_offset + 1e-9  # settles without overshoot or new shake
        last_offset = offset
    # The leash caps the lag at max_lag of the crop side (10.2 px at 256) even at 300 px/s.
    assert 1.0 < worst <= fa.max_lag * size + 0.05  # type: ignore[operator]


def test_reset_starts_from_the_raw_fit(astro_lm: np.ndarray) -> None:
    fa = FaceAligner(256)
    fa(astro_lm, 0.0)
    moved = astro_lm + np.array([100.0, 40.0])
    assert not np.allclose(fa(moved, 1 / 30).matrix, estimate_alignment(moved).matrix, atol=1e-3)
    fa.reset()
    np.testing.assert_allclose(fa(moved, 0.0).matrix, estimate_alignment(moved).matrix, atol=1e-9)


def test_real_video_jitter_reduced(shared_data: Path, require_face_model: Path) -> None:
    clip = shared_data / "train" / "grid_s1" / "bbaf2n.mp4"
    if not clip.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{clip} is required under CI")
        pytest.skip(f"{clip} is not available here")
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(require_face_model)),
        running_mode=vision.RunningMode.VIDEO,
    )
    smooth, raw = FaceAligner(256), FaceAligner(256, smooth=False)
    c_s, c_r = [], []
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    with vision.FaceLandmarker.create_from_options(options) as lm:
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            res = lm.detect_for_video(image, round(i * 1000 / fps))
            h, w = bgr.shape[:2]
            pts = np.array([(p.x * w, p.y * h) for p in res.face_landmarks[0]])
            c_s.append(smooth(pts, i / fps))
            c_r.append(raw(pts, i / fps))
            i += 1
    cap.release()
    assert i >= 50
    # Frame-to-frame shake of the crop corners (crop px); the speaker's head is nearly still.
    step_s = np.median(np.linalg.norm(np.diff(corner_path(c_s), axis=0), axis=-1).max(axis=1))
    step_r = np.median(np.linalg.norm(np.diff(corner_path(c_r), axis=0), axis=-1).max(axis=1))
    assert step_r / step_s > 3.0, (step_r, step_s)


# --- mask --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 256, 1024])
def test_face_mask(astro_lm: np.ndarray, size: int) -> None:
    a = estimate_alignment(astro_lm, size)
    pts = a.to_crop(astro_lm)
    feather = 0.05
    m = face_mask(pts, size, feather=feather)
    assert m.shape == (size, size) and m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() <= 1.0
    for idx in (1, 4, 168, 13, 159):  # nose, nose bridge, mouth, an eyelid: well inside
        x, y = np.round(pts[idx]).astype(int)
        assert m[y, x] == 1.0, idx
    assert not m[0].any() and not m[-1].any() and not m[:, 0].any() and not m[:, -1].any()
    # Zero from a quarter feather (plus a pixel) outside the face oval.
    oval = pts[list(FACE_OVAL)].astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    outside = np.array(
        [cv2.pointPolygonTest(oval, (float(x), float(y)), True) for x, y in zip(xx.ravel()[::7], yy.ravel()[::7])]
    )
    far = outside < -(feather * size / 4 + 2.0)
    assert np.all(m.ravel()[::7][far] == 0.0)
    # Soft edge: the steepest slope is that of a ~feather-wide ramp, not a step.
    gy, gx = np.gradient(m.astype(np.float64))
    assert np.hypot(gx, gy).max() < 2.0 / (feather * size)  # a Gaussian edge peaks at 1.6


def test_the_edit_mask_covers_an_outline_that_moved_either_way(astro_lm: np.ndarray) -> None:
    """A chin moved down by 12 px is pasted in full at its new place and for as far again below it; a chin moved up
    has its old edge covered as well (else the frame's own chin would show below the new one). Where the outline
    did not move, the mask is the face's own."""
    size = 256
    pts = estimate_alignment(astro_lm, size).to_crop(astro_lm)
    chin = FACE_OVAL.index(152)
    lower = list(FACE_OVAL[chin - 2 : chin + 3])  # the chin and two points either side of it
    own = face_mask(pts, size)
    for dy in (12.0, -12.0):
        moved = pts.copy()
        moved[lower, 1] += dy
        mask = edit_mask(pts, moved, size)
        x, y = np.round(pts[152]).astype(int)
        edge = y + int(dy) if dy > 0 else y  # the lower of the old and the new chin edge
        assert own[edge, x] < 0.1  # face_mask alone leaves it to the frame
        assert mask[edge, x] > 0.9
        assert mask[edge + 8, x] > 0.3  # past it as well
        top = np.round(pts[10]).astype(int)  # the forehead's outline did not move
        assert mask[top[1] - 6 : top[1] + 6, top[0]].tolist() == own[top[1] - 6 : top[1] + 6, top[0]].tolist()
        assert np.all(mask >= own)
    assert np.array_equal(edit_mask(pts, None, size), own)
    assert np.array_equal(edit_mask(pts, pts, size), own)
    # A small move is covered as well: a chin dropped by 2 px is pasted nearly in full at its new edge (with the
    # reach only as far again as it moved, the mask there was under a tenth, and the jaw barely followed).
    moved = pts.copy()
    moved[lower, 1] += 2.0
    x, y = np.round(pts[152]).astype(int)
    assert own[y + 2, x] < 0.1 and edit_mask(pts, moved, size)[y + 2, x] > 0.9


# --- paste back --------------------------------------------------------------------------------------


def _setup(frame: np.ndarray, lm: np.ndarray, size: int) -> tuple[Alignment, np.ndarray, np.ndarray]:
    a = estimate_alignment(lm, size)
    return a, crop_face(frame, a), face_mask(a.to_crop(lm), size)


def _warped_support(a: Alignment, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Frame pixels the mask can reach after warping back (support, dilated by a pixel for safety)."""
    w = cv2.warpAffine(
        mask, a.matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0
    )
    return cv2.dilate((w > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


@pytest.mark.parametrize("size", [256, 1024])
@pytest.mark.parametrize("color_match", [True, False])
def test_unedited_crop_reproduces_frame(
    astronaut: np.ndarray, astro_lm: np.ndarray, size: int, color_match: bool
) -> None:
    a, crop, mask = _setup(astronaut, astro_lm, size)
    keep = (astronaut.copy(), crop.copy(), mask.copy())
    out = paste_back(astronaut, crop, crop.copy(), a, mask, color_match=color_match)
    assert out.dtype == np.uint8 and out.shape == astronaut.shape
    inside = _warped_support(a, mask, astronaut.shape)
    assert inside.sum() > 5000
    assert psnr(out, astronaut, inside) == math.inf  # the difference method is exact, not just > 40 dB
    np.testing.assert_array_equal(out, astronaut)
    for before, after in zip(keep, (astronaut, crop, mask)):
        np.testing.assert_array_equal(before, after)  # inputs untouched


def test_unedited_crop_on_full_hd_frame(astronaut: np.ndarray, astro_lm: np.ndarray) -> None:
    # The astronaut upscaled to 1080 lines and placed in a 1920x1080 frame; crop at 1024.
    k = 1080 / 512
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[:, 300:1380] = cv2.resize(astronaut, (1080, 1080), interpolation=cv2.INTER_CUBIC)
    lm = (astro_lm + 0.5) * k - 0.5 + [300.0, 0.0]
    for size in (256, 1024):
        a, crop, mask = _setup(frame, lm, size)
        out = paste_back(frame, crop, crop, a, mask)
        np.testing.assert_array_equal(out, frame)


def test_edit_stays_inside_mask_with_soft_edge(astronaut: np.ndarray, astro_lm: np.ndarray) -> None:
    size = 256
    a, crop, mask = _setup(astronaut, astro_lm, size)
    brighter = np.clip(crop.astype(np.int16) + 40, 0, 255).astype(np.uint8)  # edit the whole crop
    out = paste_back(astronaut, brighter, crop, a, mask, color_match=False)
    change = out.astype(np.float64) - astronaut
    support = _warped_support(a, mask, astronaut.shape)
    assert np.all(change[~support] == 0)  # bit-identical outside the warped mask
    assert change[support].max() >= 35  # the edit shows fully inside
    # No hard edge: the change's slope is bounded by the feathered ramp (40 levels over ~12.8 crop
    # px, i.e. ~9.6 frame px at this crop's 1.33 scale), not a jump at the boundary.
    gy, gx = np.gradient(change.mean(axis=2))
    border = support & ~cv2.erode(support.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert np.hypot(gx, gy)[border].max() < 10.0


def test_mouth_edit_with_color_match(astronaut: np.ndarray, astro_lm: np.ndarray) -> None:
    size = 256
    a, crop, mask = _setup(astronaut, astro_lm, size)
    mouth = a.to_crop(astro_lm)[[13, 14]].mean(axis=0)
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-((xx - mouth[0]) ** 2 + (yy - mouth[1]) ** 2) / (2 * 10.0**2))
    edited = np.clip(crop - 60.0 * blob[..., None], 0, 255).astype(np.uint8)  # a shadow over the mouth
    out = paste_back(astronaut, edited, crop, a, mask, color_match=True)
    change = out.astype(np.float64) - astronaut
    assert np.all(change[~_warped_support(a, mask, astronaut.shape)] == 0)
    mx, my = np.round(a.to_frame(mouth)).astype(int)
    assert change[my, mx].mean() < -50  # colour matching did not undo the local edit
    far = np.hypot(*(np.mgrid[0:512, 0:512][::-1] - np.array([mx, my])[:, None, None])) > 40
    assert np.abs(change[far]).max() <= 1  # nor smear it over the face


def test_color_match_removes_global_cast(astronaut: np.ndarray, astro_lm: np.ndarray) -> None:
    size = 256
    a, crop, mask = _setup(astronaut, astro_lm, size)
    inside = _warped_support(a, mask, astronaut.shape)
    # A generator's colour drift: per-channel gain and offset (kept clear of clipping on the face).
    cast = np.clip(np.rint(crop * np.array([0.92, 1.0, 1.06]) + np.array([-5.0, 8.0, 6.0])), 0, 255)
    cast = cast.astype(np.uint8)
    plain = paste_back(astronaut, cast, crop, a, mask, color_match=False)
    fixed = paste_back(astronaut, cast, crop, a, mask, color_match=True)
    p_plain, p_fixed = psnr(plain, astronaut, inside), psnr(fixed, astronaut, inside)
    # Measured 25.7 dB with the cast, 61.6 dB after matching (only requantisation is left).
    assert p_plain < 30.0 and p_fixed > 50.0, (p_plain, p_fixed)
    np.testing.assert_array_equal(fixed[~inside], astronaut[~inside])


def test_new_content_replaces_the_frames_own_detail(astronaut: np.ndarray, astro_lm: np.ndarray) -> None:
    """A flat patch painted over an eye (a closed lid): pasted as a difference, the frame's fine detail that the
    crop does not hold (the iris's edge, the catchlight) shows through it; marked as replaced, it does not. Outside
    the patch, marking changes nothing."""
    a, crop, mask = _setup(astronaut, astro_lm, 256)
    eye = a.to_crop(astro_lm[[33, 133, 159, 145]])  # the right eye's corners and lids
    (x0, y0), (x1, y1) = np.floor(eye.min(axis=0)).astype(int) - 3, np.ceil(eye.max(axis=0)).astype(int) + 3
    edited = crop.copy()
    edited[y0:y1, x0:x1] = crop[y1 + 6, (x0 + x1) // 2]  # skin from below the eye
    replaced = np.zeros(mask.shape, np.float32)
    replaced[y0:y1, x0:x1] = 1.0
    plain = paste_back(astronaut, edited, crop, a, mask)
    marked = paste_back(astronaut, edited, crop, a, mask, replaced=replaced)
    patch = np.zeros(mask.shape, np.float32)
    patch[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = 1.0  # well inside, clear of the interpolation at the patch's edge
    to_frame = lambda crop_mask: cv2.warpAffine(  # noqa: E731
        crop_mask, a.matrix, astronaut.shape[1::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inside = to_frame(patch) > 0.99
    assert inside.sum() > 100
    spread = lambda image: float(image[inside].astype(np.float64).std(axis=0).mean())  # noqa: E731
    assert spread(plain) > 2.5 * spread(marked) and spread(marked) < 2.0
    outside = cv2.erode((to_frame(replaced) == 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    np.testing.assert_array_equal(plain[outside], marked[outside])


def test_color_match_against_the_warped_crop_keeps_a_warps_contrast(
    astronaut: np.ndarray, astro_lm: np.ndarray
) -> None:
    """Fitted against the original crop, texture that a warp moved reads as lost contrast, and undoing that overdraws
    the face; fitted against the warped crop (``reference``), only the generator's own colour drift is undone."""
    size = 256
    a, crop, mask = _setup(astronaut, astro_lm, size)
    inside = _warped_support(a, mask, astronaut.shape)
    mouth = a.to_crop(astro_lm)[[13, 14]].mean(axis=0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    drop = 10.0 * np.exp(-((xx - mouth[0]) ** 2 + (yy - mouth[1]) ** 2) / (2 * 35.0**2))  # a jaw-drop-like warp
    warped = cv2.remap(crop, xx, (yy - drop).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    exact = paste_back(astronaut, warped, crop, a, mask, color_match=False)  # the warp, pasted as it is
    # A warp alone, matched against itself: nothing to correct, the difference is kept exactly.
    np.testing.assert_array_equal(paste_back(astronaut, warped, crop, a, mask, reference=warped), exact)
    cast = np.clip(np.rint(warped * np.array([0.95, 1.0, 1.04]) + np.array([4.0, -6.0, 3.0])), 0, 255).astype(np.uint8)
    fixed = paste_back(astronaut, cast, crop, a, mask, reference=warped)
    against_original = paste_back(astronaut, cast, crop, a, mask)
    p_fixed, p_original = psnr(fixed, exact, inside), psnr(against_original, exact, inside)
    # Measured 57.9 dB against the warped crop, 38.2 dB against the original.
    assert p_fixed > 45.0 and p_original < p_fixed - 10, (p_fixed, p_original)


@pytest.mark.usefixtures("require_face_model")
@pytest.mark.parametrize("size", [256, 128])
def test_the_gpu_paste_back_gives_the_cpu_one_within_a_level_or_two(astronaut: np.ndarray, size: int) -> None:
    """The paste-back's frame-sized half run by torch (what a GPU job uses; here on the CPU) against OpenCV's, on a
    real face: a real edit from the generator, and a sharp-edged one with painted (replaced) content."""
    from reenact.editing import ExpressionTarget, GeneratorEditor
    from reenact.face.paste_gpu import apply_plan_on
    from reenact.face.tracker import FaceTracker
    from reenact.model.io import load_generator

    with FaceTracker(video_mode=False) as tracker:
        face = tracker(astronaut, 0.0)
    a = estimate_alignment(face.xy, size)
    crop = crop_face(astronaut, a)
    surprised = ExpressionTarget((), "surprised")
    generated = GeneratorEditor(load_generator("default"), lambda aus, t: surprised(aus, t), smooth=False)(
        crop, face, a, 0.0)
    block = crop.copy()
    block[size // 2:size // 2 + size // 5, size // 3:2 * size // 3] = (200, 40, 40)
    replaced = np.zeros((size, size), np.float32)
    replaced[size // 2:size // 2 + size // 8, size // 3:size // 2] = 1
    shifted = np.zeros((size, size, 2), np.float32)
    shifted[size // 3:2 * size // 3, size // 4:3 * size // 4] = (2.5, -1.5)  # content moved: the detail moves too
    cases = [(generated.image, {"reference": generated.reference, "replaced": generated.replaced,
                                "flow": generated.flow}),
             (block, {"replaced": replaced}), (block, {"replaced": replaced, "flow": shifted})]
    for edited, extra in cases:
        mask = edit_mask(a.to_crop(face.xy), None, size)
        cpu = paste_back(astronaut, edited, crop, a, mask, **extra)
        torch_side = paste_back(astronaut, edited, crop, a, mask, apply=apply_plan_on("cpu"), **extra)
        assert (cpu != astronaut).any(axis=2).sum() > 500  # a real change was pasted
        difference = np.abs(cpu.astype(int) - torch_side)
        # OpenCV's remap of the frame's moved detail reads it at positions rounded to 1/32 pixel: two levels at most.
        assert difference.max() <= (2 if "flow" in extra else 1) and difference.mean() < 0.01, difference.mean()
    assert generated.flow is not None and np.abs(generated.flow).max() > 1.0  # the edit's own flow, crop pixels
    # A flow of nothing moves nothing: the paste-back is the one without a flow.
    mask = edit_mask(a.to_crop(face.xy), None, size)
    still = np.zeros((size, size, 2), np.float32)
    assert np.array_equal(paste_back(astronaut, block, crop, a, mask, flow=still),
                          paste_back(astronaut, block, crop, a, mask))
