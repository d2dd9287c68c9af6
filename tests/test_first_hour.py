"""The first hour of a new user (issue 21): each rough edge they met, through the real CLI or the API.

The convention tested throughout: every error is one line on stderr, ``reenact: error: ...``, and nothing is left
at the output. Exit status 2 for a command line that cannot work as typed (an unknown or malformed option, a value
out of range, options that contradict each other or the input), with ``(see reenact CMD --help)`` after it; exit
status 1 for the rest (a file that is missing or unreadable, no face, a broken model file, no GPU).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("require_face_model")

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reenact", *map(str, args)], capture_output=True, text=True,
                          env=env or os.environ.copy(), timeout=300)


def one_error_line(result: subprocess.CompletedProcess[str], status: int, *needles: str) -> str:
    """The one stderr line of a failed run, checked: its exit status, its prefix, no traceback, the needles."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("reenact: error: ") and "Traceback" not in result.stderr, lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def nothing_at(output: Path) -> None:
    assert not output.exists()
    assert not [p for p in output.parent.glob(f".{output.name}*")]  # no temporary left beside it


def cut(source: Path, destination: Path, seconds: float) -> Path:
    """The first ``seconds`` of ``source`` (video only), keeping its timestamps."""
    from reenact.video import VideoReader, VideoWriter, probe

    info = probe(source)
    with VideoReader(source) as reader, VideoWriter(destination, like=info) as writer:
        for frame in reader:
            if frame.time >= seconds - 1e-6:
                break
            writer.write(frame)
    return destination


@pytest.fixture(scope="module")
def grid(shared_data: Path) -> Path:
    """A GRID speaker, 3.0 s (75 frames at 25 fps), one face."""
    return shared_data / "train" / "grid_s1" / "bbaf2n.mp4"


