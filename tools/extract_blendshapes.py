"""Run the face tracker over the shared training clips and store blendshapes beside OpenFace's AU labels.

This is the data step of the blendshape-to-AU calibration (tools/fit_au_mapping.py fits the mapping from it).
Usage: python tools/extract_blendshapes.py DATA_DIR OUT.npz [--stride 2] [--grid-stride 8] [--shard i/n]
"""

from __future__ import annotations

import argparse
import csv
import gzip
from pathlib import Path

import numpy as np

from reenact.face.tracker import FaceTracker
from reenact.video import VideoReader


def read_openface(path: Path) -> tuple[list[str], dict[int, list[float]]]:
    with gzip.open(path, "rt") as f:
        rows = list(csv.DictReader(f))
    au_cols = [c for c in rows[0] if c.startswith("AU") and c.endswith("_r")]
    labels = {int(r["frame"]) - 1: [float(r[c]) for c in au_cols] for r in rows if r["success"] == "1"}
    return au_cols, labels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--stride", type=int, default=2, help="use every n-th frame")
    parser.add_argument("--grid-stride", type=int, default=8, help="every n-th frame of grid_s1 (one person, 65%%)")
    parser.add_argument("--shard", default="0/1")
    args = parser.parse_args()
    shard, shards = map(int, args.shard.split("/"))
    with open(args.data / "train" / "MANIFEST.csv") as f:
        manifest = list(csv.DictReader(f))[shard::shards]
    clips, frames, blendshapes, aus = [], [], [], []
    au_cols: list[str] = []
    for n, row in enumerate(manifest):
        au_cols, labels = read_openface(args.data / "train_aus" / row["file"].replace(".mp4", ".csv.gz"))
        stride = args.grid_stride if row["file"].startswith("grid_s1/") else args.stride
        with FaceTracker() as tracker, VideoReader(args.data / "train" / row["file"]) as reader:
            for frame in reader:
                if frame.index % stride or frame.index not in labels:
                    continue
                face = tracker(frame.image, frame.time)
                if face is None:
                    continue
                clips.append(row["file"])
                frames.append(frame.index)
                blendshapes.append(face.blendshapes)
                aus.append(labels[frame.index])
        print(f"{n + 1}/{len(manifest)} {row['file']} rows={len(frames)}", flush=True)
    np.savez_compressed(
        args.out, clip=np.array(clips), frame=np.array(frames), blendshapes=np.array(blendshapes),
        aus=np.array(aus, dtype=np.float32), au_names=np.array(au_cols),
    )


if __name__ == "__main__":
    main()
