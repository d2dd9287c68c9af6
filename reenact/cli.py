"""The ``reenact`` command line: argument parsing only; the work is done by ``reenact.api``.

Arguments are checked before torch and MediaPipe load (``reenact.cli_checks``), so a bad option or a missing file is said at
once; how errors are said, and their exit statuses, is ``reenact.messages``'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from reenact import __version__
from reenact.errors import OptionError, ReenactError
from reenact.messages import CommandLineError, OneLineParser, report_error, warnings_on_one_line

EXAMPLES = {
    "edit": """examples:
  reenact edit talk.mp4 -o smile.mp4 --au AU12=3
  reenact edit talk.mp4 -o more.mp4 --au AU12=+1.5 --au AU26=+1
  reenact edit talk.mp4 -o sad.mp4 --preset sad:0.7 --start 2 --end 5
  reenact edit portrait.jpg -o happy.jpg --preset happy
  reenact edit talk.mp4 -o painted.mp4 --preset surprised --no-memory   # paint, not the person's own teeth""",
    "transfer": """examples:
  reenact transfer me.mp4 actor.mp4 -o me_acting.mp4
  reenact transfer portrait.jpg actor.mp4 -o animated.mp4          # a still image, animated (actor's audio)
  reenact transfer portrait.jpg actor.mp4 -o animated.mp4 --pose   # ... nodding and turning with the actor
  reenact transfer me.mp4 actor.mp4 -o out.mp4 --aus AU12,AU25,AU26 --au-scale 0.7
  reenact transfer me.mp4 actor.mp4 -o out.mp4 --mode absolute --audio driving   # the actor's face and voice
  reenact transfer me.mp4 actor.mp4 -o out.mp4 --motion aus       # the model's motion for the actor's AUs
  reenact transfer me.mp4 actor.mp4 -o out.mp4 --start 2 --end 5  # only 2-5 s of me.mp4, the actor from 2 s""",
    "live": """examples:
  reenact live --camera 0 --preset happy                     # a preview window; keys below
  reenact live --camera 0 --source avatar.jpg                 # the avatar follows your expressions
  reenact live --camera 0 --source avatar.jpg --pose          # ... and your head's nods and turns
  reenact live --camera 0 --au AU12=+2 --output me.mp4 --no-preview
  reenact live --input clip.mp4 --realtime --preset happy --output out.mp4 --max-seconds 5 --report live.json
  reenact live --input rtsp://cam.local/stream --preset surprised --stream udp://127.0.0.1:9000
  reenact live --camera 0 --preset happy --virtual-cam        # needs pip install 'reenact[virtualcam]'

preview keys: e or space edit on/off, p next preset, 1-7 a preset, + / - strength, q or Esc quit.
When the machine falls behind, frames are dropped (and counted) so latency never builds up.
The output is video only, with no audio: a live run carries frames, not sound (for a file with its sound, use
reenact edit). A file given with --input keeps its own timestamps in the output.""",
    "eval": """examples:
  reenact eval dataset --split runs/motion/split.json --compare eval/ -o eval/report.json
  reenact eval dataset --model runs/texture/model --pairs 512
  reenact eval dataset --split runs/basis/split.json --videos 48""",
    "prepare": """examples:
  reenact prepare clips/ -o dataset --crop-size 128 --workers 2
  reenact prepare ../shared/data/train -o dataset --labels ../shared/data/train_aus --manifest ../shared/data/train/MANIFEST.csv""",
    "train": """examples:
  reenact train dataset -o runs/motion --phase motion --steps 4000
  reenact train dataset -o runs/texture --phase texture --init runs/motion/model --steps 2000
  reenact train dataset -o runs/basis --phase basis --init runs/texture/model   # closed-form motion fields
  torchrun --nproc-per-node 2 -m reenact train dataset -o runs/joint --phase joint
  reenact train dataset -o runs/gpu --phase adversarial --init runs/basis/model --seconds 300 --batch 64
  reenact train dataset -o runs/gain --phase gain --init runs/gpu/model   # edits read back as asked
  reenact train dataset -o runs/critic --phase adversarial --au-weight 0.3 --critic-reads warped --tune-motion""",
    "au": """examples:
  reenact au talk.mp4 -o talk_aus.csv --plot talk_aus.png
  reenact au portrait.jpg -o portrait_aus.csv
  reenact au group.mp4 -o aus.csv --face 1          # the second face from the left""",
    "track": """examples:
  reenact track talk.mp4 -o talk_tracked.mp4
  reenact track talk.mp4 -o tracked.mkv --crf 23 --encoder-preset fast
  reenact track talk.mov -o tracked.mp4 --codec libx265 --crop-size 512""",
    "batch": """examples:
  reenact batch jobs.csv -o out/                          # rows: op,input,driving,output,au,preset,...
  reenact batch jobs.yaml -o out/ --workers 2             # two jobs at a time
  reenact batch clips/ -o happy/ --preset happy           # every clip in a folder, one edit
  reenact batch clips/ -o smile/ --au AU12=+1.5 --au AU26=+1
  reenact batch jobs.json -o out/ --ray local             # as Ray tasks (pip install 'reenact[ray]')
  reenact batch jobs.csv -o out/ --ray auto --report runs/batch.json   # on a running Ray cluster

A rerun skips the jobs whose output exists (--force redoes them); OUTDIR/batch_report.json lists every job.""",
    "studio": """examples:
  reenact studio                        # open http://127.0.0.1:7860 in a browser, then upload a clip
  reenact studio talk.mp4               # ... with this clip already open and tracked
  reenact studio talk.mp4 --port 8000   # another port (--host 0.0.0.0 to serve other machines)

The page: scrub to a frame, move the AU sliders or pick a preset (the preview updates when a slider is
released), or drive the face with another clip (Transfer); render the whole clip and download it with its AU CSV.
Needs the studio extra: pip install 'reenact[studio]'""",
}


