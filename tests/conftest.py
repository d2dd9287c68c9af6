"""Shared fixtures: where the shared face data and the face landmarker model are, and scikit-image's astronaut.

Real face video comes from ``$REENACT_DATA`` (default ``../shared/data`` beside the repository). Where it is
absent, tests that need it skip with the reason, except under CI (``CI=true``), where absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

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
