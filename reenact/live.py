"""Live mode: a camera, a network stream or a paced file in; the edited face out to a window, a file, a virtual
camera or a network stream, without ever building up latency.

The stages are the offline pipeline's (track, align, edit and paste back), run by ``reenact.pipeline.stream`` in
live mode: each hand-over holds one frame and a newer frame replaces an untaken one. When the machine falls
behind, frames are dropped where they wait (and counted) instead of queueing, so a frame's latency stays one pass
through the stages however long the run.

Every frame is re-timed on one clock, in milliseconds from the first frame, so the tracker, the smoothing filters and
the encoders agree whatever timestamps a camera or a stream sends: a camera's or a stream's frames on the time since
the run started, a file's (paced or not) on its own timeline, so a file written from a file keeps its timing.

The output has no audio: a live run carries frames only.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from reenact.api import EncodeOptions, GeneratorOptions, PathLike, TrackingOptions
from reenact.checks import check_au_scale, check_live_file, check_live_input, live_preview
from reenact.editing import AUEdit, ExpressionTarget
from reenact.errors import InputError, NoFaceError, OptionError, OutputError, ReenactError
from reenact.face.align import FaceAligner
from reenact.face.tracker import FaceTracker
from reenact.memory import FaceMemory
from reenact.model.presets import PRESETS
from reenact.overlay import draw_hud
from reenact.pipeline import AlignStage, EditPasteStage, FrameState, TrackStage, stream
from reenact.retarget import followed_turn
from reenact.progress import LiveStatus
from reenact.video import (
    Frame, StreamReader, StreamWriter, VideoInfo, VideoReader, VideoWriter, atomic_output, camera_url,
    check_output_path, probe,
)

LIVE_TIME_BASE = Fraction(1, 1000)  # live frames are stamped in milliseconds since the start of the run
PRESET_KEYS = "1234567"  # keys 1-7 pick the presets in PRESETS' order


class InputStalled(InputError):
    """A live input delivered no frame for longer than the stall timeout."""


@dataclass(frozen=True)
class LiveInput:
    """Where live frames come from: a camera, or a URL/file/pipe that PyAV can open."""

    camera: str | None = None  # an index (0, 1, ...) or a device name
    url: str | None = None  # rtsp://, udp://, http://, a pipe, or a file
    realtime: bool = False  # pace a file as a camera would deliver it (else a file is read as fast as it is used)
    camera_size: str | None = None  # e.g. '1280x720'
    camera_fps: float | None = None
    loop: bool = False  # read a file again from its start when it ends (ffmpeg's -stream_loop -1)

    @property
    def label(self) -> str:
        return f"camera {self.camera}" if self.camera is not None else str(self.url)


@dataclass(frozen=True)
class LiveOutputs:
    """Where the edited frames go; any combination."""

    file: PathLike | None = None  # a video file (written atomically; kept when the run stops for any reason)
    stream: str | None = None  # rtmp://, udp://, srt://... for a live viewer
    virtual_camera: bool = False  # pyvirtualcam (optional extra reenact[virtualcam])
    preview: bool | None = None  # a window with a HUD; None: when there is a display and no other output
    encode: EncodeOptions = EncodeOptions()


@dataclass
class LiveControl:
    """What the keys change while running; the edit stage reads it for every frame."""

    enabled: bool = True
    edits: tuple[AUEdit, ...] = ()
    preset: str | None = None
    strength: float = 1.0
    quit: bool = False

    def target(self) -> ExpressionTarget:
        return ExpressionTarget(self.edits, self.preset, self.strength)

    def describe(self) -> str:
        if not self.enabled:
            return "edit off"
        parts = [f"{self.preset}:{self.strength:.1f}"] if self.preset else []
        parts += [f"{e.au}{'+' if e.relative and e.value >= 0 else '' if e.relative else '='}{e.value:g}" for e in self.edits]
        return "edit " + (" ".join(parts) or "on")

    def key(self, code: int) -> None:
        """e or space: edit on/off; p: next preset; 1-7: a preset; + / -: strength; q or Esc: quit."""
        if code < 0:
            return
        char = chr(code & 0xFF).lower()
        names = list(PRESETS)
        if char in ("q", "\x1b"):
            self.quit = True
        elif char in ("e", " "):
            self.enabled = not self.enabled
        elif char == "p":
            self.preset = names[(names.index(self.preset) + 1) % len(names)] if self.preset in names else names[0]
        elif char in PRESET_KEYS:
            self.preset = names[PRESET_KEYS.index(char)]
        elif char in ("+", "="):
            self.strength = min(2.0, self.strength + 0.1)
        elif char in ("-", "_"):
            self.strength = max(0.0, self.strength - 0.1)


@dataclass
class LiveReport:
    """What a live run did. Latency: from a frame's capture to its output (written, sent or shown)."""

    input: str
    captured: int = 0  # frames the input delivered: output_frames + dropped + unfinished
    output_frames: int = 0  # frames that came out (those without a face among them, as they came in)
    dropped: int = 0  # frames skipped because a stage was still busy with an earlier one
    unfinished: int = 0  # frames still on their way through the stages when the run was stopped (quit key, Ctrl-C)
    faces_found: int = 0
    seconds: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p95, max
    # p95 latency and frames out in each minute of the run: a run that builds up latency shows it here
    latency_p95_ms_by_minute: list[float] = field(default_factory=list)
    frames_out_by_minute: list[int] = field(default_factory=list)
    ended: str = ""  # why the run stopped
    error: str | None = None  # set when the input failed or stalled (what came before it is kept)
    outputs: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.output_frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "fps": round(self.fps, 2)}

    def summary(self) -> str:
        lat = self.latency_ms
        latency = f", latency p50 {lat['p50']:.0f} ms p95 {lat['p95']:.0f} ms" if lat else ""
        unfinished = f", {self.unfinished} unfinished at the stop" if self.unfinished else ""
        return (f"live {self.input}: {self.seconds:.1f} s, {self.captured} frames in, {self.output_frames} out, "
                f"{self.dropped} dropped{unfinished}, {self.fps:.1f} fps{latency}; {self.ended}")


