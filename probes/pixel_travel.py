"""Do MediaPipe's landmarks carry the whole of a real face's motion? Read by the pixels of real frames, per region.

Between two frames A and B of one person (the head held within 2 degrees, B registered onto A on the stable
landmarks), A is warped by the motion step's flow through the landmarks' own moves (what MediaPipe found on B), with
one region's moves scaled by a gain g and the rest as found. The gain at which the warp matches B's pixels best
(PSNR inside that region on B, over the pairs whose region moved most) is how far that region's pixels moved for
each unit of landmark travel: 1 if the landmarks carry the whole motion, above 1 if they under-read it.

Regions: the brows and forehead, and the eyes below them, lids and the skin around (``reenact.retarget.read_regions``);
the mouth and jaw. The warp alone is scored (no texture step, no paint). Run on the training people
(``--people train``) to choose a correction, and on the held-out ones to check it.

Usage: python probes/pixel_travel.py DATASET --split RUN/split.json [--people train] [--pairs 2000] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from reenact.evaluate import draw_pairs
from reenact.face.regions import face_regions
from reenact.model.coords import denormalise
from reenact.model.io import load_generator
from reenact.retarget import _BROWS, _LIDS, read_regions
from reenact.train.dataset import load_dataset

GAINS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)
MOUTH_POINTS = (61, 291, 0, 13, 14, 17, 37, 267, 84, 314, 152, 148, 377, 176, 400)


def scaled_regions(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """(478,) bool per region: the landmarks whose moves a gain scales (the brows and eyes as
    ``reenact.retarget.READ_SHARES`` corrects them)."""
    return {**read_regions(landmarks), "mouth": face_regions(landmarks)["mouth"]}


def scored_mask(landmarks: np.ndarray, region: str, size: int) -> np.ndarray:
    """(S, S) bool: where a region's pixels are on a face (crop pixels), its features' hull widened a little."""
    xy = denormalise(landmarks, size)
    groups = {"brows": [list(b) for b in _BROWS], "eyes": [list(u) + list(lo) for u, lo in _LIDS],
              "mouth": [list(MOUTH_POINTS)]}[region]
    mask = np.zeros((size, size), np.uint8)
    for group in groups:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(xy[group]).astype(np.int32)), 1)
    widen = max(2, size // 40)
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * widen + 1,) * 2)).astype(bool)


class ScaledMoves:
    """Stands in for the motion step's ``displacements``: each pair's own landmark moves, one region's times a gain."""

    def __init__(self, moves: np.ndarray) -> None:
        self.moves = torch.from_numpy(moves)

    def __call__(self, landmarks: torch.Tensor, *_, **__) -> torch.Tensor:
        return self.moves.to(landmarks.dtype)


@torch.no_grad()
def travel(model, batch, moving_share: float, regions: tuple[str, ...] = ("brows", "eyes", "mouth"), chunk: int = 50,
           ) -> dict[str, dict]:
    """Per region, the best gain and the PSNR at each, over the ``moving_share`` of pairs whose region moved most
    (the landmarks' own jitter, which no pixel follows, weighs least there)."""
    size = batch.image_a.shape[-1]
    moves = (batch.landmarks_a - batch.landmarks_b).astype(np.float32)  # content from - where it lands
    rows = {}
    for region in regions:
        chosen = np.array([scaled_regions(a)[region] for a in batch.landmarks_a])
        moved = np.array([np.linalg.norm(m[c], axis=1).mean() for m, c in zip(moves, chosen)])
        scored = np.argsort(-moved)[: int(round(moving_share * len(moved)))]
        masks = [scored_mask(batch.landmarks_b[i], region, size) for i in scored]
        psnr = []
        for gain in GAINS:
            scaled = moves[scored].copy()
            scaled[chosen[scored]] *= gain
            errors = []
            for s in range(0, len(scored), chunk):
                part = scored[s:s + chunk]
                model.motion.displacements = ScaledMoves(scaled[s:s + chunk])
                warped = model(torch.from_numpy(batch.image_a[part]), torch.from_numpy(batch.landmarks_a[part]),
                               torch.from_numpy(batch.aus_a[part]), torch.from_numpy(batch.aus_b[part]))["warped"]
                for w, b, m in zip(warped.numpy(), batch.image_b[part], masks[s:s + chunk]):
                    errors.append(float(((w - b) ** 2).mean(axis=0)[m].mean()))
            psnr.append(float(np.mean(-10 * np.log10(np.maximum(errors, 1e-10)))))
        best = int(np.argmax(psnr))
        # A parabola through the best gain and its neighbours places the peak between the steps.
        peak = GAINS[best]
        if 0 < best < len(GAINS) - 1:
            a, b, c = psnr[best - 1:best + 2]
            if a - 2 * b + c < 0:
                peak = GAINS[best] + 0.5 * (a - c) / (a - 2 * b + c) * (GAINS[1] - GAINS[0])
        rows[region] = {"best_gain": round(float(peak), 3), "pairs": len(scored),
                        "mean_travel_px": round(float(moved[scored].mean() * size / 2), 2),
                        "psnr_by_gain": {str(g): round(p, 3) for g, p in zip(GAINS, psnr)}}
        print(region, rows[region], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--people", choices=("train", "validation"), default="validation")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--moving-share", type=float, default=0.15,
                        help="the share of pairs scored per region, those whose region moved most (default 0.15)")
    parser.add_argument("--regions", nargs="+", choices=("brows", "eyes", "mouth"), default=["brows", "eyes", "mouth"])
    parser.add_argument("--model", default="default")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    people = set(json.loads(args.split.read_text())[args.people])
    clips = [c for c in load_dataset(args.dataset).clips if c.identity in people]
    model = load_generator(args.model).eval()
    rows = travel(model, draw_pairs(clips, args.pairs, max_pose_change=2.0), args.moving_share, tuple(args.regions))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
