r"""Checkpoints: save a pytree of training state to one file, atomically, and restore it.

A checkpoint holds any tree of training state (parameters, layer state, optimizer state with
its NamedTuples and int32 counts, PRNG keys, the step, the data position) and a small JSON
metadata dict. The file is a plain NumPy ``.npz`` (a zip of ``.npy`` arrays) that loads with
``numpy.load(path, allow_pickle=False)``; nothing is ever pickled or unpickled::

    directory/ckpt-00001000.npz
        __fdl_checkpoint__   uint8 (n,)     the manifest: UTF-8 JSON, see below
        leaf_0, leaf_1, ...  one array per leaf of the tree, in the tree's flattening order

The manifest records the format and its version, the step, the caller's metadata, and for
every leaf its key path (``params/0/w``, ``opt_state/1/0/mu/0/w``), kind (``array``, ``key``
or ``python``), dtype and shape, and the SHA-256 digest

.. math::

    d = \operatorname{SHA256}\big(J \,\|\, b_0 \,\|\, b_1 \,\|\, \cdots \,\|\, b_{n-1}\big)

where :math:`J` is the canonical JSON of the manifest without ``sha256`` (sorted keys, no
spaces, ASCII) and :math:`b_i` the raw little-endian bytes of stored array ``leaf_i``. So the
digest covers every array's bytes, dtype and shape, and the metadata; :func:`restore` recomputes
it (on top of zip's own CRC-32 per entry).

Leaves that NumPy cannot store natively are stored as bit views and rebuilt on load:

* ml_dtypes floats (``bfloat16``, ``float8_*``, ``int4`` ...) as unsigned integers of the same
  width (``np.savez`` would write ``bfloat16`` as raw ``V2`` bytes and lose the dtype);
* typed PRNG keys (``jax.random.key``) as their ``uint32`` key data, with the implementation's
  name; legacy ``jax.random.PRNGKey`` keys are ordinary ``uint32`` arrays;
* Python ``bool``/``int``/``float`` leaves (the step, the epoch) as 0-d ``bool``/``int64``/
  ``float64`` arrays, restored as Python scalars of the same type.

Writes are atomic (temporary file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of
the directory), so a crash leaves either the old set of checkpoints or the new one, never a
half-written file under a checkpoint's name; older checkpoints are kept (``keep``), and
:func:`restore_latest_valid` resumes from the newest one that reads back intact.

**Several processes** (``jax.distributed``): every process calls :func:`save` with the same
tree; arrays split over several processes are gathered (a collective), process 0 alone writes
the file and prunes old ones, and every process returns only once the file is in place, or
raises if process 0 failed. :func:`restore` reads the file on every process (a shared file system,
or a copy on each host) and places each leaf with the template leaf's sharding, which may span
all processes. A checkpoint does not record how many processes wrote it: it restores in any
number of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fdl._checks import check_json_dict, check_keep, check_step
from fdl._io import atomic_write

__all__ = [
    "CheckpointError",
    "CheckpointWarning",
    "all_steps",
    "latest_step",
    "restore",
    "restore_latest_valid",
    "save",
]

PyTree = Any
PathLike = str | os.PathLike[str]

FORMAT = "fdl.checkpoint"
VERSION = 1
MANIFEST = "__fdl_checkpoint__"
_NAME = re.compile(r"ckpt-(\d{8,})\.npz")
_ZIP_MAGIC = b"PK"
# dtypes that .npy stores and reads back as themselves without pickle.
_NATIVE = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
    + ["float16", "float32", "float64", "complex64", "complex128"]
)
# Python scalar leaves: the type, its dtype label, and the NumPy dtype that stores it exactly.
_PYTHON = (
    (bool, "python bool", np.bool_),  # before int: bool is a subclass of int
    (int, "python int", np.int64),
    (float, "python float", np.float64),
)
_SUPPORTED = (
    "jax/NumPy arrays of bool, integer, float, complex or ml_dtypes (bfloat16, float8, int4) "
    "dtype, typed PRNG keys, Python bool/int/float"
)


class CheckpointError(ValueError):
    """A file that cannot be restored: truncated, corrupt, not a checkpoint, or failing its digest.

    The message names the file and what is wrong. A template that does not match an intact file
    raises a plain ``ValueError`` instead, so :func:`restore_latest_valid` never skips past it.
    """


class CheckpointWarning(UserWarning):
    """Issued by :func:`restore_latest_valid` for each unreadable checkpoint it skips."""


# --------------------------------------------------------------------------------- public API


def save(
    directory: PathLike,
    step: int,
    tree: PyTree,
    *,
    metadata: Mapping[str, Any] | None = None,
    keep: int | None = 3,
    overwrite: bool = False,
    compress: bool = False,
) -> Path:
    """Write ``tree`` and ``metadata`` to ``directory/ckpt-{step:08d}.npz``, atomically.

    The file is first written to a hidden temporary file in ``directory``, flushed and
    ``fsync``-ed, then renamed over the final name with ``os.replace`` and the directory is
    ``fsync``-ed. If anything fails on the way (an unsupported leaf, a full disk, an interrupt),
    no file appears under the final name and the temporary file is removed. Then all but the
    ``keep`` highest-step checkpoints are deleted; only files named exactly like this function
    names them are ever deleted, and never the one just written.

    Under ``jax.distributed`` (several processes) every process calls ``save`` with the same
    arguments. Leaves split over several processes are gathered from all of them; process 0
    alone writes and prunes, the others write nothing; every process returns once the file is
    in place (process 0 broadcasts its outcome, which is also the barrier).

    Args:
      directory: the checkpoint directory, created (with parents) if missing.
      step: the training step, an integer >= 0; it names the file.
      tree: the state to save: any pytree whose leaves are jax or NumPy arrays (ml_dtypes
        included), typed PRNG keys, or Python bool/int/float. Dicts, tuples, lists, NamedTuples
        and ``None`` are structure; the structure itself comes back from the template given to
        :func:`restore`.
      metadata: a JSON-serializable dict (strict JSON: no NaN or infinity), returned by
        :func:`restore` as JSON reads it back (tuples become lists, keys strings).
      keep: how many checkpoints to keep, counting the new one; ``None`` keeps all.
      overwrite: replace an existing checkpoint of the same step instead of refusing.
      compress: deflate the arrays (``np.savez_compressed``): smaller, slower.

    Returns:
      The path of the checkpoint written.

    Raises:
      ValueError: a negative ``step``, ``keep`` < 1, metadata that is not strict JSON, or two
        leaves with the same key path.
      TypeError: a non-integer ``step`` or ``keep``, a non-dict ``metadata``, an unsupported leaf.
      FileExistsError: the step's checkpoint exists and ``overwrite`` is False.
      CheckpointError: on a process other than 0, when process 0 failed to write (the message
        names the file and process 0's error, which process 0 raises itself).

    >>> import tempfile, jax.numpy as jnp
    >>> from fdl import checkpoint
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = checkpoint.save(d, 100, {"w": jnp.ones(3), "step": 100}, metadata={"lr": 0.1})
    ...     print(path.name, checkpoint.all_steps(d))
    ckpt-00000100.npz [100]
    """
    step = check_step("step", step)
    if keep is not None:
        keep = check_keep("keep", keep)
    metadata = check_json_dict("metadata", metadata)
    entries, arrays = [], []
    for i, (name, leaf) in enumerate(_named_leaves(tree, "tree")[0]):
        entry, stored = _encode_leaf(name, leaf)
        entries.append({**entry, "entry": f"leaf_{i}"})
        arrays.append(stored)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "metadata": metadata,
        "leaves": entries,
    }
    manifest["sha256"] = _digest(manifest, arrays)
    members = {MANIFEST: np.frombuffer(_canonical_json(manifest), np.uint8)}
    members.update((entry["entry"], stored) for entry, stored in zip(entries, arrays, strict=True))

    directory = Path(directory)
    final = directory / _file_name(step)
    if jax.process_count() == 1:
        _write_and_prune(final, step, members, keep=keep, overwrite=overwrite, compress=compress)
        return final
    # Several processes: process 0 writes; the broadcast of its outcome is also the barrier that
    # holds the others until the file is in place.
    error: BaseException | None = None
    if jax.process_index() == 0:
        try:
            _write_and_prune(
                final, step, members, keep=keep, overwrite=overwrite, compress=compress
            )
        except BaseException as err:  # re-raised below, after telling the other processes
            error = err
    failure = _broadcast_from_process_0(
        "" if error is None else f"{type(error).__name__}: {error}"
    )
    if error is not None:
        raise error
    if failure:
        raise CheckpointError(
            f"process 0 failed to write the checkpoint of step {step} to {final}: {failure}"
        )
    return final


def restore(
    path_or_directory: PathLike, template: PyTree, *, step: int | None = None
) -> tuple[PyTree, dict[str, Any]]:
    """Load a checkpoint into the structure of ``template``: ``(tree, metadata)``.

    ``path_or_directory`` is a checkpoint file, or a directory: then the checkpoint of ``step``
    is loaded, or the highest step if ``step`` is None. The file's checksum is verified first.

    The structure (dicts, tuples, NamedTuples, ``None``) comes from ``template``, typically the
    freshly initialized state (``model.init``, ``optimizer.init``) or its ``jax.eval_shape``;
    the values come from the file, matched leaf by leaf by key path. Each leaf comes back as the
    template's leaf is: a jax array (placed with the template leaf's sharding), a typed PRNG key
    of the stored implementation, a NumPy array, or a Python scalar, always in the template's
    dtype and bit for bit as saved.

    Args:
      path_or_directory: a checkpoint file or a checkpoint directory.
      template: a tree with the structure, dtypes and shapes of the saved one.
      step: with a directory, the step to load (default: the highest).

    Returns:
      ``(tree, metadata)``: the restored tree and the metadata dict given to :func:`save`.

    Raises:
      CheckpointError: the file is truncated, corrupt, fails its checksum, or is not a checkpoint.
      ValueError: the template does not match the file: one error listing every path missing in
        the file, unexpected in the file, or with a different shape or dtype; or ``step`` given
        with a file path, or negative.
      FileNotFoundError: no such file or directory, no checkpoint in the directory, or none of
        ``step``.

    >>> import tempfile, jax, jax.numpy as jnp
    >>> from fdl import checkpoint
    >>> state = {"w": jnp.arange(3.0), "key": jax.random.key(0), "step": 7}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = checkpoint.save(d, 7, state, metadata={"note": "demo"})
    ...     template = {"w": jnp.zeros(3), "key": jax.random.key(1), "step": 0}
    ...     tree, metadata = checkpoint.restore(d, template)
    >>> tree["w"].tolist(), tree["step"], metadata
    ([0.0, 1.0, 2.0], 7, {'note': 'demo'})
    """
    path = _resolve(Path(path_or_directory), step)
    manifest, stored = _read(path)
    return _rebuild(path, manifest, stored, template), manifest["metadata"]


def restore_latest_valid(
    directory: PathLike, template: PyTree
) -> tuple[PyTree, dict[str, Any], int]:
    """Restore the newest checkpoint in ``directory`` that reads back intact.

    Checkpoints are tried from the highest step down; each one that raises
    :class:`CheckpointError` (truncated, corrupt, failing its checksum) is skipped with a
    :class:`CheckpointWarning` naming it. A template mismatch is *not* skipped: it is the
    caller's error, and older checkpoints would not match either.

    Returns:
      ``(tree, metadata, step)`` of the checkpoint restored.

    Raises:
      FileNotFoundError: the directory holds no checkpoint.
      CheckpointError: every checkpoint is unreadable (the message lists each and why).
      ValueError: the template does not match the newest readable checkpoint.

    >>> import tempfile, warnings, jax.numpy as jnp
    >>> from pathlib import Path
    >>> from fdl import checkpoint
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = checkpoint.save(d, 1, {"w": jnp.ones(2)})
    ...     _ = checkpoint.save(d, 2, {"w": jnp.full(2, 2.0)})
    ...     _ = (Path(d) / "ckpt-00000002.npz").write_bytes(b"PK")  # a damaged file
    ...     with warnings.catch_warnings(record=True):
    ...         tree, _, step = checkpoint.restore_latest_valid(d, {"w": jnp.zeros(2)})
    >>> step, tree["w"].tolist()
    (1, [1.0, 1.0])
    """
    directory = Path(directory)
    steps = all_steps(directory)
    if not steps:
        raise FileNotFoundError(f"no checkpoints (ckpt-XXXXXXXX.npz) in {directory}")
    failures = []
    for step in reversed(steps):
        path = directory / _file_name(step)
        try:
            manifest, stored = _read(path)
        except CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}", CheckpointWarning, stacklevel=2)
            failures.append(str(err))
            continue
        return _rebuild(path, manifest, stored, template), manifest["metadata"], step
    raise CheckpointError(
        f"no readable checkpoint in {directory}; tried {len(failures)}:\n  " + "\n  ".join(failures)
    )


def all_steps(directory: PathLike) -> list[int]:
    """The steps of the checkpoints in ``directory``, ascending (``[]`` if it does not exist).

    Only files named ``ckpt-{step:08d}.npz`` count; temporary files and anything else are ignored.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from fdl.checkpoint import all_steps
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "ckpt-00000020.npz").write_bytes(b"")
    ...     _ = (Path(d) / "notes.txt").write_bytes(b"")
    ...     all_steps(d), all_steps(Path(d) / "missing")
    ([20], [])
    """
    directory = Path(directory)
    if not directory.exists():
        return []
    steps = []
    for entry in directory.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match and entry.name == _file_name(int(match.group(1))) and entry.is_file():
            steps.append(int(match.group(1)))
    return sorted(steps)


def latest_step(directory: PathLike) -> int | None:
    """The highest checkpoint step in ``directory``, or ``None`` if there is none.

    >>> import tempfile
    >>> from fdl.checkpoint import latest_step
    >>> with tempfile.TemporaryDirectory() as d:
    ...     print(latest_step(d))
    None
    """
    steps = all_steps(directory)
    return steps[-1] if steps else None


# ---------------------------------------------------------------------------------- validation


def _named_leaves(tree: PyTree, argument: str) -> tuple[list[tuple[str, Any]], Any]:
    """The leaves of ``tree`` with their key paths as ``a/0/b`` (refusing duplicate paths), and
    the tree's structure."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    named = [(_path_name(path), leaf) for path, leaf in leaves]
    seen: set[str] = set()
    for name, _ in named:
        if name in seen:
            raise ValueError(
                f"two leaves of `{argument}` have the key path {name!r}; paths must be unique "
                f"(e.g. not a key 'a/b' next to a key 'a' holding a key 'b')"
            )
        seen.add(name)
    return named, treedef


