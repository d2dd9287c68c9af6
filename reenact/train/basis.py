"""The motion step's per-AU displacement basis, fitted in closed form with each AU confined to its FACS region.

Trained freely, the basis learns whatever moves with an AU in the data: brow lowering (AU04) co-occurs with
speech, so its field also opened the mouth, and a brow edit moved the lips. FACS defines each AU by the muscle
that makes it, so here each AU may move only the landmarks of its region (brows, eyes, cheeks, nose, mouth and
jaw), and the fields are the ridge least-squares fit of the landmark moves of training pairs on the AU changes,
one small solve per landmark. The fit is exact and takes seconds; the network correction on top is set to zero
(measured: it added nothing on people it never saw once the basis is fitted this way).

A model with head-pose motion gets its per-degree fields from the same solve: the head-pose change that the
similarity alignment leaves between A and B (mostly pitch and yaw) is three more columns, free to move any
landmark. Fitting them beside the AUs also keeps head turns out of the AU fields.
"""

from __future__ import annotations

import numpy as np
import torch

from reenact.face.aus import AU_NAMES
from reenact.model.networks import AU_SCALE, Generator, pose_features
from reenact.train.pairs import MESH, PairSampler
from reenact.train.dataset import PreparedClip

# MediaPipe mesh landmarks used to place the regions: eye corners, nose tip, lip centres and corners.
_EYES = ((33, 133), (362, 263))
_NOSE_TIP = 1
_MOUTH = (13, 14, 61, 291)

# Which region each AU moves (FACS: the muscle behind each AU, and what it visibly displaces).
AU_REGIONS: dict[str, tuple[str, ...]] = {
    "AU01": ("brows",), "AU02": ("brows",), "AU04": ("brows",),
    "AU05": ("eyes",), "AU07": ("eyes",), "AU45": ("eyes",),
    "AU06": ("cheeks", "eyes"), "AU09": ("cheeks", "nose"), "AU10": ("cheeks", "mouth"),
    "AU12": ("mouth",), "AU14": ("mouth",), "AU15": ("mouth",), "AU17": ("mouth",), "AU20": ("mouth",),
    "AU23": ("mouth",), "AU25": ("mouth",), "AU26": ("mouth",),
}  # fmt: skip


def face_regions(mean_landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks over the landmarks of a typical aligned face (normalised crop coordinates, y down).

    Placed relative to the face's own proportions: u is the distance from the eyes down to the nose tip.
    """
    xy = np.asarray(mean_landmarks, dtype=np.float64)
    eye_centres = [xy[list(pair)].mean(axis=0) for pair in _EYES]
    eye_y = float(np.mean([c[1] for c in eye_centres]))
    nose = xy[_NOSE_TIP]
    u = float(nose[1] - eye_y)
    y = xy[:, 1]
    near_eye = np.min([np.hypot(*(xy - c).T) for c in eye_centres], axis=0) < 0.45 * u
    return {
        "brows": y < eye_y + 0.15 * u,  # brows, forehead and upper lids
        "eyes": near_eye,
        "cheeks": (y > eye_y - 0.2 * u) & (y < nose[1] + 0.3 * u),  # from the eyes to the nose's base
        "nose": (y < nose[1] + 0.3 * u) & (np.abs(xy[:, 0] - nose[0]) < 0.6 * u),
        "mouth": y > eye_y + 0.55 * u,  # below the cheekbones: nose base, lips, mouth corners, chin, jaw
    }


def region_mask(mean_landmarks: np.ndarray) -> np.ndarray:
    """(n_aus, n_landmarks) bool: which landmarks each AU may move (never the irises, which follow gaze)."""
    regions = face_regions(mean_landmarks)
    mask = np.stack([np.any([regions[r] for r in AU_REGIONS[name]], axis=0) for name in AU_NAMES])
    mask[:, MESH:] = False
    return mask


def fit_motion_basis(model: Generator, clips: list[PreparedClip], pairs: int = 40000, ridge: float = 1.0,
                     seed: int = 1) -> dict[str, float]:
    """Fit ``model``'s displacement basis on pairs from ``clips`` and zero its correction, in place.

    Returns the mean landmark error (crop pixels at the dataset's size) of the fit and of no motion.
    """
    batch = PairSampler(clips, seed=seed).sample(pairs, images=False)
    moves = (batch.landmarks_a - batch.landmarks_b).astype(np.float64)  # (P, N, 2): the flow at B's landmarks
    change = ((batch.aus_b - batch.aus_a) / AU_SCALE).astype(np.float64)  # (P, n_aus)
    allowed = region_mask(batch.landmarks_a.mean(axis=0))
    n_pose = model.config.n_pose
    if n_pose:
        change = np.concatenate([change, pose_features(batch.pose_change).astype(np.float64)], axis=1)
        allowed = np.concatenate([allowed, np.ones((n_pose, allowed.shape[1]), dtype=bool)])  # irises turn too
    gram = change.T @ change
    basis = np.zeros((change.shape[1], *model.motion.basis.shape[1:]), dtype=np.float64)
    for n in range(moves.shape[1]):
        columns = np.flatnonzero(allowed[:, n])
        if len(columns) == 0:
            continue
        lhs = gram[np.ix_(columns, columns)] + ridge * np.eye(len(columns))
        basis[columns, n] = np.linalg.solve(lhs, change[:, columns].T @ moves[:, n])
    n_aus = model.config.n_aus
    with torch.no_grad():
        model.motion.basis.copy_(torch.from_numpy(basis[:n_aus].astype(np.float32)))
        if n_pose:
            model.motion.pose_basis.copy_(torch.from_numpy(basis[n_aus:].astype(np.float32)))
        last = model.motion.correct[-1]
        last.weight.zero_()
        last.bias.zero_()
    size = clips[0].crops.shape[1]
    error = np.einsum("pk,knc->pnc", change, basis)[:, :MESH] - moves[:, :MESH]
    return {
        "landmark_px": float(np.linalg.norm(error, axis=-1).mean() * size / 2),
        "landmark_px_copy": float(np.linalg.norm(moves[:, :MESH], axis=-1).mean() * size / 2),
    }
