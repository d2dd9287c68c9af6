"""The face's own texture: a bounded memory of the person's mouths and eyes, used where a warp cannot show the face.

A video almost always shows the person's own open mouth and closed lids somewhere (people talk and blink), and no
learned or painted interior matches their own teeth. ``FaceMemory`` keeps, per part (the mouth and each eye), a few
of the person's own appearances as patches of the aligned crop, each indexed by how open the part is and, for the
mouth, by the AUs of its frame (for an eye, by the head's pitch), spread over what the clip shows (one entry per
cell, a band of opening and of the mouth's shaping AUs or of pitch, the one nearest the cell's middle): bounded
however long the video. ``MemoryCompositor`` puts the entry nearest the *target* (its opening, AUs and pitch) where
the generator painted (a mouth opened past what the frame shows, lids that meet: the whole inner mouth, or the whole
eye between the skin lines above and below it), warped onto the target contour (an affine fit of the entry's lip or
lid landmarks onto the target's), matched in colour to the frame around it and blended with a feathered mask; the
paint stays where the memory has nothing near enough. The choice of entry holds until another is clearly nearer, so
a steady edit keeps a still mouth, and a change (of entry, or between the paint and the memory) is made whole once it
has held for two frames: never a one-frame mouth, never two mouths showing through each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from reenact.face.align import FACE_OVAL
from reenact.face.aus import AU_NAMES
from reenact.model.coords import normalise
from reenact.model.networks import GAP_CONTOURS, MOUTH
from reenact.own_motion import OwnMotion

PARTS = ("right eye", "left eye", "mouth")  # in GAP_CONTOURS' order: the eyes, then the mouth
_BANDS = 10  # bands of opening per part
_TOP_OPENING = {"right eye": 0.45, "left eye": 0.45, "mouth": 0.8}  # openings (gap / width) the bands span
_NEAR_ENOUGH = {"right eye": 0.08, "left eye": 0.08, "mouth": 0.15}  # farther than this from the target: paint
# The two eyes of one frame belong together: a held-out speaker's (`KatieHill`) blink closed one eye to 0.057 of its
# width and the other to 0.085, and a blink edit put her own closed lid on one eye beside a flat painted one on the
# other. An eye with nothing near enough takes its own from the frame its partner's comes from, within this many
# times the reach.
_PAIR_REACH = 2.0
_PARTNER = {"right eye": "left eye", "left eye": "right eye"}
# What a mouth shows at one opening depends on how it got there: lips drawn back by a smile (AU12) show the teeth, a
# dropped jaw (AU26) the dark between them. So the mouth's entries are also banded by those two AUs, and chosen by
# all its AUs with the opening. Held-out frames edited to another frame's AUs (``probes/face_memory.py``): inside
# that frame's mouth, the remembered mouth nearest in opening alone was 1.17 dB closer to it than the paint; nearest
# in opening and AUs, 2.75 dB.
_CELL_AUS = {"right eye": (), "left eye": (), "mouth": ("AU12", "AU26")}
_PICK_AUS = {"right eye": (), "left eye": (), "mouth": ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23",
                                                       "AU25", "AU26")}
# The same as indices into an AU vector, once (the compositor weighs every entry on every frame).
_CELL_INDEX = {name: [AU_NAMES.index(au) for au in aus] for name, aus in _CELL_AUS.items()}
_PICK_INDEX = {name: [AU_NAMES.index(au) for au in aus] for name, aus in _PICK_AUS.items()}
_AU_EDGES = np.array([1.0, 2.5])  # an AU's bands: under 1, 1 to 2.5, above
_AU_MIDDLES = np.array([0.5, 1.75, 3.5])
_OPENING_STEP = 0.05  # an opening difference of this much weighs as much as one AU unit
# A closed eye looks different from above and from below (how much lid shows, where the lashes fall): a head tilted
# down in a blink showed a remembered blink of the head held level with its lash line too high, 1-2 dB further from
# the real one than the paint. So an eye's entries are also banded by the head's pitch, and chosen by it with the
# opening. Held-out blinks edited to another frame's AUs (``probes/face_memory.py``): the remembered eye 2.0 dB
# closer to the real blink than the paint by opening alone, 2.6 dB with the pitch.
_PITCHED = {"right eye": True, "left eye": True, "mouth": False}
_PITCH_STEP = 5.0  # degrees of pitch a band
_PITCH_UNIT = 2.5  # a pitch difference of this many degrees weighs as much as one AU unit
_PITCH_SPAN = 45.0  # pitches past this many degrees share the outermost bands: the memory stays bounded
# The entry in use is kept unless another is nearer the target by this much (for the mouth, 0.03 of opening): a
# steady edit keeps one entry. An eye's is wider: a talking head nods by a few degrees, and with the mouth's hold a
# steady blink edit of a nodding held-out speaker (``ST-happyenglish``) changed its remembered eyes every 10th
# frame; with this one, every 25th, where her head had turned by 5 degrees or more.
_HOLD = {"right eye": 2.0, "left eye": 2.0, "mouth": 0.6}
# A change of what is put in (another entry, or between the paint and the memory) is made whole, once it has been the
# choice for this many frames running. A surprised GRID speaker's opened mouth, at the edge of what his remembered
# mouths could stand in for, got one of them in a single frame of a stretch of paint (the README's own example): a
# mouth of clenched teeth between two open ones. Faded in and out over 4 frames instead, two unlike mouths showed at
# once: a see-through second row of teeth (a held-out talking face driven by a shouting one, whose mouth opened past
# every remembered one and back). A part painted afresh (the frame before had nothing painted there: a blink, a
# steady edit's first frame) gets its choice at once. An eye's change is made at once: a blink lasts 2-4 frames, and
# a frame of its lids drawn by the warp (lashes pulled out over the eye) while the memory waited was a streaked one.
_SETTLE = {"right eye": 1, "left eye": 1, "mouth": 2}
_MARGIN = 0.35  # a patch reaches this share of the part's width past its contours
_FEATHER = 1.5  # pixels of blur on the blend mask
_RING_KERNEL = np.ones((9, 9), np.uint8)  # the colour match's ring: this far outside the blend
_REACH = 8  # pixels past a part's box that its blend touches: the feather's tail and the colour match's ring
# A mouth closed by a warp squashes the teeth between the lips and leaves the lips' old edges beside them (seen on a
# smiling, talking held-out speaker edited to a closed mouth). Where an edit closes the mouth by more than
# _CLOSING_FROM of its width (gap over width), the person's own mouth at the target's opening is put in, lips and all,
# fully from _CLOSING_FROM + _CLOSING_SPAN.
_CLOSING_FROM, _CLOSING_SPAN = 0.03, 0.05
_LIPS_GROWN = 0.12  # a closing mouth's blend reaches this share of its width past the outer lip lines
# An open mouth drawn wide by a smile shows the upper teeth; a person's own mouth that never smiled so wide shows the
# dark under the upper lip, and a laugh put on it read as a shout (a laughing held-out driver onto `DPE-s`, whose
# clip smiles at most AU12 0.66). Further than this in AU12 from the target, an open mouth is not near enough.
_SMILE_GAP = 1.5
_SMILE = AU_NAMES.index("AU12")


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
    aus: np.ndarray | None = None  # (17,) the frame's AUs, where it was observed with them
    pitch: float | None = None  # the head's pitch in degrees, where it was observed with its pose

    @cached_property  # once an entry, not once a frame it is put in
    def planes(self) -> np.ndarray:
        """(h, w, 4) float32: the patch's RGB, then 255 where it showed the face (inside its frame's face oval) and 0
        where its background, which a blend leaves out."""
        face = np.zeros(self.patch.shape[:2], np.float32)
        cv2.fillPoly(face, [np.round(self.points[list(FACE_OVAL)] * 16).astype(np.int32)], 255.0, cv2.LINE_AA,
                     shift=4)
        return np.concatenate([self.patch.astype(np.float32), face[..., None]], axis=-1)


@dataclass
class FaceMemory:
    """Per part, a bounded set of the person's own appearances, spread over the openings seen, the mouth's AUs and the
    eyes' head pitches: at most ``_BANDS`` x 18 an eye, ``_BANDS`` x 9 for the mouth. ``observe`` each
    aligned crop (a file job's first pass, or a live stream as it goes); ``frozen`` stops it changing (a file job
    freezes it after its first pass, so an entry never changes while it is used). ``motion``: how this person's
    mouth moves with their own AUs (``reenact.own_motion``), learned from the same frames."""

    crop_size: int | None = None
    entries: dict[str, dict[tuple[int, ...], MemoryEntry]] = field(default_factory=lambda: {p: {} for p in PARTS})
    frozen: bool = False
    motion: OwnMotion = field(default_factory=OwnMotion)

    def __len__(self) -> int:
        return sum(len(bands) for bands in self.entries.values())

    def observe(self, crop: np.ndarray, points: np.ndarray, t: float = 0.0, aus: np.ndarray | None = None,
                pose_degrees: np.ndarray | None = None) -> None:
        """Remember this crop's parts where they fill a cell better than what is held (``points``: the face's 478
        landmarks in the crop's pixels; ``aus``: the frame's AUs, which index the mouth too). Cheap where nothing is
        stored: the openings come from the landmarks, and a patch is cut only for an entry kept. With the frame's
        ``aus`` and head pose (pitch, yaw, roll in degrees; the pitch indexes the eyes), the person's own motion learns
        from it too."""
        if self.frozen:
            return
        if self.crop_size is None:
            self.crop_size = crop.shape[0]
        elif crop.shape[0] != self.crop_size:
            raise ValueError(f"the memory holds {self.crop_size}-pixel crops, not {crop.shape[0]}")
        if aus is not None and pose_degrees is not None:
            self.motion.observe(normalise(points, self.crop_size), aus, pose_degrees)
        held = None if aus is None else np.asarray(aus, np.float32).copy()
        pitch = None if pose_degrees is None else float(pose_degrees[0])
        for part, name in enumerate(PARTS):
            value = opening(points, part)
            cell = _cell(name, value, held, pitch)
            if not self._better(name, cell, value, held):
                continue
            box = _box(points, part, crop.shape[0])
            if box is None:
                continue
            x0, y0, x1, y1 = box
            self.entries[name][cell] = MemoryEntry(crop[y0:y1, x0:x1].copy(), points - (x0, y0), value, t, held,
                                                   pitch if _PITCHED[name] else None)

    def merge(self, other: FaceMemory) -> None:
        """Take ``other``'s entries where they fill a cell better than what is held: the memory that observing
        both memories' frames would give (a first pass tracked in segments side by side fills one per segment)."""
        if self.frozen or other.crop_size is None:
            return
        if self.crop_size is None:
            self.crop_size = other.crop_size
        elif other.crop_size != self.crop_size:
            raise ValueError(f"the memory holds {self.crop_size}-pixel crops, not {other.crop_size}")
        for name, cells in other.entries.items():
            for cell, entry in cells.items():
                if self._better(name, cell, entry.opening, entry.aus):
                    self.entries[name][cell] = entry
        self.motion.merge(other.motion)

    def _better(self, name: str, cell: tuple[int, ...], value: float, aus: np.ndarray | None) -> bool:
        """Whether an appearance with this opening (and AUs) fills ``cell`` better than the entry held (nearer its
        middle)."""
        held = self.entries[name].get(cell)
        return held is None or _off_middle(name, cell, value, aus) < _off_middle(name, cell, held.opening, held.aus)

    def nearest(self, name: str, target: float, aus: np.ndarray | None = None, pitch: float | None = None,
                smile: bool = True, partner: tuple[str, float] | None = None) -> MemoryEntry | None:
        """The entry of ``name`` nearest the target opening (and ``aus``, the target's AUs, and ``pitch``, its head's:
        ``distance``), if it is near enough to stand in for it (``near_enough``; ``smile``: its smile too). An eye
        with none near enough, whose ``partner`` (the other eye and its target opening) has: this eye's entry from
        the same frame as one of the partner's, within ``_PAIR_REACH`` times the reach."""
        entries = [e for e in self.entries[name].values() if near_enough(name, e, target, aus, smile)]
        if not entries and partner is not None:
            other, other_target = partner
            times = {e.time for e in self.entries[other].values() if near_enough(other, e, other_target, aus)}
            entries = [e for e in self.entries[name].values()
                       if e.time in times and abs(e.opening - target) <= _PAIR_REACH * _NEAR_ENOUGH[name]]
        return min(entries, key=lambda e: distance(name, e, target, aus, pitch)) if entries else None


