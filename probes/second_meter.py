"""A second landmark meter beside MediaPipe: does MediaPipe under-read a warped face, a real one, or both?

Issue 19's transfer figures read the output's motion with MediaPipe, which finds about two thirds of a warp's brow
motion (``transfer_chain.py``). Whether it also shrinks real faces' motion decides what the figure means. Here
dlib's 68-point shape predictor (iBUG 300-W's points, a regression-tree model with nothing in common with
MediaPipe's network) reads the same images, and each of its points is paired with the MediaPipe landmark at the
same place on the face (``DLIB_TO_MEDIAPIPE``).
- ``warps``: a still held-out face moved by known motion (a held-out driver's landmark motion retargeted to it, as
  ``reenact transfer`` moves it; the warp alone, no paste-back): per region, each meter's reading of its own points'
  motion against the motion the warp gave those very points (the dense flow, followed from each point).
- ``real``: held-out clips' own frames: per region, a scalar of the paired points (brow height, eye opening, mouth
  width, inner-lip gap, chin height) by each meter, its range over the clip by MediaPipe against dlib's.
If MediaPipe reads warps short and real faces as dlib does, the shortfall is in reading warps, not in the motion.
Usage: python probes/second_meter.py --split RUN/split.json [--times 30] [--frames 150]
"""

from __future__ import annotations

import argparse
import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from full_strength import _aligned_track

from reenact import api
from reenact.face.align import FaceAligner
from reenact.face.tracker import FaceTracker
from reenact.model.coords import denormalise, normalise
from reenact.model.networks import sample_at, warp
from reenact.pipeline import AlignStage, TrackStage
from reenact.retarget import Retargeter
from reenact.video import Frame, VideoReader

SIZE = 256
# dlib's 68 points, each as the MediaPipe landmark at the same place (jaw, brows, nose, eyes, outer and inner lips).
DLIB_TO_MEDIAPIPE = (
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip
REGIONS = {  # dlib's indices
    "brows": tuple(range(17, 27)),
    "lids": (37, 38, 40, 41, 43, 44, 46, 47),
    "mouth corners": (48, 54, 60, 64),
    "lips": (49, 50, 51, 52, 53, 55, 56, 57, 58, 59, 61, 62, 63, 65, 66, 67),
    "jaw": (5, 6, 7, 8, 9, 10, 11),
}
STABLE = (27, 28, 36, 39, 42, 45)  # dlib's nose bridge and eye corners: what its readings are stabilised on


class DlibMeter:
    """dlib's 68 landmarks on a crop (its own face detector; the largest face)."""

    def __init__(self) -> None:
        import importlib.util

        import dlib

        models = Path(importlib.util.find_spec("face_recognition_models").origin).parent / "models"
        self._detect = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))

    def __call__(self, rgb: np.ndarray, box=None):
        """(68, 2) crop pixels, and the face box used (give it back to read a warped copy in the same box)."""
        if box is None:
            boxes = self._detect(rgb, 1)
            if not boxes:
                return None, None
            box = max(boxes, key=lambda r: r.area())
        shape = self._shape(rgb, box)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64), box


def _similar(points: np.ndarray, onto: np.ndarray, index) -> np.ndarray:
    from reenact.face.align import similarity_transform

    m = similarity_transform(points[list(index)], onto[list(index)])
    return points @ m[:, :2].T + m[:, 2]


def _ratio(pairs, region) -> float:
    got = np.concatenate([g[list(region)].ravel() for _, g in pairs])
    asked = np.concatenate([a[list(region)].ravel() for a, _ in pairs])
    return float(got @ asked / (asked @ asked))


