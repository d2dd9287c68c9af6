"""A seeded mutation fuzzer over every kind of file reenact reads, shared by ``benchmarks/fuzz.py`` and
``tests/test_fuzz.py``.

Seeds are made at run time (no clip is committed): a second of a real face clip (a GRID clip from $REENACT_DATA, or
scikit-image's astronaut where that is absent) transcoded to MP4, MOV, MKV, WebM and MPEG-TS with PyAV, PNG and
JPEG stills of it, and small CSV/YAML/JSON batch job files. Each input is mutated (bit flips, byte inserts and
deletes, chunk duplication and truncation, header fields set to edge values, two seeds spliced; job files also get
structured mutations of their rows) and goes through the real reading path in a child process:

- media: ``reenact au INPUT -o OUT.csv`` (probe, decode every frame, track the face, write the CSV), a quarter of
  them ``reenact track INPUT -o OUT.mp4`` instead (the same, and write a video with the input's audio);
- job files: ``reenact batch JOBFILE -o OUTDIR`` with the edits themselves replaced by their checks
  (``api.edit_expression`` and ``api.transfer_expression`` probe, check and return), so a job file is read,
  every row parsed and checked, and the report written, without running a generator.

Process start (torch, MediaPipe, PyAV: seconds) is paid once: a server process imports reenact, then forks one
child per input, under a memory limit (RLIMIT_AS: the server's own address space plus ``MEMORY_BUDGET``) and a
time limit. Outcomes: ``ok``; ``error`` (exit 1 or 2 and exactly one ``reenact: error:`` line, no traceback);
``messy`` (an error exit said otherwise: no error line, several, another exit status); ``traceback``; ``crash``
(killed by a signal); ``hang`` (past the time limit); ``memory`` (a MemoryError, or a resident size past
``MEMORY_BUDGET``). Every outcome but ``ok`` and ``error`` is a bug; its input is saved as a reproducer.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEDIA_KINDS = ("mp4", "mov", "mkv", "webm", "ts", "png", "jpg")
JOB_KINDS = ("csv", "yaml", "json")
KINDS = MEDIA_KINDS + JOB_KINDS
BAD = ("messy", "traceback", "crash", "hang", "memory")
OUTCOMES = ("ok", "error") + BAD
MAX_LINE = 2000  # characters: an error line longer than this is not one a user can read
MEMORY_BUDGET = 3 << 30  # bytes a child may grow by (address space, and resident size)
GRID_CLIP = "train/grid_s1/bbaf2n.mp4"  # CC BY 4.0; only transcoded copies of a second of it, made at run time
WRITE_SHARE = 0.25  # of media inputs go through `reenact track` (read, track, write video + audio), not `reenact au`
SEED_FRAMES = 8  # frames per seed clip: enough for the tracker's video mode, few enough to keep inputs fast


# --------------------------------------------------------------------------- seeds


def _source_frames(data: Path | None, count: int = SEED_FRAMES) -> tuple[list, list]:
    """RGB frames of a face (and their audio, as mono float samples at 16 kHz), from the GRID clip or the astronaut."""
    import av
    import numpy as np

    clip = data / GRID_CLIP if data is not None else None
    if clip is not None and clip.is_file():
        frames = []
        with av.open(str(clip)) as container:
            for vf in container.decode(video=0):
                frames.append(vf.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
        samples = np.sin(np.arange(16000 * count // 25) / 16000 * 2 * np.pi * 220).astype(np.float32) * 0.3
        return frames, [samples]
    import skimage.data

    face = skimage.data.astronaut()[0:288, 100:460]
    frames = [np.roll(face, i * 2, axis=1).copy() for i in range(count)]
    samples = np.sin(np.arange(16000 * count // 25) / 16000 * 2 * np.pi * 220).astype(np.float32) * 0.3
    return frames, [samples]


# kind: (video codec, pixel format, audio codec or None, audio sample format, container options, rotation)
_CLIP_SEEDS = {
    "mp4": ("libx264", "yuv420p", "aac", "fltp", 90),  # with a display matrix: the rotation path
    "mov": ("mpeg4", "yuv420p", "aac", "fltp", 0),
    "mkv": ("libx264", "yuv420p", "flac", "s16", 0),
    "webm": ("libvpx-vp9", "yuv420p", "libopus", "flt", 0),
    "ts": ("mpeg2video", "yuv420p", "mp2", "s16", 0),
}


def _write_clip(path: Path, frames: list, audio: list, kind: str) -> None:
    from fractions import Fraction

    import av
    import numpy as np

    codec, pix_fmt, audio_codec, sample_fmt, rotation = _CLIP_SEEDS[kind]
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=25)
        height, width = frames[0].shape[:2]
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            video.codec_context.options = {"preset": "ultrafast", "crf": "30"}
        if rotation and hasattr(video, "set_display_rotation"):
            video.set_display_rotation(rotation)
        rate = 48000 if audio_codec in ("libopus", "mp2") else 16000
        sound = container.add_stream(audio_codec, rate=rate)
        sound.layout = "mono"
        samples = np.interp(np.arange(len(audio[0]) * rate // 16000) * 16000 / rate, np.arange(len(audio[0])),
                            audio[0]).astype(np.float32)
        if sample_fmt == "s16":
            samples = (samples * 32767).astype(np.int16)
        af = av.AudioFrame.from_ndarray(samples[None, :], format=sample_fmt, layout="mono")
        af.sample_rate, af.pts, af.time_base = rate, 0, Fraction(1, rate)
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        container.mux(sound.encode(af))
        container.mux(sound.encode(None))


def _write_still(path: Path, image, kind: str) -> None:
    import av

    codec, pix_fmt = {"png": ("png", "rgb24"), "jpg": ("mjpeg", "yuvj420p")}[kind]
    with av.open(str(path), "w", format="image2", container_options={"update": "1"}) as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], pix_fmt
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


# Job file seeds: rows that name the files beside the job file (seed.mp4, seed.png, written by the server).
_JOB_ROWS = [
    {"input": "seed.mp4", "au": "AU12=+1.5;AU26=+1", "output": "smile.mp4", "start": "0", "end": "0.2", "ramp": "0.1"},
    {"input": "seed.png", "preset": "happy:0.7"},
    {"op": "transfer", "input": "seed.png", "driving": "seed.mp4", "mode": "relative", "au_scale": "0.8",
     "aus": "AU12;AU25", "audio": "driving", "pose": "yes", "crf": "23", "encoder_preset": "fast", "codec": "libx264"},
    {"input": "seed.mp4", "preset": "sad", "output": "sub/sad.mkv"},
]


def job_text(rows: list, kind: str) -> bytes:
    """``rows`` written as a job file of ``kind`` (csv, yaml, json)."""
    if kind == "json":
        return json.dumps(rows, indent=1).encode()
    if kind == "yaml":
        import yaml

        return yaml.safe_dump(rows, allow_unicode=True, sort_keys=False).encode("utf-8", "surrogatepass")
    import csv

    columns = list(dict.fromkeys(str(k) for row in rows if isinstance(row, dict) for k in row)) or ["input"]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in rows:
        values = row if isinstance(row, dict) else {"input": row}
        writer.writerow(["" if values.get(c) is None else str(values.get(c)) for c in columns])
    return text.getvalue().encode("utf-8", "surrogatepass")


def make_seeds(folder: Path, data: Path | None) -> dict[str, bytes]:
    """The seed file of every kind, made into ``folder`` (seed.KIND) and returned by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    frames, audio = _source_frames(data)
    for kind in _CLIP_SEEDS:
        _write_clip(folder / f"seed.{kind}", frames, audio, kind)
    for kind in ("png", "jpg"):
        _write_still(folder / f"seed.{kind}", frames[0], kind)
    for kind in JOB_KINDS:
        (folder / f"seed.{kind}").write_bytes(job_text(_JOB_ROWS, kind))
    return {kind: (folder / f"seed.{kind}").read_bytes() for kind in KINDS}


