"""The motion step's per-AU displacement basis, fitted in closed form with each AU kept to its FACS region.

Trained freely, the basis learns whatever moves with an AU in the data: brow lowering (AU04) co-occurs with
speech, so its field also opened the mouth, and a brow edit moved the lips. FACS defines each AU by the muscle
that makes it, so here each AU moves only the landmarks of its region (brows, eyes, cheeks, nose, mouth and jaw).
The fit is exact and takes seconds; the network correction on top is set to zero (measured: it added nothing on
people it never saw once the basis is fitted this way).

The fit (``labels="openface"``, the default) is on the training frames' OpenFace labels, not on reenact's own
reader: every labelled frame's landmark moves from its clip's rest (the mean of its calmest frames) against its
labels' rise from the rest's, all AUs and the head pose together, each person weighted alike. A least-squares
field is then the mean landmark motion of real faces whose labelled AU rises by one, the other AUs held, so an
edit of +k moves the face as real faces labelled +k moved, judged by a meter that is not reenact's. Each field is
then kept inside its region. (Fitted on pairs of reenact's readings, noisy at both ends, the fields were diluted,
and edits needed a gain tuned until that same reader saw them: ``labels="reader"`` keeps that fit, one small
solve per landmark with the region's AUs only.)

A model with head-pose motion gets its per-degree fields from the same solve: the head-pose change from the rest
(or, for pairs, the one the similarity alignment leaves between A and B; mostly pitch and yaw) is three more
columns, free to move any landmark. Fitting them beside the AUs also keeps head turns out of the AU fields.

Rules follow the solve (``BASIS_RULES``): the lip-corner AUs do not open or close the lips, and the brows' and the
lids' moves are divided by the share of their travel MediaPipe's landmarks show, as a transfer's driving motion is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch

from reenact.face.align import stabilise
from reenact.face.aus import AU_NAMES
from reenact.face.regions import MESH, region_mask
from reenact.model.coords import normalise
from reenact.model.networks import AU_SCALE, GAP_CONTOURS, Generator, pose_features
from reenact.retarget import READ_SHARES, as_travelled
from reenact.train.pairs import PairSampler
from reenact.train.dataset import PreparedClip

@dataclass(frozen=True)
class Rises:
    """Per labelled frame of a set of clips: how far its landmarks moved from its clip's rest, how far each AU
    label rose from the rest's, the head's turn from the rest's pose, and a weight (each person weighs the same)."""

    moves: np.ndarray  # (F, 478, 2) the rest's landmark minus the frame's (the motion's convention), normalised
    change: np.ndarray  # (F, 17) label minus the rest's mean label
    pose_change: np.ndarray  # (F, 3) degrees
    weight: np.ndarray  # (F,) summing to F over all frames, equal over people


def rises_from_rest(clips: list[PreparedClip], calm_share: float = 1 / 7) -> Rises:
    """``Rises`` of every frame of ``clips`` with OpenFace labels. A clip's rest: the mean face (stabilised onto one
    of them) of its ``calm_share`` of labelled frames with the least labelled activity, and their mean labels."""
    moves, change, pose, people = [], [], [], []
    for clip in clips:
        keep = ~np.isnan(clip.openface).any(axis=1)
        if keep.sum() < 10:
            continue
        labels, pose_deg = clip.openface[keep].astype(np.float64), clip.pose[keep].astype(np.float64)
        points = normalise(clip.landmarks[keep].astype(np.float64), clip.crops.shape[1])
        calm = np.argsort(labels.sum(axis=1))[: max(3, int(len(labels) * calm_share))]
        rest = stabilise(points[calm], points[calm[0]]).mean(axis=0)
        moves.append(rest - stabilise(points, rest))
        change.append(labels - labels[calm].mean(axis=0))
        pose.append(pose_deg - pose_deg[calm].mean(axis=0))
        people.extend([clip.identity] * len(labels))
    if not moves:
        raise ValueError("no clip has OpenFace labels (prepare the dataset with --labels)")
    names, counts = np.unique(people, return_counts=True)
    frames_of = dict(zip(names, counts))
    weight = len(people) / (len(names) * np.array([frames_of[p] for p in people], dtype=np.float64))
    return Rises(np.concatenate(moves), np.concatenate(change), np.concatenate(pose), weight)


def mean_face(landmarks: list[np.ndarray], size: int) -> np.ndarray:
    """(478, 2) normalised: the mean of clips' landmarks ((frames, 478, 2) each, crop pixels at ``size``), where the
    fit places the FACS regions and the lips (the first 50 training clips')."""
    return normalise(np.concatenate(landmarks).mean(axis=0).astype(np.float64), size)


# FACS: these AUs move the lips' corners (pull them out and up, down, or sideways); parting the lips is AU25's and
# AU26's. Fitted on OpenFace's labels, AU12's field also closed the lips by 3 px at +2 (256 px crop; AU15 1.2 px):
# at the same labelled lips-part a smiling mouth is nearer closed (OpenFace likely reads a smile's teeth as parted).
# Applied to a talking face, that closed a GRID speaker's mouth in every frame of a smile edit and stopped his speech.
LIP_CORNER_AUS = ("AU12", "AU14", "AU15", "AU20")


