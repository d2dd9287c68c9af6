"""reenact: edit facial expressions in video."""

from __future__ import annotations

__version__ = "0.1.0"
