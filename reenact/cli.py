"""The ``reenact`` command line: argument parsing only; the work is done by ``reenact.api``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reenact import __version__

EXAMPLES = {
    "au": """examples:
  reenact au talk.mp4 -o talk_aus.csv --plot talk_aus.png
  reenact au portrait.jpg -o portrait_aus.csv
  reenact au group.mp4 -o aus.csv --face 1          # the second face from the left""",
    "track": """examples:
  reenact track talk.mp4 -o talk_tracked.mp4
  reenact track talk.mp4 -o tracked.mkv --crf 23 --preset fast
  reenact track talk.mov -o tracked.mp4 --codec libx265 --crop-size 512""",
}


def _face_choice(text: str) -> str | int:
    if text == "largest":
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"--face takes 'largest' or a face index (0 = leftmost), not {text!r}")


def _crop_size(text: str) -> int:
    value = int(text)
    if not 64 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"--crop-size must be between 64 and 1024, not {value}")
    return value


def _add_tracking(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("face tracking")
    group.add_argument("--face", type=_face_choice, default="largest", help="'largest' (default) or a face index from the left")
    group.add_argument("--face-model", metavar="PATH", help="face_landmarker.task (default: $REENACT_FACE_LANDMARKER, the cache, then download)")
    group.add_argument("--crop-size", type=_crop_size, default=256, help="aligned face crop side in pixels, 64-1024 (default 256)")


def _add_encoding(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("encoding (as in ffmpeg)")
    group.add_argument("--codec", default="libx264", help="video encoder (default libx264)")
    group.add_argument("--crf", type=int, default=18, help="constant rate factor, lower is better quality (default 18)")
    group.add_argument("--preset", default="medium", help="encoder speed preset (default medium)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reenact", description="Edit facial expressions in video.")
    parser.add_argument("--version", action="version", version=f"reenact {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, epilog=EXAMPLES[name], parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    au = command("au", "Measure facial Action Units (OpenFace-style CSV, 0-5 scale) in a video or image.")
    au.add_argument("input", help="video or image")
    au.add_argument("-o", "--output", required=True, help="CSV file to write")
    au.add_argument("--plot", metavar="PNG", help="also plot the AU curves to this image")
    _add_tracking(au)

    track = command("track", "Draw landmarks, the face crop and live AU bars on a video: what reenact sees.")
    track.add_argument("input", help="video")
    track.add_argument("-o", "--output", required=True, help="video file to write (audio is kept)")
    _add_tracking(track)
    _add_encoding(track)
    return parser


def _run(args: argparse.Namespace) -> None:
    from reenact import api

    tracking = api.TrackingOptions(face_model=args.face_model, face=args.face, crop_size=args.crop_size)
    progress = not args.quiet
    if args.command == "au":
        report = api.analyze_aus(args.input, args.output, args.plot, tracking, progress=progress)
    else:
        encode = api.EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset)
        report = api.track_video(args.input, args.output, tracking, encode, progress=progress)
    if not args.quiet:
        speed = f", {report.fps:.1f} fps" if report.frames > 1 else ""
        print(
            f"{report.output}: {report.frames} frames, face in {report.faces_found} "
            f"({report.frames_without_face} without){speed}",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from reenact.errors import ReenactError

    try:
        _run(args)
    except KeyboardInterrupt:
        print("reenact: interrupted; no output written", file=sys.stderr)
        return 130
    except (ReenactError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"reenact: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
