"""What the paste-back's colour match fits, against the source crop and against the warped source, side by side.

The colour match undoes a generator's global colour drift: a per-channel gain and offset of the edited crop against
a reference, fitted pixel by pixel inside the face (``reenact.face.align.colour_drift``). For each single-AU edit
of ``reenact eval`` and each preset, on the first frame of each held-out clip's source video at the pipeline's crop
size (``reenact edit``'s tracking, alignment and editor, no time smoothing): the mean fitted gain over the channels
and the frames (and the lowest), and the mean change (0-255) that undoing the fit makes inside the face, with the
source crop as the reference (as before stop 16) and with the source as the edit warped it (as now).
Usage: python probes/colour_match.py DATASET --split RUN/split.json [--model default]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from reenact.api import GeneratorOptions, TrackingOptions
from reenact.evaluate import expression_targets
from reenact.face.align import FaceAligner, colour_drift, edit_mask
from reenact.face.tracker import FaceTracker
from reenact.pipeline import AlignStage, EditedCrop, FrameState, TrackStage
from reenact.video import VideoReader

sys.path.insert(0, str(Path(__file__).parent))
from held_out import held_out_parser  # noqa: E402


def first_faces(videos: list[str], tracking: TrackingOptions) -> list[FrameState]:
    """Each video's first frame, tracked and aligned as ``reenact edit`` does it (frames without a face left out)."""
    states = []
    for video in videos:
        with VideoReader(video) as reader, FaceTracker(tracking.face_model, tracking.face) as tracker:
            state = AlignStage(FaceAligner(tracking.crop_size))(TrackStage(tracker)(next(iter(reader))))
        if state.face is not None:
            states.append(state)
    return states


def correction(edited: np.ndarray, fits: list[tuple[float, float]], inside: np.ndarray) -> float:
    """Mean absolute change (0-255) inside the face that undoing ``fits`` makes to ``edited``."""
    pixels = edited[inside].astype(np.float64)
    undone = np.stack([(pixels[:, c] - offset) / gain for c, (gain, offset) in enumerate(fits)], axis=1)
    return float(np.abs(undone - pixels).mean())


def main() -> None:
    parser = held_out_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    people = json.loads(args.split.read_text())["validation"]
    index = json.loads((args.dataset / "index.json").read_text())
    videos = sorted({clip["source"] for clip in index["clips"] if clip["identity"] in people})
    tracking = TrackingOptions()
    states = first_faces(videos, tracking)
    edits = [(name, target) for name, target in expression_targets() if name != "neutral"]
    generator = GeneratorOptions(args.model, smooth=False, device="cpu")
    print(f"{len(states)} held-out clips' first frames, {tracking.crop_size}² crops")
    print(f"{'edit':10s} {'against the source: gain (lowest), change':>44s}   {'against the warped source':>32s}")
    rows = []
    for name, target in edits:
        editor = generator.editor(target)
        figures = []
        for state in states:
            edited = editor(state.crop, state.face, state.alignment, 0.0)
            if not isinstance(edited, EditedCrop):  # nothing to change on this face
                continue
            mask = edit_mask(state.alignment.to_crop(state.face.xy), edited.moved, tracking.crop_size)
            for reference in (state.crop, edited.reference):
                fits = colour_drift(edited.image, reference, mask)
                figures.append((np.mean([g for g, _ in fits]), correction(edited.image, fits, mask >= 0.5)))
        source, warped = np.array(figures[0::2]), np.array(figures[1::2])
        row = {"edit": name, "frames": len(source)}
        for label, figures_of in (("source", source), ("warped", warped)):
            row |= {f"{label}_gain": round(float(figures_of[:, 0].mean()), 3),
                    f"{label}_gain_lowest": round(float(figures_of[:, 0].min()), 3),
                    f"{label}_change": round(float(figures_of[:, 1].mean()), 2)}
        rows.append(row)
        print(f"{name:10s} {row['source_gain']:>22.3f} ({row['source_gain_lowest']:.3f}), "
              f"{row['source_change']:5.2f}/255   {row['warped_gain']:>14.3f} ({row['warped_gain_lowest']:.3f}), "
              f"{row['warped_change']:5.2f}/255", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
