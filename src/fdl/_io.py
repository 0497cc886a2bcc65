"""Atomic file writes, shared by checkpoints, training histories, reports and plots (a kernel
module).

:func:`atomic_write` gives one guarantee everywhere: after it returns, ``path`` holds the new
content, durably (the file and its directory entry are ``fsync``-ed); if it raises (a full
disk, an error while serializing, an interrupt), ``path`` still holds what it held before and no
temporary file is left behind. A crash (power loss, ``kill -9``) leaves at worst a hidden
``.<name>.<pid>.<random>.tmp`` next to ``path``, never a half-written file under ``path``'s name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Content = bytes | str | Callable[[BinaryIO], object]


def atomic_write(path: str | os.PathLike, data: Content) -> Path:
    """Write ``data`` to ``path`` atomically and durably; return ``path`` as a :class:`Path`.

    The data go to a temporary file in ``path``'s directory (so the rename stays on one file
    system), which is flushed and ``fsync``-ed, then renamed over ``path`` with
    :func:`os.replace`; the directory is ``fsync``-ed where the platform allows it. On any
    failure the temporary file is deleted and the error propagates.

    Args:
      path: the destination. Its directory must exist.
      data: ``bytes``; a ``str`` (written as UTF-8); or a function that writes the content to
        the open binary file it is given (to stream large content, such as an ``.npz``).

    Returns:
      ``path``.

    Raises:
      TypeError: ``data`` is none of the three.
      OSError: the directory is missing or the write fails (``path`` is then untouched).

    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = atomic_write(pathlib.Path(d) / "notes.txt", "hello")
    ...     print(p.read_text(), sorted(q.name for q in p.parent.iterdir()))
    hello ['notes.txt']
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)) and not callable(data):
        raise TypeError(
            "`data` must be bytes, a str or a function that writes to a binary file, "
            f"got {type(data).__name__}"
        )
    path = Path(path)
    # Created with open(..., "x") rather than mkstemp: the file gets the usual permissions
    # (0o666 less the umask), not mkstemp's 0o600. The pid and random token make it unique.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    file = open(tmp, "xb")
    try:
        with file:
            if callable(data):
                data(file)
            else:
                file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable by ``fsync``-ing the directory (POSIX; a no-op
    where directories cannot be opened, as on Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
