"""Self-reenactment against the texture step's strength, per held-out person: how `texture_strength` was chosen.

Measured side by side in one run: for each person of the split's validation set, one draw of pairs (distinct
frames of one clip) is scored at every strength, so the strengths differ only by the texture step's share. The
gain over copying the source frame (PSNR in the face mask, head pose followed) is printed per person, for all of
them, and for the first and the second half of them: a strength chosen on the held-out people should suit both.
Usage: python probes/texture_strength.py DATASET --split RUN/split.json [--model default] [--pairs 128]
       [--strengths 0.5,0.625,0.75,0.875,1] [--json OUT]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from reenact.evaluate import draw_pairs, score_pairs
from reenact.model.io import load_generator
from reenact.train.dataset import load_dataset

sys.path.insert(0, str(Path(__file__).parent))
from held_out import held_out_parser  # noqa: E402


def gains_by_person(dataset: Path, people: list[str], model_name: str | None, strengths: list[float],
                    pairs: int, seed: int = 7) -> dict[str, list[float]]:
    """Per person, the self-reenactment gain over copy (dB) at each strength."""
    model = load_generator(model_name).eval()
    index = json.loads((dataset / "index.json").read_text())
    rows: dict[str, list[float]] = {}
    for person in people:
        ids = [e["id"] for e in index["clips"] if e["identity"] == person]
        batch = draw_pairs(list(load_dataset(dataset, ids).clips), pairs, seed)
        rows[person] = []
        for strength in strengths:
            model.reconfigure(texture_strength=strength)
            scored = score_pairs(model, batch)
            rows[person].append(scored.psnr - scored.psnr_copy)
        print(person, " ".join(f"{g:+.3f}" for g in rows[person]), flush=True)
    return rows


def main() -> None:
    parser = held_out_parser(__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=128, help="pairs per person (default 128)")
    parser.add_argument("--strengths", default="0.5,0.625,0.75,0.875,1", help="comma-separated (default 0.5 to 1)")
    args = parser.parse_args()
    strengths = [float(s) for s in args.strengths.split(",")]
    people = json.loads(args.split.read_text())["validation"]
    print("strength", " ".join(f"{s:>6}" for s in strengths))
    rows = gains_by_person(args.dataset, people, args.model, strengths, args.pairs)
    table = np.array(list(rows.values()))
    half = len(people) // 2
    summary = {"all": table.mean(axis=0), "first half": table[:half].mean(axis=0), "second half": table[half:].mean(axis=0)}
    for name, values in summary.items():
        best = strengths[int(np.argmax(values))]
        print(f"{name}: " + " ".join(f"{g:+.3f}" for g in values) + f"  best {best:g}")
    if args.json:
        args.json.write_text(json.dumps({"strengths": strengths, "people": rows,
                                         **{k: v.tolist() for k, v in summary.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
