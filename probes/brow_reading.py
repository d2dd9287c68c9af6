"""What reenact's AU reader sees of raised brows: real raises, hand-made lifts and the model's edit, side by side.

Three kinds of brow raise, each read the way ``reenact eval`` reads an edit (the 128-px crop at 256, MediaPipe's
FaceLandmarker, reenact's AU reader):
- real: per clip of the dataset whose reader's AU01+AU02 rises by 2.4 or more (60% of the eval's +2 +2 edit),
  the frame where it rises most against the clip's median frame of its lowest fifth (any person: no model enters);
- lift: a held-out face whose brows a smooth hand-made warp moves straight up by a few pixels, eyes held still,
  the forehead above taking up the move (also with forehead lines drawn over it: does forehead texture count?);
- edit: the model's AU01+AU02 +2 edit of the same held-out faces, pasted back as ``reenact edit`` pastes it.
Per kind, all against the eye corners (so a real head's motion cancels out): how far the brows moved (content:
known for lifts and the edit), the same by dense optical flow (not from MediaPipe), how far MediaPipe places the
brow points; and the reader's AU01 and AU02 rises, and their sum per pixel MediaPipe found.
Crop pixels of the dataset's crops (128 px for `reenact prepare`'s default).
Usage: python probes/brow_reading.py DATASET --split RUN/split.json [--model default] [--faces 24]
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from reenact.evaluate import crop_rgb8, edit_targets, generate_outputs, track_crops
from reenact.face.aus import AU_NAMES, blendshapes_to_aus
from reenact.face.tracker import FaceTracker
from reenact.model.coords import denormalise
from reenact.model.io import load_generator
from reenact.train.dataset import load_dataset
from reenact.train.pairs import PairSampler

sys.path.insert(0, str(Path(__file__).parent))
from held_out import run_held_out  # noqa: E402
from landmark_follow import PARTS  # noqa: E402

BROWS = list(PARTS["brows"])
EYE_CORNERS = [33, 133, 362, 263]  # fixed on the skull: a brow raise moves neither them nor the head's pose
FOREHEAD_TOP = 10
RAISES = [AU_NAMES.index("AU01"), AU_NAMES.index("AU02")]
REAL_RISE = 2.4
LIFTS_PX = (1.5, 3.0, 4.5)


def brow_height(xy: np.ndarray) -> float:
    """How far the brow points sit above the eye corners (pixels, y down)."""
    return float(xy[EYE_CORNERS, 1].mean() - xy[BROWS, 1].mean())


def flow_rise(before: np.ndarray, after: np.ndarray, xy: np.ndarray, upscale: int = 2) -> list[float]:
    """How far the image's content moved up at the brow points against the eye corners, by dense optical flow
    (OpenCV's DIS) from each (3, S, S) crop of ``before`` to ``after``; ``xy``: ``before``'s landmarks in pixels.
    A measure of the move that does not come from MediaPipe (the flow under-reads a smooth lift: see the lifts)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = lambda crop: cv2.cvtColor(crop_rgb8(crop, crop.shape[-1] * upscale), cv2.COLOR_RGB2GRAY)  # noqa: E731
    rises = []
    for a, b, points in zip(before, after, xy):
        flow = dis.calc(grey(a), grey(b), None) / upscale  # (H, W, 2): where each pixel of a went in b
        x, y = np.clip(np.round(points * upscale).astype(int), 0, flow.shape[0] - 1).T
        up = -flow[y, x, 1]  # per landmark, the move up
        rises.append(float(up[BROWS].mean() - up[EYE_CORNERS].mean()))
    return rises


def _ramp(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def lift_brows(crop: np.ndarray, xy: np.ndarray, lift: float, lines: float = 0.0) -> np.ndarray:
    """A (3, S, S) float crop with its brows moved up by ``lift`` pixels: full at the brows, fading to nothing at
    the eyes' upper lids below and at the forehead's top above, and across the brows' ends. ``lines``: also darken
    three thin arched lines above the brows by this share (forehead wrinkles drawn by hand). ``xy``: the crop's
    landmarks in pixels."""
    size = crop.shape[-1]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    brow_y, lid_y, top_y = xy[BROWS, 1].mean(), xy[[159, 386], 1].mean(), xy[FOREHEAD_TOP, 1]
    left, right = xy[BROWS, 0].min(), xy[BROWS, 0].max()
    span = right - left
    across = _ramp((xx - left + 0.15 * span) / (0.15 * span)) * _ramp((right + 0.15 * span - xx) / (0.15 * span))
    up = np.where(yy > brow_y, _ramp((lid_y - yy) / (lid_y - brow_y)), _ramp((yy - top_y) / (brow_y - top_y)))
    image = np.ascontiguousarray(crop.transpose(1, 2, 0))
    # Content moves up by the lift: each output pixel reads the source that far below it.
    out = cv2.remap(image, xx, yy + lift * across * up, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    if lines:
        centre, top_brow = xy[BROWS, 0].mean(), xy[BROWS, 1].min() - lift
        shade = np.zeros((size, size), np.float32)
        for k in (1, 2, 3):
            arch = top_brow - k * 0.07 * span - 0.04 * span * (1 - ((xx - centre) / (span / 2)) ** 2)
            shade += np.exp(-((yy - arch) ** 2) / (2 * (size / 256) ** 2))
        out = out * (1 - lines * shade * np.clip(1 - np.abs(xx - centre) / (0.42 * span), 0, 1))[..., None]
    return np.clip(out, 0, 1).transpose(2, 0, 1)


def read(tracker: FaceTracker, crops: np.ndarray) -> list[tuple[float, np.ndarray] | None]:
    """(brow height in crop pixels, AUs) per (N, 3, S, S) crop, as the eval reads crops; None where no face."""
    scale = crops.shape[-1] / 256
    return [None if face is None else (brow_height(face.xy * scale), blendshapes_to_aus(face.blendshapes))
            for face in track_crops(tracker, crops)]


def summarise(kind: str, before: list, after: list, moved_px: list[float] | None, flow_px: list[float]) -> dict:
    pairs = [(b, a, m, f) for b, a, m, f in zip(before, after, moved_px or [np.nan] * len(before), flow_px)
             if b is not None and a is not None]
    found = np.array([a[0] - b[0] for b, a, _, _ in pairs])
    rises = np.array([(a[1] - b[1])[RAISES] for b, a, _, _ in pairs])
    moved = float(np.mean([m for _, _, m, _ in pairs]))
    row = {"kind": kind, "faces": len(pairs), "moved_px": None if np.isnan(moved) else round(moved, 2),
           "flow_px": round(float(np.median([f for *_, f in pairs])), 2), "found_px": round(float(found.mean()), 2),
           "AU01": round(float(rises[:, 0].mean()), 2), "AU02": round(float(rises[:, 1].mean()), 2),
           "reading_per_found_px": round(float(rises.sum(1).mean() / found.mean()), 2)}
    shown = "   -  " if row["moved_px"] is None else f"{row['moved_px']:6.2f}"
    print(f"{kind:28s} {row['faces']:5d} {shown} {row['flow_px']:6.2f} {row['found_px']:7.2f} {row['AU01']:+6.2f} "
          f"{row['AU02']:+6.2f} {row['reading_per_found_px']:9.2f}", flush=True)
    return row


@torch.no_grad()
def measure(dataset: Path, people: list[str], model_name: str | None, faces: int, seed: int = 11) -> list[dict]:
    data = load_dataset(dataset)
    size = data.crop_size
    print(f"{'kind':28s} faces moved   flow   found   AU01   AU02  per px found")
    rows = []
    with FaceTracker(video_mode=False) as tracker:
        lows, highs, calm_xy = [], [], []
        for clip in data.clips:
            raised = clip.aus[:, RAISES].sum(axis=1)
            if np.isnan(raised).all():
                continue
            low = np.flatnonzero(raised <= np.nanpercentile(raised, 20))
            calm = low[np.argsort(raised[low])[len(low) // 2]]
            high = int(np.nanargmax(raised))
            if raised[high] - raised[calm] >= REAL_RISE:
                lows.append(clip.crops[calm])
                highs.append(clip.crops[high])
                calm_xy.append(clip.landmarks[calm])
        as_float = lambda crops: np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255  # noqa: E731
        lows, highs = as_float(lows), as_float(highs)
        rows.append(summarise(f"real (clips rising >= {REAL_RISE})", read(tracker, lows), read(tracker, highs), None,
                              flow_rise(lows, highs, calm_xy)))

        batch = PairSampler([c for c in data.clips if c.identity in people], seed=seed).sample(faces, images=True)
        before = read(tracker, batch.image_a)
        xy = denormalise(batch.landmarks_a, size)
        for lift in LIFTS_PX:
            for lines in (0.0, 0.25) if lift == LIFTS_PX[1] else (0.0,):
                lifted = np.stack([lift_brows(c, p, lift, lines) for c, p in zip(batch.image_a, xy)])
                kind = f"lift {lift:g} px" + (" + forehead lines" if lines else "")
                rows.append(summarise(kind, before, read(tracker, lifted), [lift] * faces,
                                      flow_rise(batch.image_a, lifted, xy)))

        model = load_generator(model_name).eval()
        name, target = next((n, t) for n, t in edit_targets(batch.aus_a, presets=False) if n == "AU01+AU02+")
        moves = model(None, torch.from_numpy(batch.landmarks_a), torch.from_numpy(batch.aus_a),
                      torch.from_numpy(target), asked=True)["moves"].numpy()
        moved = [brow_height(denormalise(lm - mv, size)) - brow_height(denormalise(lm, size))
                 for lm, mv in zip(batch.landmarks_a, moves)]
        edited = generate_outputs(model, batch, target, asked=True, pasted=True)
        rows.append(summarise(f"edit {name.rstrip('+')} +2 ({model_name or 'default'})", before, read(tracker, edited),
                              moved, flow_rise(batch.image_a, edited, xy)))
    return rows


def main() -> None:
    run_held_out(__doc__.splitlines()[0], measure, "--faces", 24, "faces of the held-out people (default 24)")


if __name__ == "__main__":
    main()
