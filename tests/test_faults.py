"""Faults and boundaries through the real CLI (issue 24, parts 2 and 4): a full disk, SIGTERM and Ctrl-C, a batch
worker killed, an input cut while it is read, outputs leading out of OUTDIR, two batches on one OUTDIR, pickled
checkpoints, a download that fails its checksum. Each ends with a whole output or none, nothing temporary left,
and at most one ``reenact: error:`` line."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from reenact.video import VideoReader, probe

pytestmark = pytest.mark.usefixtures("require_face_model")

FRAMES = 15  # frames per test clip
GRID = ("bbaf2n", "bbaf4p", "bbal6n", "bbal8p")


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """TMPDIR for the command under test: what reenact leaves in its scratch folders shows here."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


def environment(scratch: Path | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    if scratch is not None:
        env["TMPDIR"] = str(scratch)
    return env


def reenact(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reenact", *map(str, args)], capture_output=True, text=True,
                          env=env or environment(), timeout=600)


def four_jobs(clips: Path, path: Path) -> Path:
    """A job file: a happy edit of each GRID clip (x264 ultrafast)."""
    path.write_text("input,preset,encoder_preset\n" + "".join(f"{clips / n}.mp4,happy,ultrafast\n" for n in GRID))
    return path


def start(*args: str | Path, env: dict[str, str] | None = None, session: bool = False) -> subprocess.Popen[str]:
    """The CLI in the background (``session``: in a process group of its own, as a terminal's foreground job)."""
    return subprocess.Popen([sys.executable, "-m", "reenact", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env or environment(), start_new_session=session,
                            preexec_fn=_interruptible)


def _interruptible() -> None:
    """The child takes SIGINT as a terminal's Ctrl-C even where the tests run as a background job, which a shell
    starts with SIGINT ignored (and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signalled(process: subprocess.Popen[str], ready: Callable[[], bool], signum: int, group: bool = False) -> str:
    """Send ``signum`` to a CLI started by ``start`` once ``ready()`` (to its whole process group with ``group``);
    its stderr once it has ended."""
    try:
        wait_for(ready, process)
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    return stderr


def wrapped(code: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a child whose ``code`` runs first (to inject a fault into the real code path)."""
    script = textwrap.dedent(code) + "\nimport sys\nfrom reenact.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          env=env or environment(), timeout=600)


def one_error_line(result: subprocess.CompletedProcess[str], needle: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith("reenact: error: ") and needle in lines[-1], result.stderr
    assert not [line for line in lines if line.startswith("reenact: error")][:-1], result.stderr
    return lines[-1]


def temporaries(*folders: Path) -> list[Path]:
    """Half-written outputs (``.NAME.tmp-*``) and reenact's scratch folders (``reenact-*``) left in ``folders``."""
    return [p for folder in folders if folder.exists() for p in folder.rglob("*")
            if ".tmp-" in p.name or p.name.startswith("reenact-")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frame_count(path: Path) -> int:
    """Frames as the container says, checked against a full decode (a damaged file fails here)."""
    with VideoReader(path) as reader:
        decoded = sum(1 for _ in reader)
    assert probe(path).frame_count == decoded
    return decoded


def wait_for(condition, process: subprocess.Popen[str] | None = None, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process is None or process.poll() is None, f"ended too soon: {process.stderr.read() if process.stderr else ''}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def report_of(outdir: Path) -> dict:
    return json.loads((outdir / "batch_report.json").read_text())


# --------------------------------------------------------------------------- boundaries (issue part 4)


def test_batch_outputs_leading_out_of_outdir_are_refused_unless_allowed(clips: Path, tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    clip = clips / "bbaf2n.mp4"
    rows = [{"input": str(clip), "preset": "happy", "output": name}
            for name in ("../escaped.mp4", str(outside / "absolute.mp4"), "link/through_symlink.mp4")]
    (tmp_path / "jobs.json").write_text(json.dumps(rows))
    result = reenact("batch", tmp_path / "jobs.json", "-o", out, "--quiet")
    one_error_line(result, "3 of 3 jobs failed")
    jobs = report_of(out)["jobs"]
    assert [j["status"] for j in jobs] == ["failed"] * 3
    assert all("inside the output folder" in j["error"] and "--allow-outside" in j["error"] for j in jobs), jobs
    assert not list(outside.iterdir()) and not (tmp_path / "escaped.mp4").exists()

    # Allowed explicitly, the symlinked one is written where the link leads.
    (tmp_path / "one.json").write_text(json.dumps(rows[2:]))
    result = reenact("batch", tmp_path / "one.json", "-o", out, "--allow-outside", "--quiet",
                     "--encoder-preset", "ultrafast")
    assert result.returncode == 0, result.stderr
    assert frame_count(outside / "through_symlink.mp4") == FRAMES


def test_a_second_batch_on_the_same_outdir_is_refused_and_a_stale_lock_taken_over(clips: Path, tmp_path: Path,
                                                                                   scratch: Path) -> None:
    four_jobs(clips, tmp_path / "jobs.csv")
    out = tmp_path / "out"
    lock = out / ".reenact-batch.lock"
    first = start("batch", tmp_path / "jobs.csv", "-o", out, "--quiet", env=environment(scratch))
    try:
        wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(first.pid), first)
        second = reenact("batch", tmp_path / "jobs.csv", "-o", out, "--quiet", "--force")
        line = one_error_line(second, f"another reenact batch (pid {first.pid})")
        assert str(out) in line
        assert first.wait(timeout=600) == 0, first.stderr.read() if first.stderr else ""
    finally:
        first.kill()
        first.wait()
    assert report_of(out)["ok"] == len(GRID) and not lock.exists()
    assert [frame_count(out / f"{n}.mp4") for n in GRID] == [FRAMES] * len(GRID)
    assert not temporaries(out, scratch)

    # A lock file left by a run that died (its pid gone) does not stop the next run.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid}\n")
    result = reenact("batch", tmp_path / "jobs.csv", "-o", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert report_of(out)["skipped"] == len(GRID) and not lock.exists()


def test_a_checkpoint_with_a_pickle_payload_is_refused(tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": torch.zeros(2), "payload": Payload()}, tmp_path / "critic.pt")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "index.json").write_text("{}")
    result = reenact("train", dataset, "-o", tmp_path / "run", "--phase", "adversarial", "--critic",
                     tmp_path / "critic.pt", "--au-weight", "0.3")
    one_error_line(result, "not a plain checkpoint of tensors, refused")
    assert not marker.exists()  # the payload never ran

    # A training checkpoint as the trainer writes it still loads.
    from reenact.model.io import load_checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 3}, tmp_path / "ok.pt")
    assert load_checkpoint(tmp_path / "ok.pt")["step"] == 3


def test_a_downloaded_landmarker_failing_its_checksum_is_refused(clips: Path, tmp_path: Path) -> None:
    # The download itself is replaced by bytes that are not the published file; the rest is the real path.
    code = """
        import io, urllib.request
        urllib.request.urlopen = lambda url, timeout=None: io.BytesIO(b"not the face landmarker" * 1000)
    """
    env = {k: v for k, v in environment(REENACT_CACHE_DIR=str(tmp_path / "cache")).items()
           if k != "REENACT_FACE_LANDMARKER"}
    result = wrapped(code, "edit", clips / "bbaf2n.mp4", "-o", tmp_path / "out.mp4", "--preset", "happy", env=env)
    one_error_line(result, "sha256")
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing kept


# --------------------------------------------------------------------------- faults (issue part 2)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 KiB tmpfs: a disk that fills up a few frames into the output."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); test_a_full_scratch_folder_is_one_error_and_no_output runs without")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_mid_write_is_one_error_and_no_output(grid_clip, small_disk: Path, tmp_path: Path,
                                                          scratch: Path) -> None:
    clip = grid_clip("bbaf2n", 40, tmp_path / "in.mp4")
    before = sha256(clip)
    output = small_disk / "out.mp4"
    result = reenact("edit", clip, "-o", output, "--preset", "happy", "--crf", "0", env=environment(scratch))
    line = one_error_line(result, f"{output}: writing failed")
    assert "No space left on device" in line
    assert not output.exists() and not list(small_disk.iterdir())  # nothing, not even a temporary
    assert sha256(clip) == before and not temporaries(scratch)


def test_a_full_scratch_folder_is_one_error_and_no_output(grid_clip, tmp_path: Path, scratch: Path) -> None:
    """Portable (no mount): the process may write no file past 64 KiB (RLIMIT_FSIZE, so EFBIG rather than ENOSPC);
    the face track in the scratch folder reaches that first."""
    clip = grid_clip("bbaf2n", 40, tmp_path / "in.mp4")
    before = sha256(clip)
    code = """
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
    """
    output = tmp_path / "out" / "out.mp4"
    output.parent.mkdir()
    result = wrapped(code, "edit", clip, "-o", output, "--preset", "happy", "--crf", "0", env=environment(scratch))
    line = one_error_line(result, f"{scratch}: cannot write the face track to this scratch folder")
    assert "File too large" in line and "TMPDIR" in line
    assert not list(output.parent.iterdir()) and sha256(clip) == before and not temporaries(scratch)


@pytest.mark.parametrize("command", ["edit", "transfer"])
@pytest.mark.parametrize(("signum", "status", "said"), [(signal.SIGTERM, 143, "terminated"),
                                                         (signal.SIGINT, 130, "interrupted")])
def test_a_signal_mid_write_leaves_no_output_and_nothing_temporary(clips: Path, tmp_path: Path, scratch: Path,
                                                                    command: str, signum: int, status: int,
                                                                    said: str) -> None:
    clip = clips / "bbaf2n.mp4"
    before = sha256(clip)
    out = tmp_path / "out"
    out.mkdir()
    output = out / "out.mp4"
    what = ["--preset", "happy"] if command == "edit" else [clips / "bbaf4p.mp4"]
    process = start(command, clip, *what, "-o", output, "--encoder-preset", "ultrafast", env=environment(scratch))
    stderr = signalled(process, lambda: bool(temporaries(out)), signum)  # once writing: its temporary is there
    assert process.returncode == status, stderr
    assert stderr.strip().splitlines()[-1] == f"reenact: {said}; no output written", stderr
    assert "Traceback" not in stderr, stderr
    assert not output.exists() and not temporaries(out, scratch) and sha256(clip) == before


@pytest.mark.parametrize(("signum", "status", "workers", "group"), [
    (signal.SIGTERM, 143, "2", False),  # `kill PID`: to the batch only
    (signal.SIGINT, 130, "1", False),
    (signal.SIGINT, 130, "2", True),  # Ctrl-C at a terminal: to the batch and its workers at once
])
def test_a_signalled_batch_stops_cleanly_and_resumes(clips: Path, tmp_path: Path, scratch: Path, signum: int,
                                                     status: int, workers: str, group: bool) -> None:
    four_jobs(clips, tmp_path / "jobs.csv")
    out = tmp_path / "out"
    outputs = [out / f"{n}.mp4" for n in GRID]
    command = ("batch", tmp_path / "jobs.csv", "-o", out, "--workers", workers, "--quiet")
    process = start(*command, env=environment(scratch), session=group)
    stderr = signalled(process, lambda: any(p.exists() for p in outputs) and bool(temporaries(out)), signum, group)
    assert process.returncode == status, stderr
    assert stderr.strip().splitlines()[-1].endswith("finished outputs are kept; run again to resume"), stderr
    assert "Traceback" not in stderr and "terminate called" not in stderr, stderr
    assert not temporaries(out, scratch), temporaries(out, scratch)
    finished = [p for p in outputs if p.exists()]
    assert finished and len(finished) < len(outputs), "the signal came too late to test resuming"
    for path in finished:
        assert frame_count(path) == FRAMES  # whole
    stopped = {j["output"]: j["status"] for j in report_of(out)["jobs"]}
    assert all(stopped[str(p)] == ("ok" if p in finished else "pending") for p in outputs), stopped

    result = reenact(*command, env=environment(scratch))
    assert result.returncode == 0, result.stderr
    statuses = {j["output"]: j["status"] for j in report_of(out)["jobs"]}
    assert all(statuses[str(p)] == ("skipped" if p in finished else "ok") for p in outputs), statuses
    assert [frame_count(p) for p in outputs] == [FRAMES] * len(outputs)
    assert not temporaries(out, scratch)


def _workers(parent: int) -> list[int]:
    """The pool's worker processes of a batch (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_a_killed_worker_costs_the_batch_nothing(clips: Path, tmp_path: Path, scratch: Path) -> None:
    four_jobs(clips, tmp_path / "jobs.csv")
    out = tmp_path / "out"
    process = start("batch", tmp_path / "jobs.csv", "-o", out, "--workers", "2", "--quiet", env=environment(scratch))
    try:
        wait_for(lambda: bool(temporaries(out)) and bool(_workers(process.pid)), process)
        os.kill(_workers(process.pid)[0], signal.SIGKILL)  # as the kernel's out-of-memory killer would
        _, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr  # the job the worker was running is retried
    report = report_of(out)
    assert [j["status"] for j in report["jobs"]] == ["ok"] * len(GRID), report
    assert [frame_count(out / f"{n}.mp4") for n in GRID] == [FRAMES] * len(GRID)
    assert not temporaries(out, scratch)


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_an_input_cut_while_it_is_read(grid_clip, tmp_path: Path, scratch: Path, how: str) -> None:
    clip = grid_clip("bbaf2n", 40, tmp_path / "in.mp4")
    # Another hand cuts the file once the first frames are read; the reading itself is reenact's own.
    cut = "os.truncate(path, os.path.getsize(path) // 3)" if how == "truncated" else "os.unlink(path)"
    code = f"""
        import os
        from reenact import video
        read = video.VideoReader.__next__
        def cutting(self):
            frame = read(self)
            path = str(self.path)
            if frame.index == 3 and os.path.exists(path):
                {cut}
            return frame
        video.VideoReader.__next__ = cutting
    """
    out = tmp_path / "out"
    out.mkdir()
    output = out / "out.mp4"
    result = wrapped(code, "edit", clip, "-o", output, "--preset", "happy", env=environment(scratch))
    assert not temporaries(out, scratch)
    if how == "truncated":
        one_error_line(result, "truncated or corrupt")
        assert not output.exists()
    elif result.returncode == 0:  # a deleted file stays readable while open: a whole output is right
        assert frame_count(output) == 40
    else:  # or it is reopened for a second pass: then one clear error
        one_error_line(result, "file not found")
        assert not output.exists()


def _writing(pid: int, name: str) -> bool:
    """Whether process ``pid`` has the temporary of output ``name`` open."""
    try:
        return any(f".{name}.tmp-" in os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def kill_writers(process: subprocess.Popen[str], name: str, candidates: Callable[[], list[int]],
                 most: int | None = None) -> tuple[set[int], str]:
    """Until ``process`` ends, SIGKILL (as the kernel's out-of-memory killer would) whichever of ``candidates()``
    has output ``name``'s temporary open, ``most`` times at most; the pids killed and the process's stderr."""
    killed: set[int] = set()
    try:
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            for pid in candidates():
                if (most is None or len(killed) < most) and pid not in killed and _writing(pid, name):
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            time.sleep(0.02)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    return killed, stderr


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_a_job_that_kills_its_worker_every_time_fails_alone(clips: Path, tmp_path: Path, scratch: Path) -> None:
    four_jobs(clips, tmp_path / "jobs.csv")
    out = tmp_path / "out"
    doomed = f"{GRID[1]}.mp4"  # whichever worker writes this output is killed, each time (a clip that runs out of memory)
    process = start("batch", tmp_path / "jobs.csv", "-o", out, "--workers", "2", "--quiet", env=environment(scratch))
    killed, stderr = kill_writers(process, doomed, lambda: _workers(process.pid))
    assert len(killed) == 2  # in the first pool, and again when retried alone
    one_error_line(subprocess.CompletedProcess([], process.returncode, "", stderr), "1 of 4 jobs failed")
    jobs = report_of(out)["jobs"]
    assert [j["status"] for j in jobs] == ["ok", "failed", "ok", "ok"], jobs
    assert "the worker process running it died" in jobs[1]["error"]
    assert [frame_count(out / f"{n}.mp4") for n in GRID if f"{n}.mp4" != doomed] == [FRAMES] * 3
    assert not (out / doomed).exists() and not temporaries(out, scratch)


def test_a_training_checkpoint_with_a_pickle_payload_is_refused(tiny_dataset: Path, tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": {}, "optimizer": {}, "step": Payload()}, run / "checkpoint.pt")  # resumed from
    result = reenact("train", tiny_dataset, "-o", run, "--steps", "1")
    one_error_line(result, "not a plain checkpoint of tensors, refused")
    assert not marker.exists()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
@pytest.mark.usefixtures("require_ray")
@pytest.mark.parametrize("kills", [1, 2])
def test_a_ray_worker_killed_mid_job_is_retried_once(clips: Path, tmp_path: Path, scratch: Path, kills: int) -> None:
    four_jobs(clips, tmp_path / "jobs.csv")
    out = tmp_path / "out"
    doomed = f"{GRID[1]}.mp4"
    # Ray keeps its own files (and sockets, whose paths have a length limit) outside the test's scratch folder.
    env = environment(scratch, RAY_TMPDIR="/tmp")
    process = start("batch", tmp_path / "jobs.csv", "-o", out, "--ray", "local", "--workers", "2", "--quiet", env=env)
    all_processes = lambda: [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]  # noqa: E731
    killed, stderr = kill_writers(process, doomed, all_processes, kills)  # Ray's workers are its raylet's children
    assert len(killed) == kills
    jobs = report_of(out)["jobs"]
    if kills == 1:  # retried, and done the second time
        assert process.returncode == 0, stderr
        assert [j["status"] for j in jobs] == ["ok"] * 4, jobs
    else:  # killed again on its one retry: it fails alone, said as the process pool says it
        one_error_line(subprocess.CompletedProcess([], process.returncode, "", stderr), "1 of 4 jobs failed")
        assert [j["status"] for j in jobs] == ["ok", "failed", "ok", "ok"], jobs
        assert "the worker process running it died" in jobs[1]["error"]
        assert not (out / doomed).exists()
    assert [frame_count(out / f"{n}.mp4") for n in GRID if (out / f"{n}.mp4").exists()] == [FRAMES] * (5 - kills)
    assert not temporaries(out, scratch)
