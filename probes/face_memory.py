"""Does the face memory beat the paint? Pairs inside one held-out clip, memory against paint (issue 20's measure).

For each held-out clip: frame A with the mouth closed and frame B with it open (or, for the lids, A with the eyes
open and B in a blink), at least 1 s apart. A is edited toward B, with the head turn followed, two ways: to B's
AUs (as ``reenact edit`` would), and with B's own landmark moves (which opens the mouth exactly as far as B's, so
only what fills it differs). Each is made with the paint and with a face memory built from the clip *without*
the frames within 1 s of B, pasted back as the pipeline pastes, and compared with B (moved onto A's head by the
same similarity as training pairs): PSNR in B's inner mouth (or its eyes) and over the whole face.

To B's AUs, "paint" is ``--no-memory``'s output (the model's fields, the paint) and "memory" the default's (the
person's own mouth motion, ``reenact.own_motion``, learned from the same frames as the memory, and the memory);
"own paint" has the own motion with the paint, to tell the two apart. For the mouth, ``lip_inside_px``: how far the
memory entry's own inner lip lines land inside the target's mouth (its lip seen twice), as fitted and as fitted on
the outer lip lines too.

"mouth closing": the other way, A with the mouth open edited toward B with it closed (``reenact.memory.closing``),
PSNR inside B's lips and over the face, and ``teeth``: the share of the lips' pixels that look like teeth (a warp
squashes the open mouth's teeth between the closed lips), against B's own.

Also: the flicker of a steady edit of whole held-out clips with the memory and with the paint, over the source's
own, and dlib's identity distance of each pair's outputs from A and from B (on A's head).
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

from reenact.face.align import (
    STABLE_LANDMARKS,
    Alignment,
    edit_mask,
    face_mask,
    paste_back,
    similarity_transform,
)
from reenact.face.aus import blendshapes_to_aus
from reenact.memory import (
    PARTS,
    FaceMemory,
    MemoryCompositor,
    closing,
    fit_points,
    fitted_affine,
    opening,
    outline,
)
from reenact.model.coords import denormalise, normalise
from reenact.model.networks import GAP_CONTOURS, MOUTH
from reenact.own_motion import extra_moves_for, own_moves

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


def region(points: np.ndarray, part: int, whole: bool = False) -> np.ndarray:
    """(S, S) bool: what the memory replaces (``reenact.memory.outline``): the inner mouth (``whole``: with its lips)
    or, for an eye, between the rings above and below it."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(outline(points, part, whole)).astype(np.int32)], 1)
    return mask.astype(bool)


