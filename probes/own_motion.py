"""How far an AU edit opens a mouth, against how far the person's own mouth opened: the model's fields against the
person's own motion (``reenact.own_motion``), on pairs inside one held-out clip.

For each held-out clip: frames A (mouth closed) and B (as open as the clip gets), at least 1 s apart
(``face_memory.pick_pairs``). A is edited to B's AUs as reenact reads them, with the head turn followed, and the
figure is the opening the edit gives A's mouth (inner-lip gap over mouth width, from A's) as a share of B's (B
brought onto A's head by a similarity on the stable landmarks); with the model's fields alone (``--no-memory``, and
any still image) and with the person's own motion, learned from the clip without the frames within 1 s of B.
Usage: python probes/own_motion.py --split RUN/split.json [--model default] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from face_memory import APART_S, SIZE, clip_frames, pick_pairs

from reenact.face.align import STABLE_LANDMARKS, similarity_transform
from reenact.memory import FaceMemory, opening
from reenact.model.coords import normalise
from reenact.model.networks import MOUTH
from reenact.own_motion import extra_moves_for, own_moves


@torch.no_grad()
def opening_shares(model, rows, pairs: list[tuple[int, int]]) -> dict[str, list[float]]:
    """Per pair (A, B): the share of B's opening an edit of A to B's AUs gives, with the fields and the own motion."""
    shares: dict[str, list[float]] = {"fields": [], "own": []}
    for a, b in pairs:
        memory = FaceMemory()
        for t, crop, points, aus, pose in rows:
            if abs(t - rows[b][0]) >= APART_S:
                memory.observe(crop, points, t, aus, pose)
        (_, _, at_a, aus_a, pose_a), (_, _, at_b, aus_b, pose_b) = rows[a], rows[b]
        at_a, at_b = normalise(at_a, SIZE), normalise(at_b, SIZE)
        stable = list(STABLE_LANDMARKS)
        to_a = similarity_transform(at_b[stable], at_a[stable])
        wanted = opening(at_b @ to_a[:, :2].T + to_a[:, 2], MOUTH) - opening(at_a, MOUTH)
        landmarks = torch.from_numpy(at_a.astype(np.float32))[None]
        src, tgt = (torch.from_numpy(x.astype(np.float32))[None] for x in (aus_a, aus_b))
        turn = torch.from_numpy((pose_b - pose_a).astype(np.float32))[None]
        fields = model.motion.displacements(landmarks, src, tgt, turn, asked=True)
        extra = extra_moves_for(memory.motion, model.motion)
        own = fields if extra is None else fields + own_moves(extra, src, tgt)
        for name, moves in (("fields", fields), ("own", own)):
            landed = (landmarks - moves)[0].numpy()
            shares[name].append((opening(landed, MOUTH) - opening(at_a, MOUTH)) / wanted)
    return shares


def main() -> None:
    from reenact.model.io import load_generator

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model")
    parser.add_argument("--pairs", type=int, default=3, help="pairs per clip (default 3)")
    args = parser.parse_args()
    data = Path(os.environ.get("REENACT_DATA", "../shared/data")) / "train"
    people = json.loads(args.split.read_text())["validation"]
    clips = [data / line.split(",")[0] for line in (data / "MANIFEST.csv").read_text().splitlines()[1:]
             if line.split(",")[1] in people]
    model = load_generator(args.model).eval()
    shares: dict[str, list[float]] = {"fields": [], "own": []}
    for clip in clips:
        rows = clip_frames(clip)
        got = opening_shares(model, rows, pick_pairs(rows, MOUTH, args.pairs))
        for name, values in got.items():
            shares[name] += values
        print(clip.stem, {name: [round(v, 2) for v in values] for name, values in got.items()}, flush=True)
    print(f"{len(shares['own'])} pairs; share of B's opening, mean (median): "
          + ", ".join(f"{name} {np.mean(v):.2f} ({np.median(v):.2f})" for name, v in shares.items()))


if __name__ == "__main__":
    main()
