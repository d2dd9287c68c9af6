"""Writing files so that a reader never sees half of one: the one place outputs are put in place."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from reenact.errors import OutputError

StrPath = str | os.PathLike[str]


@contextmanager
def atomic_output(path: StrPath) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only on success.

    The temporary name keeps the extension last so muxers pick the right format.
    On any exception (KeyboardInterrupt included) the temporary file is deleted and
    `path` is left as it was.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.tmp-{secrets.token_hex(4)}{final.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"{final}: nothing was written")
        try:
            os.replace(tmp, final)
        except OSError as e:
            raise OutputError(f"{final}: cannot move the finished file into place ({e.strerror})") from e
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
