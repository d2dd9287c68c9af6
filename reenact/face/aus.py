"""FACS Action Units from MediaPipe blendshapes, on OpenFace's 0-5 intensity scale.

Each AU is a non-negative weighted sum of the blendshapes that move the same muscles (documented in AU_SOURCES),
passed through a monotone calibration curve. Weights and curves were fitted against OpenFace 2.0.6 static AU
intensities on the shared training clips by ``tools/fit_au_mapping.py``; the figures of that fit are in
``au_mapping.json`` beside this file. Lateral AUs are also read per side, by feeding one side's blendshapes
(the subject's own left or right) through the same curve: a wink is AU45 on one side only.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from reenact.errors import AUError
from reenact.face.tracker import BLENDSHAPE_INDEX

# The GANimation AU set, in OpenFace's column order.
AU_NAMES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)  # fmt: skip

# What each AU does in reenact: the one list of AU names that the plot, the help and the docs show. FACS's names,
# but for AU23, which reenact reads and moves as a pucker (AU_CAVEATS says why).
AU_DESCRIPTIONS: dict[str, str] = {
    "AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer", "AU05": "upper lid raiser",
    "AU06": "cheek raiser", "AU07": "lid tightener", "AU09": "nose wrinkler", "AU10": "upper lip raiser",
    "AU12": "lip corner puller (smile)", "AU14": "dimpler", "AU15": "lip corner depressor", "AU17": "chin raiser",
    "AU20": "lip stretcher", "AU23": "lip pucker", "AU25": "lips part", "AU26": "jaw drop", "AU45": "blink",
}  # fmt: skip

# What an edit of these AUs does that their FACS name does not say (`reenact edit` tells the user).
AU_CAVEATS: dict[str, str] = {
    "AU23": "reenact reads and moves AU23 with MediaPipe's lip press and pucker shapes, which do not agree with "
            "OpenFace's lip tightener (r -0.04 on held-out people), so it draws a pucker",
}

# Which blendshapes may explain each AU. A name ending in '*' is a Left/Right pair: the AU reads their mean, and
# each side of the face reads its own. Chosen from the FACS muscle descriptions and ARKit's blendshape definitions.
AU_SOURCES: dict[str, tuple[str, ...]] = {
    "AU01": ("browInnerUp",),
    "AU02": ("browOuterUp*", "browInnerUp"),
    "AU04": ("browDown*",),
    "AU05": ("eyeWide*",),
    "AU06": ("eyeSquint*", "mouthSmile*"),  # cheekSquint reads ~0 on every frame: the model barely uses it
    "AU07": ("eyeSquint*", "browDown*"),
    "AU09": ("noseSneer*", "mouthUpperUp*", "browDown*"),  # noseSneer is nearly dead; AU09 comes with AU10/AU04
    "AU10": ("mouthUpperUp*", "noseSneer*"),
    "AU12": ("mouthSmile*",),
    "AU14": ("mouthDimple*", "mouthPress*"),
    "AU15": ("mouthFrown*",),
    "AU17": ("mouthShrugLower", "mouthShrugUpper", "mouthRollLower"),
    "AU20": ("mouthStretch*",),
    "AU23": ("mouthPress*", "mouthPucker", "mouthFunnel", "mouthRollUpper"),
    "AU25": ("jawOpen", "mouthLowerDown*", "mouthUpperUp*"),
    "AU26": ("jawOpen",),
    "AU45": ("eyeBlink*",),
}


def coupled_aus(au: str) -> tuple[str, ...]:
    """The other AUs this reader computes from one of ``au``'s blendshapes: they cannot read as unmoved when
    ``au`` moves (e.g. AU25 with AU26, both from jawOpen; AU06 with AU12, both from mouthSmile)."""
    mine = set(AU_SOURCES[au])
    return tuple(other for other in AU_NAMES if other != au and mine & set(AU_SOURCES[other]))


LATERAL_AUS: tuple[str, ...] = tuple(au for au in AU_NAMES if any(s.endswith("*") for s in AU_SOURCES[au]))
SIDES = ("L", "R")

MAPPING_PATH = Path(__file__).with_name("au_mapping.json")


def source_values(blendshapes: np.ndarray, sources: tuple[str, ...], side: str | None = None) -> np.ndarray:
    """The AU's source features for blendshape rows (..., 52): a pair reads its mean, or one side's value."""
    columns = []
    for name in sources:
        if name.endswith("*"):
            left, right = (blendshapes[..., BLENDSHAPE_INDEX[name[:-1] + s]] for s in ("Left", "Right"))
            columns.append({None: (left + right) / 2, "L": left, "R": right}[side])
        else:
            columns.append(blendshapes[..., BLENDSHAPE_INDEX[name]])
    return np.stack(columns, axis=-1)


@dataclass(frozen=True)
class AUCurve:
    """One AU's mapping: weighted sum of its source blendshapes, then a monotone piecewise-linear curve."""

    sources: tuple[str, ...]
    weights: np.ndarray
    knots_x: np.ndarray
    knots_y: np.ndarray

    def __call__(self, blendshapes: np.ndarray, side: str | None = None) -> np.ndarray:
        score = source_values(blendshapes, self.sources, side) @ self.weights
        return np.interp(score, self.knots_x, self.knots_y)