def _cell(name: str, value: float, aus: np.ndarray | None, pitch: float | None = None) -> tuple[int, ...]:
    """The memory's cell for a part with this opening (and AUs, and head pitch): its band of opening, then a band per
    cell AU (the mouth) or of pitch (an eye)."""
    band = min(int(value / _TOP_OPENING[name] * _BANDS), _BANDS - 1)
    if _PITCHED[name]:
        return (band,) if pitch is None else (band, int(np.floor(np.clip(pitch, -_PITCH_SPAN, _PITCH_SPAN - 1e-3)
                                                                   / _PITCH_STEP)))
    if aus is None or not _CELL_INDEX[name]:
        return (band,)
    return (band, *(int(b) for b in np.digitize(aus[_CELL_INDEX[name]], _AU_EDGES)))


def _off_middle(name: str, cell: tuple[int, ...], value: float, aus: np.ndarray | None) -> float:
    """How far an appearance lies from its cell's middle (opening in steps, AUs in units)."""
    middle = (cell[0] + 0.5) * _TOP_OPENING[name] / _BANDS
    off = ((value - middle) / _OPENING_STEP) ** 2
    if len(cell) > 1 and aus is not None and not _PITCHED[name]:
        off += float(np.sum((aus[_CELL_INDEX[name]] - _AU_MIDDLES[list(cell[1:])]) ** 2))
    return off


