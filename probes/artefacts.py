"""Measures of visible artefacts that face edits have shown, each an edited aligned crop against its source (and
``lid_streaks`` and ``lip_tint``, read on one image, to compare with the source's own).

Why: the AU readers score whether an edit moved the face as asked, not whether it left marks a viewer sees. Two
marks have been seen: a dark band "like eye shadow" under raised brows, between the brow and the upper-lid crease
(a warp stretched the brows' dark pixels down), and a red, lip-like crescent on the chin below the lower lip.
Each measure is placed by MediaPipe FaceLandmarker landmarks (478 points, crop pixels, x right, y down), is
taken relative to the same face's own skin (so a global brightness or colour shift does not fire it), and is the
edited crop's value minus the source crop's: 0 means no new artefact, positive means one appeared.

Run ``python probes/artefacts.py`` for a self-check on scikit-image's astronaut (no external data), and ``python
probes/artefacts.py pops VIDEO...`` for the worst one-frame pop of each video's mouth (``one_frame_pops``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from reenact.face.tracker import FaceTracker

# Per eye (the face's right eye, on the image's left, first): lower brow edge, upper brow edge, upper-lid line.
BROW_LOWER = ((46, 53, 52, 65, 55), (276, 283, 282, 295, 285))
BROW_UPPER = ((70, 63, 105, 66, 107), (300, 293, 334, 296, 336))
UPPER_LID = ((246, 161, 160, 159, 158, 157, 173), (466, 388, 387, 386, 385, 384, 398))
# Lips' outer contour: lower lip corner to corner (image left to right), then the upper lip back.
LOWER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
UPPER_LIP = (409, 270, 269, 267, 0, 37, 39, 40, 185)
JAW = (379, 378, 400, 377, 152, 148, 176, 149, 150)  # image right to left, through the chin (152)
CHEEKS = (50, 205, 280, 425)  # reference skin for redness

# Shares of the brow-to-lid distance d, measured down from the lower brow edge (band, lid skin) or up from the
# upper brow edge (forehead). The band starts a little below the brow so the brow's own hairs are not in it.
BAND = (0.1, 0.45)
LID_SKIN = (0.5, 0.75)
FOREHEAD = (0.1, 0.5)
SKIN_PERCENTILE = 75  # skin is the lighter part of a reference patch; stray hair, brow and lash pixels are darker
SEGMENTS = 3  # the band is judged in outer, middle and inner thirds, so a partial band is not outvoted
GRID = (12, 36)  # samples per patch: down (rows), across the eye (columns)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _curve(xy: np.ndarray, idx: tuple[int, ...], xs: np.ndarray) -> np.ndarray:
    """y of the polyline through landmarks ``idx`` at columns ``xs`` (linear, in x order)."""
    pts = xy[list(idx)]
    order = np.argsort(pts[:, 0])
    return np.interp(xs, pts[order, 0], pts[order, 1])


def _eye_darkening(lum: np.ndarray, xy: np.ndarray, eye: int) -> np.ndarray:
    """Per band segment: how much darker the band is than this eye's reference skin, as a share of that skin.

    Each patch is sampled bilinearly on a grid that follows the landmarks (columns evenly across the eye, rows
    at fixed shares of the brow-to-lid distance), so the figure moves smoothly with them rather than jumping as
    a thin band gains or loses a row of pixels.
    """
    lower, upper, lid = BROW_LOWER[eye], BROW_UPPER[eye], UPPER_LID[eye]
    x0 = max(xy[list(lower), 0].min(), xy[list(lid), 0].min())
    x1 = min(xy[list(lower), 0].max(), xy[list(lid), 0].max())
    if x1 <= x0:
        return np.full(SEGMENTS, np.nan)
    trim = 0.1 * (x1 - x0)  # the brow's tapering ends are left out
    xs = np.linspace(x0 + trim, x1 - trim, GRID[1])
    yb, yu, yl = (_curve(xy, idx, xs) for idx in (lower, upper, lid))
    d = np.maximum(yl - yb, 1.0)

    def patch(y0: np.ndarray, sign: float, shares: tuple[float, float]) -> np.ndarray:
        t = np.linspace(*shares, GRID[0])[:, None]
        map_y = (y0 + sign * t * d).astype(np.float32)
        map_x = np.broadcast_to(xs, map_y.shape).astype(np.float32)
        return cv2.remap(lum, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    band = patch(yb, 1.0, BAND)
    # The two reference patches weigh equally whatever their sizes.
    skin = 0.5 * (np.percentile(patch(yb, 1.0, LID_SKIN), SKIN_PERCENTILE)
                  + np.percentile(patch(yu, -1.0, FOREHEAD), SKIN_PERCENTILE))
    return np.array([1.0 - np.median(seg) / max(float(skin), 1.0) for seg in np.array_split(band, SEGMENTS, axis=1)])


def brow_band_darkening(source: np.ndarray, edited: np.ndarray, landmarks: np.ndarray,
                        source_landmarks: np.ndarray | None = None) -> float:
    """How much darker a band just under the brows became, as a share of the face's own skin luminance.

    Per eye, on luminance (Rec. 601 Y of the 8-bit RGB): darkening = 1 - median(band) / skin. The band runs from
    the lower brow edge down 10-45% of the brow-to-lid distance d; skin is the mean of two reference patches' 75th
    percentiles (the skin in them, not stray hair or lashes): the lower forehead, 10-50% of d above the upper brow
    edge, and the skin just above the upper lid, 50-75% of d below the lower brow edge. The band is judged in
    outer, middle and inner thirds; the result is the largest, over both eyes and the thirds, of (edited darkening
    - source darkening), each crop placed by its own landmarks. So 0.10 means part of the band is now darker than
    before by a tenth of the skin's luminance (~20 levels on skin at ~200); ~0 means no new band (re-tracking
    noise alone reads up to ~0.03, as the maximum of six differences it leans positive); negative means lighter.
    NaN if the band cannot be placed.

    Args:
        source, edited: (S, S, 3) uint8 RGB aligned face crops of the same size.
        landmarks: (478, 2+) landmarks of the edited face in crop pixels (x right, y down).
        source_landmarks: the source face's landmarks, if they differ (default: ``landmarks``).
    """
    src_xy = np.asarray(landmarks if source_landmarks is None else source_landmarks, dtype=np.float64)[:, :2]
    edit_xy = np.asarray(landmarks, dtype=np.float64)[:, :2]
    src_lum, edit_lum = _luminance(source), _luminance(edited)
    change = [_eye_darkening(edit_lum, edit_xy, eye) - _eye_darkening(src_lum, src_xy, eye) for eye in (0, 1)]
    return float(np.nanmax(np.concatenate(change)))


def _chin_region(xy: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks: the chin between the lower lip and the chin's edge (lips excluded with a margin); cheeks."""
    lip_to_chin = float(np.hypot(*(xy[152] - xy[17])))
    margin = max(2, int(round(0.1 * lip_to_chin)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))

    def polygon(idx: tuple[int, ...]) -> np.ndarray:
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(xy[list(idx)] * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
        return mask

    lips = cv2.dilate(polygon(LOWER_LIP + UPPER_LIP), kernel)
    chin = cv2.erode(polygon(LOWER_LIP + JAW), kernel)  # off the chin's edge (neck, shadow, background)
    cheeks = np.zeros((size, size), np.uint8)
    for i in CHEEKS:
        cv2.circle(cheeks, tuple(int(v) for v in np.round(xy[i])), max(2, int(round(0.25 * lip_to_chin))), 1, -1)
    return (chin > 0) & (lips == 0), (cheeks > 0) & (lips == 0)


def _redness_above_cheeks(rgb: np.ndarray, xy: np.ndarray, percentile: float) -> float:
    a = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 1]  # CIE a*
    chin, cheeks = _chin_region(xy, rgb.shape[0])
    if not chin.any() or not cheeks.any():
        return float("nan")
    return float(np.percentile(a[chin], percentile) - np.median(a[cheeks]))


