"""Does the AU reader see the motion? Landmark moves an edit makes against those MediaPipe finds on its output.

For each single-AU edit of ``reenact eval`` (its gain as the model ships), on faces of the held-out people: the
mean move of the landmarks that the edit should move most (the brows for a brow raise, the chin and the lower
lip for a jaw drop, ...), as the motion step asks (each landmark lands at landmark - move) and as MediaPipe's
FaceLandmarker finds it on the edit pasted back into its crop, measured side by side in one run. A share near 1
means the reader's landmarks follow the warp; a share well under 1 means the image shows a move that the
landmarker does not place, so reenact's AU reader, which reads MediaPipe's blendshapes, cannot see it either.
Crop pixels of the dataset's crops (128 px for `reenact prepare`'s default).
Usage: python probes/landmark_follow.py DATASET --split RUN/split.json [--model default] [--faces 24]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from reenact.evaluate import SINGLE_AU_EDITS, edit_targets, generate_outputs, track_crops
from reenact.face.tracker import FaceTracker
from reenact.model.coords import denormalise
from reenact.model.io import load_generator
from reenact.train.dataset import load_dataset
from reenact.train.pairs import PairSampler

sys.path.insert(0, str(Path(__file__).parent))
from held_out import run_held_out  # noqa: E402

# Mesh points each edit should move, by part (MediaPipe's canonical face mesh numbering).
PARTS: dict[str, tuple[int, ...]] = {
    "brows": (70, 63, 105, 66, 107, 336, 296, 334, 293, 300),
    "inner brows": (107, 66, 336, 296, 55, 285),
    "upper lids": (159, 158, 160, 386, 385, 387),
    "mouth corners": (61, 291),
    "lower lip": (17, 14, 84, 314),
    "chin": (152, 148, 377, 175),
}
EDIT_PARTS: dict[str, tuple[str, ...]] = {
    "AU12": ("mouth corners",),
    "AU26": ("lower lip", "chin"),
    "AU45": ("upper lids",),
    "AU01+AU02": ("brows", "upper lids"),
    "AU04": ("inner brows", "brows"),
    "AU15": ("mouth corners",),
}


def detected_landmarks(tracker: FaceTracker, images: np.ndarray, upscale: int = 256) -> list[np.ndarray | None]:
    """MediaPipe's landmarks (crop pixels) on (N, 3, S, S) crops, read at ``upscale`` as the AU reader reads them."""
    scale = images.shape[-1] / upscale
    return [None if face is None else face.xy * scale for face in track_crops(tracker, images, upscale)]


@torch.no_grad()
def follow(dataset: Path, people: list[str], model_name: str | None, faces: int, seed: int = 11) -> list[dict]:
    model = load_generator(model_name).eval()
    index = json.loads((dataset / "index.json").read_text())
    ids = [e["id"] for e in index["clips"] if e["identity"] in people]
    batch = PairSampler(list(load_dataset(dataset, ids).clips), seed=seed).sample(faces, images=True)
    size = batch.image_a.shape[-1]
    rows = []
    with FaceTracker(video_mode=False) as tracker:
        before = detected_landmarks(tracker, batch.image_a)
        for (name, _), (_, target) in zip(SINGLE_AU_EDITS, edit_targets(batch.aus_a, presets=False)):
            moves = model(None, torch.from_numpy(batch.landmarks_a), torch.from_numpy(batch.aus_a),
                          torch.from_numpy(target), asked=True)["moves"].numpy()
            after = detected_landmarks(tracker, generate_outputs(model, batch, target, asked=True, pasted=True))
            for part in EDIT_PARTS[name]:
                idx = list(PARTS[part])
                asked, seen = [], []
                for lm, move, x, y in zip(batch.landmarks_a, moves, before, after):
                    if x is None or y is None:
                        continue
                    asked.append((denormalise(lm - move, size) - denormalise(lm, size))[idx].mean(axis=0))
                    seen.append((y - x)[idx].mean(axis=0))
                asked_xy, seen_xy = np.mean(asked, axis=0), np.mean(seen, axis=0)
                axis = int(np.argmax(np.abs(asked_xy)))  # the move's main direction
                row = {"edit": name, "part": part, "faces": len(asked), "asked_px": asked_xy.round(2).tolist(),
                       "seen_px": seen_xy.round(2).tolist(), "share": round(float(seen_xy[axis] / asked_xy[axis]), 2)}
                print(f"{name:10s} {part:14s} asked dx {asked_xy[0]:+.2f} dy {asked_xy[1]:+.2f}   seen dx "
                      f"{seen_xy[0]:+.2f} dy {seen_xy[1]:+.2f}   share {row['share']:.2f}", flush=True)
                rows.append(row)
    return rows


def main() -> None:
    run_held_out(__doc__.splitlines()[0], follow, "--faces", 24, "faces of the held-out people (default 24)")


if __name__ == "__main__":
    main()
