"""Fit the blendshape-to-AU mapping (reenact/face/au_mapping.json) against OpenFace 2.0.6 AU intensities.

Input: the .npz files written by tools/extract_blendshapes.py (MediaPipe blendshapes beside OpenFace's per-frame
labels for the same frames). For each AU: non-negative least squares on its source blendshapes (AU_SOURCES), then
a monotone curve linking that score's quantiles to those of OpenFace's 0-5 scale (each person's resting
level removed from the labels first, so a resting face reads 0).
Reports Pearson r and mean absolute error on identities held out of the fit, then refits on everyone.

Usage: python tools/fit_au_mapping.py OUT.json DATA.npz [DATA.npz ...] [--manifest MANIFEST.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from scipy.optimize import lsq_linear

from reenact.face.aus import AU_NAMES, AU_SOURCES, source_values



QUANTILES = np.array([0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999])


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, q: np.ndarray) -> np.ndarray:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    cumulative = (cumulative - 0.5 * weights[order]) / cumulative[-1]
    return np.interp(q, cumulative, values[order])


def remove_person_baseline(target: np.ndarray, people: np.ndarray) -> np.ndarray:
    """OpenFace's static AUs carry a per-person offset (a resting face reads AU01 ~1): subtract each person's
    10th percentile so that a face at rest reads 0, as FACS means it."""
    corrected = np.empty_like(target)
    for person in np.unique(people):
        sel = people == person
        corrected[sel] = np.maximum(target[sel] - np.quantile(target[sel], 0.1), 0.0)
    return corrected


def fit_au(features: np.ndarray, target: np.ndarray, weights: np.ndarray) -> dict[str, list[float]]:
    """NNLS for the blend of sources, then equipercentile linking of that score to the label scale.

    Linking by quantiles (rather than a regression curve) keeps OpenFace's range: a full smile reads as high as
    OpenFace's strongest smiles instead of being pulled toward the mean.
    """
    design = np.hstack([features, np.ones((len(features), 1))]) * np.sqrt(weights)[:, None]
    lower = [0.0] * features.shape[1] + [-np.inf]
    w = lsq_linear(design, target * np.sqrt(weights), bounds=(lower, np.inf)).x[:-1]
    if w.max() < 1e-3:
        w = np.full(features.shape[1], 1.0 / features.shape[1])
    w = w / w.sum()  # the scale of the score is arbitrary: the curve sets it
    score = features @ w
    knots_x = weighted_quantiles(score, weights, QUANTILES)
    knots_y = weighted_quantiles(target, weights, QUANTILES)
    knots_x, unique = np.unique(np.round(knots_x, 6), return_index=True)
    knots_y = np.maximum.accumulate(knots_y[unique])
    if knots_x[0] > 0:  # no movement at all reads the floor
        knots_x, knots_y = np.concatenate([[0.0], knots_x]), np.concatenate([[knots_y[0]], knots_y])
    return {"weights": w.round(5).tolist(), "knots_x": knots_x.round(6).tolist(), "knots_y": knots_y.round(4).tolist()}


def apply(entry: dict[str, list[float]], features: np.ndarray) -> np.ndarray:
    return np.interp(features @ np.array(entry["weights"]), entry["knots_x"], entry["knots_y"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--manifest", type=Path, default=Path("../shared/data/train/MANIFEST.csv"))
    args = parser.parse_args()
    parts = [np.load(p) for p in args.data]
    clips = np.concatenate([p["clip"] for p in parts])
    blend = np.concatenate([p["blendshapes"] for p in parts])
    labels = np.concatenate([p["aus"] for p in parts])
    label_names = [str(n).removesuffix("_r") for n in parts[0]["au_names"]]
    with open(args.manifest) as f:
        identity = {row["file"]: row["identity"] for row in csv.DictReader(f)}
    people = np.array([identity[c] for c in clips])
    # Each person weighs the same in the fit, so the one GRID speaker (65% of the seconds) does not dominate.
    _, inverse, counts = np.unique(people, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    names = sorted(set(people))
    held_out = set(names[::5])  # every fifth person (sorted by name) is kept out of the check fit
    test = np.isin(people, list(held_out))

    report: dict[str, dict[str, float]] = {}
    mapping: dict[str, dict[str, list[float]]] = {}
    for au in AU_NAMES:
        target = remove_person_baseline(labels[:, label_names.index(au)], people)
        features = source_values(blend, AU_SOURCES[au])
        check = fit_au(features[~test], target[~test], weights[~test])
        predicted = apply(check, features[test])
        r = float(np.corrcoef(predicted, target[test])[0, 1]) if predicted.std() > 0 else 0.0
        mae = float(np.abs(predicted - target[test]).mean())
        mapping[au] = fit_au(features, target, weights)
        report[au] = {"pearson_r_heldout": round(r, 3), "mae_heldout": round(mae, 3)}
        print(f"{au}: r={r:.3f} mae={mae:.3f} weights={mapping[au]['weights']} top={mapping[au]['knots_y'][-1]}")
    out = {
        "about": "MediaPipe blendshapes -> OpenFace 2.0.6 static AU intensity (0-5); fitted by tools/fit_au_mapping.py",
        "frames": int(len(blend)),
        "identities": len(names),
        "heldout_identities": sorted(held_out),
        "fit": report,
        "aus": mapping,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