# --------------------------------------------------------------------------- mutations

_INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)
_INTERESTING_32 = (0, 1, 2, 0x7F, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                   0xFFFFFFFE, 0x40000000)
# Where header fields sit: ISO BMFF boxes (MP4/MOV), Matroska/WebM element IDs, PNG chunks, JPEG markers, TS PES.
_TAGS = [t.encode() for t in ("ftyp", "moov", "mvhd", "trak", "tkhd", "mdia", "mdhd", "hdlr", "minf", "stbl", "stsd",
                               "stts", "stss", "stsc", "stsz", "stco", "co64", "ctts", "avcC", "esds", "elst", "mdat",
                               "mp4v", "avc1", "mp4a", "IHDR", "IDAT", "IEND", "PLTE")]
_TAGS += [b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67", b"\x16\x54\xae\x6b", b"\xae", b"\xb0", b"\xba", b"\x1f\x43\xb6\x75",
          b"\xa3", b"\x63\xa2", b"\x2a\xd7\xb1", b"\x44\x89", b"\xff\xc0", b"\xff\xc4", b"\xff\xda", b"\xff\xdb",
          b"\xff\xdd", b"\xff\xe0", b"\x00\x00\x01\xb3", b"\x00\x00\x01\xe0", b"\x00\x00\x01\xb5", b"\x47\x40"]