def teeth_share(image: np.ndarray, where: np.ndarray) -> float:
    """The share of ``where``'s pixels that look like teeth: much lighter than the region's median and with little
    colour (CIELAB: L 20 over the median, chroma under 0.6 of the median's). Between closed lips, the teeth a warp
    squashed there (measured against the real closed frame's own share)."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)[where]
    lightness, chroma = lab[:, 0] * 100 / 255, np.hypot(lab[:, 1] - 128, lab[:, 2] - 128)
    teeth = (lightness > np.median(lightness) + 20) & (chroma < 0.6 * np.median(chroma))
    return float(teeth.mean()) if len(teeth) else float("nan")


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(np.mean((a[where].astype(np.float64) - b[where].astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


@torch.no_grad()
def compare(model, rows, a: int, b: int, part: int, how: str, meter=None, sheet: Path | None = None,
            ) -> dict[str, float] | None:
    """One pair's figures. ``how`` "aus": "paint" is ``--no-memory``'s output (the model's fields and the paint),
    "memory" the default's (the person's own motion and the memory), "own paint" the own motion with the paint
    (the two apart); "landmarks": B's own landmark moves, the paint against the memory. ``sheet``: a PNG of A, B
    (on A's head) and the outputs, side by side, to look at."""
    t_b = rows[b][0]
    memory = FaceMemory()
    for t, crop, points, aus, pose in rows:
        if abs(t - t_b) >= APART_S:
            memory.observe(crop, points, t, aus, pose)
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
        moves = {"paint": lm - torch.from_numpy(normalise(pts_b_on_a, SIZE).astype(np.float32))[None]}
        moves["memory"] = moves["paint"]
    else:
        fields = model.motion.displacements(lm, src, tgt, pose, asked=True)
        extra = extra_moves_for(memory.motion, model.motion)
        own = fields if extra is None else fields + own_moves(extra, src, tgt)
        moves = {"paint": fields, "memory": own, "own paint": own}
    in_place = Alignment(np.eye(2, 3), SIZE)
    out, inside = {}, {}
    closes = part == MOUTH and opening(pts_b, MOUTH) < opening(pts_a, MOUTH)  # an open mouth closed
    for name, move in moves.items():
        result = model(image, lm, src, tgt, flow=model.motion.field(lm, move), moves=move)
        landed = denormalise((lm - result["moves"])[0].numpy(), SIZE)
        painted_any = result["painted"] is not None and bool((result["painted"] > 0).any())
        if not painted_any and not (closes and closing(pts_a, landed) > 0.01):
            return None  # nothing painted or closed: memory and paint give the same
        edited = (result["output"][0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        warped = (result["warped"][0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        painted = result["painted"][0, 0].numpy()
        picture, where = edited, painted
        if name == "memory":
            compositor = MemoryCompositor(memory)
            # B's AUs and head pitch: the edit's target.
            picture, where = compositor(edited, painted, landed, aus_b, float(pose_b[0]), pts_a)
            entry = compositor.entry_in_use(PARTS[MOUTH])
            if part == MOUTH and entry is not None and not closes:
                inside = {fit: lip_inside(entry, landed, index) for fit, index in
                          (("", fit_points(MOUTH)), ("_outer_too", sorted(set().union(*GAP_CONTOURS[MOUTH]))))}
        mask = edit_mask(pts_a, landed, SIZE)
        out[name] = paste_back(crop_a, picture, crop_a, in_place, mask, replaced=where, reference=warped)
    if sheet is not None:
        cv2.imwrite(str(sheet), np.concatenate([crop_a, moved_b, *out.values()], axis=1)[:, :, ::-1])
    inner = region(pts_b_on_a, part, closes) if part == MOUTH else region(pts_b_on_a, 0) | region(pts_b_on_a, 1)
    face = face_mask(pts_b_on_a, SIZE) > 0.5
    row = {} if part != MOUTH or how != "aus" or not inside else {f"lip_inside_px{k}": v for k, v in inside.items()}
    if closes:
        row["teeth_b"] = teeth_share(moved_b, inner)
    for name, picture in out.items():
        key = name.replace(" ", "_")
        row[f"part_{key}"], row[f"face_{key}"] = psnr(picture, moved_b, inner), psnr(picture, moved_b, face)
        if closes:
            row[f"teeth_{key}"] = teeth_share(picture, inner)
        if meter is not None:
            for whom, reference in (("", crop_a), ("_to_b", moved_b)):
                row[f"identity{whom}_{key}"] = meter.distance(reference.transpose(2, 0, 1) / 255,
                                                              picture.transpose(2, 0, 1) / 255) or float("nan")
    return row


def lip_inside(entry, landed: np.ndarray, index: list[int]) -> float:
    """How far (crop pixels, mean over both inner lip lines) the memory entry's own inner lip edges land inside the
    target's inner mouth when fitted on the landmarks ``index``: the entry's own lip showing inside the opening, a
    second lip beside the moved one (seen on a held-out face with the fit on the outer lip lines too)."""
    matrix = fitted_affine(entry.points, landed, index)
    if matrix is None:
        return float("nan")
    _, upper, lower, _ = GAP_CONTOURS[MOUTH]
    moved = entry.points @ matrix[:, :2].T + matrix[:, 2]
    inner = slice(1, -1)  # the corners always meet
    below_upper = moved[list(upper[inner]), 1] - landed[list(upper[inner]), 1]
    above_lower = landed[list(lower[inner]), 1] - moved[list(lower[inner]), 1]
    return float(np.mean(np.maximum(np.concatenate([below_upper, above_lower]), 0.0)))


def pick_pairs(rows, part: int, count: int, wide: float = 0.15, closing: bool = False) -> list[tuple[int, int]]:
    """(A, B) frame pairs at least APART_S apart: A closed, B as open as the clip gets (mouth; ``closing``: A open,
    B closed) or A open, B in a blink (eyes). ``wide``: the least opening (gap over width) the open mouth must
    show."""
    if part == MOUTH:
        value = np.array([opening(r[2], MOUTH) for r in rows])
        closed, wanted = np.flatnonzero(value < 0.03), np.argsort(-value)[: count * 4]
        wanted = [i for i in wanted if value[i] > wide]
        if closing:  # the open frames are the As now, the closed ones the Bs, spread over the clip
            spread = np.linspace(0, len(closed) - 1, min(len(closed), count * 4)).astype(int)
            closed, wanted = np.array(wanted), [int(i) for i in closed[spread]]
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
    parser.add_argument("--sheet", type=Path, help="write each pair's A | B | outputs here, to look at")
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
        for part, name, shut in ((MOUTH, "mouth", False), (MOUTH, "mouth closing", True), (0, "lids", False)):
            for a, b in pick_pairs(rows, part, args.pairs, closing=shut):
                for how in ("aus", "landmarks"):
                    sheet = None if args.sheet is None else args.sheet / f"{clip.stem}_{name}_{how}_{a}_{b}.png"
                    row = compare(model, rows, a, b, part, how, meter, sheet)
                    if row is not None:
                        results.setdefault(f"{name} {how}", []).append(row | {"clip": clip.stem})
                        print(name, how, clip.stem, {k: round(v, 2) for k, v in row.items() if k != "clip"},
                              flush=True)
    summary: dict[str, dict] = {}
    for key, rows in results.items():
        gain = {f: float(np.mean([r[f"{f}_memory"] - r[f"{f}_paint"] for r in rows])) for f in ("part", "face")}
        summary[key] = {"pairs": len(rows), "part_gain_db": round(gain["part"], 2), "face_gain_db": round(gain["face"], 2),
                        **{k: round(float(np.nanmean([r.get(k, np.nan) for r in rows])), 4)
                           for k in sorted({k for r in rows for k in r})
                           if k.startswith(("identity", "lip_inside", "teeth"))}}
        if "part_own_paint" in rows[0]:  # the own motion's share of the gain, with the paint in both
            summary[key]["own_motion_part_gain_db"] = round(float(np.mean(
                [r["part_own_paint"] - r["part_paint"] for r in rows])), 2)
    summary["flicker"] = steady_flicker(clips[: args.flicker_clips], args.model)
    print("summary", json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "pairs": results}, indent=1))


if __name__ == "__main__":
    main()
