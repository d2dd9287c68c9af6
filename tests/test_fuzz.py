"""Fuzzing the readers (issue 24): a short seeded run of ``benchmarks/fuzzing.py`` over every input kind, and one
regression test for each bug a fuzz run found.

The short run: mutated MP4, MOV, MKV, WebM, MPEG-TS, PNG, JPEG and CSV/YAML/JSON job files, each through
``reenact au`` or ``reenact batch`` in a child process with a time and a memory limit; none may crash, hang, print
a traceback, blow its memory or fail without exactly one ``reenact: error:`` line. ``benchmarks/fuzz.py`` runs the
long version.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fuzzing  # noqa: E402

from reenact.batch import read_jobs  # noqa: E402
from reenact.errors import InputError  # noqa: E402
from reenact.video import probe  # noqa: E402

FUZZ_INPUTS = int(os.environ.get("REENACT_FUZZ_INPUTS", "250"))  # ~40-60 s here


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    data = Path(os.environ["REENACT_DATA"]) if "REENACT_DATA" in os.environ else None
    folder = tmp_path_factory.mktemp("seeds")
    fuzzing.make_seeds(folder, data if data is not None and data.is_dir() else None)
    return {kind: folder / f"seed.{kind}" for kind in fuzzing.KINDS}


def _reenact(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reenact", *args], check=False, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _one_clean_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("reenact: error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


# --------------------------------------------------------------------------- the fuzzer itself


def test_mutations_are_seeded_and_change_the_input(seeds: dict[str, Path]) -> None:
    data = {kind: path.read_bytes() for kind, path in seeds.items()}
    for kind in fuzzing.KINDS:
        first = [fuzzing.mutate(kind, data, random.Random(7))[0] for _ in range(1)]
        again = [fuzzing.mutate(kind, data, random.Random(7))[0] for _ in range(1)]
        assert first == again
    changed = sum(fuzzing.mutate("mp4", data, random.Random(n))[0] != data["mp4"] for n in range(50))
    assert changed >= 45


def test_outcomes_are_told_apart() -> None:
    ok = {"status": 0, "hang": False, "rss": 1 << 20}
    assert fuzzing.classify(ok, "") == "ok"
    assert fuzzing.classify({**ok, "status": 1}, "reenact: error: x.mp4: not a video or image file\n") == "error"
    assert fuzzing.classify({**ok, "status": 1}, "Traceback (most recent call last):\n  ...\nKeyError: 1\n") == "traceback"
    assert fuzzing.classify({**ok, "status": 1}, "reenact: error: a\nreenact: error: b\n") == "messy"
    assert fuzzing.classify({**ok, "status": 1}, "reenact: error: [Errno 36] File name too long: 'xxx'\n") == "messy"
    assert fuzzing.classify({**ok, "status": -11}, "") == "crash"
    assert fuzzing.classify({**ok, "status": -9, "hang": True}, "") == "hang"
    assert fuzzing.classify({**ok, "status": 1}, "MemoryError\n") == "memory"
    assert fuzzing.classify({**ok, "rss": 8 << 30}, "") == "memory"


@pytest.mark.usefixtures("require_face_model")
def test_a_short_fuzz_run_finds_no_crash_hang_traceback_or_blowup(tmp_path: Path) -> None:
    data = Path(os.environ.get("REENACT_DATA", ""))
    stats = fuzzing.fuzz(fuzzing.KINDS, seed=int(os.environ.get("REENACT_FUZZ_SEED", "24")), inputs=FUZZ_INPUTS,
                         reproducers=tmp_path / "found", data=data if data.is_dir() else None, timeout=60)
    report = stats.to_dict()
    assert stats.total == FUZZ_INPUTS and set(stats.tried) == set(fuzzing.KINDS)
    assert report["outcomes"]["ok"] + report["outcomes"]["error"] == FUZZ_INPUTS, json.dumps(report["bad"], indent=1)


# --------------------------------------------------------------------------- regressions, one per bug found


def _rename_codec(seed: Path, old: bytes, new: bytes, to: Path, *more: bytes) -> Path:
    data = seed.read_bytes()
    assert data.count(old) >= 1
    for tag in (old, *more):
        data = data.replace(tag, new)
    to.write_bytes(data)
    return to


def test_an_audio_stream_with_no_decoder_is_no_audio_codec_not_a_traceback(seeds: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    """Found by fuzzing: an MOV whose audio codec tag is unknown has an audio stream with no codec context; probe
    fell over it (AttributeError) before it even looked at the video."""
    clip = _rename_codec(seeds["mp4"], b"mp4a", b"zzzz", tmp_path / "odd_audio.mp4", b"esds")  # h264 has no esds
    info = probe(clip)
    assert info.has_audio and info.audio_codec is None and info.width > 0
    assert _reenact("au", clip.name, "-o", "aus.csv", "--quiet", cwd=tmp_path).returncode == 0


def test_a_video_stream_with_no_decoder_is_one_clear_error(seeds: dict[str, Path], tmp_path: Path) -> None:
    clip = _rename_codec(seeds["mp4"], b"avc1", b"zzzz", tmp_path / "odd_video.mp4", b"avcC")
    with pytest.raises(InputError, match="video codec not supported"):
        probe(clip)
    line = _one_clean_error(_reenact("au", clip.name, "-o", "aus.csv", "--quiet", cwd=tmp_path))
    assert "video codec not supported" in line


def test_a_job_row_naming_a_file_too_long_for_the_file_system_fails_alone(tmp_path: Path) -> None:
    """Found by fuzzing: a row whose input is a 5000-character name raised OSError (File name too long) out of
    read_jobs, so the whole batch stopped with a raw '[Errno 36]' line instead of that one job failing."""
    (tmp_path / "clip.mp4").write_bytes(b"")
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps([{"input": "x" * 5000, "preset": "happy"}, {"input": "clip.mp4", "preset": "sad"}]))
    jobs = read_jobs(jobs_file, tmp_path / "out")
    assert jobs[0].error is not None and "File name too long" in jobs[0].error
    assert jobs[1].error is None


def test_a_job_file_nested_too_deep_is_one_clear_error(tmp_path: Path) -> None:
    """Found by fuzzing: JSON or YAML nested thousands deep raised RecursionError (a traceback) while loading."""
    for kind, text in (("json", "[" * 100000 + "]" * 100000), ("yaml", "[" * 5000 + "]" * 5000),
                       ("json", "[" + '{"input": ' * 5000 + '"a.mp4"' + "}" * 5000 + "]")):
        jobs_file = tmp_path / f"deep.{kind}"
        jobs_file.write_text(text)
        with pytest.raises(InputError, match="nested too deeply"):
            read_jobs(jobs_file, tmp_path / "out")


def test_a_yaml_alias_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    """Found by fuzzing: nine aliases of nine aliases ... (billion laughs) load cheaply as shared lists, but a job's
    field read them whole (str of 9**20 values): a hang, then memory. Now refused at once."""
    anchors = ['a0: &a0 ["AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1"]']
    anchors += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 20)]
    jobs_file = tmp_path / "bomb.yaml"
    jobs_file.write_text("- " + "\n  ".join(anchors) + "\n- input: clip.mp4\n  au: *a19\n")
    with pytest.raises(InputError, match="too many values"):
        read_jobs(jobs_file, tmp_path / "out")


def test_an_output_name_with_a_nul_fails_its_job_alone(tmp_path: Path) -> None:
    """Found by fuzzing: a row's output holding a NUL character made resolve() raise 'embedded null byte' out of
    read_jobs, stopping the whole batch with Python's bare words."""
    (tmp_path / "clip.mp4").write_bytes(b"")
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps([{"input": "clip.mp4", "preset": "happy", "output": "a\u0000b.mp4"},
                                     {"input": "clip.mp4", "preset": "sad"}]))
    jobs = read_jobs(jobs_file, tmp_path / "out")
    assert "no file name" in (jobs[0].error or "") and jobs[1].error is None