def _position(data: bytes, rng: random.Random) -> int:
    """A position biased to the headers (the first 4 KB and the last 1 KB: ISO moov boxes go at the end)."""
    n = len(data)
    pick = rng.random()
    if pick < 0.4:
        return rng.randrange(min(n, 4096) or 1)
    if pick < 0.55:
        return max(0, n - 1 - rng.randrange(min(n, 1024) or 1))
    return rng.randrange(n or 1)


def _flip_bits(data: bytearray, rng: random.Random, _: bytes) -> str:
    count = rng.choice((1, 1, 2, 4, 8, 32))
    for _ in range(count):
        i = _position(data, rng)
        if i < len(data):
            data[i] ^= 1 << rng.randrange(8)
    return f"flip{count}"


def _set_bytes(data: bytearray, rng: random.Random, _: bytes) -> str:
    count = rng.choice((1, 2, 4, 16))
    for _ in range(count):
        i = _position(data, rng)
        if i < len(data):
            data[i] = rng.choice(_INTERESTING_8)
    return f"set{count}"


def _insert(data: bytearray, rng: random.Random, _: bytes) -> str:
    i, size = _position(data, rng), rng.choice((1, 4, 16, 256, 4096))
    chunk = bytes(rng.randrange(256) for _ in range(size)) if rng.random() < 0.5 else bytes([rng.randrange(256)]) * size
    data[i:i] = chunk
    return f"insert{size}@{i}"


