"""`reenact live` on a clip paced like a 25 fps camera: output fps against the input's, and latency, in one run.

Runs the same paced input twice side by side: with the generator (`--preset happy`) and with tracking only (an
empty edit, which skips the generator and the paste-back), so the difference shows what editing costs live.
Latency is from a frame's capture (its due time) to its output being encoded to the file.
Usage: python benchmarks/live_latency.py [CLIP] [--seconds 20] [--size 640x480]
       (default CLIP: a synthetic astronaut clip of that size)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_clip import write_synthetic_clip  # noqa: E402

from reenact.editing import parse_au_edit  # noqa: E402
from reenact.live import LiveControl, LiveInput, LiveOutputs, LiveReport, run_live  # noqa: E402


def run(clip: Path, out: Path, control: LiveControl, seconds: float) -> LiveReport:
    return run_live(LiveInput(url=str(clip), realtime=True), LiveOutputs(file=out, preview=False), control,
                    max_seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", type=Path)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or write_synthetic_clip(Path(tmp) / "clip.mp4", args.seconds + 2, (width, height))
        edit = run(clip, Path(tmp) / "edit.mp4", LiveControl(preset="happy"), args.seconds)
        plain = run(clip, Path(tmp) / "plain.mp4", LiveControl(edits=(parse_au_edit("AU12=+0"),)), args.seconds)
    input_fps = edit.captured / edit.seconds
    for name, r in (("edit --preset happy", edit), ("tracking only", plain)):
        lat = r.latency_ms
        print(f"{name:>20}: {r.fps:5.1f} fps out of {r.captured / r.seconds:4.1f} in "
              f"({r.fps / input_fps:.2f} of real time), {r.dropped} dropped, latency p50 {lat['p50']:.0f} ms "
              f"p95 {lat['p95']:.0f} ms max {lat['max']:.0f} ms")
    print(f"editing costs, live: {plain.fps / max(edit.fps, 1e-9):.2f}x fewer frames out, "
          f"+{edit.latency_ms['p50'] - plain.latency_ms['p50']:.0f} ms median latency")


if __name__ == "__main__":
    main()
