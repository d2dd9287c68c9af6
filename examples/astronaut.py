"""Write scikit-image's astronaut (public domain) as a still image and a short clip, to try reenact on.

Usage: python examples/astronaut.py [OUT_DIR]   (needs scikit-image: pip install scikit-image)
Then:  reenact au OUT_DIR/astronaut.png -o aus.csv
       reenact track OUT_DIR/astronaut.mp4 -o tracked.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from synthetic_clip import write_synthetic_clip  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
out.mkdir(parents=True, exist_ok=True)
cv2.imwrite(str(out / "astronaut.png"), skimage.data.astronaut()[:, :, ::-1])
write_synthetic_clip(out / "astronaut.mp4", seconds=5, size=(640, 480))
print(f"wrote {out / 'astronaut.png'} and {out / 'astronaut.mp4'}")
