"""Turning a generator and an expression target into a crop editor for the streaming pipeline.

The target says what the AUs should be at each moment (set or add per AU, a preset, a time range with ramps);
the editor measures the source face's AUs, asks the generator for the warp and texture that make the change,
and smooths both the source AUs and the flow over time so a constant target gives a still face.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from reenact.expression import AUEdit, ExpressionTarget, parse_au_edit  # noqa: F401 (the editing API's names)
from reenact.face.align import Alignment
from reenact.face.aus import AU_NAMES, blendshapes_to_aus, parse_au_name
from reenact.face.tracker import FaceObservation
from reenact.memory import FaceMemory, MemoryCompositor
from reenact.model.networks import Generator, denormalise, normalise, warp
from reenact.own_motion import extra_moves_for, own_moves
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
        # A frozen memory's own motion (a first pass's), against this model's fields.
        own = extra_moves_for(memory.motion, model.motion) if memory is not None and memory.frozen else None
        self._own_moves = None if own is None else own.to(self.device)
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
        self._flow = OneEuroFilter(**_FLOW_FILTER, dtype=np.float32)
        # The landmarks' moves, filtered alike, say where the smoothed flow opened the mouth or closed an eye: where
        # the generator paints.
        self._moves = OneEuroFilter(**_FLOW_FILTER, dtype=np.float32)

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

    def generate(self, crop: np.ndarray, face: FaceObservation, alignment: Alignment, t: float,
                 ) -> np.ndarray | EditedCrop:
        """The generator's part of an edit: the crop warped and textured (or the very crop, where nothing changes)."""
        return self.generate_batch([(crop, face, alignment, t)])[0]

    @torch.inference_mode()
    def generate_batch(self, frames: list[tuple[np.ndarray, FaceObservation, Alignment, float]],
                       ) -> list[np.ndarray | EditedCrop]:
        """``generate`` for consecutive frames, in order, with the networks run once per batch (a GPU's way): each
        frame's own steps (its AUs, its target, the time filters) run one frame after another as in ``generate``,
        so the output is the per-frame one but for the float rounding of batched convolutions."""
        asks = [self._ask(*frame) for frame in frames]
        self._move(asks)
        for ask in asks:
            self._settle(ask)
        moving = [ask for ask in asks if ask.change and not ask.still]
        if moving:
            images = torch.cat([ask.image for ask in moving])
            result = self.model(images, torch.cat([a.landmarks for a in moving]), torch.cat([a.src for a in moving]),
                                torch.cat([a.tgt for a in moving]), flow=torch.cat([a.flow for a in moving]),
                                moves=torch.cat([a.moves for a in moving]))
            painted = result["painted"]
            for k, ask in enumerate(moving):
                ask.done(result["output"][k:k + 1], None if painted is None else painted[k:k + 1],
                         result["warped"][k:k + 1])
        for ask in asks:
            if not ask.change and not ask.still:  # the texture step adds nothing without an AU change: warp only
                output, painted, warped = warp(ask.image, ask.flow), None, None
                if self.model.paints:  # a mouth still closing after an edit keeps its interior (and an eye its lid)
                    warped = output
                    output, painted = self.model.paint(output, ask.image, ask.landmarks, ask.moves)
                ask.done(output, painted, warped)
        return [ask.crop if ask.still else ask.edited for ask in asks]

    def _ask(self, crop: np.ndarray, face: FaceObservation, alignment: Alignment, t: float) -> _Ask:
        """One frame's inputs to the networks, with its AUs smoothed and its target set (in frame order)."""
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
        pose = np.array(face.head_pose_degrees(), np.float32)
        if self.memory is not None:
            # A live memory: its entries are indexed by the frame's AUs and head pitch. Its own motion learns too
            # but is not used: that is a file job's, fitted on a whole first pass.
            self.memory.observe(crop, points, t, source, pose)
        normalised = normalise(points, size).astype(np.float32)
        turn = None if self.head_turn is None else (weight * self.head_turn(t)).astype(np.float32)
        turned = turn is not None and bool(np.any(turn != 0))
        given = None if self.landmark_moves is None else self.landmark_moves(normalised, t) * weight
        change = turned or not np.array_equal(goal, source) or (given is not None and bool(np.any(given != 0)))
        return _Ask(crop, t, size, torch.from_numpy(normalised)[None].to(self.device),
                    torch.from_numpy(source)[None].to(self.device), torch.from_numpy(goal)[None].to(self.device),
                    torch.from_numpy(turn)[None].to(self.device) if turned else None,
                    None if given is None else torch.from_numpy(given.astype(np.float32))[None].to(self.device),
                    change, pose + turn if turned else pose)

    def _move(self, asks: list[_Ask]) -> None:
        """Each frame's flow and landmark moves: given moves splatted, else the motion step's for the AU change (and
        head turn), run once for each kind of frame in the batch; zero where nothing changes."""
        kinds: dict[str, list[_Ask]] = {}
        for ask in asks:
            kind = "still" if not ask.change else "given" if ask.given is not None else \
                "turned" if ask.turn is not None else "aus"
            kinds.setdefault(kind, []).append(ask)
        motion = self.model.motion
        for kind, group in kinds.items():
            landmarks = torch.cat([a.landmarks for a in group])
            if kind == "still":  # what the motion net gives for no change (exactly), without running it
                size = self.model.config.field_size
                flows = torch.zeros(len(group), 2, size, size, device=self.device)
                moves = torch.zeros_like(landmarks)
            elif kind == "given":
                moves = torch.cat([a.given for a in group])
                flows = motion.field(landmarks, moves)
            else:
                pose = torch.cat([a.turn for a in group]) if kind == "turned" else None
                src, tgt = torch.cat([a.src for a in group]), torch.cat([a.tgt for a in group])
                moves = motion.displacements(landmarks, src, tgt, pose, self.asked)
                if self._own_moves is not None:  # this person's own mouth motion, from a first pass
                    moves = moves + own_moves(self._own_moves, src, tgt)
                flows = motion.field(landmarks, moves)
            for k, ask in enumerate(group):
                ask.flow, ask.moves = flows[k:k + 1], moves[k:k + 1]

    def _settle(self, ask: _Ask) -> None:
        """The frame's flow and moves through the time filters (in frame order), and whether it is left as it is."""
        if self.smooth:
            smoothed = self._flow(ask.flow.cpu().numpy(), ask.t)
            ask.flow = torch.from_numpy(smoothed.astype(np.float32)).to(self.device)
            ask.moves = torch.from_numpy(self._moves(ask.moves.cpu().numpy(), ask.t).astype(np.float32)).to(self.device)
        ask.still = not ask.change and float(ask.flow.abs().max()) * ask.size / 2 < _STILL_FLOW
        if not ask.still:
            ask.image = torch.from_numpy(ask.crop).to(self.device).permute(2, 0, 1)[None].contiguous().float().div_(255)

    def finish(self, edited: np.ndarray | EditedCrop) -> np.ndarray | EditedCrop:
        """The face memory's part: its own mouth and lids where the generator painted. Apart from ``generate`` so
        a pipeline runs it in the paste-back's stage, beside the next frame's generator."""
        if not isinstance(edited, EditedCrop):
            return edited
        image, replaced = edited.image, edited.replaced
        if self.compositor is not None and replaced is not None:
            pitch = None if edited.pose is None else float(edited.pose[0])
            image, replaced = self.compositor(image, replaced, edited.moved, edited.aus, pitch, edited.before)
        return replace(edited, image=image, replaced=replaced,
                       reference=image if edited.reference is None else edited.reference)