def near_enough(name: str, entry: MemoryEntry, target: float, aus: np.ndarray | None, smile: bool = True) -> bool:
    """Whether an entry can stand in for the target: its opening within ``_NEAR_ENOUGH``, and for an open mouth
    (``smile``), its AU12 within ``_SMILE_GAP`` of the target's."""
    if abs(entry.opening - target) > _NEAR_ENOUGH[name]:
        return False
    if not smile or name != "mouth" or aus is None or entry.aus is None:
        return True
    return abs(float(entry.aus[_SMILE]) - float(aus[_SMILE])) <= _SMILE_GAP


def distance(name: str, entry: MemoryEntry, target: float, aus: np.ndarray | None, pitch: float | None = None,
             ) -> float:
    """How far an entry of part ``name`` is from a target opening, AUs and head pitch: the opening in steps of
    ``_OPENING_STEP``, the part's AUs in units and an eye's pitch in ``_PITCH_UNIT``, together (each where both
    the entry and the target have it)."""
    off = ((entry.opening - target) / _OPENING_STEP) ** 2
    index = _PICK_INDEX[name]
    if aus is not None and entry.aus is not None and index:
        off += float(np.sum((entry.aus[index] - aus[index]) ** 2))
    if pitch is not None and entry.pitch is not None:
        off += ((entry.pitch - pitch) / _PITCH_UNIT) ** 2
    return off**0.5


