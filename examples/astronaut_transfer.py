"""The README's transfer strip: a GRID speaker (CC BY 4.0) driving scikit-image's astronaut (public domain).

`reenact transfer` with its defaults (the driving face's own landmark motion, retargeted to her face); the top
row is the driving clip, the bottom row the astronaut at the same moments.
Usage: python examples/astronaut_transfer.py DRIVING.mp4 [OUT.jpg] [--motion aus]
       (default examples/astronaut_transfer.jpg; e.g. DRIVING ../shared/data/train/grid_s1/bbaf2n.mp4)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from reenact.api import transfer_expression
from reenact.face.tracker import FaceTracker
from reenact.video import VideoReader

MOMENTS = 6


def face_box(image: np.ndarray, tracker: FaceTracker) -> tuple[slice, slice]:
    x0, y0, x1, y1 = tracker(image, 0.0).box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * max(x1 - x0, y1 - y0)
    return slice(max(int(cy - half), 0), int(cy + half)), slice(max(int(cx - half), 0), int(cx + half))


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--motion" and a != "aus"]
    motion = "aus" if "--motion" in sys.argv else "landmarks"
    if not args:
        raise SystemExit(__doc__)
    driving = Path(args[0])
    out = Path(args[1] if len(args) > 1 else "examples/astronaut_transfer.jpg")
    image = skimage.data.astronaut()
    with tempfile.TemporaryDirectory() as tmp:
        still, result = Path(tmp) / "astronaut.png", Path(tmp) / "out.mp4"
        cv2.imwrite(str(still), image[:, :, ::-1])
        transfer_expression(still, driving, result, motion=motion)
        with VideoReader(driving) as a, VideoReader(result) as b:
            pairs = [(fa.image, fb.image) for fa, fb in zip(a, b)]
    picks = np.linspace(0, len(pairs) - 1, MOMENTS + 2)[1:-1].astype(int)
    with FaceTracker(video_mode=False) as tracker:
        boxes = face_box(pairs[0][0], tracker), face_box(image, tracker)
    rows = [np.concatenate([cv2.resize(np.ascontiguousarray(pairs[i][k][boxes[k]]), (160, 160),
                                       interpolation=cv2.INTER_AREA) for i in picks], axis=1) for k in (0, 1)]
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate(rows)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