@dataclass(eq=False)
class _Ask:
    """One frame on its way through ``GeneratorEditor.generate_batch``: what the networks are asked, and the edit."""

    crop: np.ndarray
    t: float
    size: int
    landmarks: torch.Tensor  # (1, 478, 2) normalised crop coordinates
    src: torch.Tensor  # (1, 17) the source's AUs (smoothed)
    tgt: torch.Tensor  # (1, 17) the target's
    turn: torch.Tensor | None  # (1, 3) the head turn to follow, degrees; None for none
    given: torch.Tensor | None  # (1, 478, 2) the landmarks' moves to make, in place of the motion step's
    change: bool
    pose: np.ndarray  # (3,) the head's pitch, yaw and roll in the edit, degrees (the frame's, turned as asked)
    flow: torch.Tensor | None = None
    moves: torch.Tensor | None = None
    still: bool = False  # nothing to do: the crop is given back as it is
    image: torch.Tensor | None = None
    edited: EditedCrop | None = None

    def done(self, output: torch.Tensor, painted: torch.Tensor | None, warped: torch.Tensor | None) -> None:
        """The edit from the networks' output. The paste-back mask covers where the landmarks were and where they
        went, so a dropped jaw is not cut off; where the crop is painted, the frame's own detail goes too
        (paste_back's ``replaced``). Its colour match compares the edit with the warped source (``warped``): with
        the source itself, the texture the warp moved reads as lost contrast. A warp alone is its own reference."""
        replaced = None if painted is None else painted[0, 0].float().cpu().numpy()
        landed = denormalise((self.landmarks - self.moves)[0].cpu().numpy(), self.size)
        flow = self.flow if self.flow.shape[-1] == self.size else \
            F.interpolate(self.flow, size=(self.size, self.size), mode="bilinear", align_corners=False)
        self.edited = EditedCrop(_rgb8(output), landed, replaced, None if warped is None else _rgb8(warped),
                                 self.tgt[0].cpu().numpy(), self.pose, denormalise(self.landmarks[0].cpu().numpy(),
                                                                                   self.size),
                                 (flow[0] * (self.size / 2)).permute(1, 2, 0).float().cpu().numpy())


