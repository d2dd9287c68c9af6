"""What the studio's controls mean: AU slider groups and labels, and the edit or transfer that a set of control
values asks for. Plain Python (no Gradio), so the page, the benchmark and the tests build targets the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reenact.api import GeneratorOptions
from reenact.editing import AUEdit, ExpressionTarget, TransferTarget
from reenact.errors import OptionError
from reenact.face.aus import AU_CAVEATS, AU_DESCRIPTIONS, AU_NAMES
from reenact.face.regions import AU_REGIONS
from reenact.model.presets import PRESETS

# The slider groups, by the face region each AU moves first (reenact.face.regions).
REGIONS: dict[str, tuple[str, ...]] = {
    title: tuple(au for au in AU_NAMES if AU_REGIONS[au][0] in parts)
    for title, parts in (("Brows", ("brows",)), ("Eyes", ("eyes",)), ("Cheeks and nose", ("cheeks", "nose")),
                         ("Mouth", ("mouth",)))
}
NO_PRESET = "none"
PRESET_CHOICES: tuple[str, ...] = (NO_PRESET, *PRESETS)
ADD, SET = "add to the face's own", "set to this value"
ADD_RANGE, SET_RANGE = (-5.0, 5.0), (0.0, 5.0)
MOVED = 0.05  # a slider this far from where it started is an edit


def au_label(au: str) -> str:
    """'AU12 lip corner puller (smile)': how a slider names its AU."""
    return f"{au} {AU_DESCRIPTIONS[au]}"


def au_info(au: str) -> str | None:
    """The slider's note, where an edit of the AU does something its FACS name does not say."""
    caveat = AU_CAVEATS.get(au)
    if caveat is None:
        return None
    short = caveat.rsplit(", so ", 1)[-1]  # what the edit does, without the why (`reenact edit` prints it all)
    return short[0].upper() + short[1:]


@dataclass(frozen=True)
class EditControls:
    """The Edit tab's values: one per AU slider (in AU_NAMES order), the mode, a preset and the time range."""

    values: tuple[float, ...]
    mode: str = ADD
    baseline: tuple[float, ...] | None = None  # set mode: where each slider started (the frame's own readings)
    preset: str = NO_PRESET
    strength: float = 1.0
    start: float | None = None
    end: float | None = None
    ramp: float = 0.3

    def target(self) -> ExpressionTarget:
        """The ExpressionTarget these values ask for; OptionError for a time range that ends before it starts."""
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise OptionError(f"the edit ends ({self.end} s) before it starts ({self.start} s)")
        if self.ramp < 0:
            raise OptionError(f"the ramp is a length in seconds, not {self.ramp}")
        if self.preset != NO_PRESET and self.preset not in PRESETS:
            raise OptionError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if not 0.0 <= self.strength <= 2.0:
            raise OptionError(f"preset strength must be between 0 and 2, not {self.strength}")
        edits = []
        for i, (au, value) in enumerate(zip(AU_NAMES, self.values)):
            if self.mode == SET:
                start = self.baseline[i] if self.baseline is not None else None
                if start is not None and abs(value - start) < MOVED:
                    continue
                edits.append(AUEdit(au, float(np.clip(value, 0.0, 5.0)), False))
            elif abs(value) >= MOVED:
                edits.append(AUEdit(au, float(value), True))
        preset = None if self.preset == NO_PRESET else self.preset
        return ExpressionTarget(tuple(edits), preset, self.strength, self.start, self.end, self.ramp)

    def is_empty(self) -> bool:
        target = self.target()
        return not target.edits and target.preset is None

    def command(self, input: str = "INPUT", output: str = "OUTPUT") -> str:
        """The `reenact edit` command line that renders the same edit."""
        target = self.target()
        parts = ["reenact edit", input, "-o", output]
        for edit in target.edits:
            value = f"{edit.value:+.1f}" if edit.relative else f"{edit.value:.1f}"
            parts.append(f"--au {edit.au}={value}")
        if target.preset is not None:
            parts.append(f"--preset {target.preset}" + ("" if target.strength == 1.0 else f":{target.strength:g}"))
        if target.start is not None:
            parts.append(f"--start {target.start:g}")
        if target.end is not None:
            parts.append(f"--end {target.end:g}")
        return " ".join(parts)


@dataclass(frozen=True)
class TransferControls:
    """The Transfer tab's values."""

    aus: tuple[str, ...] = AU_NAMES
    scale: float = 1.0
    relative: bool = True
    motion: str = "landmarks"
    follow_pose: bool = False

    def check(self) -> None:
        if not self.aus:
            raise OptionError("no AU chosen to transfer: tick at least one")
        if self.motion == "landmarks" and not self.relative:
            raise OptionError("the studio previews a transfer frame by frame, and an absolute one by landmarks needs "
                              "the source's whole clip first: choose the 'aus' motion here, or run reenact transfer "
                              "--mode absolute")

    def command(self, source: str = "SOURCE", driving: str = "DRIVING", output: str = "OUTPUT") -> str:
        """The `reenact transfer` command line that renders the same transfer."""
        parts = ["reenact transfer", source, driving, "-o", output]
        if not self.relative:
            parts.append("--mode absolute")
        if self.motion != "landmarks":
            parts.append(f"--motion {self.motion}")
        if self.scale != 1.0:
            parts.append(f"--au-scale {self.scale:g}")
        if set(self.aus) != set(AU_NAMES):
            parts.append(f"--aus {','.join(self.aus)}")
        if self.follow_pose:
            parts.append("--pose")
        return " ".join(parts)

    def editor_options(self, driving) -> tuple[TransferTarget, dict]:
        """The transfer's target and the GeneratorEditor's other arguments for a driving track, as
        ``reenact.api.transfer_expression`` builds them."""
        from reenact.api import retargeted_motion

        self.check()
        target = TransferTarget(driving, self.relative, self.scale, self.aus)
        if self.motion == "landmarks":
            return target, {"asked": False,
                            "landmark_moves": retargeted_motion(driving, self.aus, self.scale, self.follow_pose)}
        return target, {"asked": False, "head_turn": driving.turn if self.follow_pose else None}


def generator_options(model: str, texture_strength: float | None, memory: bool = True) -> GeneratorOptions:
    return GeneratorOptions(model=model or None, texture_strength=texture_strength, memory=memory)


def parse_aus(labels: Sequence[str]) -> tuple[str, ...]:
    """The AU names of checkbox labels made by ``au_label``."""
    return tuple(label.split()[0] for label in labels)