@torch.no_grad()
def warps(args, meter: DlibMeter, people: dict[str, Path]) -> dict:
    model = api.GeneratorOptions(memory=False, smooth=False).load("cpu")
    pose_basis = model.motion.pose_basis.detach().numpy().astype(np.float64)
    pairs: dict[str, list] = {"mediapipe": [], "dlib": []}
    drivers = [people[p] for p in args.drivers if p in people]
    sources = [p for who, p in people.items() if who not in args.drivers][: args.sources]
    for source in sources:
        with VideoReader(source) as reader:
            frame = Frame(0, 0, Fraction(1, 25), next(iter(reader)).image)
        with FaceTracker(video_mode=False) as tracker, FaceTracker(video_mode=False) as mp_meter:
            state = AlignStage(FaceAligner(SIZE))(TrackStage(tracker)(frame))
            crop = state.crop
            points = normalise(state.alignment.to_crop(state.face.xy), SIZE).astype(np.float64)
            mp_read = mp_meter(crop, 0.0).xy.astype(np.float64)
            dl_read, box = meter(crop)
            if dl_read is None:
                continue
            image = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
            for driver in drivers:
                track, _, _ = api.read_driving(driver)
                retarget = Retargeter(track.motion(pose_basis))
                for t in np.linspace(0.3, track.times[-1] - 0.3, args.times):
                    moves = torch.from_numpy(retarget(points, t).astype(np.float32))[None]
                    flow = model.motion.field(torch.from_numpy(points.astype(np.float32))[None], moves)
                    warped = (warp(image, flow)[0].permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
                    for name, read, find in (("mediapipe", mp_read, lambda im: mp_meter(im, 0.0)),
                                             ("dlib", dl_read, lambda im: meter(im, box)[0])):
                        found = find(warped)
                        if found is None:
                            continue
                        found = found.xy.astype(np.float64) if name == "mediapipe" else found
                        # where the warp took each of this meter's own points: follow the backward flow
                        start = torch.from_numpy(normalise(read, SIZE).astype(np.float32))[None]
                        landed = start.clone()
                        for _ in range(10):
                            landed = start - sample_at(flow, landed)
                        asked = denormalise(landed[0].numpy().astype(np.float64), SIZE) - read
                        pairs[name].append((asked, found - read))
        print(source.stem, {n: len(v) for n, v in pairs.items()}, flush=True)
    out = {}
    for name, rows in pairs.items():
        index = {r: [DLIB_TO_MEDIAPIPE[i] for i in idx] for r, idx in REGIONS.items()} if name == "mediapipe" else REGIONS
        out[name] = {region: round(_ratio(rows, idx), 3) for region, idx in index.items()}
    return out


SCALARS = {  # per region, a scalar of dlib's points (or their MediaPipe pairs), crop pixels after stabilising
    "brows": lambda p: -p[17:27, 1].mean(),  # up is positive
    "lids": lambda p: (p[[40, 41, 46, 47], 1].mean() - p[[37, 38, 43, 44], 1].mean()),  # eye opening
    "mouth corners": lambda p: p[54, 0] - p[48, 0],  # mouth width
    "lips": lambda p: p[66, 1] - p[62, 1],  # inner-lip gap
    "jaw": lambda p: p[8, 1],  # chin down
}


def real(args, meter: DlibMeter, people: dict[str, Path]) -> dict:
    """Per clip and region: the region's scalar by each meter over the clip's frames (stabilised on dlib's stable
    points; a 5-frame running mean takes out each meter's jitter), its range between the clip's 10% most and 10%
    least expressive frames (chosen by both meters' z-scores summed, so neither meter's noise picks them), MediaPipe
    over dlib. Median over the clips."""
    ratios: dict[str, list[float]] = {r: [] for r in SCALARS}
    corrs: dict[str, list[float]] = {r: [] for r in SCALARS}
    for who, clip in people.items():
        _, points, _, crops = _aligned_track(clip, SIZE)
        seqs: dict[str, list] = {"mediapipe": [], "dlib": []}
        for p, crop in list(zip(points, crops))[: args.frames]:
            if p is None:
                continue
            found, _ = meter(crop)
            if found is None:
                continue
            seqs["mediapipe"].append(denormalise(np.asarray(p, np.float64), SIZE)[list(DLIB_TO_MEDIAPIPE)])
            seqs["dlib"].append(found)
        if len(seqs["dlib"]) < 30:
            continue
        values = {}
        for name, seq in seqs.items():
            seq = np.array(seq)
            rest = np.median(seq, axis=0)
            moved = [_similar(s, rest, STABLE) for s in seq]
            values[name] = {r: np.convolve([f(m) for m in moved], np.ones(5) / 5, mode="valid") for r, f in SCALARS.items()}
        for region in SCALARS:
            m, d = values["mediapipe"][region], values["dlib"][region]
            both = (m - m.mean()) / (m.std() + 1e-9) + (d - d.mean()) / (d.std() + 1e-9)
            order = np.argsort(both)
            k = max(len(order) // 10, 3)
            low, high = order[:k], order[-k:]
            ratios[region].append(float((m[high].mean() - m[low].mean()) / (d[high].mean() - d[low].mean())))
            corrs[region].append(float(np.corrcoef(m, d)[0, 1]))
        print(who, len(seqs["dlib"]), {r: round(v[-1], 2) for r, v in ratios.items()}, flush=True)
    return {region: {"mediapipe_over_dlib_median": round(float(np.median(ratios[region])), 3),
                     "per_clip": [round(v, 2) for v in ratios[region]],
                     "corr_median": round(float(np.median(corrs[region])), 3)} for region in SCALARS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--drivers", nargs="+", default=["LP-d8", "ST-happyenglish", "LP-d13"])
    parser.add_argument("--sources", type=int, default=2)
    parser.add_argument("--times", type=int, default=20, help="driving times per driver (default 20)")
    parser.add_argument("--frames", type=int, default=150, help="frames per clip read in `real` (default 150)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = Path(os.environ.get("REENACT_DATA", "../shared/data")) / "train"
    split = json.loads(args.split.read_text())
    people: dict[str, Path] = {}
    for line in (data / "MANIFEST.csv").read_text().splitlines()[1:]:
        file, who = line.split(",")[:2]
        if who in split["validation"]:
            people.setdefault(who, data / file)
    meter = DlibMeter()
    result = {"warps": warps(args, meter, people), "real": real(args, meter, people)}
    print("summary", json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