# --- input ---------------------------------------------------------------------------------------------------


class _Capture:
    """Yields (frame, capture time) and re-times each frame in milliseconds: a file's frames on the file's own
    timeline from its first frame (``own_time``), a camera's or a stream's on the time since the run started.

    A paced file releases each frame at its own timestamp, as a camera would; its capture time is that moment,
    so a frame delivered late (a slow decode) counts its lateness as latency. ``stop`` ends the input between two
    frames: the frames already captured still go through the stages.
    """

    def __init__(self, frames: Iterable[Frame], pace: bool, own_time: bool = False, fps: float = 25.0) -> None:
        self.frames = frames
        self.pace = pace
        self.own_time = own_time or pace
        self.fps = fps
        self.captured = 0
        self.started = time.monotonic()
        self.last_arrival = self.started  # when the newest frame arrived: the stall watchdog reads it
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()

    def __iter__(self) -> Iterator[tuple[Frame, float]]:
        self.started = self.last_arrival = time.monotonic()
        first: float | None = None
        last_ms = -1
        for frame in self.frames:
            if self.stopped.is_set():
                return
            now = time.monotonic()
            at = now
            t = frame.time if math.isfinite(frame.time) else self.captured / self.fps
            first = t if first is None else first
            if self.pace:
                at = self.started + (t - first)
                if at > now:
                    time.sleep(at - now)
            clock = t - first if self.own_time else at - self.started
            ms = max(round(clock * 1000), last_ms + 1)
            last_ms = ms
            self.captured += 1
            self.last_arrival = time.monotonic()
            yield frame.replace(index=self.captured - 1, pts=ms, time_base=LIVE_TIME_BASE), at


