"""A job's arguments checked before any work: the API's jobs run these first, and the CLI runs them before it loads
torch and MediaPipe, so a missing file or a bad option is said at once and no output is begun. Light to import."""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from pathlib import Path

from reenact.errors import InputError, OptionError, OutputPathError, ReenactWarning
from reenact.expression import ExpressionTarget, TimeRange
from reenact.face.aus import AU_NAMES, parse_au_name
from reenact.face.model_file import FACE_LANDMARKER_ENV, resolve_face_landmarker
from reenact.video import VideoInfo, check_output_kind, check_output_path, is_image_path, probe

PathLike = str | os.PathLike[str]
PLOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")  # what the AU plot (matplotlib) writes
AUDIO_CHOICES = ("source", "driving", "none")
MOTIONS = ("landmarks", "aus")


def check_face_model(face_model: PathLike | None) -> None:
    """A landmarker the user named (``--face-model`` or ``$REENACT_FACE_LANDMARKER``) must be a landmarker bundle;
    the cached or downloaded one is checked where it is fetched."""
    if face_model or os.environ.get(FACE_LANDMARKER_ENV):
        resolve_face_landmarker(face_model)


_TIMING_WARNED: set[str] = set()  # the CLI checks a job's inputs, then the API it calls checks them again


def timed(info: VideoInfo) -> VideoInfo:
    """``info``, having warned (once a process) if its clip's frames had to be timed by their order."""
    message = info.timing_warning()
    if message is not None and message not in _TIMING_WARNED:
        _TIMING_WARNED.add(message)
        warnings.warn(message, ReenactWarning, stacklevel=3)
    return info


def check_video_job(input: PathLike, output: PathLike) -> VideoInfo:
    """The input is a readable video or image, and the output a file of the same kind that can be written."""
    info = timed(probe(input))
    check_output_path(output, input)
    check_output_kind(output, info)
    return info


def check_edit(input: PathLike, output: PathLike, target: ExpressionTarget) -> VideoInfo:
    info = check_video_job(input, output)
    target.check_fits(info)
    return info


def check_au(input: PathLike, csv_path: PathLike, plot_path: PathLike | None = None) -> VideoInfo:
    info = timed(probe(input))
    check_output_path(csv_path, input, media=False)
    if Path(csv_path).suffix.lower() != ".csv":
        raise OutputPathError(f"{csv_path}: the AUs are written as CSV; name the file .csv")
    if plot_path is not None:
        check_output_path(plot_path, input, media=False)
        if Path(plot_path).suffix.lower() not in PLOT_SUFFIXES:
            raise OptionError(f"--plot {plot_path}: the plot is an image; name it {', '.join(PLOT_SUFFIXES)}")
    return info


def transfer_aus(aus: tuple[str, ...] | str | None) -> tuple[str, ...]:
    """The AUs a transfer carries, normalised ('12,au25' or ('AU12', 'AU25')); all of them for None; AUError for an
    unknown one."""
    if aus is None:
        return AU_NAMES
    items = aus.split(",") if isinstance(aus, str) else aus
    chosen = tuple(parse_au_name(a) for a in items if a.strip())
    if not chosen:
        raise OptionError("--aus names no AU; give e.g. AU12,AU25,AU26 or leave it out for all of them")
    return chosen


def transfer_motion(relative: bool, motion: str | None, driving_still: bool = False) -> str:
    """The transfer's motion: 'landmarks' (the driving face's own motion) by default, 'aus' for an absolute transfer
    from a still driving image (a still has no motion of its own, only AUs)."""
    motion = motion or ("aus" if driving_still else "landmarks")
    if motion not in MOTIONS:
        raise OptionError(f"--motion is 'landmarks' or 'aus', not {motion!r}")
    if motion == "landmarks" and driving_still:
        raise OptionError("a still driving image has no motion of its own to copy: --motion aus copies its AUs")
    return motion


AU_SCALE_RANGE = (0.0, 2.0)  # as the studio's slider: past 2 a driver's laugh tore the source's jaw


