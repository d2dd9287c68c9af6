"""Time `reenact track` against a plain PyAV decode+encode of the same clip, in one run, and print the ratio.

Both encode H.264 with libx264 at reenact's default crf and preset (16, veryfast), from the same decoded frames; the
ratio is what tracking, alignment, drawing and the pipeline cost on top of the unavoidable video work.
Usage: python benchmarks/track_vs_transcode.py [CLIP] [--repeat 2]  (default CLIP: a 20 s 640x480 synthetic clip)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_clip import write_synthetic_clip  # noqa: E402

from reenact.api import track_video  # noqa: E402
from reenact.encoding import DEFAULT_CRF, DEFAULT_PRESET  # noqa: E402


def plain_transcode(clip: Path, out: Path) -> int:
    with av.open(str(clip)) as source, av.open(str(out), "w") as target:
        src = source.streams.video[0]
        src.thread_type = "AUTO"
        dst = target.add_stream("libx264", rate=src.average_rate, options={"crf": str(DEFAULT_CRF), "preset": DEFAULT_PRESET})
        dst.width, dst.height, dst.pix_fmt = src.width, src.height, "yuv420p"
        frames = 0
        for frame in source.decode(src):
            for packet in dst.encode(frame.reformat(format="yuv420p")):
                target.mux(packet)
            frames += 1
        for packet in dst.encode():
            target.mux(packet)
    return frames


def best_of(repeat: int, job) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path, nargs="?")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = args.clip or write_synthetic_clip(folder / "synthetic.mp4", 20, (640, 480))
        frames = plain_transcode(clip, folder / "warmup.mp4")
        plain = best_of(args.repeat, lambda: plain_transcode(clip, folder / "plain.mp4"))
        tracked = best_of(args.repeat, lambda: track_video(clip, folder / "tracked.mp4"))
    print(f"clip: {clip.name if args.clip else 'synthetic 640x480, 20 s'}, {frames} frames")
    print(f"plain PyAV decode+encode: {plain:.2f} s ({frames / plain:.1f} fps)")
    print(f"reenact track:            {tracked:.2f} s ({frames / tracked:.1f} fps)")
    print(f"ratio track / transcode:  {tracked / plain:.2f}x")


if __name__ == "__main__":
    main()
