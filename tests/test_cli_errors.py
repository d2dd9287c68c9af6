"""Bad input through the real CLI: a one-line error, a non-zero exit, no traceback and no output left behind."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("require_face_model")


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reenact", *map(str, args)], capture_output=True, text=True, env=os.environ.copy(), timeout=300
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], output: Path, needle: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("reenact: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not output.exists()
    # Nothing half-written beside it either (temporary names included).
    assert not [p for p in output.parent.glob("*") if p.name.startswith(f".{output.name}") or ".tmp" in p.name]


def write_clip(path: Path, frames: list[np.ndarray], audio: bool = False) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        t = np.arange(16000) / 16000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 16000, 0, Fraction(1, 16000)
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path


@pytest.fixture
def grid_clip(shared_data: Path) -> Path:
    return shared_data / "train" / "grid_s1" / "bbaf2n.mp4"


def test_missing_file(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    assert_clean_failure(run_cli("track", tmp_path / "nope.mp4", "-o", out), out, "nope.mp4")


def test_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my notes, not a video\n")
    out = tmp_path / "out.mp4"
    assert_clean_failure(run_cli("track", fake, "-o", out), out, "notes.mp4")


def test_zero_frames(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = 64, 64
    out = tmp_path / "out.mp4"
    assert_clean_failure(run_cli("track", empty, "-o", out), out, "empty.mp4")


def test_truncated_file(tmp_path: Path, grid_clip: Path) -> None:
    cut = tmp_path / "cut.mp4"
    data = grid_clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mp4"
    assert_clean_failure(run_cli("track", cut, "-o", out), out, "cut.mp4")


def test_no_face_in_the_whole_clip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    clip = write_clip(tmp_path / "noise.mp4", [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(10)])
    out = tmp_path / "out.mp4"
    assert_clean_failure(run_cli("track", clip, "-o", out), out, "no face")
    csv_out = tmp_path / "aus.csv"
    assert_clean_failure(run_cli("au", clip, "-o", csv_out), csv_out, "no face")


def test_audio_only_file(tmp_path: Path) -> None:
    audio = write_audio_only(tmp_path / "voice.m4a")
    out = tmp_path / "out.mp4"
    assert_clean_failure(run_cli("track", audio, "-o", out), out, "voice.m4a")


def test_an_output_path_typed_wrong_exits_2_and_a_missing_folder_1(tmp_path: Path, grid_clip: Path) -> None:
    """An output that cannot work as typed (an extension no writer takes, a still image for a video, the input
    itself, a codec its container cannot hold, AUs to a file not named .csv) is a command-line error, exit status 2 with the help's pointer; a folder that is not there is the
    machine's, 1."""
    for out, needle in ((tmp_path / "out.xyz", "unknown container extension"),
                        (tmp_path / "out.png", "holds one image"), (grid_clip, "overwrite the input")):
        result = run_cli("edit", grid_clip, "-o", out, "--au", "AU12=+1")
        assert result.returncode == 2 and needle in result.stderr and "(see reenact edit --help)" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = run_cli("edit", grid_clip, "-o", tmp_path / "out.webm", "--au", "AU12=+1", "--codec", "libx265")
    assert result.returncode == 2 and "cannot hold libx265" in result.stderr and not (tmp_path / "out.webm").exists()
    result = run_cli("au", grid_clip, "-o", tmp_path / "aus.mp4")  # a CSV named as a video
    assert result.returncode == 2 and "name the file .csv" in result.stderr and not (tmp_path / "aus.mp4").exists()
    out = tmp_path / "missing" / "out.mp4"
    result = run_cli("edit", grid_clip, "-o", out, "--au", "AU12=+1")
    assert result.returncode == 1 and "does not exist" in result.stderr and "--help" not in result.stderr


def test_unwritable_output(tmp_path: Path, grid_clip: Path) -> None:
    out = tmp_path / "no-such-folder" / "out.mp4"
    assert_clean_failure(run_cli("track", grid_clip, "-o", out), out, "no-such-folder")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "out.mp4"
    result = run_cli("track", grid_clip, "-o", out)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_output_same_as_input_is_refused_and_input_untouched(tmp_path: Path, grid_clip: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(grid_clip.read_bytes())
    before = hashlib.sha256(clip.read_bytes()).hexdigest()
    result = run_cli("track", clip, "-o", tmp_path / "." / "clip.mp4")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("reenact: error: ") and len(result.stderr.strip().splitlines()) == 1
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("value", ["3", "-1", "nan", "much"])
def test_an_au_scale_outside_0_to_2_exits_with_usage_from_the_cli_and_the_api(tmp_path: Path, value: str) -> None:
    """Past 2 a laughing driver tore the source's jaw, at 50 the face became slabs, and both exited 0."""
    from reenact.api import transfer_expression
    from reenact.errors import OptionError

    for command in ("transfer", "live"):
        args = [tmp_path / "x.png", tmp_path / "d.mp4", "-o", tmp_path / "y.mp4"] if command == "transfer" else \
            ["--input", tmp_path / "d.mp4", "--source", tmp_path / "x.png", "-o", tmp_path / "y.mp4"]
        result = run_cli(command, *args, "--au-scale", value)
        assert result.returncode == 2 and "--au-scale must be a number from 0 to 2" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "y.mp4").exists()
    if value != "much":
        with pytest.raises(OptionError, match="--au-scale must be a number from 0 to 2"):
            transfer_expression(tmp_path / "x.png", tmp_path / "d.mp4", tmp_path / "y.mp4", au_scale=float(value))


def test_bad_arguments_exit_with_usage(tmp_path: Path) -> None:
    result = run_cli("track", tmp_path / "x.mp4", "-o", tmp_path / "y.mp4", "--crop-size", "4096")
    assert result.returncode == 2 and "--crop-size" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["3", "-0.5", "strong"])
def test_a_texture_strength_outside_0_to_2_exits_with_usage(tmp_path: Path, value: str) -> None:
    result = run_cli("edit", tmp_path / "x.png", "-o", tmp_path / "y.png", "--au", "AU12=+1", "--texture-strength", value)
    assert result.returncode == 2 and "--texture-strength" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "y.png").exists()


def test_an_unknown_precision_exits_with_usage(tmp_path: Path) -> None:
    result = run_cli("edit", tmp_path / "x.png", "-o", tmp_path / "y.png", "--au", "AU12=+1", "--precision", "half")
    assert result.returncode == 2 and "--precision" in result.stderr and "float32" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "y.png").exists()
