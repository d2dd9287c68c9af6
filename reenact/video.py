"""Read and write video (and still images) with PyAV.

Contract: frames leave this module UPRIGHT, as RGB uint8 arrays, with the display
rotation of the file already applied. The writer undoes that rotation before
encoding and stores the same display rotation in the output, so no other module
ever has to think about rotation. Timestamps pass through untouched, so a
variable-frame-rate input gives a variable-frame-rate output.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Generator, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import av
import av.container
import av.stream
import numpy as np

from reenact.encoding import DEFAULT_CRF, DEFAULT_PRESET
from reenact.errors import InputError, OutputError, OutputPathError, ReenactWarning
from reenact.files import StrPath, atomic_output

# Muxer errors and OS errors both mean "this file cannot be read/written".
_IO_ERRORS = (av.FFmpegError, OSError)

# File signatures of common containers: a file starting like this that FFmpeg cannot
# open is a damaged video, not a wrong kind of file (e.g. an MP4 that lost its moov).
_MEDIA_MAGIC_AT_0 = (b"\x1aE\xdf\xa3", b"RIFF", b"OggS", b"FLV", b"\x00\x00\x01\xba")
_MEDIA_MAGIC_AT_4 = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")

# Video outputs: these muxers keep variable frame rates and store a display matrix.
# (AVI, for one, fills timestamp gaps with dropped-frame placeholders.)
_VIDEO_MUXERS = frozenset({"mp4", "mov", "matroska", "webm"})
_SUPPORTED = ".mp4, .mov, .mkv or .webm (.png or .jpg for a still image)"

# Writing a display matrix needs PyAV >= 18 (VideoStream.set_display_rotation); FFmpeg's
# muxers ignore the old "rotate" metadata tag. Without it, rotation goes into the pixels.
_CAN_ROTATE = hasattr(av.VideoStream, "set_display_rotation")

# Still-image outputs: the image muxers need an image codec, not the video codec.
_IMAGE_CODECS = {".png": ("png", "rgb24"), ".jpg": ("mjpeg", "yuvj420p"), ".jpeg": ("mjpeg", "yuvj420p")}


@dataclass(frozen=True)
class VideoInfo:
    """What a reader hands out and what a writer needs to reproduce it."""

    path: Path
    width: int  # upright, i.e. after rotation
    height: int  # upright
    frame_count: int | None  # None when the container does not say
    fps: Fraction | None  # average frame rate
    time_base: Fraction
    rotation: int  # counter-clockwise degrees from the display matrix: 0, 90, 180 or 270
    duration: float | None  # seconds
    codec: str
    has_audio: bool
    audio_codec: str | None
    is_image: bool  # a still image opened as a 1-frame video
    # The frames' own timestamps do not advance (a clip cut without them: every frame at 0), so they are timed by
    # their order at the stream's nominal rate (``fps``, ``duration`` and the frames' ``pts`` alike).
    retimed: bool = False

    def timing_warning(self) -> str | None:
        """The warning for a clip whose frames were timed by their order, or None."""
        if not self.retimed:
            return None
        return (f"{self.path}: its frames' timestamps do not advance (a cut that did not set them?); its "
                f"{self.frame_count} frames are timed by their order at {float(self.fps):g} fps")


@dataclass
class Frame:
    """One decoded frame. `image` is (H, W, 3) uint8 RGB, upright."""

    index: int  # 0-based, in decode (= presentation) order
    pts: int | None
    time_base: Fraction
    image: np.ndarray

    @property
    def time(self) -> float:
        """Presentation time in seconds (NaN when the frame has no timestamp)."""
        return float(self.pts * self.time_base) if self.pts is not None else float("nan")

    def replace(self, **changes: Any) -> Frame:
        """A copy with some fields changed, e.g. `frame.replace(image=edited)`: timing is kept."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- reading


