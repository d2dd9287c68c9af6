"""Many edit and transfer jobs in one run: from a job file (CSV, YAML, JSON) or a folder of clips, resumable, in a
process pool or as Ray tasks.

Every job goes through the typed API (``api.edit_expression``, ``api.transfer_expression``). Rows are checked
before any work: a bad row becomes a failed job with a one-line reason and the others go on. Outputs are written
under a temporary name and renamed when complete, so an output that exists is whole: a rerun skips those jobs
(``force`` redoes them) after removing the temporaries a killed run left behind. Each run writes a JSON report.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import logging
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from reenact import api
from reenact.checks import check_au_scale
from reenact.errors import InputError, OptionError, ReenactError
from reenact.expression import TimeRange
from reenact.progress import JobProgress
from reenact.files import atomic_output
from reenact.video import check_output_path

if TYPE_CHECKING:
    from rich.table import Table

    from reenact.expression import ExpressionTarget
    from reenact.model.networks import Generator

PathLike = api.PathLike
Status = Literal["ok", "skipped", "failed", "pending"]  # pending: not finished yet

# Job fields (CSV columns, YAML/JSON keys): what each means.
FIELDS: dict[str, str] = {
    "op": "edit (default) or transfer",
    "input": "video or image to edit (transfer: the source); relative to the job file's folder",
    "driving": "transfer: the clip whose expressions are copied; relative to the job file's folder",
    "output": "file inside the output folder (default: <stem>.mp4, <stem>_<driving stem>.mp4 for transfer; "
              "an image stays an image)",
    "au": "edit: AU12=2.5 sets, AU12=+1.5 adds; a list, or ';'-separated",
    "preset": "edit: happy, sad, surprised, angry, disgusted, fearful or neutral, optionally :strength",
    "start": "seconds (a transfer's driving clip starts there)", "end": "seconds",
    "ramp": "seconds of fade at start and end",
    "mode": "transfer: relative (default) or absolute",
    "au_scale": "transfer: scale of the transferred AUs",
    "aus": "transfer: only these AUs (a list, or ';'/','-separated)",
    "audio": "transfer: source, driving or none",
    "pose": "transfer: yes to also turn the head as the driving head turns (default no)",
    "model": "generator name or path", "crf": "encoder quality", "encoder_preset": "encoder speed",
    "codec": "video codec",
}  # fmt: skip
_EDIT_ONLY = frozenset({"au", "preset"})
_TRANSFER_ONLY = frozenset({"driving", "mode", "au_scale", "aus", "audio", "pose"})
_OPS = ("edit", "transfer")
_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})  # kept as images; any other input gives an .mp4
_CLIP_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi"}) | _IMAGE_EXTENSIONS
REPORT_NAME = "batch_report.json"
LOCK_NAME = ".reenact-batch.lock"  # in the output folder while a run writes there; holds its pid
REPORT_EVERY = 5.0  # seconds: the report is rewritten as jobs finish, at most this often (and at the end)
# atomic_output's temporary name for NAME: .NAME.tmp-<8 hex>SUFFIX
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-[0-9a-f]{8}(?P<suffix>\.[^.]*)?$")


@dataclass(frozen=True)
class BatchJob:
    """One job, checked and typed: the arguments of ``api.edit_expression`` or ``api.transfer_expression``.

    ``error`` says why the job cannot run (a bad row); such a job is reported as failed and never started.
    """

    index: int  # 1-based position in the job list
    name: str  # the output relative to the output folder (or '#index' when the row names none)
    op: str = "edit"
    input: Path | None = None
    output: Path | None = None
    driving: Path | None = None
    target: ExpressionTarget | None = None  # edit
    relative: bool = True  # transfer: mode relative (else absolute)
    au_scale: float = 1.0
    aus: tuple[str, ...] | None = None
    audio: Literal["source", "driving", "none"] | None = None
    pose: bool = False  # transfer: follow the driving head's turns
    time_range: TimeRange = TimeRange()  # transfer (an edit's is its target's)
    generator: api.GeneratorOptions = api.GeneratorOptions()
    tracking: api.TrackingOptions = api.TrackingOptions()
    encode: api.EncodeOptions = api.EncodeOptions()
    error: str | None = None


@dataclass(frozen=True)
class JobResult:
    """What became of one job. ``frames`` of a skipped job come from the previous report where it had them."""

    job: BatchJob
    status: Status
    frames: int | None = None
    fps: float | None = None
    seconds: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        job = self.job
        return {
            "index": job.index, "job": job.name, "op": job.op, "status": self.status,
            "input": _str(job.input), "driving": _str(job.driving), "output": _str(job.output),
            "frames": self.frames, "fps": self.fps, "seconds": self.seconds, "error": self.error,
        }  # fmt: skip


@dataclass(frozen=True)
class BatchReport:
    """What a batch run did, job by job in the order given; also written as JSON to ``path``."""

    outdir: Path
    path: Path
    results: tuple[JobResult, ...]
    seconds: float  # wall time of the whole run
    runner: str  # '1 process', 'N processes' or 'ray (ADDRESS)'

    def with_status(self, status: Status) -> tuple[JobResult, ...]:
        return tuple(r for r in self.results if r.status == status)

    @property
    def failed(self) -> tuple[JobResult, ...]:
        return self.with_status("failed")

    @property
    def frames(self) -> int:
        """Frames written by the jobs done in this run."""
        return sum(r.frames or 0 for r in self.with_status("ok"))

    @property
    def fps(self) -> float:
        """Frames written per wall-clock second over the whole run."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        counts = {status: len(self.with_status(status)) for status in ("ok", "skipped", "failed", "pending")}
        return {
            "outdir": str(self.outdir), "runner": self.runner, "seconds": round(self.seconds, 2),
            "frames": self.frames, "fps": round(self.fps, 2), **counts, "jobs": [r.to_dict() for r in self.results],
        }  # fmt: skip

    def summary(self) -> str:
        """One line: jobs by status, frames written, speed, where the report is."""
        ok, skipped, failed = (len(self.with_status(s)) for s in ("ok", "skipped", "failed"))
        return (f"{ok} ok, {skipped} skipped, {failed} failed; {self.frames} frames in {self.seconds:.1f} s "
                f"({self.fps:.1f} fps, {self.runner}); report: {self.path}")

    def table(self) -> Table:
        """A rich table of the jobs: job, status, frames, fps, error."""
        from rich.table import Table

        table = Table(title="reenact batch", title_justify="left")
        for column, justify in (("#", "right"), ("job", "left"), ("status", "left"), ("frames", "right"),
                                ("fps", "right"), ("error", "left")):
            table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
        style = {"ok": "green", "skipped": "dim", "failed": "bold red", "pending": "yellow"}
        for r in self.results:
            table.add_row(str(r.job.index), r.job.name, f"[{style[r.status]}]{r.status}",
                          "" if r.frames is None else str(r.frames), "" if r.fps is None else f"{r.fps:.1f}",
                          r.error or "")
        return table


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


# --------------------------------------------------------------------------- reading jobs


def read_jobs(
    source: PathLike,
    outdir: PathLike,
    defaults: Mapping[str, Any] | None = None,
    generator: api.GeneratorOptions = api.GeneratorOptions(),
    tracking: api.TrackingOptions = api.TrackingOptions(),
    allow_outside: bool = False,
) -> list[BatchJob]:
    """The jobs of a job file (.csv, .yaml/.yml, .json: a list of rows with FIELDS), or of a folder of clips.

    ``defaults`` holds field values for every job that does not give its own (those of the other operation are
    ignored): a folder's clips all get the edit they describe. ``generator`` and ``tracking`` apply to all jobs
    (a row's ``model`` replaces the generator's). Raises ValueError or InputError when the file itself cannot be
    read; a bad row becomes a job with its ``error`` set. A row's output must stay inside ``outdir`` (no ``..``, no
    absolute path, no symlink leading out) unless ``allow_outside``.
    """
    source, out = Path(source), Path(outdir).absolute()
    defaults = {k: v for k, v in (defaults or {}).items() if _given(v)}
    if source.is_dir():
        rows, base = _folder_rows(source, out, defaults), source
    else:
        rows, base = _file_rows(source), source.parent
    return [_job(i, row, base, out, defaults, generator, tracking, allow_outside) for i, row in enumerate(rows, 1)]


