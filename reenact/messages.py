"""How the command line reports trouble. Every error is one line on stderr, ``reenact: error: MESSAGE``, and nothing
is left at the output:

- exit status 2: the command line cannot work as typed (an unknown or missing option, a malformed value or one out
  of range, options that contradict each other or the input, an output path that cannot work: ``OutputPathError``);
  the line ends with ``(see reenact CMD --help)``;
- exit status 1: the command was fine, but a file, the machine or the run let it down (an input that is missing or
  unreadable, no face, a broken model file, no GPU).

Warnings, for what the user should know that does not stop the job, are one line each: ``reenact: warning: ...``.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from reenact.errors import OptionError, ReenactWarning

USAGE_STATUS = 2
FAILURE_STATUS = 1


class CommandLineError(OptionError):
    """argparse's complaint about a command line, and the command whose help to point to."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a CommandLineError (one line, said once) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(_said_once(message), self.prog)


def _said_once(message: str) -> str:
    """argparse's 'argument --crop-size: MESSAGE' without the option's name twice when the message names it."""
    found = re.match(r"argument (\S+): (.*)", message, re.S)
    if not found:
        return message
    name, said = found.groups()
    return said if any(said.startswith(flag) for flag in name.split("/")) else f"{name}: {said}"


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def report_error(error: BaseException, command: str) -> int:
    """Print ``error`` as the one line; return the exit status."""
    if isinstance(error, OptionError):
        print(f"reenact: error: {one_line(error)} (see {command} --help)", file=sys.stderr)
        return USAGE_STATUS
    print(f"reenact: error: {one_line(error)}", file=sys.stderr)
    return FAILURE_STATUS


@contextmanager
def warnings_on_one_line() -> Iterator[None]:
    """Show each ReenactWarning as ``reenact: warning: ...`` (every time: each is about this run); other warnings
    as Python shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", ReenactWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 (warnings' own)
            if issubclass(category, ReenactWarning):
                print(f"reenact: warning: {one_line(message)}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield
