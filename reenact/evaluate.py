"""Metrics for a generator on people it never trained on.

- Self-reenactment: rebuild frame B of a clip from frame A and B's AUs (B moved onto A's head pose); PSNR, L1
  and SSIM inside B's face mask, against the baseline of copying A.
- AU fidelity: edit faces toward single-AU targets and measure the output with reenact's own MediaPipe-based AU
  reader (never with a network the generator was trained against): the share of the requested change that
  shows, and how far the other AUs move.
- Flicker: mean frame-to-frame change inside the face over an edited clip, against the source clip's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from reenact.face.aus import AU_NAMES, blendshapes_to_aus
from reenact.face.tracker import FaceTracker
from reenact.model.networks import Generator
from reenact.train.pairs import PairBatch, PairSampler
from reenact.train.prepare import PreparedClip

# The single-AU edits the acceptance asks about: (name, {AU: change}).
SINGLE_AU_EDITS: tuple[tuple[str, dict[str, float]], ...] = (
    ("AU12", {"AU12": 2.0}),
    ("AU26", {"AU26": 2.0}),
    ("AU45", {"AU45": 3.0}),
    ("AU01+AU02", {"AU01": 2.0, "AU02": 2.0}),
    ("AU04", {"AU04": 2.0}),
    ("AU15", {"AU15": 2.0}),
)


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR of float images in [0, 1] (..., H, W, C or C, H, W broadcastable with mask) inside the mask."""
    mse = float(((a - b) ** 2 * mask).sum() / (mask.sum() * 3 + 1e-8))
    return 10 * np.log10(1.0 / max(mse, 1e-10))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5) over the mask, on the grey images (H, W) in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    ssim = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float((ssim * mask).sum() / (mask.sum() + 1e-8))


@dataclass(frozen=True)
class SelfReenactment:
    pairs: int
    psnr: float
    psnr_copy: float
    l1: float
    l1_copy: float
    ssim: float
    ssim_copy: float


@torch.no_grad()
def self_reenactment(model: Generator, clips: list[PreparedClip], pairs: int = 256, seed: int = 7) -> SelfReenactment:
    batch = PairSampler(clips, seed=seed).sample(pairs, images=True)
    out = _generate(model, batch, batch.aus_b)
    rows = []
    for o, a, b, m in zip(out, batch.image_a, batch.image_b, batch.mask_b):
        grey = lambda x: x.mean(axis=0)  # noqa: E731
        rows.append((
            masked_psnr(o, b, m), masked_psnr(a, b, m),
            float((np.abs(o - b) * m).sum() / (m.sum() * 3)), float((np.abs(a - b) * m).sum() / (m.sum() * 3)),
            masked_ssim(grey(o), grey(b), m[0]), masked_ssim(grey(a), grey(b), m[0]),
        ))
    means = np.mean(rows, axis=0)
    return SelfReenactment(pairs, *map(float, means))


def _generate(model: Generator, batch: PairBatch, target_aus: np.ndarray, chunk: int = 64) -> np.ndarray:
    outs = []
    for i in range(0, len(batch.image_a), chunk):
        s = slice(i, i + chunk)
        result = model(
            torch.from_numpy(batch.image_a[s]), torch.from_numpy(batch.landmarks_a[s]),
            torch.from_numpy(batch.aus_a[s]), torch.from_numpy(np.ascontiguousarray(target_aus[s])),
        )
        outs.append(result["output"].numpy())
    return np.concatenate(outs)


def measure_aus(tracker: FaceTracker, images: np.ndarray, upscale: int = 256) -> np.ndarray:
    """AUs of (N, 3, S, S) float crops with reenact's AU reader; NaN rows where no face is found."""
    rows = []
    for image in images:
        rgb = (np.clip(image.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
        rgb = cv2.resize(rgb, (upscale, upscale), interpolation=cv2.INTER_CUBIC)
        face = tracker(rgb, 0.0)
        rows.append(blendshapes_to_aus(face.blendshapes) if face is not None else np.full(len(AU_NAMES), np.nan))
    return np.array(rows, dtype=np.float32)


@torch.no_grad()
def au_fidelity(model: Generator, clips: list[PreparedClip], faces: int = 48, seed: int = 11) -> dict[str, dict[str, float]]:
    """Per single-AU edit: the mean share of the requested change measured on the output, and the mean of the
    largest change of any other AU."""
    batch = PairSampler(clips, seed=seed).sample(faces, images=True)
    results: dict[str, dict[str, float]] = {}
    with FaceTracker(video_mode=False) as tracker:
        # The crops as they are, measured the same way, are the reference the edits are compared with.
        before = measure_aus(tracker, batch.image_a)
        for name, change in SINGLE_AU_EDITS:
            target = batch.aus_a.copy()
            asked = np.zeros_like(target)
            for au, delta in change.items():
                i = AU_NAMES.index(au)
                target[:, i] = np.clip(target[:, i] + delta, 0, 5)
                asked[:, i] = target[:, i] - batch.aus_a[:, i]
            after = measure_aus(tracker, _generate(model, batch, target))
            moved = after - before
            ok = ~np.isnan(moved).any(axis=1)
            edited = [AU_NAMES.index(au) for au in change]
            others = [i for i in range(len(AU_NAMES)) if i not in edited]
            share = (moved[ok][:, edited].sum(axis=1) / np.maximum(asked[ok][:, edited].sum(axis=1), 1e-3))
            results[name] = {
                "share_of_request": float(np.mean(share)),
                "others_max_change": float(np.mean(np.abs(moved[ok][:, others]).max(axis=1))),
                "faces": int(ok.sum()),
            }
    return results


def write_report(path: Path, report: dict) -> None:
    path.write_text(json.dumps(report, indent=1) + "\n")