def _folder_rows(folder: Path, out: Path, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    from reenact.train.prepare import find_clips

    if not ({"au", "preset"} & defaults.keys()):
        raise OptionError("nothing to edit: a folder of clips needs an edit (--au AUxx=V and/or --preset NAME)")
    clips = find_clips([folder], exclude=out, extensions=_CLIP_EXTENSIONS)
    if not clips:
        raise ValueError(f"{folder}: no videos or images in this folder")
    return [{"input": clip.path.relative_to(folder).as_posix(), "output": clip.id + _output_suffix(clip.path)}
            for clip in clips]


def _file_rows(path: Path) -> list[Any]:
    if not path.is_file():
        raise InputError(f"{path}: job file not found")
    kind = path.suffix.lower()
    if kind not in (".csv", ".yaml", ".yml", ".json"):
        raise OptionError(f"{path}: a job file is .csv, .yaml, .yml or .json (or give a folder of clips)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a text file ({e.reason})") from e
    if kind == ".csv":
        # Blank lines are no jobs; a row with too many cells keeps the surplus under the key None.
        rows: Any = [row for row in csv.DictReader(io.StringIO(text, newline="")) if any(map(_given, row.values()))]
    elif kind == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from e
        except RecursionError as e:
            raise InputError(f"{path}: nested too deeply to be a job file") from e
    else:
        import yaml

        try:
            rows = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from e
        except RecursionError as e:
            raise InputError(f"{path}: nested too deeply to be a job file") from e
    _check_size(rows, path)
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a list of jobs, found {type(rows).__name__}")
    if not rows:
        raise InputError(f"{path}: no jobs in this file")
    return rows


_MAX_VALUES = 1_000_000  # values in a job file, counting each YAML alias as often as it is used
_MAX_DEPTH = 32  # a job file is a list of rows of fields, some of them lists: 3 deep


def _check_size(rows: Any, path: Path) -> None:
    """Refuse a job file whose values, aliases expanded, are too many or nested too deep to be jobs: YAML aliases
    nesting aliases ("billion laughs") load as a few shared lists, but every use of a field reads them whole."""
    seen, stack = 0, [(rows, 0)]
    while stack:
        value, depth = stack.pop()
        seen += 1
        if depth > _MAX_DEPTH:
            raise InputError(f"{path}: nested too deeply to be a job file")
        if seen > _MAX_VALUES:
            raise InputError(f"{path}: too many values to be a job file (YAML aliases that nest aliases expand to "
                             f"more than {_MAX_VALUES:,} values?)")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _given(value: Any) -> bool:
    return value is not None and value != "" and value != [] and not (isinstance(value, str) and not value.strip())


def _output_suffix(input: Path) -> str:
    suffix = input.suffix.lower()
    return suffix if suffix in _IMAGE_EXTENSIONS else ".mp4"


def _default_output(input: str, driving: str | None) -> str:
    source = Path(input)
    if driving is not None:  # a transfer: always a video, even from a still image
        return f"{source.stem}_{Path(driving).stem}.mp4"
    return source.stem + _output_suffix(source)


def _output_name(row: Any) -> str | None:
    """The output relative to the output folder, as far as the row says it (a bad row's too)."""
    if not isinstance(row, Mapping):
        return None
    output, input, driving = (_text(row.get(k)) for k in ("output", "input", "driving"))
    if output is not None or input is None:
        return output
    return _default_output(input, driving if _text(row.get("op")) == "transfer" else None)


def _job(
    index: int, row: Any, base: Path, out: Path, defaults: Mapping[str, Any],
    generator: api.GeneratorOptions, tracking: api.TrackingOptions, allow_outside: bool = False,
) -> BatchJob:
    output = _output_name(row)
    name = output or f"#{index}"
    try:
        return _parse_row(index, name, row, base, out, defaults, generator, tracking, allow_outside)
    except (ReenactError, ValueError) as e:  # kept as a failed job with what the row says
        op, input = (_text(row.get(k)) for k in ("op", "input")) if isinstance(row, Mapping) else (None, None)
        return BatchJob(index, name, op or "edit", input=None if input is None else (base / input).absolute(),
                        output=out / output if output is not None and _inside(output, out) else None,
                        error=" ".join(str(e).split()))


def _file_name(name: str) -> bool:
    """Whether the file system can take ``name``: no NUL, nothing that cannot be encoded (a lone surrogate), no part
    longer than file systems allow (255 bytes)."""
    try:
        encoded = os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return b"\0" not in encoded and all(len(part) <= 255 for part in encoded.split(b"/"))


def _inside(name: str, out: Path) -> bool:
    """Whether output ``name`` stays inside ``out``: relative, no ``..``, and no symlink on the way leading out."""
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or not _file_name(name):
        return False
    try:
        return (out / path).resolve().is_relative_to(out.resolve())
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13), a name too long
        return False


