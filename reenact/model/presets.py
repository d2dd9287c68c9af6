"""Expression presets: prototypical AU patterns of the basic emotions (after EMFACS), on the 0-5 scale."""

from __future__ import annotations

from reenact.errors import PresetError
from reenact.face.aus import AU_NAMES

# Each preset raises its prototype's AUs to at least their level (``ExpressionTarget``: a face showing more keeps its
# own) and sets to 0 the AUs that contradict it, so that it reads as that emotion on a face that shows another one:
# a smile under sad, angry, disgusted or fearful (on the README's smiling astronaut, sad, disgusted and fearful kept
# her smile), a smile under surprised too (her toothy smile with raised brows still read as happy; its cheeks and
# squint go with it, against surprise's wide eyes), a frown under happy or surprised, raised brows under angry. AUs
# of neither kind, speech's above all (lips part, jaw drop), keep the face's own values: happy does not part the lips
# (at 1.0 it held a talking GRID speaker's lips apart in every frame), so a closed mouth smiles closed and a talking
# one goes on. Angry leaves out EMFACS's lip tightener (AU23): reenact reads AU23 from MediaPipe's press, pucker,
# funnel and roll shapes, which agree with OpenFace's AU23 not at all on held-out people (r -0.04), so its motion is
# the pucker those shapes make in speech, and at 2.5 it drew a smiling or talking mouth into a small ring with teeth
# in it.
PRESETS: dict[str, dict[str, float]] = {
    "happy": {"AU04": 0.0, "AU06": 2.5, "AU12": 3.0, "AU15": 0.0},
    "sad": {"AU01": 2.5, "AU04": 2.0, "AU12": 0.0, "AU15": 2.5, "AU17": 1.0},
    "surprised": {"AU01": 3.0, "AU02": 3.0, "AU04": 0.0, "AU05": 2.5, "AU06": 0.0, "AU12": 0.0, "AU25": 2.5,
                  "AU26": 3.0},
    "angry": {"AU01": 0.0, "AU02": 0.0, "AU04": 3.0, "AU05": 1.5, "AU07": 2.5, "AU12": 0.0},
    "disgusted": {"AU09": 2.5, "AU10": 2.5, "AU12": 0.0, "AU15": 1.5, "AU17": 1.0},
    "fearful": {"AU01": 2.5, "AU02": 2.0, "AU04": 1.5, "AU05": 3.0, "AU12": 0.0, "AU20": 2.5, "AU25": 2.0, "AU26": 1.5},
    "neutral": {name: 0.0 for name in AU_NAMES},
}


def check_preset(name: str) -> str:
    """The preset's name as PRESETS has it ('Happy ' -> 'happy'); PresetError names the presets."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise PresetError(f"unknown preset {name.strip()!r}; choose from {', '.join(PRESETS)}")
    return key


def check_strength(value: float) -> float:
    """A preset's strength: a number from 0 to 2 (PresetError otherwise)."""
    if not 0.0 <= value <= 2.0:  # NaN fails too
        raise PresetError(f"preset strength must be a number from 0 to 2, not {value:g}")
    return value


def parse_preset(text: str) -> tuple[str, float]:
    """'happy' or 'happy:0.6' -> (name, strength); PresetError names the presets or says what a strength is."""
    name, _, strength = text.partition(":")
    name = check_preset(name)
    if not strength:
        return name, 1.0
    try:
        value = float(strength)
    except ValueError:
        raise PresetError(f"preset strength must be a number from 0 to 2, not {strength!r} (in {text!r})") from None
    return name, check_strength(value)
