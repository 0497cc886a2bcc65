"""How a composite runs its named children (a kernel module): their names, their paths in
errors, their entries in the composite's ``params``/``state`` trees, their keys, and the record
of every ``init`` that :func:`fdl.nn.summary` and :func:`fdl.nn.swap` read."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fdl.nn.layer import Layer

_PATH: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("fdl_layer_path", default=())


def current_path() -> str:
    """The path of the layer being initialized or traced (``""`` at the top)."""
    return "/".join(_PATH.get())


@contextlib.contextmanager
def child_scope(name: str, layer: Layer) -> Iterator[None]:
    """Run a child's ``init`` or ``apply`` under its path: an error it raises names the path."""
    token = _PATH.set(_PATH.get() + (name,))
    try:
        yield
    except (ValueError, TypeError) as err:
        if not getattr(err, "_fdl_path", None) and err.args and isinstance(err.args[0], str):
            path = current_path()
            err.args = (f"layer {path!r} ({layer.kind}): {err.args[0]}", *err.args[1:])
            err._fdl_path = path  # type: ignore[union-attr]  # a marker: the path is added once
        raise
    except KeyError as err:  # a leaf read a key its params or state do not hold
        if getattr(err, "_fdl_path", None) or len(err.args) != 1:
            raise
        path = current_path()
        named = KeyError(
            f"layer {path!r} ({layer.kind}): no entry {err.args[0]!r} in its params or state; "
            "pass the trees its init returned (a renamed or reordered part moves its entries)"
        )
        named._fdl_path = path  # type: ignore[attr-defined]
        raise named from err
    finally:
        _PATH.reset(token)


# ------------------------------------------------------------------------------- children


def check_layers(combinator: str, layers: Sequence[Any]) -> tuple[Layer, ...]:
    """Raise a clear error unless every item of ``layers`` is a :class:`Layer`."""
    if not layers:
        raise ValueError(f"{combinator} needs at least one layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{combinator} argument {i} must be a fdl.nn.Layer, got {layer!r}; "
                "wrap a plain function with fdl.nn.Elementwise(fn)"
            )
    return tuple(layers)


def named_children(combinator: str, layers: Sequence[Any]) -> tuple[tuple[str, Layer], ...]:
    """``((name, layer), ...)``: each layer's own name, or ``<kind>_<i>`` counted per kind among
    the unnamed ones. Raises on a duplicate name."""
    layers = check_layers(combinator, layers)
    counts: dict[str, int] = {}
    named = []
    for layer in layers:
        if layer.name is not None:
            named.append((layer.name, layer))
            continue
        stem = layer.auto_name
        named.append((f"{stem}_{counts.get(stem, 0)}", layer))
        counts[stem] = counts.get(stem, 0) + 1
    return check_unique(combinator, named)


def check_unique(combinator: str, named: Sequence[tuple[str, Layer]]) -> tuple[tuple[str, Layer], ...]:
    """Raise unless the children's names are unique."""
    seen: set[str] = set()
    for child_name, _ in named:
        if child_name in seen:
            names = [n for n, _ in named]
            raise ValueError(
                f"{combinator}: duplicate child name {child_name!r} among {names}; give each "
                "child its own `name=`"
            )
        seen.add(child_name)
    return tuple(named)


def split_key(key: jax.Array | None, num: int) -> tuple[jax.Array | None, ...]:
    """Split ``key`` into ``num`` independent keys; ``None`` stays ``None`` for each."""
    if key is None:
        return (None,) * num
    return tuple(jax.random.split(key, num))


def is_shape(value: Any) -> bool:
    """Whether ``value`` is one shape (a tuple or list of ints), not a tuple of shapes."""
    return isinstance(value, (tuple, list)) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    )


