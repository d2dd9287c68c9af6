"""Face tracking with MediaPipe's FaceLandmarker: 478 landmarks, 52 blendshapes and head pose per frame."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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

SMALLEST_FACE = 40  # px: the narrowest face looked for by looking closer, where the whole frame shows none
# MediaPipe's face detector (short range: faces near the camera) finds faces down to about this share of the longer
# side of the picture it is given: 230 px in a 1920x1080 frame. Measured on the astronaut: 0.11 of a 96 to 1024 px
# square found, 0.10 not.
_DETECTABLE = 0.12
_TILE_SHARE = 0.15  # the search's smallest tiles: the smallest face looked for is this share of a tile (a margin)
_CROP_FACES = 4.0  # a face found by looking closer is looked for next in a square this many face widths wide
_TILES_PER_FRAME = 6  # video: after the first search, a search looks at this many tiles per frame, in turn
# The search's detector score to accept a face: tiles give a detector many more places to see a face where there is
# none. Measured (best score over 1920x1080 tiles): the astronaut's face 40-48 px wide 0.90-0.96, a GRID speaker's
# 50 px 0.96; faceless pictures (scikit-image's cat, rocket, coins, page, coffee, gravel, cells) 0.49-0.68.
_SEARCH_CONFIDENCE = 0.8


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

    def reaches(self, centre: tuple[float, float]) -> bool:
        """Whether a face centred at ``centre`` is this one moved on (or seen again): within this face's size of it.
        The one rule for following a face: from frame to frame, across the first pass's segments, across tiles."""
        return math.dist(self.centre, centre) < math.sqrt(self.area)

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

    Where MediaPipe finds no face in the whole frame (its detector sees faces near the camera: about an eighth of
    the frame and up), the tracker looks closer: first around the face it last had, then over overlapping tiles
    small enough that faces down to ``min_face`` pixels wide are found (``search_tiles``), and maps what it finds
    back to the frame. The search takes only faces the detector is sure of (many tiles give it many chances to see
    a face in a pattern), then the landmarks from a crop centred on each. In video mode the first such search covers the frame at once and later ones a few tiles per
    frame, so a frame without a face costs a bounded extra; a frame whose face MediaPipe finds costs nothing more.
    ``min_face=None``: MediaPipe's own pass only.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        face: FaceChoice = "largest",
        max_faces: int | None = None,
        min_confidence: float = 0.5,
        video_mode: bool = True,
        min_face: int | None = SMALLEST_FACE,
    ) -> None:
        # Imported here so that importing reenact stays quick for commands that never track.
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

        if face != "largest" and (not isinstance(face, int) or face < 0):
            raise ValueError(f"face must be 'largest' or a face index >= 0, not {face!r}")
        if min_face is not None and min_face < 1:
            raise ValueError(f"min_face must be a width in pixels >= 1 or None, not {min_face!r}")
        self.face = face
        self.min_face = min_face
        num_faces = max_faces or (2 if face == "largest" else face + 2)

        bundle = resolve_face_landmarker(model_path)

        def options(mode: RunningMode) -> FaceLandmarkerOptions:
            return FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(bundle)),
                running_mode=mode,
                num_faces=num_faces,
                min_face_detection_confidence=min_confidence,
                min_face_presence_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )

        def create(mode: RunningMode) -> FaceLandmarker:
            with _native_stderr_silenced():
                return FaceLandmarker.create_from_options(options(mode))

        self._landmarker = create(RunningMode.VIDEO if video_mode else RunningMode.IMAGE)
        # Looking closer runs the landmarker on crops, one picture at a time (in image mode the same landmarker, in
        # video mode a second one in image mode), and the bundle's face detector on the search's tiles; both are
        # made the first time they are needed.
        self._new_closer = lambda: create(RunningMode.IMAGE)
        self._closer = None if video_mode else self._landmarker
        self._bundle = bundle
        self._detector = None
        self._video_mode = video_mode
        self._last_ms = -1
        self._last: FaceObservation | None = None  # the face chosen in the frame before, to follow
        self._tiles: list[Box] = []
        self._tiles_for: tuple[int, int] | None = None
        self._next_tile = 0
        self._searched = False

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
        if not faces and self.min_face is not None:
            faces = self._look_closer(image)
        self._last = self._choose(faces)
        return self._last

    def _look_closer(self, image: np.ndarray) -> list[FaceObservation]:
        """The faces MediaPipe's whole-frame pass missed: around the face last had, else from the tiles' search."""
        h, w = image.shape[:2]
        if self._last is not None:
            region = around(self._last.box, w, h)
            faces = [] if region == (0, 0, w, h) else self._look_in(image, region)  # (the whole frame was looked at)
            if faces:
                return faces
        return self._search(image)

    def _search(self, image: np.ndarray) -> list[FaceObservation]:
        h, w = image.shape[:2]
        if self._tiles_for != (w, h):
            assert self.min_face is not None
            self._tiles, self._tiles_for, self._next_tile = search_tiles(w, h, self.min_face), (w, h), 0
        if not self._tiles:
            return []
        if self._video_mode and self._searched:
            start, n = self._next_tile, len(self._tiles)
            tiles = [self._tiles[(start + i) % n] for i in range(min(_TILES_PER_FRAME, n))]
            self._next_tile = (start + len(tiles)) % n
        else:
            tiles = self._tiles
        self._searched = True
        found = sorted((box for tile in tiles for box in self._detect_in(image, tile)), key=lambda b: -b[0])
        # A face seen in several overlapping tiles is one face. Its landmarks come from the landmarker on a crop
        # centred on it (as it will be followed), so they do not depend on where a tile's edge cut it.
        faces: list[FaceObservation] = []
        for _, box in found:
            centre, size = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), box[2] - box[0]
            if any(face.reaches(centre) for face in faces):
                continue
            near = min(self._look_in(image, around(box, w, h)), key=lambda f: math.dist(f.centre, centre), default=None)
            if near is not None and math.dist(near.centre, centre) < 0.5 * size:
                faces.append(near)
        return faces

    def _detect_in(self, image: np.ndarray, region: Box) -> list[tuple[float, tuple[float, float, float, float]]]:
        """(score, box in the image's pixels) of each face the detector is sure of in ``region`` of ``image``."""
        import mediapipe as mp

        if self._detector is None:
            self._detector = _face_detector(self._bundle)
        x0, y0, x1, y1 = region
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        found = []
        for detection in self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop)).detections:
            b = detection.bounding_box
            box = (x0 + b.origin_x, y0 + b.origin_y, x0 + b.origin_x + b.width, y0 + b.origin_y + b.height)
            found.append((detection.categories[0].score, box))
        return found

    def _look_in(self, image: np.ndarray, region: Box) -> list[FaceObservation]:
        """The faces in ``region`` (x0, y0, x1, y1) of ``image``, in the whole image's pixels."""
        import mediapipe as mp

        if self._closer is None:
            self._closer = self._new_closer()
        x0, y0, x1, y1 = region
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        result = self._closer.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
        return [_observation(result, i, x1 - x0, y1 - y0, (x0, y0)) for i in range(len(result.face_landmarks))]

    def _choose(self, faces: list[FaceObservation]) -> FaceObservation | None:
        if not faces:
            return None
        if self._last is not None:
            # Follow the face we had: the nearest one, if it is that face moved on.
            nearest = min(faces, key=lambda f: math.dist(f.centre, self._last.centre))
            if self._last.reaches(nearest.centre):
                return nearest
        if self.face == "largest":
            return max(faces, key=lambda f: f.area)
        by_x = sorted(faces, key=lambda f: f.centre[0])
        return by_x[self.face] if self.face < len(by_x) else None

    def follow(self, face: FaceObservation) -> None:
        """Go on following ``face`` (seen just before this tracker's first frame) instead of choosing afresh."""
        self._last = face  # a small face is looked for around it, as within one tracker

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
        if self._closer is not None and self._closer is not self._landmarker:
            self._closer.close()
        self._landmarker.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 pixels of a frame