def _looks_like_media(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(8)
    return head.startswith(_MEDIA_MAGIC_AT_0) or head[4:8] in _MEDIA_MAGIC_AT_4


def _open_input(path: Path) -> av.container.InputContainer:
    """Open a media file, turning every failure into one actionable InputError."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video or image file")
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: file is empty")
        return av.open(str(path), metadata_errors="replace")
    except PermissionError as e:
        raise InputError(f"{path}: cannot be read (permission denied)") from e
    except _IO_ERRORS as e:
        if _looks_like_media(path):
            raise InputError(f"{path}: file is truncated or corrupt and cannot be opened") from e
        raise InputError(f"{path}: not a video or image file") from e


# FFmpeg's text demuxers (tty and kin) show any text file as ANSI art: a "video" no one means.
_TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        raise InputError(f"{path}: has no video stream (audio-only or not a video file)")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg has no decoder for it (or the codec id is damaged)
        raise InputError(f"{path}: video codec not supported (no decoder for it), or the file is corrupt")
    if stream.codec_context.name in _TEXT_CODECS:
        raise InputError(f"{path}: not a video or image file")
    return stream


def _reason(error: Exception) -> str:
    """What went wrong, in the OS's words when it has them."""
    return getattr(error, "strerror", None) or str(error)


def _corrupt(path: Path, after: int, error: Exception) -> InputError:
    reason = _reason(error)
    return InputError(f"{path}: file is truncated or corrupt (decoding failed after {after} frames: {reason})")


def _is_image_format(container: av.container.InputContainer) -> bool:
    # PyAV opens PNG/JPEG through the image2 demuxer or an "<codec>_pipe" one.
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


def _rotation(degrees: int) -> int:
    """Snap a display-matrix angle (-180..180) to 0/90/180/270: frames are rotated by quarter turns."""
    return round(degrees / 90) % 4 * 90


def _turned(width: int, height: int, degrees: int) -> tuple[int, int]:
    """Size after rotating by `degrees` (a multiple of 90)."""
    return (height, width) if degrees % 180 else (width, height)


def _rotate(image: np.ndarray, degrees: int) -> np.ndarray:
    """Rotate counter-clockwise by a multiple of 90 degrees (negative undoes it)."""
    return np.ascontiguousarray(np.rot90(image, k=degrees // 90))


def probe(path: StrPath) -> VideoInfo:
    """Describe a video or still image; raises InputError if it cannot be used.

    Decodes the first frame: FFmpeg exposes the display rotation on decoded frames,
    and a file with no decodable frame is useless anyway.
    """
    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        try:
            first = next(container.decode(stream), None)
        except _IO_ERRORS as e:
            raise _corrupt(path, 0, e) from e
        if first is None:
            raise InputError(f"{path}: has no video frames")
        rotation = _rotation(first.rotation)
        width, height = _turned(first.width, first.height, rotation)
        time_base = stream.time_base or Fraction(1, av.time_base)  # demuxers always set it
        is_image = _is_image_format(container)
        if stream.duration:
            duration: float | None = float(stream.duration * time_base)
        else:
            duration = container.duration / av.time_base if container.duration else None
        frame_count = 1 if is_image else (stream.frames or None)
        fps = stream.average_rate or None
        nominal = stream.guessed_rate or stream.codec_context.framerate
        # Frames packed more than twice as densely as the stream's nominal rate: their timestamps are broken.
        retimed = bool(frame_count and frame_count > 1 and nominal and duration is not None
                       and duration < 0.5 * (frame_count - 1) / float(nominal))
        if retimed:
            fps, duration = Fraction(nominal), float(frame_count / Fraction(nominal))
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            frame_count=frame_count,
            fps=fps,
            time_base=time_base,
            rotation=rotation,
            duration=duration,
            codec=stream.codec_context.name,
            has_audio=audio is not None,
            # An audio stream FFmpeg cannot decode has no codec context: its codec is unknown, not an error.
            audio_codec=audio.codec_context.name if audio is not None and audio.codec_context is not None else None,
            is_image=is_image,
            retimed=retimed,
        )


class VideoReader:
    """Iterate over the frames of a video (or a still image) lazily, upright RGB.

    Raises InputError while iterating if the file turns out truncated or corrupt
    (a decode error, or fewer frames than the container declares).
    """

    def __init__(self, path: StrPath, first: int = 0) -> None:
        """``first``: the index of the first frame to yield (those before it are decoded, as a stream must be, but
        not converted); indices stay the clip's own."""
        self.path = Path(path)
        self.first = first
        self.info = probe(self.path)
        self._container = _open_input(self.path)
        self._stream = _video_stream(self._container, self.path)
        self._stream.thread_type = "AUTO"  # frame + slice threads: decoding is the bottleneck
        self._frames = self._decode()

    def _decode(self) -> Generator[Frame, None, None]:
        info, count = self.info, 0
        # MP4/MOV index every sample, so decoding fewer frames means data is missing;
        # other counts are only informative (AVI counts dropped-frame placeholders).
        indexed = "mp4" in self._container.format.name.split(",")
        try:
            for vf in self._container.decode(self._stream):
                if count < self.first:
                    count += 1
                    continue
                pts = vf.pts if vf.pts is not None else vf.dts
                if info.retimed:
                    pts = round(count / (info.fps * info.time_base))
                image = _rotate(vf.to_ndarray(format="rgb24"), info.rotation)
                yield Frame(index=count, pts=pts, time_base=info.time_base, image=image)
                count += 1
        except _IO_ERRORS as e:
            raise _corrupt(self.path, count, e) from e
        if indexed and info.frame_count is not None and count < info.frame_count:
            raise InputError(
                f"{self.path}: file is truncated or corrupt (only {count} of {info.frame_count} frames decode)"
            )

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- writing


def _check_format(path: Path) -> None:
    """The extension must select a muxer we can write; opening one writes nothing yet."""
    try:
        container = av.open(str(path), "w")
    except ValueError as e:
        raise OutputPathError(f"{path}: unknown container extension {path.suffix or '(none)'!r}; use {_SUPPORTED}") from e
    name = container.format.name
    container.close()
    if name not in _VIDEO_MUXERS and path.suffix.lower() not in _IMAGE_CODECS:
        raise OutputPathError(f"{path}: cannot write {path.suffix} files; use {_SUPPORTED}")


def check_output_path(output: StrPath, *inputs: StrPath | None, media: bool = True) -> None:
    """Raise OutputError unless `output` can be written without touching any input (OutputPathError where the path
    as typed cannot work).

    With `media` (the default) its extension must also name a video or image format we can write.
    """
    out = Path(output)
    resolved = out.resolve()
    for inp in inputs:
        if inp is None:
            continue
        same = resolved == Path(inp).resolve()
        if not same and out.exists() and Path(inp).exists():
            same = os.path.samefile(out, inp)  # hard links / bind mounts
        if same:
            raise OutputPathError(f"{out}: output would overwrite the input {inp}; choose another output file")
    if out.is_dir():
        raise OutputPathError(f"{out}: is a folder; give an output file name such as {out / 'out.mp4'}")
    folder = resolved.parent
    if not folder.is_dir():
        raise OutputError(f"{out}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: output folder {folder} is not writable")
    if media:
        _check_format(out)


def is_image_path(path: StrPath) -> bool:
    """Whether ``path``'s extension names a still-image output (.png, .jpg): one frame, no audio."""
    return Path(path).suffix.lower() in _IMAGE_CODECS


def check_output_kind(output: StrPath, like: VideoInfo) -> None:
    """Raise OutputPathError where frames like ``like``'s (a video's) would go to an image file, which holds one."""
    suffix = Path(output).suffix.lower()
    if is_image_path(output) and not like.is_image:
        frames = f" of {like.frame_count} frames" if like.frame_count else ""
        raise OutputPathError(f"{output}: a {suffix} file holds one image, and this output is a video{frames} (from "
                          f"{like.path}); write it to .mp4, .mov, .mkv or .webm")


@functools.lru_cache(maxsize=32)
def _accepted_options(codec: str, options: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """Which of `options` the encoder knows, found by opening a tiny scratch encoder.

    PyAV has no option listing, but avcodec_open2 hands back the options it did not use.
    """
    ctx = av.Codec(codec, "w").create("video")
    ctx.width, ctx.height, ctx.time_base = 64, 64, Fraction(1, 25)
    formats = ctx.codec.video_formats
    ctx.pix_fmt = formats[0].name if formats else "yuv420p"
    ctx.options = dict(options)
    try:
        ctx.open()
    except _IO_ERRORS:
        return frozenset()  # the real open reports the problem with the real settings
    return frozenset(k for k, _ in options if k not in ctx.options)


def _quality_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    """ffmpeg-like -crf/-preset; codecs without crf get a fixed quantiser (-q:v) instead."""
    wanted = {"crf": str(crf), "preset": preset}
    known = _accepted_options(codec, tuple(wanted.items()))
    opts = {k: v for k, v in wanted.items() if k in known}
    if "crf" not in known:
        # Like ffmpeg -q:v, pinned through qmin=qmax (-q:v alone needs a per-frame quality
        # that PyAV cannot set). crf 0..51 maps onto q 1..31: crf 18 gives q 4-5 (high).
        q = str(min(31, max(1, round(crf / 4))))
        opts.update(qmin=q, qmax=q)
    return opts


def encoder_frame(image: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """An RGB image as a frame for an encoder that takes ``pix_fmt``. For yuv420p (x264's and most encoders' input)
    OpenCV converts it: the same BT.601 limited-range planes as FFmpeg's swscale (within one level), in a tenth of
    swscale's time (0.5 ms against 5 ms a 1280x720 frame on 2 cores), which matters when the encoder is the slowest
    stage. Other formats are left to the encoder's own swscale."""
    import cv2  # here, not at the top: the CLI checks its arguments through this module before any heavy import

    height, width = image.shape[:2]
    if pix_fmt == "yuv420p" and width % 2 == 0 and height % 2 == 0:
        return av.VideoFrame.from_ndarray(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YUV_I420),
                                          format="yuv420p")
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def _fit_pix_fmt(pix_fmt: str, width: int, height: int) -> str:
    """Keep the exact size: chroma-subsampled formats cannot code odd sizes, 4:4:4 can."""
    fmt = av.VideoFormat(pix_fmt)
    sub_w, sub_h = 64 // fmt.chroma_width(64), 64 // fmt.chroma_height(64)
    return "yuv444p" if width % sub_w or height % sub_h else pix_fmt


class _AudioCopier:
    """Muxes the audio of a source file into the output, in step with the video.

    Packets are copied as they are when the output container can hold the codec,
    else decoded and re-encoded (AAC when possible). Packets are read lazily from a
    second open of the source, so nothing is buffered for the whole clip.
    """

    def __init__(self, output: av.container.OutputContainer, source: av.container.InputContainer) -> None:
        self._output = output
        self._input = source
        self._source = source.streams.audio[0]
        self._encoder: av.AudioStream | None = None
        try:
            self._stream: av.stream.Stream = output.add_stream_from_template(self._source)
        except ValueError:  # the container cannot hold this codec: transcode
            self._encoder = self._add_encoder(output, self._source)
            self._stream = self._encoder
        self._packets = source.demux(self._source)
        self._pending: av.Packet | None = None

    @classmethod
    def open(cls, output: av.container.OutputContainer, source: Path) -> _AudioCopier | None:
        """A copier for the first audio stream of `source`, or None if it has no audio."""
        container = _open_input(source)
        if not container.streams.audio:
            container.close()
            return None
        if container.streams.audio[0].codec_context is None:  # no decoder: it can be neither copied nor re-encoded
            container.close()
            warnings.warn(f"{source}: its audio codec is not supported; the output has no audio", ReenactWarning)
            return None
        try:
            return cls(output, container)
        except BaseException:
            container.close()
            raise

    @staticmethod
    def _add_encoder(output: av.container.OutputContainer, source: av.AudioStream) -> av.AudioStream:
        layout = source.layout
        if layout.name.endswith("channels"):  # no channel order (e.g. WAV): encoders want one
            layout = av.AudioLayout(f"{layout.nb_channels}c")  # the default order for that count
        for codec in ("aac", output.default_audio_codec):
            with suppress(ValueError):  # ValueError: the container cannot hold this codec
                # Opus (WebM's) takes 48 kHz and a few lower rates, not 44.1 kHz: the encoder resamples to one.
                rates = av.codec.Codec(codec, "w").audio_rates
                rate = source.sample_rate if not rates or source.sample_rate in rates else \
                    min((r for r in rates if r >= source.sample_rate), default=max(rates))
                encoder = cast(av.AudioStream, output.add_stream(codec, rate=rate))
                encoder.layout = layout
                encoder.codec_context.open()  # fail now, not at the first packet
                return encoder
        raise ValueError(f"the {output.format.name} container cannot hold audio")

    def mux_until(self, seconds: float | None) -> None:
        """Mux source packets up to `seconds` (all remaining ones when None)."""
        for packet in self._iter_pending():
            if seconds is not None and packet.pts is not None and packet.pts * packet.time_base > seconds:
                self._pending = packet
                return
            self._mux(packet)

    def _iter_pending(self) -> Iterator[av.Packet]:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            yield packet
        for packet in self._packets:
            if packet.size:  # demux ends with an empty flush packet
                yield packet

    def _mux(self, packet: av.Packet) -> None:
        if self._encoder is None:
            packet.stream = self._stream
            self._output.mux(packet)
            return
        for frame in self._source.decode(packet):
            self._output.mux(self._encoder.encode(frame))

    def finish(self) -> None:
        self.mux_until(None)
        if self._encoder is not None:
            self._output.mux(self._encoder.encode(None))

    def close(self) -> None:
        self._input.close()


class VideoWriter:
    """Encode upright RGB frames into a video like `like`, written atomically.

    Keeps each frame's pts/time_base (same frame count and timestamps as the input,
    variable frame rate included), the resolution and the display rotation of `like`
    (MP4/MOV/MKV/WebM store it; other outputs, e.g. PNG, get upright pixels instead).
    `crf`/`preset`/`codec` behave like ffmpeg's options. With `audio_from`, its audio
    is copied without re-encoding when the container allows it.
    A failed or interrupted write leaves nothing at `path`.
    """

    def __init__(
        self,
        path: StrPath,
        like: VideoInfo,
        codec: str = "libx264",
        crf: int = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
        pix_fmt: str = "yuv420p",
        audio_from: StrPath | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.like = like
        check_output_path(self.path, like.path, audio_from)
        check_output_kind(self.path, like)
        audio_path = Path(audio_from) if audio_from is not None else None
        self._frames = 0
        self._last_pts = -1
        self._audio: _AudioCopier | None = None
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_output(self.path))
        try:
            image = _IMAGE_CODECS.get(self.path.suffix.lower())
            # "update": the image muxer writes one file instead of expecting a numbered sequence.
            self._container = av.open(str(tmp), "w", container_options={"update": "1"} if image else None)
            self._stack.callback(self._container.close)
            self._rotation = like.rotation if _CAN_ROTATE else 0
            if image is not None:
                codec, pix_fmt = image
                # Images have no audio and cannot declare a rotation: store upright pixels.
                audio_path, self._rotation = None, 0
            self._video = self._add_video(codec, crf, preset, pix_fmt, options or {})
            if audio_path is not None:
                self._audio = _AudioCopier.open(self._container, audio_path)
                if self._audio is not None:
                    self._stack.callback(self._audio.close)
        except BaseException as e:
            self._stack.__exit__(type(e), e, e.__traceback__)
            if isinstance(e, (ValueError, *_IO_ERRORS)):
                raise OutputError(f"{self.path}: cannot set up the output ({e})") from e
            raise

    def _add_video(self, codec: str, crf: int, preset: str, pix_fmt: str, options: dict[str, str]) -> av.VideoStream:
        like = self.like
        # Stored size: upright size turned back by the rotation the output will declare.
        width, height = _turned(like.width, like.height, self._rotation)
        try:
            stream = cast(av.VideoStream, self._container.add_stream(codec, rate=like.fps))
        except ValueError as e:  # unknown codec, or one this container cannot hold
            raise OutputError(f"{self.path}: cannot use video codec {codec!r} here ({e})") from e
        stream.width, stream.height = width, height
        stream.pix_fmt = _fit_pix_fmt(pix_fmt, width, height)
        # Same time base as the input so pts pass through unchanged.
        stream.time_base = like.time_base
        stream.codec_context.time_base = like.time_base
        ctx = stream.codec_context
        ctx.options = {**_quality_options(codec, crf, preset), **options}
        if self._rotation:
            stream.set_display_rotation(self._rotation)
        ctx.open()  # fail now, not at the first frame
        unused = sorted(set(options) & set(ctx.options))  # avcodec_open2 leaves unknown ones
        if unused:
            raise OutputError(f"{self.path}: video codec {codec!r} does not know option(s) {', '.join(unused)}")
        return stream

    def write(self, frame: Frame) -> None:
        """Encode one upright RGB frame at its own timestamp."""
        like = self.like
        if frame.image.shape != (like.height, like.width, 3) or frame.image.dtype != np.uint8:
            raise ValueError(
                f"frame {frame.index}: expected {like.height}x{like.width}x3 uint8, "
                f"got {frame.image.shape} {frame.image.dtype}"
            )
        vf = encoder_frame(_rotate(frame.image, -self._rotation), self._video.pix_fmt)
        vf.time_base = frame.time_base
        vf.pts = frame.pts if frame.pts is not None else self._last_pts + 1
        self._last_pts = vf.pts
        try:
            if self._audio is not None:
                self._audio.mux_until(float(vf.pts * frame.time_base))
            self._container.mux(self._video.encode(vf))
        except _IO_ERRORS as e:
            raise OutputError(f"{self.path}: writing failed ({e})") from e
        self._frames += 1

    def close(self) -> None:
        """Flush everything and move the finished file into place."""
        try:
            if self._frames == 0:
                raise OutputError(f"{self.path}: no frames were written")
            try:
                self._container.mux(self._video.encode(None))
                if self._audio is not None:
                    self._audio.finish()  # audio after the last frame (rounding at the end)
            except _IO_ERRORS as e:
                raise OutputError(f"{self.path}: writing failed ({e})") from e
        except BaseException as e:
            self._abandon(e)
            raise
        try:
            self._stack.close()  # closes the container (writes the trailer), then renames
        except _IO_ERRORS as e:
            raise OutputError(f"{self.path}: writing failed ({e})") from e

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._abandon(exc)

    def _abandon(self, error: BaseException) -> None:
        """Close and delete the unfinished output after ``error``. Closing can fail too (the trailer, on a full
        disk); the temporary is deleted all the same, and ``error``, the first, stays the one reported."""
        with suppress(*_IO_ERRORS):
            self._stack.__exit__(type(error), error, error.__traceback__)


# --------------------------------------------------------------------------- live streams


def camera_url(camera: str) -> tuple[str, str]:
    """The FFmpeg device and input format of a camera: an index (0, 1, ...) or a device name/path."""
    import sys

    if sys.platform.startswith("linux"):
        return (f"/dev/video{camera}" if camera.isdigit() else camera), "v4l2"
    if sys.platform == "darwin":
        return (f"{camera}:none" if camera.isdigit() else camera), "avfoundation"
    if sys.platform == "win32":
        return (camera if camera.startswith("video=") else f"video={camera}"), "dshow"
    raise InputError(f"cameras are not supported on {sys.platform}; pass the device with --input")


class StreamReader:
    """Frames of a camera, a network stream or a pipe, decoded as they arrive: upright RGB, the stream's timestamps.

    Opened once (no probing pass, unlike VideoReader, since a live source cannot be rewound). A source that fails
    mid-way (a camera unplugged, a connection dropped) raises InputError saying after how many frames.
    """

    def __init__(
        self, url: str, format: str | None = None, options: dict[str, str] | None = None,
        timeout: float | None = None, label: str | None = None,
    ) -> None:
        self.label = label or url
        try:
            self._container = av.open(url, format=format, options=options or {}, timeout=timeout,
                                      metadata_errors="replace")
        except (*_IO_ERRORS, ValueError) as e:
            raise InputError(f"{self.label}: cannot open ({_reason(e)})") from e
        self._stream = _video_stream(self._container, Path(self.label))
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: float | None = float(rate) if rate else None
        self.time_base = self._stream.time_base or Fraction(1, av.time_base)
        self.frames = 0

    def __iter__(self) -> Iterator[Frame]:
        try:
            for vf in self._container.decode(self._stream):
                image = _rotate(vf.to_ndarray(format="rgb24"), _rotation(vf.rotation))
                yield Frame(self.frames, vf.pts if vf.pts is not None else vf.dts, self.time_base, image)
                self.frames += 1
        except _IO_ERRORS as e:
            raise InputError(f"{self.label}: input lost after {self.frames} frames ({_reason(e)})") from e

    def close(self) -> None:
        self._container.close()


# Muxers for network URLs whose scheme does not say it: RTMP carries FLV, the datagram protocols MPEG-TS.
_STREAM_FORMATS = {"rtmp": "flv", "rtmps": "flv", "udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts"}


class StreamWriter:
    """Encode frames to a network stream (``rtmp://``, ``udp://``, ``srt://`` ...) for live viewing.

    Tuned for latency rather than size (x264's ``zerolatency``: no B-frames, no lookahead) with a keyframe every
    two seconds so a viewer can join at any time.
    """

    def __init__(self, url: str, width: int, height: int, fps: float, codec: str = "libx264", crf: int = 23,
                 preset: str = "ultrafast") -> None:
        self.url = url
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        try:
            self._container = av.open(url, "w", format=_STREAM_FORMATS.get(scheme))
        except (*_IO_ERRORS, ValueError) as e:
            raise OutputError(f"{url}: cannot open the stream ({_reason(e)})") from e
        try:
            self._video = cast(av.VideoStream, self._container.add_stream(codec, rate=Fraction(round(fps * 1000), 1000)))
            self._video.width, self._video.height = width, height
            self._video.pix_fmt = _fit_pix_fmt("yuv420p", width, height)
            self._video.time_base = Fraction(1, 1000)
            self._video.codec_context.time_base = Fraction(1, 1000)
            options = _quality_options(codec, crf, preset)
            if codec in ("libx264", "libx265"):
                options["tune"] = "zerolatency"
            options["g"] = str(max(1, round(2 * fps)))
            self._video.codec_context.options = options
            self._video.codec_context.open()
        except (*_IO_ERRORS, ValueError) as e:
            self._container.close()
            raise OutputError(f"{url}: cannot set up video codec {codec!r} ({e})") from e
        self._last_ms = -1

    def write(self, image: np.ndarray, seconds: float) -> None:
        """Send one RGB frame shown ``seconds`` after the start of the stream."""
        vf = encoder_frame(image, self._video.pix_fmt)
        ms = max(round(seconds * 1000), self._last_ms + 1)
        self._last_ms = ms
        vf.pts, vf.time_base = ms, Fraction(1, 1000)
        try:
            self._container.mux(self._video.encode(vf))
        except _IO_ERRORS as e:
            raise OutputError(f"{self.url}: sending failed ({e})") from e

    def close(self) -> None:
        with suppress(*_IO_ERRORS):
            self._container.mux(self._video.encode(None))
        self._container.close()
