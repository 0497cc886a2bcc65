"""Validation of static configuration, shared by every module.

Checks run in factories and at trace time on static Python values, never inside traced code, and
never with ``assert``. Each message names the argument, shows the value received and says what is
accepted.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import math
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import jax
import numpy as np

REDUCTIONS = ("mean", "sum", "none")


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return value


def check_rate(name: str, value: Any) -> float:
    """Return ``value`` if it is a probability in [0, 1), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {valid}, got {value!r}")
    return value


def check_shape(name: str, value: Any) -> tuple[int, ...]:
    """Return ``value`` as a tuple of non-negative ints, else raise naming ``name``."""
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if shape is None or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"`{name}` must be a tuple of non-negative ints, got {value!r}")
    return shape


def check_negative_axis(name: str, value: Any) -> int:
    """Return ``value`` if it is a negative int (an axis counted from the end), else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value >= 0:
        raise ValueError(
            f"`{name}` must be a negative int (counted from the end, so it means the same with "
            f"any number of leading batch axes), got {value!r}"
        )
    return value


def check_non_negative_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, else raise a ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {value!r}")
    return value


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
    ):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    return float(value)


def check_non_negative_finite(name: str, value: Any, *, none_means: str | None = None) -> Any:
    """Return ``value`` as a float if it is a finite number >= 0, else raise naming ``name``.

    With ``none_means`` (what ``None`` stands for), ``None`` is accepted and returned as is.
    """
    if value is None and none_means is not None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value < 0
    ):
        accepted = "a non-negative finite number"
        if none_means is not None:
            accepted += f" or None ({none_means})"
        raise ValueError(f"`{name}` must be {accepted}, got {value!r}")
    return float(value)


def check_fraction(name: str, value: Any, why: str = "") -> float:
    """Return ``value`` as a float if it is a (non-traced) number in [0, 1], else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]{f' ({why})' if why else ''}, got {value!r}")
    return float(value)


def check_open_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a real number strictly inside (0, 1), else raise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not 0.0 < float(value) < 1.0
    ):
        raise ValueError(f"`{name}` must be in (0, 1), got {value!r}")
    return float(value)


def check_seed(name: str, value: Any) -> int:
    """Return ``value`` if it is a non-negative int (what ``numpy.random.default_rng`` accepts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}")
    return int(value)


def check_step(name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a non-negative integer (``operator.index``).

    A non-integer raises ``TypeError``, a negative one ``ValueError``.
    """
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be a non-negative integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a non-negative integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}")
    return number


def check_keep(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive int (how many checkpoints to keep)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be a positive integer or None (keep all), got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer or None (keep all), got {value!r}")
    return value


def check_json_dict(name: str, value: Any) -> dict[str, Any]:
    """``value`` (a mapping or ``None``) as a strict-JSON dict, round-tripped; else raise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"`{name}` must be a dict (or None), got {type(value).__name__}")
    try:
        text = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"`{name}` must be strict JSON (str keys; dict, list, str, int, float, bool, None; "
            f"no NaN or infinity): {err}"
        ) from None
    return json.loads(text)


# -------------------------------------------------------------------- optimizer hyperparameters
# These accept a traced value (a hyperparameter swept under ``jit`` or ``vmap``) unchecked, as
# optax accepts it.


def is_traced(value: Any) -> bool:
    """Whether ``value`` is an array whose value is unknown while tracing (an argument of a
    ``jit``-compiled or ``vmap``-ped function), so that it cannot be checked in Python."""
    try:
        float(value)
    except jax.errors.ConcretizationTypeError:
        return True
    except (TypeError, ValueError):
        return False
    return False


def as_number(value: Any) -> float | None:
    """``value`` as a Python float if it is a concrete real scalar, else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        return None


def check_non_negative(name: str, value: Any, also: str = "") -> Any:
    """Accept a number >= 0 (eps, weight decay, clipping bounds) or a traced value; raise
    naming ``name`` otherwise (``also``: what else is accepted)."""
    check_real(name, value, also)
    if is_traced(value):
        return value
    number = as_number(value)
    if number is None or not number >= 0.0:
        accepted = "a non-negative number" + (f" {also}" if also else "")
        raise ValueError(f"`{name}` must be {accepted}, got {value!r}")
    return value


def check_learning_rate(name: str, value: Any) -> Any:
    """Accept a non-negative number or a schedule (callable); raise naming ``name`` otherwise."""
    if callable(value):
        return value
    return check_non_negative(name, value, also="or a schedule (a function of the step)")


def check_decay(name: str, value: Any) -> Any:
    """Accept a decay rate in ``[0, 1)`` (b1, b2, momentum, rho) or a traced value; raise naming
    ``name`` otherwise."""
    check_real(name, value)
    if is_traced(value):
        return value
    number = as_number(value)
    if number is None or not 0.0 <= number < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")
    return value


def check_unit_interval(name: str, value: Any) -> Any:
    """Accept a number in ``[0, 1]`` (dampening) or a traced value; raise naming ``name``."""
    check_real(name, value)
    if is_traced(value):
        return value
    number = as_number(value)
    if number is None or not 0.0 <= number <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}")
    return value


