"""The README's face-memory picture: a GRID speaker (CC BY 4.0), source | paint | memory, for three edits.

Each edit runs `reenact edit` on the whole clip twice, with `--no-memory` (what a warp cannot show is painted) and
with the face memory (the speaker's own mouth and lids from elsewhere in the clip); one frame where his mouth is
closed is shown, cropped to the face.
Usage: python examples/memory_grid.py CLIP [OUT.jpg]
       (e.g. CLIP ../shared/data/train/grid_s1/bbaf2n.mp4; default OUT examples/memory_grid.jpg)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from reenact.api import GeneratorOptions, edit_expression
from reenact.editing import AUEdit, ExpressionTarget
from reenact.face.tracker import FaceTracker
from reenact.memory import opening
from reenact.model.networks import MOUTH
from reenact.video import VideoReader

EDITS = [("AU26 +2", ExpressionTarget((AUEdit("AU26", 2.0, True),))), ("surprised", ExpressionTarget(preset="surprised")),
         ("AU45 +3", ExpressionTarget((AUEdit("AU45", 3.0, True),)))]
TILE = 200


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    clip = Path(sys.argv[1])
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "examples/memory_grid.jpg")
    source = [f.image for f in VideoReader(clip)]
    with FaceTracker(video_mode=False) as tracker:
        faces = [tracker(image, 0.0) for image in source]
    closed = min((i for i, f in enumerate(faces) if f is not None), key=lambda i: opening(faces[i].xy, MOUTH))
    x0, y0, x1, y1 = faces[closed].box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * (y1 - y0), 0.62 * max(x1 - x0, y1 - y0)
    box = np.s_[max(int(cy - half), 0):int(cy + half), max(int(cx - half), 0):int(cx + half)]

    def tile(image: np.ndarray, label: str) -> np.ndarray:
        picture = cv2.resize(np.ascontiguousarray(image[box]), (TILE, TILE), interpolation=cv2.INTER_AREA)
        picture = np.concatenate([np.full((24, TILE, 3), 255, np.uint8), picture])
        cv2.putText(picture, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        return picture

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, target in EDITS:
            row = [tile(source[closed], "source")]
            for label, memory in (("paint", False), ("memory", True)):
                edited = Path(tmp) / f"{label}.mp4"
                edit_expression(clip, edited, target, GeneratorOptions(memory=memory))
                frames = [f.image for f in VideoReader(edited)]
                row.append(tile(frames[closed], f"{name}: {label}"))
            rows.append(np.concatenate(row, axis=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate(rows)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {out} (frame {closed})")


if __name__ == "__main__":
    main()
