"""The README's clip: a GRID speaker (CC BY 4.0) before and after `reenact edit`, side by side, as a small GIF.

Runs `reenact edit CLIP -o TMP/edit.mp4 EDIT...` (default EDIT: --preset surprised), then crops both videos to the
face (a fixed box from the first frame), labels them "source" and the edit, and writes every second frame as a
looping GIF (12.5 fps).
Usage: python examples/before_after.py CLIP [OUT.gif] [-- EDIT...]
       (e.g. CLIP ../shared/data/train/grid_s1/bbaf2n.mp4; default OUT examples/before_after.gif)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from reenact.face.tracker import FaceTracker
from reenact.video import VideoReader

TILE = 224  # side of each panel in pixels
LABEL = 22  # height of the label strip above each panel
STEP = 2  # keep every STEP-th frame
COLOURS = 96  # GIF palette size: fewer colours, a smaller file
NOISE = 12  # a pixel changing less than this (0-255, any channel) keeps its last value


def face_box(image: np.ndarray) -> tuple[slice, slice]:
    """A square around the face of the first frame, with room for the brows and the chin."""
    with FaceTracker(video_mode=False) as tracker:
        face = tracker(image, 0.0)
    if face is None:
        raise SystemExit("no face in the clip's first frame")
    x0, y0, x1, y1 = face.box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * (y1 - y0), 0.7 * max(x1 - x0, y1 - y0)
    top, left = max(int(cy - half), 0), max(int(cx - half), 0)
    return slice(top, int(cy + half)), slice(left, int(cx + half))


def panel(image: np.ndarray, box: tuple[slice, slice], label: str) -> np.ndarray:
    picture = cv2.resize(np.ascontiguousarray(image[box]), (TILE, TILE), interpolation=cv2.INTER_AREA)
    strip = np.full((LABEL, TILE, 3), 255, np.uint8)
    cv2.putText(strip, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, picture])


def gif_frames(frames: list[np.ndarray]) -> list[Image.Image]:
    """Palette images for a small GIF: one palette for the whole clip, no dithering, and a pixel that changed by
    less than the video's noise keeps its last value, so the GIF stores little more than the moving face."""
    palette = Image.fromarray(np.concatenate(frames[:: max(len(frames) // 8, 1)])).quantize(COLOURS)
    shown = frames[0].astype(np.int16)
    images = []
    for frame in frames:
        moved = np.abs(frame.astype(np.int16) - shown).max(axis=2) > NOISE
        shown[moved] = frame[moved]
        images.append(Image.fromarray(shown.astype(np.uint8)).quantize(palette=palette, dither=Image.Dither.NONE))
    return images


def main() -> None:
    args = sys.argv[1:]
    edit = args[args.index("--") + 1:] if "--" in args else ["--preset", "surprised"]
    paths = args[: args.index("--")] if "--" in args else args
    if not paths:
        raise SystemExit(__doc__)
    clip = Path(paths[0])
    out = Path(paths[1] if len(paths) > 1 else "examples/before_after.gif")
    with tempfile.TemporaryDirectory() as tmp:
        edited = Path(tmp) / "edit.mp4"
        subprocess.run([sys.executable, "-m", "reenact", "edit", str(clip), "-o", str(edited), "--quiet", *edit],
                       check=True)
        source = [f.image for f in VideoReader(clip)]
        result = [f.image for f in VideoReader(edited)]
    box = face_box(source[0])
    label = "reenact edit " + " ".join(edit)
    frames = [np.concatenate([panel(a, box, "source"), panel(b, box, label)], axis=1)
              for a, b in zip(source[::STEP], result[::STEP])]
    images = gif_frames(frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(out, save_all=True, append_images=images[1:], duration=40 * STEP, loop=0, optimize=True)
    print(f"wrote {out}: {len(images)} frames, {out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
