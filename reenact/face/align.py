"""Face alignment: a stable similarity-aligned face crop, its mask, and pasting an edit back.

Coordinates are OpenCV pixel coordinates: x right, y down, pixel centres at integers. Landmarks are the
478 points of MediaPipe's FaceLandmarker in frame pixels (normalised x * width, y * height).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from reenact.smoothing import OneEuroFilter

__all__ = [
    "MIN_CROP_SIZE",
    "MAX_CROP_SIZE",
    "STABLE_LANDMARKS",
    "TEMPLATE",
    "FACE_OVAL",
    "Alignment",
    "estimate_alignment",
    "similarity_transform",
    "stabilise",
    "FaceAligner",
    "crop_face",
    "face_mask",
    "edit_mask",
    "paste_back",
]

MIN_CROP_SIZE = 64
MAX_CROP_SIZE = 1024

# Mesh points that move with head pose but hardly with expression: nose bridge and upper nose (midline),
# glabella and lower forehead, the four eye corners, the upper cheeks beside the nose, and the face sides
# at eye level. Lips, lids, brows, the upper forehead (follows the brows) and the jaw are left out.
# Chosen by measuring, on 88 clips of the shared training data, how much each point moves against the
# eye corners and nose bridge, and how much the crop shakes on still heads and follows jawOpen,
# smile and brow blendshapes on expressive clips.
STABLE_LANDMARKS: tuple[int, ...] = (
    168, 6, 197, 195, 5, 8, 9, 151,  # midline: nose bridge to nose, glabella, forehead
    33, 133, 362, 263,  # eye corners
    121, 350, 47, 277, 119, 348, 129, 358, 101, 330,  # beside the nose, upper cheeks
    108, 337, 69, 299,  # lower forehead
    127, 356, 234, 454,  # face sides at eye level
)  # fmt: skip

# Where STABLE_LANDMARKS sit in the crop, as fractions of the crop side (x right, y down).
# Derivation: MediaPipe FaceLandmarker (face_landmarker.task) on every frame of 78 shared clips and 10
# GRID clips (16,305 frames); frames with |yaw| and |pitch| < 8 deg (pose from the facial transformation
# matrix) kept: 10,201 frames of 47 identities. Generalized Procrustes (similarity on these points) to
# a mean shape, each identity weighted equally, then made left-right symmetric with the mesh's mirror
# pairs and normalised to level eyes. Cross-check: MediaPipe's canonical face model, projected
# frontally, fits this mean within 0.035 inter-ocular distances rms (0.065 max, the face sides).
# Framing: the FFHQ recipe (square centred on eye midpoint + 0.1 * eye-to-mouth, side 4 x eye
# distance) cuts the chin of 5% of jaw-open frames, so it is zoomed out to 4.8 x eye distance and
# centred on eye midpoint + 0.32 * eye-to-mouth. Result: eyes at y 0.43 (0.21 apart), mouth corners at
# y 0.65, chin at y 0.81; over all frames the mesh stays within x 0.19-0.81 (1st-99th percentile) and
# y 0.23-0.89 (worst frame).
TEMPLATE: np.ndarray = np.array(
    [
        [0.5000, 0.4133], [0.5000, 0.4395], [0.5000, 0.4625], [0.5000, 0.4831],
        [0.5000, 0.5052], [0.5000, 0.3853], [0.5000, 0.3561], [0.5000, 0.2998],
        [0.3536, 0.4285], [0.4428, 0.4323], [0.5572, 0.4323], [0.6464, 0.4285],
        [0.4397, 0.4679], [0.5603, 0.4679], [0.4409, 0.4841], [0.5591, 0.4841],
        [0.3888, 0.4858], [0.6112, 0.4858], [0.4324, 0.5484], [0.5676, 0.5484],
        [0.3844, 0.5104], [0.6156, 0.5104],
        [0.4444, 0.2991], [0.5556, 0.2991], [0.3952, 0.3006], [0.6048, 0.3006],
        [0.2668, 0.4414], [0.7332, 0.4414], [0.2682, 0.4903], [0.7318, 0.4903],
    ],
    dtype=np.float64,
)  # fmt: skip
TEMPLATE.setflags(write=False)

# MediaPipe's face-oval contour (FaceLandmarksConnections.FACE_LANDMARKS_FACE_OVAL), in order.
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip

_MESH_POINTS = 468  # landmarks of the mesh proper; 468-477 are the irises, not used here


def _check_crop_size(crop_size: int) -> int:
    if isinstance(crop_size, bool) or not isinstance(crop_size, (int, np.integer)):
        raise ValueError(f"crop_size must be an integer, got {crop_size!r}")
    if not MIN_CROP_SIZE <= crop_size <= MAX_CROP_SIZE:
        raise ValueError(f"crop_size must be {MIN_CROP_SIZE}..{MAX_CROP_SIZE}, got {crop_size}")
    return int(crop_size)


def _check_landmarks(landmarks_xy: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks_xy, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < _MESH_POINTS or pts.shape[1] < 2:
        raise ValueError(f"landmarks must be (478, 2) pixel coordinates, got shape {pts.shape}")
    pts = pts[:, :2]
    if not np.all(np.isfinite(pts)):
        raise ValueError("landmarks contain NaN or infinity")
    return pts


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name} must be an (H, W, 3) image, got shape {img.shape}")
    return img


# eq=False: field-wise == on numpy arrays is ambiguous; compare .matrix explicitly instead.
@dataclass(frozen=True, eq=False)
class Alignment:
    """A similarity transform from frame pixels to crop pixels.

    Attributes:
        matrix: 2x3 affine matrix, crop = matrix @ [x, y, 1] (OpenCV convention).
        crop_size: side of the square crop in pixels.
        inverse: 2x3 affine matrix from crop pixels back to frame pixels.
    """

    matrix: np.ndarray
    crop_size: int
    inverse: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64)  # a private copy: callers cannot alter it later
        if m.shape != (2, 3) or not np.all(np.isfinite(m)):
            raise ValueError(f"matrix must be a finite 2x3 array, got {m.shape}")
        if abs(np.linalg.det(m[:, :2])) < 1e-12:
            raise ValueError("matrix is singular")
        size = _check_crop_size(self.crop_size)
        inv = cv2.invertAffineTransform(m)
        m.setflags(write=False)
        inv.setflags(write=False)
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "crop_size", size)
        object.__setattr__(self, "inverse", inv)

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def angle(self) -> float:
        """Rotation from frame to crop in radians; positive turns content clockwise on screen (y down)."""
        return float(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))

    def to_crop(self, points_xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) frame pixel coordinates into the crop."""
        p = np.asarray(points_xy, dtype=np.float64)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_frame(self, points_xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) crop pixel coordinates back into the frame."""
        p = np.asarray(points_xy, dtype=np.float64)
        return p @ self.inverse[:, :2].T + self.inverse[:, 2]

    def corners_in_frame(self) -> np.ndarray:
        """The crop's four corners (top-left, top-right, bottom-right, bottom-left) in frame pixels."""
        s = self.crop_size - 1.0
        return self.to_frame(np.array([[0.0, 0.0], [s, 0.0], [s, s], [0.0, s]]))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src onto dst; 2x3."""
    # Closed form (the 2-D case of Umeyama 1991): with centred points, the transform's
    # [[a, -b], [b, a]] block is linear in a and b, so it has an exact least-squares solution.
    # Reflections cannot occur in this parametrisation.
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    var = float(np.sum(s * s))
    if var < 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    a = float(np.sum(s * d)) / var
    b = float(np.sum(s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0])) / var
    lin = np.array([[a, -b], [b, a]])
    return np.hstack([lin, (md - lin @ ms)[:, None]])


def stabilise(landmarks: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """(N, 478, 2) landmarks each brought onto ``onto`` (478, 2) by a similarity on STABLE_LANDMARKS: what is left
    is expression (and the part of a head turn that a similarity cannot take out)."""
    stable = list(STABLE_LANDMARKS)
    out = np.empty(landmarks.shape, dtype=np.float64)
    for i, points in enumerate(landmarks):
        m = similarity_transform(points[stable].astype(np.float64), onto[stable].astype(np.float64))
        out[i] = points[:, :2] @ m[:, :2].T + m[:, 2]
    return out


def estimate_alignment(landmarks_xy: np.ndarray, crop_size: int = 256) -> Alignment:
    """Fit the similarity transform taking the stable landmarks onto the template (no smoothing).

    Args:
        landmarks_xy: (478, 2) MediaPipe landmarks in frame pixels (extra columns such as z are ignored).
        crop_size: side of the crop, MIN_CROP_SIZE..MAX_CROP_SIZE.
    """
    size = _check_crop_size(crop_size)
    pts = _check_landmarks(landmarks_xy)
    idx = list(STABLE_LANDMARKS)
    return Alignment(similarity_transform(pts[idx], TEMPLATE * size), size)


class FaceAligner:
    """Per-frame alignment with temporally smoothed similarity parameters.

    The raw fit jitters with the landmarks (about 0.15-0.35 crop pixels per frame on the GRID clips'
    nearly still heads at 256 px). A One Euro filter on the crop's pose holds a still head's crop still and
    lets head motion through. Lag is harmless to the edit itself (paste_back uses the same transform,
    so a lagging crop only shifts the face inside the crop), but it must stay small for the framing to
    hold: a leash limits how far any crop corner may trail the raw fit, which bounds the lag on sudden
    moves without raising the cutoff (and the jitter) for everything else.

    The filtered state is the crop's centre and its half-width vector (which carries scale and
    rotation) in frame pixels, divided by the crop's side length in frame pixels at the first frame of
    the shot, so the parameters do not depend on the face's size in the frame. A linear blend of
    similarity transforms is still a similarity, so filtering these four numbers is well defined.

    Defaults were tuned on MediaPipe landmarks of 88 shared clips. On the GRID clips (a speaker with
    a nearly still head) the crop corners' high-frequency jitter drops 7.2x and their median
    frame-to-frame step 3.2x; on the other, livelier clips the jitter drops 3.4x while the lag stays
    within max_lag (10 px at 256; the leash acts on about 11% of their frames). A steady motion's lag
    stays under 1 / (2 pi beta) = 0.04 crop sides without the leash. After a move stops, the crop
    settles slowly (min_cutoff), which is a drift, not a shake.

    Args:
        crop_size: side of the crop, MIN_CROP_SIZE..MAX_CROP_SIZE.
        smooth: False returns the raw per-frame fit.
        min_cutoff: One Euro cutoff (Hz) for a still head.
        beta: One Euro speed coefficient, in Hz per (crop sides per second).
        d_cutoff: One Euro cutoff (Hz) of the speed estimate.
        max_lag: the most any crop corner may trail the raw fit, as a fraction of the crop side;
            None for no leash.
    """

    def __init__(
        self,
        crop_size: int = 256,
        smooth: bool = True,
        min_cutoff: float = 0.05,
        beta: float = 4.0,
        d_cutoff: float = 0.3,
        max_lag: float | None = 0.04,
    ) -> None:
        self.crop_size = _check_crop_size(crop_size)
        self.smooth = bool(smooth)
        if max_lag is not None and not max_lag > 0:
            raise ValueError(f"max_lag must be positive or None, got {max_lag}")
        self.max_lag = max_lag
        self._filter = OneEuroFilter(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        self._unit: float | None = None  # crop side in frame pixels at the shot's first frame

    def reset(self) -> None:
        """Start afresh, e.g. at a shot change or after the face was lost."""
        self._filter.reset()
        self._unit = None

    def __call__(self, landmarks_xy: np.ndarray, t: float) -> Alignment:
        """Alignment for the frame at time t (seconds) with the given landmarks (frame pixels)."""
        raw = estimate_alignment(landmarks_xy, self.crop_size)
        if not self.smooth:
            return raw
        half = self.crop_size / 2.0
        inv = raw.inverse
        centre = inv[:, :2] @ np.array([half, half]) + inv[:, 2]
        half_width = inv[:, :2] @ np.array([half, 0.0])
        if self._unit is None:
            self._unit = 2.0 * float(np.hypot(*half_width))
        raw_state = np.concatenate([centre, half_width]) / self._unit
        state = self._filter(raw_state, t)
        if self.max_lag is not None:
            # A corner is centre +- half_width +- its perpendicular, so a state change moves the
            # corners by at most |d centre| + sqrt(2) |d half_width|.
            dev = state - raw_state
            corner_dev = float(np.hypot(*dev[:2]) + math.sqrt(2.0) * np.hypot(*dev[2:]))
            if corner_dev > self.max_lag:
                state = raw_state + dev * (self.max_lag / corner_dev)
        c, v = state[:2] * self._unit, state[2:] * self._unit
        lin = np.array([[v[0], -v[1]], [v[1], v[0]]]) / half  # crop -> frame
        inverse = np.hstack([lin, (c - lin @ np.array([half, half]))[:, None]])
        return Alignment(cv2.invertAffineTransform(inverse), self.crop_size)


def crop_face(image: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Warp the aligned face crop out of image: (crop_size, crop_size, 3), image's dtype.

    Bilinear, border replicated. When the crop shrinks the face by more than 2x, the needed region is
    first box-filtered down by an integer factor so that fine detail does not alias.
    """
    img = _check_image(image, "image")
    size = alignment.crop_size
    m = alignment.matrix
    factor = int(1.0 / alignment.scale) if alignment.scale < 0.5 else 1
    if factor == 1:
        return cv2.warpAffine(
            img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    # Only the part of the frame the crop covers is reduced (a 4K frame may hold a small crop).
    h, w = img.shape[:2]
    corners = alignment.corners_in_frame()
    x0 = max(int(np.floor(corners[:, 0].min())) - factor, 0)
    y0 = max(int(np.floor(corners[:, 1].min())) - factor, 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + factor + 1, w)
    y1 = min(int(np.ceil(corners[:, 1].max())) + factor + 1, h)
    if x1 <= x0 or y1 <= y0:  # the crop lies wholly outside the frame: replicate the nearest edge
        return cv2.warpAffine(
            img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    roi = img[y0:y1, x0:x1]
    # Pad to whole blocks by replicating the edge, as the warp's border mode would.
    pad_y, pad_x = (-roi.shape[0]) % factor, (-roi.shape[1]) % factor
    if pad_y or pad_x:
        roi = cv2.copyMakeBorder(roi, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
    small = cv2.resize(
        roi,
        (roi.shape[1] // factor, roi.shape[0] // factor),
        interpolation=cv2.INTER_AREA,
    )
    # Small pixel (u, v) is the mean of a factor x factor block, centred at frame
    # (x0 + factor * u + (factor - 1) / 2, ...): compose that with the frame -> crop matrix.
    to_frame = np.array(
        [[factor, 0.0, x0 + (factor - 1) / 2.0], [0.0, factor, y0 + (factor - 1) / 2.0], [0, 0, 1]]
    )
    m_small = m @ to_frame
    return cv2.warpAffine(
        small, m_small, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


EDGE_FEATHER = 0.05  # the paste-back mask's soft edge, as a share of the crop's side


def face_mask(landmarks_xy_in_crop: np.ndarray, crop_size: int, feather: float = EDGE_FEATHER) -> np.ndarray:
    """Feathered mask of the face (inside MediaPipe's face oval), float32 (crop_size, crop_size) in [0, 1].

    The filled oval is eroded and Gaussian-blurred so that the mask falls from 1 to 0 over about
    ``feather * crop_size`` pixels around the oval (about 0.02 on the oval itself) and is exactly 0
    from about ``feather * crop_size / 4`` pixels outside it onwards. It is also exactly 0 on the
    crop's border, so a pasted edit never shows the crop's square outline.

    Args:
        landmarks_xy_in_crop: (478, 2) landmarks in crop pixels (e.g. Alignment.to_crop of the frame's).
        crop_size: side of the crop.
        feather: width of the soft edge as a fraction of crop_size, 0 < feather <= 0.25.
    """
    size = _check_crop_size(crop_size)
    pts = _check_landmarks(landmarks_xy_in_crop)
    if not 0.0 < feather <= 0.25:
        raise ValueError(f"feather must be in (0, 0.25], got {feather}")
    sigma = feather * size / 4.0  # the Gaussian's 2-98% rise spans 4 sigma
    erode = 2.0 * sigma  # so the oval itself gets ~2% (Phi(-2))
    reach = math.ceil(3.0 * sigma)  # the blur kernel's radius: the mask's reach past the eroded edge

    # 4 fractional bits for sub-pixel edges; clipping keeps wild points inside int32.
    oval = np.clip(pts[list(FACE_OVAL)], -4.0 * size, 5.0 * size)
    poly = np.round(oval * 16.0).astype(np.int32)
    mask = np.zeros((size, size), np.float32)
    # Everything below happens in the oval's bounding box, with room for a ring of zeros around it (so the
    # distances inside are those of the whole crop) and for the blur's reach: the same numbers as over the
    # whole crop, on about half the pixels. Box coordinates are crop pixels minus (x0, y0).
    margin = reach + 3
    x0, y0 = (max(int(v) - margin, 0) for v in poly.min(axis=0) // 16)
    x1, y1 = (min(int(v) + margin + 2, size) for v in poly.max(axis=0) // 16)
    if x1 <= x0 or y1 <= y0:
        return mask  # the oval lies wholly outside the crop
    filled = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(filled, [poly - np.array([x0 * 16, y0 * 16], np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    # Erosion by a disc, via the distance to the outside: much faster than a big kernel at 1024 px,
    # and the 5x5 approximation's ~2% distance error is irrelevant here.
    inside_dist = cv2.distanceTransform(filled, cv2.DIST_L2, 5)
    core = (inside_dist > erode).astype(np.float32)
    # Clear a band at the crop edge so the blurred mask is 0 on the border even if the oval leaves
    # the crop (a face cut by the frame edge or an extreme pose).
    band = reach + 1
    core[: max(band - y0, 0), :] = 0
    core[max(size - band - y0, 0) :, :] = 0
    core[:, : max(band - x0, 0)] = 0
    core[:, max(size - band - x0, 0) :] = 0
    # The zero band at the crop edge, or the zero margin around the oval, makes the border mode irrelevant.
    box = cv2.GaussianBlur(core, (2 * reach + 1, 2 * reach + 1), sigma)
    # Below 1/512 the mask cannot move an 8-bit pixel by half a level, so paste_back's rounding would
    # drop it anyway: snapping it to exactly 0 gives the mask a tight support (and a smaller box to
    # paste) without changing any output pixel.
    box[box < 1.0 / 512.0] = 0.0
    mask[y0:y1, x0:x1] = np.clip(box, 0.0, 1.0)
    return mask


def edit_mask(landmarks_xy_in_crop: np.ndarray, moved_xy_in_crop: np.ndarray | None, crop_size: int) -> np.ndarray:
    """The paste-back mask of an edit: the face where its landmarks were and, where its outline moved, past both
    the old and the new outline by as far again as it moved, plus the mask's soft edge. face_mask fades to 0 on the
    outline itself, so a mask that only reached the new outline would leave a dropped chin's edge mostly the
    frame's own (the chin seemed not to move), and one that only reached the old outline would leave the edge of a
    chin that rose. Without the soft edge's width as well, a jaw that dropped 2 px at 256 px got under a tenth of
    the mask on its new outline, and MediaPipe found the output's jaw following a driver's at 0.3-0.6 of its
    motion."""
    mask = face_mask(landmarks_xy_in_crop, crop_size)
    if moved_xy_in_crop is None:
        return mask
    oval = list(FACE_OVAL)
    before = np.asarray(landmarks_xy_in_crop, np.float64)[oval]
    after = np.asarray(moved_xy_in_crop, np.float64)[oval]
    centre = before.mean(axis=0)
    further = np.linalg.norm(after - centre, axis=1) > np.linalg.norm(before - centre, axis=1)
    outline = np.where(further[:, None], after, before)  # whichever lies further out, point by point
    outward = (outline - centre) / np.maximum(np.linalg.norm(outline - centre, axis=1, keepdims=True), 1e-6)
    moved = np.linalg.norm(after - before, axis=1, keepdims=True)
    edge = EDGE_FEATHER * crop_size * np.clip(moved, 0.0, 1.0)  # the soft edge's width where it moved a pixel or more
    reach = np.array(landmarks_xy_in_crop, np.float64)
    reach[oval] = outline + outward * (moved + edge)
    return np.maximum(mask, face_mask(reach, crop_size))


def _median(x: np.ndarray) -> float:
    """np.median of a 1-D array, without its checks and copies."""
    k = x.size // 2
    if x.size % 2:
        return float(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return float((part[k - 1] + part[k]) / 2)


def _robust_gain_offset(orig: np.ndarray, edit: np.ndarray) -> tuple[float, float]:
    """Fit edit ~= gain * orig + offset, ignoring pixels the edit really changed (outliers)."""
    keep = np.ones(orig.shape, bool)
    gain, offset = 1.0, 0.0
    for _ in range(3):
        o, e = orig[keep], edit[keep]
        if o.size < 16:
            break
        mo, me = float(o.mean()), float(e.mean())
        var = float(np.mean((o - mo) * (o - mo)))  # same float ops as the covariance: gain 1 exactly
        # A flat region gives no handle on contrast: match the offset only. Gains far from 1 are
        # more likely an edit than a colour drift, so they are bounded.
        gain = float(np.mean((o - mo) * (e - me))) / var if var > 1.0 else 1.0
        gain = min(max(gain, 0.5), 2.0)
        offset = me - gain * mo
        res = edit - (gain * orig + offset)
        kept = res[keep]
        mad = _median(np.abs(kept - _median(kept)))
        keep = np.abs(res) <= max(3.0 * 1.4826 * mad, 2.0)
    return gain, offset


def colour_drift(edited: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """Per channel, (gain, offset) of edited ~= gain * reference + offset, fitted robustly (the pixels an edit
    really changed are outliers) on the crops' pixels where ``mask`` >= 0.5; [] with too few pixels to fit on.
    The fit compares the two pixel by pixel, so the reference must show the same content in the same place."""
    # The fit needs only a few thousand pixels: sample the crop inside the mask on a regular grid, and of
    # that every other pixel in a checkerboard pattern (3,000-10,000 pixels; about 6,000 of a 256 crop's face).
    inside = mask >= 0.5
    step = max(1, round(math.sqrt(np.count_nonzero(inside) / 12000.0)))
    inside = inside[::step, ::step]
    inside[::2, 1::2] = False
    inside[1::2, ::2] = False
    # (channels, samples), each channel contiguous
    ri = np.ascontiguousarray(reference[::step, ::step][inside].T, dtype=np.float32)
    ei = np.ascontiguousarray(edited[::step, ::step][inside].T, dtype=np.float32)
    return [_robust_gain_offset(ri[c], ei[c]) for c in range(edited.shape[2])] if ri.shape[1] >= 64 else []


def _matched_difference(
    edited: np.ndarray, original: np.ndarray, mask: np.ndarray, color_match: bool, reference: np.ndarray | None = None
) -> np.ndarray:
    """edited - original as float32, after mapping edited's global colour onto ``reference``'s (original's when
    None)."""
    # OpenCV's arithmetic (a few times faster than NumPy's here, same float32 operations) takes uint8 and float32.
    e, o = (a if a.dtype in (np.uint8, np.float32) else a.astype(np.float32) for a in (edited, original))
    if not color_match:
        return cv2.subtract(e, o, dtype=cv2.CV_32F)
    fits = colour_drift(e, o if reference is None else reference, mask)
    if all(g == 1.0 and b == 0.0 for g, b in fits):
        return cv2.subtract(e, o, dtype=cv2.CV_32F)  # nothing to correct (or to fit on): keep the difference exact
    # Corrected edited = (edited - offset) / gain, minus original.
    offset = tuple(float(np.float32(b)) for _, b in fits) + (0.0,)
    gain = tuple(float(np.float32(g)) for g, _ in fits) + (1.0,)
    return cv2.subtract(cv2.divide(cv2.subtract(e, offset, dtype=cv2.CV_32F), gain), o, dtype=cv2.CV_32F)


def paste_back(
    frame: np.ndarray,
    edited_crop: np.ndarray,
    original_crop: np.ndarray,
    alignment: Alignment,
    mask: np.ndarray,
    color_match: bool = True,
    replaced: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    apply: Callable[[np.ndarray, PastePlan], np.ndarray] | None = None,
    flow: np.ndarray | None = None,
) -> np.ndarray:
    """Put an edited crop back into the frame at the frame's own resolution.

    Adds (edited - original), warped back into the frame and weighted by the warped mask, to the
    frame. The face keeps the frame's native detail wherever the edit changed nothing, an unedited crop
    returns the frame unchanged, and pixels where the warped mask is 0 are bit-identical to the input.
    Only the mask's bounding box in the frame is processed.

    Args:
        frame: (H, W, 3) uint8 frame the crop was taken from.
        edited_crop: (S, S, 3) edited crop, same value range as the frame (any real dtype).
        original_crop: (S, S, 3) crop_face(frame, alignment), before editing.
        alignment: the alignment used for the crop.
        mask: (S, S) float mask in [0, 1], e.g. from face_mask.
        color_match: first map edited's global per-channel gain and offset (robustly fitted inside the
            mask, ignoring the pixels the edit changed) onto original's, so a generator's colour drift
            does not show as a seam. The identity when edited == original (or == reference).
        replaced: (S, S) float in [0, 1], where the edited crop is new content rather than the original's moved
            (a painted mouth interior or lid). There the frame's own fine detail, which the difference would keep
            (a catchlight or the eye's outline showing through a painted lid), is dropped as well.
        reference: (S, S, 3) what the colour match fits edited to, pixel by pixel, in place of original: for a
            warp-then-texture edit, the warped original, which shows the same content in the same place. Fitted
            against the original itself, the texture a warp moved reads as lost contrast (a fitted gain of 0.59-0.79
            on surprised faces, lower the stronger the warp), and undoing it overdrew the edited face.
        apply: what warps the plan's change into the frame's box and adds it (``reenact.face.paste_gpu`` on a GPU);
            None: OpenCV on the CPU.
        flow: (S, S, 2) the edit's backward flow in crop pixels (each crop pixel's content came from that far
            away), or None. The frame's own fine detail, which the crop does not hold, then moves with it: kept in
            place, a moved edge left its old outline behind (a pale double line over an upper lip brought down on a
            512-pixel face).

    Returns:
        A new uint8 frame.
    """
    img = _check_image(frame, "frame")
    if img.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {img.dtype}")
    size = alignment.crop_size
    edited = _check_image(edited_crop, "edited_crop")
    original = _check_image(original_crop, "original_crop")
    m = np.asarray(mask, dtype=np.float32)
    crops = [("edited_crop", edited), ("original_crop", original), ("mask", m)]
    if reference is not None:
        reference = _check_image(reference, "reference")
        crops.append(("reference", reference))
    for name, arr in crops:
        if arr.shape[:2] != (size, size):
            raise ValueError(f"{name} must be {size}x{size}, got {arr.shape[:2]}")
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    support = m > 0  # NaN is not
    m = np.where(support, np.minimum(m, 1.0), np.float32(0.0))

    if flow is not None and np.shape(flow) != (size, size, 2):
        raise ValueError(f"flow must be {size}x{size}x2, got {np.shape(flow)}")
    plan = _paste_plan(img.shape, edited, original, alignment, m, color_match, replaced, reference, flow)
    out = img.copy()
    if plan is not None:
        x0, y0, x1, y1 = plan.roi
        out[y0:y1, x0:x1] = (apply or _apply_plan)(img[y0:y1, x0:x1], plan)
    return out


@dataclass(frozen=True, eq=False)
class PastePlan:
    """What a paste-back adds to a frame, worked out on the crop (small): the change and its mask on the crop's box
    around the mask, and the affine map that carries it into the frame's box ``roi`` (x0, y0, x1, y1). Applying it
    (warping it into the frame and adding it) is the part that grows with the frame: ``_apply_plan`` on the CPU,
    ``reenact.face.paste_gpu`` on a GPU."""

    diff: np.ndarray  # (h, w, 3) float32: the colour-matched change, low-passed to the frame's resolution
    mask: np.ndarray  # (h, w) float32 in [0, 1]
    fwd: np.ndarray  # (2, 3): a frame box pixel (u, v) samples the crop's box at fwd @ (u, v, 1)
    roi: tuple[int, int, int, int]
    original: np.ndarray | None = None  # (h, w, 3) float32, low-passed, where ``replaced`` or ``flow`` is set
    replaced: np.ndarray | None = None  # (h, w) float32: where the crop is new content (the frame's detail goes)
    flow: np.ndarray | None = None  # (h, w, 3) float32: where the crop's content came from, in frame pixels, and
    # how much of the frame's detail moves with it (``_frame_moves``)


def _paste_plan(shape: tuple[int, ...], edited: np.ndarray, original: np.ndarray, alignment: Alignment,
                m: np.ndarray, color_match: bool, replaced: np.ndarray | None, reference: np.ndarray | None,
                flow: np.ndarray | None = None) -> PastePlan | None:
    """``paste_back``'s work on the crop (``m``: its mask, in [0, 1]); None where nothing is pasted."""
    size = alignment.crop_size
    support = m > 0
    rows, cols = np.nonzero(np.any(support, axis=1))[0], np.nonzero(np.any(support, axis=0))[0]
    if rows.size == 0:
        return None
    # Shrinking the crop back into a smaller face would alias the difference's fine detail, so it is
    # low-passed to the frame's resolution first.
    shrink = alignment.scale  # crop pixels per frame pixel
    sigma = 0.5 * math.sqrt(shrink * shrink - 1.0) if shrink > 1.5 else 0.0
    # Work on the mask's bounding box in the crop only, with room for the cubic kernel (2 px), the
    # bilinear mask (1 px) and the low-pass.
    pad = 4 + math.ceil(3.0 * sigma)
    cy0, cy1 = max(int(rows[0]) - pad, 0), min(int(rows[-1]) + pad + 1, size)
    cx0, cx1 = max(int(cols[0]) - pad, 0), min(int(cols[-1]) + pad + 1, size)
    # The same box in the frame (its corners mapped back), +-2 px for the interpolation footprint.
    box = np.array([[cx0, cy0], [cx1 - 1, cy0], [cx1 - 1, cy1 - 1], [cx0, cy1 - 1]], dtype=np.float64)
    fb = alignment.to_frame(box)
    h, w = shape[:2]
    x0 = max(int(np.floor(fb[:, 0].min())) - 2, 0)
    y0 = max(int(np.floor(fb[:, 1].min())) - 2, 0)
    x1 = min(int(np.ceil(fb[:, 0].max())) + 3, w)
    y1 = min(int(np.ceil(fb[:, 1].max())) + 3, h)
    if x1 <= x0 or y1 <= y0:
        return None
    sub_mask = np.ascontiguousarray(m[cy0:cy1, cx0:cx1])
    diff = _matched_difference(
        edited[cy0:cy1, cx0:cx1], original[cy0:cy1, cx0:cx1], sub_mask, color_match,
        None if reference is None else reference[cy0:cy1, cx0:cx1],
    )
    if sigma > 0.0:
        diff = cv2.GaussianBlur(diff, (0, 0), sigma)
    # For each frame ROI pixel (u, v) = frame (x0 + u, y0 + v), sample the sub-crop at
    # matrix @ frame - (cx0, cy0).
    fwd = alignment.matrix @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    fwd[:, 2] -= (cx0, cy0)
    sub_original = sub_replaced = sub_flow = None
    if replaced is not None and np.any(replaced[cy0:cy1, cx0:cx1] > 0):
        sub_replaced = np.ascontiguousarray(replaced[cy0:cy1, cx0:cx1], dtype=np.float32)
    if flow is not None:
        sub_flow = _frame_moves(np.asarray(flow[cy0:cy1, cx0:cx1], dtype=np.float32), fwd)
    if sub_replaced is not None or sub_flow is not None:
        # The frame's detail that the crop does not hold is frame - (original crop mapped back): removed where the
        # crop is new, moved where its content moved.
        sub_original = np.asarray(original[cy0:cy1, cx0:cx1], dtype=np.float32)
        if sigma > 0.0:
            sub_original = cv2.GaussianBlur(sub_original, (0, 0), sigma)
    return PastePlan(diff, sub_mask, fwd, (x0, y0, x1, y1), sub_original, sub_replaced, sub_flow)


# The frame's detail moves with content that moved this far (frame pixels), fully from MOVED_FROM + MOVED_SPAN. A
# shorter move leaves it in place: resampling it at a fraction of a pixel blurs it more than the misplacement shows.
MOVED_FROM, MOVED_SPAN = 0.5, 1.0


def _frame_moves(flow: np.ndarray, fwd: np.ndarray) -> np.ndarray | None:
    """(h, w, 3) float32 on the crop's box: each pixel's content's offset in frame pixels (a crop offset d is the
    frame offset fwd[:, :2]^-1 d) and how much of the frame's detail moves with it; None where none does."""
    offset = flow @ np.linalg.inv(fwd[:, :2]).astype(np.float32).T
    share = np.clip((np.linalg.norm(offset, axis=-1, keepdims=True) - MOVED_FROM) / MOVED_SPAN, 0.0, 1.0)
    return np.ascontiguousarray(np.concatenate([offset, share], axis=-1), dtype=np.float32) if share.any() else None


def _apply_plan(roi: np.ndarray, plan: PastePlan) -> np.ndarray:
    """The frame's box ``roi`` (uint8) with the plan's change warped in and added, on the CPU."""
    roi_size = (roi.shape[1], roi.shape[0])
    inv_map = cv2.WARP_INVERSE_MAP
    diff_f = cv2.warpAffine(plan.diff, plan.fwd, roi_size, flags=cv2.INTER_CUBIC | inv_map,
                            borderMode=cv2.BORDER_CONSTANT)
    # Bilinear keeps the mask inside [0, 1] and exactly 0 wherever its neighbourhood is 0.
    mask_f = cv2.warpAffine(plan.mask, plan.fwd, roi_size, flags=cv2.INTER_LINEAR | inv_map,
                            borderMode=cv2.BORDER_CONSTANT)
    if plan.original is not None:
        original_f = cv2.warpAffine(plan.original, plan.fwd, roi_size, flags=cv2.INTER_CUBIC | inv_map,
                                    borderMode=cv2.BORDER_REPLICATE)
        detail = cv2.subtract(roi, original_f, dtype=cv2.CV_32F)
        kept = np.float32(1.0)
        if plan.replaced is not None:
            replaced_f = cv2.warpAffine(plan.replaced, plan.fwd, roi_size, flags=cv2.INTER_LINEAR | inv_map,
                                        borderMode=cv2.BORDER_CONSTANT)
            diff_f -= detail * replaced_f[..., None]
            kept = 1.0 - replaced_f[..., None]
        if plan.flow is not None:
            moves = cv2.warpAffine(plan.flow, plan.fwd, roi_size, flags=cv2.INTER_LINEAR | inv_map,
                                   borderMode=cv2.BORDER_CONSTANT)
            rows, cols = np.nonzero(moves[..., 2].any(axis=1))[0], np.nonzero(moves[..., 2].any(axis=0))[0]
            if rows.size:  # only where something moved: the remap is the costly part
                box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
                map_x = moves[box][..., 0] + np.arange(cols[0], cols[-1] + 1, dtype=np.float32)[None]
                map_y = moves[box][..., 1] + np.arange(rows[0], rows[-1] + 1, dtype=np.float32)[:, None]
                moved = cv2.remap(detail, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
                share = moves[box][..., 2:] if np.ndim(kept) == 0 else moves[box][..., 2:] * kept[box]
                np.subtract(moved, detail[box], out=moved)
                moved *= share
                diff_f[box] += moved
    diff_f *= mask_f[..., None]
    # frame + mask * diff, rounded half to even and saturated to 0..255 (np.clip(np.rint(...)) in one pass).
    return cv2.add(roi, diff_f, dtype=cv2.CV_8U)
