"""Do MediaPipe's landmarks carry the whole of a real face's motion? Read by the pixels of real frames, per region.

Between two frames A and B of one person (the head held within 2 degrees, B registered onto A on the stable
landmarks), A is warped by the motion step's flow through the landmarks' own moves (what MediaPipe found on B), with
one region's moves scaled by a gain g and the rest as found. The gain at which the warp matches B's pixels best
(PSNR inside that region on B, over the pairs whose region moved most) is how far that region's pixels moved for
each unit of landmark travel: 1 if the landmarks carry the whole motion, above 1 if they under-read it.

Regions: the brows and forehead, and the eyes below them, lids and the skin around (``reenact.retarget.read_regions``);
the mouth and jaw. The warp alone is scored (no texture step, no paint). Run on the training people
(``--people train``) to choose a correction, and on the held-out ones to check it.

With ``--select labels``, the pairs scored for a region are instead those whose OpenFace labels for it changed most
(brows: AU01+AU02 and AU04; eyes: AU05, AU07, AU45; mouth: AU12, AU25, AU26): picked by a meter that is not
MediaPipe's, so pairs where MediaPipe's landmarks only jittered are not picked for their travel.

Usage: python probes/pixel_travel.py DATASET --split RUN/split.json [--people train] [--pairs 2000] [--json F]
       python probes/pixel_travel.py DATASET --split RUN/split.json --select labels --pairs 200
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
from reenact.model.networks import warp
from reenact.retarget import _BROWS, _LIDS, read_regions
from reenact.train.dataset import load_dataset
from reenact.train.pairs import PairSampler

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
                landmarks, given = torch.from_numpy(batch.landmarks_a[part]), torch.from_numpy(scaled[s:s + chunk])
                warped = warp(torch.from_numpy(batch.image_a[part]), model.motion.field(landmarks, given))
                for w, b, m in zip(warped.numpy(), batch.image_b[part], masks[s:s + chunk]):
                    errors.append(float(((w - b) ** 2).mean(axis=0)[m].mean()))
            psnr.append(float(np.mean(-10 * np.log10(np.maximum(errors, 1e-10)))))
        best = int(np.argmax(psnr))
        # A parabola through the best gain and its neighbours places the peak between the steps.
        peak = GAINS[best]
        if 0 < best < len(GAINS) - 1:
            curve = np.polyfit(GAINS[best - 1:best + 2], psnr[best - 1:best + 2], 2)
            if curve[0] < 0:
                peak = -curve[1] / (2 * curve[0])
        rows[region] = {"best_gain": round(float(peak), 3), "pairs": len(scored),
                        "mean_travel_px": round(float(moved[scored].mean() * size / 2), 2),
                        "psnr_by_gain": {str(g): round(p, 3) for g, p in zip(GAINS, psnr)}}
        print(region, rows[region], flush=True)
    return rows


LABELLED_AUS = {"brows": (("AU01", "AU02"), ("AU04",)), "eyes": (("AU05",), ("AU07",), ("AU45",)),
                "mouth": (("AU12",), ("AU25",), ("AU26",))}  # per region: label sums whose change picks the pairs


class LabelledPairs(PairSampler):
    """Given pairs (index into ``self.clips``, frame A, frame B), drawn in order, registered as ``PairSampler``
    registers any."""

    def __init__(self, clips: list, chosen: list[tuple[int, int, int]]) -> None:
        super().__init__(clips, distinct=True)
        self.queue = list(chosen)

    def _pair(self):
        c, a, b = self.queue.pop(0)
        return self.clips[c], a, b


def labelled_pairs(clips: list, region: str, count: int, tries: int = 40000, seed: int = 3):
    """``count`` pairs (head within 2 degrees, at most 4 s apart) whose region's OpenFace labels changed most: picked
    by a meter that is not MediaPipe's, so its jitter does not pick them."""
    from reenact.face.aus import AU_NAMES

    sampler = LabelledPairs(clips, [])
    rng = np.random.default_rng(seed)
    sums = [[AU_NAMES.index(a) for a in group] for group in LABELLED_AUS[region]]
    scored = []
    for _ in range(tries):
        c = int(rng.integers(len(sampler.clips)))
        clip = sampler.clips[c]
        a, b = (int(x) for x in rng.integers(len(clip.frame), size=2))
        if a == b or abs(clip.time[a] - clip.time[b]) > 4.0 or np.abs(clip.pose[a] - clip.pose[b]).max() > 2.0:
            continue
        change = sum(abs(float(clip.openface[b, g].sum() - clip.openface[a, g].sum())) for g in sums)
        if np.isfinite(change):
            scored.append((change, c, a, b))
    scored.sort(reverse=True)
    sampler.queue = [(c, a, b) for _, c, a, b in scored[:count]]
    changes = [x[0] for x in scored[:count]]
    return sampler.sample(len(sampler.queue), images=True), float(np.mean(changes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--people", choices=("train", "validation"), default="validation")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--moving-share", type=float, default=0.15,
                        help="the share of pairs scored per region, those whose region moved most (default 0.15)")
    parser.add_argument("--regions", nargs="+", choices=("brows", "eyes", "mouth"), default=["brows", "eyes", "mouth"])
    parser.add_argument("--select", choices=("travel", "labels"), default="travel",
                        help="pick the scored pairs by their landmarks' travel (default) or by their region's "
                             "OpenFace labels' change (--pairs of them per region)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    people = set(json.loads(args.split.read_text())[args.people])
    clips = [c for c in load_dataset(args.dataset).clips if c.identity in people]
    model = load_generator(args.model).eval()
    if args.select == "travel":
        rows = travel(model, draw_pairs(clips, args.pairs, max_pose_change=2.0), args.moving_share, tuple(args.regions))
    else:
        rows = {}
        for region in args.regions:
            batch, change = labelled_pairs(clips, region, args.pairs)
            rows |= travel(model, batch, 1.0, (region,))
            rows[region]["label_change"] = round(change, 2)
            print(region, "mean labelled change", rows[region]["label_change"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