def _parse_row(
    index: int, name: str, row: Any, base: Path, out: Path, defaults: Mapping[str, Any],
    generator: api.GeneratorOptions, tracking: api.TrackingOptions, allow_outside: bool = False,
) -> BatchJob:
    if not isinstance(row, Mapping):
        raise ValueError(f"a job is a mapping of fields, not {type(row).__name__}")
    if None in row:  # csv.DictReader's key for the cells beyond the header's
        raise ValueError("more cells than the header has columns")
    unknown = sorted(str(k) for k in row if k not in FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    given = {k: v for k, v in row.items() if _given(v)}
    op = _text(given.get("op")) or "edit"
    if op not in _OPS:
        raise ValueError(f"unknown op {op!r}; use edit or transfer")
    other = _TRANSFER_ONLY if op == "edit" else _EDIT_ONLY
    misplaced = sorted(other & given.keys())
    if misplaced:
        raise ValueError(f"{', '.join(misplaced)}: for {'transfer' if op == 'edit' else 'edit'} jobs only, not {op}")
    fields = {**{k: v for k, v in defaults.items() if k not in other}, **given}
    input = _existing(base, fields, "input")  # given, so the job has an output name
    if not _file_name(name):
        raise ValueError(f"output {name[:80]!r}{'...' if len(name) > 80 else ''} is no file name (a NUL character, "
                         "an unpaired surrogate, or a part longer than 255 bytes)")
    if not allow_outside and not _inside(name, out):
        raise ValueError(f"output {name!r} must stay inside the output folder {out} (it leads out through '..', an "
                         "absolute path or a symlink); refused unless --allow-outside")
    model = _text(fields.get("model"))
    encoding = _options(fields, codec=("codec", str), crf=("crf", int), preset=("encoder_preset", str))
    encode = api.EncodeOptions(**encoding)
    common: dict[str, Any] = {
        "input": input, "output": (out / name).absolute(),
        "generator": dataclasses.replace(generator, model=model) if model else generator,
        "tracking": tracking, "encode": encode,
    }  # fmt: skip
    if op == "edit":
        return BatchJob(index, name, op, target=_target(fields), **common)
    mode = _text(fields.get("mode")) or "relative"
    audio = _text(fields.get("audio"))
    if mode not in ("relative", "absolute"):
        raise ValueError(f"mode must be relative or absolute, not {mode!r}")
    if audio not in (None, "source", "driving", "none"):
        raise ValueError(f"audio must be source, driving or none, not {audio!r}")
    from reenact.face.aus import parse_au_name

    aus = tuple(parse_au_name(a) for a in _items(fields["aus"])) if "aus" in fields else None
    scale = check_au_scale(_options(fields, au_scale=("au_scale", float)).get("au_scale", 1.0), "au_scale")
    driving = _existing(base, fields, "driving")
    return BatchJob(index, name, op, driving=driving, relative=mode == "relative", au_scale=scale, aus=aus,
                    audio=audio, pose=_yes_no(fields.get("pose"), "pose"), time_range=TimeRange(**_times(fields)),
                    **common)  # type: ignore[arg-type]


def _yes_no(value: Any, field: str) -> bool:
    """A YAML/JSON boolean, or yes/no, true/false, 1/0 in any case; not given is no."""
    if isinstance(value, bool):
        return value
    text = (_text(value) or "no").lower()
    if text not in ("yes", "no", "true", "false", "1", "0"):
        raise ValueError(f"{field} must be yes or no, not {value!r}")
    return text in ("yes", "true", "1")


def _text(value: Any) -> str | None:
    return str(value).strip() if _given(value) else None


def _items(value: Any) -> list[str]:
    """A list as such, or a string separated by ';' or ','."""
    parts = value if isinstance(value, list) else re.split(r"[;,]", str(value))
    return [str(p).strip() for p in parts if str(p).strip()]


def _options(fields: Mapping[str, Any], **wanted: tuple[str, type]) -> dict[str, Any]:
    """Keyword arguments from the fields given: {argument: (field, type)}; ValueError names a bad value."""
    found = {}
    for argument, (field, kind) in wanted.items():
        if field in fields:
            value = fields[field]
            try:
                found[argument] = kind(str(value).strip())
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise ValueError(f"{field} must be {what}, not {value!r}") from None
    return found


def _existing(base: Path, fields: Mapping[str, Any], field: str) -> Path:
    text = _text(fields.get(field))
    if text is None:
        raise ValueError(f"no {field} file given")
    path = (base / text).absolute()
    try:
        found = path.is_file()
    except OSError as e:  # a name too long for the file system, a path through a file: this row's problem alone
        raise ValueError(f"{field} {text}: {e.strerror or e}") from e
    if not found:
        raise ValueError(f"{field} {text}: file not found" + (" (a folder)" if path.is_dir() else ""))
    return path


def _target(fields: Mapping[str, Any]) -> ExpressionTarget:
    from reenact.expression import ExpressionTarget, parse_au_edit
    from reenact.model.presets import parse_preset

    edits = tuple(parse_au_edit(a) for a in _items(fields.get("au", [])))
    preset = _text(fields.get("preset"))
    if not edits and preset is None:
        raise ValueError("nothing to edit: give au and/or preset")
    name, strength = parse_preset(preset) if preset else (None, 1.0)
    return ExpressionTarget(edits, name, strength, **_times(fields))


def _times(fields: Mapping[str, Any]) -> dict[str, float]:
    """A job's time range as keyword arguments (``start``, ``end``, ``ramp``)."""
    return _options(fields, start=("start", float), end=("end", float), ramp=("ramp", float))


# --------------------------------------------------------------------------- running


def run_batch(
    jobs: Sequence[BatchJob],
    outdir: PathLike,
    workers: int | None = None,
    ray: str | None = None,
    force: bool = False,
    report: PathLike | None = None,
    progress: bool = False,
) -> BatchReport:
    """Run ``jobs`` into ``outdir`` and write the JSON report (default ``outdir/batch_report.json``).

    Jobs whose output exists are skipped unless ``force``; temporaries of killed runs are removed first. A later
    job with the same output as an earlier one fails. ``workers``: jobs at a time, each in its own process
    (default 1, in this process). ``ray``: run them as Ray tasks instead: 'local' starts Ray here with ``workers``
    CPUs (default: all), 'auto' or an address joins a running cluster (whose nodes must see the same paths).
    A failing job fails alone; the report says which and why.
    """
    started = time.perf_counter()
    if workers is not None and workers < 1:
        raise OptionError(f"--workers must be at least 1, not {workers}")
    out = Path(outdir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    with _OutdirLock(out):
        return _run_locked(jobs, out, workers, ray, force, report, progress, started)


def _run_locked(
    jobs: Sequence[BatchJob], out: Path, workers: int | None, ray: str | None, force: bool,
    report: PathLike | None, progress: bool, started: float,
) -> BatchReport:
    began = time.time()
    report_path = Path(report) if report is not None else out / REPORT_NAME
    check_output_path(report_path, media=False)
    jobs = _fail_duplicates(jobs)
    _remove_temporaries([job.output for job in jobs if job.output is not None] + [report_path.absolute()])
    before = _previous_frames(report_path)
    results: dict[int, JobResult] = {}
    todo = []
    for job in jobs:
        if job.error is not None or job.output is None:
            results[job.index] = JobResult(job, "failed", error=job.error or "no output")
        elif job.output.exists() and not force:
            results[job.index] = JobResult(job, "skipped", frames=before.get(job.name))
        else:
            todo.append(job)
    if ray is not None:
        runner, finished = f"ray ({ray})", _run_on_ray(todo, ray, workers)
    else:
        count = workers or 1
        runner, finished = f"{count} process{'es' if count > 1 else ''}", _run_in_processes(todo, count)

    def report_now() -> BatchReport:
        ordered = tuple(results.get(job.index) or JobResult(job, "pending") for job in jobs)
        batch = BatchReport(out, report_path, ordered, time.perf_counter() - started, runner)
        with atomic_output(report_path) as tmp:
            tmp.write_text(json.dumps(batch.to_dict(), indent=1) + "\n")
        return batch

    written = -REPORT_EVERY
    try:
        with JobProgress(len(todo), progress) as bar:
            for result in finished:
                results[result.job.index] = result
                bar.advance()
                # Kept up to date as jobs finish, so a killed run's report still knows the jobs it did.
                if time.perf_counter() - written >= REPORT_EVERY:
                    report_now()
                    written = time.perf_counter()
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): stop the workers, then say what was done
        close = getattr(finished, "close", None)
        if close is not None:
            close()
        for job in todo:  # finished (renamed into place) in this run, its result not back yet when stopped
            if job.index not in results and job.output is not None and _written_since(job.output, began):
                results[job.index] = JobResult(job, "ok")
        with suppress(Exception):
            report_now()
        raise
    return report_now()


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


class _OutdirLock:
    """One batch run at a time per output folder: an advisory lock on OUTDIR/.reenact-batch.lock, which holds the
    running batch's pid. The lock dies with its process, so a lock file left by a killed run is simply taken over;
    a second run while the first is alive is refused with the first one's pid."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> _OutdirLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented)
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise ReenactError(f"{self.path.parent}: another reenact batch (pid {holder}) is writing to this "
                                   f"output folder; wait for it to finish or use another folder (lock: {self.path})")
            try:  # the file locked must still be the one at the path (a finishing run unlinks it)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with suppress(OSError):
                os.unlink(self.path)  # still holding the lock: no other run has it open and locked
            os.close(self._fd)
            self._fd = None


def _fail_duplicates(jobs: Sequence[BatchJob]) -> list[BatchJob]:
    """The jobs, each later one writing the same output as an earlier one failed."""
    first: dict[Path, BatchJob] = {}
    checked = []
    for job in jobs:
        if job.output is not None and job.output in first:
            job = dataclasses.replace(job, error=f"same output as job {first[job.output].index} ({job.name})")
        elif job.output is not None:
            first[job.output] = job
        checked.append(job)
    return checked


def _remove_temporaries(outputs: Iterable[Path]) -> None:
    """Delete the temporary files of these outputs (``.NAME.tmp-XXXXXXXX.ext``) that a killed run left."""
    by_folder: dict[Path, set[str]] = defaultdict(set)
    for output in outputs:
        by_folder[output.parent].add(output.name)
    for folder, names in by_folder.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            match = _TEMPORARY.match(entry.name)
            if match and match["name"] in names and (match["suffix"] or "") == Path(match["name"]).suffix:
                with suppress(FileNotFoundError):
                    os.unlink(entry.path)


def _previous_frames(report: Path) -> dict[str, int]:
    """Frames per job name in an earlier report, where it had them."""
    try:
        jobs = json.loads(report.read_text())["jobs"]
        return {j["job"]: j["frames"] for j in jobs if isinstance(j.get("frames"), int)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.lru_cache(maxsize=4)
def _loaded(model: PathLike | None, device: str, texture_strength: float | None) -> Generator:
    return api.GeneratorOptions(model, texture_strength=texture_strength).load(device)


@dataclass(frozen=True)
class _KeptGenerator(api.GeneratorOptions):
    """GeneratorOptions whose weights are loaded once per process and shared by the jobs it runs."""

    def load(self, device: str) -> Generator:
        return _loaded(self.model, device, self.texture_strength)


def _run_job(job: BatchJob) -> JobResult:
    """Run one checked job through the typed API; every failure becomes a failed result, never an exception (an
    interruption, KeyboardInterrupt, goes through)."""
    global _IN_JOB
    if _STOPPING:  # a worker told to stop: the job is left for a rerun
        return JobResult(job, "pending")
    if _STARTED is not None:
        _STARTED.put(job.index)
    _IN_JOB = True
    try:
        return _run_job_here(job)
    finally:
        _IN_JOB = False


def _run_job_here(job: BatchJob) -> JobResult:
    started = time.perf_counter()
    assert job.input is not None and job.output is not None and job.error is None
    generator = _KeptGenerator(**dataclasses.asdict(job.generator))
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        if job.op == "edit":
            assert job.target is not None
            done = api.edit_expression(job.input, job.output, job.target, generator, job.tracking, job.encode)
        else:
            done = api.transfer_expression(job.input, job.driving, job.output, job.relative, job.au_scale, job.aus,
                                           job.audio, generator, job.tracking, job.encode, follow_pose=job.pose,
                                           time_range=job.time_range)
    except (ReenactError, OSError, ValueError) as e:
        error = str(e)
    except Exception as e:  # a bug or an odd file: reported with its type, the batch goes on
        error = f"{type(e).__name__}: {e}"
    else:
        return JobResult(job, "ok", done.frames, round(done.fps, 2), round(done.seconds, 2))
    return JobResult(job, "failed", seconds=round(time.perf_counter() - started, 2), error=" ".join(error.split()))


WORKER_DIED = "the worker process running it died (killed, out of memory, or a crash in native code)"


def _run_in_processes(jobs: list[BatchJob], workers: int) -> Iterator[JobResult]:
    """Jobs in a pool of ``workers`` processes. A worker that dies (killed, out of memory, a crash in native code)
    breaks the pool: the jobs it had not started go to a fresh pool, and those that were running are retried one at
    a time, each alone, so that a job that kills its worker again fails alone."""
    if workers == 1 or len(jobs) <= 1:
        yield from map(_run_job, jobs)
        return
    import multiprocessing

    # spawn: MediaPipe is not fork-safe once initialised. (Torch's threads per process are the editor's to set.)
    context = multiprocessing.get_context("spawn")
    started = context.SimpleQueue()  # job indices, as workers start them
    clean, suspects = list(jobs), []
    while clean or suspects:
        alone = not clean
        batch = clean if not alone else suspects[:1]
        if alone:
            suspects = suspects[1:]
        unfinished = {job.index: job for job in batch}
        broken = False
        with closing(_pool_round(batch, 1 if alone else workers, context, started)) as results:
            for result in results:
                if result is None:
                    broken = True
                else:
                    unfinished.pop(result.job.index, None)
                    yield result
        running = set()
        while not started.empty():
            running.add(started.get())
        clean = []
        if not broken:
            continue
        # What the dead worker (and the others, which the broken pool stopped) were writing.
        _remove_temporaries([job.output for job in unfinished.values() if job.output is not None])
        for index, job in unfinished.items():
            if alone:
                yield JobResult(job, "failed", error=WORKER_DIED)
            elif index in running:
                suspects.append(job)
            else:
                clean.append(job)


def _pool_round(jobs: list[BatchJob], workers: int, context: Any, started: Any) -> Iterator[JobResult | None]:
    """The results of ``jobs`` in one process pool, as they finish; then ``None`` if the pool broke (a worker
    died), the unfinished jobs giving nothing. Interrupted, the workers stop their jobs (removing what they were
    writing) before this returns."""
    import shutil
    import tempfile
    from concurrent.futures.process import BrokenProcessPool

    # The workers' scratch folders go in one of the pool's own, removed with it: a killed worker cannot clean up.
    scratch = tempfile.mkdtemp(prefix="reenact-batch-")
    pool = ProcessPoolExecutor(min(workers, len(jobs)), context, initializer=_start_worker,
                               initargs=(os.getpid(), started, scratch))
    try:
        futures: dict[Future[JobResult], BatchJob] = {pool.submit(_run_job, job): job for job in jobs}
        pending = set(futures)
        broken = False
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                except Exception as e:  # the job could not be sent or its result not read back
                    yield JobResult(futures[future], "failed", error=f"{type(e).__name__}: {' '.join(str(e).split())}")
        if broken:
            yield None
    except BaseException:  # interrupted, or the consumer closed us: stop the jobs in flight cleanly
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Ask each worker to stop its job as Ctrl-C would: what it was writing is removed, nothing half is left."""
    import signal

    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with suppress(OSError, AttributeError, ValueError):
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)


