"""Errors a user can act on, and the warning for what they should know. The API raises these; the CLI prints the
same message on one line, ``reenact: error: ...``, and exits with status 2 for an ``OptionError`` (the command line
cannot work as typed) and 1 for any other (a file, the machine or the run let it down)."""

from __future__ import annotations


class ReenactError(Exception):
    """Base class: anything reenact reports to the user as a one-line message."""


class OptionError(ReenactError, ValueError):
    """An option's value is malformed or out of range, or options contradict each other or the input (an edit that
    starts after the clip ends). The CLI's exit status 2."""


class AUError(OptionError):
    """An unknown Action Unit, or an AU edit that is not ``AU12=2.5`` / ``AU12=+1.5``."""


class PresetError(OptionError):
    """An unknown expression preset, or a strength that is not a number from 0 to 2."""


class EncoderError(OptionError):
    """A video codec, crf or encoder preset that the encoder does not take."""


class InputError(ReenactError):
    """The input file is missing, unreadable, not a video, empty or truncated."""


class OutputError(ReenactError):
    """The output path cannot be written (same as the input, unwritable folder, a video to an image file, ...)."""


class OutputPathError(OutputError, OptionError):
    """The output path as typed cannot work whatever the machine: an extension no writer takes, the input itself, a
    folder, a video to an image file. The CLI's exit status 2, as for an option."""


class NoFaceError(ReenactError):
    """No face was found anywhere in the input."""


class ModelFileError(ReenactError):
    """A model file is missing, damaged, not the kind of file it should be, or cannot be downloaded."""


class DeviceError(ReenactError):
    """The device asked for is not on this machine (``cuda`` without a CUDA GPU)."""


class ReenactWarning(UserWarning):
    """Something the user should know that does not stop the job (the CLI prints ``reenact: warning: ...``)."""
