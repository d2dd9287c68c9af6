"""Training pairs: two frames A, B of one clip, B brought onto A's head pose, so that only expression differs.

The aligned crops already remove most head motion; what is left (a small similarity, fitted on the
expression-stable landmarks) is removed from B's landmarks and image, so the generator is asked only for what
the AUs can explain.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import cv2
import numpy as np

from reenact.face.align import STABLE_LANDMARKS, face_mask, similarity_transform
from reenact.model.networks import normalise
from reenact.train.dataset import PreparedClip



@dataclass
class PairBatch:
    """A batch of pairs as numpy arrays; images are float32 (B, 3, S, S) in [0, 1] when loaded."""

    landmarks_a: np.ndarray  # (B, 478, 2) normalised
    landmarks_b: np.ndarray  # (B, 478, 2) normalised, B's pose moved onto A's
    aus_a: np.ndarray  # (B, 17)
    aus_b: np.ndarray
    pose_change: np.ndarray  # (B, 3) B's head pitch, yaw, roll minus A's, degrees (what the similarity leaves)
    image_a: np.ndarray | None = None
    image_b: np.ndarray | None = None  # B's crop moved onto A's pose
    mask_b: np.ndarray | None = None  # (B, 1, S, S) face mask of B (moved)


class PairSampler:
    """Samples pairs with each identity equally likely (one GRID speaker is 65% of the frames otherwise)."""

    def __init__(self, clips: list[PreparedClip], max_gap_s: float = 4.0, seed: int = 0, distinct: bool = False,
                 max_pose_change: float | None = None, expressive: float = 0.0, min_change: float = 1.0) -> None:
        """``distinct``: B is never A itself. ``max_pose_change``: B's head pitch, yaw and roll each within this
        many degrees of A's (a frame with no such partner is drawn again). ``expressive``: the share of pairs
        drawn so that one AU changes by at least ``min_change`` between A and B, each AU equally often (then each
        person with such a change equally often): talking-head data is mostly speech, and a blink, a frown or a
        wide-open mouth is rare in ordinary pairs. (Such pairs are always distinct frames; they do not hold the
        head.)"""
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
        self.expressive = expressive
        self.min_change = min_change
        self.rises = self._rises() if expressive > 0 else []

    def reseeded(self, seed: int) -> PairSampler:
        """The same sampler (clips, conditions, expressive-pair index) drawing from its own random generator."""
        other = copy.copy(self)
        other.rng = np.random.default_rng(seed)
        return other

    def _rises(self) -> list[tuple[int, list[list[tuple[int, int]]]]]:
        """Per AU (that ever rises so), per person: (clip, frame) where the AU is at least ``min_change`` above
        some frame within the gap."""
        rises: list[dict[str, list[tuple[int, int]]]] = [{} for _ in range(self.clips[0].aus.shape[1])]
        for c, clip in enumerate(self.clips):
            near = np.abs(clip.time[:, None] - clip.time[None]) <= self.max_gap_s  # (N, N): fine for clips of minutes
            for k, per_person in enumerate(rises):
                v = clip.aus[:, k]
                low = np.where(near, v[None], np.inf).min(axis=1)  # each frame's lowest value within the gap
                for frame in np.flatnonzero(v - low >= self.min_change):
                    per_person.setdefault(clip.identity, []).append((c, int(frame)))
        return [(k, list(per_person.values())) for k, per_person in enumerate(rises) if per_person]

    def _expressive_pair(self) -> tuple[PreparedClip, int, int]:
        k, people = self.rises[self.rng.integers(len(self.rises))]
        frames = people[self.rng.integers(len(people))]
        c, high = frames[self.rng.integers(len(frames))]
        clip = self.clips[c]
        v = clip.aus[:, k]
        low = np.flatnonzero((np.abs(clip.time - clip.time[high]) <= self.max_gap_s) & (v <= v[high] - self.min_change))
        other = int(self.rng.choice(low))
        # Both directions: the AU rises from A to B as often as it falls.
        return (clip, other, high) if self.rng.random() < 0.5 else (clip, high, other)

    def _pair(self) -> tuple[PreparedClip, int, int]:
        if self.rises and self.rng.random() < self.expressive:
            return self._expressive_pair()
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
            row = [normalise(lm_a, size), normalise(lm_b, size), clip.aus[a], clip.aus[b], clip.pose[b] - clip.pose[a]]
            if images:
                img_b = cv2.warpAffine(clip.crops[b], to_a, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                row += [clip.crops[a], img_b, face_mask(lm_b, size)]
            rows.append(row)
        cols = list(zip(*rows))
        out = PairBatch(*(np.stack(c).astype(np.float32) for c in cols[:5]))
        if images:
            out.image_a = np.stack(cols[5]).transpose(0, 3, 1, 2).astype(np.float32) / 255
            out.image_b = np.stack(cols[6]).transpose(0, 3, 1, 2).astype(np.float32) / 255
            out.mask_b = np.stack(cols[7])[:, None].astype(np.float32)
        return out