@cache
def load_mapping(path: Path = MAPPING_PATH) -> dict[str, AUCurve]:
    data = json.loads(path.read_text())
    return {
        au: AUCurve(
            tuple(AU_SOURCES[au]),
            np.asarray(data["aus"][au]["weights"], dtype=np.float32),
            np.asarray(data["aus"][au]["knots_x"], dtype=np.float32),
            np.asarray(data["aus"][au]["knots_y"], dtype=np.float32),
        )
        for au in AU_NAMES
    }


def blendshapes_to_aus(blendshapes: np.ndarray) -> np.ndarray:
    """AU intensities (0-5) for blendshape rows (..., 52), in AU_NAMES order."""
    mapping = load_mapping()
    return np.stack([mapping[au](blendshapes) for au in AU_NAMES], axis=-1).astype(np.float32)


def lateral_aus(blendshapes: np.ndarray) -> dict[str, np.ndarray]:
    """Per-side intensities of the lateral AUs, keyed like ``AU45_L`` (the subject's left)."""
    mapping = load_mapping()
    return {f"{au}_{side}": mapping[au](blendshapes, side) for au in LATERAL_AUS for side in SIDES}


def parse_au_name(text: str) -> str:
    """Normalise 'au12', 'AU12', '12' or 'AU12_r' to 'AU12'; AUError (a ValueError) for unknown AUs."""
    raw = text.strip().upper().removesuffix("_R").removeprefix("AU")
    name = f"AU{int(raw):02d}" if raw.isdigit() else f"AU{raw}"
    if name not in AU_NAMES:
        raise AUError(f"unknown AU {text!r}; known: {', '.join(AU_NAMES)}")
    return name


CSV_COLUMNS: tuple[str, ...] = (
    "frame", "timestamp", "confidence", "success",
    *(f"{au}_r" for au in AU_NAMES),
    *(f"{au}_{side}_r" for au in LATERAL_AUS for side in SIDES),
    "pose_Rx", "pose_Ry", "pose_Rz",
)  # fmt: skip


class AUCsvWriter:
    """Writes OpenFace-style AU rows to a text stream, one per frame (frames are 1-based, as OpenFace's)."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(CSV_COLUMNS)

    def write(self, index: int, timestamp: float, blendshapes: np.ndarray | None, pose_deg=None) -> None:
        if blendshapes is None:
            # OpenFace writes failed frames as success 0 with zeros; readers drop them by that flag.
            self._writer.writerow([index + 1, f"{timestamp:.3f}", "0.00", 0, *["0.00"] * (len(CSV_COLUMNS) - 4)])
            return
        aus = blendshapes_to_aus(blendshapes)
        sides = lateral_aus(blendshapes)
        values = [*aus, *(sides[f"{au}_{s}"] for au in LATERAL_AUS for s in SIDES)]
        pose = [np.radians(a) for a in (pose_deg or (0.0, 0.0, 0.0))]
        self._writer.writerow(
            [index + 1, f"{timestamp:.3f}", "1.00", 1, *(f"{float(v):.2f}" for v in values), *(f"{p:.3f}" for p in pose)]
        )
