"""Checks of what training takes: optimizers, loss functions, data, keys, output paths, labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from fdl._checks.basic import check_positive_int
from fdl._paths import path_label

# ---------------------------------------------------------------------- training (train, fit, cli)


def check_state_dtype(name: str, dtype: Any, params: Any) -> None:
    """A real state dtype (``mu_dtype=bfloat16``) refused for complex parameters: storing a
    complex moment in it would silently drop the imaginary part (optax does drop it)."""
    if dtype is None or np.issubdtype(dtype, np.complexfloating):
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        leaf_dtype = getattr(leaf, "dtype", None)
        if leaf_dtype is not None and np.issubdtype(leaf_dtype, np.complexfloating):
            raise ValueError(
                f"{name}={np.dtype(dtype).name} is a real dtype, but the parameter at "
                f"{path_label(path)} is {np.dtype(leaf_dtype).name}: its state "
                f"would lose the imaginary part; pass a complex {name} (e.g. complex64) or None "
                "(the parameters' dtype)"
            )


def check_instance(name: str, value: Any, kind: type, spelled: str, caller: str = "") -> Any:
    """Return ``value`` if it is a ``kind``, else a ``TypeError`` showing how to build one
    (prefixed with ``caller``, the public function that was called, when given)."""
    if not isinstance(value, kind):
        prefix = f"{caller}: " if caller else ""
        raise TypeError(f"{prefix}`{name}` must be a {spelled}, got {value!r}")
    return value


def check_optimizer(caller: str, optimizer: Any, name: str = "optimizer") -> Any:
    """Return ``optimizer`` (the argument ``name``) if it has optax's ``(init, update)`` interface."""
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            f"{caller}: `{name}` must have optax's (init, update) interface "
            f"(e.g. fdl.optim.adam(1e-3) or optax.adam(1e-3)), got {optimizer!r}"
        )
    return optimizer


def check_arity(caller: str, name: str, fn: Any, count: int, signature: str, hint: str = "") -> Any:
    """Return ``fn`` if it is callable with ``count`` positional arguments (``signature`` says
    which); a builtin without an inspectable signature is trusted."""
    import inspect

    if not callable(fn):
        raise TypeError(f"{caller}: `{name}` must be callable ({signature}), got {fn!r}")
    try:
        found = inspect.signature(fn)
    except ValueError:
        return fn
    try:
        found.bind(*([None] * count))
    except TypeError:
        label = getattr(fn, "__name__", repr(fn))
        raise TypeError(
            f"{caller}: `{name}` must take {count} arguments, {signature}; got {label!r} with "
            f"signature {found}{hint}"
        ) from None
    return fn


def check_data(data: Any, batch_size: int) -> tuple[Any, ...]:
    """``data`` as a tuple of arrays sharing a leading (example) axis of at least ``batch_size``."""
    if not isinstance(data, (tuple, list)) or not data:
        raise ValueError(
            f"`data` must be a tuple of arrays with the same leading (example) axis, e.g. "
            f"(x_train, y_train), got {type(data).__name__}"
        )
    sizes = [np.shape(a)[0] if np.ndim(a) else None for a in data]
    if sizes[0] is None or any(n != sizes[0] for n in sizes):
        shapes = ", ".join(str(np.shape(a)) for a in data)
        raise ValueError(f"every array of `data` must have the same leading axis, got shapes {shapes}")
    if batch_size > sizes[0]:
        raise ValueError(f"`batch_size` ({batch_size}) must not exceed the number of examples ({sizes[0]})")
    return tuple(data)


def check_duration(steps: Any, epochs: Any) -> None:
    """Exactly one of ``steps`` and ``epochs``, a positive integer."""
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of `steps` and `epochs`, got steps={steps!r}, epochs={epochs!r}")
    check_positive_int("steps" if steps is not None else "epochs", steps if steps is not None else epochs)


def check_prng_key(name: str, key: Any) -> Any:
    """Return ``key`` if it is a JAX array (a typed or legacy PRNG key)."""
    if not isinstance(key, jax.Array):
        raise ValueError(f"`{name}` must be a JAX PRNG key (jax.random.key(seed)), got {key!r}")
    return key


def check_suffix(name: str, path: Any, suffixes: Sequence[str]) -> Any:
    """Return ``path`` if its suffix is one of ``suffixes``."""
    from pathlib import Path

    if Path(path).suffix not in suffixes:
        allowed = " or ".join(suffixes)
        raise ValueError(f"`{name}` {str(path)!r} must end in {allowed}")
    return path


def prepare_output(name: str, path: Any, *, directory: bool = False) -> Any:
    """Make ``path`` ready to be written before any work: create the directories it needs and
    probe that a file can be created there (a real temporary file, so read-only mounts,
    immutable directories and missing permissions all show, for root too). Returns ``path``.

    ``directory=True``: ``path`` is itself a directory (created); else a file, whose parent is.

    Raises:
      ValueError: naming ``name``, the path and the reason: ``path`` (or one of its parents) is
        a file where a directory is needed, ``path`` is a directory where a file is needed, or
        the directory cannot be created or written.
    """
    import os
    import tempfile
    from pathlib import Path

    target = Path(path)
    if not directory and target.is_dir():
        raise ValueError(f"`{name}` {str(path)!r} is a directory; expected the path of a file to write")
    folder = target if directory else target.parent
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"`{name}` {str(path)!r}: {str(parent)!r} is a file, not a directory; choose another path"
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".fdl-write-probe-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(
            f"`{name}` {str(path)!r}: cannot write in {str(folder or os.curdir)!r} ({reason}); "
            "choose a writable path"
        ) from None
    return path


def check_labels(name: str, labels: Any, num_classes: int | None = None, *, where: str = "") -> Any:
    """Return ``labels`` if they are integer class labels in ``[0, num_classes)`` (``[0, inf)``
    when ``num_classes`` is None), checked host-side once. ``where`` says what set the upper
    bound (e.g. "for a model with 10 outputs"). Traced labels (inside ``jit``) have only their
    dtype checked: their values cannot be read.

    Raises:
      ValueError: naming ``name``, the first bad value and its index, and the valid range.
      TypeError: the labels are not integers.
    """
    import jax
    import numpy as np

    dtype = getattr(labels, "dtype", None)
    dtype = np.asarray(labels).dtype if dtype is None else np.dtype(dtype)
    if dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class labels, got dtype {dtype}")
    try:
        array = np.asarray(labels)
    except jax.errors.TracerArrayConversionError:
        return labels
    flat = array.reshape(-1)
    bad = flat < 0 if num_classes is None else (flat < 0) | (flat >= num_classes)
    if flat.size and bad.any():
        index = int(np.argmax(bad))
        at = np.unravel_index(index, array.shape) if array.ndim > 1 else index
        valid = "0 or more" if num_classes is None else f"in [0, {num_classes})"
        raise ValueError(
            f"{name} holds {flat[index]} (at index {at}); class labels must be integers {valid}"
            f"{' ' + where if where else ''}"
        )
    return labels


def check_metric_name(name: str, value: Any) -> str:
    """Return ``value`` if it is a non-empty string (a history key such as ``eval_loss``)."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"`{name}` must be a history key such as 'eval_loss', got {value!r}")
    return value