@pytest.fixture(scope="module")
def one_second(grid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut(grid, tmp_path_factory.mktemp("clips") / "one_second.mp4", 1.0)


@pytest.fixture(scope="module")
def short_driver(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut(shared_data / "train" / "grid_s1" / "bbaf4p.mp4", tmp_path_factory.mktemp("clips") / "driver.mp4", 0.4)


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(float(frame.pts * stream.time_base) for frame in container.decode(stream))


# --- 1. --preset is the expression everywhere; the encoder's is --encoder-preset, checked before any work ----------


@pytest.mark.parametrize("command", ["edit", "transfer", "track", "live", "batch"])
def test_1_encoder_preset_is_one_flag_everywhere(command: str) -> None:
    from reenact.cli import build_parser

    positional = {"edit": ["in.mp4"], "transfer": ["in.mp4", "driver.mp4"], "track": ["in.mp4"], "live": [],
                  "batch": ["jobs.csv"]}[command]
    args = build_parser().parse_args([command, *positional, "-o", "out.mp4", "--encoder-preset", "fast"])
    assert args.encoder_preset == "fast"


def test_1_transfer_and_track_refuse_preset_and_point_to_encoder_preset(one_second: Path, short_driver: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    line = one_error_line(run_cli("transfer", one_second, short_driver, "-o", out, "--preset", "happy"), 2,
                          "--encoder-preset")
    assert "reenact transfer --help" in line
    nothing_at(out)
    one_error_line(run_cli("track", one_second, "-o", out, "--preset", "fast"), 2, "--encoder-preset")
    nothing_at(out)


@pytest.mark.parametrize("args, needle", [
    (["--crf", "99"], "crf"),
    (["--crf", "-1"], "crf"),
    (["--codec", "nosuch"], "unknown video codec 'nosuch'"),
    (["--codec", "aac"], "aac"),
    (["--encoder-preset", "nosuch"], "encoder preset 'nosuch'"),
])
def test_1_a_bad_encoder_setting_is_refused_before_any_work(one_second: Path, tmp_path: Path, args: list[str],
                                                            needle: str) -> None:
    out = tmp_path / "out.mp4"
    one_error_line(run_cli("track", one_second, "-o", out, *args), 2, needle)
    nothing_at(out)


# --- 2. Options that did nothing, silently, are refused -----------------------------------------------------------


def test_2_start_after_end_is_refused(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    one_error_line(run_cli("edit", grid, "-o", out, "--au", "AU12=+1", "--start", "2.5", "--end", "1"), 2,
                   "--start 2.5", "--end 1")
    nothing_at(out)


def test_2_start_past_the_end_of_the_clip_is_refused(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    one_error_line(run_cli("edit", grid, "-o", out, "--preset", "happy", "--start", "100"), 2, "--start 100", "3.0 s")
    nothing_at(out)


def test_2_a_time_range_on_a_still_image_is_refused(tmp_path: Path, astronaut: np.ndarray) -> None:
    import cv2

    still = tmp_path / "still.png"
    cv2.imwrite(str(still), astronaut[:, :, ::-1])
    out = tmp_path / "out.png"
    one_error_line(run_cli("edit", still, "-o", out, "--preset", "happy", "--start", "1"), 2, "still image")
    nothing_at(out)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_2_a_video_written_to_an_image_file_is_refused(one_second: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    one_error_line(run_cli("track", one_second, "-o", out), 2, suffix, ".mp4")  # typed wrong: 2
    nothing_at(out)


# --- 3. A broken landmarker file is a one-line error naming the file and what to do -------------------------------


def test_3_a_face_model_that_is_not_a_landmarker_bundle(one_second: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.task"
    notes.write_text("not a model\n")
    other_zip = tmp_path / "other.task"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "a zip, but no face landmarker in it")
    out = tmp_path / "out.mp4"
    for model in (notes, other_zip):
        one_error_line(run_cli("track", one_second, "-o", out, "--face-model", model), 1, str(model), "face_landmarker")
        nothing_at(out)


def test_3_an_empty_file_in_reenact_face_landmarker(one_second: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.task"
    empty.write_bytes(b"")
    out = tmp_path / "out.mp4"
    env = {**os.environ, "REENACT_FACE_LANDMARKER": str(empty)}
    one_error_line(run_cli("track", one_second, "-o", out, env=env), 1, str(empty), "REENACT_FACE_LANDMARKER", "empty")
    nothing_at(out)


def test_3_a_corrupt_cached_landmarker_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reenact.errors import ModelFileError, ReenactWarning
    from reenact.face import model_file

    monkeypatch.delenv("REENACT_FACE_LANDMARKER", raising=False)
    monkeypatch.setenv("REENACT_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "face_landmarker.task"
    cached.write_bytes(b"half a download")

    def offline(destination: Path, **_: object) -> Path:
        raise ModelFileError("could not download the face landmarker (offline)")

    monkeypatch.setattr(model_file, "download_face_landmarker", offline)
    with pytest.warns(ReenactWarning, match="damaged"), pytest.raises(ModelFileError, match="damaged"):
        model_file.resolve_face_landmarker()


# --- 4. Messages that said the wrong thing ------------------------------------------------------------------------


def test_4_a_preset_strength_that_is_not_a_number(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    line = one_error_line(run_cli("edit", grid, "-o", out, "--preset", "happy:abc"), 2, "strength", "number", "'abc'")
    assert "could not convert" not in line


def test_4_a_face_index_past_the_faces_found(one_second: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    line = one_error_line(run_cli("track", one_second, "-o", out, "--face", "3"), 1, "--face 3", "1 face")
    assert "from 0" in line
    nothing_at(out)


def test_4_cuda_without_a_gpu_says_so(one_second: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = tmp_path / "out.mp4"
    line = one_error_line(run_cli("edit", one_second, "-o", out, "--au", "AU12=+1", "--device", "cuda"), 1, "CUDA")
    assert "model" not in line
    one_error_line(run_cli("edit", one_second, "-o", out, "--au", "AU12=+1", "--device", "gpu"), 2, "--device")
    nothing_at(out)


def test_4_headless_live_suggests_an_output_not_preview(one_second: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    line = one_error_line(run_cli("live", "--input", one_second, "--preset", "happy", env=env), 2, "--output")
    assert "--preview" not in line.replace("--no-preview", "")


# --- 5. Argument errors: one line, exit 2, no repeated flag -------------------------------------------------------


@pytest.mark.parametrize("args, needle, command", [
    (["track", "x.mp4", "-o", "y.mp4", "--crop-size", "4096"], "--crop-size", "track"),
    (["edit", "x.mp4", "-o", "y.mp4", "--au", "AU12=1", "--bogus"], "--bogus", "edit"),
    (["edit", "x.mp4", "-o", "y.mp4", "--presett", "happy"], "did you mean --preset?", "edit"),
    (["edit", "x.mp4", "--au", "AU12=1"], "--output", "edit"),
    (["track", "x.mp4", "-o", "y.mp4", "--crf", "high"], "--crf", "track"),
    ([], "COMMAND", None),
])
def test_5_argument_errors_are_one_line_with_exit_status_2(args: list[str], needle: str, command: str | None) -> None:
    line = one_error_line(run_cli(*args), 2, needle)
    assert line.count(needle) == 1, line  # said once: not "argument --crop-size: --crop-size must ..."
    assert line.endswith(f"(see reenact {command + ' ' if command else ''}--help)"), line


def test_5_errors_in_the_input_exit_with_status_1(tmp_path: Path) -> None:
    one_error_line(run_cli("track", tmp_path / "nope.mp4", "-o", tmp_path / "out.mp4"), 1, "nope.mp4")


# --- 6. Arguments are checked before torch, MediaPipe and OpenCV load ---------------------------------------------


HEAVY = ("torch", "mediapipe", "cv2")


def heavy_modules_after(*args: str | Path) -> tuple[int, str, list[str]]:
    """Run the CLI in a fresh interpreter: its exit status, its stderr, and which heavy modules it had imported."""
    code = ("import sys\nfrom reenact.cli import main\ntry:\n    status = main(sys.argv[1:])\nfinally:\n"
            f"    print(','.join(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            env=os.environ.copy(), timeout=120)
    return result.returncode, result.stderr, [m for m in result.stdout.strip().split(",") if m]


@pytest.mark.parametrize("make_args", [
    lambda d, g: ["edit", d / "nope.mp4", "-o", d / "out.mp4", "--au", "AU12=+1"],
    lambda d, g: ["edit", g, "-o", d / "out.mp4", "--au", "AU99=1"],
    lambda d, g: ["edit", g, "-o", d / "out.mp4", "--preset", "joyful"],
    lambda d, g: ["transfer", g, d / "nope.mp4", "-o", d / "out.mp4"],
    lambda d, g: ["transfer", g, g, "-o", d / "out.mp4", "--aus", "AU12,AU99"],
    lambda d, g: ["au", d / "nope.mp4", "-o", d / "aus.csv"],
    lambda d, g: ["track", g, "-o", d / "out.mp4", "--crf", "99"],
    lambda d, g: ["live", "--input", d / "nope.mp4", "--preset", "happy", "-o", d / "out.mp4"],
    lambda d, g: ["batch", d, "-o", d / "out", "--au", "AU99=1"],
], ids=["missing-input", "bad-au", "bad-preset", "missing-driver", "bad-aus", "missing-au-input", "bad-crf",
        "missing-live-input", "bad-batch-au"])
def test_6_argument_errors_come_before_the_heavy_imports(make_args, grid: Path, tmp_path: Path) -> None:
    status, stderr, heavy = heavy_modules_after(*make_args(tmp_path, grid))
    assert status in (1, 2) and stderr.startswith("reenact: error: "), stderr
    assert heavy == [], f"imported {heavy} before the error: {stderr}"


# --- 7. The API raises the CLI's messages as typed errors ---------------------------------------------------------


def test_7_the_api_raises_typed_errors_with_the_cli_messages(grid: Path, tmp_path: Path) -> None:
    from reenact.errors import AUError, EncoderError, OptionError, PresetError, ReenactError
    from reenact.expression import AUEdit, ExpressionTarget, parse_au_edit

    cases = [
        (lambda: ExpressionTarget(preset="nosuch"), PresetError, ["--preset", "nosuch"]),
        (lambda: ExpressionTarget(edits=(AUEdit("AU99", 1.0, False),)), AUError, ["--au", "AU99=1"]),
        (lambda: parse_au_edit("AU99=1"), AUError, ["--au", "AU99=1"]),
        (lambda: ExpressionTarget(preset="happy", start=2.5, end=1.0), OptionError,
         ["--preset", "happy", "--start", "2.5", "--end", "1"]),
    ]
    for make, kind, args in cases:
        with pytest.raises(kind) as caught:
            make()
        assert isinstance(caught.value, ReenactError) and isinstance(caught.value, ValueError)
        line = one_error_line(run_cli("edit", grid, "-o", tmp_path / "out.mp4", *args), 2)
        assert str(caught.value) in line, (str(caught.value), line)
    from reenact.api import EncodeOptions, transfer_expression

    with pytest.raises(EncoderError) as caught:
        EncodeOptions(crf=99)
    assert str(caught.value) in one_error_line(run_cli("track", grid, "-o", tmp_path / "out.mp4", "--crf", "99"), 2)
    with pytest.raises(AUError, match="AU99"):
        transfer_expression(grid, grid, tmp_path / "out.mp4", aus=("AU12", "AU99"))
    nothing_at(tmp_path / "out.mp4")


def test_7_an_edit_past_the_clip_is_refused_by_the_api_before_any_work(grid: Path, tmp_path: Path) -> None:
    from reenact.api import edit_expression
    from reenact.errors import OptionError
    from reenact.expression import ExpressionTarget

    with pytest.raises(OptionError, match="3.0 s"):
        edit_expression(grid, tmp_path / "out.mp4", ExpressionTarget(preset="happy", start=100))
    nothing_at(tmp_path / "out.mp4")


# --- 8. live with a file: the file's timeline, no audio (said), a summary that adds up ----------------------------


def test_8_live_from_a_file_keeps_the_files_timestamps(one_second: Path, tmp_path: Path) -> None:
    out = tmp_path / "live.mp4"
    result = run_cli("live", "--input", one_second, "--au", "AU12=+1", "-o", out, "--no-preview", "--quiet")
    assert result.returncode == 0, result.stderr
    given, written = frame_times(one_second), frame_times(out)
    assert len(written) == len(given)
    assert np.allclose(written, np.array(given) - given[0], atol=0.002), (given[-3:], written[-3:])


def test_8_live_summary_accounts_for_every_frame(grid: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = run_cli("live", "--input", grid, "--au", "AU12=+1", "-o", tmp_path / "live.mp4", "--no-preview",
                     "--max-seconds", "1", "--report", report)
    assert result.returncode == 0, result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    found = re.search(r"(\d+) frames in, (\d+) out, (\d+) dropped(?:, (\d+) unfinished)?", summary)
    assert found, summary
    came_in, out, dropped, unfinished = (int(n or 0) for n in found.groups())
    assert came_in == out + dropped + unfinished, summary
    figures = json.loads(report.read_text())
    assert figures["captured"] == figures["output_frames"] + figures["dropped"] + figures["unfinished"]
    assert figures["output_frames"] == len(frame_times(tmp_path / "live.mp4"))


def test_8_live_help_says_its_output_has_no_audio() -> None:
    result = run_cli("live", "--help")
    assert result.returncode == 0 and "no audio" in " ".join(result.stdout.split())


# --- 9. A short driver, eval without --split, eval -o --------------------------------------------------------------


def test_9_a_driver_shorter_than_the_source_is_said_with_both_durations(one_second: Path, short_driver: Path,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = run_cli("transfer", one_second, short_driver, "-o", out, "--no-memory")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("reenact: warning: ")]
    assert len(warnings) == 1 and "0.4 s" in warnings[0] and "1.0 s" in warnings[0], result.stderr
    assert "held" in warnings[0]


def test_9_eval_without_a_split_is_refused(tmp_path: Path) -> None:
    line = one_error_line(run_cli("eval", tmp_path), 2, "--split", "--all-people")
    assert "trained" in line


def test_9_eval_with_an_output_prints_a_summary_not_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from reenact import cli, evaluate

    report = {"identities": ["s1", "s2"], "clips": 2, "self_reenactment": {"l1": 0.031, "psnr": 27.4},
              "au_fidelity": {au: {"asked": 1.0, "read": 0.8} for au in ("AU01", "AU12", "AU26")}}
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: report)
    (tmp_path / "index.json").write_text(json.dumps({"clips": []}))  # a dataset folder, as far as the CLI checks
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"validation": ["s1", "s2"]}))
    out = tmp_path / "report.json"
    assert cli.main(["eval", str(tmp_path), "--split", str(split), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == report
    assert "au_fidelity" not in printed and len(printed.strip().splitlines()) <= 2, printed
    assert str(out) in printed


# --- 11. One source of AU names; the command is `reenact au` -------------------------------------------------------


def test_11_the_au_plot_names_au23_as_the_edit_does() -> None:
    from reenact.face.aus import AU_CAVEATS, AU_DESCRIPTIONS, AU_NAMES
    from reenact.plot import au_figure

    assert "pucker" in AU_DESCRIPTIONS["AU23"] and "pucker" in AU_CAVEATS["AU23"]
    figure = au_figure(np.linspace(0, 1, 5), np.zeros((5, len(AU_NAMES))))
    labels = {text.get_text() for axis in figure.axes for text in axis.texts}
    assert labels == set(AU_DESCRIPTIONS.values())
    # A still image's AUs are one frame: drawn as a bar per AU (as one-point curves, the panels were empty).
    still = np.linspace(0.2, 3.4, len(AU_NAMES))[None]
    figure = au_figure(np.zeros(1), still)
    (axis,) = figure.axes
    assert [round(bar.get_width(), 6) for bar in axis.patches] == [round(v, 6) for v in still[0]]
    assert [label.get_text() for label in axis.get_yticklabels()] == [f"{n}  {AU_DESCRIPTIONS[n]}" for n in AU_NAMES]


def test_11_no_file_outside_the_docs_names_a_reenact_aus_command() -> None:
    wrong = "reenact" + " aus"  # spelt apart, so this file does not name it
    folders = ("reenact", "tests", "benchmarks", "probes", "examples", "tools")
    named = [str(p.relative_to(REPO)) for folder in folders for p in (REPO / folder).rglob("*.py")
             if re.search(rf"{wrong}\b", p.read_text())]
    assert named == []


def test_a_text_file_is_not_taken_for_a_video(tmp_path: Path) -> None:
    """FFmpeg opens any text file as ANSI art; reenact calls it what it is (it said 'no face found in 3 frames')."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes for the shoot\n" * 40)
    result = run_cli("au", notes, "-o", tmp_path / "aus.csv")
    one_error_line(result, 1, "notes.txt: not a video or image file")
    nothing_at(tmp_path / "aus.csv")


# --- a clip cut without timestamps ---------------------------------------------------------------------------------


def test_a_driving_clip_cut_without_timestamps_is_timed_by_its_frames(shared_data: Path, tmp_path: Path) -> None:
    """A new user cut a driving clip with PyAV and set no timestamps: every frame was stamped 0, and the transfer
    animated nothing, silently (the whole driver fell within the source's first frame). Its frames are now timed by
    their order at the stream's rate, with one warning, and drive the source as the same clip properly timed does."""
    cut_1s = cut(shared_data / "train" / "grid_s1" / "bbaf4p.mp4", tmp_path / "cut.mp4", 1.0)
    with av.open(str(cut_1s)) as source:
        images = [frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)]
    drivers = {}
    for name, stamp in (("timed", lambda i: i), ("stamped_0", lambda i: 0)):  # the same pixels, but for the stamps
        drivers[name] = tmp_path / f"{name}.mp4"
        with av.open(str(drivers[name]), "w") as out:
            stream = out.add_stream("libx264", rate=25, options={"qp": "0"})  # lossless: x264's rate control reads
            # the stamps, so a lossy encode of the two would differ in its pixels too
            stream.width, stream.height, stream.pix_fmt = 360, 288, "yuv420p"
            for i, image in enumerate(images):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = stamp(i)
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    assert len(set(frame_times(drivers["stamped_0"]))) == 1  # the user's clip, as made
    assert len(set(frame_times(drivers["timed"]))) == 25
    source = cut(shared_data / "train" / "grid_s1" / "bbaf2n.mp4", tmp_path / "source.mp4", 1.0)
    outputs = {}
    for name, driver in drivers.items():
        outputs[name] = tmp_path / f"by_{name}.mp4"
        result = run_cli("transfer", source, driver, "-o", outputs[name])
        assert result.returncode == 0, result.stderr
        warned = [line for line in result.stderr.splitlines() if "timestamps do not advance" in line]
        assert len(warned) == (name == "stamped_0"), result.stderr
    by_timed, by_stamped = ([f.to_ndarray(format="rgb24").astype(int) for f in av.open(str(p)).decode(video=0)]
                            for p in outputs.values())
    assert len(by_timed) == len(by_stamped) == 25
    moved = np.mean([np.abs(a - by_timed[0]).mean() for a in by_timed[10:]])  # the driver's speech shows
    apart = np.mean([np.abs(a - b).mean() for a, b in zip(by_timed, by_stamped)])
    assert apart < 0.05 * moved, (apart, moved)
