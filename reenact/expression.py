"""What an edit asks for: AU edits, an expression preset, a time range. Checked when made, with the messages the CLI
prints, and light to import (no torch), so the CLI checks its arguments before loading the model."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from reenact.errors import AUError, OptionError
from reenact.face.aus import AU_NAMES, parse_au_name
from reenact.model.presets import PRESETS, check_preset, check_strength

if TYPE_CHECKING:
    from reenact.video import VideoInfo

_EDIT = re.compile(r"^\s*([A-Za-z]*\d+)\s*=\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*$")


@dataclass(frozen=True)
class AUEdit:
    """One ``--au`` option: set an AU to a value, or add to it (``relative``). The AU's name is normalised ('au12',
    '12' -> 'AU12'); an unknown AU or a set value outside 0-5 raises AUError."""

    au: str
    value: float
    relative: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "au", parse_au_name(self.au))
        if not self.relative and not 0.0 <= self.value <= 5.0:
            raise AUError(f"AU intensities are 0-5, not {self.value:g} for {self.au}")


def parse_au_edit(text: str) -> AUEdit:
    """'AU12=2.5' sets, 'AU12=+1.5' / 'AU12=-1' adds; AUError with the accepted forms otherwise."""
    match = _EDIT.match(text)
    if not match:
        raise AUError(f"--au takes AU12=2.5 (set) or AU12=+1.5 / AU12=-1 (add), not {text!r}")
    name, sign, number = match.groups()
    value = float(number)
    if sign:
        return AUEdit(name, value if sign == "+" else -value, True)
    return AUEdit(name, value, False)


@dataclass(frozen=True)
class TimeRange:
    """A time range of a video that a job changes (``--start``, ``--end``), faded in over the ``ramp`` seconds before
    ``start`` and out over those after ``end``; None: from the clip's start, to its end. Raises an OptionError for a
    range that cannot work: a negative time, a start after the end."""

    start: float | None = None
    end: float | None = None
    ramp: float = 0.3

    def __post_init__(self) -> None:
        for name in ("start", "end", "ramp"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise OptionError(f"--{name} takes seconds, 0 or more, not {value:g}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise OptionError(f"--start {self.start:g} is not before --end {self.end:g}: no time is left to edit")

    @property
    def whole(self) -> bool:
        """Whether the range is the whole clip."""
        return self.start is None and self.end is None

    def check_fits(self, info: VideoInfo) -> None:
        """OptionError where the range cannot apply to the input: a still image has no time, and a range that
        starts at or after the clip's end would change nothing."""
        if self.whole:
            return
        if info.is_image:
            raise OptionError(f"--start/--end choose a time range of a video; {info.path} is a still image")
        if self.start is not None and info.duration is not None and self.start >= info.duration:
            raise OptionError(f"--start {self.start:g} is past the end of {info.path} ({info.duration:.1f} s long): "
                              f"nothing would be edited")

    def weight(self, t: float) -> float:
        """How much of the change applies at time t: 0 outside [start, end], ramping linearly at the ends."""
        w = 1.0
        if self.start is not None:
            w = min(w, np.clip((t - self.start) / self.ramp + 1.0, 0.0, 1.0) if self.ramp > 0 else float(t >= self.start))
        if self.end is not None:
            w = min(w, np.clip((self.end - t) / self.ramp + 1.0, 0.0, 1.0) if self.ramp > 0 else float(t <= self.end))
        return float(w)


@dataclass(frozen=True)
class ExpressionTarget:
    """Target AUs as a function of the source's AUs and time. ``edits`` may be given as ``AUEdit``s or as text
    ('AU12=+1.5'); the preset's name is normalised. Raises an OptionError (AUError, PresetError) for a value that
    cannot work: an unknown AU or preset, a strength outside 0-2, a start after the end."""

    edits: tuple[AUEdit, ...] = ()
    preset: str | None = None
    strength: float = 1.0
    start: float | None = None
    end: float | None = None
    ramp: float = 0.3  # seconds to fade the edit in and out at start and end

    def __post_init__(self) -> None:
        edits = tuple(parse_au_edit(e) if isinstance(e, str) else e for e in self.edits)
        for edit in edits:
            if not isinstance(edit, AUEdit):
                raise AUError(f"an AU edit is an AUEdit or text such as 'AU12=+1.5', not {edit!r}")
        object.__setattr__(self, "edits", edits)
        if self.preset is not None:
            object.__setattr__(self, "preset", check_preset(self.preset))
        check_strength(self.strength)
        self.time_range  # an OptionError for a range that cannot work

    @cached_property  # weighed every frame
    def time_range(self) -> TimeRange:
        return TimeRange(self.start, self.end, self.ramp)

    def check_fits(self, info: VideoInfo) -> None:
        """OptionError where the time range cannot apply to the input (``TimeRange.check_fits``)."""
        self.time_range.check_fits(info)

    def weight(self, t: float) -> float:
        """How much of the edit applies at time t (``TimeRange.weight``)."""
        return self.time_range.weight(t)

    def __call__(self, source: np.ndarray, t: float) -> np.ndarray:
        goal = source.astype(np.float32).copy()
        if self.preset is not None:
            for name, value in PRESETS[self.preset].items():
                i = AU_NAMES.index(name)
                # The AUs an emotion raises are raised to at least its level: a face already showing more keeps
                # its own (a laugh made happy is not made smaller, a wide mouth made surprised not closed). The
                # AUs it sets to 0 contradict it and are taken away.
                change = value - source[i] if value == 0 else max(value - source[i], 0.0)
                goal[i] = source[i] + self.strength * change
        for edit in self.edits:
            i = AU_NAMES.index(edit.au)
            goal[i] = goal[i] + edit.value if edit.relative else edit.value
        goal = np.clip(goal, 0.0, 5.0)
        return source + self.weight(t) * (goal - source)
