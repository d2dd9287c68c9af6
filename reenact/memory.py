"""The face's own texture: a bounded memory of the person's mouths and eyes, used where a warp cannot show the face.

A video almost always shows the person's own open mouth and closed lids somewhere (people talk and blink), and no
learned or painted interior matches their own teeth. ``FaceMemory`` keeps, per part (the mouth and each eye), a few
of the person's own appearances as patches of the aligned crop, each indexed by how open the part is, spread over
the openings the clip shows (one entry per band of opening, the one nearest the band's middle): bounded however
long the video. ``MemoryCompositor`` puts the entry nearest the *target* opening where the generator painted (a
mouth opened past what the frame shows, lids that meet), warped onto the target contour (an affine fit of the
entry's lip or lid landmarks onto the target's), matched in colour to the frame around it and blended with a
feathered mask; the paint stays where the memory has nothing near enough. The choice of entry holds until another
is clearly nearer, so a steady edit keeps a still mouth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from reenact.model.coords import normalise
from reenact.model.networks import GAP_CONTOURS, MOUTH
from reenact.own_motion import OwnMotion

PARTS = ("right eye", "left eye", "mouth")  # in GAP_CONTOURS' order: the eyes, then the mouth
_BANDS = 10  # entries per part at most: one per band of opening
_TOP_OPENING = {"right eye": 0.45, "left eye": 0.45, "mouth": 0.8}  # openings (gap / width) the bands span
_NEAR_ENOUGH = {"right eye": 0.08, "left eye": 0.08, "mouth": 0.15}  # farther than this from the target: paint
_HOLD = 0.03  # the entry in use is kept unless another is nearer the target by this much (no flicker)
_MARGIN = 0.35  # a patch reaches this share of the part's width past its contours
_FEATHER = 1.5  # pixels of blur on the blend mask
_REACH = 8  # pixels past a part's box that its blend touches: the feather's tail and the colour match's ring


def _points(part: int) -> list[int]:
    """The landmarks of a part's four contours (skin or lip line above, upper edge, lower edge, below)."""
    return sorted({i for contour in GAP_CONTOURS[part] for i in contour})


def opening(points: np.ndarray, part: int) -> float:
    """How open a part is: the mean gap between its upper and lower edges over its width (crop pixels in)."""
    _, upper, lower, _ = GAP_CONTOURS[part]
    width = float(np.linalg.norm(points[upper[-1]] - points[upper[0]]))
    inner = slice(1, -1)  # the corners always meet
    gap = points[list(lower[inner]), 1].mean() - points[list(upper[inner]), 1].mean()
    return max(float(gap), 0.0) / max(width, 1e-6)


@dataclass
class MemoryEntry:
    """One remembered appearance of a part: a patch of the aligned crop and where the part's landmarks lie in it."""

    patch: np.ndarray  # (h, w, 3) uint8
    points: np.ndarray  # (478, 2) the frame's landmarks, in the patch's pixels
    opening: float
    time: float


