"""Shared fixtures: where the shared face data and the face landmarker model are, and scikit-image's astronaut.

Real face video comes from ``$REENACT_DATA`` (default ``../shared/data`` beside the repository). Where it is
absent, tests that need it skip with the reason, except under CI (``CI=true``), where absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_FACE_MODEL = REPO.parent / "shared" / "models" / "face_landmarker.task"


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared face-video folder (with train/MANIFEST.csv and train_aus/)."""
    path = Path(os.environ.get("REENACT_DATA", DEFAULT_DATA))
    if not (path / "train" / "MANIFEST.csv").is_file():
        _missing(f"shared face data at {path} (set REENACT_DATA)")
    return path


@pytest.fixture(scope="session", autouse=True)
def face_model() -> Path | None:
    """The FaceLandmarker bundle: $REENACT_FACE_LANDMARKER, else the shared copy, exported for the code under test."""
    path = Path(os.environ.get("REENACT_FACE_LANDMARKER", DEFAULT_FACE_MODEL))
    if path.is_file():
        os.environ["REENACT_FACE_LANDMARKER"] = str(path)
        return path
    return None


@pytest.fixture(scope="session")
def require_face_model(face_model: Path | None) -> Path:
    if face_model is None:
        _missing(f"the face landmarker model ({DEFAULT_FACE_MODEL} or $REENACT_FACE_LANDMARKER)")
    return face_model


@pytest.fixture(scope="session")
def require_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        _missing("ray (the test extra)")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut (public domain): a smiling face, 512x512 RGB."""
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, require_face_model: Path) -> Path:
    """Two people, each one clip with its OpenFace labels: a GRID speaker and a talking head with blinks, 128-pixel
    crops of every second frame."""
    from reenact.train.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("dataset")
    clips = [shared_data / "train" / name for name in ("grid_s1/bbaf2n.mp4", "video-retalking/3.mp4")]
    prepare_dataset(clips, out, crop_size=128, stride=2, labels_dir=shared_data / "train_aus",
                    manifest=shared_data / "train" / "MANIFEST.csv", progress=False)
    return out



def _cut_clip(source: Path, target: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``source`` (video only), timestamps kept."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        video = inp.streams.video[0]
        stream = out.add_stream("libx264", rate=video.average_rate)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        for i, frame in enumerate(inp.decode(video)):
            if i == frames:
                break
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            copy.pts, copy.time_base = frame.pts, frame.time_base
            for packet in stream.encode(copy):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return target


@pytest.fixture(scope="session")
def grid_clip(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """``grid_clip(name, frames, target)``: the first ``frames`` frames of a GRID clip (video only, timestamps kept)
    copied to ``target``, each cut made once; a test may do what it likes with its copy."""
    import shutil

    folder = tmp_path_factory.mktemp("grid_clips")

    def copy(name: str, frames: int, target: Path) -> Path:
        cut = folder / f"{name}_{frames}.mp4"
        if not cut.exists():
            _cut_clip(shared_data / "train" / "grid_s1" / f"{name}.mp4", cut, frames)
        shutil.copyfile(cut, target)
        return target

    return copy


GRID_CLIPS = ("bbaf2n", "bbaf4p", "bbal6n", "bbal8p")  # four GRID speakers' clips (CC BY 4.0)


@pytest.fixture(scope="module")
def clips(grid_clip, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A folder of the four ``GRID_CLIPS`` as ``NAME.mp4``, each the test module's ``FRAMES`` frames long."""
    folder = tmp_path_factory.mktemp("clips")
    for name in GRID_CLIPS:
        grid_clip(name, request.module.FRAMES, folder / f"{name}.mp4")
    return folder
