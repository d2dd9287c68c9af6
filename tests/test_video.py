"""Tests for reenact.video, on clips synthesized with PyAV (plus two shared real clips)."""

from __future__ import annotations

import hashlib
import itertools
import os
import tracemalloc
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from reenact.errors import InputError, OutputError
from reenact.video import (
    Frame,
    VideoInfo,
    VideoReader,
    VideoWriter,
    atomic_output,
    check_output_path,
    encoder_frame,
    probe,
)

AUDIO_RATE = 16000
needs_rotation = pytest.mark.skipif(
    not hasattr(av.VideoStream, "set_display_rotation"), reason="PyAV < 18 cannot write a display matrix"
)
MARK = (255, 0, 0)  # red block in the STORED top-left corner, to check orientation


# --------------------------------------------------------------------------- helpers


def stored_frame(i: int, width: int, height: int, noise: bool = False) -> np.ndarray:
    """A distinct frame per index: grey level + moving square, red marker top-left."""
    if noise:
        img = np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        img = np.full((height, width, 3), (40 + 9 * i) % 200, np.uint8)
        x = (3 * i) % max(1, width - 8)
        img[height // 2 : height // 2 + 8, x : x + 8] = (0, 0, 255)
    img[:8, :8] = MARK
    return img


def make_clip(
    path: Path,
    *,
    n: int = 12,
    size: tuple[int, int] = (64, 48),
    rate: int = 25,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int = 0,
    audio: bool = False,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    noise: bool = False,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write a small clip with PyAV (optionally with an AAC sine track) and return its path."""
    width, height = size
    with av.open(str(path), "w", container_options=container_options or {}) as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if time_base is not None:
            video.time_base = video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=AUDIO_RATE)
            sound.layout = "mono"
        out.start_encoding()  # write a header even when there are no frames
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(stored_frame(i, width, height, noise), format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            seconds = pts[-1] * time_base if pts and time_base else Fraction(n, rate)
            t = np.arange(int(AUDIO_RATE * seconds)) / AUDIO_RATE
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(wave), 1024):
                af = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = AUDIO_RATE, start
                out.mux(sound.encode(af))
            out.mux(sound.encode())
    return path


def make_audio_only(path: Path, codec: str, fmt: str = "s16", rate: int = 8000) -> Path:
    """One second of a tone."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        dtype = np.float32 if fmt.startswith("flt") else np.int16
        wave = (np.sin(np.arange(rate) / 5) * (0.3 if dtype is np.float32 else 8000)).astype(dtype)
        for start in range(0, rate, 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format=fmt, layout="mono")
            frame.sample_rate, frame.pts = rate, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def copy_through(src: Path, dst: Path, **writer_options: Any) -> list[tuple[int | None, float]]:
    """Decode `src` and re-encode every frame to `dst`; returns the (pts, time) written."""
    timing = []
    with VideoReader(src) as reader, VideoWriter(dst, reader.info, **writer_options) as writer:
        for frame in reader:
            writer.write(frame)
            timing.append((frame.pts, frame.time))
    return timing


def timing_of(path: Path) -> list[tuple[int | None, float]]:
    with VideoReader(path) as reader:
        return [(f.pts, f.time) for f in reader]


def read_all(path: Path) -> list[Frame]:
    with VideoReader(path) as reader:
        return list(reader)


def audio_packets(path: Path) -> list[tuple[int | None, Fraction, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(p.pts, p.time_base, bytes(p)) for p in container.demux(stream) if p.size]


def stored_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corner_is_red(image: np.ndarray, row: slice, col: slice) -> bool:
    r, g, b = image[row, col].reshape(-1, 3).mean(axis=0)
    return r > 180 and g < 80 and b < 80


def assert_one_line(error: Exception, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and message.strip() == message
    assert path.name in message, message


def shared_data() -> Path:
    """The shared clips folder: $REENACT_DATA, else <repo>/../shared/data."""
    env = os.environ.get("REENACT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_clip() -> Callable[[str], Path]:
    def get(relative: str) -> Path:
        path = shared_data() / "train" / relative
        if not path.is_file():
            reason = f"shared clip {path} is missing (set REENACT_DATA to the shared/data folder)"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        return path

    return get


@pytest.fixture
def cfr(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "cfr.mp4", n=20, audio=True)


# --------------------------------------------------------------------------- reading


def test_probe_describes_a_clip(cfr: Path) -> None:
    info = probe(cfr)
    assert (info.width, info.height, info.frame_count) == (64, 48, 20)
    assert info.fps == 25 and info.rotation == 0 and not info.is_image
    assert info.codec == "h264" and info.has_audio and info.audio_codec == "aac"
    assert info.duration == pytest.approx(0.8, abs=0.05)
    assert isinstance(info.time_base, Fraction)


def test_reader_yields_upright_rgb_frames_lazily(cfr: Path) -> None:
    with VideoReader(cfr) as reader:
        first = next(reader)
        assert first.index == 0 and first.pts == 0 and first.time == 0.0
        assert first.image.shape == (48, 64, 3) and first.image.dtype == np.uint8
        assert corner_is_red(first.image, slice(0, 6), slice(0, 6))
        rest = list(reader)
    assert [f.index for f in rest] == list(range(1, 20))
    assert rest[-1].time == pytest.approx(19 / 25)
    edited = first.replace(image=np.zeros_like(first.image))
    assert (edited.pts, edited.time_base, edited.index) == (first.pts, first.time_base, first.index)


def test_reader_memory_stays_flat(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "long.mp4", n=150, size=(160, 120))
    frame_bytes = 160 * 120 * 3
    tracemalloc.start()
    try:
        with VideoReader(clip) as reader:
            count = sum(1 for _ in reader)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 150
    assert peak < 20 * frame_bytes  # all frames would be 150x


def test_still_image_reads_as_one_frame(tmp_path: Path) -> None:
    image = stored_frame(3, 47, 31)
    path = tmp_path / "face.png"
    with av.open(str(path), "w", container_options={"update": "1"}) as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 47, 31, "rgb24"
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    info = probe(path)
    assert info.is_image and info.frame_count == 1 and (info.width, info.height) == (47, 31)
    frames = read_all(path)
    assert len(frames) == 1 and np.array_equal(frames[0].image, image)
    # ...and writes back as a lossless PNG
    out_path = tmp_path / "edited.png"
    copy_through(path, out_path)
    assert np.array_equal(read_all(out_path)[0].image, image)


# --------------------------------------------------------------------------- round trips


def test_round_trip_keeps_frames_timing_and_copies_audio(tmp_path: Path, cfr: Path) -> None:
    before = digest(cfr)
    out = tmp_path / "out.mp4"
    timing = copy_through(cfr, out, audio_from=cfr)
    assert digest(cfr) == before  # the input is never modified
    info = probe(out)
    assert (info.width, info.height, info.frame_count, info.rotation) == (64, 48, 20, 0)
    assert timing_of(out) == timing
    frames, result = read_all(cfr), read_all(out)
    diff = np.mean([np.abs(a.image.astype(int) - b.image.astype(int)).mean() for a, b in zip(frames, result)])
    assert diff < 3  # the default crf: visually the same
    assert audio_packets(out) == audio_packets(cfr)  # copied, not re-encoded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfr.mp4", "out.mp4"]  # no temp left


def test_audio_is_muxed_as_the_video_goes(tmp_path: Path, cfr: Path) -> None:
    # White-box: after each frame the copier has read audio just past that frame's time,
    # so audio is streamed alongside the video instead of buffered for the whole clip.
    with VideoReader(cfr) as reader, VideoWriter(tmp_path / "out.mp4", reader.info, audio_from=cfr) as writer:
        for frame in reader:
            writer.write(frame)
            pending = writer._audio._pending  # type: ignore[union-attr]
            if pending is not None:
                ahead = float(pending.pts * pending.time_base) - frame.time
                assert 0 < ahead <= 1024 / AUDIO_RATE + 1e-9
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(cfr)


def test_variable_frame_rate_stays_variable(tmp_path: Path) -> None:
    pts = list(np.cumsum([0] + [40, 20, 70, 33, 45] * 4))[:20]
    clip = make_clip(tmp_path / "vfr.mp4", pts=[int(p) for p in pts], time_base=Fraction(1, 1000))
    source = read_all(clip)
    steps = {b.pts - a.pts for a, b in itertools.pairwise(source)}
    assert len(steps) > 2  # really VFR
    out = tmp_path / "out.mp4"
    assert copy_through(clip, out) == timing_of(out)
    assert probe(out).time_base == probe(clip).time_base
    assert [t[0] for t in timing_of(out)] == [f.pts for f in source]


def test_a_clip_without_timestamps_is_timed_by_its_frames(tmp_path: Path) -> None:
    """A clip written with every frame at 0 (a script that set no timestamps) reads as frames at the stream's rate,
    and says so; a copy of it has proper timestamps. A clip with real ones, variable included, is read as it is."""
    clip = make_clip(tmp_path / "zero.mp4", pts=[0] * 12)
    info = probe(clip)
    assert info.retimed and info.fps == 25 and info.duration == pytest.approx(12 / 25)
    assert "timestamps do not advance" in info.timing_warning() and "25 fps" in info.timing_warning()
    assert [f.time for f in read_all(clip)] == pytest.approx([i / 25 for i in range(12)])
    copy_through(clip, tmp_path / "copy.mp4")
    assert not probe(tmp_path / "copy.mp4").retimed
    assert [t for _, t in timing_of(tmp_path / "copy.mp4")] == pytest.approx([i / 25 for i in range(12)])
    vfr = make_clip(tmp_path / "vfr.mp4", n=6, pts=[0, 40, 60, 130, 163, 208], time_base=Fraction(1, 1000))
    assert not probe(vfr).retimed and probe(vfr).timing_warning() is None
    assert [f.time for f in read_all(vfr)] == pytest.approx([0, 0.04, 0.06, 0.13, 0.163, 0.208])


@needs_rotation
@pytest.mark.parametrize(
    ("rotation", "red_at"),
    # Rotating the stored picture counter-clockwise moves its top-left corner to:
    [(90, "bottom-left"), (180, "bottom-right"), (270, "top-right")],
)
def test_rotation_is_applied_on_read_and_restored_on_write(tmp_path: Path, rotation: int, red_at: str) -> None:
    clip = make_clip(tmp_path / "rot.mp4", n=6, size=(64, 48), rotation=rotation)
    info = probe(clip)
    assert info.rotation == rotation
    upright = (48, 64) if rotation in (90, 270) else (64, 48)
    assert (info.width, info.height) == upright
    frames = read_all(clip)
    image = frames[0].image
    assert image.shape == (upright[1], upright[0], 3)
    rows = slice(0, 6) if red_at.startswith("top") else slice(-6, None)
    cols = slice(0, 6) if red_at.endswith("left") else slice(-6, None)
    assert corner_is_red(image, rows, cols)

    out = tmp_path / "out.mp4"
    copy_through(clip, out)
    assert probe(out).rotation == rotation
    assert stored_size(out) == stored_size(clip) == (64, 48)  # rotation undone before encoding
    result = read_all(out)
    assert [f.pts for f in result] == [f.pts for f in frames]
    assert corner_is_red(result[0].image, rows, cols)


@needs_rotation
def test_exif_rotated_jpeg_reads_upright_and_writes_upright_png(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image", reason="Pillow is needed to write EXIF orientation")
    photo = pil.fromarray(stored_frame(0, 60, 40))
    exif = photo.getexif()
    exif[0x0112] = 6  # EXIF "rotate 90 degrees clockwise to display"
    path = tmp_path / "photo.jpg"
    photo.save(path, exif=exif, quality=95)
    info = probe(path)
    assert info.is_image and info.rotation == 270 and (info.width, info.height) == (40, 60)
    image = read_all(path)[0].image
    assert image.shape == (60, 40, 3) and corner_is_red(image, slice(0, 6), slice(-6, None))
    out = tmp_path / "photo.png"  # PNG cannot declare a rotation: pixels are stored upright
    copy_through(path, out)
    assert probe(out).rotation == 0 and stored_size(out) == (40, 60)
    assert np.abs(read_all(out)[0].image.astype(int) - image).max() == 0


@needs_rotation
def test_rotation_survives_mov_and_webm(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "rot.mp4", n=4, rotation=90)
    for name, codec in [("out.mov", "libx264"), ("out.webm", "libvpx-vp9")]:
        copy_through(clip, tmp_path / name, codec=codec, preset="ultrafast")
        info = probe(tmp_path / name)
        assert (info.rotation, info.width, info.height) == (90, 48, 64)
        assert len(timing_of(tmp_path / name)) == 4


def test_odd_size_is_kept(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "odd.mp4", n=5, size=(65, 49), pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    copy_through(clip, out)  # default yuv420p cannot code 65x49: the writer keeps the size anyway
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (65, 49, 5)


def test_mkv_output_keeps_frames_and_audio(tmp_path: Path, cfr: Path) -> None:
    out = tmp_path / "out.mkv"
    timing = copy_through(cfr, out, audio_from=cfr)
    result = timing_of(out)
    assert len(result) == len(timing) == 20
    source, copied = audio_packets(cfr), audio_packets(out)
    assert [p[2] for p in copied] == [p[2] for p in source]
    # Matroska cannot store the AAC priming packet's negative time, so the muxer shifts
    # every stream by the same amount: A/V sync and frame spacing are what must survive.
    shift = result[0][1] - timing[0][1]
    assert shift == pytest.approx(float(-source[0][0] * source[0][1]), abs=1e-3)
    assert [t - shift for _, t in result] == pytest.approx([t for _, t in timing], abs=1e-3)
    audio_shift = [float(p[0] * p[1]) - float(q[0] * q[1]) for p, q in zip(copied, source)]
    assert audio_shift == pytest.approx([shift] * len(source), abs=1e-3)


def test_audio_the_container_cannot_hold_is_transcoded_to_aac(tmp_path: Path, cfr: Path) -> None:
    wav = make_audio_only(tmp_path / "voice.wav", "pcm_mulaw")  # MP4 cannot hold mu-law
    out = tmp_path / "out.mp4"
    copy_through(cfr, out, audio_from=wav)
    info = probe(out)
    assert info.audio_codec == "aac" and info.frame_count == 20
    with av.open(str(out)) as container:
        decoded = sum(f.samples for f in container.decode(audio=0))
    assert decoded >= 8000 * 0.9


def test_webm_gets_vp9_in_place_of_the_default_x264_and_its_audio_as_opus(tmp_path: Path, cfr: Path) -> None:
    """WebM holds VP8, VP9 or AV1 and Vorbis or Opus: the default codec becomes libvpx-vp9 for .webm, and AAC audio
    is re-encoded to Opus at a rate Opus takes (48 kHz, from 44.1). A codec the container cannot
    hold is a command-line error before any work."""
    from reenact.encoding import EncodeOptions
    from reenact.errors import OptionError, OutputPathError

    out = tmp_path / "out.webm"
    encode = EncodeOptions().for_output(out)
    assert encode.codec == "libvpx-vp9" and EncodeOptions().for_output(tmp_path / "out.mp4").codec == "libx264"
    voice = make_audio_only(tmp_path / "voice.m4a", "aac", "fltp", rate=44100)
    copy_through(cfr, out, codec=encode.codec, crf=encode.crf, preset=encode.preset, audio_from=voice)
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "vp9"
        sound = container.streams.audio[0]
        assert sound.codec_context.name == "opus" and sound.rate == 48000
        seconds = sum(f.samples for f in container.decode(sound)) / sound.rate
    assert seconds == pytest.approx(1.0, abs=0.05)  # the tone's second, resampled
    assert len(timing_of(out)) == 20  # WebM's header holds no frame count: decoded
    with pytest.raises(OutputPathError, match="cannot hold libx265") as caught:
        EncodeOptions(codec="libx265").for_output(out)
    assert isinstance(caught.value, OptionError)


def test_crf_changes_size_and_codecs_without_crf_work(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "noise.mp4", n=8, size=(96, 64), noise=True, pix_fmt="yuv444p")
    sizes = {}
    for codec, crf in [("libx264", 12), ("libx264", 40), ("mpeg4", 12), ("mpeg4", 40)]:
        out = tmp_path / f"{codec}-{crf}.mp4"
        copy_through(clip, out, codec=codec, crf=crf, preset="ultrafast")
        assert probe(out).codec == ("h264" if codec == "libx264" else "mpeg4")
        sizes[codec, crf] = out.stat().st_size
    assert sizes["libx264", 12] > 1.5 * sizes["libx264", 40]
    assert sizes["mpeg4", 12] > 1.5 * sizes["mpeg4", 40]


def test_unknown_encoder_option_is_reported(tmp_path: Path, cfr: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="no-such-option") as caught:
        VideoWriter(out, probe(cfr), options={"no-such-option": "1"})
    assert_one_line(caught.value, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfr.mp4"]


# --------------------------------------------------------------------------- bad input


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _folder(d: Path) -> Path:
    (d / "clips.mp4").mkdir()
    return d / "clips.mp4"


def _written(name: str, data: bytes) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name

    return build


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda d: d / "nope.mp4", "not found"),
    "folder": (_folder, "folder"),
    "empty": (_written("empty.mp4", b""), "empty"),
    "text": (_written("notes.mp4", b"hello, not a video\n"), "not a video"),
    "audio-only m4a": (lambda d: make_audio_only(d / "voice.m4a", "aac", "fltp"), "no video stream"),
    "audio-only wav": (lambda d: make_audio_only(d / "voice.wav", "pcm_s16le"), "no video stream"),
    "no frames": (lambda d: make_clip(d / "none.avi", n=0, codec="mpeg4"), "no video frames"),
    "moov lost": (lambda d: _truncate(make_clip(d / "cut.mp4", n=30, noise=True)), "truncated"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_line_input_error(tmp_path: Path, case: str) -> None:
    build, expected = BAD_INPUTS[case]
    path = build(tmp_path)
    for action in (probe, lambda p: read_all(p)):
        with pytest.raises(InputError, match=expected) as caught:
            action(path)
        assert_one_line(caught.value, path)


def test_truncated_file_with_moov_kept_fails_while_reading(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "cut.mp4", n=30, noise=True, container_options={"movflags": "faststart"})
    _truncate(clip)
    assert probe(clip).frame_count == 30  # the index survived, the frames did not
    decoded = 0
    with pytest.raises(InputError, match="truncated") as caught, VideoReader(clip) as reader:
        for _ in reader:
            decoded += 1
    assert 0 < decoded < 30
    assert_one_line(caught.value, clip)


def test_unreadable_file(tmp_path: Path, cfr: Path) -> None:
    cfr.chmod(0)
    try:
        if os.access(cfr, os.R_OK):
            pytest.skip("running as root: file permissions do not stop reading")
        with pytest.raises(InputError, match="permission denied") as caught:
            probe(cfr)
        assert_one_line(caught.value, cfr)
    finally:
        cfr.chmod(0o644)


# --------------------------------------------------------------------------- bad output


def test_output_path_checks(tmp_path: Path, cfr: Path) -> None:
    cases = [
        (cfr, "overwrite the input"),
        (tmp_path / "sub" / ".." / "cfr.mp4", "overwrite the input"),
        (tmp_path / "missing" / "out.mp4", "does not exist"),
        (tmp_path / "out.xyz", "unknown container extension"),
        (tmp_path / "out", "unknown container extension"),
        (tmp_path / "out.avi", "cannot write .avi files"),
        (tmp_path, "is a folder"),
    ]
    (tmp_path / "sub").mkdir()
    for output, expected in cases:
        with pytest.raises(OutputError, match=expected) as caught:
            check_output_path(output, cfr)
        assert_one_line(caught.value, Path(output))
        with pytest.raises(OutputError, match=expected):
            VideoWriter(output, probe(cfr), audio_from=cfr)
    hard_link = tmp_path / "link.mp4"
    os.link(cfr, hard_link)
    with pytest.raises(OutputError, match="overwrite the input"):
        check_output_path(hard_link, cfr)
    check_output_path(tmp_path / "fine.mp4", cfr, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfr.mp4", "link.mp4", "sub"]


def test_unwritable_folder(tmp_path: Path, cfr: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: folder permissions do not stop writing")
        with pytest.raises(OutputError, match="not writable") as caught:
            check_output_path(folder / "out.mp4", cfr)
        assert_one_line(caught.value, folder / "out.mp4")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_no_file(tmp_path: Path, cfr: Path, error: type[BaseException]) -> None:
    before = digest(cfr)
    out = tmp_path / "out.mp4"
    with pytest.raises(error), VideoReader(cfr) as reader, VideoWriter(out, reader.info, audio_from=cfr) as writer:
        for frame in reader:
            writer.write(frame)
            if frame.index == 10:
                raise error("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfr.mp4"]
    assert digest(cfr) == before


def test_failed_write_keeps_the_previous_output(tmp_path: Path, cfr: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(RuntimeError), VideoReader(cfr) as reader, VideoWriter(out, reader.info) as writer:
        writer.write(next(reader))
        raise RuntimeError("boom")
    assert out.read_bytes() == b"previous result"
    with pytest.raises(OutputError, match="no frames"), VideoWriter(out, probe(cfr)):
        pass
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfr.mp4", "out.mp4"]


def test_atomic_output_temp_name_and_cleanup(tmp_path: Path) -> None:
    target = tmp_path / "result.mkv"
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mkv" and tmp != target
        tmp.write_bytes(b"done")
        assert not target.exists()
    assert target.read_bytes() == b"done"
    with pytest.raises(ValueError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("stop")
    assert target.read_bytes() == b"done"
    assert [p.name for p in tmp_path.iterdir()] == ["result.mkv"]


def test_writer_rejects_a_frame_of_the_wrong_size(tmp_path: Path, cfr: Path) -> None:
    info: VideoInfo = probe(cfr)
    with pytest.raises(ValueError, match="expected 48x64x3"), VideoWriter(tmp_path / "out.mp4", info) as writer:
        writer.write(Frame(index=0, pts=0, time_base=info.time_base, image=np.zeros((10, 10, 3), np.uint8)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfr.mp4"]


# --------------------------------------------------------------------------- shared real clips


def test_grid_clip_round_trip_copies_audio_bytes(tmp_path: Path, shared_clip: Callable[[str], Path]) -> None:
    clip = shared_clip("grid_s1/bbaf2n.mp4")
    before = digest(clip)
    info = probe(clip)
    assert (info.width, info.height, info.frame_count, info.fps) == (360, 288, 75, 25)
    assert info.audio_codec == "aac"
    out = tmp_path / "grid.mp4"
    timing = copy_through(clip, out, audio_from=clip, preset="ultrafast")
    assert len(timing) == 75
    assert timing_of(out) == timing
    assert audio_packets(out) == audio_packets(clip)
    assert digest(clip) == before


def test_real_variable_frame_rate_clip_keeps_timestamps(tmp_path: Path, shared_clip: Callable[[str], Path]) -> None:
    clip = shared_clip("video-retalking/1.mp4")
    out = tmp_path / "vfr.mp4"
    timing = copy_through(clip, out, audio_from=clip, preset="ultrafast", crf=35)
    pts = [p for p, _ in timing]
    assert len({b - a for a, b in itertools.pairwise(pts)}) > 1  # really variable
    assert timing_of(out) == timing
    assert audio_packets(out) == audio_packets(clip)


def test_the_encoders_yuv_frames_are_ffmpegs_own_within_one_level(shared_data: Path) -> None:
    """The writer converts RGB to yuv420p with OpenCV (ten times faster than swscale at 720p): on a real frame the
    planes are what FFmpeg's swscale makes of it, luma within one level and chroma within three; odd sizes, which
    yuv420p cannot hold, and other formats are left to the encoder's swscale."""
    with VideoReader(shared_data / "train" / "liveportrait" / "d8.mp4") as reader:
        image = next(iter(reader)).image
    ours = encoder_frame(image, "yuv420p")
    theirs = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    assert ours.format.name == "yuv420p" and (ours.width, ours.height) == (image.shape[1], image.shape[0])
    height = image.shape[0]
    difference = ours.to_ndarray().astype(int) - theirs.to_ndarray().astype(int)  # (1.5 height, width): Y, then U, V
    for part, tolerance in ((difference[:height], 1), (difference[height:], 3)):
        assert np.abs(part).max() <= tolerance
        assert abs(float(part.mean())) < 0.1
    assert encoder_frame(image[:-1], "yuv420p").format.name == "rgb24"
    assert encoder_frame(image, "yuv444p").format.name == "rgb24"
