"""The person's own motion: how this face's mouth moves as its own AUs change, learned from a video's frames.

An AU edit moves the landmarks by the motion step's fields: for each AU, the mean motion of the training people
whose OpenFace label rose by one. One person's mouth opens further or less far than the mean, and this clip's AUs
come from reenact's reader, not OpenFace: on the held-out clips, editing a closed-mouth frame to the read AUs of an
open-mouth frame of the same clip opened the mouth 0.55 of the way (median 0.50). A video shows the person's own
mouth at many AUs, so a file job's first pass fits this person's own fields, in the reader's units: a least-squares
fit of the face's landmarks (brought onto the aligner's template by a similarity on the stable landmarks) on its
AUs and head pose over every tracked frame, pulled toward the model's fields by a ridge so that an AU the clip
barely moves keeps the model's field. The same pairs then opened 0.82 of the way (``probes/own_motion.py``).

Only how far the mouth opens is fitted (``FITTED_AUS``), each AU inside its model field's region. The fit is kept
as sums (bounded however long the video), so the memories of a first pass's segments merge exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from reenact.face.align import STABLE_LANDMARKS, TEMPLATE, similarity_transform
from reenact.face.aus import AU_NAMES
from reenact.model.networks import AU_SCALE, MotionNet, pose_features

FITTED_AUS = ("AU25", "AU26")  # how far the mouth opens: what a warp most often shows too little of
RIDGE = 5.0  # the prior's weight: a clip where an AU varies by less than ~0.13 over 300 frames keeps the model's field
MIN_FRAMES = 50  # fewer frames than this: the model's fields as they are
_N_POSE = 3
_TEMPLATE = TEMPLATE * 2 - 1  # the stable landmarks' place in grid_sample's normalised crop coordinates


def _on_template(points: np.ndarray) -> np.ndarray:
    """(478, 2) normalised landmarks brought onto the aligner's template by a similarity on the stable landmarks:
    the alignment's own lag and jitter taken out, the expression left."""
    stable = list(STABLE_LANDMARKS)
    m = similarity_transform(points[stable].astype(np.float64), _TEMPLATE)
    return points[:, :2].astype(np.float64) @ m[:, :2].T + m[:, 2]


class OwnMotion:
    """Sums over a clip's frames of (AUs, head pose) and landmarks, and the fields they give against a model."""

    def __init__(self) -> None:
        n = len(AU_NAMES) + _N_POSE
        self.count = 0
        self.sum_x = np.zeros(n)
        self.sum_xx = np.zeros((n, n))
        self.sum_y: np.ndarray | None = None
        self.sum_xy: np.ndarray | None = None

    def observe(self, points: np.ndarray, aus: np.ndarray, pose_degrees: np.ndarray) -> None:
        """One frame: its landmarks (478, 2, normalised crop coordinates), its AUs (reenact's reader) and its head's
        pitch, yaw and roll in degrees."""
        x = np.concatenate([np.asarray(aus, np.float64), pose_features(np.asarray(pose_degrees, np.float64))])
        y = _on_template(points).ravel()
        if self.sum_y is None:
            self.sum_y, self.sum_xy = np.zeros_like(y), np.zeros((len(x), len(y)))
        self.count += 1
        self.sum_x += x
        self.sum_xx += np.outer(x, x)
        self.sum_y += y
        self.sum_xy += np.outer(x, y)

    def merge(self, other: OwnMotion) -> None:
        if other.sum_y is None:
            return
        if self.sum_y is None:
            self.sum_y, self.sum_xy = np.zeros_like(other.sum_y), np.zeros_like(other.sum_xy)
        self.count += other.count
        self.sum_x += other.sum_x
        self.sum_xx += other.sum_xx
        self.sum_y += other.sum_y
        self.sum_xy += other.sum_xy

    def extra_moves(self, basis: np.ndarray, pose_basis: np.ndarray | None) -> np.ndarray | None:
        """Per AU, the landmark moves (17, 478, 2; the motion step's units: moves per unit of AU) to add to the
        model's for this person; zero for the AUs not fitted and outside each field's region. None where the clip
        is too short to fit. ``basis``, ``pose_basis``: the model's per-AU and per-pose fields (moves per
        AU_SCALE, per pose feature)."""
        if self.count < MIN_FRAMES or self.sum_y is None:
            return None
        n_aus = len(AU_NAMES)
        # The model's fields as displacements per unit of each regressor: the prior the ridge pulls toward.
        prior = np.zeros((n_aus + _N_POSE, basis.shape[1] * 2))
        prior[:n_aus] = -basis.reshape(n_aus, -1) / AU_SCALE
        if pose_basis is not None:
            prior[n_aus:] = -pose_basis.reshape(_N_POSE, -1)
        mean_x, mean_y = self.sum_x / self.count, self.sum_y / self.count
        xx = self.sum_xx - self.count * np.outer(mean_x, mean_x)
        xy = self.sum_xy - self.count * np.outer(mean_x, mean_y)
        ridge = RIDGE * np.eye(len(mean_x))
        own = np.linalg.solve(xx + ridge, xy + ridge @ prior)
        extra = np.zeros_like(basis)
        for name in FITTED_AUS:
            k = AU_NAMES.index(name)
            region = np.linalg.norm(basis[k], axis=1) > 1e-6
            extra[k, region] = -(own[k] - prior[k]).reshape(-1, 2)[region]
        return extra


def extra_moves_for(own: OwnMotion, motion: MotionNet) -> torch.Tensor | None:
    """``own.extra_moves`` against a model's motion step, as a float32 tensor on the step's device (None: too short)."""
    pose_basis = motion.pose_basis.detach().cpu().numpy().astype(np.float64) if motion.config.n_pose else None
    extra = own.extra_moves(motion.basis.detach().cpu().numpy().astype(np.float64), pose_basis)
    return None if extra is None else torch.from_numpy(extra.astype(np.float32)).to(motion.basis.device)


def own_moves(extra: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor) -> torch.Tensor:
    """The moves (B, 478, 2) an AU change adds to the model's for this person (``extra``: ``OwnMotion.extra_moves``)."""
    return torch.einsum("bk,knc->bnc", target_aus - source_aus, extra)
