"""Small faces: a full-body portrait or a wide shot, where the face is a few dozen pixels in a large frame.

MediaPipe's face detector is made for faces near the camera (about an eighth of the picture and up); the tracker
looks closer where it finds none, and a still without a face is reported as an image, not as frames.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from reenact.api import analyze_aus, transfer_expression
from reenact.errors import NoFaceError
from reenact.face.tracker import SMALLEST_FACE, FaceTracker
from reenact.video import VideoReader

pytestmark = pytest.mark.usefixtures("require_face_model")

CANVAS = (1080, 1920)  # height, width: a full-HD frame


def background(size: tuple[int, int] = CANVAS, seed: int = 0) -> np.ndarray:
    """A mottled, faceless background: blurred noise."""
    noise = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 12)


def placed_small(picture: np.ndarray, scale: float, at: tuple[int, int], size: tuple[int, int] = CANVAS) -> np.ndarray:
    """``picture`` scaled by ``scale``, its top-left corner at ``at`` (x, y) on a background of ``size``."""
    small = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = background(size)
    x, y = at
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def test_a_small_face_in_a_large_still_is_found_where_it_was_placed(astronaut: np.ndarray) -> None:
    with FaceTracker(video_mode=False) as tracker:
        reference = tracker(astronaut, 0.0)
    assert reference is not None
    face_width = reference.box[2] - reference.box[0]
    scale, at = 48 / face_width, (1230, 610)  # her face about 48 px wide, right of centre, low in the frame
    image = placed_small(astronaut, scale, at)
    for video_mode in (False, True):  # an image job, and a still driven along a clip's timeline
        with FaceTracker(video_mode=video_mode) as tracker:
            face = tracker(image, 0.0)
        assert face is not None, f"no face found (video_mode={video_mode})"
        expected = reference.xy * scale + np.array(at)
        error = np.linalg.norm(face.xy - expected, axis=1)
        assert np.median(error) < 1.0 and np.percentile(error, 95) < 2.0, (np.median(error), error.max())
        assert 40 < face.box[2] - face.box[0] < 56


def test_the_smallest_face_looked_for(astronaut: np.ndarray) -> None:
    with FaceTracker(video_mode=False) as tracker:
        reference = tracker(astronaut, 0.0)
        assert reference is not None
        face_width = reference.box[2] - reference.box[0]
        at_limit = tracker(placed_small(astronaut, SMALLEST_FACE / face_width, (300, 200)), 0.0)
        assert at_limit is not None
        assert abs((at_limit.box[2] - at_limit.box[0]) - SMALLEST_FACE) < 6


def test_no_face_is_made_up_in_a_large_faceless_frame() -> None:
    """Many tiles give the detector many chances to see a face in a pattern: in a page of print, a rocket on its
    pad and coins it scores up to 0.68, which a search as lenient as the whole-frame pass (0.5) took for faces."""
    pictures = [background(seed=3), skimage.data.page(), skimage.data.rocket(), skimage.data.coins()]
    with FaceTracker(video_mode=False) as tracker:
        for picture in pictures:
            rgb = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture
            assert tracker(cv2.resize(rgb, (CANVAS[1], CANVAS[0])), 0.0) is None


def write_small_face_clip(source: Path, out: Path, seconds: float = 2.0, scale: float = 0.5, empty: int = 10,
                          size: tuple[int, int] = (720, 1280), at: tuple[int, int] = (300, 400)) -> list[np.ndarray]:
    """A wide shot: ``empty`` frames of background, then ``source``'s first ``seconds`` scaled by ``scale`` with
    its top-left corner at ``at`` (x, y) in a ``size`` frame. Returns the landmarks of each of those frames of
    ``source``, moved as its picture was."""
    back = background(size, seed=5)
    expected = []
    with VideoReader(source) as reader, FaceTracker() as tracker, av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        pictures = [back] * empty
        for frame in reader:
            if frame.time >= seconds:
                break
            face = tracker(frame.image, frame.time)
            assert face is not None
            expected.append(face.xy * scale + np.array(at))
            small = cv2.resize(frame.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            canvas = back.copy()
            canvas[at[1]:at[1] + small.shape[0], at[0]:at[0] + small.shape[1]] = small
            pictures.append(canvas)
        for picture in pictures:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return expected


def test_a_small_face_is_found_and_followed_through_a_video(shared_data: Path, tmp_path: Path) -> None:
    """A GRID speaker at half size in a 1280x720 frame (face about 45 px wide), after 10 frames without her: found
    within a few frames of coming in (the search after the first frame looks at a few tiles a frame), then followed
    in every frame, where she is."""
    clip = tmp_path / "wide_shot.mp4"
    expected = write_small_face_clip(shared_data / "train" / "grid_s1" / "bbaf2n.mp4", clip)
    widths = [points[:, 0].max() - points[:, 0].min() for points in expected]
    assert len(expected) == 50 and max(widths) < 55
    with VideoReader(clip) as reader, FaceTracker() as tracker:
        faces = [tracker(frame.image, frame.time) for frame in reader]
    assert all(face is None for face in faces[:10])
    found = [i for i, face in enumerate(faces[10:]) if face is not None]
    assert found and found[0] <= 10 and found == list(range(found[0], 50)), found
    errors = [np.median(np.linalg.norm(faces[10 + i].xy - expected[i], axis=1)) for i in found]
    assert np.median(errors) < 1.5 and max(errors) < 3.0, (np.median(errors), max(errors))
    report = analyze_aus(clip, tmp_path / "aus.csv")  # the same through the API
    assert report.faces_found == len(found)


def test_a_still_without_a_face_is_reported_as_an_image(tmp_path: Path) -> None:
    still = tmp_path / "portrait.png"
    cv2.imwrite(str(still), background(seed=4))
    with pytest.raises(NoFaceError) as caught:
        analyze_aus(still, tmp_path / "aus.csv")
    message = str(caught.value)
    assert f"no face found in the image {still}" in message, message
    assert f"looked for faces down to {SMALLEST_FACE} px" in message and "frames" not in message


def test_a_still_source_without_a_face_is_not_counted_as_the_drivers_frames(shared_data: Path, tmp_path: Path) -> None:
    """A still animated along a driving clip is still one image to the user, not the clip's frame count."""
    still = tmp_path / "portrait.png"
    cv2.imwrite(str(still), background((480, 640), seed=6))
    with pytest.raises(NoFaceError) as caught:
        transfer_expression(still, shared_data / "train" / "grid_s1" / "bbaf2n.mp4", tmp_path / "out.mp4")
    message = str(caught.value)
    assert f"no face found in the image {still}" in message and "frames" not in message, message
