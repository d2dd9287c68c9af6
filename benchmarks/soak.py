"""A long `reenact edit`: resident memory over the run, every frame out, the audio still in sync at the end.

The clip is synthetic (`synthetic_clip.py`: scikit-image's astronaut nodding, a hum for audio) at 640x480, with a
sync mark every 10 s: a white square in the corner of one frame and a beep that starts with it. `reenact edit
--preset happy` runs in a child process whose resident memory (VmRSS) is read every second. Reported: the memory at
the end of the first minute (a fifth of the run for runs under five minutes) and its peak after, the frames in and
out, and, for the first and last marks, how far the beep is from its frame in the output (one frame is 40 ms).

With ``--live``, `reenact live --realtime --loop` runs instead on a one-minute clip looped for the whole run, paced
like a camera: reported are the p95 latency of each minute (the last against the first shows any build-up), the
frames out and dropped, and the resident memory as above. A fresh one-minute run follows: the long run's last
minute against its first, both under whatever else the machine is doing then, tells build-up from other load.
Usage: python benchmarks/soak.py [--minutes 60] [--size 640x480] [--preset happy] [--keep DIR] [--live]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_clip import marks, write_synthetic_clip  # noqa: E402

MARKS_EVERY = 10.0  # seconds between sync marks
FPS = 25


def resident_mb(pid: int) -> float | None:
    """A running process's resident memory (VmRSS), or None once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.demux(video=0) if _.size)  # packets with data: one a frame


def _edit_pass_started(out: Path) -> bool:
    """The edit pass has begun once the output's temporary file exists (the first pass writes nothing)."""
    return any(out.parent.glob(f".{out.name}.tmp-*")) or out.exists()


def _growth(samples: list[tuple[float, float]], since: float) -> tuple[float, float]:
    """Resident memory one minute after ``since`` (a fifth of what follows for short runs) and the most after it."""
    end = samples[-1][0] if samples else since
    warm = since + min(60.0, (end - since) / 5)
    after = [rss for t, rss in samples if t >= warm]
    return (after[0], max(after)) if after else (float("nan"), float("nan"))


def _watch(argv: list[str], mark: Callable[[], bool] = lambda: False) -> tuple[list[tuple[float, float]], float,
                                                                             float | None]:
    """Run a reenact command in a child process, reading its resident memory every second.

    Returns the (seconds, MB) samples, the run's length, and when ``mark`` first held (None if never)."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "reenact", *argv], stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    marked: float | None = None
    while child.poll() is None:
        now = time.monotonic() - started
        rss = resident_mb(child.pid)
        if rss is not None:
            samples.append((now, rss))
        if marked is None and mark():
            marked = now
        time.sleep(1.0)
    _, errors = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"reenact {argv[0]} failed ({child.returncode}): {errors.strip()}")
    return samples, time.monotonic() - started, marked


def soak_edit(clip: Path, out: Path, preset: str = "happy") -> dict:
    """Run `reenact edit CLIP -o OUT --preset PRESET` in a child process and report on it (see the docstring).

    The job has two passes (tracking, then editing): memory is reported for the whole run and for the edit pass
    alone, whose start allocates the encoder and the generator's working memory once.
    """
    samples, seconds, edit_from = _watch(["edit", str(clip), "-o", str(out), "--preset", preset, "--quiet"],
                                         lambda: _edit_pass_started(out))
    at_warm, peak = _growth(samples, 0.0)
    edit_warm, edit_peak = _growth(samples, edit_from if edit_from is not None else 0.0)
    seen, heard = marks(out)
    offsets = [min((abs(h - v) for h in heard), default=float("inf")) * 1000 for v in seen]
    return {
        "seconds": round(seconds, 1), "edit_pass_from_s": edit_from,
        "frames_in": frame_count(clip), "frames_out": frame_count(out),
        "rss_mb_after_warm_up": round(at_warm, 1), "rss_mb_peak_after": round(peak, 1),
        "rss_growth_mb": round(peak - at_warm, 1),
        "edit_pass_rss_mb_after_warm_up": round(edit_warm, 1), "edit_pass_rss_growth_mb": round(edit_peak - edit_warm, 1),
        "rss_mb_by_tenth": [round(next((r for t, r in samples if t >= k * seconds / 10), samples[-1][1]), 1)
                            for k in range(10)] if samples else [],
        "marks": len(seen), "sync_ms_first": round(offsets[0], 1) if offsets else None,
        "sync_ms_last": round(offsets[-1], 1) if offsets else None,
    }


def _live_run(clip: Path, out: Path, seconds: float, preset: str) -> tuple[dict, list[tuple[float, float]], float]:
    """`reenact live --realtime --loop` on CLIP for SECONDS in a child process: its report, memory samples, length."""
    report_path = out.with_suffix(".json")
    samples, length, _ = _watch(["live", "--input", str(clip), "--loop", "--realtime", "--preset", preset,
                                 "--output", str(out), "--max-seconds", f"{seconds:g}", "--report", str(report_path),
                                 "--quiet"])
    return json.loads(report_path.read_text()), samples, length


def soak_live(clip: Path, out: Path, minutes: float, preset: str = "happy", fresh: bool = True) -> dict:
    """`reenact live --realtime --loop` on CLIP for MINUTES: latency by minute, frames, memory.

    ``fresh``: then a fresh one-minute run on the same machine, right after: the long run's last minute against a
    fresh run's first under the same conditions shows a build-up apart from other load on the machine."""
    report, samples, seconds = _live_run(clip, out, minutes * 60, preset)
    by_minute = report["latency_p95_ms_by_minute"]
    whole = by_minute[: int(report["seconds"] // 60)]  # the run's whole minutes (the last, started one is short)
    at_warm, peak = _growth(samples, 0.0)
    result = {
        "seconds": round(seconds, 1), "captured": report["captured"], "frames_out": report["output_frames"],
        "dropped": report["dropped"], "fps": report["fps"], "latency_ms": report["latency_ms"],
        "p95_first_minute_ms": whole[0] if whole else None, "p95_last_minute_ms": whole[-1] if whole else None,
        "p95_last_over_first": round(whole[-1] / whole[0], 3) if whole else None,
        "p95_by_minute_ms": by_minute, "frames_out_by_minute": report["frames_out_by_minute"],
        "rss_mb_after_warm_up": round(at_warm, 1), "rss_growth_mb": round(peak - at_warm, 1),
    }
    if fresh and whole:
        again, _, _ = _live_run(clip, out.with_name(f"fresh_{out.name}"), 61.0, preset)
        first = again["latency_p95_ms_by_minute"][0]
        result |= {"fresh_run_p95_first_minute_ms": first, "p95_last_over_fresh_first": round(whole[-1] / first, 3)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--preset", default="happy")
    parser.add_argument("--keep", type=Path, help="keep the clip and the output in this folder")
    parser.add_argument("--live", action="store_true", help="soak reenact live on a looped one-minute clip instead")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        clip_minutes = min(1.0, args.minutes) if args.live else args.minutes
        clip = write_synthetic_clip(folder / "soak.mp4", clip_minutes * 60, size, FPS, MARKS_EVERY)
        print(f"wrote a {clip_minutes:g}-minute {args.size} clip in {time.monotonic() - started:.0f} s", flush=True)
        if args.live:
            report = soak_live(clip, folder / "soak_live.mp4", args.minutes, args.preset)
        else:
            report = soak_edit(clip, folder / "soak_edited.mp4", args.preset)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