def _delete(data: bytearray, rng: random.Random, _: bytes) -> str:
    i = _position(data, rng)
    size = min(len(data) - i, rng.choice((1, 4, 16, 256, 4096, max(1, len(data) // 8))))
    del data[i:i + size]
    return f"delete{size}@{i}"


def _duplicate(data: bytearray, rng: random.Random, _: bytes) -> str:
    i = _position(data, rng)
    size = min(len(data) - i, rng.choice((8, 64, 512, 8192)))
    j = _position(data, rng)
    data[j:j] = data[i:i + size] * rng.choice((1, 1, 2, 16))
    return f"dup{size}@{i}->{j}"


def _truncate(data: bytearray, rng: random.Random, _: bytes) -> str:
    keep = rng.randrange(len(data)) if rng.random() < 0.5 else _position(data, rng)
    del data[keep:]
    return f"truncate@{keep}"


def _header_field(data: bytearray, rng: random.Random, _: bytes) -> str:
    """Set a 1/2/4-byte field just after a container tag to an edge value (sizes, counts, dimensions, offsets)."""
    tag = rng.choice(_TAGS)
    found = [m.start() for m in re.finditer(re.escape(tag), data[:1 << 20])][:64]
    if not found:
        return _set_bytes(data, rng, b"")
    at = rng.choice(found) + len(tag) + rng.choice((-8, -4, 0, 0, 2, 4, 8, 12, 16, 20, 24, 28, 32, 40, 76, 80))
    width = rng.choice((1, 2, 4, 4))
    value = rng.choice(_INTERESTING_32) & ((1 << (8 * width)) - 1)
    if rng.random() < 0.3:
        value = rng.randrange(1 << (8 * width))
    at = max(0, min(at, len(data) - width))
    data[at:at + width] = value.to_bytes(width, "big")
    _fix_png_crc(data, at)
    return f"field{tag.hex()}+{width}@{at}={value:#x}"


def _fix_png_crc(data: bytearray, at: int) -> None:
    """Give the PNG chunk holding ``at`` a right CRC again, so the parser reads past it (it rejects a bad CRC)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return
    i = 8
    while i + 12 <= len(data):
        size = struct.unpack(">I", data[i:i + 4])[0]
        end = i + 12 + size
        if end > len(data) or size > 1 << 28:
            return
        if i <= at < end:
            data[end - 4:end] = struct.pack(">I", zlib.crc32(bytes(data[i + 4:end - 4])) & 0xFFFFFFFF)
            return
        i = end


def _splice(data: bytearray, rng: random.Random, other: bytes) -> str:
    i = rng.randrange(len(data) + 1)
    j = rng.randrange(len(other) + 1)
    data[i:] = other[j:]
    return f"splice@{i}+{j}"


BYTE_MUTATORS: list[Callable[[bytearray, random.Random, bytes], str]] = [
    _flip_bits, _flip_bits, _set_bytes, _insert, _delete, _duplicate, _truncate, _header_field, _header_field,
    _header_field, _splice,
]


def mutate_bytes(seed: bytes, rng: random.Random, other: bytes) -> tuple[bytes, list[str]]:
    """One to three byte-level mutations of ``seed`` (``other``: a second seed to splice in)."""
    data = bytearray(seed)
    done = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not data:
            break
        done.append(rng.choice(BYTE_MUTATORS)(data, rng, other))
    return bytes(data), done


# Values a job file's field can hold that the reader must refuse or take, each in one clear line.
NASTY_VALUES: list = [
    None, "", " ", "\t", 0, -1, 1, 2**70, -2**63, 1e308, float("nan"), float("inf"), -0.0, True, False, [], {}, [[]],
    [1, [2, [3]]], {"a": {"b": 1}}, "AU12=+1e999", "AU12=nan", "AU12=inf", "AU99=1", "AU12", "AU12=", "=", ";;",
    "AU12=2;AU26=+1;AU01=-0.5", "happy:1e400", "happy:-1", "happy:nan", "happy:", ":", "neutral:2", "HAPPY",
    "../../escape.mp4", "/tmp/abs.mp4", "a\x00b", "\u0000", "\ud800", "\u202e4pm.mp4", "x" * 5000, "clip.mp4",
    "seed.mp4", "seed.png", "seed.jpg", "seed.mov", "seed.csv", ".", "..", "sub/", "seed.mp4/", "out.png", "out.jpg",
    "out.txt", "out", "out.MP4", "out.mp4 ", "con", "transfer", "edit", "yes", "no", "1e5", "-0", "0x10", "1_000",
    "١٢", "∞", "-inf", "absolute", "source", "driving", "none", "libx264", "nosuchcodec", "-crf 0", "ultrafast",
    "placebo", "AU12;AU25", "AU12,,AU99", "*", "~", "$HOME/x.mp4", "%s%s%n",
]


def _nested(depth: int, kind: str) -> object:
    value: object = "AU12=1"
    for _ in range(depth):
        value = [value] if kind == "list" else {"input": value}
    return value


def mutate_rows(rows: list, rng: random.Random) -> tuple[object, list[str]]:
    """Structured mutations of a job list: fields set to nasty values, dropped, renamed, rows duplicated, nested."""
    rows = json.loads(json.dumps(rows))  # a deep copy
    done = []
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        pick = rng.random()
        if not rows:
            rows.append({})
        i = rng.randrange(len(rows))
        row = rows[i]
        if pick < 0.45 and isinstance(row, dict):
            key = rng.choice(list(row) or ["input"]) if rng.random() < 0.7 else rng.choice(
                ["op", "input", "driving", "output", "au", "preset", "start", "end", "ramp", "mode", "au_scale", "aus",
                 "audio", "pose", "model", "crf", "encoder_preset", "codec"])
            row[key] = rng.choice(NASTY_VALUES)
            done.append(f"row{i}.{key}=nasty")
        elif pick < 0.55 and isinstance(row, dict) and row:
            key = rng.choice(list(row))
            del row[key]
            done.append(f"row{i}-{key}")
        elif pick < 0.62 and isinstance(row, dict):
            row[rng.choice(["Input", "outputs", "", " input", "au ", "None", "1"])] = "x"
            done.append(f"row{i}+unknown")
        elif pick < 0.70:
            rows[i] = rng.choice(NASTY_VALUES)
            done.append(f"row{i}=nasty")
        elif pick < 0.78:
            rows.extend([rows[i]] * rng.choice((1, 2, 50)))
            done.append(f"row{i}*dup")
        elif pick < 0.83:
            del rows[i]
            done.append(f"row{i}-")
        elif pick < 0.90 and isinstance(row, dict):
            row[rng.choice(["au", "aus", "input", "preset"])] = _nested(rng.choice((3, 50, 2000, 50000)),
                                                                       rng.choice(("list", "dict")))
            done.append(f"row{i}.nested")
        else:
            rows = rng.choice([rows, {"jobs": rows}, [rows], "just text", 42, None, _nested(rng.choice((100, 100000)),
                                                                                          "list")])
            done.append("top-level")
            break
    return rows, done  # a list of rows, or (top-level) anything


def _yaml_bomb(rng: random.Random) -> bytes:
    """Billion laughs: aliases nesting 9-fold per level (safe_load builds them as shared references, cheaply) in a
    first row, and a second row whose field is the last of them."""
    levels = rng.choice((6, 12, 20))
    anchors = ['a0: &a0 ["AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1", "AU12=1"]']
    anchors += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, levels)]
    field_name = rng.choice(("au", "aus", "input", "preset", "output", "op", "start", "crf"))
    return ("- " + "\n  ".join(anchors) + f"\n- input: seed.mp4\n  {field_name}: *a{levels - 1}\n").encode()


def mutate_job(seed: bytes, kind: str, rng: random.Random, other: bytes) -> tuple[bytes, list[str]]:
    """A job file of ``kind``: structured mutations of the seed's rows, then maybe byte-level ones on the text."""
    pick = rng.random()
    if kind == "yaml" and pick < 0.03:
        return _yaml_bomb(rng), ["yaml-bomb"]
    if pick < 0.08:
        return mutate_bytes(seed, rng, other)
    if pick < 0.12 and kind != "csv":  # nesting too deep to build as rows: written as text
        depth = rng.choice((500, 5000, 100000))
        opener, closer = rng.choice((("[", "]"), ('{"input": ', "}"))) if kind == "json" else rng.choice(
            (("[", "]"), ("{input: ", "}")))
        return ("[" + opener * depth + '"seed.mp4"' + closer * depth + "]").encode(), [f"deep{depth}"]
    rows, done = mutate_rows(_JOB_ROWS, rng)
    try:
        text = _serialise(rows, kind)
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        text, done = seed, done + ["unserialisable"]
    if rng.random() < 0.2:
        text, more = mutate_bytes(text, rng, other)
        done += more
    return text, done


def _serialise(rows: object, kind: str) -> bytes:
    if kind == "json":
        return json.dumps(rows).encode("utf-8", "surrogatepass")
    if kind == "yaml":
        import yaml

        return yaml.safe_dump(rows, allow_unicode=True).encode("utf-8", "surrogatepass")
    return job_text(rows if isinstance(rows, list) else [rows], "csv")


def mutate(kind: str, seeds: dict[str, bytes], rng: random.Random) -> tuple[bytes, list[str]]:
    """A mutated input of ``kind`` and the mutations made."""
    other = seeds[rng.choice(KINDS if rng.random() < 0.3 else (kind,))]
    if kind in JOB_KINDS:
        return mutate_job(seeds[kind], kind, rng, other)
    return mutate_bytes(seeds[kind], rng, other)


# --------------------------------------------------------------------------- running inputs


def command(kind: str, path: str, out: str, write: bool = False) -> list[str]:
    """The ``reenact`` arguments that read an input of ``kind`` at ``path`` (``out``: a scratch folder). ``write``:
    media through ``reenact track`` instead of ``reenact au``, which also writes a video with the input's audio."""
    if kind in JOB_KINDS:
        return ["batch", path, "-o", os.path.join(out, "batch"), "--quiet"]
    if write:
        return ["track", path, "-o", os.path.join(out, "tracked.mp4"), "--quiet", "--encoder-preset", "ultrafast"]
    return ["au", path, "-o", os.path.join(out, "aus.csv"), "--quiet"]


def _dry_jobs() -> None:
    """Replace the edits and transfers a batch runs by their checks (probe both files, check options and output)."""
    from reenact import api
    from reenact.checks import check_edit, check_transfer

    def edit(input, output, target, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 (the API's own)
        check_edit(input, output, target)
        return api.RunReport(Path(input), Path(output), 1, 1, 0.01)

    def transfer(source, driving, output, relative=True, au_scale=1.0, aus=None, audio=None, *args, **kwargs):  # noqa
        check_transfer(source, driving, output, audio, relative)
        return api.RunReport(Path(source), Path(output), 1, 1, 0.01)

    api.edit_expression, api.transfer_expression = edit, transfer


def _serve() -> None:
    """The server: import reenact once, then per request (a JSON line on stdin) fork a child that runs the CLI."""
    import resource
    import traceback

    os.environ.setdefault("PYTHONHASHSEED", "0")
    import reenact.api  # noqa: F401 (torch, MediaPipe, PyAV: loaded once, shared by every child)
    import reenact.batch  # noqa: F401
    import reenact.cli
    import mediapipe  # noqa: F401

    _dry_jobs()
    out = sys.stdout
    sys.stdout = sys.stderr
    print(json.dumps({"ready": True, "pid": os.getpid()}), file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        log = Path(request["log"])
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: the CLI as a process would run it, under limits
            code = 70
            try:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                with open("/proc/self/status") as status:
                    size = int(re.search(r"VmSize:\s+(\d+)", status.read())[1]) * 1024
                limit = size + request["memory"]
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                os.chdir(request["cwd"])
                sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
                try:
                    code = reenact.cli.main(request["argv"])
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:  # what Python prints for an uncaught exception, and its status
                    traceback.print_exc()
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        deadline = started + request["timeout"]
        killed = False
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() > deadline and not killed:
                os.kill(pid, signal.SIGKILL)
                killed = True
            time.sleep(0.002)
        print(json.dumps({
            "status": os.waitstatus_to_exitcode(status), "hang": killed, "seconds": time.perf_counter() - started,
            "rss": usage.ru_maxrss * 1024,
        }), file=out, flush=True)


class Server:
    """A server process (``python benchmarks/fuzzing.py serve``) running inputs through the CLI, one fork each."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, **(env or {})}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=environment, cwd=str(REPO),
        )
        ready = self._process.stdout.readline()  # type: ignore[union-attr]
        if not ready.startswith("{"):
            raise RuntimeError(f"the fuzz server did not start (exit {self._process.wait()})")

    def run(self, argv: list[str], cwd: Path, log: Path, timeout: float, memory: int = MEMORY_BUDGET) -> dict:
        request = {"argv": argv, "cwd": str(cwd), "log": str(log), "timeout": timeout, "memory": memory}
        self._process.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
        self._process.stdin.flush()  # type: ignore[union-attr]
        answer = self._process.stdout.readline()  # type: ignore[union-attr]
        if not answer:
            raise RuntimeError("the fuzz server died")
        return json.loads(answer)

    def close(self) -> None:
        self._process.stdin.close()  # type: ignore[union-attr]
        self._process.wait(30)


def classify(result: dict, stderr: str, memory: int = MEMORY_BUDGET) -> str:
    """The outcome of one run: one of OUTCOMES."""
    status = result["status"]
    if result["hang"]:
        return "hang"
    if "MemoryError" in stderr or "bad_alloc" in stderr or result["rss"] > memory:
        return "memory"
    if status < 0:
        return "crash"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if status == 0:
        return "ok"
    errors = [line for line in stderr.splitlines() if line.startswith("reenact: error: ")]
    if status not in (1, 2) or len(errors) != 1:
        return "messy"
    # An OS error's own words with no file or context ("[Errno 36] File name too long: ..."), or a line too long to
    # read, is no clear error either.
    return "messy" if raw_message(errors[0][len("reenact: error: "):]) or len(errors[0]) > MAX_LINE else "error"


# Python's own words for an exception, said with no file or field: a bug's message leaking, not a clear error.
_RAW = re.compile(r"^\[Errno \d+\]|^embedded null byte|codec can't (en|de)code|surrogates not allowed|^invalid literal "
                  r"for|object has no attribute|index out of range|^'[^']*'$|^unhashable type|not supported between "
                  r"instances|^maximum recursion depth|^[A-Z]\w*(Error|Exception): ")


def raw_message(message: str) -> bool:
    """Whether an error message (a CLI line's, or a batch job's in the report) is a Python exception's bare text."""
    return bool(_RAW.search(message))


def job_errors(report: Path) -> list[str]:
    """The job errors in a batch report that are bare Python exceptions (``TypeError: ...``): bugs the batch kept."""
    try:
        jobs = json.loads(report.read_text())["jobs"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [j["error"] for j in jobs if isinstance(j.get("error"), str) and raw_message(j["error"])]


def _job_error_shapes(report: Path) -> list[str]:
    """Every job error in a batch report, its values blanked (``job: ...``), to count the distinct ones said."""
    try:
        jobs = json.loads(report.read_text())["jobs"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return ["job: " + _message_shape("reenact: error: " + j["error"])[len("reenact: error: "):]
            for j in jobs if isinstance(j.get("error"), str)]


@dataclass
class Stats:
    """What a fuzz run did: inputs and outcomes per kind, errors said, reproducers saved."""

    tried: Counter = field(default_factory=Counter)
    outcomes: dict[str, Counter] = field(default_factory=dict)
    messages: Counter = field(default_factory=Counter)
    reproducers: list[str] = field(default_factory=list)
    bad: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, kind: str, outcome: str) -> None:
        self.tried[kind] += 1
        self.outcomes.setdefault(kind, Counter())[outcome] += 1

    @property
    def total(self) -> int:
        return sum(self.tried.values())

    def count(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.outcomes.values())

    def to_dict(self) -> dict:
        return {
            "inputs": self.total, "seconds": round(self.seconds, 1),
            "inputs_per_second": round(self.total / self.seconds, 2) if self.seconds else None,
            "outcomes": {o: self.count(o) for o in OUTCOMES},
            "per_kind": {k: {"tried": self.tried[k], **{o: self.outcomes[k][o] for o in OUTCOMES if self.outcomes[k][o]}}
                         for k in KINDS if self.tried[k]},
            "reproducers": self.reproducers, "bad": self.bad,
            "errors_said": dict(self.messages.most_common(80)),
        }


def _message_shape(stderr: str) -> str:
    """An error line with its paths, numbers and quoted values blanked, to count the distinct messages."""
    line = next((l for l in stderr.splitlines() if l.startswith("reenact: error: ")), "")
    line = re.sub(r"/\S+", "PATH", line)
    line = re.sub(r"'[^']*'|\"[^\"]*\"", "'X'", line)
    return re.sub(r"-?\d+(\.\d+)?(e[+-]?\d+)?", "N", line)[:160]


def fuzz(
    kinds: Iterable[str], seed: int, inputs: int | None = None, seconds: float | None = None,
    reproducers: Path | None = None, data: Path | None = None, timeout: float = 20.0, memory: int = MEMORY_BUDGET,
    progress: Callable[[Stats], None] | None = None,
) -> Stats:
    """Mutate seeds of ``kinds`` round-robin and run each input, until ``inputs`` or ``seconds`` are spent.

    ``seed`` fixes the inputs made. Bad outcomes are copied to ``reproducers`` (``KIND-OUTCOME-N.EXT`` and a
    ``.outcome.json`` beside it with the mutations, the command and the output); Stats says what happened.
    """
    kinds = list(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    rng = random.Random(seed)
    stats = Stats()
    with tempfile.TemporaryDirectory(prefix="reenact-fuzz-") as scratch:
        work = Path(scratch)
        seeds = make_seeds(work / "seeds", data)
        jobs = work / "jobs"  # job files sit beside the files their rows name
        jobs.mkdir()
        for name in ("seed.mp4", "seed.png", "seed.jpg", "seed.mov"):
            (jobs / name).write_bytes(seeds[name.split(".")[1]])
        server = Server()
        started = time.perf_counter()
        try:
            n = 0
            while (inputs is None or n < inputs) and (seconds is None or time.perf_counter() - started < seconds):
                kind = kinds[n % len(kinds)]
                data_in, mutations = mutate(kind, seeds, rng)
                n += 1
                folder = jobs if kind in JOB_KINDS else work
                path = folder / f"input.{kind}"
                path.write_bytes(data_in)
                out = work / "out"
                subprocess.run(["rm", "-rf", str(out)], check=False)
                out.mkdir()
                argv = command(kind, path.name, str(out), write=rng.random() < WRITE_SHARE)
                log = work / "log.txt"
                result = server.run(argv, folder, log, timeout, memory)
                stderr = log.read_text(errors="replace")
                outcome = classify(result, stderr, memory)
                if kind in JOB_KINDS and outcome in ("ok", "error"):
                    kept = job_errors(out / "batch" / "batch_report.json")
                    if kept:
                        outcome, stderr = "messy", stderr + "".join(f"job error: {e}\n" for e in kept)
                stats.add(kind, outcome)
                if outcome == "error":
                    stats.messages[_message_shape(stderr)] += 1
                if kind in JOB_KINDS:
                    stats.messages.update(_job_error_shapes(out / "batch" / "batch_report.json"))
                if outcome in BAD:
                    record = {"kind": kind, "outcome": outcome, "mutations": mutations, "argv": argv,
                              "result": result, "output": stderr[-4000:]}
                    if reproducers is not None:
                        reproducers.mkdir(parents=True, exist_ok=True)
                        name = f"{kind}-{outcome}-{seed}-{n}"
                        (reproducers / f"{name}.{kind}").write_bytes(data_in)
                        (reproducers / f"{name}.outcome.json").write_text(json.dumps(record, indent=1) + "\n")
                        stats.reproducers.append(str(reproducers / f"{name}.{kind}"))
                    stats.bad.append({k: record[k] for k in ("kind", "outcome", "mutations")} |
                                     {"said": stderr.strip().splitlines()[-3:]})
                stats.seconds = time.perf_counter() - started
                if progress is not None:
                    progress(stats)
        finally:
            server.close()
    return stats


def replay(path: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a saved reproducer through the real ``reenact`` command (a fresh process), beside seed media for jobs."""
    kind = path.suffix.lstrip(".")
    with tempfile.TemporaryDirectory(prefix="reenact-replay-") as scratch:
        work = Path(scratch)
        seeds = make_seeds(work / "seeds", Path(os.environ["REENACT_DATA"]) if "REENACT_DATA" in os.environ else None)
        for name in ("seed.mp4", "seed.png", "seed.jpg", "seed.mov"):
            (work / name).write_bytes(seeds[name.split(".")[1]])
        target = work / f"input.{kind}"
        target.write_bytes(path.read_bytes())
        (work / "out").mkdir()
        outcome = path.with_name(path.name.rsplit(".", 1)[0] + ".outcome.json")
        write = outcome.is_file() and json.loads(outcome.read_text())["argv"][0] == "track"
        argv = command(kind, target.name, str(work / "out"), write)
        return subprocess.run([sys.executable, "-m", "reenact", *argv], check=False, cwd=work, capture_output=True,
                              text=True, timeout=timeout)


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    _serve()
