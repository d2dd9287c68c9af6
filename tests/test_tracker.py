"""Face tracking with the real MediaPipe FaceLandmarker on real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from reenact.face.tracker import BLENDSHAPE_INDEX, BLENDSHAPE_NAMES, FaceTracker

pytestmark = pytest.mark.usefixtures("require_face_model")


def two_faces(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut's head at full size on the right and at 5/6 size on the left, on a grey canvas."""
    head = astronaut[20:260, 110:350]
    canvas = np.full((360, 640, 3), 128, np.uint8)
    canvas[60:300, 360:600] = head
    canvas[80:280, 40:240] = cv2.resize(head, (200, 200), interpolation=cv2.INTER_AREA)
    return canvas


def test_landmarks_blendshapes_and_pose_on_the_astronaut(astronaut: np.ndarray) -> None:
    with FaceTracker() as tracker:
        face = tracker(astronaut, 0.0)
    assert face is not None
    assert face.landmarks.shape == (478, 3) and face.blendshapes.shape == (len(BLENDSHAPE_NAMES),)
    x0, y0, x1, y1 = face.box
    # Her face lies in the upper middle of the picture, about 90 px wide.
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200 and x1 - x0 > 60
    smile = face.blendshapes[[BLENDSHAPE_INDEX["mouthSmileLeft"], BLENDSHAPE_INDEX["mouthSmileRight"]]]
    assert smile.min() > 0.5  # she smiles broadly
    pitch, yaw, roll = face.head_pose_degrees()
    assert abs(yaw) < 20 and abs(roll) < 20


def test_no_face_gives_none() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    with FaceTracker() as tracker:
        assert tracker(noise, 0.0) is None


def test_face_choice(astronaut: np.ndarray) -> None:
    image = two_faces(astronaut)
    with FaceTracker(face="largest") as tracker:
        largest = tracker(image, 0.0)
    with FaceTracker(face=0) as tracker:
        leftmost = tracker(image, 0.0)
    with FaceTracker(face=1) as tracker:
        second = tracker(image, 0.0)
    assert largest is not None and leftmost is not None and second is not None
    assert largest.centre[0] > 360 and second.centre[0] > 360  # the big face is on the right
    assert leftmost.centre[0] < 240 and leftmost.area < largest.area * 0.85
    with FaceTracker(face=2) as tracker:
        assert tracker(image, 0.0) is None  # there is no third face


def test_the_chosen_face_is_followed_not_swapped(astronaut: np.ndarray) -> None:
    """With 'largest', a larger face appearing later does not steal the track from the face being followed."""
    small_only = two_faces(astronaut)
    small_only[:, 300:] = 128
    with FaceTracker(face="largest") as tracker:
        first = tracker(small_only, 0.0)
        then = tracker(two_faces(astronaut), 0.04)
    assert first is not None and then is not None
    assert then.centre[0] < 240


def test_repeated_timestamps_are_accepted(astronaut: np.ndarray) -> None:
    # Video mode needs increasing timestamps; VFR clips can repeat a millisecond.
    with FaceTracker() as tracker:
        assert all(tracker(astronaut, 1.0) is not None for _ in range(3))
