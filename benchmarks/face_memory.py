"""What the face memory costs: per frame, and a whole `reenact edit` with its first pass against one pass, side by side.

The clip is resized to --size and looped to --seconds (a real talking clip: the memory needs open mouths and blinks
to keep). Per frame: the memory's own work in the first pass (reading the openings, cutting the patches it keeps)
and in the edit (choosing, warping, colour-matching and blending an entry where the edit paints), timed inside the
real job. End to end: `reenact edit CLIP --preset P` with the memory (a first pass that tracks and fills it, then
the edit from the kept track) against `--no-memory` (today's single pass), best of --repeat, alternated.
With ``--before DIR`` (a checkout of an earlier reenact, e.g. ``git worktree add ../before 8e04e3c``, the last
commit before the memory): the whole ``reenact edit`` command, start-up included, of that checkout (its one pass)
against this one's, with the memory and with ``--no-memory``, alternated.
Usage: python benchmarks/face_memory.py CLIP [--size 640x480] [--seconds 10] [--preset surprised | --au AU45=+3]
       [--repeat 2] [--before DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).parent))
from edit_speed import timed_parts  # noqa: E402

from reenact import memory as memory_module  # noqa: E402
from reenact.api import GeneratorOptions, edit_expression  # noqa: E402
from reenact.editing import ExpressionTarget  # noqa: E402
from reenact.video import VideoReader, probe  # noqa: E402


def resized_loop(clip: Path, out: Path, size: tuple[int, int], seconds: float) -> Path:
    """``clip`` resized to ``size`` and played forwards again and again until ``seconds`` long (no audio)."""
    import av

    fps = round(float(probe(clip).fps or 25))
    with VideoReader(clip) as reader:
        frames = [cv2.resize(f.image, size, interpolation=cv2.INTER_CUBIC) for f in reader]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(int(seconds * fps)):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")))
        container.mux(stream.encode())
    return out


# The memory's two jobs, timed inside a real run.
MEMORY_PARTS = [(memory_module.FaceMemory, "observe", "observe"), (memory_module.MemoryCompositor, "__call__", "composite")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--preset", help="the edit (default surprised, which opens the mouth)")
    parser.add_argument("--au", action="append", default=[], help="an AU edit instead, e.g. AU45=+3 (closes the eyes)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a checkout of an earlier reenact to time the whole command of")
    args = parser.parse_args()
    if args.preset is None and not args.au:
        args.preset = "surprised"
    size = tuple(int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        clip = resized_loop(args.clip, Path(tmp) / "clip.mp4", size, args.seconds)
        frames = probe(clip).frame_count
        target = ExpressionTarget(edits=tuple(args.au), preset=args.preset)
        best: dict[str, float] = {}
        totals: dict[str, float] = defaultdict(float)
        cpu: dict[str, float] = defaultdict(float)
        for _ in range(args.repeat):
            for name, memory in (("one pass, paint (--no-memory)", False), ("first pass + edit, memory", True)):
                started = time.perf_counter()
                with timed_parts(totals, MEMORY_PARTS, cpu) if memory else contextlib.nullcontext():
                    edit_expression(clip, Path(tmp) / "out.mp4", target, GeneratorOptions(memory=memory))
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    print(f"{args.clip.name} as {args.size}, {frames} frames, {' '.join(edit_args(args))}, best of {args.repeat}:")
    for name, seconds in best.items():
        print(f"  {name:32s} {seconds:7.2f} s  {frames / seconds:6.1f} fps")
    one, two = best["one pass, paint (--no-memory)"], best["first pass + edit, memory"]
    print(f"  ratio (memory / one pass): {two / one:.3f}x")
    runs = args.repeat * frames
    print(f"  memory's own work per frame: observe {1000 * totals['observe'] / runs:.2f} ms (first pass), "
          f"composite {1000 * totals['composite'] / runs:.2f} ms (edit); its threads' CPU time: "
          f"{1000 * cpu['observe'] / runs:.2f} and {1000 * cpu['composite'] / runs:.2f} ms")
    if args.before is not None:
        whole_commands(args, size)


def edit_args(args) -> list[str]:
    """The edit as `reenact edit` options."""
    return (["--preset", args.preset] if args.preset else []) + [f"--au={edit}" for edit in args.au]


def whole_commands(args, size: tuple[int, int]) -> None:
    """The whole `reenact edit` command of ``args.before`` (its one pass) against this checkout's, alternated."""
    here = Path(__file__).resolve().parents[1]
    jobs = {f"{args.before.name}: one pass": (args.before, []), "this: two passes, memory": (here, []),
            "this: one pass (--no-memory)": (here, ["--no-memory"])}
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = resized_loop(args.clip, Path(tmp) / "clip.mp4", size, args.seconds)
        for _ in range(args.repeat):
            for name, (tree, extra) in jobs.items():
                out = Path(tmp) / "out.mp4"
                out.unlink(missing_ok=True)
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "reenact", "edit", str(clip), "-o", str(out), *edit_args(args),
                                "--quiet", *extra], cwd=tree, env=os.environ | {"PYTHONPATH": str(tree)}, check=True)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    print(f"the whole command, start-up included, best of {args.repeat}:")
    for name, seconds in best.items():
        print(f"  {name:36s} {seconds:7.2f} s")
    two = best["this: two passes, memory"]
    print(f"  two passes over {args.before.name}'s one pass: {two / best[f'{args.before.name}: one pass']:.3f}x; "
          f"over this one pass: {two / best['this: one pass (--no-memory)']:.3f}x")


if __name__ == "__main__":
    sys.exit(main())
