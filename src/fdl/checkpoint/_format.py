"""The checkpoint file format, shared by writing and reading (a kernel module): names, the
manifest's constants, the leaves' key paths and encodings, the digest, and the run marker (see
:mod:`fdl.checkpoint` for the format itself)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fdl.checkpoint.errors import CheckpointError
from fdl.nn.parts import ROOT

PyTree = Any

FORMAT = "fdl.checkpoint"
VERSION = 1
MANIFEST = "__fdl_checkpoint__"
NAME = re.compile(r"ckpt-(\d{8,})\.npz")
ZIP_MAGIC = b"PK"
# dtypes that .npy stores and reads back as themselves without pickle.
NATIVE = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
    + ["float16", "float32", "float64", "complex64", "complex128"]
)
# Python scalar leaves: the type, its dtype label, and the NumPy dtype that stores it exactly.
PYTHON = (
    (bool, "python bool", np.bool_),  # before int: bool is a subclass of int
    (int, "python int", np.int64),
    (float, "python float", np.float64),
)
SUPPORTED = (
    "jax/NumPy arrays of bool, integer, float, complex or ml_dtypes (bfloat16, float8, int4) "
    "dtype, typed PRNG keys, Python bool/int/float"
)


# The run marker: the file naming the run a checkpoint directory belongs to.
RUN_MARKER = "run.json"
RUN_FORMAT = "fdl.checkpoint.run"
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The files save writes in a directory (their killed writers' temporary files are cleaned up).
OWN_FILES = re.compile(r"ckpt-\d{8,}\.npz|" + re.escape(RUN_MARKER))


def file_name(step: int) -> str:
    return f"ckpt-{step:08d}.npz"


def new_run_id() -> str:
    return secrets.token_hex(8)


def check_run_id(name: str, value: Any) -> str:
    """``value`` if it is a run id (as :func:`fdl.checkpoint.start_run` returns), else raise."""
    if not isinstance(value, str) or not RUN_ID.fullmatch(value):
        error = ValueError if isinstance(value, str) else TypeError
        raise error(
            f"`{name}` must be a run id from fdl.checkpoint.start_run (1 to 64 letters, digits, "
            f"'-' or '_'), got {value!r}"
        )
    return value


def marker_text(run: str) -> str:
    """The run marker's content: strict JSON naming the run, where and when it started."""
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    marker = {"format": RUN_FORMAT, "run": run, "started": started, "host": socket.gethostname()}
    return json.dumps({**marker, "pid": os.getpid()}, indent=1) + "\n"


def read_marker(directory: Path) -> str | None:
    """The run named by ``directory``'s run marker; ``None`` when there is none."""
    path = directory / RUN_MARKER
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        marker = json.loads(text)
    except json.JSONDecodeError:
        marker = None
    run = marker.get("run") if isinstance(marker, dict) and marker.get("format") == RUN_FORMAT else None
    if not isinstance(run, str) or not RUN_ID.fullmatch(run):
        raise CheckpointError(
            f'{path} is not an fdl run marker: expected JSON with "format": {RUN_FORMAT!r} and a '
            f'"run" id, got {text[:80]!r}; delete it to start a fresh run in {directory}, or to '
            f"resume from the newest checkpoint there"
        )
    return run


def named_leaves(tree: PyTree, argument: str) -> tuple[list[tuple[str, Any]], Any]:
    """The leaves of ``tree`` with their key paths as ``a/0/b`` (refusing duplicate paths), and
    the tree's structure."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    named = [(path_name(path), leaf) for path, leaf in leaves]
    seen: set[str] = set()
    for name, _ in named:
        if name in seen:
            raise ValueError(
                f"two leaves of `{argument}` have the key path {name!r}; paths must be unique "
                f"(e.g. not a key 'a/b' next to a key 'a' holding a key 'b')"
            )
        seen.add(name)
    return named, treedef


def path_name(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/") or ROOT


def is_key(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def bit_view_dtype(dtype: np.dtype) -> np.dtype | None:
    """The unsigned dtype that stores ``dtype``'s bits, for ml_dtypes types; None if unsupported."""
    if dtype.type.__module__.split(".")[0] == "ml_dtypes" and dtype.itemsize in (1, 2, 4, 8):
        return np.dtype(f"<u{dtype.itemsize}")
    return None


def manifest_entry(name: str, entry: dict[str, Any], shape: tuple[int, ...], stored: np.ndarray) -> dict:
    """The manifest's record of one leaf: path, kind, dtype, shape and the stored array's."""
    return {
        "path": name,
        **entry,
        "shape": list(shape),
        "stored_dtype": stored.dtype.name,
        "stored_shape": list(stored.shape),
    }


def little_endian(array: np.ndarray) -> np.ndarray:
    # np.asarray, not np.ascontiguousarray: that one turns 0-d arrays into shape (1,).
    return np.asarray(array, array.dtype.newbyteorder("<"), order="C")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digest(manifest: dict[str, Any], arrays: list[np.ndarray]) -> str:
    """SHA-256 of the manifest (without its digest) followed by every stored array's bytes."""
    hasher = hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "sha256"}))
    for array in arrays:
        # numpy declares ndarray.__buffer__ only for Python >= 3.12
        hasher.update(np.asarray(array, order="C").reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    return hasher.hexdigest()


def stored_shape_fits(entry: dict[str, Any]) -> bool:
    """Whether the stored array's shape is the leaf's (plus the key data axis for keys)."""
    shape, stored = entry["shape"], entry["stored_shape"]
    extra = 1 if entry["kind"] == "key" else 0
    return len(stored) == len(shape) + extra and stored[: len(shape)] == shape
