"""Turning a generator and an expression target into a crop editor for the streaming pipeline.

The target says what the AUs should be at each moment (set or add per AU, a preset, a time range with ramps);
the editor measures the source face's AUs, asks the generator for the warp and texture that make the change,
and smooths both the source AUs and the flow over time so a constant target gives a still face.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from reenact.expression import AUEdit, ExpressionTarget, parse_au_edit  # noqa: F401 (the editing API's names)
from reenact.face.align import Alignment
from reenact.face.aus import AU_NAMES, blendshapes_to_aus, parse_au_name
from reenact.face.tracker import FaceObservation
from reenact.memory import FaceMemory, MemoryCompositor
from reenact.model.networks import Generator, denormalise, normalise, warp
from reenact.pipeline import EditedCrop
from reenact.smoothing import OneEuroFilter

TargetFn = Callable[[np.ndarray, float], np.ndarray]

# The flow's One Euro filter (see GeneratorEditor.__init__ for why these).
_FLOW_FILTER = {"min_cutoff": 2.0, "beta": 100.0, "d_cutoff": 5.0}
# A flow this small (largest move, in crop pixels) changes no 8-bit pixel by more than a quarter level: no warp.
_STILL_FLOW = 1e-3


class GeneratorEditor:
    """A CropEditor: edits each aligned crop with the generator toward ``target(source_aus, t)``.

    Where the target asks for no change (outside an edit's time range, an empty edit) the networks are not run:
    the crop comes back as it is, or only warped while the smoothed flow of an edit that just ended settles.
    """

    def __init__(
        self, model: Generator, target: TargetFn, smooth: bool = True, device: str | torch.device = "cpu",
        threads: int | None = 1, head_turn: Callable[[float], np.ndarray] | None = None, asked: bool = True,
        landmark_moves: Callable[[np.ndarray, float], np.ndarray] | None = None,
        memory: FaceMemory | None = None, fade: Callable[[float], float] | None = None,
    ) -> None:
        """``threads``: torch's CPU threads (process-wide; None leaves them as they are). One, because in the pipeline
        MediaPipe and the encoder keep the other cores busy, and torch threads that wait for a busy core make the
        generator 2-3x slower than one thread (measured on 2 cores); the editor is then no slower than tracking.
        ``head_turn``: the head's pitch, yaw and roll change (degrees) to follow at time t (a model with head-pose
        motion only), e.g. a driving clip's ``DrivingTrack.turn``. ``asked``: the target is an edit (the motion
        scales its change by the model's ``edit_gain``); False for a driving face's readings (transfers).
        ``landmark_moves``: (the face's landmarks (478, 2, normalised), t) -> their moves, in place of the motion
        step's moves for the target AUs (a driving face's own motion, ``reenact.retarget.Retargeter``); the AUs
        still drive the texture step and the paint's strength.
        ``memory``: the person's own mouths and eyes (``reenact.memory``), put where the edit paints; one not yet
        frozen also learns from each crop the editor sees (live). ``fade``: how much of the edit applies at time t
        (0 to 1), e.g. fading out where the face is really lost (``reenact.tracks``)."""
        if head_turn is not None and not model.config.n_pose:
            raise ValueError("this model cannot turn the head (no head-pose motion in its config); use models/default")
        self.model = model.eval()
        self.target = target
        self.head_turn = head_turn
        self.asked = asked
        self.device = torch.device(device)
        self.smooth = smooth
        self.landmark_moves = landmark_moves
        self.memory = memory
        self.compositor = None if memory is None else MemoryCompositor(memory)
        self.fade = fade
        if self.device.type == "cpu":
            if threads is not None:
                torch.set_num_threads(threads)
            # The same weights, laid out the way oneDNN convolves fastest on a CPU (the texture step ~15% faster).
            self.model.texture.to(memory_format=torch.channels_last)
        # Source AUs jitter a little from frame to frame; the flow is the last guard against shimmer. The flow's
        # filter must still let a blink through (a lid closes in 2-3 frames): with beta 4 and the speed estimate
        # smoothed at 1 Hz, a driving blink reached 0.43 of its AU45 on a still source against 1.14 unsmoothed;
        # beta 100 with the speed at 5 Hz gives 1.07, and the same flicker on steady edits (0.98 of the source's).
        self._aus = OneEuroFilter(min_cutoff=1.0, beta=0.3)
        self._flow = OneEuroFilter(**_FLOW_FILTER)
        # The landmarks' moves, filtered alike, say where the smoothed flow opened the mouth or closed an eye: where
        # the generator paints.
        self._moves = OneEuroFilter(**_FLOW_FILTER)

    def reset(self) -> None:
        self._aus.reset()
        self._flow.reset()
        self._moves.reset()
        if hasattr(self.landmark_moves, "reset"):
            self.landmark_moves.reset()
        if self.compositor is not None:
            self.compositor.reset()

    def __call__(self, crop: np.ndarray, face: FaceObservation, alignment: Alignment, t: float):
        return self.finish(self.generate(crop, face, alignment, t))

    @torch.inference_mode()
    def generate(self, crop: np.ndarray, face: FaceObservation, alignment: Alignment, t: float):
        """The generator's part of an edit: the crop warped and textured (or the very crop, where nothing changes)."""
        size = alignment.crop_size
        source = blendshapes_to_aus(face.blendshapes)
        if self.smooth:
            source = self._aus(source, t).astype(np.float32)
        goal = self.target(source, t).astype(np.float32)
        weight = 1.0
        if self.fade is not None:
            weight = float(self.fade(t))
            goal = source + weight * (goal - source)
        points = alignment.to_crop(face.xy)
        if self.memory is not None:
            self.memory.observe(crop, points, t)
        normalised = normalise(points, size).astype(np.float32)
        landmarks = torch.from_numpy(normalised)[None].to(self.device)
        src = torch.from_numpy(source)[None].to(self.device)
        tgt = torch.from_numpy(goal)[None].to(self.device)
        turn = None if self.head_turn is None else (weight * self.head_turn(t)).astype(np.float32)
        turned = turn is not None and bool(np.any(turn != 0))
        given = None if self.landmark_moves is None else self.landmark_moves(normalised, t) * weight
        change = turned or not np.array_equal(goal, source) or (given is not None and bool(np.any(given != 0)))
        if change and given is not None:
            moves = torch.from_numpy(given.astype(np.float32))[None].to(self.device)
            flow = self.model.motion.field(landmarks, moves)
        elif change:
            pose = torch.from_numpy(turn)[None].to(self.device) if turned else None
            flow, moves = self.model.motion(landmarks, src, tgt, pose, self.asked)
        else:  # what the motion net gives for no change (exactly), without running it
            flow_size = self.model.config.flow_size
            flow = torch.zeros(1, 2, flow_size, flow_size, device=self.device)
            moves = torch.zeros_like(landmarks)
        if self.smooth:
            smoothed = self._flow(flow.cpu().numpy(), t)
            flow = torch.from_numpy(smoothed.astype(np.float32)).to(self.device)
            moves = torch.from_numpy(self._moves(moves.cpu().numpy(), t).astype(np.float32)).to(self.device)
        if not change and float(flow.abs().max()) * size / 2 < _STILL_FLOW:
            return crop  # unchanged: the pipeline skips pasting it back
        image = torch.from_numpy(crop).to(self.device).permute(2, 0, 1)[None].contiguous().float().div_(255)
        painted = reference = None
        if change:
            result = self.model(image, landmarks, src, tgt, flow=flow, moves=moves)
            output, painted = result["output"], result["painted"]
            reference = _rgb8(result["warped"])  # what the texture step started from: the colour match's reference
        else:  # the texture step adds nothing without an AU change (its mask is scaled by the change)
            output = warp(image, flow)
            if self.model.paints:  # a mouth still closing after an edit keeps its interior (and an eye its lid)
                reference = _rgb8(output)
                output, painted = self.model.paint(output, image, landmarks, moves)
        # The paste-back mask covers where the landmarks were and where they went, so a dropped jaw is not cut off;
        # where the crop is painted, the frame's own detail goes too (paste_back's ``replaced``). Its colour match
        # compares the edit with the warped source: with the source itself, the texture the warp moved reads as
        # lost contrast. A warp alone is its own reference.
        replaced = None if painted is None else painted[0, 0].float().cpu().numpy()
        edited = _rgb8(output)
        landed = denormalise((landmarks - moves)[0].cpu().numpy(), size)
        return EditedCrop(edited, landed, replaced, reference)

    def finish(self, edited: np.ndarray | EditedCrop) -> np.ndarray | EditedCrop:
        """The face memory's part: its own mouth and lids where the generator painted. Apart from ``generate`` so
        a pipeline runs it in the paste-back's stage, beside the next frame's generator."""
        if not isinstance(edited, EditedCrop):
            return edited
        image, replaced = edited.image, edited.replaced
        if self.compositor is not None and replaced is not None:
            image, replaced = self.compositor(image, replaced, edited.moved)
        return EditedCrop(image, edited.moved, replaced, image if edited.reference is None else edited.reference)