class _LoopedFile:
    """A file read again from its start each time it ends, its timestamps running on across the loops."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = VideoReader(path)
        self.info = self.reader.info

    def __iter__(self) -> Iterator[Frame]:
        offset = 0.0  # seconds added to this loop's timestamps
        step = 1.0 / float(self.info.fps or 25)
        while True:
            first = last = None
            for frame in self.reader:
                t = frame.time if math.isfinite(frame.time) else (frame.index * step)
                first = t if first is None else first
                last = t
                yield frame.replace(pts=round((t + offset) / float(LIVE_TIME_BASE)), time_base=LIVE_TIME_BASE)
            if first is None:
                raise InputError(f"{self.path}: no frames to loop")
            offset += last - first + step
            self.reader.close()
            self.reader = VideoReader(self.path)

    def close(self) -> None:
        self.reader.close()


class OpenedInput(NamedTuple):
    frames: Iterable[Frame]
    live: bool  # frames must be dropped when the pipeline is behind (a camera, a stream, a paced file)
    paced: bool  # a file released at its own timestamps
    fps: float
    close: Callable[[], None]


def open_input(source: LiveInput, stall_timeout: float) -> OpenedInput:
    """Open a live input."""
    if (source.camera is None) == (source.url is None):
        raise OptionError("give one input: --camera N or --input URL/FILE")
    timeout = (max(10.0, stall_timeout), stall_timeout)  # PyAV's (open, read) timeouts, for network protocols
    if source.camera is not None:
        url, fmt = camera_url(source.camera)
        options = {"framerate": f"{source.camera_fps or 30:g}"}
        if source.camera_size:
            options["video_size"] = source.camera_size
        reader = StreamReader(url, fmt, options, timeout, label=f"camera {source.camera} ({url})")
        return OpenedInput(reader, True, False, reader.fps or 30.0, reader.close)
    url = str(source.url)
    path = Path(url)
    check_live_input(url)
    is_file = "://" not in url and path.is_file()
    if source.loop and not is_file:
        raise OptionError(f"--loop reads a file again from its start; {url} is not a file")
    if is_file:  # a regular file: paced like a camera, or read as fast as used
        file_reader = _LoopedFile(path) if source.loop else VideoReader(path)
        fps = float(file_reader.info.fps or 25)
        return OpenedInput(file_reader, source.realtime, source.realtime, fps, file_reader.close)
    reader = StreamReader(url, timeout=timeout)  # a network stream, a pipe or a device: live
    return OpenedInput(reader, True, False, reader.fps or 30.0, reader.close)


# --- stages --------------------------------------------------------------------------------------------------


class _CaptureTrack:
    """The track stage, keeping each frame's capture time for the latency figures."""

    __name__ = "track"

    def __init__(self, tracker: FaceTracker) -> None:
        self.track = TrackStage(tracker)

    def __call__(self, item: tuple[Frame, float]) -> FrameState:
        frame, at = item
        state = self.track(frame)
        state.captured = at
        return state


class _SwitchableEdit:
    """Edit mode: the camera's own face, edited toward the control's target while the edit is on."""

    __name__ = "edit"

    def __init__(self, generator: GeneratorOptions, control: LiveControl) -> None:
        self.control = control
        # The face memory fills from the stream as it goes (the paint stands in until it has what an edit needs).
        memory = FaceMemory() if generator.memory else None
        self.paste = EditPasteStage(generator.editor(lambda aus, t: control.target()(aus, t), memory=memory))

    def __call__(self, state: FrameState) -> FrameState:
        return self.paste(state) if self.control.enabled else state


class RunningRest:
    """A live driving face's resting AUs: each AU's 10th percentile over the last ``window`` frames (a face is
    at rest most of the time, so no neutral pose is needed; the same rule as transfer's whole-clip rest). With
    ``percentile`` 50, a head's usual pose (the rule of ``transfer --pose``)."""

    def __init__(self, window: int = 300, percentile: float = 10) -> None:
        self._recent: deque[np.ndarray] = deque(maxlen=window)
        self.percentile = percentile

    def add(self, values: np.ndarray) -> np.ndarray:
        self._recent.append(values)
        return np.percentile(np.stack(self._recent), self.percentile, axis=0).astype(np.float32)


