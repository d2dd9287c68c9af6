"""The README's grid: scikit-image's astronaut (public domain) edited with every preset and single-AU edit.

Each cell is the face of the full-resolution 512x512 image after the same call `reenact edit` makes (the
generator, then paste-back), labelled with the edit and the AUs measured on the result by reenact's own reader.
Usage: python examples/astronaut_grid.py [OUT.jpg]   (default examples/astronaut_grid.jpg; needs scikit-image)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from reenact.api import GeneratorOptions, edit_expression
from reenact.editing import AUEdit, ExpressionTarget
from reenact.face.aus import AU_NAMES, blendshapes_to_aus
from reenact.face.tracker import FaceTracker
from reenact.model.presets import PRESETS
from reenact.video import VideoReader

EDITS: list[tuple[str, ExpressionTarget]] = [
    ("AU12 -2", ExpressionTarget((AUEdit("AU12", -2.0, True),))),
    ("AU26 +2", ExpressionTarget((AUEdit("AU26", 2.0, True),))),
    ("AU01+02 +2", ExpressionTarget((AUEdit("AU01", 2.0, True), AUEdit("AU02", 2.0, True)))),
    ("AU04 +2", ExpressionTarget((AUEdit("AU04", 2.0, True),))),
    ("AU45 +3", ExpressionTarget((AUEdit("AU45", 3.0, True),))),
] + [(name, ExpressionTarget(preset=name)) for name in PRESETS]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/astronaut_grid.jpg")
    out.parent.mkdir(parents=True, exist_ok=True)
    image = skimage.data.astronaut()
    cells: list[tuple[str, np.ndarray]] = [("source", image)]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "astronaut.png"
        cv2.imwrite(str(source), image[:, :, ::-1])
        generator = GeneratorOptions(device="cpu")
        for i, (name, target) in enumerate(EDITS):
            edited = Path(tmp) / f"{i}.png"
            edit_expression(source, edited, target, generator)
            with VideoReader(edited) as reader:
                cells.append((name, next(iter(reader)).image))
    with FaceTracker(video_mode=False) as tracker:
        face = tracker(image, 0.0)
        x0, y0, x1, y1 = face.box
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * max(x1 - x0, y1 - y0)
        box = np.s_[int(cy - half):int(cy + half), int(cx - half):int(cx + half)]
        tiles = []
        for name, picture in cells:
            found = tracker(picture, 0.0)
            aus = blendshapes_to_aus(found.blendshapes) if found is not None else np.zeros(len(AU_NAMES))
            strongest = sorted(zip(AU_NAMES, aus), key=lambda p: -p[1])[:3]
            tile = cv2.resize(np.ascontiguousarray(picture[box]), (200, 200), interpolation=cv2.INTER_AREA)
            tile = np.concatenate([np.full((34, 200, 3), 255, np.uint8), tile])
            cv2.putText(tile, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            reading = " ".join(f"{a[2:]}:{v:.1f}" for a, v in strongest)
            cv2.putText(tile, reading, (4, 29), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (90, 90, 90), 1, cv2.LINE_AA)
            tiles.append(tile)
    columns = 7
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(out), np.concatenate(rows)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
