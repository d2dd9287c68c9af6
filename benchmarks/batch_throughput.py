"""Time `reenact batch` with 1 and 2 worker processes on the same clips, in one run, and print the ratio.

Each run is the whole command (`python -m reenact batch CLIPS -o OUT --preset happy --workers N --quiet`, process
start-up and model loading included) into a fresh folder; throughput is the frames written over the wall time.
With --repeat, the two are run alternately and the best time of each is kept.
Usage: python benchmarks/batch_throughput.py [--clips 6] [--repeat 2] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_batch(clips: Path, out: Path, workers: int) -> tuple[float, int]:
    """Wall seconds and frames written by one `reenact batch` run."""
    command = [sys.executable, "-m", "reenact", "batch", str(clips), "-o", str(out), "--preset", "happy",
               "--workers", str(workers), "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    return seconds, json.loads((out / "batch_report.json").read_text())["frames"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=6, help="GRID clips to edit (75 frames each)")
    parser.add_argument("--repeat", type=int, default=2)
    data = Path(os.environ.get("REENACT_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=data, help="the shared data folder (with train/grid_s1)")
    args = parser.parse_args()
    sources = sorted((args.data / "train" / "grid_s1").glob("*.mp4"))[: args.clips]
    if len(sources) < args.clips:
        sys.exit(f"need {args.clips} GRID clips in {args.data / 'train' / 'grid_s1'}")
    best: dict[int, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        clips.mkdir()
        for source in sources:
            os.symlink(source, clips / source.name)
        for attempt in range(args.repeat):
            for workers in (1, 2):
                seconds, frames = run_batch(clips, Path(tmp) / f"out{workers}_{attempt}", workers)
                speed = frames / seconds
                print(f"  run {attempt + 1}, --workers {workers}: {seconds:.1f} s, {speed:.2f} fps", flush=True)
                if workers not in best or seconds < best[workers][0]:
                    best[workers] = (seconds, frames)
    cores = os.cpu_count()
    print(f"{args.clips} GRID clips, {best[1][1]} frames, --preset happy, {cores} cores; best of {args.repeat}:")
    for workers, (seconds, frames) in best.items():
        print(f"  --workers {workers}: {seconds:6.1f} s wall, {frames / seconds:5.2f} frames/s")
    print(f"2 workers vs 1: {best[1][0] / best[2][0]:.2f}x the throughput")


if __name__ == "__main__":
    main()
