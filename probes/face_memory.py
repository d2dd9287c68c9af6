"""Does the face memory beat the paint? Pairs inside one held-out clip, memory against paint (issue 20's measure).

For each held-out clip: frame A with the mouth closed and frame B with it open (or, for the lids, A with the eyes
open and B in a blink), at least 1 s apart. A is edited toward B, with the head turn followed, two ways: to B's
AUs (as ``reenact edit`` would), and with B's own landmark moves (which opens the mouth exactly as far as B's, so
only what fills it differs). Each is made with the paint and with a face memory built from the clip *without*
the frames within 1 s of B, pasted back as the pipeline pastes, and compared with B (moved onto A's head by the
same similarity as training pairs): PSNR in B's inner mouth (or its eyes) and over the whole face.

Also: the flicker of a steady edit of whole held-out clips with the memory and with the paint, over the source's
own, and dlib's identity distance of each pair's outputs from A.
Usage: python probes/face_memory.py --split RUN/split.json [--model default] [--pairs 3] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from reenact.face.align import STABLE_LANDMARKS, Alignment, edit_mask, face_mask, paste_back, similarity_transform
from reenact.face.aus import blendshapes_to_aus
from reenact.memory import FaceMemory, MemoryCompositor, opening
from reenact.model.coords import denormalise, normalise
from reenact.model.networks import GAP_CONTOURS, MOUTH

SIZE = 256
APART_S = 1.0


def clip_frames(path: Path):
    """Per frame of a clip: (time, aligned 256² crop, its landmarks in crop pixels, AUs, head pose in degrees)."""
    from reenact.face.align import FaceAligner
    from reenact.face.tracker import FaceTracker
    from reenact.pipeline import AlignStage, TrackStage, stream
    from reenact.video import VideoReader

    rows = []
    with VideoReader(path) as reader, FaceTracker() as tracker:
        for state in stream(reader, [TrackStage(tracker), AlignStage(FaceAligner(SIZE))]):
            if state.face is None:
                continue
            rows.append((state.frame.time, state.crop, state.alignment.to_crop(state.face.xy),
                         blendshapes_to_aus(state.face.blendshapes), np.array(state.face.head_pose_degrees())))
    return rows


def region(points: np.ndarray, part: int) -> np.ndarray:
    """(S, S) bool: inside a part's gap (the inner mouth) or, for an eye, between the rings above and below it."""
    above, upper, lower, below = GAP_CONTOURS[part]
    top, bottom = (upper, lower) if part == MOUTH else (above, below)
    ring = np.concatenate([points[list(top)], points[list(bottom)][::-1]])
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(ring).astype(np.int32)], 1)
    return mask.astype(bool)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(np.mean((a[where].astype(np.float64) - b[where].astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


@torch.no_grad()
def compare(model, rows, a: int, b: int, part: int, how: str, meter=None) -> dict[str, float] | None:
    t_b = rows[b][0]
    memory = FaceMemory()
    for t, crop, points, *_ in rows:
        if abs(t - t_b) >= APART_S:
            memory.observe(crop, points, t)
    memory.frozen = True
    _, crop_a, pts_a, aus_a, pose_a = rows[a]
    _, crop_b, pts_b, aus_b, pose_b = rows[b]
    stable = list(STABLE_LANDMARKS)
    to_a = similarity_transform(pts_b[stable].astype(np.float64), pts_a[stable].astype(np.float64))
    moved_b = cv2.warpAffine(crop_b, to_a, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    pts_b_on_a = pts_b @ to_a[:, :2].T + to_a[:, 2]
    lm = torch.from_numpy(normalise(pts_a, SIZE).astype(np.float32))[None]
    image = torch.from_numpy(crop_a).permute(2, 0, 1)[None].float() / 255
    src, tgt = torch.from_numpy(aus_a)[None], torch.from_numpy(aus_b)[None]
    pose = torch.from_numpy((pose_b - pose_a).astype(np.float32))[None]
    if how == "landmarks":
        moves = lm - torch.from_numpy(normalise(pts_b_on_a, SIZE).astype(np.float32))[None]
        flow = model.motion.field(lm, moves)
        result = model(image, lm, src, tgt, flow=flow, moves=moves)
    else:
        result = model(image, lm, src, tgt, pose_change=pose, asked=True)
    if result["painted"] is None or not bool((result["painted"] > 0).any()):
        return None  # nothing painted: memory and paint give the same
    edited = (result["output"][0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    warped = (result["warped"][0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    painted = result["painted"][0, 0].numpy()
    landed = denormalise((lm - result["moves"])[0].numpy(), SIZE)
    remembered, replaced = MemoryCompositor(memory)(edited, painted, landed)
    mask = edit_mask(pts_a, landed, SIZE)
    in_place = Alignment(np.eye(2, 3), SIZE)
    out = {}
    for name, picture, where in (("paint", edited, painted), ("memory", remembered, replaced)):
        out[name] = paste_back(crop_a, picture, crop_a, in_place, mask, replaced=where, reference=warped)
    inner = region(pts_b_on_a, part) if part == MOUTH else region(pts_b_on_a, 0) | region(pts_b_on_a, 1)
    face = face_mask(pts_b_on_a, SIZE) > 0.5
    row = {"part_paint": psnr(out["paint"], moved_b, inner), "part_memory": psnr(out["memory"], moved_b, inner),
           "face_paint": psnr(out["paint"], moved_b, face), "face_memory": psnr(out["memory"], moved_b, face)}
    if meter is not None:
        for name in ("paint", "memory"):
            row[f"identity_{name}"] = meter.distance(crop_a.transpose(2, 0, 1) / 255,
                                                     out[name].transpose(2, 0, 1) / 255) or float("nan")
    return row


def pick_pairs(rows, part: int, count: int, wide: float = 0.15) -> list[tuple[int, int]]:
    """(A, B) frame pairs at least APART_S apart: A closed, B as open as the clip gets (mouth) or A open, B in a
    blink (eyes). ``wide``: the least opening (gap over width) a mouth B must show."""
    if part == MOUTH:
        value = np.array([opening(r[2], MOUTH) for r in rows])
        closed, wanted = np.flatnonzero(value < 0.03), np.argsort(-value)[: count * 4]
        wanted = [i for i in wanted if value[i] > wide]
    else:
        value = np.array([min(opening(r[2], 0), opening(r[2], 1)) for r in rows])
        closed, wanted = np.flatnonzero(value > np.percentile(value, 50)), np.argsort(value)[: count * 4]
        wanted = [i for i in wanted if value[i] < 0.06]
    pairs = []
    times = np.array([r[0] for r in rows])
    for b in wanted:
        far = [a for a in closed if abs(times[a] - times[b]) >= APART_S]
        if far and all(abs(times[b] - times[p[1]]) >= 0.5 for p in pairs):
            pairs.append((int(far[len(far) // 2]), int(b)))
        if len(pairs) == count:
            break
    return pairs


def steady_flicker(clips: list[Path], model: str | None) -> dict[str, float]:
    """A steady edit (``--preset surprised``) of whole held-out clips through ``reenact edit``, with the memory and
    with the paint: each one's frame-to-frame change in the face's box over the source's own."""
    import tempfile

    from reenact.api import GeneratorOptions, edit_expression
    from reenact.editing import ExpressionTarget
    from reenact.evaluate import face_box, flicker

    ratios: dict[str, list[float]] = {"memory": [], "paint": []}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            box = face_box(clip)
            for name in ratios:
                out = Path(tmp) / f"{name}.mp4"
                edit_expression(clip, out, ExpressionTarget(preset="surprised"),
                                GeneratorOptions(model=model, memory=name == "memory"))
                ratios[name].append(flicker(clip, out, box)["ratio"])
    return {f"{name}_over_source": round(float(np.mean(v)), 3) for name, v in ratios.items()}


def main() -> None:
    from reenact.model.io import load_generator

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--model")
    parser.add_argument("--pairs", type=int, default=3, help="pairs per clip and part (default 3)")
    parser.add_argument("--flicker-clips", type=int, default=4, help="held-out clips edited whole for flicker")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = Path(os.environ.get("REENACT_DATA", "../shared/data")) / "train"
    people = json.loads(args.split.read_text())["validation"]
    clips = [data / line.split(",")[0] for line in (data / "MANIFEST.csv").read_text().splitlines()[1:]
             if line.split(",")[1] in people]
    from reenact.evaluate import IdentityMeter

    model = load_generator(args.model).eval()
    meter = IdentityMeter()
    results: dict[str, list[dict]] = {}
    for clip in clips:
        rows = clip_frames(clip)
        for part, name in ((MOUTH, "mouth"), (0, "lids")):
            for a, b in pick_pairs(rows, part, args.pairs):
                for how in ("aus", "landmarks"):
                    row = compare(model, rows, a, b, part, how, meter)
                    if row is not None:
                        results.setdefault(f"{name} {how}", []).append(row | {"clip": clip.stem})
                        print(name, how, clip.stem, {k: round(v, 2) for k, v in row.items() if k != "clip"},
                              flush=True)
    summary: dict[str, dict] = {}
    for key, rows in results.items():
        gain = {f: float(np.mean([r[f"{f}_memory"] - r[f"{f}_paint"] for r in rows])) for f in ("part", "face")}
        summary[key] = {"pairs": len(rows), "part_gain_db": round(gain["part"], 2), "face_gain_db": round(gain["face"], 2),
                        **{f"identity_{n}": round(float(np.nanmean([r[f"identity_{n}"] for r in rows])), 4)
                           for n in ("paint", "memory")}}
    summary["flicker"] = steady_flicker(clips[: args.flicker_clips], args.model)
    print("summary", json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "pairs": results}, indent=1))


if __name__ == "__main__":
    main()
