"""The edit gain: per AU, the factor on an asked-for change that makes reenact's AU reader see that change.

The motion step's per-AU fields are least-squares fits of landmark moves on AU *readings*, and readings carry
noise, so each field holds the motion that goes with a read change of one unit: less than the motion of an exact
change (the regression slope is attenuated by the reading's noise). That is the right motion for a transfer,
whose targets are readings of a driving face, but too little for an edit, whose target is exact: a +2 request
read back as +0.5 to +1.3. Per AU, this raises the factor on an asked-for change in steps while the reader's
response on training faces still rises by a useful amount and is short of the request.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from reenact.face.aus import AU_NAMES
from reenact.model.networks import AU_SCALE, Generator
from reenact.train.dataset import PreparedClip
from reenact.train.pairs import PairSampler

GAINS = tuple(1.0 + 0.25 * i for i in range(9))  # 1 to 3
# AUs that uncover what the crop does not show and the paint does not make: the eyeball above the iris (upper lid
# raiser) and the gums (upper lip raiser). A warp can only stretch what is there, so a larger field stretched the
# iris tall (seen on the grids with every AU fitted): their gain stays 1. The jaw drop is fitted: the mouth's
# interior is painted and its teeth keep their size. Lips part (AU25) keeps 1 too: fitted (2.25) it opens the
# happy and surprised presets' mouths wider and took the identity distance over the eval's edits from 0.349 to
# 0.352 (dlib; over 0.35) for a single-AU edit the acceptance does not ask about.
UNCOVERING_AUS = ("AU05", "AU10", "AU25")
# The inner and outer brow raisers are fitted as one: they act together (raised brows, the presets), and alone
# AU02 hardly reads (0.28 of a request at gain 2), so a fit of each alone pushed the pair past what shows more.
FITTED_GROUPS: tuple[tuple[str, ...], ...] = (("AU01", "AU02"),) + tuple(
    (name,) for name in AU_NAMES if name not in UNCOVERING_AUS + ("AU01", "AU02"))


def fit_edit_ceiling(model: Generator, clips: list[PreparedClip], top: float = 4.0, min_frames: int = 20,
                     log: Callable[[dict], None] = print) -> list[float]:
    """Set ``model``'s ``edit_ceiling`` and return it: per AU, the reading at which its field moves its landmarks as
    far as the training frames read ``top`` or more moved them; 5 for an AU with fewer than ``min_frames`` such
    frames (the data shows nothing past the scale's top) and never under 5. A frame's motion is measured against
    the mean of its clip's frames read in that clip's lowest fifth, projected onto the field over the landmarks
    it moves most (the top fifth), so other AUs' motion elsewhere on the face does not count."""
    basis = model.motion.basis.detach().cpu().numpy().astype(np.float64)  # (AUs, N, 2), per change / AU_SCALE
    ceiling = [AU_SCALE] * len(AU_NAMES)
    for k, name in enumerate(AU_NAMES):
        size = np.linalg.norm(basis[k], axis=1)
        if not size.any():
            continue
        strongest = size >= np.percentile(size[size > 0], 80)
        field = basis[k][strongest].ravel()
        readings: list[np.ndarray] = []
        for clip in clips:
            read = clip.aus[:, k]
            high = read >= top
            if not high.any():
                continue
            low = read <= np.percentile(read, 20)
            points = clip.landmarks[:, strongest] / (clip.crops.shape[1] / 2)  # crop pixels -> normalised
            moves = (points[low].mean(axis=0) - points[high]).reshape(int(high.sum()), -1)  # content from - lands at
            readings.append(read[low].mean() + AU_SCALE * (moves @ field) / (field @ field))
        high_frames = sum(map(len, readings))
        if high_frames >= min_frames:
            reaches = float(np.mean(np.concatenate(readings)))
            ceiling[k] = max(AU_SCALE, reaches)
            log({"au": name, "reaches": round(reaches, 2), "ceiling": round(ceiling[k], 2), "frames": high_frames})
    model.reconfigure(edit_ceiling=ceiling)
    return ceiling


def fit_edit_gain(model: Generator, clips: list[PreparedClip], faces: int = 48, seed: int = 23, step: float = 2.0,
                  gains: tuple[float, ...] = GAINS, enough: float = 0.8, min_rise: float = 0.03,
                  groups: tuple[tuple[str, ...], ...] = FITTED_GROUPS, log: Callable[[dict], None] = print,
                  distance: Callable[[np.ndarray, np.ndarray], float | None] | None = None, budget: float = 0.35,
                  ) -> list[float]:
    """Set ``model``'s ``edit_gain`` and return it. For each group of AUs in turn, alone, ``step`` is asked of
    ``faces`` faces from ``clips``; the next gain is taken while the share of the request that the reader measures
    is below ``enough`` and the gain raises it by at least ``min_rise`` (a field that cannot show more, such as a
    blink the texture step does not draw, keeps a gain of 1). The AUs of a group are asked and scaled together, and
    their share is the sum of what shows over the sum asked. AUs in no group keep the model's gain. ``distance``: a
    distance between two (3, S, S) faces, such as ``IdentityMeter().distance`` (None where it finds no face); with
    it, a gain is not taken if its edit moves the faces further than ``budget`` from themselves on average. Edits are
    read as they are pasted back (``generate_outputs(..., pasted=True)``)."""
    import torch

    from reenact.evaluate import generate_outputs, measure_aus
    from reenact.face.tracker import FaceTracker

    batch = PairSampler(clips, seed=seed).sample(faces, images=True)
    chosen = list(model.config.edit_gain or [1.0] * len(AU_NAMES))
    with FaceTracker(video_mode=False) as tracker, torch.no_grad():
        before = measure_aus(tracker, batch.image_a)

        def measure(ks: list[int], gain: float) -> tuple[float, float]:
            """(share of the request the reader sees, mean ``distance`` of the edits from their faces, or 0)."""
            model.reconfigure(edit_gain=[gain if i in ks else g for i, g in enumerate(chosen)])
            target = batch.aus_a.copy()
            target[:, ks] = np.clip(target[:, ks] + step, 0.0, 5.0)
            asked = (target - batch.aus_a)[:, ks].sum(axis=1)
            edited = generate_outputs(model, batch, target, asked=True, pasted=True)
            moved = (measure_aus(tracker, edited) - before)[:, ks].sum(axis=1)
            ok = ~np.isnan(moved) & (asked > 0.5)
            apart = [d for d in map(distance, batch.image_a, edited) if d is not None] if distance else [0.0]
            return float(np.mean(moved[ok] / asked[ok])), float(np.mean(apart))

        for group in groups:
            ks = [AU_NAMES.index(name) for name in group]
            best, (last, apart) = gains[0], measure(ks, gains[0])
            for gain in gains[1:]:
                if last >= enough:
                    break
                now, further = measure(ks, gain)
                if now < last + min_rise or further > budget:
                    break
                best, last, apart = gain, now, further
            for k in ks:
                chosen[k] = best
            line = {"au": "+".join(group), "gain": best, "share": round(last, 3)}
            log(line | {"distance": round(apart, 4)} if distance else line)
    model.reconfigure(edit_gain=chosen)
    return chosen
