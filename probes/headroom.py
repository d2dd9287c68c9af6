"""Reference points for `reenact eval`'s figures, measured on the held-out people beside the model in one run.

- Self-reenactment: the model rebuilding B from A, against the same flow, texture and paint driven by B's own
  landmark moves (what MediaPipe found on B, in place of what the motion step predicts from B's AUs): how much a
  perfect motion step could add, with this flow and texture step.
- Identity: dlib's distance between two frames of one held-out person, for ordinary pairs (distinct frames up to 4 s
  apart in a clip, as the eval draws them) and for pairs in which one AU changes by 2 or more: how far dlib puts a
  person from themselves when only time or their own expression changes.
Usage: python probes/headroom.py DATASET --split RUN/split.json [--model default] [--pairs 512]
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from reenact.evaluate import IdentityMeter, draw_pairs, score_pairs
from reenact.model.io import load_generator
from reenact.train.dataset import load_dataset
from reenact.train.pairs import PairSampler

sys.path.insert(0, str(Path(__file__).parent))
from held_out import run_held_out  # noqa: E402


class TrueMoves:
    """Stands in for a motion step's ``displacements``: each pair's own landmark moves, A's landmarks onto B's
    (B's pose moved onto A's, as the pairs hold them), in the order the pairs are generated."""

    def __init__(self, landmarks_a: np.ndarray, landmarks_b: np.ndarray) -> None:
        self.moves = torch.from_numpy(landmarks_a - landmarks_b)  # content from - where it lands
        self.next = 0

    def __call__(self, landmarks: torch.Tensor, *_, **__) -> torch.Tensor:
        rows = self.moves[self.next:self.next + len(landmarks)]
        self.next += len(landmarks)
        return rows.to(landmarks.dtype)


@torch.no_grad()
def self_reenactment_headroom(model_name: str | None, clips: list, pairs: int) -> dict[str, dict]:
    model = load_generator(model_name).eval()
    batch = draw_pairs(clips, pairs)
    rows = {"model": asdict(score_pairs(model, batch))}
    model.motion.displacements = TrueMoves(batch.landmarks_a, batch.landmarks_b)
    rows["true landmark moves"] = asdict(score_pairs(model, batch))
    for name, r in rows.items():
        print(f"self-reenactment, {name:20s}: {r['psnr']:.2f} dB against copy {r['psnr_copy']:.2f} dB: "
              f"{r['psnr'] - r['psnr_copy']:+.2f} dB; SSIM {r['ssim']:.3f} (copy {r['ssim_copy']:.3f})", flush=True)
    return rows


def identity_between_own_frames(clips: list, pairs: int) -> dict[str, dict]:
    meter = IdentityMeter()
    rows = {}
    for name, options in (("ordinary pairs", {"distinct": True}),
                          ("one AU changes by 2 or more", {"expressive": 1.0, "min_change": 2.0})):
        batch = PairSampler(clips, seed=5, **options).sample(pairs, images=True)
        found = [d for d in map(meter.distance, batch.image_a, batch.image_b) if d is not None]
        rows[name] = {"pairs": len(found), "mean": round(float(np.mean(found)), 4),
                      "median": round(float(np.median(found)), 4),
                      "largest_au_change": round(float(np.abs(batch.aus_b - batch.aus_a).max(axis=1).mean()), 2)}
        row = rows[name]
        print(f"identity, a person's own frames, {name:28s}: dlib {row['mean']:.3f} (median {row['median']:.3f}, "
              f"{len(found)} pairs; largest AU change {row['largest_au_change']:.2f})", flush=True)
    return rows


def measure(dataset: Path, people: list[str], model_name: str | None, pairs: int) -> dict[str, dict]:
    held_out = set(people)
    clips = [c for c in load_dataset(dataset).clips if c.identity in held_out]
    return {"self_reenactment": self_reenactment_headroom(model_name, clips, pairs),
            "identity": identity_between_own_frames(clips, min(pairs, 256))}


def main() -> None:
    run_held_out(__doc__.splitlines()[0], measure, "--pairs", 512, "pairs of the held-out people (default 512)")


if __name__ == "__main__":
    main()