def abstract_input(input_shape: Any, dtype: Any = jnp.float32, batch: tuple[int, ...] = ()) -> Any:
    """``input_shape`` (a shape, a ``ShapeDtypeStruct``, or a tuple of them, as ``init`` takes)
    as abstract arrays with the leading ``batch`` axes; shapes get ``dtype``, one for all or a
    tuple of them, one per input."""
    if isinstance(input_shape, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((*batch, *input_shape.shape), input_shape.dtype)
    if is_shape(input_shape):
        return jax.ShapeDtypeStruct((*batch, *input_shape), dtype)
    if isinstance(input_shape, (tuple, list)) and input_shape:
        if not isinstance(dtype, (tuple, list)):
            return tuple(abstract_input(s, dtype, batch) for s in input_shape)
        if len(dtype) != len(input_shape):
            raise ValueError(
                f"`dtype` must be one dtype or one per input, got {len(dtype)} dtypes for "
                f"{len(input_shape)} inputs {input_shape!r}"
            )
        return tuple(abstract_input(s, d, batch) for s, d in zip(input_shape, dtype, strict=True))
    raise ValueError(f"`input_shape` must be a shape tuple or a tuple of shapes, got {input_shape!r}")


def is_empty(tree: Any) -> bool:
    """Whether ``tree`` is ``None`` or an empty dict (left out of a composite's trees)."""
    return tree is None or (isinstance(tree, Mapping) and not tree)


def child_tree(where: str, tree: Any, name: str, what: str) -> Any:
    """A child's entry of a composite's ``params``/``state`` dict (``{}`` if left out)."""
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ValueError(
            f"{where} expects `{what}` to be a dict keyed by its children's names (as its init "
            f"returned), got {type(tree).__name__}"
        )
    return tree.get(name, {})


def check_entries(where: str, named: Sequence[tuple[str, Layer]], params: Any, state: Any) -> None:
    """Raise if ``params`` or ``state`` holds an entry that names none of the children (a part
    renamed since the trees were made, or the trees of another model)."""
    names = [child_name for child_name, _ in named]
    for what, tree in (("params", params), ("state", state)):
        if isinstance(tree, Mapping):
            extra = [k for k in tree if k not in names]
            if extra:
                raise ValueError(
                    f"{where}: `{what}` has entries {extra} that name none of its children {names}; "
                    "pass the trees its init returned (was a part renamed since they were made?)"
                )


def gather(named_trees: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The composite's tree: the children's non-empty trees keyed by name."""
    return {name: tree for name, tree in named_trees if not is_empty(tree)}


_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("fdl_init_record", default=None)


@contextlib.contextmanager
def recording_init() -> Iterator[list[tuple[str, Layer, Any, Any, Any, Any]]]:
    """Record every child's ``init`` inside the block as ``(path, layer, input_shape,
    output_shape, params, state)`` (used by :func:`fdl.nn.summary` and :func:`fdl.nn.swap`)."""
    rows: list[tuple[str, Layer, Any, Any, Any, Any]] = []
    token = _RECORD.set(rows)
    try:
        yield rows
    finally:
        _RECORD.reset(token)


@contextlib.contextmanager
def not_recording() -> Iterator[None]:
    token = _RECORD.set(None)
    try:
        yield
    finally:
        _RECORD.reset(token)


class _Capture:
    """What :func:`fdl.nn.capture` gathers while it applies a model: the values at the paths
    ``wanted(path)`` accepts, and every path it could have taken (for its error messages)."""

    def __init__(self, wanted: Callable[[str], bool]) -> None:
        self.wanted = wanted
        self.values: dict[str, Any] = {}
        self.seen: list[str] = []
        self.paused = 0

    def offer(self, path: str, value: Any) -> None:
        if self.paused:
            return
        self.seen.append(path)
        if self.wanted(path):
            if path in self.values:
                raise ValueError(
                    f"fdl.nn.capture: the path {path!r} was produced twice in one apply (a layer "
                    "applied twice, or sown twice under one name); capture one of them by giving "
                    "the layers their own names"
                )
            self.values[path] = value


_CAPTURE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("fdl_capture", default=None)


@contextlib.contextmanager
def capturing(wanted: Callable[[str], bool]) -> Iterator[_Capture]:
    """Gather, inside the block, each layer output and each sown value whose path ``wanted``
    accepts (used by :func:`fdl.nn.capture`)."""
    record = _Capture(wanted)
    token = _CAPTURE.set(record)
    try:
        yield record
    finally:
        _CAPTURE.reset(token)


@contextlib.contextmanager
def capture_paused() -> Iterator[None]:
    """Capture nothing inside the block: the body of a ``jax.lax.scan`` or the abstract pass of
    a composite's ``init`` traces values that must not leave it."""
    record = _CAPTURE.get()
    if record is not None:
        record.paused += 1
    try:
        yield
    finally:
        if record is not None:
            record.paused -= 1


def sow(name: str, value: Any) -> None:
    """Offer ``value`` to an active :func:`fdl.nn.capture` under ``<layer path>/<name>``.

    A layer calls it from its ``apply`` to expose a value that is not its output (attention's
    weights); without a capture it does nothing, so it costs nothing under ``jit``."""
    record = _CAPTURE.get()
    if record is not None:
        path = current_path()
        record.offer(f"{path}/{name}" if path else name, value)


def init_child(name: str, layer: Layer, key: jax.Array, input_shape: Any) -> tuple[Any, Any, Any]:
    """``layer.init`` under the child's path (errors name it; :func:`recording_init` sees it)."""
    with child_scope(name, layer), capture_paused():
        rows = _RECORD.get()
        index = -1 if rows is None else len(rows)  # the parent's row (used only when recording)
        if rows is not None:
            rows.append(None)  # keep the parent before its children
        params, state, out_shape = layer.init(key, input_shape)
        if rows is not None:
            rows[index] = (current_path(), layer, input_shape, out_shape, params, state)
        return params, state, out_shape


def apply_child(
    name: str,
    layer: Layer,
    params: Any,
    state: Any,
    x: Any,
    *,
    key: jax.Array | None,
    train: bool,
    mask: Any,
) -> tuple[Any, Any]:
    """``layer.apply`` under the child's path, checking the contract: it must return
    ``(y, state)`` with the state's tree structure unchanged."""
    with child_scope(name, layer):
        out = layer.apply(params, state, x, key=key, train=train, mask=mask)
        if not isinstance(out, tuple) or len(out) != 2:
            got = f"{type(out).__name__}" + (f" of shape {out.shape}" if hasattr(out, "shape") else "")
            raise TypeError(
                f"`apply` must return the pair (y, new_state), got a {got}; a stateless layer "
                "returns (y, state)"
            )
        y, new_state = out
        record = _CAPTURE.get()
        if record is not None:
            record.offer(current_path(), y)
        before = jax.tree.structure({} if state is None else state)
        after = jax.tree.structure({} if new_state is None else new_state)
        if before != after:  # type: ignore[operator]  # jax's PyTreeDef alias is untyped
            raise ValueError(
                f"`apply` returned a state whose structure differs from the state it was given: "
                f"got {after}, expected {before}"
            )
    return y, new_state


def with_children(layer: Layer, children: tuple[tuple[str, Layer], ...]) -> Layer:
    """``layer`` rebuilt over new ``((name, child), ...)``, keeping its name, kind and config."""
    if layer.rebuild is None:
        raise ValueError(f"{layer.kind} has no children to replace")
    rebuilt = layer.rebuild(children)
    return dataclasses.replace(rebuilt, name=layer.name, kind=layer.kind, config=layer.config)