_STOPPING = False  # in a worker: told to stop; the jobs it has not started are left pending
_IN_JOB = False  # in a worker: running a job (a stop signal interrupts it)
_STARTED: Any = None  # in a worker: the queue on which it says which job it starts


def _start_worker(parent: int, started: Any = None, scratch: str | None = None) -> None:
    global _STARTED
    import signal
    import tempfile

    _STARTED = started
    if scratch is not None:
        tempfile.tempdir = scratch
    # SIGTERM (from the batch, interrupted) and SIGINT (Ctrl-C reaches the whole process group) stop the job at
    # hand as an interruption, so that its temporary is removed; an idle worker just exits with the pool.
    signal.signal(signal.SIGTERM, _stop_signal)
    signal.signal(signal.SIGINT, _stop_signal)
    if sys.platform.startswith("linux"):  # die with the batch: a killed run must not go on writing
        import ctypes

        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent was gone before the signal was armed
            os._exit(1)


def _stop_signal(signum: int, frame: object) -> None:
    """Interrupt the job at hand, once: Ctrl-C reaches a worker, then the batch's SIGTERM, and a second interruption
    would cut short the first one's cleanup."""
    global _STOPPING
    first, _STOPPING = not _STOPPING, True
    if first and _IN_JOB:
        raise KeyboardInterrupt


