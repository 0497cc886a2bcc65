"""Reading checkpoints: :func:`restore` into the structure of a template, verified, and
:func:`restore_latest_valid`, which skips damaged files."""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fdl._checks import check_step
from fdl.checkpoint._format import (
    FORMAT,
    MANIFEST,
    NAME,
    NATIVE,
    PYTHON,
    SUPPORTED,
    VERSION,
    ZIP_MAGIC,
    check_run_id,
    digest,
    file_name,
    is_key,
    named_leaves,
    read_marker,
    stored_shape_fits,
)
from fdl.checkpoint.errors import CheckpointError, CheckpointWarning
from fdl.checkpoint.writing import all_steps

__all__ = ["restore", "restore_latest_valid"]

PyTree = Any
PathLike = str | os.PathLike[str]


def restore(
    path_or_directory: PathLike, template: PyTree, *, step: int | None = None
) -> tuple[PyTree, dict[str, Any]]:
    """Load a checkpoint into the structure of ``template``: ``(tree, metadata)``.

    ``path_or_directory`` is a checkpoint file, or a directory: then the checkpoint of ``step``
    is loaded, or the highest step if ``step`` is None (of any run: to resume a run, use
    :func:`restore_latest_valid`). The file's checksum is verified first. A newest checkpoint
    pruned by a concurrent writer between the listing and the read is looked up again.

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
    source, tried = Path(path_or_directory), set()
    while True:
        path = _resolve(source, step)
        try:
            manifest, stored = _read(path)
        except FileNotFoundError:
            # The newest checkpoint, pruned by a writer since the listing: a newer one exists.
            if step is not None or path == source or path in tried:
                raise
            tried.add(path)
            continue
        return _rebuild(path, manifest, stored, template), manifest["metadata"]


def restore_latest_valid(
    directory: PathLike, template: PyTree, *, run: str | None = None
) -> tuple[PyTree, dict[str, Any], int]:
    """Restore the newest checkpoint of the directory's run that reads back intact.

    Checkpoints are tried from the highest step down; each one that raises
    :class:`CheckpointError` (truncated, corrupt, failing its checksum) is skipped with a
    :class:`CheckpointWarning` naming it. A template mismatch is *not* skipped: it is the
    caller's error, and older checkpoints would not match either.

    Only the checkpoints of one run count: ``run``, or by default the run named by the
    directory's marker ``run.json`` (:func:`start_run`); checkpoints of other runs (the
    leftovers of an interrupted ``overwrite``) are passed over silently. A directory without a
    marker (checkpoints older than run ids) counts all its checkpoints.

    A writer may save and prune meanwhile (one writer, any number of readers): a checkpoint
    deleted between the listing and the read sends this back to a fresh listing, where a newer
    one is, so the reader gets an intact checkpoint, never a spurious ``FileNotFoundError``.

    Args:
      directory: the checkpoint directory.
      template: a tree with the structure, dtypes and shapes of the saved one (see
        :func:`restore`).
      run: the run whose checkpoints to consider (default: the marker's, else all).

    Returns:
      ``(tree, metadata, step)`` of the checkpoint restored.

    Raises:
      FileNotFoundError: the directory holds no checkpoint, or none of the run.
      CheckpointError: every checkpoint is unreadable (the message lists each and why), or the
        run marker is malformed.
      ValueError: the template does not match the newest readable checkpoint; a malformed ``run``.

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
    run = read_marker(directory) if run is None else check_run_id("run", run)
    failures, others, tried = [], [], set()
    steps = all_steps(directory)
    for _ in range(2):  # a listing that overlapped a writer's replace-then-prune may miss both
        if steps:
            break
        steps = all_steps(directory)
    while steps:
        step = steps.pop()
        if step in tried:
            continue
        tried.add(step)
        path = directory / file_name(step)
        try:
            manifest, stored = _read(path)
        except FileNotFoundError:
            # Pruned by a writer since the listing, so a newer checkpoint exists: list again.
            steps = [s for s in all_steps(directory) if s not in tried]
            continue
        except CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}", CheckpointWarning, stacklevel=2)
            failures.append(str(err))
            continue
        if run is not None and manifest.get("run") != run:
            others.append(step)
            continue
        return _rebuild(path, manifest, stored, template), manifest["metadata"], step
    if failures:
        raise CheckpointError(
            f"no readable checkpoint in {directory}; tried {len(failures)}:\n  " + "\n  ".join(failures)
        )
    if others:
        raise FileNotFoundError(
            f"no checkpoints of run {run!r} in {directory}; its {len(others)} checkpoint(s) "
            f"(steps {sorted(others)}) belong to other runs"
        )
    raise FileNotFoundError(f"no checkpoints (ckpt-XXXXXXXX.npz) in {directory}")


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
        return path / file_name(step)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file or directory at {path}")
    if step is not None:
        raise ValueError(f"`step` selects a checkpoint in a directory, but {path} is a file; got step={step}")
    return path