def check_au_scale(value: float, name: str = "--au-scale") -> float:
    """``--au-scale`` (a batch row's ``au_scale``: ``name``), how far the source follows the driver: a number from 0
    to 2 (OptionError otherwise)."""
    low, high = AU_SCALE_RANGE
    if not low <= value <= high:  # NaN fails too
        raise OptionError(f"{name} must be a number from {low:g} to {high:g}, not {value:g}")
    return value


def check_transfer(source: PathLike, driving: PathLike, output: PathLike, audio: str | None = None,
                   relative: bool = True, time_range: TimeRange = TimeRange()) -> tuple[VideoInfo, VideoInfo]:
    """Both inputs readable, the output a video that can be written (a transfer writes a video, even from a still
    source), the time range one of the source's: (source's info, driving clip's info). A still driving image copies
    nothing in a relative transfer (its one expression is its own rest), so it is refused there."""
    if audio is not None and audio not in AUDIO_CHOICES:
        raise OptionError(f"--audio is source, driving or none, not {audio!r}")
    source_info, driving_info = timed(probe(source)), timed(probe(driving))
    if driving_info.is_image and relative:
        raise OptionError(f"{driving} is a still image: a relative transfer copies how a driving face moves from its "
                          f"rest, and a still has one expression; give a driving video, or --mode absolute to copy "
                          f"its AUs")
    time_range.check_fits(source_info)
    check_output_path(output, source, driving)
    check_output_kind(output, dataclasses.replace(driving_info, is_image=False))
    return source_info, driving_info


def shorter_driver(source_info: VideoInfo, driving_info: VideoInfo, time_range: TimeRange = TimeRange()) -> str | None:
    """The warning for a driving clip that ends before the source video (or its ``time_range``) does (its last
    expression is then held), or None. Within a frame or two is not shorter: clips of the same length differ by
    rounding."""
    if source_info.is_image or source_info.duration is None or driving_info.duration is None:
        return None
    start = time_range.start or 0.0
    end = source_info.duration if time_range.end is None else min(time_range.end, source_info.duration)
    slack = 2 / float(driving_info.fps) if driving_info.fps else 0.08
    if driving_info.duration >= end - start - slack:
        return None
    held = end - start - driving_info.duration
    what = f"the source {source_info.path} ({source_info.duration:.1f} s)" if time_range.whole else \
        f"the transfer's {end - start:.1f} s from {start:g} s"
    return (f"the driving clip {driving_info.path} ({driving_info.duration:.1f} s) is shorter than {what}: its last "
            f"expression is held for the last {held:.1f} s")


def has_display() -> bool:
    """Whether a preview window can open: on Linux, an X11 or Wayland display must be set."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def live_preview(file: PathLike | None, stream: str | None, virtual_camera: bool, preview: bool | None) -> bool:
    """Whether a live run shows a preview window (``preview`` None: where there is a display and no other output);
    OptionError where the run would output nothing, or ask for a window where none can open."""
    others = file is not None or stream is not None or virtual_camera
    shown = preview if preview is not None else has_display() and not others
    if shown and not has_display():
        raise OptionError("no display here (a headless machine), so no preview window: drop --preview and give "
                          "--output FILE, --stream URL or --virtual-cam")
    if not shown and not others:
        outputs = "--output FILE, --stream URL, --virtual-cam or --preview" if has_display() else \
            "--output FILE, --stream URL or --virtual-cam (no preview window: this machine has no display)"
        raise OptionError(f"nothing to output: give {outputs}")
    return shown


def check_live_input(url: str) -> None:
    """A live input that names a local file (no ``scheme://``) must be one; anything else is opened as it comes."""
    if "://" not in url and not Path(url).exists():
        raise InputError(f"{url}: file not found")
    if "://" not in url and Path(url).is_file():
        probe(url)


def check_live_file(output: PathLike, *inputs: PathLike | None) -> None:
    """A live run's file output: a video (a live run never writes one image) that can be written."""
    check_output_path(output, *inputs)
    if is_image_path(output):
        raise OutputPathError(f"{output}: a live run writes a video, and a {Path(output).suffix} file holds one image; "
                          f"write it to .mp4, .mov, .mkv or .webm")
