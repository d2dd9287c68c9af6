"""A long `reenact edit`: resident memory over the run, every frame out, the audio still in sync at the end.

The clip is synthetic (`synthetic_clip.py`: scikit-image's astronaut nodding, a hum for audio) at 640x480, with a
sync mark every 10 s: a white square in the corner of one frame and a beep that starts with it. `reenact edit
--preset happy` runs in a child process whose resident memory (VmRSS) is read every second. Reported: the memory at
the end of the first minute (a fifth of the run for runs under five minutes) and its peak after, the frames in and
out, and, for the first and last marks, how far the beep is from its frame in the output (one frame is 40 ms).
Usage: python benchmarks/soak.py [--minutes 60] [--size 640x480] [--preset happy] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
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


def soak_edit(clip: Path, out: Path, preset: str = "happy") -> dict:
    """Run `reenact edit CLIP -o OUT --preset PRESET` in a child process and report on it (see the docstring)."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "reenact", "edit", str(clip), "-o", str(out), "--preset", preset,
                              "--quiet"], stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    while child.poll() is None:
        rss = resident_mb(child.pid)
        if rss is not None:
            samples.append((time.monotonic() - started, rss))
        time.sleep(1.0)
    _, errors = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"reenact edit failed ({child.returncode}): {errors.strip()}")
    seconds = time.monotonic() - started
    warm = min(60.0, seconds / 5)
    after = [rss for t, rss in samples if t >= warm]
    at_warm = after[0] if after else float("nan")
    seen, heard = marks(out)
    offsets = [min((abs(h - v) for h in heard), default=float("inf")) * 1000 for v in seen]
    return {
        "seconds": round(seconds, 1),
        "frames_in": frame_count(clip), "frames_out": frame_count(out),
        "rss_mb_after_warm_up": round(at_warm, 1), "rss_mb_peak_after": round(max(after, default=float("nan")), 1),
        "rss_growth_mb": round(max(after, default=float("nan")) - at_warm, 1), "warm_up_s": round(warm, 1),
        "rss_mb_by_tenth": [round(next((r for t, r in samples if t >= k * seconds / 10), samples[-1][1]), 1)
                            for k in range(10)] if samples else [],
        "marks": len(seen), "sync_ms_first": round(offsets[0], 1) if offsets else None,
        "sync_ms_last": round(offsets[-1], 1) if offsets else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--preset", default="happy")
    parser.add_argument("--keep", type=Path, help="keep the clip and the output in this folder")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        clip = write_synthetic_clip(folder / "soak.mp4", args.minutes * 60, size, FPS, MARKS_EVERY)
        print(f"wrote a {args.minutes:g}-minute {args.size} clip in {time.monotonic() - started:.0f} s", flush=True)
        report = soak_edit(clip, folder / "soak_edited.mp4", args.preset)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
