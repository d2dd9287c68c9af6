"""Video encoding settings (codec, crf, preset, with ffmpeg's names and meanings), checked when made: a codec this
FFmpeg does not have, a crf outside the encoder's range or a preset it does not know is an EncoderError before any
work, never an encoder's complaint halfway through or a setting quietly dropped."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path

from reenact.errors import EncoderError, OutputPathError

# x264's and x265's speed presets, fastest first (both take the same names).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
ENCODER_PRESETS: dict[str, tuple[str, ...]] = {"libx264": X264_PRESETS, "libx265": X264_PRESETS}
# crf ranges where they are not x264's 0-51 (codecs without a crf get a fixed quantiser from the 0-51 scale).
_CRF_RANGES: dict[str, tuple[int, int]] = {"libvpx": (0, 63), "libvpx-vp9": (0, 63), "libaom-av1": (0, 63),
                                           "libsvtav1": (0, 63)}
_CRF_RANGE = (0, 51)
# The defaults: x264 veryfast at crf 16 (FaceFusion's default preset is veryfast too). Against medium at crf 18,
# ffmpeg's own preset and reenact's default before: 0.3-0.5 dB less PSNR against the source (42-43 dB: no visible
# difference), files 15% larger, and 0.37-0.45 of the encoder's CPU time, which at 720p was half of what an edit
# cost on 2 cores (measured on three 720x1280 clips and a GRID clip; docs/faq.md, Outputs).
DEFAULT_CRF = 16
DEFAULT_PRESET = "veryfast"
DEFAULT_CODEC = "libx264"
# The video containers by extension, and the codec each gets in place of the default where it cannot hold x264:
# WebM holds VP8, VP9 and AV1 only (VP9 is FFmpeg's own choice for .webm).
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
_IN_PLACE_OF_DEFAULT = {".webm": "libvpx-vp9"}


def check_encoding(codec: str, crf: int, preset: str) -> str:
    """The encoder's own name for ``codec`` ('h264' -> 'libx264') if it can encode video with this crf and preset;
    EncoderError says what is wrong otherwise. Looks the encoder up without opening it: no frame is decoded."""
    import av  # here: the CLI reads this module's defaults to build --help, which needs no FFmpeg

    try:
        found = av.codec.Codec(codec, "w")
    except ValueError:  # av's UnknownCodecError
        raise EncoderError(f"unknown video codec {codec!r}: this FFmpeg has no encoder of that name (e.g. libx264, "
                           f"libx265, libvpx-vp9; `ffmpeg -encoders` lists them)") from None
    if found.type != "video":
        raise EncoderError(f"{codec!r} is an {found.type} codec, not a video one (e.g. libx264, libx265, libvpx-vp9)")
    name = found.name
    low, high = _CRF_RANGES.get(name, _CRF_RANGE)
    if isinstance(crf, bool) or not isinstance(crf, int) or not low <= crf <= high:
        raise EncoderError(f"crf must be a whole number from {low} to {high} for {name} (lower is better), not {crf!r}")
    presets = ENCODER_PRESETS.get(name)
    if presets is not None and preset not in presets:
        raise EncoderError(f"unknown encoder preset {preset!r} for {name}; choose from {', '.join(presets)}")
    return name


@dataclass(frozen=True)
class EncodeOptions:
    """Video encoding, with ffmpeg's names and meanings; checked when made (EncoderError). ``preset``: the
    encoder's speed preset (x264/x265: ultrafast ... placebo); codecs without presets leave it unused."""

    codec: str = DEFAULT_CODEC
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET

    def __post_init__(self) -> None:
        check_encoding(self.codec, self.crf, self.preset)

    def for_output(self, output: str | os.PathLike[str]) -> EncodeOptions:
        """These options for a video written to ``output``: the default codec becomes one its container holds
        (libvpx-vp9 for .webm), and a codec the container cannot hold is an OutputPathError before any work."""
        import av

        suffix = Path(output).suffix.lower()
        codec = _IN_PLACE_OF_DEFAULT.get(suffix, self.codec) if self.codec == DEFAULT_CODEC else self.codec
        container = _CONTAINERS.get(suffix)
        if container is not None:
            with av.open(io.BytesIO(), "w", format=container) as probe:
                try:
                    probe.add_stream(codec)
                except ValueError:
                    raise OutputPathError(f"{output}: a {suffix} file cannot hold {codec} video; choose another "
                                          f"--codec, or another extension") from None
        return self if codec == self.codec else replace(self, codec=check_encoding(codec, self.crf, self.preset))
