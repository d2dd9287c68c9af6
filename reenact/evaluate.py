"""Metrics for a generator on people it never trained on.

- Self-reenactment: rebuild frame B of a clip from frame A and B's AUs (B moved onto A's head pose by a 2-D
  similarity) and, for a model with head-pose motion, B's head turn from A (what ``reenact transfer --pose``
  follows); PSNR, L1 and SSIM inside B's face mask, against the baseline of copying A. Also reported with the AUs
  alone (``reenact transfer``'s default, which keeps the source's head).
- AU fidelity: edit faces toward single-AU targets and measure each edit, pasted back into its source as ``reenact
  edit`` pastes it, with reenact's own MediaPipe-based AU reader (never with a network the generator was trained
  against): the share of the requested change that shows, and how far the other AUs move.
- Flicker: mean frame-to-frame change inside the face over an edited clip, against the source clip's own.
- Identity: dlib's face descriptor distance between each face and its edits, pasted back alike (optional extra
  ``reenact[eval]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from reenact.face.align import Alignment, edit_mask, paste_back
from reenact.face.aus import AU_NAMES, blendshapes_to_aus, coupled_aus
from reenact.face.tracker import FaceObservation, FaceTracker
from reenact.model.coords import denormalise
from reenact.model.networks import Generator
from reenact.train.dataset import PreparedClip
from reenact.train.pairs import PairBatch, PairSampler

if TYPE_CHECKING:
    from reenact.api import GeneratorOptions, TrackingOptions
    from reenact.editing import ExpressionTarget

# The single-AU edits the acceptance asks about: (name, {AU: change}).
SINGLE_AU_EDITS: tuple[tuple[str, dict[str, float]], ...] = (
    ("AU12", {"AU12": 2.0}),
    ("AU26", {"AU26": 2.0}),
    ("AU45", {"AU45": 3.0}),
    ("AU01+AU02", {"AU01": 2.0, "AU02": 2.0}),
    ("AU04", {"AU04": 2.0}),
    ("AU15", {"AU15": 2.0}),
)


def edited_and_others(change: dict[str, float]) -> tuple[list[int], list[int]]:
    """The AU_NAMES positions of a single-AU edit's AUs, and of every other AU."""
    edited = [AU_NAMES.index(au) for au in change]
    return edited, [i for i in range(len(AU_NAMES)) if i not in edited]


def expression_targets(presets: bool = True) -> list[tuple[str, ExpressionTarget]]:
    """(name, the ExpressionTarget that ``reenact edit`` builds) for each single-AU edit, in SINGLE_AU_EDITS's order
    and named as there, then (``presets``) each preset."""
    from reenact.editing import AUEdit, ExpressionTarget
    from reenact.model.presets import PRESETS

    targets = [(name, ExpressionTarget(tuple(AUEdit(au, delta, True) for au, delta in change.items())))
               for name, change in SINGLE_AU_EDITS]
    if presets:
        targets += [(preset, ExpressionTarget(preset=preset)) for preset in PRESETS]
    return targets


