"""`reenact batch`: job files, bad rows failing alone, kill and resume, worker processes and Ray, on real clips."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from reenact import cli
from reenact.batch import read_jobs, run_batch
from reenact.editing import AUEdit, ExpressionTarget
from reenact.expression import TimeRange
from reenact.errors import ReenactError
from reenact.video import VideoReader, probe

FRAMES = 20  # frames per test clip: the generator edits about 8 a second here
GRID = ("bbaf2n", "bbaf4p", "bbal6n", "bbal8p")


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reenact", "batch", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def frame_count(path: Path) -> int:
    """Frames as the container says, checked against a full decode (a damaged file fails here)."""
    with VideoReader(path) as reader:
        decoded = sum(1 for _ in reader)
    assert probe(path).frame_count == decoded
    return decoded


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name]


def report_of(outdir: Path) -> dict:
    return json.loads((outdir / "batch_report.json").read_text())


# --------------------------------------------------------------------------- job files


def test_csv_yaml_and_json_job_files_give_the_same_jobs(tmp_path: Path) -> None:
    for name in ("clips/a.mp4", "b.png", "d.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")  # jobs are checked for existing files only; nothing runs here
    (tmp_path / "jobs.csv").write_text(
        "op,input,driving,output,au,preset,start,end,ramp,mode,au_scale,aus,audio,crf,encoder_preset,model\n"
        "edit,clips/a.mp4,,,AU12=+1.5;AU26=2,,1,3,0.5,,,,,20,fast,\n"
        ",b.png,,,,sad:0.5,,,,,,,,,,\n"
        "transfer,clips/a.mp4,d.mp4,x/t.mkv,,,,,,absolute,0.7,AU12;AU25,none,,,other\n"
    )
    (tmp_path / "jobs.yaml").write_text(
        "- {op: edit, input: clips/a.mp4, au: [AU12=+1.5, AU26=2], start: 1, end: 3, ramp: 0.5, crf: 20,"
        " encoder_preset: fast}\n"
        "- input: b.png\n  preset: sad:0.5\n"
        "- {op: transfer, input: clips/a.mp4, driving: d.mp4, output: x/t.mkv, mode: absolute, au_scale: 0.7,"
        " aus: [AU12, AU25], audio: none, model: other}\n"
    )
    (tmp_path / "jobs.json").write_text(json.dumps([
        {"op": "edit", "input": "clips/a.mp4", "au": "AU12=+1.5; AU26=2", "start": 1.0, "end": "3", "ramp": 0.5,
         "crf": 20, "encoder_preset": "fast"},
        {"input": "b.png", "preset": "sad:0.5"},
        {"op": "transfer", "input": "clips/a.mp4", "driving": "d.mp4", "output": "x/t.mkv", "mode": "absolute",
         "au_scale": "0.7", "aus": "AU12,AU25", "audio": "none", "model": "other"},
    ]))  # fmt: skip
    out = tmp_path / "out"
    jobs = read_jobs(tmp_path / "jobs.csv", out)
    assert jobs == read_jobs(tmp_path / "jobs.yaml", out) == read_jobs(tmp_path / "jobs.json", out)

    edit, image, transfer = jobs
    assert [j.error for j in jobs] == [None, None, None]
    assert [j.name for j in jobs] == ["a.mp4", "b.png", "x/t.mkv"]  # an image stays an image
    assert edit.input == tmp_path / "clips" / "a.mp4" and edit.output == out / "a.mp4"
    edits = (AUEdit("AU12", 1.5, True), AUEdit("AU26", 2.0, False))
    assert edit.target == ExpressionTarget(edits, None, 1.0, start=1.0, end=3.0, ramp=0.5)
    assert (edit.encode.crf, edit.encode.preset, edit.encode.codec) == (20, "fast", "libx264")
    assert image.target == ExpressionTarget(preset="sad", strength=0.5)
    assert (transfer.op, transfer.driving) == ("transfer", tmp_path / "d.mp4")
    assert (transfer.relative, transfer.au_scale) == (False, 0.7)
    assert (transfer.aus, transfer.audio, transfer.generator.model) == (("AU12", "AU25"), "none", "other")
    assert transfer.time_range == TimeRange()
    (tmp_path / "r.yaml").write_text("- {op: transfer, input: clips/a.mp4, driving: d.mp4, start: 1, end: 2.5}\n"
                                     "- {op: transfer, input: clips/a.mp4, driving: d.mp4, start: 2, end: 1}\n")
    ranged, backwards = read_jobs(tmp_path / "r.yaml", out)
    assert ranged.time_range == TimeRange(1.0, 2.5) and ranged.error is None  # a transfer's range, as --start/--end
    assert "is not before --end" in backwards.error
    # Without an output, a transfer is named after both clips.
    (tmp_path / "t.yaml").write_text("- {op: transfer, input: b.png, driving: d.mp4}\n")
    assert read_jobs(tmp_path / "t.yaml", out)[0].name == "b_d.mp4"
    assert not transfer.pose  # the driving head's turns are followed only when asked
    (tmp_path / "p.yaml").write_text("- {op: transfer, input: b.png, driving: d.mp4, pose: true}\n"
                                     "- {op: transfer, input: b.png, driving: d.mp4, pose: 'No'}\n"
                                     "- {op: transfer, input: b.png, driving: d.mp4, pose: maybe}\n"
                                     "- {input: b.png, pose: yes}\n")
    followed, kept, unclear, edit_with_pose = read_jobs(tmp_path / "p.yaml", out)
    assert followed.pose and not kept.pose and followed.error is kept.error is None
    assert unclear.error == "pose must be yes or no, not 'maybe'"
    assert edit_with_pose.error is not None and "for transfer jobs only" in edit_with_pose.error


def test_a_folder_and_one_edit_make_a_job_per_clip(tmp_path: Path) -> None:
    for name in ("one.mp4", "sub/two.mov", "three.PNG", "notes.txt", ".hidden.mp4", "out/old.mp4"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    jobs = read_jobs(tmp_path, tmp_path / "out", {"preset": "happy", "au": ["AU26=+1"], "crf": 23})
    assert [j.name for j in jobs] == ["one.mp4", "sub/two.mp4", "three.png"]  # the output folder is left out
    assert {j.target for j in jobs} == {ExpressionTarget((AUEdit("AU26", 1.0, True),), "happy")}
    assert {j.encode.crf for j in jobs} == {23}
    with pytest.raises(ValueError, match="nothing to edit"):
        read_jobs(tmp_path, tmp_path / "out")


def test_bad_rows_are_failed_jobs_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    rows = [
        {"input": "a.mp4", "au": "AU12=+1"},
        {"input": "missing.mp4", "au": "AU12=+1"},
        {"input": "a.mp4", "au": "AU99=+1", "output": "b.mp4"},
        {"input": "a.mp4", "au": "AU12 up", "output": "c.mp4"},
        {"op": "morph", "input": "a.mp4", "output": "d.mp4"},
        {"input": "a.mp4", "au": "AU12=+1", "smile": 3, "output": "e.mp4"},
        {"op": "transfer", "input": "a.mp4", "driving": "a.mp4", "preset": "happy", "output": "f.mp4"},
        {"input": "a.mp4", "output": "g.mp4"},
        {"input": "a.mp4", "au": "AU12=+1", "output": "../escape.mp4"},
        {"input": "a.mp4", "au": "AU12=+1", "crf": "high", "output": "h.mp4"},
        {"op": "transfer", "input": "a.mp4", "driving": "a.mp4", "au_scale": 3, "output": "i.mp4"},
        "a.mp4",
    ]
    (tmp_path / "jobs.json").write_text(json.dumps(rows))
    errors = [job.error for job in read_jobs(tmp_path / "jobs.json", tmp_path / "out")]
    assert errors[0] is None
    expected = ["missing.mp4: file not found", "unknown AU 'AU99'", "AU12 up", "unknown op 'morph'",
                "unknown field(s) smile", "preset: for edit jobs only", "nothing to edit", "inside the output folder",
                "crf must be a whole number", "au_scale must be a number from 0 to 2", "a mapping of fields"]
    for error, needle in zip(errors[1:], expected, strict=True):
        assert error is not None and needle in error and "\n" not in error, (error, needle)
    (tmp_path / "extra.csv").write_text("input,au\na.mp4,AU12=+1,surplus\n")
    assert "more cells" in str(read_jobs(tmp_path / "extra.csv", tmp_path / "out")[0].error)
    with pytest.raises(ReenactError, match="no jobs"):
        (tmp_path / "empty.yaml").write_text("[]\n")
        read_jobs(tmp_path / "empty.yaml", tmp_path / "out")
    with pytest.raises(ValueError, match=r"\.csv, \.yaml"):
        read_jobs(tmp_path / "a.mp4", tmp_path / "out")


def test_without_ray_installed_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "jobs.csv").write_text("input,au\na.mp4,AU12=+1\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ReenactError, match=r"pip install 'reenact\[ray\]'"):
        run_batch(read_jobs(tmp_path / "jobs.csv", tmp_path / "out"), tmp_path / "out", ray="local")


def test_a_folder_without_an_edit_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    assert cli.main(["batch", str(tmp_path), "-o", str(tmp_path / "out")]) == 2  # the command line's error
    assert capsys.readouterr().err.strip().splitlines() == [
        "reenact: error: nothing to edit: a folder of clips needs an edit (--au AUxx=V and/or --preset NAME) "
        "(see reenact batch --help)"
    ]


# --------------------------------------------------------------------------- running, on real clips


@pytest.mark.usefixtures("require_face_model")
def test_a_bad_job_fails_alone(clips: Path, tmp_path: Path) -> None:
    # Fixed random bytes: passes the checks, fails when opened. (Fresh random bytes now and then probe as an audio
    # stream, which fails with another message.)
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    rows = [
        {"input": str(clips / "bbaf2n.mp4"), "au": ["AU12=+1.5"]},
        {"input": "missing.mp4", "au": "AU12=+1"},
        {"input": str(clips / "bbaf4p.mp4"), "au": "AU99=+1"},
        {"input": "garbage.mp4", "preset": "happy"},
        {"input": str(clips / "bbal6n.mp4"), "preset": "happy", "output": "bbaf2n.mp4"},  # taken by the first
    ]
    (tmp_path / "jobs.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    result = run_cli(tmp_path / "jobs.json", "-o", out)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"reenact: error: 4 of 5 jobs failed; see {out / 'batch_report.json'}"
    assert "Traceback" not in result.stderr and "bbaf2n.mp4" in result.stderr  # the summary table
    jobs = report_of(out)["jobs"]
    assert [j["status"] for j in jobs] == ["ok", "failed", "failed", "failed", "failed"]
    assert jobs[0]["frames"] == FRAMES and jobs[0]["error"] is None
    assert "file not found" in jobs[1]["error"] and "AU99" in jobs[2]["error"]
    assert "not a video or image file" in jobs[3]["error"] and "same output as job 1" in jobs[4]["error"]
    assert frame_count(out / "bbaf2n.mp4") == FRAMES
    assert sorted(p.name for p in out.iterdir()) == ["batch_report.json", "bbaf2n.mp4"]


@pytest.mark.usefixtures("require_face_model")
def test_a_killed_batch_resumes_where_it_stopped(clips: Path, tmp_path: Path) -> None:
    names = [f"{name}.mp4" for name in GRID]
    # ultrafast: x264 without lookahead writes from the first frames on, so a job's temporary file shows it running.
    (tmp_path / "jobs.csv").write_text(
        "input,output,au,preset,encoder_preset\n"
        + "".join(f"{clips / n},{n},AU12=+1.5;AU26=+1,,ultrafast\n" for n in names[:2])
        + "".join(f"{clips / n},sub/{n},,happy,ultrafast\n" for n in names[2:])
    )
    out = tmp_path / "out"
    outputs = [out / n for n in names[:2]] + [out / "sub" / n for n in names[2:]]
    command = [sys.executable, "-m", "reenact", "batch", str(tmp_path / "jobs.csv"), "-o", str(out), "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill it once the first output is done and the second job is writing (its temporary file exists). The first
        # job's own temporary does not count: listed just before its rename, it showed beside its finished output.
        deadline = time.monotonic() + 300
        while not (outputs[0].exists() and [p for p in temporaries(out) if not p.name.startswith(f".{names[0]}.")]):
            assert process.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = [p for p in outputs if p.exists()]
    assert finished and not outputs[-1].exists(), "the kill came too late to test resuming"
    assert temporaries(out)  # what the killed job left
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished}
    for path in finished:
        assert frame_count(path) == FRAMES  # whole, not damaged by the kill

    killed = {j["output"]: j["status"] for j in report_of(out)["jobs"]}  # the report follows the jobs as they end
    assert all(killed[str(p)] == "ok" for p in finished) and killed[str(outputs[-1])] == "pending"

    result = subprocess.run([*command, "--quiet"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    jobs = {j["output"]: j for j in report_of(out)["jobs"]}
    for path in outputs:
        # Skipped jobs keep the frame counts the killed run reported.
        assert (jobs[str(path)]["status"], jobs[str(path)]["frames"]) == ("skipped" if path in before else "ok", FRAMES)
        assert frame_count(path) == FRAMES
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished} == before  # not redone
    assert not temporaries(out)


@pytest.mark.usefixtures("require_face_model")
def test_two_workers_give_the_same_outputs_as_one(clips: Path, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    for name in GRID[:2]:
        shutil.copy(clips / f"{name}.mp4", folder)
    one = run_batch(read_jobs(folder, tmp_path / "one", {"preset": "happy"}), tmp_path / "one", workers=1)
    assert [r.status for r in one.results] == ["ok", "ok"]
    result = run_cli(folder, "-o", tmp_path / "two_out", "--preset", "happy", "--workers", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert report_of(tmp_path / "two_out")["runner"] == "2 processes"
    for name in GRID[:2]:
        with VideoReader(tmp_path / "one" / f"{name}.mp4") as a, VideoReader(tmp_path / "two_out" / f"{name}.mp4") as b:
            pairs = list(zip(a, b, strict=True))
        assert len(pairs) == FRAMES
        # Same edit; torch runs with other thread counts, so allow rounding differences.
        assert max(np.abs(fa.image.astype(int) - fb.image.astype(int)).mean() for fa, fb in pairs) < 0.5


@pytest.mark.usefixtures("require_face_model", "require_ray")
def test_ray_runs_the_jobs_and_a_failure_fails_alone(clips: Path, tmp_path: Path) -> None:
    import ray

    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4000))  # as in test_a_bad_job_fails_alone
    (tmp_path / "jobs.yaml").write_text(
        f"- {{input: {clips / 'bbaf2n.mp4'}, au: [AU12=+1.5]}}\n"
        f"- {{op: transfer, input: {clips / 'bbaf4p.mp4'}, driving: {clips / 'bbal6n.mp4'}}}\n"
        "- {input: garbage.mp4, preset: happy}\n"
    )
    out = tmp_path / "out"
    report = run_batch(read_jobs(tmp_path / "jobs.yaml", out), out, workers=2, ray="local")
    assert not ray.is_initialized()  # shut down again
    assert [r.status for r in report.results] == ["ok", "ok", "failed"]
    assert "not a video or image file" in str(report.results[2].error)
    saved = report_of(out)
    assert saved["runner"] == "ray (local)" and [j["status"] for j in saved["jobs"]] == ["ok", "ok", "failed"]
    assert frame_count(out / "bbaf2n.mp4") == frame_count(out / "bbaf4p_bbal6n.mp4") == FRAMES
