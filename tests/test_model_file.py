"""Resolving the FaceLandmarker bundle: explicit path, environment, cache, checked download."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reenact.errors import ModelFileError, ReenactWarning
from reenact.face import model_file
from reenact.face.model_file import FACE_LANDMARKER_SHA256, resolve_face_landmarker, sha256_of


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(model_file.FACE_LANDMARKER_ENV, raising=False)
    monkeypatch.setenv(model_file.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def model_server(require_face_model: Path, tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server standing in for MediaPipe's model storage, serving the real bundle."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "face_landmarker.task").write_bytes(require_face_model.read_bytes())
    (served / "wrong.task").write_bytes(b"not the model")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_shared_copy_is_the_published_file(require_face_model: Path) -> None:
    assert sha256_of(require_face_model) == FACE_LANDMARKER_SHA256


def test_explicit_path_wins_over_environment(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            require_face_model: Path) -> None:
    explicit, from_env = tmp_path / "mine.task", tmp_path / "env.task"
    explicit.write_bytes(require_face_model.read_bytes())  # each must be a landmarker bundle (a zip of its models)
    from_env.write_bytes(require_face_model.read_bytes())
    monkeypatch.setenv(model_file.FACE_LANDMARKER_ENV, str(from_env))
    assert resolve_face_landmarker(explicit) == explicit
    assert resolve_face_landmarker() == from_env


def test_missing_explicit_file_is_a_clear_error(clean_env: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        resolve_face_landmarker(tmp_path / "nope.task")


def test_download_fills_the_cache_and_is_reused(clean_env: Path, model_server: str) -> None:
    url = f"{model_server}/face_landmarker.task"
    path = resolve_face_landmarker(url=url)
    assert path == clean_env / "face_landmarker.task"
    assert sha256_of(path) == FACE_LANDMARKER_SHA256
    # Second call: served from the cache, the (now unreachable) URL is not touched.
    assert resolve_face_landmarker(url="http://127.0.0.1:9/unreachable") == path


def test_damaged_cache_is_replaced(clean_env: Path, model_server: str) -> None:
    clean_env.mkdir(parents=True)
    (clean_env / "face_landmarker.task").write_bytes(b"truncated")
    with pytest.warns(ReenactWarning, match="damaged"):  # said, not replaced without a word
        path = resolve_face_landmarker(url=f"{model_server}/face_landmarker.task")
    assert sha256_of(path) == FACE_LANDMARKER_SHA256


def test_checksum_mismatch_keeps_nothing(clean_env: Path, model_server: str) -> None:
    with pytest.raises(ModelFileError, match="sha256"):
        resolve_face_landmarker(url=f"{model_server}/wrong.task")
    assert not any(clean_env.iterdir())


def test_unreachable_server_says_what_to_do(clean_env: Path) -> None:
    with pytest.raises(ModelFileError, match="--face-model"):
        resolve_face_landmarker(url="http://127.0.0.1:9/face_landmarker.task")
    with pytest.raises(ModelFileError, match="not in the cache"):
        resolve_face_landmarker(download=False)
