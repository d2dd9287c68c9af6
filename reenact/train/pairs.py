"""Training pairs: two frames A, B of one clip, B brought onto A's head pose, so that only expression differs.

The aligned crops already remove most head motion; what is left (a small similarity, fitted on the
expression-stable landmarks) is removed from B's landmarks and image, so the generator is asked only for what
the AUs can explain.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from reenact.face.align import STABLE_LANDMARKS, face_mask, similarity_transform
from reenact.model.networks import normalise
from reenact.train.dataset import PreparedClip

MESH = 468  # landmarks of the mesh proper; the 10 iris points follow gaze, not expression


@dataclass
class PairBatch:
    """A batch of pairs as numpy arrays; images are float32 (B, 3, S, S) in [0, 1] when loaded."""

    landmarks_a: np.ndarray  # (B, 478, 2) normalised
    landmarks_b: np.ndarray  # (B, 478, 2) normalised, B's pose moved onto A's
    aus_a: np.ndarray  # (B, 17)
    aus_b: np.ndarray
    image_a: np.ndarray | None = None
    image_b: np.ndarray | None = None  # B's crop moved onto A's pose
    mask_b: np.ndarray | None = None  # (B, 1, S, S) face mask of B (moved)


class PairSampler:
    """Samples pairs with each identity equally likely (one GRID speaker is 65% of the frames otherwise)."""

    def __init__(self, clips: list[PreparedClip], max_gap_s: float = 4.0, seed: int = 0, distinct: bool = False,
                 max_pose_change: float | None = None) -> None:
        """``distinct``: B is never A itself. ``max_pose_change``: B's head pitch, yaw and roll each within this
        many degrees of A's (a frame with no such partner is drawn again)."""
        self.clips = [c for c in clips if len(c.frame) >= 2]
        if not self.clips:
            raise ValueError("no clip with two or more frames to sample pairs from")
        self.max_gap_s = max_gap_s
        self.distinct = distinct
        self.max_pose_change = max_pose_change
        self.rng = np.random.default_rng(seed)
        by_person: dict[str, list[int]] = {}
        for i, clip in enumerate(self.clips):
            by_person.setdefault(clip.identity, []).append(i)
        self.people = list(by_person.values())

    def _pair(self) -> tuple[PreparedClip, int, int]:
        for _ in range(10_000):
            group = self.people[self.rng.integers(len(self.people))]
            # Within a person, clips are drawn by length so every frame is equally likely.
            lengths = np.array([len(self.clips[i].frame) for i in group], dtype=float)
            clip = self.clips[group[self.rng.choice(len(group), p=lengths / lengths.sum())]]
            a = int(self.rng.integers(len(clip.frame)))
            near = np.abs(clip.time - clip.time[a]) <= self.max_gap_s
            if self.distinct:
                near[a] = False
            if self.max_pose_change is not None:
                near &= np.abs(clip.pose - clip.pose[a]).max(axis=1) <= self.max_pose_change
            if near.any():
                return clip, a, int(self.rng.choice(np.flatnonzero(near)))
        raise ValueError("no pair of frames meets the pair conditions (time gap, distinct frames, head pose)")

    def sample(self, batch: int, images: bool) -> PairBatch:
        rows = []
        for _ in range(batch):
            clip, a, b = self._pair()
            size = clip.crops.shape[1]
            lm_a, lm_b = clip.landmarks[a].astype(np.float64), clip.landmarks[b].astype(np.float64)
            stable = list(STABLE_LANDMARKS)
            to_a = similarity_transform(lm_b[stable], lm_a[stable])
            lm_b = lm_b @ to_a[:, :2].T + to_a[:, 2]
            row = [normalise(lm_a, size), normalise(lm_b, size), clip.aus[a], clip.aus[b]]
            if images:
                img_b = cv2.warpAffine(clip.crops[b], to_a, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                row += [clip.crops[a], img_b, face_mask(lm_b, size)]
            rows.append(row)
        cols = list(zip(*rows))
        out = PairBatch(*(np.stack(c).astype(np.float32) for c in cols[:4]))
        if images:
            out.image_a = np.stack(cols[4]).transpose(0, 3, 1, 2).astype(np.float32) / 255
            out.image_b = np.stack(cols[5]).transpose(0, 3, 1, 2).astype(np.float32) / 255
            out.mask_b = np.stack(cols[6])[:, None].astype(np.float32)
        return out