def chin_redness(source: np.ndarray, edited: np.ndarray, landmarks: np.ndarray,
                 source_landmarks: np.ndarray | None = None, percentile: float = 90.0) -> float:
    """How much redder the chin below the lower lip became, in CIE a* units (Lab of the 8-bit sRGB).

    Per crop: redness = the ``percentile`` (90th) of a* over the chin region (between the lower lip's outer contour
    and the jaw through the chin, less the lips dilated by 10% of the lip-to-chin distance, and eroded by the same
    off the chin's edge), minus the median a* of the cheeks (the same face's own skin, so a global tint cancels).
    Result: edited redness - source redness, each placed by its own landmarks. 0: no change; positive: at least a
    tenth of the chin is that much redder than before, relative to the cheeks. For scale, lips sit ~5-20 a* units
    above the cheeks (7 on the astronaut); JPEG, noise and re-tracking alone read within ~1. NaN if the region is
    empty.

    Args: as ``brow_band_darkening``; ``percentile`` picks how large a red patch it takes to move the figure.
    """
    src_xy = np.asarray(landmarks if source_landmarks is None else source_landmarks, dtype=np.float64)[:, :2]
    edit_xy = np.asarray(landmarks, dtype=np.float64)[:, :2]
    return _redness_above_cheeks(edited, edit_xy, percentile) - _redness_above_cheeks(source, src_xy, percentile)


