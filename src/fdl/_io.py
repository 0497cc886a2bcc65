"""File writing shared by checkpoints, training histories, reports and plots (a kernel module):
atomic writes, the clean-up after killed writers, and the one strict-JSON spelling of
non-finite numbers.

:func:`atomic_write` gives one guarantee everywhere: after it returns, ``path`` holds the new
content, durably (the file and its directory entry are ``fsync``-ed); if it raises (a full
disk, an error while serializing, an interrupt), ``path`` still holds what it held before and no
temporary file is left behind. A crash (power loss, ``kill -9``) leaves at worst a hidden
``.<name>.<host>.<pid>.<random>.tmp`` next to ``path``, never a half-written file under
``path``'s name; :func:`remove_stale_temporaries` deletes such leftovers once their writer is
gone, and only then.

Non-finite floats (a NaN evaluation metric, an infinite loss) have no strict-JSON spelling:
:func:`encode_non_finite` writes them as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` and
:func:`decode_non_finite` reads them back as floats. Lossless (up to NaN payloads), readable,
and accepted by every JSON parser, including those that refuse the ``NaN`` token.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

Content = bytes | str | Callable[[BinaryIO], object]

# Non-finite floats in strict JSON: the spelling, and the float it stands for.
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

# .<name>.<host>.<pid>.<random>.tmp; the host has no dots, so the split is unambiguous.
_UNKNOWN_HOST = "unknown-host"  # no host name: such files are never removed
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")
# what fdl wrote before temporary names carried the host (``.<name>.<pid>.<random>.tmp``)
_OLD_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def atomic_write(path: str | os.PathLike, data: Content) -> Path:
    """Write ``data`` to ``path`` atomically and durably; return ``path`` as a :class:`Path`.

    The data go to a temporary file ``.<name>.<host>.<pid>.<random>.tmp`` in ``path``'s
    directory (so the rename stays on one file system; the host and process id tell
    :func:`remove_stale_temporaries` whose file it is), which is flushed and ``fsync``-ed, then
    renamed over ``path`` with :func:`os.replace`; the directory is ``fsync``-ed where the
    platform allows it. On any failure the temporary file is deleted and the error propagates.

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
    tmp = path.with_name(f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
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


def remove_stale_temporaries(directory: str | os.PathLike, names: re.Pattern[str]) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write` calls left in ``directory``
    for destinations whose name ``names`` matches in full; return the paths deleted.

    A temporary file is deleted only when it is certainly stale: it was written on this host
    (its name carries the host name, so another machine's files on a shared file system are never
    touched) by a process that no longer exists here (``kill(pid, 0)`` finds no such process).
    Files in the older ``.<name>.<pid>.<random>.tmp`` form (written before names carried the
    host, by single-host fdl) are stale when their process is gone here. The files of live
    writers, of other hosts and of an unknown host are left alone; so is everything on
    platforms without POSIX signals. A writer that dies after this check leaves
    its file for the next call. Processes of other PID namespaces (containers) sharing this host
    name and directory would look dead: give such containers their own host names (the default).

    >>> import pathlib, re, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     mine = pathlib.Path(d) / f".notes.txt.{_host()}.{os.getpid()}.0123abcd.tmp"
    ...     _ = mine.write_bytes(b"")  # a live writer's (this process)
    ...     remove_stale_temporaries(d, re.compile(re.escape("notes.txt"))), mine.exists()
    ([], True)
    """
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    host = _host()
    if host == _UNKNOWN_HOST:
        return []
    removed = []
    with os.scandir(os.fspath(directory)) as entries:
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if not (match and match["host"] == host):
                # the older host-less form: its writers ran fdl on this machine (the form
                # predates multi-host checkpoints), so a pid that is gone here is stale
                match = _OLD_TEMPORARY.fullmatch(entry.name)
            if (
                match
                and names.fullmatch(match["name"])
                and not _alive(int(match["pid"]))
                and entry.is_file(follow_symlinks=False)
            ):
                path = Path(directory) / entry.name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


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


def encode_non_finite(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (a flat dict, e.g. a history row) with each non-finite float spelled as the
    string ``"nan"``, ``"inf"`` or ``"-inf"``, so that it is strict JSON; other values unchanged.

    >>> encode_non_finite({"step": 3, "loss": float("nan"), "eval_loss": float("-inf"), "a": 0.5})
    {'step': 3, 'loss': 'nan', 'eval_loss': '-inf', 'a': 0.5}
    """
    return {name: _spell(value) for name, value in values.items()}


def decode_non_finite(values: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`encode_non_finite`: the strings ``"nan"``, ``"inf"`` and ``"-inf"``
    back as floats; other values unchanged. Meant for dicts whose values are numbers (history
    rows), where those strings are unambiguous.

    >>> decode_non_finite({"step": 3, "loss": "nan", "eval_loss": "-inf", "a": 0.5})
    {'step': 3, 'loss': nan, 'eval_loss': -inf, 'a': 0.5}
    """
    return {
        name: NON_FINITE[value] if isinstance(value, str) and value in NON_FINITE else value
        for name, value in values.items()
    }


def _spell(value: Any) -> Any:
    # numbers.Real: Python and NumPy floats alike (integers are always finite)
    if not isinstance(value, numbers.Real) or isinstance(value, numbers.Integral):
        return value
    number = float(value)
    if math.isfinite(number):
        return value
    return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")


def _host() -> str:
    """This machine's host name as it appears in temporary file names (letters, digits, ``-``)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or _UNKNOWN_HOST


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (POSIX). Unsure means alive."""
    if pid <= 0 or pid == os.getpid():
        return True  # kill(0 or -1, 0) would address process groups; this process is alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True