def _rgb8(image: torch.Tensor) -> np.ndarray:
    """The first of (B, 3, H, W) images in [0, 1] as an (H, W, 3) uint8 array. The generator's output and the warp
    are clamped to [0, 1]: no clamp here."""
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

    def motion(self, pose_basis: np.ndarray | None = None, as_read: bool = False):
        """The driving face's own landmark motion (``reenact.retarget.DrivingMotion``); needs landmarks and poses.
        ``as_read``: as MediaPipe placed the landmarks (not corrected for the share of the brows' and lids' travel
        it shows)."""
        from reenact.retarget import READ_SHARES, DrivingMotion

        if self.landmarks is None or self.poses is None:
            raise ValueError("this driving track has no landmarks")
        return DrivingMotion.from_track(self.times, self.landmarks, self.aus, self.poses, pose_basis,
                                        {} if as_read else READ_SHARES)

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
        from reenact.retarget import followed_turn

        return followed_turn(_at(self.times, self.poses, t) - self.usual_pose)


@dataclass(frozen=True)
class TransferTarget:
    """Target AUs that follow a driving clip: relative (its change from its own rest, added to the source's AUs)
    or absolute (its AUs as they are; with ``source_rest``, the source's resting AUs plus that change: the source's
    own expression replaced), scaled, for all AUs or only some."""

    driving: DrivingTrack
    relative: bool = True
    scale: float = 1.0
    aus: tuple[str, ...] = AU_NAMES
    source_rest: np.ndarray | None = None  # (17,) a video source's resting AUs (``DrivingTrack.rest``)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aus", tuple(parse_au_name(au) for au in self.aus))  # AUError for an unknown one

    def __call__(self, source: np.ndarray, t: float) -> np.ndarray:
        drive = self.driving.at(t)
        if self.relative or self.source_rest is not None:
            moved = (source if self.relative else self.source_rest) + self.scale * (drive - self.driving.rest)
        else:
            moved = self.scale * drive
        chosen = np.isin(np.array(AU_NAMES), self.aus)
        return np.clip(np.where(chosen, moved, source), 0.0, 5.0).astype(np.float32)