def lid_streaks(image: np.ndarray, landmarks: np.ndarray) -> float:
    """How streaked the upper lids are: a lid a warp brings far down is its lashes and crease drawn out over the
    eye, a see-through band of vertical streaks (strong across, weak down).

    Per eye, on luminance: the mean |d/dx| over the mean |d/dy| (Sobel) sampled between the skin line above the
    lid and the lid's edge (15-85% of the way down), across the middle 60% of the eye; the larger of the two eyes.
    Not a difference: the figure is compared with real faces' own lids at the same closure. NaN where the band has
    no height.

    Args:
        image: (S, S, 3) uint8 RGB. landmarks: (478, 2+) its landmarks in pixels (x right, y down).
    """
    from reenact.model.networks import GAP_CONTOURS  # per eye: the skin line above the lids, the upper lid, ...

    xy = np.asarray(landmarks, dtype=np.float64)[:, :2]
    lum = _luminance(image)
    gx, gy = (np.abs(cv2.Sobel(lum, cv2.CV_32F, dx, dy, ksize=3)) for dx, dy in ((1, 0), (0, 1)))
    ratios = []
    for eye in (0, 1):
        ring, lid = GAP_CONTOURS[eye][:2]
        x0, x1 = xy[list(lid), 0].min(), xy[list(lid), 0].max()
        xs = np.linspace(x0 + 0.2 * (x1 - x0), x1 - 0.2 * (x1 - x0), GRID[1])
        top, bottom = _curve(xy, ring, xs), _curve(xy, lid, xs)
        if np.median(bottom - top) < 2:
            ratios.append(np.nan)
            continue
        t = np.linspace(0.15, 0.85, GRID[0])[:, None]
        map_y = (top + t * (bottom - top)).astype(np.float32)
        map_x = np.broadcast_to(xs, map_y.shape).astype(np.float32)
        across, down = (cv2.remap(g, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for g in (gx, gy))
        ratios.append(float(across.mean() / max(float(down.mean()), 1e-3)))
    return float(np.nanmax(ratios)) if not np.isnan(ratios).all() else float("nan")


def lip_tint(image: np.ndarray, landmarks: np.ndarray) -> float:
    """How red the lips are: the mean red over the mean green inside the outer lip line. A remembered mouth matched
    in colour to a ring that reached the background (a turned head's cheek edge) came out orange: 1.09-1.13 times
    the source's on `PC-MattDamon` driven by `ST-furious`, where the source's own frames vary by 0.02-0.03.

    Args:
        image: (H, W, 3) uint8 RGB. landmarks: (478, 2+) its landmarks in pixels (x right, y down).
    """
    xy = np.asarray(landmarks, dtype=np.float64)[:, :2]
    lips = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(xy[list(LOWER_LIP + UPPER_LIP)]).astype(np.int32)], 1)
    red, green = cv2.mean(image, lips)[:2]
    return red / max(green, 1.0)


