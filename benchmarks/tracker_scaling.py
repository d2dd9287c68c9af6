"""The first pass's tracking throughput with 1, 2, 4 and 8 trackers side by side, in one run.

A file job's first pass cuts the clip into consecutive segments, each tracked by its own MediaPipe tracker in a
thread of its own (MediaPipe releases the GIL, so the trackers run in parallel as processes would, with no frames
copied between processes), each tracker first following the face over a few frames before its segment so the
landmarks are continuous at the seams. This times that pass (decode, MediaPipe, the track written to disk) for each
number of trackers, alternated, best of --repeat, and the landmarks' largest jump at a seam against the clip's
largest jump between neighbouring frames elsewhere. The default job uses one tracker per core, at most 4.
Usage: python benchmarks/tracker_scaling.py [CLIP] [--repeat 2] [--trackers 1 2 4 8]
(default CLIP: a 20 s 640x480 synthetic clip)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_clip import write_synthetic_clip  # noqa: E402

from reenact.face.tracker import FaceTracker  # noqa: E402
from reenact.tracking import TrackingOptions  # noqa: E402
from reenact.tracks import FaceTrack, segment_starts  # noqa: E402
from reenact.video import probe  # noqa: E402


def first_pass(clip: Path, trackers: int, folder: Path) -> tuple[float, np.ndarray, np.ndarray]:
    """(seconds, the track's landmarks (N, 478, 2) in pixels, which frames have a face)."""
    tracking = TrackingOptions()
    info = probe(clip)
    started = time.perf_counter()
    track = FaceTrack.record(info, lambda: FaceTracker(tracking.face_model, tracking.face), folder,
                             tracking.crop_size, segments=trackers)
    seconds = time.perf_counter() - started
    points = np.stack([track.face(i).xy if track.found[i] else np.zeros((478, 2)) for i in range(len(track.found))])
    found = track.found.copy()
    track.close()
    return seconds, points, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--trackers", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or write_synthetic_clip(Path(tmp) / "clip.mp4", 20.0, (640, 480))
        frames = probe(clip).frame_count or 0
        best: dict[int, float] = {}
        tracks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for _ in range(args.repeat):
            for n in args.trackers:
                folder = Path(tmp) / f"track{n}"
                folder.mkdir(exist_ok=True)
                seconds, points, found = first_pass(clip, n, folder)
                best[n] = min(best.get(n, seconds), seconds)
                tracks[n] = points, found
        print(f"clip: {clip.name}, {frames} frames; {os.cpu_count()} cores")
        base = best[args.trackers[0]]
        for n in args.trackers:
            points, found = tracks[n]
            steps = np.linalg.norm(np.diff(points, axis=0), axis=2).max(axis=1)  # largest landmark move, per step
            both = found[1:] & found[:-1]
            seams = [s - 1 for s in segment_starts(frames, n)[1:]]  # the step into each segment's first frame
            seam = max((steps[s] for s in seams if both[s]), default=0.0)
            elsewhere = np.delete(steps, seams)[np.delete(both, seams)].max()
            print(f"{n} tracker(s), {len(seams) + 1} segment(s): {best[n]:6.2f} s, {frames / best[n]:6.1f} fps "
                  f"({base / best[n]:.2f}x {args.trackers[0]}); largest landmark jump at a seam {seam:.1f} px, "
                  f"elsewhere {elsewhere:.1f} px")


if __name__ == "__main__":
    main()
