"""A real unwritable directory for tests of output paths, for root too.

As root, permission bits do not stop writes, so the directory is made immutable with
``chattr +i`` (ext2/3/4, xfs, btrfs); as another user ``chmod 0o555`` is enough. Where neither
holds (``chattr`` missing or unsupported by the filesystem), the test is skipped with the
reason, never silently passed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def unwritable_dir(parent: Path) -> Iterator[Path]:
    """A directory under ``parent`` in which no file can be created; restored on exit."""
    path = parent / "read-only"
    path.mkdir()
    root = os.geteuid() == 0
    if root:
        chattr = shutil.which("chattr")
        made = chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0
        if not made:
            pytest.skip("running as root and `chattr +i` is unavailable or unsupported on this filesystem")
    else:
        path.chmod(0o555)
    try:
        with contextlib.suppress(OSError):  # prove it: the probe must fail
            (path / "probe").write_text("x")
            pytest.fail(f"could not make {path} unwritable")
        yield path
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o755)