def edit_targets(aus: np.ndarray, presets: bool = True) -> list[tuple[str, np.ndarray]]:
    """(name, target AUs) for each single-AU edit (named with a '+') and each preset (``expression_targets``) of the
    rows of ``aus``."""
    return [(f"{name}+" if i < len(SINGLE_AU_EDITS) else name,
             np.stack([target(row, 0.0) for row in aus]).astype(np.float32))
            for i, (name, target) in enumerate(expression_targets(presets))]


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR of float images in [0, 1] (..., H, W, C or C, H, W broadcastable with mask) inside the mask."""
    mse = float(((a - b) ** 2 * mask).sum() / (mask.sum() * 3 + 1e-8))
    return 10 * np.log10(1.0 / max(mse, 1e-10))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5) over the mask, on the grey images (H, W) in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    ssim = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float((ssim * mask).sum() / (mask.sum() + 1e-8))


@dataclass(frozen=True)
class SelfReenactment:
    pairs: int
    psnr: float
    psnr_copy: float
    l1: float
    l1_copy: float
    ssim: float
    ssim_copy: float


def draw_pairs(clips: list[PreparedClip], pairs: int = 256, seed: int = 7,
               max_pose_change: float | None = None) -> PairBatch:
    """``pairs`` pairs of distinct frames with images (B never A itself: that pair is trivially perfect for both
    model and copy); ``max_pose_change`` keeps pairs whose head angles differ by at most that (degrees)."""
    return PairSampler(clips, seed=seed, distinct=True, max_pose_change=max_pose_change).sample(pairs, images=True)


def self_reenactment(model: Generator, clips: list[PreparedClip], pairs: int = 256, seed: int = 7,
                     max_pose_change: float | None = None, follow_pose: bool = True) -> SelfReenactment:
    """Rebuild B from A on pairs from ``draw_pairs``. ``follow_pose``: a model with head-pose motion is also given
    B's head turn from A."""
    return score_pairs(model, draw_pairs(clips, pairs, seed, max_pose_change), follow_pose)


@torch.no_grad()
def score_pairs(model: Generator, batch: PairBatch, follow_pose: bool = True) -> SelfReenactment:
    """Self-reenactment on pairs already drawn (with images), so several settings can share one draw."""
    pose = batch.pose_change if follow_pose and model.config.n_pose else None
    out = generate_outputs(model, batch, batch.aus_b, pose)
    rows = []
    for o, a, b, m in zip(out, batch.image_a, batch.image_b, batch.mask_b):
        grey = lambda x: x.mean(axis=0)  # noqa: E731
        rows.append((
            masked_psnr(o, b, m), masked_psnr(a, b, m),
            float((np.abs(o - b) * m).sum() / (m.sum() * 3)), float((np.abs(a - b) * m).sum() / (m.sum() * 3)),
            masked_ssim(grey(o), grey(b), m[0]), masked_ssim(grey(a), grey(b), m[0]),
        ))
    means = np.mean(rows, axis=0)
    return SelfReenactment(len(batch.image_a), *map(float, means))


@torch.no_grad()
def generate_outputs(model: Generator, batch: PairBatch, target_aus: np.ndarray, pose_change: np.ndarray | None = None,
                     chunk: int = 64, asked: bool = False, pasted: bool = False) -> np.ndarray:
    """Outputs for A of each pair; ``asked``: the targets are edits (as ``reenact edit``), not B's readings.
    ``pasted``: each output put back into A's crop as ``reenact edit`` puts a crop back into its frame (inside the
    face where the landmarks were and went, colour-matched, rounded to 8 bits): what a user gets. The raw output
    also holds what the texture step does outside the face, which the paste-back drops."""
    outs = []
    for i in range(0, len(batch.image_a), chunk):
        s = slice(i, i + chunk)
        result = model(
            torch.from_numpy(batch.image_a[s]), torch.from_numpy(batch.landmarks_a[s]),
            torch.from_numpy(batch.aus_a[s]), torch.from_numpy(np.ascontiguousarray(target_aus[s])),
            pose_change=None if pose_change is None else torch.from_numpy(pose_change[s]), asked=asked,
        )
        out = result["output"].numpy()
        if pasted:
            out = pasted_into_sources(batch.image_a[s], out, batch.landmarks_a[s], result["moves"].numpy(),
                                      None if result["painted"] is None else result["painted"][:, 0].numpy(),
                                      result["warped"].numpy())
        outs.append(out)
    return np.concatenate(outs)


