"""A transfer by the driving face's own motion: how its landmarks moved from its own rest, carried onto the source.

The AU route (``editing.TransferTarget``) reads the driving face as AUs and redraws them with the motion basis, a
mean motion per read unit: a noisy reading of the driver times a diluted field, and the reader's confusions (a
smile's narrowed eyes read as a blink) drawn as they are read. The driving face's landmarks already say how it
moved, so here the motion is theirs:

1. ``DrivingMotion``: per frame of the driving clip, its landmarks in its aligned crop, brought onto its resting
   face by a similarity on the expression-stable landmarks, minus that rest; the part a head turn explains (the
   model's per-degree fields) is taken out, so only expression is left. The rest is the mean face of the clip's
   calmest frames (lowest AU readings near the usual head pose): no neutral first frame is needed.
2. ``Retargeter``: that displacement on the source's face, scaled per region by the two faces' own proportions
   (the lids' travel by the eyes' opening, the brows' by their height over the eyes, the mouth's by its width), so a
   narrow-eyed source is not given a wide-eyed driver's lid travel; only the regions of the chosen AUs; and, with
   ``--pose``, the driving head's turn drawn by the per-degree fields. It gives the motion step's per-landmark
   moves (``MotionNet.field`` makes the flow), in the motion's convention: where content comes from, relative to
   where it lands. An absolute transfer onto a video first takes the source's own motion out (its own
   ``DrivingMotion``): its face goes back to its rest and moves as the driver's, so it shows the driver's expression
   rather than its own plus the driver's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from reenact.face.align import stabilise
from reenact.face.aus import AU_NAMES
from reenact.face.regions import FACE_SIDES, MESH, face_regions, region_mask
from reenact.model.networks import GAP_CONTOURS, MOUTH, pose_features

# Lid lines, per eye: upper then lower, the gap remap's eye edges without the corners (where the lids always meet);
# the lids' travel is scaled by the eye's opening.
_LIDS = tuple((upper[1:-1], lower[1:-1]) for _, upper, lower, _ in GAP_CONTOURS[:MOUTH])
_UPPER_LIDS = [i for upper, _ in _LIDS for i in upper]
_LOWER_LIDS = [i for _, lower in _LIDS for i in lower]
# Brow points above each eye's upper lid: the brows' height is measured from the lid's top to them.
_BROWS = ((70, 63, 105, 66, 107, 46, 53, 52, 65, 55), (300, 293, 334, 296, 336, 276, 283, 282, 295, 285))
_MOUTH_CORNERS = (61, 291)
_CALM_SHARE = 0.15  # the rest is the mean of this share of the clip's frames, the calmest
_RATIO_RANGE = (0.5, 2.0)  # per-region scales are kept within this: a mis-tracked frame does not blow a region up
_SOURCE_MEMORY = 300  # frames over which the source's proportions are taken (a robust running value)
# The share of a region's travel that MediaPipe's landmarks show (the rest: all of it), measured on real faces'
# pixels: between two frames of one person, the pixels match best when the region's landmark moves are divided by it
# (``probes/pixel_travel.py``, the training people, pairs picked by landmark travel and by OpenFace labels). The
# brows: 1.10-1.17 times their landmark moves (0.89; held-out people, 1.02). The eyes (lids and the skin around
# them): 1.18-1.23 (0.83; held-out, 1.21-1.24). The mouth: 0.98-1.00. How much of a warp's motion MediaPipe finds
# (brows 0.79, lids 0.85, ``probes/second_meter.py``) is the meter's, not the face's: these shares do not follow it.
READ_SHARES = {"brows": 0.89, "eyes": 0.83}
# The per-degree fields take a head's turn out of its landmarks only over the turns they were fitted on (99% of the
# training frames within 16.5 degrees of their rest's pose): past that, what is left is the turn, not an expression.
# A driver that cut to a three-quarter view (25 degrees) swirled a still source's hair into its face. Such frames'
# expression fades to the rest's, in full from 20 degrees; and a followed turn (``--pose``) goes no further than 10
# degrees each way, as a 2D warp of a still tears past that.
TRUSTED_TURN, UNTRUSTED_TURN = 12.0, 20.0
FOLLOWED_TURN = 10.0


def followed_turn(turn: np.ndarray) -> np.ndarray:
    """The part of a head's turn (degrees, pitch, yaw, roll) that ``--pose`` follows: at most ``FOLLOWED_TURN`` each
    way."""
    return np.clip(turn, -FOLLOWED_TURN, FOLLOWED_TURN)


def proportions(landmarks: np.ndarray) -> np.ndarray:
    """(..., 478, 2) normalised crop landmarks -> (..., 3): the eyes' opening, the brows' height over the upper
    lids and the mouth's width, each a mean over both sides where there are two."""
    xy = np.asarray(landmarks, dtype=np.float64)
    upper = [xy[..., list(up), 1].mean(-1) for up, _ in _LIDS]
    lower = [xy[..., list(low), 1].mean(-1) for _, low in _LIDS]
    opening = np.mean([lo - up for up, lo in zip(upper, lower)], axis=0)
    brows = np.mean([up - xy[..., list(b), 1].mean(-1) for up, b in zip(upper, _BROWS)], axis=0)
    mouth = np.abs(xy[..., _MOUTH_CORNERS[1], 0] - xy[..., _MOUTH_CORNERS[0], 0])
    return np.stack([opening, brows, mouth], axis=-1)


