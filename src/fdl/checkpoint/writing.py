"""Writing checkpoints: :func:`save` (atomic, pruned, process 0 writing for all), and the
checkpoints a directory holds."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fdl._checks import check_json_dict, check_keep, check_step
from fdl._io import atomic_write, remove_stale_temporaries
from fdl.checkpoint._format import (
    FORMAT,
    MANIFEST,
    NAME,
    NATIVE,
    OWN_FILES,
    PYTHON,
    RUN_MARKER,
    SUPPORTED,
    VERSION,
    bit_view_dtype,
    canonical_json,
    check_run_id,
    digest,
    file_name,
    is_key,
    little_endian,
    manifest_entry,
    marker_text,
    named_leaves,
    read_marker,
)
from fdl.checkpoint._multiprocess import fetch, on_process_0

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
    run: str | None = None,
) -> Path:
    """Write ``tree`` and ``metadata`` to ``directory/ckpt-{step:08d}.npz``, atomically.

    The file is first written to a hidden temporary file in ``directory``, flushed and
    ``fsync``-ed, then renamed over the final name with ``os.replace`` and the directory is
    ``fsync``-ed. If anything fails on the way (an unsupported leaf, a full disk, an interrupt),
    no file appears under the final name and the temporary file is removed. Then all but the
    ``keep`` highest-step checkpoints are deleted; only files named exactly like this function
    names them are ever deleted, and never the one just written. Before writing, the temporary
    files of earlier writers on this host that were killed mid-write are deleted (never a live
    writer's, nor another host's: :func:`fdl._io.remove_stale_temporaries`).

    With ``run`` (an id from :func:`start_run`), the checkpoint records the run it belongs to,
    the directory's run marker ``run.json`` must name that run (it is written after the
    checkpoint when the directory has none, e.g. for a run resumed from checkpoints older than
    run ids), and ``keep`` deletes other runs' checkpoints (and unreadable ones) before this
    run's, whatever their steps.

    One process writes to a directory at a time; any number may read it meanwhile (see
    :mod:`fdl.checkpoint`).

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
      metadata: a JSON-serializable dict (strict JSON: no NaN or infinity; spell non-finite
        numbers as ``fdl.fit`` does for its history, the strings ``"nan"``, ``"inf"``,
        ``"-inf"``), returned by :func:`restore` as JSON reads it back (tuples become lists,
        keys strings).
      keep: how many checkpoints to keep, counting the new one; ``None`` keeps all.
      overwrite: replace an existing checkpoint of the same step instead of refusing.
      compress: deflate the arrays (``np.savez_compressed``): smaller, slower.
      run: the run this checkpoint belongs to, from :func:`start_run`; ``None`` records none.

    Returns:
      The path of the checkpoint written.

    Raises:
      ValueError: a negative ``step``, ``keep`` < 1, metadata that is not strict JSON, two
        leaves with the same key path, a malformed ``run``, or a ``run`` that the directory's
        marker does not name (another run took the directory over).
      TypeError: a non-integer ``step`` or ``keep``, a non-dict ``metadata``, an unsupported
        leaf, a non-string ``run``.
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
    if run is not None:
        run = check_run_id("run", run)
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
        **({} if run is None else {"run": run}),
    }
    manifest["sha256"] = digest(manifest, arrays)
    members = {MANIFEST: np.frombuffer(canonical_json(manifest), np.uint8)}
    members.update((entry["entry"], stored) for entry, stored in zip(entries, arrays, strict=True))

    final = Path(directory) / file_name(step)

    def write() -> str:
        _write_and_prune(final, step, members, keep=keep, overwrite=overwrite, compress=compress, run=run)
        return ""

    # Several processes: process 0 writes; the broadcast of its outcome is also the barrier that
    # holds the others until the file is in place.
    on_process_0(write, f"write the checkpoint of step {step} to {final}")
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
    # os.scandir: is_file() comes from the listing itself (no stat where the file system reports
    # entry types), so a checkpoint pruned by a concurrent writer after the listing still counts
    # here; the reader that then finds it gone lists again.
    with os.scandir(directory) as entries:
        for entry in entries:
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
    run: str | None,
) -> None:
    """Write the checkpoint file ``final`` atomically, then delete all but the ``keep`` newest."""
    directory = final.parent
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory, OWN_FILES)
    marker = None if run is None else read_marker(directory)
    if marker is not None and marker != run:
        raise ValueError(
            f"`run` {run!r} no longer owns the checkpoint directory {directory}: its {RUN_MARKER} "
            f"names run {marker!r} (a fresh run took the directory over); stop this run, or "
            f"save it to another directory"
        )
    if final.exists() and not overwrite:
        raise FileExistsError(
            f"a checkpoint of step {step} already exists at {final}; pass overwrite=True to replace it"
        )
    _write_atomic(final, members, compress)
    if run is not None and marker is None:
        # After the checkpoint: a run resumed from unmarked checkpoints stays resumable from
        # them until it has one of its own.
        atomic_write(directory / RUN_MARKER, marker_text(run))
    if keep is not None:
        steps = all_steps(directory)
        if run is not None:  # other runs' files (and unreadable ones) go first
            runs = {s: _run_of(directory / file_name(s)) for s in steps}
            steps = [s for s in steps if runs[s] != run] + [s for s in steps if runs[s] == run]
        for old in steps[:-keep]:
            if old != step:
                (directory / file_name(old)).unlink(missing_ok=True)


def _run_of(path: Path) -> str | None:
    """The run recorded in a checkpoint's manifest (read alone, unverified); ``None`` when it
    records none or cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            run = json.loads(npz[MANIFEST].tobytes().decode("utf-8")).get("run")
    except Exception:  # damaged files count as no run's, like files without a run id
        return None
    return run if isinstance(run, str) else None


def _write_atomic(final: Path, members: dict[str, np.ndarray], compress: bool) -> None:
    """Stream the archive into ``final`` atomically (:func:`fdl._io.atomic_write`: temporary
    file, fsync, rename, fsync of the directory; the temporary file removed on failure)."""
    atomic_write(final, lambda file: _write_members(file, members, compress))
