"""Apply the basis fit's rules (``reenact.train.basis.BASIS_RULES``) to a fitted model's AU fields, in place.

``reenact train --phase basis`` applies every rule as part of its fit and records them in the weights' metadata
(``basis_rules``); this tool applies the named ones to a model fitted before a rule was added (the shipped
``default`` and ``hq``), without refitting anything else, and records them too. A rule already recorded is not
applied twice (a travel rule scales moves, so twice would scale them twice). The rules place the
landmarks on the mean face of the first 50 training clips, as the fit does.

Rules: ``lip-gap`` (the lip-corner AUs do not open or close the lips), ``brow-travel`` and ``lid-travel`` (the
brows' or the eyes' moves divided by the share of their travel MediaPipe reads, ``reenact.retarget.READ_SHARES``).
Usage: python tools/basis_rules.py MODEL DATASET --split RUN/split.json --rule brow-travel   (e.g. models/default)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from reenact.model.io import load_generator, model_paths, save_generator
from reenact.train.basis import BASIS_RULES, mean_face
from reenact.train.dataset import clip_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--rule", action="append", choices=list(BASIS_RULES), required=True,
                        help="a rule to apply (repeat for more)")
    args = parser.parse_args()
    with safe_open(str(model_paths(args.model)[0]), "pt") as weights:
        metadata = weights.metadata() or {}
    applied = [r for r in metadata.get("basis_rules", "").split(",") if r]
    if again := [r for r in args.rule if r in applied]:
        parser.error(f"{args.model} already has {', '.join(again)} (its weights' basis_rules: {','.join(applied)})")
    train = set(json.loads(args.split.read_text())["train"])
    index = json.loads((args.dataset / "index.json").read_text())
    entries = [e for e in index["clips"] if e["identity"] in train][:50]
    face = mean_face([np.load(clip_files(args.dataset / "clips", e["id"])[1])["landmarks"] for e in entries],
                     index["crop_size"])
    model = load_generator(args.model)
    basis = model.motion.basis.detach().numpy().astype(np.float64)
    for rule in args.rule:
        basis = BASIS_RULES[rule](basis, face)
    with torch.no_grad():
        model.motion.basis.copy_(torch.from_numpy(basis.astype(np.float32)))
    kept = {k: v for k, v in metadata.items() if k != "format"}
    rules = ",".join(applied + args.rule)
    print(f"wrote {save_generator(model, args.model, kept | {'basis_rules': rules})} ({rules})")


if __name__ == "__main__":
    main()