def check_positive_exponent(name: str, value: Any, why: str) -> Any:
    """Reject a non-numeric exponent or a concrete one <= 0 (``why``: what it would break); a
    traced value passes."""
    check_real(name, value)
    number = as_concrete_number(value)
    if number is not None and not number > 0:
        raise ValueError(f"`{name}` must be > 0 ({why}), got {value!r}")
    return value


def as_concrete_number(value: Any) -> float | None:
    """``value`` as a Python float if it is a concrete real number (not a string, a bool or a
    traced value), else ``None``."""
    if isinstance(value, (str, bytes, bool)):
        return None
    return as_number(value)


def check_concrete_number(name: str, value: Any) -> float:
    """``value`` as a Python float; raise naming ``name`` if it is not a concrete, finite real
    number (schedule lengths and rates, which shape the schedule in Python)."""
    check_real(name, value)
    number = as_concrete_number(value)
    if number is None or not math.isfinite(number):
        raise ValueError(
            f"`{name}` must be a concrete, finite real number (a Python or NumPy number, not a "
            f"traced value), got {value!r}"
        )
    return number


def check_concrete_non_negative(name: str, value: Any, why: str) -> float:
    """As :func:`check_concrete_number`, and >= 0 (``why``: what the number means)."""
    number = check_concrete_number(name, value)
    if number < 0:
        raise ValueError(f"`{name}` must be >= 0 ({why}), got {value!r}")
    return number


def check_whole_steps(name: str, value: Any, why: str) -> int:
    """A whole, non-negative number of steps (``3`` or ``3.0``), as a Python int."""
    number = check_concrete_non_negative(name, value, why)
    if number != int(number):
        raise ValueError(f"`{name}` must be a whole number of steps ({why}), got {value!r}")
    return int(number)


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
                f"{jax.tree_util.keystr(path) or 'the root'} is {np.dtype(leaf_dtype).name}: its state "
                f"would lose the imaginary part; pass a complex {name} (e.g. complex64) or None "
                "(the parameters' dtype)"
            )


def check_instance(name: str, value: Any, kind: type, spelled: str) -> Any:
    """Return ``value`` if it is a ``kind``, else a ``TypeError`` showing how to build one."""
    if not isinstance(value, kind):
        raise TypeError(f"`{name}` must be a {spelled}, got {value!r}")
    return value


def check_optimizer(caller: str, optimizer: Any) -> Any:
    """Return ``optimizer`` if it has optax's ``(init, update)`` interface."""
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            f"{caller}: `optimizer` must have optax's (init, update) interface "
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
    bound (e.g. "for a model with 10 outputs").

    Raises:
      ValueError: naming ``name``, the first bad value and its index, and the valid range.
      TypeError: the labels are not integers.
    """
    import numpy as np

    array = np.asarray(labels)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class labels, got dtype {array.dtype}")
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


# ------------------------------------------------------- hyperparameter values and factory names


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number: a Python or NumPy int or float, or an array (JAX,
    NumPy, or traced) of an integer or floating dtype. Not a bool (Python's, NumPy's or an
    array of them), a string, ``None`` or a complex number."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    dtype = getattr(value, "dtype", None)
    if dtype is None or not hasattr(value, "shape"):
        return False
    try:
        return bool(jax.numpy.issubdtype(dtype, np.integer) or jax.numpy.issubdtype(dtype, np.floating))
    except TypeError:  # a dtype NumPy cannot interpret
        return False


def _kind(value: Any) -> str:
    """What ``value`` is, for a message: ``str``, ``NoneType``, ``bool array``, ..."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and hasattr(value, "shape") and not isinstance(value, np.generic):
        return f"{dtype} array"
    return type(value).__name__


def check_real(name: str, value: Any, also: str = "") -> Any:
    """Return ``value`` if it is a real number (:func:`is_real`; traced values included), else
    raise a ``TypeError`` naming ``name`` and showing the value and its type (``also``: what
    else is accepted, e.g. ``"or a schedule"``).

    Every numeric hyperparameter of an optimizer or schedule goes through this check before
    its range is checked, so ``"0.9"`` or ``True`` is refused where it is given, not when the
    first update fails.
    """
    if not is_real(value):
        accepted = "a real number" + (f" {also}" if also else "")
        raise TypeError(f"`{name}` must be {accepted}, got {value!r} ({_kind(value)})")
    return value


