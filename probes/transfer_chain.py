"""Where a transfer's motion goes missing: the asked landmark motion against what each stage delivers, per region.

A still source is driven by a clip (``reenact transfer``'s landmark route), one driving time at a time with a fresh
editor (no temporal filter engaged, no AU change so no texture step). Per region (``full_strength``'s), the
amplitude (projection) ratio against the driving motion retargeted to the source, of:
- ``flow``: the motion step's dense flow sampled where each landmark lands (1: the warp carries the whole move);
- ``crop raw`` / ``crop``: MediaPipe's landmarks on the warped crop, raw (the crop keeps the source's alignment) and
  stabilised as ``full_strength`` does;
- ``frame``: MediaPipe on the frame after the paste-back, cut with the source's alignment, stabilised.
With each, the correlation over the driving times: how closely MediaPipe's reading of a warp that carries a known
motion follows that motion (the ceiling of ``full_strength``'s correlation for any transfer that moves the pixels
as asked, where a region's motion is a pixel or less).

Usage: python probes/transfer_chain.py SOURCE_CLIP DRIVING_CLIP [--times 30] [--model default]
       (e.g. ../shared/data/train/dpe/s.mp4 ../shared/data/train/liveportrait/d8.mp4)
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from full_strength import TRANSFER_REGIONS

from reenact import api
from reenact.face.align import FaceAligner, crop_face, stabilise
from reenact.face.tracker import FaceTracker
from reenact.model.coords import normalise
from reenact.model.networks import sample_at
from reenact.pipeline import AlignStage, EditPasteStage, TrackStage
from reenact.retarget import Retargeter
from reenact.video import Frame, VideoReader

SIZE = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("driving", type=Path)
    parser.add_argument("--times", type=int, default=30, help="driving times sampled (default 30)")
    parser.add_argument("--model", help="a model name or path (default: the default model)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with VideoReader(args.source) as reader:
        frame = Frame(0, 0, Fraction(1, 25), next(iter(reader)).image)
    track, _, _ = api.read_driving(args.driving)
    generator = api.GeneratorOptions(model=args.model, memory=False, smooth=False)
    model = generator.load("cpu")
    pose_basis = model.motion.pose_basis.detach().numpy().astype(np.float64)
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in ("flow", "crop raw", "crop", "frame")}
    with FaceTracker(video_mode=False) as tracker, FaceTracker(video_mode=False) as meter:
        state = AlignStage(FaceAligner(SIZE))(TrackStage(tracker)(frame))
        alignment = state.alignment
        source = normalise(alignment.to_crop(state.face.xy), SIZE).astype(np.float64)
        read = normalise(meter(state.crop, 0.0).xy, SIZE).astype(np.float64)  # MediaPipe's own reading of it
        for t in np.linspace(0.3, track.times[-1] - 0.3, args.times):
            retarget = Retargeter(track.motion(pose_basis))
            moves = retarget(source, t)
            wanted = -moves  # where each landmark should land, from where it was
            landmarks = torch.from_numpy(source.astype(np.float32))[None]
            asked = torch.from_numpy(moves)[None]
            with torch.no_grad():
                flow = model.motion.field(landmarks, asked)
                pairs["flow"].append((wanted, -sample_at(flow, landmarks - asked)[0].numpy()))
            editor = generator.editor(lambda aus, _t: aus, asked=False,
                                      landmark_moves=lambda _m, r=retarget, t=t: (lambda p, _t: r(p.astype(np.float64), t)))
            stage = EditPasteStage(editor)
            edited = stage.edit(AlignStage(FaceAligner(SIZE))(TrackStage(tracker)(frame)))
            crop = edited.edited.image if edited.edited is not None else edited.crop
            pasted = crop_face(stage.paste(edited).frame.image, alignment)
            for key, image in (("crop", crop), ("frame", pasted)):
                found = meter(image, 0.0)
                if found is None:
                    continue
                points = normalise(found.xy, SIZE).astype(np.float64)
                pairs[key].append((wanted, stabilise(points[None], read)[0] - read))
                if key == "crop":
                    pairs["crop raw"].append((wanted, points - read))
    print(f"{args.source.name} driven by {args.driving.name}, {args.times} driving times: delivered / asked, and "
          "the correlation of the two over the driving times (each landmark's mean taken out, as full_strength does)")
    for key, rows in pairs.items():
        ratios, corrs = {}, {}
        for region, index in TRANSFER_REGIONS.items():
            w = np.stack([a[list(index)] for a, _ in rows])
            g = np.stack([b[list(index)] for _, b in rows])
            ratios[region] = round(float(g.ravel() @ w.ravel() / (w.ravel() @ w.ravel())), 2)
            centred = [(v - v.mean(axis=0)).ravel() for v in (w, g)]
            corrs[region] = round(float(np.corrcoef(*centred)[0, 1]), 2)
        print(f"  {key:9s} {ratios}")
        print(f"  {'':9s} correlation {corrs}")


if __name__ == "__main__":
    main()
