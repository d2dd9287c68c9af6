"""Expression presets: prototypical AU patterns of the basic emotions (after EMFACS), on the 0-5 scale."""

from __future__ import annotations

from reenact.face.aus import AU_NAMES

PRESETS: dict[str, dict[str, float]] = {
    "happy": {"AU06": 2.5, "AU12": 3.0, "AU25": 1.0},
    "sad": {"AU01": 2.5, "AU04": 2.0, "AU15": 2.5, "AU17": 1.0},
    "surprised": {"AU01": 3.0, "AU02": 3.0, "AU05": 2.5, "AU25": 2.5, "AU26": 3.0},
    "angry": {"AU04": 3.0, "AU05": 1.5, "AU07": 2.5, "AU23": 2.5},
    "disgusted": {"AU09": 2.5, "AU10": 2.5, "AU15": 1.5, "AU17": 1.0},
    "fearful": {"AU01": 2.5, "AU02": 2.0, "AU04": 1.5, "AU05": 3.0, "AU20": 2.5, "AU25": 2.0, "AU26": 1.5},
    "neutral": {name: 0.0 for name in AU_NAMES},
}


def parse_preset(text: str) -> tuple[str, float]:
    """'happy' or 'happy:0.6' -> (name, strength); ValueError names the presets."""
    name, _, strength = text.partition(":")
    name = name.strip().lower()
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    value = float(strength) if strength else 1.0
    if not 0.0 <= value <= 2.0:
        raise ValueError(f"preset strength must be between 0 and 2, not {value}")
    return name, value
