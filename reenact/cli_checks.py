"""The command line's arguments checked before any work, per command: the options first, then the files they name.
Light to import (no torch, no MediaPipe), so a bad option or a missing file is said at once; ``reenact.checks`` holds
the checks themselves, shared with the API, so both say the same. PyAV loads only for the commands that read media
(``train`` runs where it is not installed)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from reenact.errors import InputError, OptionError
from reenact.expression import AUEdit, ExpressionTarget, TimeRange, parse_au_edit
from reenact.model.presets import parse_preset

if TYPE_CHECKING:
    from reenact.encoding import EncodeOptions


def au_edits(args: argparse.Namespace) -> tuple[tuple[AUEdit, ...], str | None, float]:
    """--au and --preset as (AU edits, preset name, strength)."""
    preset, strength = parse_preset(args.preset) if args.preset else (None, 1.0)
    return tuple(parse_au_edit(a) for a in args.au), preset, strength


def edit_target(args: argparse.Namespace) -> ExpressionTarget:
    """``edit``'s ExpressionTarget (an OptionError says what cannot work)."""
    if not args.au and not args.preset:
        raise OptionError("nothing to edit: give --au AUxx=V and/or --preset NAME")
    return ExpressionTarget(*au_edits(args), args.start, args.end, args.ramp)


def encode_options(args: argparse.Namespace) -> EncodeOptions:
    from reenact.encoding import EncodeOptions

    return EncodeOptions(codec=args.codec, crf=args.crf, preset=args.encoder_preset)


def check_arguments(args: argparse.Namespace) -> None:
    """Raise the error the command would meet, before it does any work."""
    command = {"edit": _edit, "transfer": _transfer, "track": _track, "au": _au, "live": _live, "batch": _batch,
               "prepare": _prepare, "train": _dataset, "eval": _eval}.get(args.command)
    if command is not None:
        command(args)


def _edit(args: argparse.Namespace) -> None:
    from reenact import checks

    target = edit_target(args)
    encode_options(args)
    checks.check_face_model(args.face_model)
    checks.check_edit(args.input, args.output, target)


def _transfer(args: argparse.Namespace) -> None:
    from reenact import checks

    encode_options(args)
    checks.check_face_model(args.face_model)
    _, driving = checks.check_transfer(args.source, args.driving, args.output, args.audio, args.mode == "relative",
                                       TimeRange(args.start, args.end, args.ramp))
    checks.transfer_motion(args.mode == "relative", args.motion, driving.is_image)


def _track(args: argparse.Namespace) -> None:
    from reenact import checks

    encode_options(args)
    checks.check_face_model(args.face_model)
    checks.check_video_job(args.input, args.output)


def _au(args: argparse.Namespace) -> None:
    from reenact import checks

    checks.check_face_model(args.face_model)
    checks.check_au(args.input, args.output, args.plot)


def _live(args: argparse.Namespace) -> None:
    from reenact import checks
    from reenact.video import probe

    _live_options(args)
    checks.live_preview(args.output, args.stream, args.virtual_cam, args.preview)
    encode_options(args)
    checks.check_face_model(args.face_model)
    if args.input is not None:
        checks.check_live_input(args.input)
    if args.source is not None:
        probe(args.source)
    if args.output is not None:
        checks.check_live_file(args.output, args.input, args.source)


def _live_options(args: argparse.Namespace) -> None:
    if (args.camera is None) == (args.input is None):
        raise OptionError("give one input: --camera N or --input URL/FILE")
    if args.source and (args.au or args.preset):
        raise OptionError("--source drives a face with the input's expressions; --au/--preset edit the input's face: "
                          "pick one")
    if not (args.source or args.au or args.preset):
        raise OptionError("nothing to do: give --preset NAME, --au AUxx=V or --source IMAGE")
    if args.pose and not args.source:
        raise OptionError("--pose turns a --source face's head with the input's; there is no --source")
    # Options that would do nothing where they are given: said, not ignored.
    if args.au_scale != 1.0 and not args.source:
        raise OptionError("--au-scale scales how far a --source face follows the input's; there is no --source")
    if args.realtime and args.input is None:
        raise OptionError("--realtime paces a file given with --input as a camera would; a --camera is real time "
                          "already")
    if args.loop and args.input is None:
        raise OptionError("--loop reads a file given with --input again from its start; a --camera does not end")
    if (args.camera_size or args.camera_fps) and args.camera is None:
        raise OptionError("--camera-size and --camera-fps ask a --camera for its size and rate; there is no --camera")
    if args.camera_size and not re.fullmatch(r"\d+x\d+", args.camera_size):
        raise OptionError(f"--camera-size takes WIDTHxHEIGHT, e.g. 1280x720, not {args.camera_size!r}")
    for name, value in (("--max-seconds", args.max_seconds), ("--stall-timeout", args.stall_timeout),
                        ("--camera-fps", args.camera_fps)):
        if value is not None and not value > 0:
            raise OptionError(f"{name} must be more than 0, not {value:g}")


def _batch(args: argparse.Namespace) -> None:
    from reenact import checks

    if args.workers is not None and args.workers < 1:
        raise OptionError(f"--workers must be at least 1, not {args.workers}")
    if args.au or args.preset:  # the edit that every job without one of its own gets
        ExpressionTarget(*au_edits(args), args.start, args.end, 0.3 if args.ramp is None else args.ramp)
    elif Path(args.jobs).is_dir():
        raise OptionError("nothing to edit: a folder of clips needs an edit (--au AUxx=V and/or --preset NAME)")
    encode_options(args)
    checks.check_face_model(args.face_model)
    if not Path(args.jobs).exists():
        raise InputError(f"{args.jobs}: no such job file or folder")


def _prepare(args: argparse.Namespace) -> None:
    from reenact import checks

    for given in (*args.videos, args.labels, args.manifest):
        if given is not None and not Path(given).exists():
            raise InputError(f"{given}: no such file or folder")
    checks.check_face_model(args.face_model)


def _dataset(args: argparse.Namespace) -> None:
    if not (Path(args.dataset) / "index.json").is_file():
        raise InputError(f"{args.dataset}: not a prepared dataset (no index.json in it; reenact prepare writes one)")


def _eval(args: argparse.Namespace) -> None:
    if not args.split and not args.all_people:
        raise OptionError("eval needs --split RUN/split.json (the validation people of the run that trained the "
                          "model) or --all-people: without either it would score every person in the dataset, the "
                          "ones the model trained on too")
    _dataset(args)
    if args.split and not Path(args.split).is_file():
        raise InputError(f"{args.split}: no such split file (a training run writes split.json in its folder)")
