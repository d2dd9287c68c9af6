"""Take the lips' opening out of a fitted model's lip-corner fields (``reenact.train.basis.hold_lip_gap``), in place.

``reenact train --phase basis`` does this as part of its fit; this tool applies the same step to a model fitted
before it (the shipped ``default`` and ``hq``), without refitting anything else. The lip landmarks and the mouth's
columns are placed on the mean face of the first 50 training clips, as the fit places them.
Usage: python tools/hold_lip_gap.py MODEL DATASET --split RUN/split.json   (e.g. models/default)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from reenact.model.io import load_generator, save_generator
from reenact.train.basis import hold_lip_gap, mean_face
from reenact.train.dataset import clip_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", type=Path, required=True)
    args = parser.parse_args()
    train = set(json.loads(args.split.read_text())["train"])
    index = json.loads((args.dataset / "index.json").read_text())
    entries = [e for e in index["clips"] if e["identity"] in train][:50]
    face = mean_face([np.load(clip_files(args.dataset / "clips", e["id"])[1])["landmarks"] for e in entries],
                     index["crop_size"])
    model = load_generator(args.model)
    basis = model.motion.basis.detach().numpy().astype(np.float64)
    with torch.no_grad():
        model.motion.basis.copy_(torch.from_numpy(hold_lip_gap(basis, face).astype(np.float32)))
    print(f"wrote {save_generator(model, args.model, {'phase': 'basis'})}")


if __name__ == "__main__":
    main()
