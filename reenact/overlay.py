"""Drawing what the tool sees onto a frame: landmarks, the aligned crop's outline and live AU bars."""

from __future__ import annotations

import cv2
import numpy as np

from reenact.face.aus import AU_NAMES

LANDMARK_COLOUR = (0, 255, 128)
BOX_COLOUR = (255, 200, 0)
BAR_COLOUR = (255, 90, 60)
TEXT_COLOUR = (255, 255, 255)


def draw_landmarks(image: np.ndarray, xy: np.ndarray) -> None:
    radius = max(1, round(min(image.shape[:2]) / 400))
    for x, y in np.round(xy).astype(int):
        cv2.circle(image, (int(x), int(y)), radius, LANDMARK_COLOUR, -1, cv2.LINE_AA)


def draw_crop_outline(image: np.ndarray, corners: np.ndarray) -> None:
    """Outline the crop: ``corners`` are its four corners in frame pixels, in order."""
    thickness = max(1, round(min(image.shape[:2]) / 300))
    cv2.polylines(image, [np.round(corners).astype(np.int32)], True, BOX_COLOUR, thickness, cv2.LINE_AA)


def draw_au_bars(image: np.ndarray, aus: np.ndarray | None, max_value: float = 5.0) -> None:
    """A panel of horizontal bars, one per AU, at the frame's top-left; 'no face' when ``aus`` is None."""
    h, w = image.shape[:2]
    row = max(8, h // (len(AU_NAMES) + 6))
    scale = row / 30
    label_w = int(70 * scale)
    bar_w = max(20, min(w // 4, int(150 * scale)))
    panel = image[: row * len(AU_NAMES) + row // 2, : label_w + bar_w + row]
    panel[:] = (panel * 0.45).astype(np.uint8)  # darken so bars read on any background
    for i, name in enumerate(AU_NAMES):
        y = row * i + row // 4
        cv2.putText(image, name, (row // 4, y + int(row * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, TEXT_COLOUR, 1, cv2.LINE_AA)
        if aus is None:
            continue
        length = int(bar_w * float(np.clip(aus[i] / max_value, 0.0, 1.0)))
        cv2.rectangle(image, (label_w, y + row // 8), (label_w + length, y + row - row // 8), BAR_COLOUR, -1)
    if aus is None:
        cv2.putText(image, "no face", (label_w, row), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, TEXT_COLOUR, 1, cv2.LINE_AA)


def draw_hud(image: np.ndarray, fps: float, latency_ms: float, dropped: int, aus: np.ndarray | None,
             status: str) -> np.ndarray:
    """Live mode's heads-up display on a copy of ``image``: AU bars at the top-left, fps, latency, drops and the
    edit's state along the bottom."""
    hud = image.copy()
    draw_au_bars(hud, aus)
    h = hud.shape[0]
    scale = max(0.4, h / 900)
    line = f"{fps:4.1f} fps  latency {latency_ms:4.0f} ms  dropped {dropped}  {status}"
    y = h - int(12 * scale)
    cv2.putText(hud, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(hud, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR, 1, cv2.LINE_AA)
    return hud