def crop_rgb8(image: np.ndarray, size: int | None = None) -> np.ndarray:
    """A (3, S, S) float crop in [0, 1] as an (S, S, 3) uint8 image; bicubic to ``size`` x ``size`` if given (the
    readers see 128-pixel dataset crops at 256)."""
    rgb = (np.clip(image.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
    return rgb if size is None else cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC)


def pasted_into_sources(sources: np.ndarray, outputs: np.ndarray, landmarks: np.ndarray, moves: np.ndarray,
                        painted: np.ndarray | None = None, warped: np.ndarray | None = None) -> np.ndarray:
    """(N, 3, S, S) outputs put back into their (N, 3, S, S) source crops by ``paste_back`` with the pipeline's
    mask; ``landmarks`` and ``moves`` (N, 478, 2) normalised, ``painted`` (N, S, S) or None; ``warped`` (N, 3, S, S),
    the sources as warped, which the colour match compares the outputs with (as the pipeline does), or None."""
    size = sources.shape[-1]
    in_place = Alignment(np.eye(2, 3), size)  # the crop is its own frame
    result = np.empty_like(outputs)
    for i, (source, output) in enumerate(zip(sources, outputs)):
        frame = crop_rgb8(source)
        mask = edit_mask(denormalise(landmarks[i], size), denormalise(landmarks[i] - moves[i], size), size)
        image = paste_back(frame, crop_rgb8(output), frame, in_place, mask,
                           replaced=None if painted is None else painted[i],
                           reference=None if warped is None else crop_rgb8(warped[i]))
        result[i] = image.transpose(2, 0, 1).astype(np.float32) / 255
    return result


def track_crops(tracker: FaceTracker, images: np.ndarray, upscale: int = 256) -> list[FaceObservation | None]:
    """The tracker's face on each of (N, 3, S, S) float crops, read at ``upscale`` pixels (landmarks in those)."""
    return [tracker(crop_rgb8(image, upscale), 0.0) for image in images]


def measure_aus(tracker: FaceTracker, images: np.ndarray, upscale: int = 256) -> np.ndarray:
    """AUs of (N, 3, S, S) float crops with reenact's AU reader; NaN rows where no face is found."""
    rows = [blendshapes_to_aus(face.blendshapes) if face is not None else np.full(len(AU_NAMES), np.nan)
            for face in track_crops(tracker, images, upscale)]
    return np.array(rows, dtype=np.float32)


@torch.no_grad()
def au_fidelity(model: Generator, clips: list[PreparedClip], faces: int = 48, seed: int = 11) -> dict[str, dict[str, float]]:
    """Per single-AU edit: the mean share of the requested change measured on the output, and the mean of the
    largest change of any other AU; also that largest change over the other AUs that the reader does not compute
    from the edited AU's own blendshapes (``coupled_aus``: those move with it by construction). And per other AU,
    its mean absolute change over the faces: the largest of these, and which AU it is, over all the other AUs and
    over those not coupled (the largest change per face
    also takes the reader's face-to-face noise, which a slight blur alone puts at ~0.4 over 16 AUs)."""
    batch = PairSampler(clips, seed=seed).sample(faces, images=True)
    results: dict[str, dict[str, float]] = {}
    with FaceTracker(video_mode=False) as tracker:
        # The crops as they are, measured the same way, are the reference the edits are compared with.
        before = measure_aus(tracker, batch.image_a)
        for (name, change), (_, target) in zip(SINGLE_AU_EDITS, edit_targets(batch.aus_a, presets=False)):
            asked = target - batch.aus_a
            after = measure_aus(tracker, generate_outputs(model, batch, target, asked=True, pasted=True))
            moved = after - before
            ok = ~np.isnan(moved).any(axis=1)
            edited, others = edited_and_others(change)
            coupled = sorted({AU_NAMES.index(c) for au in change for c in coupled_aus(au)} - set(edited))
            independent = [i for i in others if i not in coupled]
            share = (moved[ok][:, edited].sum(axis=1) / np.maximum(asked[ok][:, edited].sum(axis=1), 1e-3))
            per_au = np.abs(moved[ok][:, others]).mean(axis=0)
            free = np.abs(moved[ok][:, independent]).mean(axis=0)
            results[name] = {
                "share_of_request": float(np.mean(share)),
                "others_max_change": float(np.mean(np.abs(moved[ok][:, others]).max(axis=1))),
                "independent_others_max_change": float(np.mean(np.abs(moved[ok][:, independent]).max(axis=1))),
                "others_largest_mean_change": float(per_au.max()),
                "others_largest_mean_change_au": AU_NAMES[others[int(per_au.argmax())]],
                "independent_largest_mean_change": float(free.max()),
                "independent_largest_mean_change_au": AU_NAMES[independent[int(free.argmax())]],
                "coupled": [AU_NAMES[i] for i in coupled],
                "faces": int(ok.sum()),
            }
    return results


def video_au_fidelity(options: GeneratorOptions, videos: dict[Path, str], frames: int = 48,
                      tracking: TrackingOptions | None = None) -> dict[str, dict]:
    """Per single-AU edit, ``reenact edit``'s pipeline run on the first ``frames`` frames of each video at the
    video's own resolution (tracked, aligned, edited with time smoothing, pasted back; not encoded), and the
    edited frames read by reenact's AU reader with a tracker of their own, as ``reenact au`` reads a video: the
    share of the request that shows against the source frames' reading (the pipeline's), per video, and over all
    with each person (``videos`` maps each video to whose it is) counting once, as the other AU figures do; and
    per other AU its mean absolute change, likewise (the largest, and which AU it is)."""
    from itertools import islice

    from reenact.api import TrackingOptions as Tracking
    from reenact.face.align import FaceAligner
    from reenact.pipeline import AlignStage, EditPasteStage, TrackStage, stream
    from reenact.video import VideoReader

    tracking = tracking or Tracking()
    results: dict[str, dict] = {}
    for (name, change), (_, target) in zip(SINGLE_AU_EDITS, expression_targets(presets=False)):
        edited, others = edited_and_others(change)
        per_video: dict[str, float] = {}
        by_person: dict[str, tuple[list[float], list[np.ndarray]]] = {}
        for video, person in videos.items():
            shares, changes = by_person.setdefault(person, ([], []))
            counted = len(shares)
            with VideoReader(video) as reader, FaceTracker(tracking.face_model, tracking.face) as source_tracker, \
                    FaceTracker(tracking.face_model, tracking.face) as output_tracker:
                stages = [TrackStage(source_tracker), AlignStage(FaceAligner(tracking.crop_size)),
                          EditPasteStage(options.editor(target))]
                for state in stream(islice(reader, frames), stages):
                    face = output_tracker(state.frame.image, state.frame.time)
                    if state.aus is None or face is None:
                        continue
                    asked = target(state.aus, state.frame.time) - state.aus
                    if asked[edited].sum() < 0.5:  # already near the top of the scale: nothing to ask
                        continue
                    moved = blendshapes_to_aus(face.blendshapes) - state.aus
                    shares.append(float(moved[edited].sum() / asked[edited].sum()))
                    changes.append(np.abs(moved[others]))
            per_video[str(video)] = float(np.mean(shares[counted:])) if len(shares) > counted else float("nan")
        people = [p for p, (shares, _) in by_person.items() if shares]
        per_au = np.mean([np.mean(by_person[p][1], axis=0) for p in people], axis=0)
        results[name] = {
            "share_of_request": float(np.mean([np.mean(by_person[p][0]) for p in people])),
            "per_video": per_video,
            "others_largest_mean_change": float(per_au.max()),
            "others_largest_mean_change_au": AU_NAMES[others[int(per_au.argmax())]],
            "frames": sum(len(by_person[p][0]) for p in people),
            "people": len(people),
        }
    return results


def flicker(source: Path, edited: Path, box: tuple[int, int, int, int] | None = None) -> dict[str, float]:
    """Mean absolute frame-to-frame change (0-255) of the edited clip and of the source, inside ``box``
    (x0, y0, x1, y1; the whole frame when None), and their ratio."""
    from reenact.video import VideoReader

    def temporal(path: Path) -> float:
        total, count, previous = 0.0, 0, None
        with VideoReader(path) as reader:
            for frame in reader:
                image = frame.image.astype(np.float32)
                if box is not None:
                    x0, y0, x1, y1 = box
                    image = image[y0:y1, x0:x1]
                if previous is not None:
                    total += float(np.abs(image - previous).mean())
                    count += 1
                previous = image
        return total / max(count, 1)

    ours, theirs = temporal(edited), temporal(source)
    return {"edited": ours, "source": theirs, "ratio": ours / max(theirs, 1e-6)}


@torch.no_grad()
def compare_grid(model: Generator, clips: list[PreparedClip], path: Path, faces: int = 6, seed: int = 3) -> None:
    """A PNG grid: one row per face, columns source then each single-AU edit and each preset, pasted back as
    ``reenact edit`` pastes them (what lies outside the face is the source's own)."""
    from reenact.files import atomic_output

    batch = PairSampler(clips, seed=seed).sample(faces, images=True)
    columns: list[tuple[str, np.ndarray]] = [("source", batch.image_a)]
    columns += [(name, generate_outputs(model, batch, target, asked=True, pasted=True))
                for name, target in edit_targets(batch.aus_a)]
    size = batch.image_a.shape[-1]
    label = 18
    grid = np.full((label + faces * size, len(columns) * size, 3), 255, np.uint8)
    for c, (name, images) in enumerate(columns):
        cv2.putText(grid, name, (c * size + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        for r, image in enumerate(images):
            grid[label + r * size : label + (r + 1) * size, c * size : (c + 1) * size] = crop_rgb8(image)
    with atomic_output(path) as tmp:
        cv2.imwrite(str(tmp), grid[:, :, ::-1])


def evaluate(
    dataset_dir: Path, model_name: str | Path | None = None, split: Path | None = None, pairs: int = 256,
    faces: int = 48, flicker_clips: int = 2, compare: Path | None = None, edit_gain: bool = True,
    texture_strength: float | None = None, video_frames: int = 0,
) -> dict:
    """All metrics on the validation identities of ``split`` (a run's split.json; else every clip). ``edit_gain``
    False: the edits as ``--no-edit-gain`` makes them (the model's edit gain unused). ``texture_strength``: in place
    of the model's own. ``video_frames``: also the single-AU edits through the pipeline on that many frames of each
    clip's source video (``video_au_fidelity``)."""
    from reenact.api import GeneratorOptions, edit_expression
    from reenact.editing import ExpressionTarget
    from reenact.train.dataset import load_dataset

    people = json.loads(Path(split).read_text())["validation"] if split else None
    index = json.loads((Path(dataset_dir) / "index.json").read_text())
    ids = [e["id"] for e in index["clips"] if people is None or e["identity"] in people]
    dataset = load_dataset(dataset_dir, ids)
    clips = list(dataset.clips)
    # The same options for the model measured here and for the flicker's edits through the API.
    options = GeneratorOptions(model_name, edit_gain=edit_gain, texture_strength=texture_strength)
    model = options.load("cpu")
    if not edit_gain:  # the API's editor leaves the gain out itself; this model is called directly
        model.reconfigure(edit_gain=None)
    report: dict = {"identities": sorted({c.identity for c in clips}), "clips": len(clips)}
    drawn = draw_pairs(clips, pairs)
    report["self_reenactment"] = vars(score_pairs(model, drawn))
    if model.config.n_pose:  # the same pairs with the AUs alone: what a transfer that keeps the source's head does
        report["self_reenactment_expression_only"] = vars(score_pairs(model, drawn, follow_pose=False))
    # The same with head pose held (each angle within 2 degrees): how much of the gap to copying is head motion.
    report["self_reenactment_pose_matched"] = vars(self_reenactment(model, clips, pairs, max_pose_change=2.0))
    report["au_fidelity"] = au_fidelity(model, clips, faces)
    if video_frames:
        sources = {Path(c.source): c.identity for c in sorted(clips, key=lambda c: c.source)}
        missing = [str(p) for p in sources if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"--videos needs the clips' source videos; not found: {', '.join(missing)}")
        report["au_fidelity_video"] = video_au_fidelity(options, sources, video_frames)
    try:
        report["identity_dlib"] = identity_distance(model, clips)
    except ImportError:
        report["identity_dlib"] = "not measured: pip install 'reenact[eval]' (dlib-bin, face-recognition-models)"
    report["flicker"] = {}
    # Short clips (but long enough to see flicker) keep this part quick.
    for clip in sorted([c for c in clips if len(c.frame) >= 100], key=lambda c: len(c.frame))[:flicker_clips]:
        edited = Path(dataset_dir) / f".eval-{Path(clip.id).name}.mp4"
        try:
            edit_expression(clip.source, edited, ExpressionTarget(preset="happy", strength=0.8), options)
            report["flicker"][clip.id] = flicker(Path(clip.source), edited, face_box(clip.source))
        finally:
            edited.unlink(missing_ok=True)
    if compare is not None:
        compare.mkdir(parents=True, exist_ok=True)
        compare_grid(model, clips, compare / "grid.png")
    return report


def face_box(path: str | Path) -> tuple[int, int, int, int]:
    """The tracked face's box, widened by half, on a clip's first frame: where flicker is measured."""
    from reenact.video import VideoReader

    with VideoReader(path) as reader, FaceTracker(video_mode=False) as tracker:
        frame = next(iter(reader))
        face = tracker(frame.image, 0.0)
    h, w = frame.image.shape[:2]
    x0, y0, x1, y1 = face.box
    dx, dy = (x1 - x0) / 4, (y1 - y0) / 4
    return int(max(0, x0 - dx)), int(max(0, y0 - dy)), int(min(w, x1 + dx)), int(min(h, y1 + dy))


class IdentityMeter:
    """dlib's ResNet face descriptor (the optional extra ``reenact[eval]``): distance between two faces' 128-D
    descriptors; 0.6 is dlib's same-person threshold."""

    def __init__(self) -> None:
        import importlib.util

        import dlib

        spec = importlib.util.find_spec("face_recognition_models")  # found without importing its pkg_resources
        if spec is None or spec.origin is None:
            raise ImportError("face_recognition_models is not installed")
        models = Path(spec.origin).parent / "models"
        self._detect = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._encode = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._dlib = dlib

    def descriptor(self, image: np.ndarray) -> np.ndarray | None:
        """(3, S, S) float crop in [0, 1] -> 128-D descriptor, or None without a face."""
        rgb = crop_rgb8(image, 256)
        boxes = self._detect(rgb, 0)
        if not boxes:
            return None
        box = max(boxes, key=lambda r: r.area())
        return np.array(self._encode.compute_face_descriptor(rgb, self._shape(rgb, box)))

    def distance(self, a: np.ndarray, b: np.ndarray) -> float | None:
        da, db = self.descriptor(a), self.descriptor(b)
        return None if da is None or db is None else float(np.linalg.norm(da - db))


@torch.no_grad()
def identity_distance(model: Generator, clips: list[PreparedClip], faces: int = 24, seed: int = 5) -> dict[str, float]:
    """Mean dlib distance between each source face and its edits (every single-AU edit and preset)."""
    meter = IdentityMeter()
    batch = PairSampler(clips, seed=seed).sample(faces, images=True)
    distances = []
    for _, target in edit_targets(batch.aus_a):
        for source, edited in zip(batch.image_a, generate_outputs(model, batch, target, asked=True, pasted=True)):
            d = meter.distance(source, edited)
            if d is not None:
                distances.append(d)
    return {"mean": float(np.mean(distances)), "max": float(np.max(distances)), "pairs": len(distances)}