class _Drive:
    """Drive mode: the camera face's change from its own rest, added to the source face's AUs (relative transfer).

    The source is a still image (tracked once) or a video, looped, whose frames advance with the camera's.
    """

    __name__ = "drive"

    def __init__(self, source: PathLike, generator: GeneratorOptions, tracking: TrackingOptions, control: LiveControl,
                 scale: float, stack: ExitStack, follow_pose: bool = False) -> None:
        self.source = Path(source)
        self.control = control
        self.scale = scale
        self.rest = RunningRest()
        self._drive: tuple[np.ndarray, np.ndarray] | None = None  # (camera AUs, their rest)
        self.usual_pose = RunningRest(percentile=50) if follow_pose else None
        self._turn_now = np.zeros(3, np.float32)  # the camera head's turn from its usual pose, degrees
        info = probe(self.source)
        self._still = info.is_image
        self._duration = info.duration or 0.0
        self._tracker = stack.enter_context(FaceTracker(tracking.face_model, tracking.face))
        self._aligner = FaceAligner(tracking.crop_size)
        self._align = AlignStage(self._aligner)
        self._reader: VideoReader | None = None
        self._offset = 0.0  # source time added per loop, so the tracker's clock keeps rising
        self._cached: FrameState | None = None
        memory = FaceMemory() if generator.memory and not self._still else None  # the source's own, as it loops
        self.paste = EditPasteStage(generator.editor(self._goal, self._turn if follow_pose else None, asked=False,
                                                     memory=memory))
        first = self._next_source()
        if first.face is None and self._still:
            raise NoFaceError(f"{self.source}: no face found in the source image")
        self._cached = first if self._still else None

    def _goal(self, aus: np.ndarray, t: float) -> np.ndarray:
        if self._drive is None or not self.control.enabled:
            return aus
        drive, rest = self._drive
        return np.clip(aus + self.scale * self.control.strength * (drive - rest), 0.0, 5.0).astype(np.float32)

    def _turn(self, t: float) -> np.ndarray:
        return self._turn_now * self.control.strength if self.control.enabled else np.zeros(3, np.float32)

    def _next_source(self) -> FrameState:
        if self._cached is not None:  # a still: tracked and aligned once
            return FrameState(self._cached.frame, self._cached.face, self._cached.aus, self._cached.alignment,
                              self._cached.crop)
        frame = self._next_frame()
        t = frame.time + self._offset
        state = FrameState(frame, self._tracker(frame.image, t))
        state.frame = frame.replace(pts=round(t * 1000), time_base=LIVE_TIME_BASE)
        return self._align(state)

    def _next_frame(self) -> Frame:
        for _ in range(2):
            if self._reader is None:
                self._reader = VideoReader(self.source)
            frame = next(self._reader, None)
            if frame is not None:
                return frame
            self._reader.close()
            self._reader = None
            self._offset += self._duration + 0.04
        raise InputError(f"{self.source}: no frames to loop")

    def __call__(self, camera: FrameState) -> FrameState:
        if camera.aus is not None:
            self._drive = (camera.aus, self.rest.add(camera.aus))
        if camera.face is not None and self.usual_pose is not None:
            pose = np.array(camera.face.head_pose_degrees(), np.float32)
            self._turn_now = followed_turn(pose - self.usual_pose.add(pose))  # as far as ``transfer --pose``
        state = self._next_source()
        # On the camera's clock from here (the editor's smoothing needs time to pass, even for a still source).
        state.frame = state.frame.replace(index=camera.frame.index, pts=camera.frame.pts, time_base=LIVE_TIME_BASE)
        if state.face is not None and self._drive is not None:
            state = self.paste(state)
        state.captured, state.aus = camera.captured, camera.aus  # the camera face's AUs, for the HUD
        return state


# --- outputs -------------------------------------------------------------------------------------------------


class _Preview:
    """An OpenCV window with the HUD; returns the key pressed, if any."""

    TITLE = "reenact live (q: quit, e: edit on/off, p/1-7: preset, +/-: strength)"

    def __init__(self) -> None:
        import cv2

        self.cv2 = cv2
        cv2.namedWindow(self.TITLE, cv2.WINDOW_NORMAL)

    def show(self, image: np.ndarray) -> int:
        cv2 = self.cv2
        cv2.imshow(self.TITLE, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1)
        if cv2.getWindowProperty(self.TITLE, cv2.WND_PROP_VISIBLE) < 1:  # closed with the mouse
            return ord("q")
        return key

    def close(self) -> None:
        self.cv2.destroyWindow(self.TITLE)


def _pyvirtualcam():  # noqa: ANN202 (an optional module)
    try:
        import pyvirtualcam
    except ImportError as e:
        raise ReenactError("--virtual-cam needs pyvirtualcam: pip install 'reenact[virtualcam]'") from e
    return pyvirtualcam


class _VirtualCamera:
    def __init__(self, width: int, height: int, fps: float) -> None:
        pyvirtualcam = _pyvirtualcam()
        try:
            self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB)
        except RuntimeError as e:
            raise OutputError(f"virtual camera did not open ({' '.join(str(e).split())})") from e

    def write(self, image: np.ndarray) -> None:
        self.camera.send(image)

    def close(self) -> None:
        self.camera.close()