def _checked(check: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from one of the API's checks: its message becomes argparse's error (one line, exit 2)."""

    def parse(text: str) -> object:
        try:
            return check(text)
        except OptionError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = check.__name__
    return parse


def _au_scale(text: str) -> float:
    from reenact.checks import AU_SCALE_RANGE, check_au_scale

    try:
        value = float(text)
    except ValueError:
        low, high = AU_SCALE_RANGE
        raise OptionError(f"--au-scale must be a number from {low:g} to {high:g}, not {text!r}") from None
    return check_au_scale(value)


def _face_choice(text: str) -> str | int:
    from reenact.tracking import face_choice

    return face_choice(text)


def _crop_size(text: str) -> int:
    from reenact.tracking import check_crop_size

    return check_crop_size(int(text) if text.strip().isdigit() else text)  # type: ignore[arg-type]


def _au_edit(text: str) -> str:
    """An --au option, checked here and kept as text (a batch passes it on to each job)."""
    from reenact.expression import parse_au_edit

    parse_au_edit(text)
    return text


def _expression_preset(text: str) -> str:
    from reenact.model.presets import parse_preset

    parse_preset(text)
    return text


def _au_list(text: str) -> str:
    from reenact.checks import transfer_aus

    transfer_aus(text)
    return text


def _device(text: str) -> str:
    from reenact.devices import check_device_name

    return check_device_name(text)


def _add_tracking(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("face tracking")
    group.add_argument("--face", type=_checked(_face_choice), default="largest", help="'largest' (default) or a face index from the left, from 0")
    group.add_argument("--face-model", metavar="PATH", help="face_landmarker.task (default: $REENACT_FACE_LANDMARKER, the cache, then download)")
    group.add_argument("--crop-size", type=_checked(_crop_size), default=256, help="aligned face crop side in pixels, 64-1024 (default 256)")


def _add_encoding(parser: argparse.ArgumentParser) -> None:
    from reenact.encoding import DEFAULT_CRF, DEFAULT_PRESET

    # --preset is an expression preset wherever it exists; the encoder's is --encoder-preset in every command.
    group = parser.add_argument_group("encoding (as in ffmpeg)")
    group.add_argument("--codec", default="libx264", help="video encoder (default libx264, libvpx-vp9 for .webm; `ffmpeg -encoders` lists them)")
    group.add_argument("--crf", type=int, default=DEFAULT_CRF,
                       help=f"constant rate factor, lower is better quality: 0-51 for libx264/libx265 (default "
                            f"{DEFAULT_CRF})")
    group.add_argument("--encoder-preset", default=DEFAULT_PRESET, metavar="PRESET",
                       help=f"encoder speed preset: ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, "
                            f"veryslow (libx264/libx265; default {DEFAULT_PRESET})")


class _NoExpressionPreset(argparse.Action):
    """--preset where a command has no expression presets: said at once, with the flag that was meant."""

    def __init__(self, *args: object, why: str = "", **kwargs: object) -> None:
        self.why = why
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001 (argparse's own)
        parser.error(f"--preset names an expression preset, and {self.why}; the encoder's speed preset is "
                     f"--encoder-preset")


def _refuse_preset(parser: argparse.ArgumentParser, why: str) -> None:
    parser.add_argument("--preset", action=_NoExpressionPreset, why=why, help=argparse.SUPPRESS)


def _add_expression(parser, ramp: float | None) -> None:
    """The expression an edit asks for (``edit``, and ``batch``'s defaults): AUs, a preset, a time range."""
    parser.add_argument("--au", action="append", default=[], type=_checked(_au_edit), metavar="AUxx=V",
                        help="set (AU12=2.5) or add (AU12=+1.5); repeatable")
    parser.add_argument("--preset", type=_checked(_expression_preset), metavar="NAME[:S]",
                        help="happy, sad, surprised, angry, disgusted, fearful or neutral, strength S 0-2 (default 1)")
    parser.add_argument("--start", type=float, metavar="SECONDS", help="edit from this time (ramped in; a video's)")
    parser.add_argument("--end", type=float, metavar="SECONDS", help="edit until this time (ramped out), after --start")
    parser.add_argument("--ramp", type=float, default=ramp, metavar="SECONDS",
                        help="fade length before --start and after --end (default 0.3)")


def _add_generator(parser: argparse.ArgumentParser,
                   model_help: str = "generator name in models/ or path (default: models/default)",
                   edits: bool = True) -> None:
    parser.add_argument("--model", help=model_help)
    parser.add_argument("--no-smooth", action="store_true", help="no temporal smoothing of AUs and flow (to compare)")
    if edits:  # a transfer's targets are readings, which the edit gain never scales
        parser.add_argument("--no-edit-gain", action="store_true",
                            help="leave out the model's edit gain, for models trained with one (the shipped models "
                                 "have none)")
    parser.add_argument("--no-memory", action="store_true",
                        help="paint what a warp cannot show instead of taking the person's own mouths and eyes from "
                             "the video (one pass, no face memory; to compare)")
    parser.add_argument("--texture-strength", type=_texture_strength, metavar="S",
                        help="factor on the texture step's mask, 0 to 2 (default: the model's own; 0: warp and paint only)")
    parser.add_argument("--device", type=_checked(_device), default="auto",
                        help="auto (GPU when present), cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=("auto", "float32"), default="auto",
                        help="auto: the texture step in bfloat16 where the hardware computes it natively (a GPU; a "
                             "CPU with AVX-512 BF16 or AMX), else float32; float32: float32 throughout")


def _texture_strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 2.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 2, not {text!r}")
    return value


def _generator(args: argparse.Namespace):
    from reenact.api import GeneratorOptions

    return GeneratorOptions(args.model, not args.no_smooth, args.device, not getattr(args, "no_edit_gain", False),
                            args.texture_strength, not args.no_memory, args.precision)


def _aus_help() -> str:
    """The AUs and what each does, from the one list of their names (reenact.face.aus)."""
    from reenact.face.aus import AU_DESCRIPTIONS

    return "AUs: " + ", ".join(f"{au} {what}" for au, what in AU_DESCRIPTIONS.items())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="reenact", description="Edit facial expressions in video.")
    parser.add_argument("--version", action="version", version=f"reenact {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, epilog: str = "") -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, epilog=EXAMPLES[name] + epilog, parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    aus = "\n\n" + "\n".join(_wrapped(_aus_help()))

    au = command("au", "Measure facial Action Units (OpenFace-style CSV, 0-5 scale) in a video or image.", aus)
    au.add_argument("input", help="video or image")
    au.add_argument("-o", "--output", required=True, help="CSV file to write")
    au.add_argument("--plot", metavar="PNG", help="also plot the AU curves to this image")
    _add_tracking(au)

    track = command("track", "Draw landmarks, the face crop and live AU bars on a video: what reenact sees.")
    track.add_argument("input", help="video")
    track.add_argument("-o", "--output", required=True, help="video file to write (audio is kept)")
    _add_tracking(track)
    _add_encoding(track)
    _refuse_preset(track, "track draws what reenact sees and edits no expression")
    edit = command("edit", "Change the facial expression in a video or image: set or add AUs, or apply a preset.", aus)
    edit.add_argument("input", help="video or image")
    edit.add_argument("-o", "--output", required=True, help="video or image to write (audio is kept)")
    _add_expression(edit, ramp=0.3)
    _add_generator(edit)
    _add_tracking(edit)
    _add_encoding(edit)

    transfer = command("transfer", "Copy the expressions of a driving clip's face onto the face of a video or image.")
    transfer.add_argument("source", help="video or still image whose face is edited")
    transfer.add_argument("driving", help="video whose face's expressions are copied")
    transfer.add_argument("-o", "--output", required=True, help="video to write")
    transfer.add_argument("--mode", choices=("relative", "absolute"), default="relative",
                          help="relative (default): the source keeps its own expressions and gets the driving "
                               "face's change from its rest (a talking source stays in time with its audio); "
                               "absolute: the source's own expressions are replaced by the driving face's")
    transfer.add_argument("--motion", choices=("landmarks", "aus"),
                          help="landmarks (default): move the face as the driving face's landmarks moved, "
                               "retargeted to the source's proportions; aus: draw the driving face's AU readings with "
                               "the model's motion (how a still driving image is carried: it needs --mode absolute)")
    transfer.add_argument("--au-scale", type=_checked(_au_scale), default=1.0, metavar="S",
                          help="scale the transferred motion, 0-2 (default 1)")
    transfer.add_argument("--aus", type=_checked(_au_list), metavar="AU12,AU25,...", help="transfer only these AUs")
    transfer.add_argument("--audio", choices=("source", "driving", "none"), help="default: source (driving for an image)")
    transfer.add_argument("--pose", action="store_true",
                          help="also turn the source's head as the driving head turns from its usual pose (up to 10 degrees)")
    transfer.add_argument("--start", type=float, metavar="SECONDS",
                          help="a video source changes from this time, where the driving clip starts (ramped in)")
    transfer.add_argument("--end", type=float, metavar="SECONDS", help="... until this time (ramped out), after --start")
    transfer.add_argument("--ramp", type=float, default=0.3, metavar="SECONDS",
                          help="fade length before --start and after --end (default 0.3)")
    _add_generator(transfer, edits=False)
    _add_tracking(transfer)
    _add_encoding(transfer)
    # A transfer's expressions are the driving clip's: a preset on top would overrule them.
    _refuse_preset(transfer, "transfer has none: its expressions are the driving clip's (run reenact edit --preset on "
                             "its output for one more)")

    live = command("live", "Edit a camera or stream live, or drive an image with your face: preview, file, stream "
                           "(video only, no audio).")
    group = live.add_argument_group("input (one)")
    group.add_argument("--camera", metavar="N|NAME", help="camera index (0, 1, ...) or device name")
    group.add_argument("--input", metavar="URL|FILE", help="a stream (rtsp://, udp://, http://...), a pipe or a file")
    group.add_argument("--realtime", action="store_true", help="pace a file like a camera (dropping frames when behind)")
    group.add_argument("--loop", action="store_true", help="read a file --input again from its start when it ends "
                       "(ffmpeg's -stream_loop -1); stop with --max-seconds, q or Ctrl-C")
    group.add_argument("--camera-size", metavar="WxH", help="ask the camera for this size, e.g. 1280x720")
    group.add_argument("--camera-fps", type=float, help="ask the camera for this frame rate (default 30)")
    group = live.add_argument_group("what to do (one)")
    group.add_argument("--au", action="append", default=[], type=_checked(_au_edit), metavar="AUxx=V",
                       help="edit the face: set or add an AU; repeatable")
    group.add_argument("--preset", type=_checked(_expression_preset), metavar="NAME[:S]",
                       help="edit the face with an expression preset")
    group.add_argument("--source", metavar="IMAGE|VIDEO", help="drive this face with the input face's expressions")
    group.add_argument("--au-scale", type=_checked(_au_scale), default=1.0, metavar="S",
                       help="with --source: scale the expression change, 0-2 (default 1)")
    group.add_argument("--pose", action="store_true", help="with --source: also turn its head as the input head turns (up to 10 degrees)")
    group = live.add_argument_group("outputs (any)")
    group.add_argument("-o", "--output", help="write a video file, without audio (kept whatever stops the run)")
    group.add_argument("--stream", metavar="URL", help="send to rtmp://, udp://, srt://... (low-latency x264)")
    group.add_argument("--virtual-cam", action="store_true", help="send to a virtual camera (pyvirtualcam)")
    group.add_argument("--preview", action=argparse.BooleanOptionalAction, default=None,
                       help="a window with fps, latency and AU bars (default: when there is a display and no other output)")
    group.add_argument("--report", metavar="JSON", help="write frames, drops and latency figures here")
    live.add_argument("--max-seconds", type=float, help="stop after this many seconds")
    live.add_argument("--stall-timeout", type=float, default=5.0, help="give up when the input sends nothing this long (default 5 s)")
    _add_generator(live)
    _add_tracking(live)
    _add_encoding(live)

    batch = command("batch", "Run many edit and transfer jobs: a job file (CSV, YAML, JSON) or a folder with one edit.")
    batch.add_argument("jobs", help="job file (.csv, .yaml, .yml, .json) or a folder of videos and images")
    batch.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs and the report")
    batch.add_argument("--workers", type=int, metavar="N", help="jobs at a time, one process each (default 1; --ray local: all cores)")
    batch.add_argument("--ray", metavar="auto|local|ADDRESS", help="run the jobs as Ray tasks: start Ray here (local) or join a cluster")
    batch.add_argument("--force", action="store_true", help="redo jobs whose output exists (default: skip them)")
    batch.add_argument("--allow-outside", action="store_true", help="let job rows write outside OUTDIR ('..', absolute paths, symlinks leading out; refused by default)")
    batch.add_argument("--report", metavar="JSON", help="where to write the report (default OUTDIR/batch_report.json)")
    group = batch.add_argument_group("edit", "a folder's clips all get this edit; in a job file, each field is a default for rows that leave it empty")
    _add_expression(group, ramp=None)  # a job file's rows fall back to 0.3 where neither gives a ramp
    _add_generator(batch, "generator for jobs that name none (default: models/default)")
    _add_tracking(batch)
    _add_encoding(batch)

    prepare = command("prepare", "Turn face videos into a training dataset (aligned crops, AUs, landmarks).")
    prepare.add_argument("videos", nargs="+", help="video files or folders")
    prepare.add_argument("-o", "--output", required=True, help="dataset folder")
    prepare.add_argument("--crop-size", type=_checked(_crop_size), default=128, help="crop side (default 128)")
    prepare.add_argument("--stride", type=int, default=1, help="keep every n-th frame (default 1)")
    prepare.add_argument("--labels", metavar="DIR", help="OpenFace AU CSVs (<clip>.csv.gz) to store beside ours")
    prepare.add_argument("--manifest", metavar="CSV", help="CSV with file,identity columns")
    prepare.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    prepare.add_argument("--face-model", metavar="PATH", help="face_landmarker.task")

    train = command("train", "Train the generator self-supervised on a prepared dataset (resumes where it stopped).")
    train.add_argument("dataset", help="folder written by reenact prepare")
    train.add_argument("-o", "--output", required=True, help="run folder: checkpoint, log, model.safetensors")
    train.add_argument("--phase", choices=("motion", "texture", "joint", "basis", "gain", "adversarial"), default="motion",
                       help="basis: fit the motion step's per-AU fields in closed form (seconds), FACS regions apart; "
                            "gain: per AU, the factor on an edit's change that makes reenact's AU reader see it "
                            "(minutes); adversarial: the texture step against a realism term and, with --au-weight, "
                            "an AU critic")
    train.add_argument("--steps", type=int, default=3000)
    train.add_argument("--batch", type=int, default=32)
    train.add_argument("--lr", type=float, help="learning rate (default 3e-4; 2e-4 for --phase adversarial)")
    train.add_argument("--init", metavar="MODEL", help="start from these weights")
    train.add_argument("--validation-people", type=int, default=8, help="identities held out for validation")
    train.add_argument("--seed", type=int, default=0, help="seed of the pair sampling and the weights (default 0)")
    train.add_argument("--mask-weight", type=float, default=0.002, help="penalty on the texture mask's area (default 0.002)")
    train.add_argument("--identity-budget", type=float, metavar="D",
                       help="--phase gain: take no gain whose edit moves dlib's identity distance past D on average "
                            "(the shipped models: 0.35; needs reenact[eval])")
    adversarial = train.add_argument_group("--phase adversarial (reenact.train.adversarial)")
    adversarial.add_argument("--seconds", type=float, default=300.0, help="wall-clock budget instead of --steps (default 300)")
    adversarial.add_argument("--adv-weight", type=float, default=0.02, help="realism term's weight (default 0.02)")
    adversarial.add_argument("--au-weight", type=float, default=0.0, help="AU critic term's weight (default 0: no critic)")
    adversarial.add_argument("--critic", metavar="PT", help="an AU critic saved by an earlier run, instead of fitting one")
    adversarial.add_argument("--critic-reads", choices=("output", "warped"), default="output",
                             help="warped: the critic judges the warp only, so it trains the motion, never the texture")
    adversarial.add_argument("--tune-motion", action="store_true", help="train the per-AU motion fields too (in their regions)")
    adversarial.add_argument("--texture-size", type=int, help="a new texture step of this size (e.g. 128)")
    adversarial.add_argument("--texture-channels", type=int, default=32, help="its width (default 32)")
    adversarial.add_argument("--expressive", type=float, default=0.0, metavar="SHARE",
                             help="share of pairs drawn where one AU changes by 1 or more, each AU equally often (default 0)")
    evaluate = command("eval", "Measure a generator on the validation people of a prepared dataset.")
    evaluate.add_argument("dataset", help="folder written by reenact prepare")
    evaluate.add_argument("--model", help="generator name in models/ or path (default: models/default)")
    people = evaluate.add_mutually_exclusive_group()
    people.add_argument("--split", metavar="JSON", help="a training run's split.json: evaluate its validation people")
    people.add_argument("--all-people", action="store_true",
                        help="evaluate every person in the dataset instead, trained-on ones too (their figures flatter "
                             "the model); one of --split and --all-people is needed")
    evaluate.add_argument("--pairs", type=int, default=256, help="self-reenactment pairs (default 256)")
    evaluate.add_argument("--faces", type=int, default=48, help="faces per single-AU edit (default 48)")
    evaluate.add_argument("--compare", metavar="DIR", help="also write a PNG grid of edits there")
    evaluate.add_argument("--videos", type=int, default=0, metavar="FRAMES",
                          help="also run each single-AU edit through reenact edit's pipeline on the first FRAMES "
                               "frames of each validation clip's source video, at its own resolution (default 0: not)")
    evaluate.add_argument("--no-edit-gain", action="store_true", help="measure the edits as --no-edit-gain makes them")
    evaluate.add_argument("--texture-strength", type=_texture_strength, metavar="S",
                          help="measure with this factor on the texture step's mask (default: the model's own)")
    evaluate.add_argument("-o", "--output", help="write the report as JSON here (and print a summary, not the report)")

    studio = command("studio", "Edit expressions in a browser: AU sliders with a live preview on any frame, render, download.")
    studio.add_argument("input", nargs="?", help="video or image to open (default: upload one in the page)")
    studio.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    studio.add_argument("--port", type=int, help="port (default: the first free one from 7860)")
    studio.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")
    studio.add_argument("--model", help="generator name in models/ or path (default: models/default)")
    return parser


def _wrapped(text: str, width: int = 100) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def _edit(args: argparse.Namespace, tracking, progress: bool):
    from reenact import api
    from reenact.cli_checks import edit_target, encode_options
    from reenact.face.aus import AU_CAVEATS

    target = edit_target(args)
    for au in sorted({edit.au for edit in target.edits} & AU_CAVEATS.keys()):
        print(f"reenact: note: {au}: {AU_CAVEATS[au]}", file=sys.stderr)
    return api.edit_expression(args.input, args.output, target, _generator(args), tracking, encode_options(args),
                               progress)


def _train_adversarial(args: argparse.Namespace) -> None:
    from reenact.model.io import load_checkpoint
    from reenact.train.adversarial import AdversarialOptions, AUCritic, train_adversarial

    options = AdversarialOptions(
        seconds=args.seconds, batch=args.batch, lr=args.lr or 2e-4, au_weight=args.au_weight, adv_weight=args.adv_weight,
        mask_weight=args.mask_weight, texture_size=args.texture_size, texture_channels=args.texture_channels,
        motion=int(args.tune_motion), critic_reads=args.critic_reads, validation_people=args.validation_people,
        expressive=args.expressive, seed=args.seed,
    )  # fmt: skip
    critic = None
    if args.critic:
        critic = AUCritic()
        critic.load_state_dict(load_checkpoint(args.critic))
    last = train_adversarial(args.dataset, args.output, args.init, options, critic=critic)
    if not args.quiet:
        print(f"{Path(args.output) / 'model.safetensors'}: {last}", file=sys.stderr)


def _batch(args: argparse.Namespace, tracking, progress: bool) -> None:
    from rich.console import Console

    from reenact.batch import read_jobs, run_batch

    defaults = {"au": args.au, "preset": args.preset, "start": args.start, "end": args.end, "ramp": args.ramp,
                "codec": args.codec, "crf": args.crf, "encoder_preset": args.encoder_preset}
    jobs = read_jobs(args.jobs, args.output, defaults, _generator(args), tracking, args.allow_outside)
    report = run_batch(jobs, args.output, args.workers, args.ray, args.force, args.report, progress)
    if progress:
        console = Console(stderr=True)
        console.print(report.table())
        console.print(report.summary(), highlight=False, soft_wrap=True)
    if report.failed:
        raise ReenactError(f"{len(report.failed)} of {len(report.results)} jobs failed; see {report.path}")


def _live(args: argparse.Namespace, tracking, progress: bool) -> None:
    from reenact import live
    from reenact.cli_checks import au_edits, encode_options

    edits, preset, strength = au_edits(args)
    control = live.LiveControl(edits=edits, preset=preset, strength=strength)
    outputs = live.LiveOutputs(args.output, args.stream, args.virtual_cam, args.preview, encode_options(args))
    source = live.LiveInput(args.camera, args.input, args.realtime, args.camera_size, args.camera_fps, args.loop)

    def warn(message: str) -> None:
        if progress:
            print(f"reenact: live: {message}", file=sys.stderr)

    report = live.run_live(
        source, outputs, control, args.source, args.au_scale, _generator(args), tracking, args.max_seconds,
        args.stall_timeout, args.report, progress, warn, follow_pose=args.pose,
    )
    if progress:
        print(report.summary(), file=sys.stderr)
    if report.error:
        raise live.report_error(report)


def _run(args: argparse.Namespace) -> None:
    progress = not args.quiet
    if args.command == "prepare":
        from reenact.train.prepare import prepare_dataset

        report = prepare_dataset(args.videos, args.output, args.crop_size, args.stride, args.labels, args.manifest,
                                 args.workers, progress, args.face_model)
        if not args.quiet:
            print(f"{args.output}: {len(report.done)} clips prepared, {len(report.skipped)} already done, "
                  f"{len(report.failed)} failed, {report.frames_kept} frames", file=sys.stderr)
        return
    if args.command == "train" and args.phase == "adversarial":
        _train_adversarial(args)
        return
    if args.command == "train":
        from reenact.train.trainer import TrainOptions, train

        options = TrainOptions(phase=args.phase, steps=args.steps, batch=args.batch, lr=args.lr or 3e-4, init=args.init,
                               validation_people=args.validation_people, mask_weight=args.mask_weight, seed=args.seed,
                               identity_budget=args.identity_budget)
        result = train(args.dataset, args.output, options, progress)
        if not args.quiet:
            print(f"{result.weights}: {result.steps} steps, validation {result.validation}", file=sys.stderr)
        return
    if args.command == "studio":
        from reenact.studio import serve

        serve(args.input, args.host, args.port, args.share, args.model)
        return
    if args.command == "eval":
        _eval(args)
        return
    # Imported only here: the commands above do without the editing API, and `train` must run where PyAV is not
    # installed (a bare GPU machine).
    from reenact import api
    from reenact.cli_checks import encode_options

    tracking = api.TrackingOptions(face_model=args.face_model, face=args.face, crop_size=args.crop_size)
    if args.command == "batch":
        _batch(args, tracking, progress)
        return
    if args.command == "live":
        _live(args, tracking, progress)
        return
    if args.command == "edit":
        report = _edit(args, tracking, progress)
    elif args.command == "transfer":
        from reenact.checks import transfer_aus
        from reenact.expression import TimeRange

        aus = transfer_aus(args.aus) if args.aus else None
        report = api.transfer_expression(
            args.source, args.driving, args.output, args.mode == "relative", args.au_scale, aus, args.audio,
            _generator(args), tracking, encode_options(args), progress, follow_pose=args.pose, motion=args.motion,
            time_range=TimeRange(args.start, args.end, args.ramp),
        )
    elif args.command == "au":
        report = api.analyze_aus(args.input, args.output, args.plot, tracking, progress=progress)
    else:
        report = api.track_video(args.input, args.output, tracking, encode_options(args), progress=progress)
    if not args.quiet:
        speed = f", {report.fps:.1f} fps" if report.frames > 1 else ""
        print(
            f"{report.output}: {report.frames} frame{'s' if report.frames != 1 else ''}, face in "
            f"{report.faces_found} ({report.frames_without_face} without){speed}",
            file=sys.stderr,
        )


def _eval(args: argparse.Namespace) -> None:
    import json

    from reenact.evaluate import evaluate

    report = evaluate(Path(args.dataset), args.model, args.split, args.pairs, args.faces,
                      compare=Path(args.compare) if args.compare else None, edit_gain=not args.no_edit_gain,
                      texture_strength=args.texture_strength, video_frames=args.videos)
    text = json.dumps(report, indent=1)
    if not args.output:
        print(text)
        return
    from reenact.files import atomic_output

    with atomic_output(args.output) as tmp:
        tmp.write_text(text + "\n")
    print(_eval_summary(report, args))


def _eval_summary(report: dict, args: argparse.Namespace) -> str:
    """One line for a report written to a file: whom it measured and its headline figure."""
    people = report.get("identities", [])
    whose = f"the validation people of {args.split}" if args.split else "every person in the dataset"
    line = f"{args.output}: {report.get('clips', '?')} clips of {len(people)} people ({whose})"
    pairs = report.get("self_reenactment", {})
    if "psnr" in pairs:
        copy = f" (copying the source: {pairs['psnr_copy']:.2f})" if "psnr_copy" in pairs else ""
        line += f"; self-reenactment PSNR {pairs['psnr']:.2f} dB{copy}"
    return line


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that a terminated run cleans up the same way."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """SIGTERM behaves as Ctrl-C while this runs: outputs finished or absent, temporaries removed; exit status 143."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # called from a thread: leave signals be
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _did_you_mean(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]) -> str:
    """' (did you mean --preset?)' for an unknown option close to one of the command's own, else ''."""
    import difflib

    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = [o for a in commands.choices[args.command]._actions for o in a.option_strings if o.startswith("--")]
    close = [difflib.get_close_matches(u.split("=")[0], options, n=1, cutoff=0.75) for u in unknown if u.startswith("--")]
    names = [c[0] for c in close if c]
    return f" (did you mean {' or '.join(names)}?)" if names else ""


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # said by the command's parser, so its help is the one pointed to
            raise CommandLineError(f"unrecognized arguments: {' '.join(unknown)}{_did_you_mean(parser, args, unknown)}",
                                   f"reenact {args.command}")
    except CommandLineError as exc:
        return report_error(exc, exc.command)
    from reenact.cli_checks import check_arguments  # light: no torch, no MediaPipe, no PyAV until a check needs it

    with warnings_on_one_line():
        try:
            check_arguments(args)
            _run(args)
        except KeyboardInterrupt as exc:
            kept = "finished outputs are kept; run again to resume" if args.command == "batch" else "no output written"
            terminated = isinstance(exc, Terminated)
            print(f"reenact: {'terminated' if terminated else 'interrupted'}; {kept}", file=sys.stderr)
            return 143 if terminated else 130
        except (ReenactError, OSError, ValueError) as exc:
            if args.debug:
                raise
            return report_error(exc, f"reenact {args.command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