def lip_sets(face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mesh landmarks of the upper and of the lower lip (each between its outer and inner lip line, both lines
    included; the corners, on both, in neither), on ``face`` (478, 2)."""
    outer_upper, inner_upper, inner_lower, outer_lower = GAP_CONTOURS[-1]

    def within(outline: list[int]) -> set[int]:
        polygon = (face[outline] * 1000).astype(np.float32)  # pointPolygonTest wants float32: keep sub-pixel steps
        return {i for i in range(MESH) if cv2.pointPolygonTest(polygon, tuple(map(float, face[i] * 1000)), True) >= -0.5}

    upper = within(list(outer_upper) + list(inner_upper)[::-1])
    lower = within(list(outer_lower) + list(inner_lower)[::-1])
    return np.array(sorted(upper - lower)), np.array(sorted(lower - upper))


def hold_lip_gap(basis: np.ndarray, face: np.ndarray, aus: tuple[str, ...] = LIP_CORNER_AUS) -> np.ndarray:
    """``basis`` (n_aus, 478, 2) with the fields of ``aus`` leaving the lips' opening as it is: per column of the
    mouth, how far a field opens or closes the inner lip lines is taken out, half from each lip (each lip's
    landmarks by the gap at their own column, on ``face``), so both lips move by the mean of their fitted moves."""
    out = basis.copy()
    _, inner_upper, inner_lower, _ = GAP_CONTOURS[-1]
    columns = (face[list(inner_upper), 0] + face[list(inner_lower), 0]) / 2
    order = np.argsort(columns)
    upper, lower = lip_sets(face)
    for name in aus:
        k = AU_NAMES.index(name)
        gap = out[k, list(inner_lower), 1] - out[k, list(inner_upper), 1]
        out[k, upper, 1] += np.interp(face[upper, 0], columns[order], gap[order]) / 2
        out[k, lower, 1] -= np.interp(face[lower, 0], columns[order], gap[order]) / 2
    return out


def carry_read_travel(basis: np.ndarray, face: np.ndarray, region: str) -> np.ndarray:
    """``basis`` (n_aus, 478, 2) with one region's moves divided by the share of its travel MediaPipe's landmarks show
    (``reenact.retarget.READ_SHARES``; a transfer's driving motion is corrected by the same): fitted on those
    landmarks, a field holds the travel MediaPipe read, not all the face moved."""
    return as_travelled(basis, face, {region: READ_SHARES[region]})


# The rules a fit applies after the least-squares solve, by name, in order (``tools/basis_rules.py`` applies them
# to a model fitted before a rule was added).
BASIS_RULES = {"lip-gap": hold_lip_gap, "brow-travel": partial(carry_read_travel, region="brows"),
               "lid-travel": partial(carry_read_travel, region="eyes")}


def fit_motion_basis(model: Generator, clips: list[PreparedClip], pairs: int = 40000, ridge: float = 1.0,
                     seed: int = 1, labels: str = "openface") -> dict[str, float]:
    """Fit ``model``'s displacement basis and zero its correction, in place. ``labels``: 'openface' fits every
    labelled frame's moves from its clip's rest on its OpenFace labels' rise from the rest's (``rises_from_rest``:
    a rest averages many frames, so its labels carry little noise, and the field is the mean motion of a labelled
    rise); it clears the model's ``edit_gain`` and ``edit_ceiling``, as an edit then needs no gain. 'reader' fits
    ``pairs`` pairs of frames on reenact's own AU reader, as models before did.

    Returns the mean landmark error (crop pixels at the dataset's size) of the fit and of no motion.
    """
    if labels == "openface":
        rises = rises_from_rest(clips)
        moves, weight = rises.moves, rises.weight
        change, pose_change = rises.change / AU_SCALE, rises.pose_change
        model.reconfigure(edit_gain=None, edit_ceiling=None)
    elif labels == "reader":
        batch = PairSampler(clips, seed=seed).sample(pairs, images=False)
        moves = (batch.landmarks_a - batch.landmarks_b).astype(np.float64)  # (P, N, 2): the flow at B's landmarks
        change = ((batch.aus_b - batch.aus_a) / AU_SCALE).astype(np.float64)  # (P, n_aus)
        pose_change, weight = batch.pose_change, np.ones(len(moves))
    else:
        raise ValueError(f"labels are 'openface' or 'reader', not {labels!r}")
    face = mean_face([c.landmarks for c in clips[:50]], clips[0].crops.shape[1])
    allowed = region_mask(face)
    n_pose = model.config.n_pose
    if n_pose:
        change = np.concatenate([change, pose_features(pose_change).astype(np.float64)], axis=1)
        allowed = np.concatenate([allowed, np.ones((n_pose, allowed.shape[1]), dtype=bool)])  # irises turn too
    weighted = change * weight[:, None]
    gram = weighted.T @ change
    basis = np.zeros((change.shape[1], *model.motion.basis.shape[1:]), dtype=np.float64)
    if labels == "openface":
        # Every AU held while each is fitted (one solve for all landmarks), then each AU's field kept inside its
        # region only: inside it, an AU moves a landmark as real faces' did with the others held. Solved with the
        # region's AUs alone (the fit before), an AU also took up what correlated AUs do at its landmarks: a
        # cheek raise carried 0.39 of real faces' lid motion, the smile having been left out there.
        lhs = gram + ridge * np.eye(len(gram))
        basis = np.linalg.solve(lhs, weighted.T @ moves.reshape(len(moves), -1)).reshape(basis.shape) * allowed[..., None]
    else:
        for n in range(moves.shape[1]):
            columns = np.flatnonzero(allowed[:, n])
            if len(columns) == 0:
                continue
            lhs = gram[np.ix_(columns, columns)] + ridge * np.eye(len(columns))
            basis[columns, n] = np.linalg.solve(lhs, weighted[:, columns].T @ moves[:, n])
    n_aus = model.config.n_aus
    if labels == "openface":
        for rule in BASIS_RULES.values():
            basis[:n_aus] = rule(basis[:n_aus], face)
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
