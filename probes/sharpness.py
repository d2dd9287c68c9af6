"""How sharp an edited face stays: the variance of the Laplacian inside the face, and the contrast of its features,
output over source.

Why: a helper trying reenact from the README saw edited faces softer than the rest of the frame (skin texture and
stubble gone), which no AU, identity or flicker figure here reads. This probe edits the first ``--frames`` frames of
each held-out person's first clip, at its own size and scaled by each ``--scales`` factor (faces of different
sizes: the crop is 256 pixels, so a small face is shrunk into the frame and a large one enlarged), with each preset
through ``reenact edit``, as a user would. The face is MediaPipe's landmarks' hull on the source frame, eroded by a
twentieth of its width (its outline is left out: the background behind it does not move with the edit). A preset at
strength 0 (``floor``) changes nothing but the encode: the ratio no edit can beat.

Usage:
  python probes/sharpness.py --split RUN/split.json [--presets happy,sad,surprised] [--scales 1,0.5]
      [--frames 40] [--every 8] [--model default] [--texture-strength S] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np


def face_sharpness(image: np.ndarray, face: np.ndarray) -> float:
    """Variance of the Laplacian of the luminance inside the boolean mask ``face``."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F)[face].var())


def face_contrast(image: np.ndarray, face: np.ndarray, width: float) -> float:
    """Standard deviation of the luminance's band of the face's features (eyes, brows, lips, shading), a difference
    of Gaussians at 1/64 and 1/16 of the face's ``width``, inside ``face``: a haze laid over the face lowers it where
    the Laplacian, which reads the finest detail, barely moves."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    band = cv2.GaussianBlur(grey, (0, 0), max(width / 64, 0.5)) - cv2.GaussianBlur(grey, (0, 0), width / 16)
    return float(band[face].std())


def face_region(xy: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The landmarks' hull, eroded by a twentieth of the face's width, as a boolean (H, W) mask."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(xy.astype(np.float32)).astype(np.int32), 1)
    erode = max(3, int(np.ptp(xy[:, 0]) / 20))
    return cv2.erode(mask, np.ones((erode, erode), np.uint8)).astype(bool)


def _cut(path: Path, target: Path, frames: int, scale: float) -> Path:
    """The first ``frames`` frames of a clip, scaled (even sides), near-losslessly (crf 12): the probe's source."""
    from reenact.video import VideoReader, VideoWriter, probe

    like = probe(path)
    size = (int(like.width * scale) // 2 * 2, int(like.height * scale) // 2 * 2)
    with VideoReader(path) as reader, VideoWriter(target, like=replace(like, width=size[0], height=size[1]),
                                                 crf=12) as writer:
        for i, frame in enumerate(reader):
            if i >= frames:
                break
            image = frame.image if scale == 1 else cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
            writer.write(replace(frame, image=np.ascontiguousarray(image)))
    return target


def _frames(path: Path) -> list[np.ndarray]:
    from reenact.video import VideoReader

    with VideoReader(path) as reader:
        return [frame.image for frame in reader]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", type=Path, required=True, help="a training run's split.json (its validation people)")
    parser.add_argument("--presets", default="happy,sad,surprised")
    parser.add_argument("--scales", default="1,0.5", help="the clips' sizes, as factors of their own")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--every", type=int, default=8, help="score every n-th frame")
    parser.add_argument("--model", default="default")
    parser.add_argument("--texture-strength", help="passed to reenact edit (default: the model's own)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from reenact.face.tracker import FaceTracker

    data = Path(os.environ.get("REENACT_DATA", "../shared/data")) / "train"
    people = json.loads(args.split.read_text())["validation"]
    clips: dict[str, Path] = {}
    for line in (data / "MANIFEST.csv").read_text().splitlines()[1:]:
        file, who = line.split(",")[:2]
        if who in people:
            clips.setdefault(who, data / file)
    edits = ["happy:0"] + args.presets.split(",")
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, FaceTracker(video_mode=False) as tracker:
        for who, clip in clips.items():
            for scale in (float(s) for s in args.scales.split(",")):
                source = _cut(clip, Path(tmp) / f"{who}_{scale:g}.mp4", args.frames, scale)
                frames = _frames(source)
                scored = []
                for i in range(0, len(frames), args.every):
                    face = tracker(frames[i], 0.0)
                    if face is not None:
                        region = face_region(face.xy, frames[i].shape)
                        width = float(np.ptp(face.xy[:, 0]))
                        scored.append((i, region, face_sharpness(frames[i], region), width,
                                       face_contrast(frames[i], region, width)))
                if not scored:
                    continue
                row = {"face_px": round(float(np.mean([s[3] for s in scored]))), "source": round(
                    float(np.mean([s[2] for s in scored])), 1)}
                for edit in edits:
                    out = Path(tmp) / f"{who}_{scale:g}_{edit.replace(':', '_')}.mp4"
                    strength = [] if args.texture_strength is None else ["--texture-strength", args.texture_strength]
                    subprocess.run([sys.executable, "-m", "reenact", "edit", str(source), "-o", str(out), "--preset",
                                    edit, "--model", args.model, *strength], check=True, capture_output=True)
                    edited = _frames(out)
                    ratio = np.mean([face_sharpness(edited[i], region) / sharp for i, region, sharp, _, _ in scored])
                    contrast = np.mean([face_contrast(edited[i], region, width) / c for i, region, _, width, c in scored])
                    name = "floor" if edit == "happy:0" else edit
                    row[name], row[f"{name} contrast"] = round(float(ratio), 3), round(float(contrast), 3)
                rows[f"{who} x{scale:g}"] = row
                print(f"{who} x{scale:g}", row, flush=True)
    names = [n for edit in ["floor", *edits[1:]] for n in (edit, f"{edit} contrast")]
    summary = {n: round(float(np.mean([r[n] for r in rows.values()])), 3) for n in names}
    for size, test in (("face < 200 px", lambda r: r["face_px"] < 200), ("face >= 200 px", lambda r: r["face_px"] >= 200)):
        chosen = [r for r in rows.values() if test(r)]
        if chosen:
            summary[size] = {n: round(float(np.mean([r[n] for r in chosen])), 3) for n in names}
    print("mean", summary)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