def outline(points: np.ndarray, part: int, whole: bool = False) -> np.ndarray:
    """(K, 2) the closed outline of what a remembered part replaces, on the landmarks ``points``: the inner mouth
    (inside the lips), or a whole eye (between the skin lines above and below its lids); ``whole``: the mouth with its
    lips (a closing mouth)."""
    above, upper, lower, below = GAP_CONTOURS[part]
    top, bottom = (upper, lower) if part == MOUTH and not whole else (above, below)
    return np.concatenate([points[list(top)], points[list(bottom)][::-1]])


def closing(before: np.ndarray, after: np.ndarray) -> float:
    """How far (0 to 1) an edit that moves the landmarks from ``before`` to ``after`` closes the mouth for the
    memory to put a whole mouth in (``_CLOSING_FROM``)."""
    shut = opening(before, MOUTH) - opening(after, MOUTH)
    return float(np.clip((shut - _CLOSING_FROM) / _CLOSING_SPAN, 0.0, 1.0))


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
        self.reset()

    def reset(self) -> None:
        # The last entry chosen per part, kept through frames where nothing is painted (the source's own blink in a
        # steady blink edit): the same entry comes back after them, unless another is clearly nearer.
        self._held: dict[str, MemoryEntry | None] = {name: None for name in PARTS}
        self._shown: dict[str, MemoryEntry | None] = {name: None for name in PARTS}  # put in last frame (None: paint)
        self._next: dict[str, tuple[MemoryEntry | None, int]] = {}  # a change waiting: the choice, frames running
        self._fresh: dict[str, bool] = {name: True for name in PARTS}  # nothing was painted there last frame

    def _settled(self, name: str, chosen: MemoryEntry | None, fits: bool) -> MemoryEntry | None:
        """What to put in (None: the paint): ``chosen`` at once on a part painted afresh, where it is already in or
        where what was put in no longer ``fits`` the target (stretched onto a mouth opened far past it, its teeth
        stood tall), else once it has been the choice for ``_SETTLE`` frames running (a mouth: two); until then, what
        was put in."""
        waiting, frames = self._next.pop(name, (chosen, 0))
        if self._fresh[name] or chosen is self._shown[name] or not fits:
            self._fresh[name] = False
            self._shown[name] = chosen
            return chosen
        frames = frames + 1 if waiting is chosen else 1
        if frames >= _SETTLE[name]:
            self._shown[name] = chosen
        else:
            self._next[name] = (chosen, frames)
        return self._shown[name]

    def entry_in_use(self, name: str) -> MemoryEntry | None:
        """The entry last put in for part ``name`` (None: the paint, or nothing painted)."""
        return self._shown[name]

    def _choose(self, name: str, target: float, aus: np.ndarray | None, pitch: float | None, smile: bool = True,
                partner: tuple[str, float] | None = None) -> MemoryEntry | None:
        best = self.memory.nearest(name, target, aus, pitch, smile, partner)
        held = self._held[name]
        if held is not None and best is not None and near_enough(name, held, target, aus, smile) \
                and distance(name, held, target, aus, pitch) <= distance(name, best, target, aus, pitch) + _HOLD[name]:
            best = held
        if best is not None:
            self._held[name] = best
        return best

    def __call__(self, image: np.ndarray, painted: np.ndarray, points: np.ndarray, aus: np.ndarray | None = None,
                 pitch: float | None = None, before: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``image`` (S, S, 3) uint8, the edit, with remembered parts put where ``painted`` (S, S) says the edit
        painted, onto the parts as the edit's landmarks ``points`` (478, 2, crop pixels) place them, each the entry
        nearest the target's opening, ``aus`` (the AUs the edit aims at) and ``pitch`` (the head's, degrees; None:
        without it); with ``before`` (the landmarks before the edit moved them), a mouth the edit closes too (lips
        and all: ``closing``); and where the crop is now new content (the paint's mask, grown where a mouth or an
        eye was replaced whole)."""
        shut = 0.0 if before is None else closing(before, points)
        if not len(self.memory) or (not painted.any() and shut <= 0.01):
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
            whole = part == MOUTH and shut > strength  # a mouth closed, not opened: lips and all
            if whole:
                strength = shut
            if strength <= 0.01:
                self._shown[name], self._fresh[name] = None, True
                self._next.pop(name, None)
                continue
            target, shown = opening(points, part), self._shown[name]
            fits = shown is None or near_enough(name, shown, target, aus, smile=not whole)
            other = PARTS.index(_PARTNER[name]) if name in _PARTNER else None
            partner = None if other is None or _box(points, other, size) is None else (PARTS[other],
                                                                                        opening(points, other))
            entry = self._settled(name, self._choose(name, target, aus, pitch, smile=not whole, partner=partner), fits)
            if entry is None:
                continue  # nothing near enough: the paint stays
            # The work is done in the box grown by what the feather and the colour match's ring reach: the same
            # pixels as on the whole crop, for a tenth of the cost.
            rx0, ry0 = max(x0 - _REACH, 0), max(y0 - _REACH, 0)
            rx1, ry1 = min(x1 + _REACH, size), min(y1 + _REACH, size)
            region = np.s_[ry0:ry1, rx0:rx1]
            local = points - (rx0, ry0)
            mask = np.zeros((ry1 - ry0, rx1 - rx0), np.float32)
            # The whole inner mouth is the person's own, not the source's moved teeth plus paint; a closing eye is
            # their own from the skin line above the lids to the one below, lashes and creases with it. Put only
            # where the paint went, the remembered lid met the warped lower lid: on held-out blinks 1.0 dB closer to
            # the real one than the paint, against 2.0 dB for the whole eye (``probes/face_memory.py``).
            cv2.fillPoly(mask, [np.round(outline(local, part, whole) * 16).astype(np.int32)], 1.0, cv2.LINE_AA,
                         shift=4)
            if whole:  # past the lips' old edges, which the warp left beside the new ones
                grow = 2 * int(np.ceil(_LIPS_GROWN * (x1 - x0) / (1 + 2 * _MARGIN))) + 1
                mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
            # Inside the face only: on a turned head a mouth's corner comes near the face's edge, and a remembered
            # closed mouth, lips grown, put the background of its own frame on the cheek's edge (a blue smear on a
            # three-quarter `PC-AVS` face) and took its colour match from that background (orange lips).
            face = np.zeros_like(mask)
            cv2.fillPoly(face, [np.round(local[list(FACE_OVAL)] * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
            mask = cv2.GaussianBlur(mask * face, (0, 0), _FEATHER)
            mask *= strength
            # Nothing outside the part's box (the feather's tail past it is cut).
            mask[: y0 - ry0], mask[y1 - ry0:], mask[:, : x0 - rx0], mask[:, x1 - rx0:] = 0.0, 0.0, 0.0, 0.0
            layer = _warped(entry, local, part, mask.shape[::-1], whole)
            if layer is None:
                continue
            layer, shown = layer[..., :3], layer[..., 3]
            mask *= np.clip(shown * (1 / 255), 0.0, 1.0)
            under = out[region].astype(np.float32)
            layer = _colour_matched(layer, under, mask, face, grey=part == MOUTH and not whole)
            under += (layer - under) * mask[..., None]
            out[region] = np.clip(under + 0.5, 0, 255).astype(np.uint8)
            replaced[region] = np.maximum(replaced[region], mask)
        return out, replaced


def _warped(entry: MemoryEntry, points: np.ndarray, part: int, shape: tuple[int, int], whole: bool = False,
            ) -> np.ndarray | None:
    """The entry's ``planes`` (RGB, and where it showed the face) warped into an image of ``shape`` (width, height;
    float32) by the affine map that best
    takes its part's edges onto ``points`` (in that image's pixels): for the mouth, the inner lip lines, which bound
    what is blended in (fitted on the outer lines too, the entry's own lower lip showed inside a wider target mouth, a
    second lip above the moved one), or for a whole mouth all four; for an eye, its lids with the lines around
    them."""
    matrix = fitted_affine(entry.points, points, _points(part) if whole else fit_points(part))
    if matrix is None:
        return None
    return cv2.warpAffine(entry.planes, matrix, shape, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def fit_points(part: int) -> list[int]:
    """The landmarks an entry of ``part`` is fitted on (``_warped``)."""
    return sorted(set(GAP_CONTOURS[part][1] + GAP_CONTOURS[part][2])) if part == MOUTH else _points(part)


def fitted_affine(source: np.ndarray, target: np.ndarray, index: list[int]) -> np.ndarray | None:
    """The (2, 3) affine map that best takes ``source[index]`` onto ``target[index]`` (least squares)."""
    src, dst = source[index], target[index]
    design = np.concatenate([src, np.ones((len(src), 1))], axis=1)
    matrix, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return matrix.T if np.all(np.isfinite(matrix)) else None


def _colour_matched(layer: np.ndarray, image: np.ndarray, mask: np.ndarray, face: np.ndarray, grey: bool = False,
                    ) -> np.ndarray:
    """``layer`` with its per-channel gain matched to ``image`` on a ring just outside ``mask`` and inside ``face``:
    the entry under the frame's light and colour now. ``grey``: one gain for all three channels, the light alone.
    An inner mouth's ring is its lips, whose red changes as they stretch: matched channel by channel, a bearded
    held-out speaker's (`LP-d8`) remembered teeth took his lips' red away and turned olive (red 0.92, green 1.08)."""
    near = (mask > 0.02).astype(np.uint8)
    ring = (cv2.dilate(near, _RING_KERNEL) - near) * (face > 0.5).astype(np.uint8)
    if cv2.countNonZero(ring) < 10:
        return layer
    want, have = np.array(cv2.mean(image, ring)[:3]), np.maximum(np.array(cv2.mean(layer, ring)[:3]), 1.0)
    gain = np.full(3, want.sum() / have.sum()) if grey else want / have
    return layer * np.clip(gain, 0.7, 1.4).astype(np.float32)