_FACTORY: contextvars.ContextVar[str | None] = contextvars.ContextVar("fdl_factory", default=None)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def names_errors(caller: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a factory (an optimizer, an atom, a schedule) so that a ``ValueError`` or
    ``TypeError`` raised while it builds starts with ``caller``: ``"adam: `b1` must be ..."``.

    Only the outermost decorated call names itself: ``adam`` builds ``scale_by_adam``, whose
    checks then report ``adam``, the function the user called. A call that does not fit the
    signature keeps Python's own message; exceptions of other types (and subclasses, such as
    JAX's errors) pass unchanged.
    """

    def decorate(factory: Callable[_P, _R]) -> Callable[_P, _R]:
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def named(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            if _FACTORY.get() is not None:  # built by another factory, which names itself
                return factory(*args, **kwargs)
            try:
                signature.bind(*args, **kwargs)
            except TypeError:  # a call that does not fit: Python's own message
                return factory(*args, **kwargs)
            token = _FACTORY.set(caller)
            try:
                return factory(*args, **kwargs)
            except (TypeError, ValueError) as error:
                if type(error) not in (TypeError, ValueError):
                    raise
                named_error = type(error)(f"{caller}: {error}")
                raise named_error.with_traceback(error.__traceback__) from None
            finally:
                _FACTORY.reset(token)

        return named

    return decorate


# ------------------------------------------------------------------ update and parameter shapes


def _path(path: Any) -> str:
    """A leaf's path for a message: ``'encoder/w'``, or ``(root)`` for a lone leaf."""
    return repr(jax.tree_util.keystr(tuple(path), simple=True, separator="/")) if path else "(root)"


def _shape(leaf: Any) -> tuple[int, ...] | None:
    """A leaf's static shape (``None`` for a ``None`` leaf); an array's, a tracer's or a Python
    number's."""
    if leaf is None:
        return None
    shape = getattr(leaf, "shape", None)
    return tuple(shape) if shape is not None else tuple(np.shape(leaf))


def _paths_list(paths: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "") if paths else "none"


def check_same_shapes(caller: str, name: str, tree: Any, like_name: str, like: Any) -> None:
    """Raise a ``ValueError`` unless ``tree`` has the tree structure of ``like`` and each of its
    leaves the shape of the matching leaf of ``like`` (``None`` matching ``None``).

    Shapes are static, so under ``jit`` this runs once, while tracing, and costs nothing at
    run time. The message names the leaf path and both shapes, or the paths only one tree has.
    """
    leaves, structure = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)
    like_leaves, like_structure = jax.tree_util.tree_flatten_with_path(like, is_leaf=lambda x: x is None)
    if structure != like_structure:  # type: ignore[operator]  # jax's PyTreeDef alias is untyped
        paths = [_path(path) for path, _ in leaves]
        like_paths = [_path(path) for path, _ in like_leaves]
        if paths == like_paths:
            difference = f"{like_name}: {like_structure}, {name}: {structure}"
        else:
            only_like = [p for p in like_paths if p not in set(paths)]
            only_tree = [p for p in paths if p not in set(like_paths)]
            difference = (
                f"leaves only in {like_name}: {_paths_list(only_like)}; "
                f"only in {name}: {_paths_list(only_tree)}"
            )
        raise ValueError(f"{caller}: {name} must have the tree structure of {like_name}; {difference}")
    for (path, leaf), (_, like_leaf) in zip(leaves, like_leaves, strict=True):
        shape, like_shape = _shape(leaf), _shape(like_leaf)
        if shape != like_shape:
            if shape is None or like_shape is None:
                why = "a None parameter (a frozen part) takes a None update, and only it"
            else:
                why = "fdl.optim does not broadcast: an update must have the shape of its parameter"

            def described(s: tuple[int, ...] | None) -> str:
                return "is None" if s is None else f"has shape {s}"

            raise ValueError(
                f"{caller}: {name} leaf {_path(path)} {described(shape)}, but its {like_name} leaf "
                f"{described(like_shape)} ({why})"
            )


def check_update_shapes(caller: str, updates: Any, params: Any, state_name: str, state_tree: Any) -> None:
    """In a transformation's ``update``: the updates must have the shapes of ``params`` (when
    given) and of the per-parameter tree ``state_tree`` of the state (field ``state_name``),
    which ``init`` built from the parameters (:func:`check_same_shapes`)."""
    if params is not None:
        check_same_shapes(caller, "`updates`", updates, "`params`", params)
    check_same_shapes(caller, "`updates`", updates, f"`state.{state_name}`", state_tree)