def _takeable(displacement: np.ndarray) -> np.ndarray:
    """(478, 2) the part of a face's displacement from its rest that a warp can take back: all of it but the lids'
    closing (upper lids down, lower lids up), as there is no eye under them to show."""
    taken = displacement.copy()
    taken[_UPPER_LIDS, 1] = np.minimum(taken[_UPPER_LIDS, 1], 0.0)
    taken[_LOWER_LIDS, 1] = np.maximum(taken[_LOWER_LIDS, 1], 0.0)
    return taken


def brows_above_lids(landmarks: np.ndarray) -> np.ndarray:
    """(478,) bool: the brows' and forehead's landmarks, the lids' lines left out."""
    brows = face_regions(landmarks)["brows"].copy()
    brows[_UPPER_LIDS + _LOWER_LIDS] = False
    return brows


def read_regions(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """(478,) bool per region of ``READ_SHARES``: the brows and forehead; the eyes below them, lids and the skin
    around."""
    brows = brows_above_lids(landmarks)
    return {"brows": brows, "eyes": face_regions(landmarks)["eyes"] & ~brows}


def as_travelled(moves: np.ndarray, landmarks: np.ndarray, shares: dict[str, float] = READ_SHARES) -> np.ndarray:
    """``moves`` (..., 478, 2) as MediaPipe read them, with each region of ``shares`` (placed on ``landmarks``)
    divided by the share of its travel the landmarks show: as far as the face moved."""
    out = np.array(moves, copy=True)
    for region, inside in read_regions(landmarks).items():
        if region in shares:
            out[..., inside, :] /= shares[region]
    return out


def region_scales(landmarks: np.ndarray) -> np.ndarray:
    """(478, 3, 2) weights: which proportion (eye opening, brow height, mouth width) scales each landmark's motion,
    per axis (lids and brows vertically, the mouth both ways). Landmarks in no such region move as the driver's."""
    regions = face_regions(landmarks)
    weights = np.zeros((len(landmarks), 3, 2))
    weights[_UPPER_LIDS + _LOWER_LIDS, 0, 1] = 1.0
    weights[brows_above_lids(landmarks), 1, 1] = 1.0
    weights[regions["mouth"], 2, :] = 1.0
    return weights


@dataclass(frozen=True)
class DrivingMotion:
    """A driving clip's expression motion: per frame, its landmarks' displacement from its rest (normalised crop
    units, y down; head turns taken out), and its head's turn from its usual pose (degrees)."""

    times: np.ndarray  # (N,) seconds
    displacement: np.ndarray  # (N, 478, 2) float32
    turns: np.ndarray  # (N, 3) pitch, yaw, roll minus the clip's median, at most FOLLOWED_TURN each way
    rest: np.ndarray  # (478, 2) the driving face at rest

    @classmethod
    def from_track(cls, times: np.ndarray, landmarks: np.ndarray, aus: np.ndarray, poses: np.ndarray,
                   pose_basis: np.ndarray | None, read_shares: dict[str, float] = READ_SHARES) -> DrivingMotion:
        """From a driving track's per-frame aligned landmarks (N, 478, 2, normalised), AUs (N, 17) and head poses
        (N, 3, degrees). ``pose_basis``: the model's per-degree fields (3, 478, 2, in moves per
        ``pose_features`` unit), which take the head's turns out of the displacement; None leaves them in.
        ``read_shares``: the share of each region's travel the landmarks show (``as_travelled``; {}: the motion as
        MediaPipe read it)."""
        usual = np.median(poses, axis=0)
        turned = np.abs(poses - usual).max(axis=1)
        # The calmest frames: the least AU activity, among the frames nearest the usual head pose.
        near = turned <= np.percentile(turned, 50)
        activity = np.where(near, aus.sum(axis=1), np.inf)
        calm = np.argsort(activity)[: max(1, int(round(_CALM_SHARE * len(times))))]
        rest = stabilise(landmarks[calm], landmarks[calm[0]]).mean(axis=0)
        moved = stabilise(landmarks, rest) - rest
        from_rest = (poses - poses[calm].mean(axis=0)).astype(np.float64)
        if pose_basis is not None:
            # The basis gives moves (content's origin minus landing), so a turn from the rest's pose displaces
            # landmarks by -basis @ turn.
            moved += np.einsum("nk,kpc->npc", pose_features(from_rest), pose_basis)
        away = np.abs(from_rest).max(axis=1)
        moved *= np.clip((UNTRUSTED_TURN - away) / (UNTRUSTED_TURN - TRUSTED_TURN), 0.0, 1.0)[:, None, None]
        moved[:, MESH:] = 0.0  # the irises follow gaze, not expression
        moved[:, list(FACE_SIDES)] = 0.0  # the outline's sides slide in MediaPipe's reading; the ears stay put
        moved = as_travelled(moved, rest, read_shares)
        turns = followed_turn(poses - usual).astype(np.float32)
        return cls(np.asarray(times, np.float64), moved.astype(np.float32), turns, rest.astype(np.float32))

    @cached_property
    def rest_proportions(self) -> np.ndarray:
        return proportions(self.rest)

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(displacement (478, 2), turn (3,)) at time t: linear between frames, held past either end."""
        if len(self.times) == 1:
            return self.displacement[0], self.turns[0]
        i = int(np.clip(np.searchsorted(self.times, t), 1, len(self.times) - 1))
        t0, t1 = self.times[i - 1], self.times[i]
        w = float(np.clip((t - t0) / (t1 - t0), 0.0, 1.0)) if t1 > t0 else 1.0
        return ((1 - w) * self.displacement[i - 1] + w * self.displacement[i],
                (1 - w) * self.turns[i - 1] + w * self.turns[i])


class Retargeter:
    """The moves that give a source face a driving face's motion at time t (``__call__``); stateful (the source's
    proportions are a running value over the frames seen), so one per stream, ``reset`` between streams."""

    def __init__(self, driving: DrivingMotion, aus: tuple[str, ...] = AU_NAMES, scale: float = 1.0,
                 pose_basis: np.ndarray | None = None, own: DrivingMotion | None = None) -> None:
        """``aus``: only these AUs' regions move. ``scale``: a factor on the motion. ``pose_basis``: the model's
        per-degree fields, to turn the source's head as the driving head turns (None: the head is left as it is).
        ``own``: the source video's own motion, on the same timeline; it is taken out (an absolute transfer: the
        source's face goes back to its rest, then moves as the driver's), but for its lids' closing, which a warp
        cannot take back. A mouth the warp closes is the face memory's to fill (``reenact.memory``)."""
        self.driving = driving
        self.own = own
        self.scale = scale
        self.selected = np.any(region_mask(driving.rest, tuple(aus)), axis=0)[:, None] if aus else None
        self.pose_basis = pose_basis
        self._seen: deque[np.ndarray] = deque(maxlen=_SOURCE_MEMORY)
        self._weights: np.ndarray | None = None

    def reset(self) -> None:
        self._seen.clear()
        self._weights = None

    def ratios(self, landmarks: np.ndarray) -> np.ndarray:
        """The source's proportions over the driver's resting ones (eye opening, brow height, mouth width), the
        source's taken over the frames seen so far: a blink or a smile does not change them."""
        self._seen.append(proportions(landmarks))
        seen = np.array(self._seen)
        # The eyes: a high percentile, as blinks only ever narrow them; the rest: the median.
        source = np.array([np.percentile(seen[:, 0], 75), np.median(seen[:, 1]), np.median(seen[:, 2])])
        return np.clip(source / np.maximum(self.driving.rest_proportions, 1e-6), *_RATIO_RANGE)

    def __call__(self, landmarks: np.ndarray, t: float) -> np.ndarray:
        """(478, 2) moves, normalised crop units, for a source face with ``landmarks`` (478, 2, normalised)."""
        if self._weights is None:
            self._weights = region_scales(landmarks)
        displacement, turn = self.driving.at(t)
        ratios = self.ratios(landmarks)
        weights = self._weights
        factor = 1.0 + np.einsum("nkc,k->nc", weights, ratios - 1.0)  # each landmark's region's ratio, else 1
        moved = self.scale * factor * displacement
        if self.own is not None:
            moved = moved - _takeable(self.own.at(t)[0])
        if self.selected is not None:
            moved = moved * self.selected
        moves = -moved  # a landmark displaced by d lands at p + d: its content comes from -d relative to there
        if self.pose_basis is not None:
            moves = moves + np.einsum("k,kpc->pc", pose_features(turn.astype(np.float64)), self.pose_basis)
        return moves.astype(np.float32)
