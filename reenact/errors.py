"""Errors a user can act on. The CLI prints their message on one line and exits non-zero."""

from __future__ import annotations


class ReenactError(Exception):
    """Base class: anything reenact reports to the user as a one-line message."""


class InputError(ReenactError):
    """The input file is missing, unreadable, not a video, empty or truncated."""


class OutputError(ReenactError):
    """The output path cannot be written (same as the input, unwritable folder, ...)."""


class NoFaceError(ReenactError):
    """No face was found anywhere in the input."""


class ModelFileError(ReenactError):
    """A model file is missing, cannot be downloaded or fails its checksum."""