@dataclass
class FaceMemory:
    """Per part, at most ``_BANDS`` of the person's own appearances, spread over the openings seen. ``observe`` each
    aligned crop (a file job's first pass, or a live stream as it goes); ``frozen`` stops it changing (a file job
    freezes it after its first pass, so an entry never changes while it is used). ``motion``: how this person's
    mouth moves with their own AUs (``reenact.own_motion``), learned from the same frames."""

    crop_size: int | None = None
    entries: dict[str, dict[int, MemoryEntry]] = field(default_factory=lambda: {p: {} for p in PARTS})
    frozen: bool = False
    motion: OwnMotion = field(default_factory=OwnMotion)

    def __len__(self) -> int:
        return sum(len(bands) for bands in self.entries.values())

    def observe(self, crop: np.ndarray, points: np.ndarray, t: float = 0.0, aus: np.ndarray | None = None,
                pose_degrees: np.ndarray | None = None) -> None:
        """Remember this crop's parts where they fill a band of opening better than what is held (``points``: the
        face's 478 landmarks in the crop's pixels). Cheap where nothing is stored: the openings come from the
        landmarks, and a patch is cut only for an entry kept. With the frame's ``aus`` and head pose, the person's
        own motion learns from it too."""
        if self.frozen:
            return
        if self.crop_size is None:
            self.crop_size = crop.shape[0]
        elif crop.shape[0] != self.crop_size:
            raise ValueError(f"the memory holds {self.crop_size}-pixel crops, not {crop.shape[0]}")
        if aus is not None and pose_degrees is not None:
            self.motion.observe(normalise(points, self.crop_size), aus, pose_degrees)
        for part, name in enumerate(PARTS):
            value = opening(points, part)
            band = self._band(name, value)
            if not self._better(name, band, value):
                continue
            box = _box(points, part, crop.shape[0])
            if box is None:
                continue
            x0, y0, x1, y1 = box
            self.entries[name][band] = MemoryEntry(crop[y0:y1, x0:x1].copy(), points - (x0, y0), value, t)

    def merge(self, other: FaceMemory) -> None:
        """Take ``other``'s entries where they fill a band better than what is held: the memory that observing
        both memories' frames would give (a first pass tracked in segments side by side fills one per segment)."""
        if self.frozen or other.crop_size is None:
            return
        if self.crop_size is None:
            self.crop_size = other.crop_size
        elif other.crop_size != self.crop_size:
            raise ValueError(f"the memory holds {self.crop_size}-pixel crops, not {other.crop_size}")
        for name, bands in other.entries.items():
            for band, entry in bands.items():
                if self._better(name, band, entry.opening):
                    self.entries[name][band] = entry
        self.motion.merge(other.motion)

    @staticmethod
    def _band(name: str, value: float) -> int:
        return min(int(value / _TOP_OPENING[name] * _BANDS), _BANDS - 1)

    def _better(self, name: str, band: int, value: float) -> bool:
        """Whether an appearance with this opening fills ``band`` better than the entry held (nearer its middle)."""
        middle = (band + 0.5) * _TOP_OPENING[name] / _BANDS
        held = self.entries[name].get(band)
        return held is None or abs(value - middle) < abs(held.opening - middle)

    def nearest(self, name: str, target: float) -> MemoryEntry | None:
        """The entry of ``name`` whose opening is nearest ``target``, if near enough to stand in for it."""
        entries = list(self.entries[name].values())
        if not entries:
            return None
        best = min(entries, key=lambda e: abs(e.opening - target))
        return best if abs(best.opening - target) <= _NEAR_ENOUGH[name] else None


def _box(points: np.ndarray, part: int, size: int) -> tuple[int, int, int, int] | None:
    """A part's patch box in the crop (x0, y0, x1, y1), or None where it leaves the crop."""
    xy = points[_points(part)]
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    pad = _MARGIN * (x1 - x0)
    box = int(x0 - pad), int(y0 - pad), int(np.ceil(x1 + pad)), int(np.ceil(y1 + pad))
    return box if min(box) >= 0 and max(box) <= size else None