def one_frame_pops(frames: list[np.ndarray], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(N,) per frame, how far it stands apart from both its neighbours, over how far they stand apart, inside its
    box (x0, y0, x1, y1): a part shown for one frame only (a remembered mouth between two painted ones) is high
    (a frame like neither of two like neighbours); a change that stays (a cut from one mouth to another) is 0 (the
    frame is its next neighbour). NaN at the ends. A talking source's own frames reach about 0.8.

    Args:
        frames: (H, W, 3) uint8 RGB, in order. boxes: one per frame.
    """
    pops = np.full(len(frames), np.nan)
    for t in range(1, len(frames) - 1):
        x0, y0, x1, y1 = boxes[t]
        before, now, after = (f[y0:y1, x0:x1].astype(np.float32) for f in frames[t - 1:t + 2])
        apart = float(np.abs(after - before).mean())
        pops[t] = min(float(np.abs(now - before).mean()), float(np.abs(now - after).mean())) / max(apart, 1.0)
    return pops


def _mouth_pops(path: str) -> None:
    """The worst ``one_frame_pops`` of a video's mouth (the outer lips' box, grown by half the mouth's width)."""
    import av

    from reenact.face.tracker import FaceTracker

    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    boxes = []
    with FaceTracker(os.environ.get("REENACT_FACE_LANDMARKER"), video_mode=True) as tracker:
        for i, frame in enumerate(frames):
            face = tracker(frame, i / 25)
            xy = face.xy[list(LOWER_LIP + UPPER_LIP), :2] if face is not None else None
            if xy is None:
                boxes.append(boxes[-1] if boxes else (0, 0, frame.shape[1], frame.shape[0]))
                continue
            (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
            pad = 0.5 * (x1 - x0)
            boxes.append((max(int(x0 - pad), 0), max(int(y0 - pad), 0), int(x1 + pad), int(y1 + pad)))
    pops = one_frame_pops(frames, boxes)
    worst = int(np.nanargmax(pops))
    print(f"{path}: the mouth's worst one-frame pop {pops[worst]:.2f} (frame {worst}); "
          f"frames over 1: {int(np.nansum(pops > 1))} of {len(frames)}")


def _demo() -> None:
    """Self-check on the astronaut: synthetic artefacts fire their measure; mild, global changes do not."""
    from skimage.data import astronaut

    from reenact.face.align import crop_face, estimate_alignment
    from reenact.face.tracker import FaceTracker

    model = os.environ.get("REENACT_FACE_LANDMARKER")  # None: the cache, else the checked download
    with FaceTracker(model, video_mode=False) as tracker:
        frame = astronaut()
        face = tracker(frame, 0.0)
        assert face is not None, "no face found in the astronaut"
        crop = crop_face(frame, estimate_alignment(face.xy, 256))  # the project's aligned 256-pixel crop
        face = tracker(crop, 0.0)
        assert face is not None, "no face found in the aligned crop"
        _demo_checks(tracker, crop, face.xy.astype(np.float64))


def _demo_checks(tracker: FaceTracker, crop: np.ndarray, xy: np.ndarray) -> None:
    def track(image: np.ndarray) -> np.ndarray:
        """The landmarks as a pipeline would see them on the edited crop (the source's if none found)."""
        found = tracker(image, 0.0)
        return xy if found is None else found.xy.astype(np.float64)

    def soft(mask: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)[..., None]

    # (a) A dark band: from the lower brow edge 5-45% down towards the lid, 20% darker, soft edges.
    band = np.zeros(crop.shape[:2], np.uint8)
    for eye in (0, 1):
        brow, lid = xy[list(BROW_LOWER[eye])], xy[list(UPPER_LID[eye])]
        d = float(np.median(lid[:, 1]) - np.median(brow[:, 1]))
        outline = np.concatenate([brow + [0, 0.05 * d], (brow + [0, 0.45 * d])[::-1]])
        cv2.fillPoly(band, [np.round(outline).astype(np.int32)], 1)
    shadowed = np.clip(crop * (1 - 0.2 * soft(band)), 0, 255).astype(np.uint8)

    # (b) A lip-like crescent: a thick arc below the lower lip, blended 80% towards this face's lower-lip colour.
    lip = np.zeros(crop.shape[:2], np.uint8)
    inner = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)  # the lower lip's inner contour, right to left
    cv2.fillPoly(lip, [np.round(xy[list(LOWER_LIP + inner)]).astype(np.int32)], 1)
    lip_colour = np.median(crop[lip > 0], axis=0)
    h, width = float(xy[152, 1] - xy[17, 1]), float(xy[291, 0] - xy[61, 0])
    crescent = np.zeros(crop.shape[:2], np.uint8)
    centre = (int(round(xy[17, 0])), int(round(xy[17, 1] + 0.2 * h)))
    cv2.ellipse(crescent, centre, (int(0.35 * width), int(0.2 * h)), 0, 20, 160, 1, max(2, int(0.2 * h)))
    w = 0.8 * soft(crescent)
    reddened = np.clip(crop * (1 - w) + lip_colour * w, 0, 255).astype(np.uint8)

    _, jpeg = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    controls = {
        "identical": crop.copy(),
        "JPEG q85": cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1].copy(),
        "brighter x1.08 +5": np.clip(crop * 1.08 + 5, 0, 255).astype(np.uint8),
        "darker x0.92 -5": np.clip(crop * 0.92 - 5, 0, 255).astype(np.uint8),
        "warm tint R+8 B-6": np.clip(crop.astype(np.int16) + [8, 0, -6], 0, 255).astype(np.uint8),
    }
    share = (crescent > 0)[_chin_region(xy, crop.shape[0])[0]].mean()
    print(f"edited vs source, landmarks re-tracked on each edited crop; crescent covers {share:.0%} of the chin region")
    print(f"{'pair':<24}{'brow band (share)':>19}{'chin redness (a*)':>19}")
    results = {}
    for name, edited in {**controls, "dark band under brows": shadowed, "lip-red crescent": reddened}.items():
        marks = track(edited)
        results[name] = (brow_band_darkening(crop, edited, marks, xy), chin_redness(crop, edited, marks, xy))
        print(f"{name:<24}{results[name][0]:>19.4f}{results[name][1]:>19.2f}")
    for name in controls:
        assert abs(results[name][0]) < 0.04 and abs(results[name][1]) < 1.0, f"a control fired: {name}"
    assert results["dark band under brows"][0] > 0.1, "the band was not seen"
    assert results["lip-red crescent"][1] > 2.0, "the crescent was not seen"
    assert abs(results["dark band under brows"][1]) < 1.0 and abs(results["lip-red crescent"][0]) < 0.04
    print("ok: each measure fires on its artefact and stays near 0 on the controls and on the other artefact")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 2 and sys.argv[1] == "pops":  # python probes/artefacts.py pops VIDEO...
        for video in sys.argv[2:]:
            _mouth_pops(video)
    else:
        _demo()