def test_an_output_name_with_an_unpaired_surrogate_fails_its_job_alone(tmp_path: Path) -> None:
    """Found by fuzzing: JSON's "\\ud800" (and YAML's) in a row's output raised UnicodeEncodeError out of
    read_jobs ("'utf-8' codec can't encode character ..."), stopping the batch."""
    (tmp_path / "clip.mp4").write_bytes(b"")
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text('[{"input": "clip.mp4", "preset": "happy", "output": "a\\ud800.mp4"},'
                         ' {"input": "clip.mp4", "preset": "sad"}]')
    jobs = read_jobs(jobs_file, tmp_path / "out")
    assert "no file name" in (jobs[0].error or "") and jobs[1].error is None


@pytest.mark.usefixtures("require_face_model")
def test_a_video_whose_audio_has_no_decoder_is_written_without_audio_and_a_warning(seeds: dict[str, Path],
                                                                                  tmp_path: Path) -> None:
    """Found with the probe fix above: writing such a clip (track, edit, transfer copy the input's audio) fell over
    the undecodable audio stream (AttributeError: 'AudioStream' object has no attribute 'layout')."""
    import av

    clip = _rename_codec(seeds["mp4"], b"mp4a", b"zzzz", tmp_path / "odd_audio.mp4", b"esds")
    done = _reenact("track", clip.name, "-o", "tracked.mp4", "--quiet", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "reenact: warning:" in done.stderr and "audio codec is not supported" in done.stderr
    with av.open(str(tmp_path / "tracked.mp4")) as written:
        assert not written.streams.audio and written.streams.video[0].frames == fuzzing.SEED_FRAMES


def test_an_output_name_too_long_for_the_file_system_fails_its_job_alone(tmp_path: Path) -> None:
    """Found by fuzzing: a row whose output is a 5000-character name passed the row checks, then run_batch's look for
    an existing output raised OSError ('[Errno 36] File name too long') and stopped the whole batch."""
    (tmp_path / "clip.mp4").write_bytes(b"")
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(f"- {{input: clip.mp4, preset: happy, output: {'x' * 5000}.mp4}}\n"
                         "- {input: clip.mp4, preset: sad}\n")
    jobs = read_jobs(jobs_file, tmp_path / "out")
    assert "longer than 255 bytes" in (jobs[0].error or "") and len(jobs[0].error or "") < 300
    assert jobs[1].error is None
