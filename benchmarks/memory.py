"""Peak memory of `reenact track` (or, with --edit, of `reenact edit --preset surprised`: the face memory's first
pass and the edit) on a 10-second and a 10-minute synthetic clip, each in a fresh process.

The pipeline streams (bounded queues, no frame lists), and the first pass keeps its track in a file read back a
frame at a time, so the long clip should cost no more memory than the short one. Prints both peaks and their
difference. Usage: python benchmarks/memory.py [--long-seconds 600] [--edit]
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
from synthetic_clip import write_synthetic_clip  # noqa: E402

MEASURE = """
import json, resource, sys, time
from reenact.api import edit_expression, track_video
from reenact.editing import ExpressionTarget
started = time.perf_counter()
if sys.argv[3] == "edit":
    report = edit_expression(sys.argv[1], sys.argv[2], ExpressionTarget(preset="surprised"))
else:
    report = track_video(sys.argv[1], sys.argv[2])
print(json.dumps({"frames": report.frames, "faces": report.faces_found, "seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(clip: Path, out: Path, job: str = "track") -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", MEASURE, str(clip), str(out), job], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short-seconds", type=float, default=10)
    parser.add_argument("--long-seconds", type=float, default=600)
    parser.add_argument("--edit", action="store_true", help="measure reenact edit (two passes) instead of track")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = {}
        for name, seconds in (("short", args.short_seconds), ("long", args.long_seconds)):
            started = time.perf_counter()
            clip = write_synthetic_clip(folder / f"{name}.mp4", seconds)
            print(f"{name}: wrote {seconds:.0f} s clip in {time.perf_counter() - started:.0f} s", flush=True)
            runs[name] = measure(clip, folder / f"{name}_out.mp4", "edit" if args.edit else "track")
            print(f"{name}: {runs[name]}", flush=True)
    delta = runs["long"]["peak_rss_mb"] - runs["short"]["peak_rss_mb"]
    print(
        f"peak RSS: {runs['short']['peak_rss_mb']:.0f} MB for {args.short_seconds:.0f} s, "
        f"{runs['long']['peak_rss_mb']:.0f} MB for {args.long_seconds:.0f} s: +{delta:.0f} MB"
    )


if __name__ == "__main__":
    main()