class _Outputs:
    """Opens the outputs at the first frame (its size is the output's) and feeds each frame to all of them."""

    def __init__(self, outputs: LiveOutputs, label: str, fps: float, preview: bool, stack: ExitStack) -> None:
        self.options = outputs
        self.label = label
        self.fps = fps
        self.stack = stack
        self.preview = _Preview() if preview else None
        if self.preview is not None:
            stack.callback(self.preview.close)
        self.file: VideoWriter | None = None
        self.stream: StreamWriter | None = None
        self.camera: _VirtualCamera | None = None
        self.opened = False

    def _open(self, width: int, height: int) -> None:
        self.opened = True
        o = self.options
        if o.file is not None:
            like = VideoInfo(Path(self.label), width, height, None, Fraction(round(self.fps * 1000), 1000),
                             LIVE_TIME_BASE, 0, None, "", False, None, False)
            # One encoder thread up to 1080p (x264 veryfast codes a 1080p frame in 27.5 ms on one core, inside a
            # 30 fps frame's time): the pipeline's stages already keep the cores busy, and the encoder's own frame
            # threads only competed with them (720p on 2 cores: 29.4-29.7 fps out against 28.6-29.0, alternated).
            one = {"threads": "1"} if width * height <= 1920 * 1080 else None
            encode = o.encode.for_output(o.file)
            self.file = VideoWriter(o.file, like, encode.codec, encode.crf, encode.preset, options=one)
        if o.stream is not None:
            self.stream = StreamWriter(o.stream, width, height, self.fps, o.encode.codec)
            self.stack.callback(self.stream.close)
        if o.virtual_camera:
            self.camera = _VirtualCamera(width, height, self.fps)
            self.stack.callback(self.camera.close)

    def write(self, frame: Frame) -> None:
        if not self.opened:
            self._open(frame.image.shape[1], frame.image.shape[0])
        if self.file is not None:
            self.file.write(frame)
        if self.stream is not None:
            self.stream.write(frame.image, frame.time)
        if self.camera is not None:
            self.camera.write(frame.image)

    def show(self, image: np.ndarray) -> int:
        return self.preview.show(image) if self.preview is not None else -1

    def finish(self) -> None:
        """Finalise the file: a live run's output is kept whatever stopped it (a stop key, a lost camera...)."""
        if self.file is not None:
            self.file.close()

    def abandon(self, exc: BaseException) -> None:
        if self.file is not None:
            self.file.__exit__(type(exc), exc, exc.__traceback__)