class MemoryCompositor:
    """Puts a ``FaceMemory``'s entries where an edit painted; stateful (the entry in use per part), one per stream."""

    def __init__(self, memory: FaceMemory) -> None:
        self.memory = memory
        self._using: dict[str, MemoryEntry | None] = {name: None for name in PARTS}

    def reset(self) -> None:
        self._using = {name: None for name in PARTS}

    def entry_in_use(self, name: str) -> MemoryEntry | None:
        """The entry last put in for part ``name`` (None: the paint, or nothing painted)."""
        return self._using[name]

    def _choose(self, name: str, target: float) -> MemoryEntry | None:
        best = self.memory.nearest(name, target)
        held = self._using[name]
        if held is not None and best is not None and abs(held.opening - target) <= abs(best.opening - target) + _HOLD \
                and abs(held.opening - target) <= _NEAR_ENOUGH[name]:
            best = held
        self._using[name] = best
        return best

    def __call__(self, image: np.ndarray, painted: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``image`` (S, S, 3) uint8, the edit, with remembered parts put where ``painted`` (S, S) says the edit
        painted, onto the parts as the edit's landmarks ``points`` (478, 2, crop pixels) place them; and where the
        crop is now new content (the paint's mask, grown where a mouth was replaced whole)."""
        if not len(self.memory) or not painted.any():
            return image, painted
        out = image.copy()
        replaced = painted.copy()
        size = image.shape[0]
        for part, name in enumerate(PARTS):
            box = _box(points, part, size)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            strength = float(painted[y0:y1, x0:x1].max())
            if strength <= 0.01:
                self._using[name] = None
                continue
            entry = self._choose(name, opening(points, part))
            if entry is None:
                continue  # nothing near enough: the paint stays
            # The work is done in the box grown by what the feather and the colour match's ring reach: the same
            # pixels as on the whole crop, for a tenth of the cost.
            rx0, ry0 = max(x0 - _REACH, 0), max(y0 - _REACH, 0)
            rx1, ry1 = min(x1 + _REACH, size), min(y1 + _REACH, size)
            region = np.s_[ry0:ry1, rx0:rx1]
            local = points - (rx0, ry0)
            mask = np.zeros((ry1 - ry0, rx1 - rx0), np.float32)
            if part == MOUTH:  # the whole inner mouth is the person's own, not the source's moved teeth plus paint
                _, upper, lower, _ = GAP_CONTOURS[part]
                ring = np.concatenate([local[list(upper)], local[list(lower)][::-1]])
                cv2.fillPoly(mask, [np.round(ring * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
                mask = cv2.GaussianBlur(mask, (0, 0), _FEATHER) * strength
            else:
                mask = painted[region].copy()
            inside = np.zeros_like(mask)
            inside[y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0] = 1.0
            mask *= inside
            layer = _warped(entry, local, part, mask.shape[::-1])
            if layer is None:
                continue
            under = out[region].astype(np.float32)
            layer = _colour_matched(layer, under, mask)
            under += (layer - under) * mask[..., None]
            out[region] = np.clip(under + 0.5, 0, 255).astype(np.uint8)
            replaced[region] = np.maximum(replaced[region], mask)
        return out, replaced


def _warped(entry: MemoryEntry, points: np.ndarray, part: int, shape: tuple[int, int]) -> np.ndarray | None:
    """The entry's patch warped into an image of ``shape`` (width, height; float32) by the affine map that best
    takes its part's edges onto ``points`` (in that image's pixels): for the mouth, the inner lip lines, which bound
    what is blended in (fitted on the outer lines too, the entry's own lower lip showed inside a wider target mouth, a
    second lip above the moved one); for an eye, its lids with the lines around them."""
    matrix = fitted_affine(entry.points, points, fit_points(part))
    if matrix is None:
        return None
    return cv2.warpAffine(entry.patch.astype(np.float32), matrix, shape, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def fit_points(part: int) -> list[int]:
    """The landmarks an entry of ``part`` is fitted on (``_warped``)."""
    return sorted(set(GAP_CONTOURS[part][1] + GAP_CONTOURS[part][2])) if part == MOUTH else _points(part)


def fitted_affine(source: np.ndarray, target: np.ndarray, index: list[int]) -> np.ndarray | None:
    """The (2, 3) affine map that best takes ``source[index]`` onto ``target[index]`` (least squares)."""
    src, dst = source[index], target[index]
    design = np.concatenate([src, np.ones((len(src), 1))], axis=1)
    matrix, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return matrix.T if np.all(np.isfinite(matrix)) else None


def _colour_matched(layer: np.ndarray, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``layer`` with its per-channel gain matched to ``image`` on a ring just outside ``mask``: the entry under the
    frame's light and colour now."""
    grown = cv2.dilate((mask > 0.02).astype(np.uint8), np.ones((9, 9), np.uint8))
    ring = (grown > 0) & (mask <= 0.02)
    if ring.sum() < 10:
        return layer
    gain = image[ring].mean(axis=0) / np.maximum(layer[ring].mean(axis=0), 1.0)
    return layer * np.clip(gain, 0.7, 1.4)