def _read(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The verified manifest and stored arrays of the checkpoint at ``path``."""
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path} is not an fdl checkpoint: the file is empty")
    if not data.startswith(ZIP_MAGIC):
        raise CheckpointError(f"{path} is not an fdl checkpoint: it is not an .npz (zip) file")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = set(npz.files)
            if MANIFEST not in names:
                found = ", ".join(sorted(names)) or "none"
                raise CheckpointError(
                    f"{path} is not an fdl checkpoint: it has no {MANIFEST!r} entry (entries: {found})"
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
        raise CheckpointError(f"{path} is truncated or corrupt: {type(err).__name__}: {err}") from err
    for entry, array in zip(manifest["leaves"], stored, strict=True):
        if array.dtype.name != entry["stored_dtype"] or list(array.shape) != entry["stored_shape"]:
            raise CheckpointError(
                f"{path} is corrupt: entry {entry['entry']} ({entry['path']}) holds "
                f"{array.dtype.name} {array.shape}, the manifest says {entry['stored_dtype']} "
                f"{tuple(entry['stored_shape'])}"
            )
    recorded, computed = manifest["sha256"], digest(manifest, stored)
    if recorded != computed:
        raise CheckpointError(
            f"{path} is corrupt: SHA-256 checksum mismatch (recorded {recorded}, contents hash to {computed})"
        )
    match = NAME.fullmatch(path.name)
    if match and int(match.group(1)) != manifest["step"]:
        raise CheckpointError(
            f"{path} records step {manifest['step']} but is named for step {int(match.group(1))}"
        )
    return manifest, stored


def _parse_manifest(path: Path, raw: np.ndarray) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path} is corrupt: the manifest is {raw.dtype} {raw.shape}, not uint8 bytes")
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt: the manifest is not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an fdl checkpoint: its manifest has no format {FORMAT!r}")
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
        and isinstance(manifest.get("run", ""), str)
        and isinstance(manifest.get("metadata"), dict)
        and isinstance(manifest.get("sha256"), str)
        and isinstance(leaves, list)
        and all(
            isinstance(entry, dict)
            and all(isinstance(entry.get(k), t) for k, t in fields.items())
            and entry["kind"] in ("array", "key", "python")
            and entry["stored_dtype"] in NATIVE
            and stored_shape_fits(entry)
            and (entry["kind"] != "key" or isinstance(entry.get("impl"), str))
            for entry in leaves
        )
    )
    if not well_formed:
        raise CheckpointError(f"{path} is corrupt: its manifest lacks or mistypes required fields")
    return manifest


def _template_spec(name: str, leaf: Any) -> tuple[str, tuple[int, ...]]:
    """The (dtype label, shape) a template leaf expects from the file."""
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)):
        dtype = str(leaf.dtype) if is_key(leaf.dtype) else np.dtype(leaf.dtype).name
        return dtype, tuple(leaf.shape)
    if isinstance(leaf, (np.ndarray, np.generic)):
        return leaf.dtype.name, leaf.shape
    for kind, label, _ in PYTHON:
        if isinstance(leaf, kind):
            return label, ()
    raise TypeError(
        f"cannot restore into template leaf {name!r} of type {type(leaf).__name__}; supported: "
        f"{SUPPORTED}, jax.ShapeDtypeStruct"
    )


def _rebuild(path: Path, manifest: dict[str, Any], stored: list[np.ndarray], template: PyTree) -> PyTree:
    """Match the file's leaves to the template's by key path and build the restored tree."""
    named, treedef = named_leaves(template, "template")
    in_file = {entry["path"]: (entry, array) for entry, array in zip(manifest["leaves"], stored, strict=True)}
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
        # jax annotates Array; wrap_key_data takes any uint32 array, NumPy too
        return _place(jax.random.wrap_key_data(stored, impl=entry["impl"]), leaf)  # type: ignore[arg-type]
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