def _rgb8(image: torch.Tensor) -> np.ndarray:
    """The first of (B, 3, H, W) images in [0, 1] as an (H, W, 3) uint8 array. The generator's output is clamped to
    [0, 1] and a bilinear warp of [0, 1] stays there but for rounding, which the truncation absorbs: no clamp."""
    return image[0].mul(255).add_(0.5).permute(1, 2, 0).byte().cpu().numpy()


def _fill_gaps(t: np.ndarray, rows: list[np.ndarray | None]) -> np.ndarray:
    """(N, C) from per-frame rows, frames without one filled linearly from their neighbours."""
    found = np.array([r is not None for r in rows])
    known = np.stack([r for r in rows if r is not None])
    return np.stack([np.interp(t, t[found], known[:, i]) for i in range(known.shape[1])], axis=1).astype(np.float32)


def _at(times: np.ndarray, values: np.ndarray, t: float) -> np.ndarray:
    return np.array([np.interp(t, times, values[:, i]) for i in range(values.shape[1])], np.float32)


@dataclass(frozen=True)
class DrivingTrack:
    """A driving clip's AUs (and head pose) over time, and its resting face (each AU's 10th percentile over the
    clip: a face is at rest most of the time, so no neutral first frame is needed)."""

    times: np.ndarray  # (N,) seconds
    aus: np.ndarray  # (N, 17); frames without a face are filled from their neighbours
    poses: np.ndarray | None = None  # (N, 3) head pitch, yaw, roll in degrees, filled the same way
    landmarks: np.ndarray | None = None  # (N, 478, 2) in the aligned crop, normalised, filled the same way

    @classmethod
    def from_rows(cls, times: list[float], rows: list[np.ndarray | None],
                  poses: list[np.ndarray | None] | None = None,
                  landmarks: list[np.ndarray | None] | None = None) -> DrivingTrack:
        if not any(r is not None for r in rows):
            raise ValueError("no face in the driving clip")
        t = np.asarray(times, dtype=np.float64)
        points = None
        if landmarks is not None:
            flat = _fill_gaps(t, [None if p is None else p.reshape(-1) for p in landmarks])
            points = flat.reshape(len(t), -1, 2)
        return cls(t, _fill_gaps(t, rows), None if poses is None else _fill_gaps(t, poses), points)

    def motion(self, pose_basis: np.ndarray | None = None):
        """The driving face's own landmark motion (``reenact.retarget.DrivingMotion``); needs landmarks and poses."""
        from reenact.retarget import DrivingMotion

        if self.landmarks is None or self.poses is None:
            raise ValueError("this driving track has no landmarks")
        return DrivingMotion.from_track(self.times, self.landmarks, self.aus, self.poses, pose_basis)

    @cached_property  # once per clip, not per frame
    def rest(self) -> np.ndarray:
        return np.percentile(self.aus, 10, axis=0).astype(np.float32)

    @cached_property
    def usual_pose(self) -> np.ndarray:
        """The driving head's median pitch, yaw and roll over the clip, in degrees."""
        if self.poses is None:
            raise ValueError("this driving track has no head pose")
        return np.median(self.poses, axis=0).astype(np.float32)

    def at(self, t: float) -> np.ndarray:
        """The driving AUs at time t (linear between frames, held past either end)."""
        return _at(self.times, self.aus, t)

    def turn(self, t: float) -> np.ndarray:
        """The driving head's pitch, yaw and roll at time t minus its median over the clip (its usual pose), in
        degrees: the head motion ``reenact transfer --pose`` adds to the source's."""
        usual = self.usual_pose
        return _at(self.times, self.poses, t) - usual


@dataclass(frozen=True)
class TransferTarget:
    """Target AUs that follow a driving clip: relative (its change from its own rest, added to the source's AUs)
    or absolute (its AUs as they are), scaled, for all AUs or only some."""

    driving: DrivingTrack
    relative: bool = True
    scale: float = 1.0
    aus: tuple[str, ...] = AU_NAMES

    def __post_init__(self) -> None:
        object.__setattr__(self, "aus", tuple(parse_au_name(au) for au in self.aus))  # AUError for an unknown one

    def __call__(self, source: np.ndarray, t: float) -> np.ndarray:
        drive = self.driving.at(t)
        moved = source + self.scale * (drive - self.driving.rest) if self.relative else self.scale * drive
        chosen = np.isin(np.array(AU_NAMES), self.aus)
        return np.clip(np.where(chosen, moved, source), 0.0, 5.0).astype(np.float32)