def _latency_figures(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ms = np.asarray(latencies) * 1000.0
    return {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
            "max": round(float(ms.max()), 1)}


def _by_minute(latencies: list[float], times: list[float]) -> tuple[list[float], list[int]]:
    """p95 latency (ms) and frames out in each whole or started minute of the run, from each frame's output time."""
    if not latencies:
        return [], []
    minute = (np.asarray(times) // 60).astype(int)
    ms = np.asarray(latencies) * 1000.0
    p95 = [round(float(np.percentile(ms[minute == m], 95)), 1) if (minute == m).any() else float("nan")
           for m in range(minute.max() + 1)]
    return p95, np.bincount(minute).tolist()


def run_live(
    source: LiveInput,
    outputs: LiveOutputs,
    edit: LiveControl | None = None,
    drive: PathLike | None = None,
    au_scale: float = 1.0,
    generator: GeneratorOptions = GeneratorOptions(),
    tracking: TrackingOptions = TrackingOptions(),
    max_seconds: float | None = None,
    stall_timeout: float = 5.0,
    report_path: PathLike | None = None,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
    follow_pose: bool = False,
) -> LiveReport:
    """Run live until the input ends, ``max_seconds`` pass, the quit key, Ctrl-C, or the input fails or stalls.

    Mode: ``drive`` (a source image or video that follows the camera face's expressions) or ``edit`` (the camera
    face itself, edited by AUs or a preset; switchable with keys in the preview). ``follow_pose``: in drive mode,
    the source's head also turns as the camera head turns from its usual pose (its median over the last frames).
    Whatever stops the run, what was output is kept; an input that fails or stalls is reported in
    ``LiveReport.error``.
    """
    control = edit if edit is not None else LiveControl()
    check_au_scale(au_scale)
    preview = live_preview(outputs.file, outputs.stream, outputs.virtual_camera, outputs.preview)
    if outputs.virtual_camera:
        _pyvirtualcam()  # fail before the camera opens, not at the first frame
    if outputs.file is not None:
        check_live_file(outputs.file, source.url, drive)
        outputs.encode.for_output(outputs.file)
    if report_path is not None:
        check_output_path(report_path, source.url, media=False)
    report = LiveReport(source.label)
    latencies: list[float] = []
    out_times: list[float] = []  # when each frame came out, from the start: per-minute figures

    def dropped(stage: int) -> None:
        if report.dropped == 0 and warn is not None:
            warn("falling behind the input: dropping frames to keep the latency low")
        report.dropped += 1

    with ExitStack() as stack:
        ctrl_c = stack.enter_context(_ctrl_c_pressed())
        frames, is_live, paced, fps, close_input = open_input(source, stall_timeout)
        capture = _Capture(frames, pace=paced, own_time=not is_live, fps=fps)
        tracker = stack.enter_context(FaceTracker(tracking.face_model, tracking.face))
        stages: list[Callable] = [_CaptureTrack(tracker)]
        if drive is not None:
            stages.append(_Drive(drive, generator, tracking, control, au_scale, stack, follow_pose))
        else:
            stages += [AlignStage(FaceAligner(tracking.crop_size)), _SwitchableEdit(generator, control)]
        sinks = _Outputs(outputs, source.label, fps, preview, stack)
        status = stack.enter_context(LiveStatus(progress))

        def watchdog() -> None:
            if ctrl_c.is_set():
                raise _Stop("interrupted (Ctrl-C)")
            if capture.stopped.is_set():
                return  # the input is closed: the frames on their way come out, then the stream ends
            # Only a live input can stall: a file read as fast as it is used waits on the pipeline, not the input.
            if is_live and time.monotonic() - capture.last_arrival > stall_timeout:
                raise InputStalled(f"{source.label}: input stalled (no frame for {stall_timeout:g} s)")
            if max_seconds is not None and time.monotonic() - capture.started >= max_seconds:
                # The input stops here; the frames already read still come out, so every frame is accounted for.
                capture.stop()
                report.ended = f"stopped after --max-seconds {max_seconds:g}"

        started = time.monotonic()
        stalled = False
        report.ended = "end of input"
        try:
            for state in stream(capture, stages, on_drop=dropped if is_live else None, on_idle=watchdog):
                sinks.write(state.frame)
                key = sinks.show(draw_hud(state.frame.image, report.fps if report.seconds else 0.0,
                                          latencies[-1] * 1000 if latencies else 0.0, report.dropped, state.aus,
                                          control.describe())) if sinks.preview is not None else -1
                now = time.monotonic()
                latencies.append(now - (state.captured if state.captured is not None else now))
                out_times.append(now - started)
                report.output_frames += 1
                report.faces_found += int(state.face is not None)
                report.seconds = now - started
                status.update(report.output_frames, report.fps, latencies[-1] * 1000, report.dropped)
                control.key(key)
                if control.quit:
                    report.ended = "quit key"
                    break
                watchdog()
        except _Stop as stop:
            report.ended = str(stop)
        except KeyboardInterrupt:
            report.ended = "interrupted (Ctrl-C)"
        except InputError as e:  # the input failed or stalled mid-way: keep what came before
            stalled = isinstance(e, InputStalled)
            report.ended, report.error = "input failed", str(e)
        except BaseException as e:
            sinks.abandon(e)
            raise
        report.seconds = time.monotonic() - started
        report.captured = capture.captured
        report.unfinished = report.captured - report.output_frames - report.dropped
        report.latency_ms = _latency_figures(latencies)
        report.latency_p95_ms_by_minute, report.frames_out_by_minute = _by_minute(latencies, out_times)
        if report.output_frames == 0:
            raise report_error(report) if report.error else NoFaceError(f"{source.label}: no frame came out")
        sinks.finish()
        if not stalled:  # a reader blocked in a stalled read cannot be closed under it; its thread is a daemon
            close_input()
    report.outputs = [str(p) for p in (outputs.file, outputs.stream) if p is not None]
    if report_path is not None:
        with atomic_output(report_path) as tmp:
            Path(tmp).write_text(json.dumps(report.as_dict(), indent=1) + "\n")
    return report


class _Stop(Exception):
    """A normal end of a live run (--max-seconds, Ctrl-C)."""


@contextmanager
def _ctrl_c_pressed() -> Iterator[threading.Event]:
    """An event that Ctrl-C sets, for the run's loop to check. Raised where the main thread happens to be, a
    KeyboardInterrupt can land in a C library's callback and be lost there, and the run goes on. A second Ctrl-C
    raises as usual."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield pressed
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # set outside Python: Python's own is the nearest we can put back
        previous = signal.default_int_handler

    def handler(signum: int, frame: object) -> None:
        pressed.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def report_error(report: LiveReport) -> ReenactError:
    """The one-line error for a run whose input failed, saying what was kept."""
    kept = f"; kept {report.output_frames} frames in {', '.join(report.outputs)}" if report.outputs else ""
    return ReenactError(f"{report.error}{kept}")
