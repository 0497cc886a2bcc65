"""Writing checkpoints: :func:`save` (atomic, pruned, process 0 writing for all), and the
checkpoints a directory holds."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fdl._checks import check_json_dict, check_keep, check_step
from fdl._io import atomic_write
from fdl.checkpoint._format import (
    FORMAT,
    MANIFEST,
    NAME,
    NATIVE,
    PYTHON,
    SUPPORTED,
    VERSION,
    bit_view_dtype,
    canonical_json,
    digest,
    file_name,
    is_key,
    little_endian,
    manifest_entry,
    named_leaves,
)
from fdl.checkpoint._multiprocess import broadcast_from_process_0, fetch
from fdl.checkpoint.errors import CheckpointError

__all__ = ["all_steps", "latest_step", "save"]

PyTree = Any
PathLike = str | os.PathLike[str]


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
    for i, (name, leaf) in enumerate(named_leaves(tree, "tree")[0]):
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
    manifest["sha256"] = digest(manifest, arrays)
    members = {MANIFEST: np.frombuffer(canonical_json(manifest), np.uint8)}
    members.update((entry["entry"], stored) for entry, stored in zip(entries, arrays, strict=True))

    directory = Path(directory)
    final = directory / file_name(step)
    if jax.process_count() == 1:
        _write_and_prune(final, step, members, keep=keep, overwrite=overwrite, compress=compress)
        return final
    # Several processes: process 0 writes; the broadcast of its outcome is also the barrier that
    # holds the others until the file is in place.
    error: BaseException | None = None
    if jax.process_index() == 0:
        try:
            _write_and_prune(final, step, members, keep=keep, overwrite=overwrite, compress=compress)
        except BaseException as err:  # re-raised below, after telling the other processes
            error = err
    failure = broadcast_from_process_0("" if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if failure:
        raise CheckpointError(
            f"process 0 failed to write the checkpoint of step {step} to {final}: {failure}"
        )
    return final


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
        match = NAME.fullmatch(entry.name)
        if match and entry.name == file_name(int(match.group(1))) and entry.is_file():
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


def _encode_leaf(name: str, leaf: Any) -> tuple[dict[str, Any], np.ndarray]:
    """The manifest entry of one leaf and the array that stores it."""
    if isinstance(leaf, jax.Array) and leaf.is_deleted():
        raise ValueError(
            f"cannot checkpoint leaf {name!r}: its buffer was deleted (donated to a jitted step?); "
            f"save the arrays the step returned"
        )
    if isinstance(leaf, jax.Array) and is_key(leaf.dtype):
        data = little_endian(fetch(jax.random.key_data(leaf)))
        entry = {"kind": "key", "dtype": str(leaf.dtype), "impl": str(jax.random.key_impl(leaf))}
        return manifest_entry(name, entry, leaf.shape, data), data
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        array = fetch(leaf) if isinstance(leaf, jax.Array) else np.asarray(leaf)
        if array.dtype.name in NATIVE:
            stored = little_endian(array)
        elif (view := bit_view_dtype(array.dtype)) is not None:
            stored = np.asarray(array, order="C").view(view)
        else:
            raise TypeError(f"cannot checkpoint leaf {name!r} of dtype {array.dtype}; supported: {SUPPORTED}")
        entry = {"kind": "array", "dtype": array.dtype.name}
        return manifest_entry(name, entry, array.shape, stored), stored
    for kind, label, dtype in PYTHON:
        if isinstance(leaf, kind):
            try:
                stored = np.asarray(leaf, dtype)
            except OverflowError:
                raise ValueError(
                    f"cannot checkpoint leaf {name!r}: the int {leaf} does not fit in int64"
                ) from None
            return manifest_entry(name, {"kind": "python", "dtype": label}, (), stored), stored
    raise TypeError(f"cannot checkpoint leaf {name!r} of type {type(leaf).__name__}; supported: {SUPPORTED}")


def _write_members(file: Any, members: dict[str, np.ndarray], compress: bool) -> None:
    """Serialize the entries into the open binary ``file`` as an .npz archive."""
    # mypy matches **members against the keyword allow_pickle: bool
    (np.savez_compressed if compress else np.savez)(file, **members)  # type: ignore[arg-type]


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
            f"a checkpoint of step {step} already exists at {final}; pass overwrite=True to replace it"
        )
    _write_atomic(final, members, compress)
    if keep is not None:
        for old in all_steps(directory)[:-keep]:
            if old != step:
                (directory / file_name(old)).unlink(missing_ok=True)


def _write_atomic(final: Path, members: dict[str, np.ndarray], compress: bool) -> None:
    """Stream the archive into ``final`` atomically (:func:`fdl._io.atomic_write`: temporary
    file, fsync, rename, fsync of the directory; the temporary file removed on failure)."""
    atomic_write(final, lambda file: _write_members(file, members, compress))
