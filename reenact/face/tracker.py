"""Face tracking with MediaPipe's FaceLandmarker: 478 landmarks, 52 blendshapes and head pose per frame."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from reenact.face.model_file import resolve_face_landmarker

# MediaPipe's blendshape order (the model's output index order; ARKit names).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)  # fmt: skip
BLENDSHAPE_INDEX = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}

FaceChoice = Literal["largest"] | int


@dataclass(frozen=True)
class FaceObservation:
    """One tracked face in one frame."""

    landmarks: np.ndarray  # (478, 3) float32: x, y in pixels; z in pixels relative to the face (MediaPipe scale)
    blendshapes: np.ndarray  # (52,) float32 in [0, 1], order BLENDSHAPE_NAMES
    pose: np.ndarray  # (4, 4) float32 facial transformation matrix (canonical face -> camera space)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 pixels: the landmarks' bounding box

    @property
    def xy(self) -> np.ndarray:
        return self.landmarks[:, :2]

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    def head_pose_degrees(self) -> tuple[float, float, float]:
        """Pitch, yaw and roll of the head in degrees (R = Rx(pitch) Ry(yaw) Rz(roll), as OpenFace reports)."""
        r = self.pose[:3, :3] / np.linalg.norm(self.pose[:3, 0])
        yaw = math.asin(float(np.clip(r[0, 2], -1.0, 1.0)))
        pitch = math.atan2(-float(r[1, 2]), float(r[2, 2]))
        roll = math.atan2(-float(r[0, 1]), float(r[0, 0]))
        return math.degrees(pitch), math.degrees(yaw), math.degrees(roll)


class FaceTracker:
    """MediaPipe FaceLandmarker in video mode, following one chosen face through a clip.

    ``face="largest"`` picks the largest face; an integer picks the n-th face from the left (0-based). Once chosen,
    the face is followed by position from frame to frame, so a second face walking in does not steal the track.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        face: FaceChoice = "largest",
        max_faces: int | None = None,
        min_confidence: float = 0.5,
        video_mode: bool = True,
    ) -> None:
        # Imported here so that importing reenact stays quick for commands that never track.
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

        if face != "largest" and (not isinstance(face, int) or face < 0):
            raise ValueError(f"face must be 'largest' or a face index >= 0, not {face!r}")
        self.face = face
        num_faces = max_faces or (2 if face == "largest" else face + 2)
        options = FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(resolve_face_landmarker(model_path))),
            running_mode=RunningMode.VIDEO if video_mode else RunningMode.IMAGE,
            num_faces=num_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with _native_stderr_silenced():
            self._landmarker = FaceLandmarker.create_from_options(options)
        self._video_mode = video_mode
        self._last_ms = -1
        self._last_centre: tuple[float, float] | None = None
        self._last_size = 0.0

    def __call__(self, image: np.ndarray, t: float) -> FaceObservation | None:
        """Track faces in an RGB uint8 image shown at time ``t`` seconds; return the chosen face or None."""
        import mediapipe as mp

        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        if self._video_mode:
            # Video mode needs strictly increasing integer milliseconds, even for repeated or sub-ms timestamps.
            ms = max(int(round(t * 1000.0)), self._last_ms + 1)
            self._last_ms = ms
            result = self._landmarker.detect_for_video(mp_image, ms)
        else:
            result = self._landmarker.detect(mp_image)
        h, w = image.shape[:2]
        faces = [
            _observation(result, i, w, h) for i in range(len(result.face_landmarks))
        ]
        chosen = self._choose(faces)
        if chosen is None:
            self._last_centre = None
        else:
            self._last_centre, self._last_size = chosen.centre, math.sqrt(chosen.area)
        return chosen

    def _choose(self, faces: list[FaceObservation]) -> FaceObservation | None:
        if not faces:
            return None
        if self._last_centre is not None:
            # Follow the face we had: the nearest one, if it is within a face size of where it was.
            cx, cy = self._last_centre
            nearest = min(faces, key=lambda f: math.dist(f.centre, (cx, cy)))
            if math.dist(nearest.centre, (cx, cy)) < self._last_size:
                return nearest
        if self.face == "largest":
            return max(faces, key=lambda f: f.area)
        by_x = sorted(faces, key=lambda f: f.centre[0])
        return by_x[self.face] if self.face < len(by_x) else None

    def close(self) -> None:
        self._landmarker.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _observation(result: object, i: int, width: int, height: int) -> FaceObservation:
    points = result.face_landmarks[i]  # type: ignore[attr-defined]
    landmarks = np.array([(p.x * width, p.y * height, p.z * width) for p in points], dtype=np.float32)
    blendshapes = np.array([c.score for c in result.face_blendshapes[i]], dtype=np.float32)  # type: ignore[attr-defined]
    pose = np.asarray(result.facial_transformation_matrixes[i], dtype=np.float32)  # type: ignore[attr-defined]
    x0, y0 = landmarks[:, :2].min(axis=0)
    x1, y1 = landmarks[:, :2].max(axis=0)
    return FaceObservation(landmarks, blendshapes, pose, (float(x0), float(y0), float(x1), float(y1)))


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Hide what MediaPipe's C++ prints while it builds its graph (setup chatter that no option turns off).

    Only used around the landmarker's creation, before any progress bar runs; errors still arrive as exceptions.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