def _run_on_ray(jobs: list[BatchJob], address: str, workers: int | None) -> Iterator[JobResult]:
    """Jobs as Ray tasks of one CPU each, at most ``workers`` at a time when given. A task whose worker dies is
    retried once by Ray (as the process pool retries it); what the dead worker was writing is removed."""
    try:
        import ray
    except ImportError:
        raise ReenactError("--ray needs Ray: pip install 'reenact[ray]'") from None
    if not jobs:
        return
    import shutil
    import tempfile

    env = {k: v for k, v in os.environ.items() if k.startswith("REENACT_")}
    started = not ray.is_initialized()
    # Workers' own logs stay in Ray's log folder: each job's outcome comes back as its result.
    quiet = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "logging_level": logging.ERROR}
    if started:
        try:
            if address == "local":
                ray.init(num_cpus=workers or _cores(), include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
        except Exception as e:
            raise ReenactError(f"cannot start Ray ({address}): {' '.join(str(e).split())[:300]}") from e
    # The workers' scratch folders go in one of the batch's own, removed with it: a killed worker cannot clean up.
    scratch = tempfile.mkdtemp(prefix="reenact-batch-")
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(_run_job_in)
        waiting = list(reversed(jobs))
        running: dict[Any, BatchJob] = {}
        while waiting or running:
            while waiting and len(running) < (workers or len(jobs)):
                job = waiting.pop()
                running[task.remote(job, scratch)] = job
            (ref,), _ = ray.wait(list(running), num_returns=1)
            job = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.WorkerCrashedError:
                result = JobResult(job, "failed", error=WORKER_DIED)
            except Exception as e:  # Ray lost the task
                result = JobResult(job, "failed", error=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
            if job.output is not None:  # a try whose worker died left its half-written output
                _remove_temporaries([job.output])
            yield result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if started:
            ray.shutdown()


def _run_job_in(job: BatchJob, scratch: str) -> JobResult:
    """A Ray task: the job, with its scratch files in the batch's ``scratch`` folder where this node has it (a
    worker on another machine of a cluster uses its own temporary folder)."""
    import tempfile

    if os.path.isdir(scratch):
        tempfile.tempdir = scratch
    return _run_job(job)
