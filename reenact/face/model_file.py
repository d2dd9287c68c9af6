"""Find MediaPipe's FaceLandmarker model bundle, the way users expect.

Order: an explicit path, then the ``REENACT_FACE_LANDMARKER`` environment variable, then the user cache, then a
download from MediaPipe's official model storage, checked against the published sha256 before it is kept.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

from reenact.errors import ModelFileError, ReenactWarning

FACE_LANDMARKER_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
)
FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
FACE_LANDMARKER_ENV = "REENACT_FACE_LANDMARKER"
CACHE_ENV = "REENACT_CACHE_DIR"
FILE_NAME = "face_landmarker.task"


def cache_dir() -> Path:
    """The user cache folder: ``$REENACT_CACHE_DIR``, else ``$XDG_CACHE_HOME/reenact``, else ``~/.cache/reenact``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "reenact"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# What a face landmarker bundle holds (a zip archive of MediaPipe's models): how a file is known for one.
BUNDLE_MEMBERS = frozenset({"face_detector.tflite", "face_landmarks_detector.tflite", "face_blendshapes.tflite"})


def _existing(path: Path, origin: str) -> Path:
    # A user-named file is trusted as a model of their choice (it may be another version), so no checksum here; it
    # must still be a landmarker bundle, or MediaPipe fails with a message that names neither the file nor the fix.
    fix = ("pass --face-model the face_landmarker.task from MediaPipe" if origin == "--face-model" else
           f"point ${FACE_LANDMARKER_ENV} at MediaPipe's face_landmarker.task, or unset it to use the cache")
    if not path.is_file():
        raise ModelFileError(f"face landmarker model not found at {path} (from {origin}); {fix}")
    problem = bundle_problem(path)
    if problem is not None:
        raise ModelFileError(f"{path} (from {origin}) is {problem}; {fix} ({FACE_LANDMARKER_URL})")
    return path


def bundle_problem(path: Path) -> str | None:
    """What keeps ``path`` from being a face landmarker bundle (None: nothing): cheap, MediaPipe is not loaded."""
    try:
        if path.stat().st_size == 0:
            return "empty, not a face_landmarker.task"
        if not zipfile.is_zipfile(path):
            return "not a face_landmarker.task (such a bundle is a zip archive; this file is not one)"
        with zipfile.ZipFile(path) as bundle:
            missing = sorted(BUNDLE_MEMBERS - set(bundle.namelist()))
            damaged = bundle.testzip()
    except (OSError, zipfile.BadZipFile) as e:
        return f"not readable as a face_landmarker.task ({e})"
    if missing:
        return f"a zip archive but not a face_landmarker.task (it lacks {', '.join(missing)})"
    if damaged is not None:
        return f"a damaged face_landmarker.task ({damaged} fails its checksum)"
    return None


def download_face_landmarker(
    destination: Path, url: str = FACE_LANDMARKER_URL, sha256: str = FACE_LANDMARKER_SHA256, timeout: float = 60.0
) -> Path:
    """Download the model to ``destination``, verifying its checksum; nothing is left behind on failure."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".task", dir=destination.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        got = sha256_of(tmp)
        if got != sha256:
            raise ModelFileError(f"downloaded face landmarker from {url} has sha256 {got}, expected {sha256}")
        os.replace(tmp, destination)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ModelFileError(
            f"could not download the face landmarker from {url} ({exc}); "
            f"download it by hand and pass --face-model PATH or set {FACE_LANDMARKER_ENV}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def resolve_face_landmarker(
    explicit: str | os.PathLike[str] | None = None, *, download: bool = True, url: str = FACE_LANDMARKER_URL
) -> Path:
    """Return the path of a usable ``face_landmarker.task``, downloading it into the cache if needed."""
    if explicit:
        return _existing(Path(explicit).expanduser(), "--face-model")
    if os.environ.get(FACE_LANDMARKER_ENV):
        return _existing(Path(os.environ[FACE_LANDMARKER_ENV]).expanduser(), f"${FACE_LANDMARKER_ENV}")
    cached = cache_dir() / FILE_NAME
    damaged = ""
    if cached.is_file():
        if sha256_of(cached) == FACE_LANDMARKER_SHA256:
            return cached
        # A damaged cache entry (a download cut short, a disk error) is replaced rather than trusted, and said.
        damaged = f"the cached face landmarker {cached} was damaged (it fails its checksum) and was removed; "
        cached.unlink()
        warnings.warn(f"{damaged[:-2]}; downloading it again", ReenactWarning, stacklevel=2)
    if not download:
        raise ModelFileError(
            f"{damaged}face landmarker model not in the cache ({cached}); pass --face-model PATH or set "
            f"{FACE_LANDMARKER_ENV}"
        )
    try:
        return download_face_landmarker(cached, url=url)
    except ModelFileError as e:
        raise ModelFileError(f"{damaged}{e}") from None