def _path_name(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/") or "<root>"


# ------------------------------------------------------------------------------------ encoding


def _is_key(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _bit_view_dtype(dtype: np.dtype) -> np.dtype | None:
    """The unsigned dtype that stores ``dtype``'s bits, for ml_dtypes types; None if unsupported."""
    if dtype.type.__module__.split(".")[0] == "ml_dtypes" and dtype.itemsize in (1, 2, 4, 8):
        return np.dtype(f"<u{dtype.itemsize}")
    return None


def _encode_leaf(name: str, leaf: Any) -> tuple[dict[str, Any], np.ndarray]:
    """The manifest entry of one leaf and the array that stores it."""
    if isinstance(leaf, jax.Array) and leaf.is_deleted():
        raise ValueError(
            f"cannot checkpoint leaf {name!r}: its buffer was deleted (donated to a jitted step?); "
            f"save the arrays the step returned"
        )
    if isinstance(leaf, jax.Array) and _is_key(leaf.dtype):
        data = _little_endian(_fetch(jax.random.key_data(leaf)))
        entry = {"kind": "key", "dtype": str(leaf.dtype), "impl": str(jax.random.key_impl(leaf))}
        return _entry(name, entry, leaf.shape, data), data
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        array = _fetch(leaf) if isinstance(leaf, jax.Array) else np.asarray(leaf)
        if array.dtype.name in _NATIVE:
            stored = _little_endian(array)
        elif (view := _bit_view_dtype(array.dtype)) is not None:
            stored = np.asarray(array, order="C").view(view)
        else:
            raise TypeError(
                f"cannot checkpoint leaf {name!r} of dtype {array.dtype}; supported: {_SUPPORTED}"
            )
        entry = {"kind": "array", "dtype": array.dtype.name}
        return _entry(name, entry, array.shape, stored), stored
    for kind, label, dtype in _PYTHON:
        if isinstance(leaf, kind):
            try:
                stored = np.asarray(leaf, dtype)
            except OverflowError:
                raise ValueError(
                    f"cannot checkpoint leaf {name!r}: the int {leaf} does not fit in int64"
                ) from None
            return _entry(name, {"kind": "python", "dtype": label}, (), stored), stored
    raise TypeError(
        f"cannot checkpoint leaf {name!r} of type {type(leaf).__name__}; supported: {_SUPPORTED}"
    )


def _entry(name: str, entry: dict[str, Any], shape: tuple[int, ...], stored: np.ndarray) -> dict:
    return {
        "path": name,
        **entry,
        "shape": list(shape),
        "stored_dtype": stored.dtype.name,
        "stored_shape": list(stored.shape),
    }


def _little_endian(array: np.ndarray) -> np.ndarray:
    # np.asarray, not np.ascontiguousarray: that one turns 0-d arrays into shape (1,).
    return np.asarray(array, array.dtype.newbyteorder("<"), order="C")


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _digest(manifest: dict[str, Any], arrays: list[np.ndarray]) -> str:
    """SHA-256 of the manifest (without its digest) followed by every stored array's bytes."""
    hasher = hashlib.sha256(_canonical_json({k: v for k, v in manifest.items() if k != "sha256"}))
    for array in arrays:
        hasher.update(np.asarray(array, order="C").reshape(-1).view(np.uint8))
    return hasher.hexdigest()


# ------------------------------------------------------------------------------------- writing


def _file_name(step: int) -> str:
    return f"ckpt-{step:08d}.npz"


def _write_members(file: Any, members: dict[str, np.ndarray], compress: bool) -> None:
    """Serialize the entries into the open binary ``file`` as an .npz archive."""
    (np.savez_compressed if compress else np.savez)(file, **members)


def _write_and_prune(
    final: Path,
    step: int,
    members: dict[str, np.ndarray],
    *,
    keep: int | None,
    overwrite: bool,
    compress: bool,
) -> None:
    """Write the checkpoint file ``final`` atomically, then delete all but the ``keep`` newest."""
    directory = final.parent
    directory.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(
            f"a checkpoint of step {step} already exists at {final}; "
            f"pass overwrite=True to replace it"
        )
    _write_atomic(final, members, compress)
    if keep is not None:
        for old in all_steps(directory)[:-keep]:
            if old != step:
                (directory / _file_name(old)).unlink(missing_ok=True)


_MESSAGE_BYTES = 1024


def _broadcast_from_process_0(message: str) -> str:
    """Process 0's ``message`` on every process (at most 1 KiB of it), through a collective:
    no process returns before process 0 has called this too."""
    from jax.experimental import multihost_utils

    raw = message.encode("utf-8", "replace")[:_MESSAGE_BYTES].ljust(_MESSAGE_BYTES, b"\0")
    received = multihost_utils.broadcast_one_to_all(np.frombuffer(raw, np.uint8))
    return np.asarray(received, np.uint8).tobytes().rstrip(b"\0").decode("utf-8", "replace")


def _fetch(array: jax.Array) -> np.ndarray:
    """The host value of ``array``. One split over several processes is gathered from all of
    them: a collective, so every process must save the same tree."""
    if array.is_fully_addressable or array.is_fully_replicated:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def _write_atomic(final: Path, members: dict[str, np.ndarray], compress: bool) -> None:
    """Stream the archive into ``final`` atomically (:func:`fdl._io.atomic_write`: temporary
    file, fsync, rename, fsync of the directory; the temporary file removed on failure)."""
    atomic_write(final, lambda file: _write_members(file, members, compress))


# ------------------------------------------------------------------------------------- reading


def _resolve(path: Path, step: int | None) -> Path:
    """The checkpoint file that ``restore(path, step=step)`` reads."""
    if step is not None:
        step = check_step("step", step)
    if path.is_dir():
        steps = all_steps(path)
        if not steps:
            raise FileNotFoundError(f"no checkpoints (ckpt-XXXXXXXX.npz) in {path}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(f"no checkpoint of step {step} in {path}; steps found: {steps}")
        return path / _file_name(step)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file or directory at {path}")
    if step is not None:
        raise ValueError(
            f"`step` selects a checkpoint in a directory, but {path} is a file; got step={step}"
        )
    return path


def _read(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The verified manifest and stored arrays of the checkpoint at ``path``."""
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path} is not an fdl checkpoint: the file is empty")
    if not data.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"{path} is not an fdl checkpoint: it is not an .npz (zip) file")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = set(npz.files)
            if MANIFEST not in names:
                found = ", ".join(sorted(names)) or "none"
                raise CheckpointError(
                    f"{path} is not an fdl checkpoint: it has no {MANIFEST!r} entry "
                    f"(entries: {found})"
                )
            manifest = _parse_manifest(path, npz[MANIFEST])
            expected = {MANIFEST} | {entry["entry"] for entry in manifest["leaves"]}
            if names != expected:
                raise CheckpointError(
                    f"{path} is corrupt: entries missing {sorted(expected - names)}, "
                    f"unexpected {sorted(names - expected)}"
                )
            stored = [npz[entry["entry"]] for entry in manifest["leaves"]]
    except CheckpointError:
        raise
    except Exception as err:  # damage surfaces in zipfile, zlib, struct or numpy's header parser
        raise CheckpointError(
            f"{path} is truncated or corrupt: {type(err).__name__}: {err}"
        ) from err
    for entry, array in zip(manifest["leaves"], stored, strict=True):
        if array.dtype.name != entry["stored_dtype"] or list(array.shape) != entry["stored_shape"]:
            raise CheckpointError(
                f"{path} is corrupt: entry {entry['entry']} ({entry['path']}) holds "
                f"{array.dtype.name} {array.shape}, the manifest says {entry['stored_dtype']} "
                f"{tuple(entry['stored_shape'])}"
            )
    recorded, computed = manifest["sha256"], _digest(manifest, stored)
    if recorded != computed:
        raise CheckpointError(
            f"{path} is corrupt: SHA-256 checksum mismatch (recorded {recorded}, contents hash to "
            f"{computed})"
        )
    match = _NAME.fullmatch(path.name)
    if match and int(match.group(1)) != manifest["step"]:
        raise CheckpointError(
            f"{path} records step {manifest['step']} but is named for step {int(match.group(1))}"
        )
    return manifest, stored


def _stored_shape_fits(entry: dict[str, Any]) -> bool:
    """Whether the stored array's shape is the leaf's (plus the key data axis for keys)."""
    shape, stored = entry["shape"], entry["stored_shape"]
    extra = 1 if entry["kind"] == "key" else 0
    return len(stored) == len(shape) + extra and stored[: len(shape)] == shape


def _parse_manifest(path: Path, raw: np.ndarray) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(
            f"{path} is corrupt: the manifest is {raw.dtype} {raw.shape}, not uint8 bytes"
        )
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt: the manifest is not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an fdl checkpoint: its manifest has no format {FORMAT!r}"
        )
    if manifest.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {manifest.get('version')!r}; this fdl reads "
            f"version {VERSION}"
        )
    fields = {"path": str, "entry": str, "kind": str, "dtype": str, "shape": list}
    fields.update(stored_dtype=str, stored_shape=list)
    leaves = manifest.get("leaves")
    well_formed = (
        isinstance(manifest.get("step"), int)
        and isinstance(manifest.get("metadata"), dict)
        and isinstance(manifest.get("sha256"), str)
        and isinstance(leaves, list)
        and all(
            isinstance(entry, dict)
            and all(isinstance(entry.get(k), t) for k, t in fields.items())
            and entry["kind"] in ("array", "key", "python")
            and entry["stored_dtype"] in _NATIVE
            and _stored_shape_fits(entry)
            and (entry["kind"] != "key" or isinstance(entry.get("impl"), str))
            for entry in leaves
        )
    )
    if not well_formed:
        raise CheckpointError(f"{path} is corrupt: its manifest lacks or mistypes required fields")
    return manifest


# ---------------------------------------------------------------------------------- rebuilding


def _template_spec(name: str, leaf: Any) -> tuple[str, tuple[int, ...]]:
    """The (dtype label, shape) a template leaf expects from the file."""
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)):
        dtype = str(leaf.dtype) if _is_key(leaf.dtype) else np.dtype(leaf.dtype).name
        return dtype, tuple(leaf.shape)
    if isinstance(leaf, (np.ndarray, np.generic)):
        return leaf.dtype.name, leaf.shape
    for kind, label, _ in _PYTHON:
        if isinstance(leaf, kind):
            return label, ()
    raise TypeError(
        f"cannot restore into template leaf {name!r} of type {type(leaf).__name__}; supported: "
        f"{_SUPPORTED}, jax.ShapeDtypeStruct"
    )


def _rebuild(
    path: Path, manifest: dict[str, Any], stored: list[np.ndarray], template: PyTree
) -> PyTree:
    """Match the file's leaves to the template's by key path and build the restored tree."""
    named, treedef = _named_leaves(template, "template")
    in_file = {
        entry["path"]: (entry, array)
        for entry, array in zip(manifest["leaves"], stored, strict=True)
    }
    problems = []
    for name, leaf in named:
        dtype, shape = _template_spec(name, leaf)
        if name not in in_file:
            problems.append(f"{name}: missing in the file (template: {dtype} {shape})")
            continue
        entry = in_file[name][0]
        if tuple(entry["shape"]) != shape:
            file_shape = tuple(entry["shape"])
            problems.append(f"{name}: shape mismatch: file {file_shape}, template {shape}")
        if entry["dtype"] != dtype:
            problems.append(f"{name}: dtype mismatch: file {entry['dtype']}, template {dtype}")
    template_names = {name for name, _ in named}
    for name, (entry, _) in in_file.items():
        if name not in template_names:
            problems.append(
                f"{name}: unexpected in the file (file: {entry['dtype']} {tuple(entry['shape'])})"
            )
    if problems:
        raise ValueError(
            f"checkpoint {path} does not match the template; {len(problems)} mismatched "
            f"path(s):\n  " + "\n  ".join(problems)
        )
    values = [_decode(leaf, *in_file[name]) for name, leaf in named]
    return jax.tree_util.tree_unflatten(treedef, values)


def _decode(leaf: Any, entry: dict[str, Any], stored: np.ndarray) -> Any:
    """One restored leaf, of the same kind as the template's ``leaf`` (already matched)."""
    if entry["kind"] == "python":
        return type(leaf)(stored.item())
    if entry["kind"] == "key":
        return _place(jax.random.wrap_key_data(stored, impl=entry["impl"]), leaf)
    value = stored if entry["stored_dtype"] == entry["dtype"] else stored.view(leaf.dtype)
    if isinstance(leaf, np.generic):
        return value[()]
    if isinstance(leaf, np.ndarray):
        return value
    return _place(value, leaf)


def _place(value: Any, leaf: Any) -> jax.Array:
    """``value`` on the template leaf's devices, with its sharding when it has one."""
    sharding = getattr(leaf, "sharding", None)
    if isinstance(leaf, jax.Array) and leaf.is_deleted():
        sharding = None  # a donated template still tells shapes and dtypes, not placement
    return jax.device_put(value, sharding)
