"""Time `reenact edit` part by part and end to end, next to a plain PyAV decode+encode of the same clip, in one run.

Parts: the clip's first frames are tracked once, then aligned, edited and pasted back one after another in this
thread, with each part of the edit stage timed (ms per frame, best of --repeat): cutting the crop, the motion net,
the splat of its per-landmark moves into a dense flow, the lid and lip remap, the warp, the texture net, the paint
(mouth interior and closed lids), the two masks, the paste-back and its colour match (the model is $REENACT_MODEL,
else models/default). End to end: the threaded pipeline as `reenact edit CLIP --preset happy --no-memory` runs it
(the single pass; benchmarks/face_memory.py measures the face memory's first pass against it) (fps, best of
--repeat), and a plain transcode (libx264 at reenact's default crf and preset, 16 and veryfast) of the same clip.
Usage: python benchmarks/edit_speed.py [CLIP] [--repeat 2] [--frames 100] [--preset happy]
(default CLIP: a 20 s 640x480 synthetic clip)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_clip import write_synthetic_clip  # noqa: E402
from track_vs_transcode import best_of, plain_transcode  # noqa: E402

from reenact import editing, pipeline  # noqa: E402
from reenact.api import GeneratorOptions, edit_video  # noqa: E402
from reenact.editing import ExpressionTarget  # noqa: E402
from reenact.face import align  # noqa: E402
from reenact.face.align import FaceAligner  # noqa: E402
from reenact.face.tracker import FaceTracker  # noqa: E402
from reenact.model import networks  # noqa: E402
from reenact.video import VideoReader  # noqa: E402

# (where the name is looked up, the name, the row it is counted in); pipeline.py and editing.py use the names they
# imported, so those are the ones to time.
PARTS = [
    (pipeline, "crop_face", "crop_face (align stage)"),
    (networks.MotionNet, "displacements", "  motion net"),
    (networks, "fit_through", "  fit the flow through the moves"),
    (networks, "splat", "  splat moves -> dense flow"),
    (networks, "close_gaps", "  close lids and lips (gap remap)"),
    (networks, "warp", "  upsample flow + warp crop"),
    (editing, "warp", "  upsample flow + warp crop"),
    (networks.TextureNet, "forward", "  texture net"),
    (networks.Generator, "paint", "  paint mouth interior and closed lids"),
    (pipeline, "edit_mask", "edit_mask (two face masks)"),
    (pipeline, "paste_back", "paste_back"),
    (align, "_matched_difference", "  colour match + difference"),
]


@contextlib.contextmanager
def timed_parts(totals: dict[str, float], parts: list[tuple[object, str, str]] = PARTS,
                cpu: dict[str, float] | None = None) -> Iterator[None]:
    """Add each part's time to ``totals`` while inside (``parts``: where each function is looked up, its name, the
    row it is counted in); the original functions are back afterwards. ``cpu``: the calling thread's CPU time too
    (without the waits for the other threads, and for the GIL, that wall time counts)."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in parts]

    def timer(fn: Callable, label: str) -> Callable:
        def timed(*args, **kwargs):
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - started
                if cpu is not None:
                    cpu[label] += time.thread_time() - cpu_started

        return timed

    for (owner, name, fn), (_, _, label) in zip(originals, parts):
        setattr(owner, name, timer(fn, label))
    try:
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


def part_times(clip: Path, frames: int, repeat: int, editor_for: Callable[[], pipeline.CropEditor]) -> dict[str, float]:
    """Seconds per frame of each part, and of the align and edit stages, best of ``repeat`` runs over the frames."""
    with VideoReader(clip) as reader, FaceTracker() as tracker:
        tracked = []
        for frame in reader:
            tracked.append(pipeline.FrameState(frame, tracker(frame.image, frame.time)))
            if len(tracked) == frames:
                break
    best: dict[str, float] | None = None
    for _ in range(repeat):
        totals: dict[str, float] = defaultdict(float)
        editor = editor_for()

        def timed_editor(*args, editor=editor, totals=totals):
            started = time.perf_counter()
            result = editor(*args)
            totals["edit (GeneratorEditor)"] += time.perf_counter() - started
            return result

        align_stage, edit_stage = pipeline.AlignStage(FaceAligner()), pipeline.EditPasteStage(timed_editor)
        with timed_parts(totals):
            for state in tracked:
                state = pipeline.FrameState(state.frame, state.face)
                for label, stage in (("align stage", align_stage), ("edit stage (edit + masks + paste)", edit_stage)):
                    started = time.perf_counter()
                    state = stage(state)
                    totals[label] += time.perf_counter() - started
        if best is None or sum(totals.values()) < sum(best.values()):
            best = dict(totals)
    return {label: seconds / len(tracked) for label, seconds in (best or {}).items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path, nargs="?")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--frames", type=int, default=100, help="frames timed part by part (default 100)")
    parser.add_argument("--preset", default="happy")
    args = parser.parse_args()
    target = ExpressionTarget(preset=args.preset)

    def editor_for() -> pipeline.CropEditor:
        return GeneratorOptions().editor(target)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = args.clip or write_synthetic_clip(folder / "synthetic.mp4", 20, (640, 480))
        frames = plain_transcode(clip, folder / "warmup.mp4")
        load_before = os.getloadavg()[0]
        parts = part_times(clip, args.frames, args.repeat, editor_for)
        plain = best_of(args.repeat, lambda: plain_transcode(clip, folder / "plain.mp4"))
        # As the CLI reports it: from opening the clip to the last frame written, the model already loaded.
        edited = min(edit_video(clip, folder / "edited.mp4", editor_for()).seconds for _ in range(args.repeat))
        load_after = os.getloadavg()[0]
    print(f"clip: {clip.name if args.clip else 'synthetic 640x480, 20 s'}, {frames} frames; --preset {args.preset}; "
          f"torch threads {torch.get_num_threads()}; load average {load_before:.2f} before, {load_after:.2f} after")
    timed = min(args.frames, frames)
    print(f"ms per frame over the first {timed} frames, stages one after another (best of {args.repeat}):")
    # The stages, then each part in PARTS's order (the editor's parts under it).
    part_labels = list(dict.fromkeys(label for *_, label in PARTS))
    rows = ["align stage", part_labels[0], "edit stage (edit + masks + paste)", "edit (GeneratorEditor)", *part_labels[1:]]
    for label in rows:
        if label in parts:
            print(f"  {label:36s} {1000 * parts[label]:7.2f}")
    print(f"plain PyAV decode+encode: {plain:.2f} s ({frames / plain:.1f} fps)")
    print(f"reenact edit (pipeline):  {edited:.2f} s ({frames / edited:.1f} fps)")
    print(f"ratio edit / transcode:   {edited / plain:.2f}x")

if __name__ == "__main__":
    main()
