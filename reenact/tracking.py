"""How faces are found and cropped: the options, checked when made (light to import: MediaPipe loads when a
tracker is made)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from reenact.errors import OptionError

FaceChoice = Literal["largest"] | int
CROP_SIZES = (64, 1024)  # the aligned crop's side in pixels, smallest and largest


def face_choice(text: str | int) -> FaceChoice:
    """'largest' or a face index (0 = leftmost), as given on the command line or in Python; OptionError otherwise."""
    if text == "largest":
        return "largest"
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    if isinstance(text, str) and text.isdigit():
        return int(text)
    raise OptionError(f"--face takes 'largest' or a face index (0 = leftmost), not {text!r}")


def check_crop_size(size: int) -> int:
    low, high = CROP_SIZES
    if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
        raise OptionError(f"--crop-size must be a whole number of pixels from {low} to {high}, not {size!r}")
    return size


@dataclass(frozen=True)
class TrackingOptions:
    """How faces are found and cropped."""

    face_model: str | os.PathLike[str] | None = None  # face_landmarker.task; None: $REENACT_FACE_LANDMARKER, cache, download
    face: FaceChoice = "largest"  # 'largest' or the n-th face from the left
    crop_size: int = 256  # aligned crop side in pixels (64 to 1024)

    def __post_init__(self) -> None:
        object.__setattr__(self, "face", face_choice(self.face))
        check_crop_size(self.crop_size)
