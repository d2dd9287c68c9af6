"""The typed Python API that the CLI wraps: one call per job, each streaming through ``reenact.pipeline``."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from reenact.checks import (check_au, check_au_scale, check_edit, check_transfer, shorter_driver, transfer_aus,
                            transfer_motion)
from reenact.devices import pick_device, texture_dtype
from reenact.encoding import EncodeOptions
from reenact.errors import InputError, NoFaceError, ReenactWarning
from reenact.expression import ExpressionTarget, TimeRange
from reenact.face.align import FaceAligner
from reenact.face.aus import AU_NAMES, AUCsvWriter, blendshapes_to_aus
from reenact.face.counting import face_index_message
from reenact.face.tracker import FaceObservation, FaceTracker, smallest_face
from reenact.memory import FaceMemory
from reenact.overlay import draw_au_bars, draw_crop_outline, draw_landmarks
from reenact.pipeline import AlignStage, CropEditor, EditPasteStage, FrameState, TrackStage, stream
from reenact.progress import FrameProgress
from reenact.tracking import TrackingOptions
from reenact.tracks import CachedTrackStage, FaceTrack, scratch_folder
from reenact.files import atomic_output
from reenact.video import Frame, VideoInfo, VideoReader, VideoWriter, check_output_path, probe

if TYPE_CHECKING:  # torch loads only for the commands that run the generator
    from reenact.model.networks import Generator

PathLike = str | os.PathLike[str]
# File jobs put the crops of 8 consecutive frames through the networks at once: a GPU's way, and on a CPU 10-20%
# less time a frame than one at a time (the same edit within one level); 8 frames in flight keep memory flat.
# Live mode edits each frame as it comes.
EDIT_BATCH = 8


@dataclass(frozen=True)
class RunReport:
    """What a job did."""

    input: Path
    output: Path
    frames: int
    faces_found: int
    seconds: float

    @property
    def frames_without_face(self) -> int:
        return self.frames - self.faces_found

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _frames(
    input: PathLike, tracking: TrackingOptions, extra: list[Callable[[FrameState], FrameState]], description: str,
    progress: bool, stack: ExitStack, frames: Iterable[Frame] | None = None, total: int | None = None,
    track: FaceTrack | None = None,
) -> tuple[Iterator[FrameState], FrameProgress]:
    """Track the frames of ``input`` (or the given ``frames``) and run ``extra`` stages after tracking; with
    ``track`` (a first pass's), the faces come from it and MediaPipe does not run."""
    if frames is None:
        total = probe(input).frame_count
        frames = stack.enter_context(VideoReader(input))
    if track is None:
        first: Callable[[Frame], FrameState] = TrackStage(stack.enter_context(FaceTracker(tracking.face_model,
                                                                                           tracking.face)))
    else:
        first = CachedTrackStage(track)
    bar = stack.enter_context(FrameProgress(description, total, progress))
    states = stream(frames, [first, *extra])
    return states, bar


@contextmanager
def first_pass(input: PathLike, tracking: TrackingOptions = TrackingOptions(), memory: FaceMemory | bool = True,
               progress: bool = False, track_only: bool = False,
               ) -> Iterator[tuple[FaceTrack | None, FaceMemory | None]]:
    """A video's first pass: its face's whole track (kept on disk while the context lasts) and the face memory
    filled from it (``memory`` True: a new one; a ``FaceMemory``: that one, filled unless frozen; False: none).
    Yields (None, None) for a still image, or for ``memory=False`` unless ``track_only`` (then the track alone):
    the one-pass job of before."""
    info = None if memory is False and not track_only else probe(input)
    if info is None or info.is_image:
        yield None, None
        return
    face_memory = None if memory is False else FaceMemory() if memory is True else memory
    with scratch_folder() as folder, ExitStack() as stack:
        bar = stack.enter_context(FrameProgress("track", info.frame_count, progress))
        track = FaceTrack.record(info, lambda: FaceTracker(tracking.face_model, tracking.face), Path(folder),
                                 tracking.crop_size, face_memory, bar.advance)
        stack.close()
        try:
            yield track, face_memory
        finally:
            track.close()


def build_memory(input: PathLike, tracking: TrackingOptions = TrackingOptions(), progress: bool = False) -> FaceMemory:
    """A face memory (the person's own mouths and eyes) from a video, frozen: build it once, pass it to any number
    of ``edit_expression`` / ``transfer_expression`` calls on that person's videos."""
    with first_pass(input, tracking, True, progress) as (_, memory):
        if memory is None:
            raise InputError(f"{input} is a still image: a face memory is built from a video")
        return memory


def _finish(input: PathLike, output: PathLike, bar: FrameProgress, started: float,
            tracking: TrackingOptions | None = None) -> RunReport:
    if bar.frames and not bar.faces:
        # A face index past the faces there are finds none either; say what went wrong.
        wrong_index = tracking is not None and isinstance(tracking.face, int) and tracking.face > 0
        message = face_index_message(tracking.face, input, tracking.face_model) if wrong_index else None
        raise NoFaceError(message or _no_face_message(input, bar.frames))
    return RunReport(Path(input), Path(output), bar.frames, bar.faces, time.perf_counter() - started)


def _no_face_message(input: PathLike, frames: int) -> str:
    """Worded for what the user gave: a still is one image, even when it was animated along a clip's frames."""
    info = probe(input)
    looked = f"looked for faces down to {smallest_face(info.width, info.height)} px wide"
    if info.is_image:
        return f"no face found in the image {input} ({looked})"
    return f"no face found in any of the {frames} frames of {input} ({looked})"


def _video_job(
    input: PathLike,
    output: PathLike,
    stages: list[Callable[[FrameState], FrameState]],
    tracking: TrackingOptions,
    encode: EncodeOptions,
    progress: bool,
    description: str,
    timeline: tuple[VideoInfo, Iterable[Frame]] | None = None,
    audio_from: PathLike | None | Literal["input"] = "input",
    track: FaceTrack | None = None,
) -> RunReport:
    """Track, run ``stages`` after the alignment, encode: the shape of every job that writes a video.

    ``timeline``: the output's format and its frames, when they are not simply the input's (a still image
    driven along another clip's timestamps). ``audio_from``: whose audio to copy.
    """
    check_output_path(output, input)
    encode = encode.for_output(output)
    started = time.perf_counter()
    info, frames = timeline if timeline is not None else (probe(input), None)
    audio = input if audio_from == "input" else audio_from
    with ExitStack() as stack:
        writer = stack.enter_context(
            VideoWriter(output, like=info, codec=encode.codec, crf=encode.crf, preset=encode.preset, audio_from=audio)
        )

        def write(state: FrameState) -> FrameState:
            writer.write(state.frame)
            return state

        aligner = FaceAligner(tracking.crop_size)
        states, bar = _frames(input, tracking, [AlignStage(aligner), *stages, write], description, progress, stack,
                              frames, info.frame_count, track)
        for state in states:
            bar.advance(state.face is not None)
        # Raised inside the writer's context, so no output is left behind.
        return _finish(input, output, bar, started, tracking)


def _annotate(state: FrameState) -> FrameState:
    image = state.frame.image.copy()
    if state.face is not None and state.alignment is not None:
        draw_landmarks(image, state.face.xy)
        draw_crop_outline(image, state.alignment.corners_in_frame())
    draw_au_bars(image, state.aus)
    state.frame = dataclasses.replace(state.frame, image=image)
    return state


def track_video(
    input: PathLike,
    output: PathLike,
    tracking: TrackingOptions = TrackingOptions(),
    encode: EncodeOptions = EncodeOptions(),
    progress: bool = False,
) -> RunReport:
    """Write ``input`` with its landmarks, crop outline and AU bars drawn on, audio kept: what the tool sees."""
    return _video_job(input, output, [_annotate], tracking, encode, progress, "track")


def edit_video(
    input: PathLike,
    output: PathLike,
    editor: CropEditor,
    tracking: TrackingOptions = TrackingOptions(),
    encode: EncodeOptions = EncodeOptions(),
    progress: bool = False,
    track: FaceTrack | None = None,
) -> RunReport:
    """Run ``editor`` on every aligned face crop of ``input`` and paste the results back; audio kept. ``track``: the
    faces from a first pass (``first_pass``) instead of tracking again."""
    return _video_job(input, output, EditPasteStage(editor, batch=EDIT_BATCH).stages(), tracking, encode, progress, "edit",
                      track=track)


def analyze_aus(
    input: PathLike,
    csv_path: PathLike,
    plot_path: PathLike | None = None,
    tracking: TrackingOptions = TrackingOptions(),
    progress: bool = False,
) -> RunReport:
    """Write OpenFace-style AU intensities per frame of a video or image to ``csv_path``; optionally plot them."""
    check_au(input, csv_path, plot_path)
    started = time.perf_counter()
    times: list[float] = []
    curves: list[np.ndarray] = []
    with ExitStack() as stack:
        tmp_csv = stack.enter_context(atomic_output(csv_path))
        stream_out = stack.enter_context(open(tmp_csv, "w", newline=""))
        rows = AUCsvWriter(stream_out)
        states, bar = _frames(input, tracking, [], "au", progress, stack)
        for state in states:
            face = state.face
            rows.write(
                state.frame.index, state.frame.time,
                None if face is None else face.blendshapes,
                None if face is None else face.head_pose_degrees(),
            )
            times.append(state.frame.time)
            curves.append(state.aus if state.aus is not None else np.full(len(AU_NAMES), np.nan, np.float32))
            bar.advance(face is not None)
        report = _finish(input, csv_path, bar, started, tracking)
        stream_out.close()
    if plot_path is not None:
        from reenact.plot import plot_au_curves

        plot_au_curves(np.array(times), np.array(curves), plot_path, title=Path(input).name)
    return report


@dataclass(frozen=True)
class GeneratorOptions:
    """Which generator runs where, and whether its AUs and flow are smoothed over time."""

    model: PathLike | None = None  # a name in models/ or a path; None: $REENACT_MODEL, else models/default
    smooth: bool = True
    device: str = "auto"  # 'auto': the GPU when there is one
    edit_gain: bool = True  # False: edits move only as far as a read AU change of their size (the model's edit_gain unused)
    texture_strength: float | None = None  # a factor on the texture step's mask in place of the model's own
    memory: bool = True  # put the person's own mouths and eyes where an edit would paint (reenact.memory)
    precision: str = "auto"  # 'auto': the texture step in bfloat16 where the hardware has it natively; 'float32'

    def editor(self, target: Callable[[np.ndarray, float], np.ndarray],
               head_turn: Callable[[float], np.ndarray] | None = None, asked: bool = True,
               landmark_moves: Callable[[Generator], Callable[[np.ndarray, float], np.ndarray]] | None = None,
               memory: FaceMemory | None = None, fade: Callable[[float], float] | None = None,
               model: Generator | None = None) -> CropEditor:
        """``asked``: ``target`` gives edits (False: a driving face's readings, as transfers do).
        ``landmark_moves``: given the loaded generator, the landmarks' moves to make in place of the motion step's
        (a driving face's own motion: ``reenact.retarget.Retargeter``). ``memory``: the face memory to use (a
        frozen one from a first pass, or a new one that fills from the frames as they come, as live mode uses);
        none where ``self.memory`` is off. ``fade``: how much of the edit applies at time t (a first pass's
        ``FaceTrack.fade``). ``model``: these options' generator, already loaded (``load``)."""
        from reenact.editing import GeneratorEditor

        device = pick_device(self.device)
        model = self.load(device) if model is None else model
        moves = None if landmark_moves is None else landmark_moves(model)
        model.texture_dtype = texture_dtype(device, self.precision)
        return GeneratorEditor(model, target, self.smooth, device, head_turn=head_turn,
                               asked=asked and self.edit_gain, landmark_moves=moves,
                               memory=memory if self.memory else None, fade=fade)

    def load(self, device: str) -> Generator:
        """The generator's weights on ``device``, read from disk at each call (reenact.batch keeps them per worker)."""
        from reenact.model.io import load_generator

        model = load_generator(self.model, device)
        if self.texture_strength is not None:
            model.reconfigure(texture_strength=self.texture_strength)
        return model


def edit_expression(
    input: PathLike,
    output: PathLike,
    target: ExpressionTarget,
    generator: GeneratorOptions = GeneratorOptions(),
    tracking: TrackingOptions = TrackingOptions(),
    encode: EncodeOptions = EncodeOptions(),
    progress: bool = False,
    memory: FaceMemory | bool = True,
) -> RunReport:
    """Edit the expression of the face in a video or image toward ``target`` with the generator. ``memory``: a video
    gets a first pass that tracks it, fills a face memory (the person's own mouths and eyes, put where the edit
    would paint) and bridges short tracking gaps; False keeps the one-pass job and the paint; a ``FaceMemory``
    (``build_memory``) is used as it is. Raises an OptionError for a target that cannot apply to the input (a time
    range of a still, a start past the clip's end) and DeviceError for a device that is not here, before any work."""
    if isinstance(target, ExpressionTarget):
        check_edit(input, output, target)
    else:  # any function of (AUs, t), whose time range is its own
        check_output_path(output, input)
    encode = encode.for_output(output)
    # The generator loads before the first pass: a model file that cannot load fails at once, not after tracking
    # the whole clip, and the job's memory is all taken from its start.
    model = generator.load(pick_device(generator.device))
    with first_pass(input, tracking, memory if generator.memory else False, progress) as (track, face_memory):
        editor = generator.editor(target, memory=face_memory, fade=None if track is None else track.fade, model=model)
        return edit_video(input, output, editor, tracking, encode, progress, track)


def read_driving(driving: PathLike, tracking: TrackingOptions = TrackingOptions(), progress: bool = False):
    """Track a driving clip once: its AU, head-pose and aligned-landmark track and its timeline (format and frame
    timestamps)."""
    from reenact.editing import DrivingTrack

    stamps: list[tuple[int | None, object]] = []
    with ExitStack() as stack:
        states, bar = _frames(driving, tracking, [], "driving", progress, stack)

        def faces() -> Iterator[tuple[float, FaceObservation | None]]:
            for state in states:
                stamps.append((state.frame.pts, state.frame.time_base))
                bar.advance(state.face is not None)
                yield state.frame.time, state.face

        rows = _expression_rows(faces(), tracking.crop_size)
        _finish(driving, driving, bar, 0.0, tracking)
    return DrivingTrack.from_rows(*rows), probe(driving), stamps


def own_expression(faces: FaceTrack, crop_size: int):
    """A video source's own expression track (``editing.DrivingTrack``) from its first pass, or None where it found
    no face: what an absolute transfer by landmarks takes out before it puts the driving face's motion in."""
    from reenact.editing import DrivingTrack

    if not faces.found.any():
        return None
    return DrivingTrack.from_rows(*_expression_rows(((t, faces.face(i)) for i, t in enumerate(faces.times)),
                                                    crop_size))


def _expression_rows(faces: Iterable[tuple[float, FaceObservation | None]], crop_size: int) -> tuple[list, ...]:
    """Per frame, from (time, face): the time, AUs, head pose (degrees) and landmarks in the aligned crop
    (normalised), aligned as the edit's pipeline aligns them (``AlignStage``); None where there is no face."""
    from reenact.model.coords import normalise

    aligner = FaceAligner(crop_size)
    times: list[float] = []
    rows: list[np.ndarray | None] = []
    poses: list[np.ndarray | None] = []
    points: list[np.ndarray | None] = []
    for t, face in faces:
        if face is None:
            aligner.reset()  # as AlignStage: the next face may be elsewhere
        alignment = None if face is None else aligner(face.xy, t)
        found = alignment is not None
        times.append(t)
        rows.append(None if face is None else blendshapes_to_aus(face.blendshapes))
        poses.append(np.array(face.head_pose_degrees(), np.float32) if found else None)
        points.append(normalise(alignment.to_crop(face.xy), crop_size) if found else None)
    return times, rows, poses, points


TransferMotion = Literal["landmarks", "aus"]


def retargeted_motion(track, aus: tuple[str, ...], scale: float, follow_pose: bool, own=None):
    """A factory of the moves that carry ``track``'s own landmark motion onto a source face, for the loaded generator
    (its per-degree fields take the driving head's turns out, and put them back with ``follow_pose``). ``own``: the
    source video's own expression track (``own_expression``), taken out first (an absolute transfer)."""
    from reenact.retarget import Retargeter

    def build(model: Generator) -> Retargeter:
        pose_basis = model.motion.pose_basis.detach().cpu().numpy().astype(np.float64) if model.config.n_pose else None
        if follow_pose and pose_basis is None:
            raise ValueError("this model cannot turn the head (no head-pose motion in its config); use models/default")
        return Retargeter(track.motion(pose_basis), aus, scale, pose_basis if follow_pose else None,
                          None if own is None else own.motion(pose_basis))

    return build


def transfer_expression(
    source: PathLike,
    driving: PathLike,
    output: PathLike,
    relative: bool = True,
    au_scale: float = 1.0,
    aus: tuple[str, ...] | None = None,
    audio: Literal["source", "driving", "none"] | None = None,
    generator: GeneratorOptions = GeneratorOptions(),
    tracking: TrackingOptions = TrackingOptions(),
    encode: EncodeOptions = EncodeOptions(),
    progress: bool = False,
    follow_pose: bool = False,
    motion: TransferMotion | None = None,
    memory: FaceMemory | bool = True,
    time_range: TimeRange = TimeRange(),
) -> RunReport:
    """Give the face in ``source`` (a video or a still image) the expressions of the face in ``driving``.

    A video source keeps its own timeline; a still image is animated along the driving clip's. Audio comes
    from the source by default (from the driving clip for a still image). ``follow_pose``: the source's head also
    turns as the driving head turns from its usual pose (up to 10 degrees each way, as a 2-D warp of the face can
    show them; the source's own head motion and position are kept). ``motion``: 'landmarks' (the default) moves the source's
    face as the driving face's landmarks moved from its rest, retargeted to the source's proportions
    (``reenact.retarget``); 'aus' draws the driving face's AU readings with the model's motion (the default, and the
    only choice, for a still driving image). The AUs drive the texture step either way. ``relative`` (the default):
    the source's own expressions stay and the driving face's change from its rest is added (a talking source keeps
    its lips in time with its audio); False (absolute): the source's own expression is replaced, by landmarks its
    face taken back to its rest first (but for lids closing, which a warp cannot open), by AUs the driving AUs as
    they are. ``time_range``: a video source changes only from its ``start`` (where the driving clip's first frame
    goes) to its ``end``, faded in and out over its ``ramp``; the rest is the source as it was.

    Bad arguments raise before any work: an OptionError (an unknown AU, motion or audio choice), InputError or
    OutputError. A driving clip that ends before a source video is a ReenactWarning: its last expression is held.
    """
    from reenact.editing import TransferTarget

    chosen = transfer_aus(aus)
    check_au_scale(au_scale)
    source_info, driving_info = check_transfer(source, driving, output, audio, relative, time_range)
    encode = encode.for_output(output)
    motion = transfer_motion(relative, motion, driving_info.is_image)
    model = generator.load(pick_device(generator.device))  # before any tracking, as ``edit_expression`` does
    shorter = shorter_driver(source_info, driving_info, time_range)
    if shorter is not None:
        warnings.warn(shorter, ReenactWarning, stacklevel=2)
    silent = {"source": source_info, "driving": driving_info}.get(audio or "")
    if silent is not None and not silent.has_audio:
        warnings.warn(f"--audio {audio}: {silent.path} has no audio, so the output has none", ReenactWarning,
                      stacklevel=2)
    track, driving_info, stamps = read_driving(driving, tracking, progress)
    if time_range.start:  # the driving clip starts where the range does
        track = dataclasses.replace(track, times=track.times + time_range.start)
    # An absolute transfer by landmarks takes a video source's own expression out: its first pass is needed even
    # without a memory.
    replace = motion == "landmarks" and not relative
    with first_pass(source, tracking, memory if generator.memory else False, progress, track_only=replace) as (
            faces, face_memory):
        fade = windowed(None if faces is None else faces.fade, time_range)  # the memory is the source person's
        own = own_expression(faces, tracking.crop_size) if replace and faces is not None else None
        # A still is its own rest: replacing its expression is adding the driver's change to it.
        still = replace and own is None
        target = TransferTarget(track, relative or still, au_scale, chosen, None if own is None else own.rest)
        if motion == "landmarks":
            moves = retargeted_motion(track, chosen, au_scale, follow_pose, own)
            editor = generator.editor(target, asked=False, landmark_moves=moves, memory=face_memory, fade=fade,
                                      model=model)
        else:
            editor = generator.editor(target, track.turn if follow_pose else None, asked=False, memory=face_memory,
                                      fade=fade, model=model)
        return _transfer_job(source, driving, output, EditPasteStage(editor, batch=EDIT_BATCH), driving_info, stamps,
                             audio, tracking, encode, progress, faces)


def windowed(fade: Callable[[float], float] | None, time_range: TimeRange) -> Callable[[float], float] | None:
    """How much of a job's change applies at time t: ``fade``'s share (a first pass's, or all of it where None)
    inside ``time_range``, faded at its ends."""
    if time_range.whole:
        return fade
    return lambda t: time_range.weight(t) * (1.0 if fade is None else fade(t))


def _transfer_job(source: PathLike, driving: PathLike, output: PathLike, stage: EditPasteStage, driving_info: VideoInfo,
                  stamps: list, audio: str | None, tracking: TrackingOptions, encode: EncodeOptions, progress: bool,
                  track: FaceTrack | None) -> RunReport:
    """The transfer's video job: a still source is animated along the driving clip's timestamps."""
    source_info = probe(source)
    audio = audio or ("driving" if source_info.is_image else "source")
    audio_from = {"source": source, "driving": driving, "none": None}[audio]
    timeline = None
    if source_info.is_image:
        with VideoReader(source) as reader:
            still = next(iter(reader))
        like = dataclasses.replace(driving_info, path=Path(source), width=source_info.width, height=source_info.height,
                                   rotation=0, is_image=False)
        frames = (Frame(i, pts, time_base, still.image) for i, (pts, time_base) in enumerate(stamps))
        timeline = (like, frames)
    return _video_job(source, output, stage.stages(), tracking, encode, progress, "transfer", timeline, audio_from,
                      track)