def _face_detector(bundle: Path) -> object:
    """MediaPipe's face detector from the landmarker's own bundle, in image mode, keeping what it is sure of."""
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import FaceDetector, FaceDetectorOptions, RunningMode

    with zipfile.ZipFile(bundle) as archive:
        model = archive.read("face_detector.tflite")
    options = FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=model), running_mode=RunningMode.IMAGE,
                                  min_detection_confidence=_SEARCH_CONFIDENCE)
    with _native_stderr_silenced():
        return FaceDetector.create_from_options(options)


def smallest_face(width: int, height: int, min_face: int | None = SMALLEST_FACE) -> int:
    """The narrowest face, in pixels, a ``FaceTracker(min_face=min_face)`` looks for in a width x height frame:
    ``min_face``, or less where MediaPipe's pass over the whole frame already finds smaller faces."""
    whole_frame = math.ceil(_DETECTABLE * max(width, height))
    return whole_frame if min_face is None else min(min_face, whole_frame)


def search_tiles(width: int, height: int, min_face: int = SMALLEST_FACE) -> list[Box]:
    """The tiles looked at for faces the whole frame's pass misses, largest first: squares from ``min_face`` /
    0.15 pixels, doubling while the whole frame's pass does not already find their faces, each size at half-tile
    steps (so any face up to a third of a tile lies whole in one of them). None where the frame is small enough that
    the whole-frame pass finds faces down to ``min_face``."""
    tiles: list[Box] = []
    side = min_face / _TILE_SHARE
    while side * _TILE_SHARE < _DETECTABLE * max(width, height):
        xs, tile_w = _steps(width, side)
        ys, tile_h = _steps(height, side)
        tiles[:0] = [(x, y, x + tile_w, y + tile_h) for y in ys for x in xs]
        side *= 2
    return tiles


def _steps(length: int, side: float) -> tuple[list[int], int]:
    """Where tiles of ``side`` start along ``length``, at most half a tile apart, the last ending at the edge."""
    if side >= 0.8 * length:
        return [0], length
    size = round(side)
    n = math.ceil((length - size) / (size / 2)) + 1
    return [round(i * (length - size) / (n - 1)) for i in range(n)], size


def around(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    """A square about ``box``'s centre, ``_CROP_FACES`` times its larger side, moved (and cut) to fit the frame."""
    x0, y0, x1, y1 = box
    side = _CROP_FACES * max(x1 - x0, y1 - y0)
    w, h = min(width, max(1, round(side))), min(height, max(1, round(side)))
    left = int(np.clip(round((x0 + x1 - w) / 2), 0, width - w))
    top = int(np.clip(round((y0 + y1 - h) / 2), 0, height - h))
    return left, top, left + w, top + h


def _observation(result: object, i: int, width: int, height: int,
                 offset: tuple[int, int] = (0, 0)) -> FaceObservation:
    """Face ``i`` of a landmarker result on a width x height picture whose top-left lies at ``offset`` in the frame."""
    points = result.face_landmarks[i]  # type: ignore[attr-defined]
    dx, dy = offset
    landmarks = np.array([(dx + p.x * width, dy + p.y * height, p.z * width) for p in points], dtype=np.float32)
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
