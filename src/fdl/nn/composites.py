"""Layers built from named children: :func:`composite` wires them with a plain function,
:func:`Eval` runs one in evaluation mode. The combinators (``Serial``, ``Parallel``, ...) are in
:mod:`fdl.nn.combinators`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from fdl.nn._children import (
    abstract_input,
    apply_child,
    capture_paused,
    check_entries,
    check_layers,
    check_unique,
    child_tree,
    gather,
    init_child,
    not_recording,
    split_key,
    with_children,
)
from fdl.nn.layer import Layer

__all__ = ["Eval", "composite"]


def composite(
    children: Sequence[tuple[str, Layer]] | Mapping[str, Layer],
    forward: Callable[..., Any],
    *,
    kind: str = "Composite",
    name: str | None = None,
    config: tuple[tuple[str, Any], ...] = (),
) -> Layer:
    """A layer wired from named children by a plain function, ``forward(call, x, *, train,
    mask)``.

    ``call(child_name, x, *, mask=<the caller's>)`` applies that child (its params, state and
    key are looked up and threaded for you) and returns its output; ``forward`` may do any array
    math between calls. ``init`` runs ``forward`` once abstractly (``jax.eval_shape``, nothing
    computed) to learn each child's input shape, then initializes each child for it: a child's
    input shape may depend on the others' outputs. Inputs of ``init`` are taken as float32
    arrays of ``input_shape``; pass a ``jax.ShapeDtypeStruct`` (or a tuple of them) for other
    dtypes (token ids). ``forward`` must branch on shapes only, never on values.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn import composite
    >>> def gated(call, x, *, train, mask):
    ...     return call("value", x) * jax.nn.sigmoid(call("gate", x))
    >>> layer = composite({"value": fdl.nn.Dense(3), "gate": fdl.nn.Dense(3)}, gated, kind="Gated")
    >>> params, state, shape = layer.init(jax.random.key(0), (4,))
    >>> shape, sorted(params)
    ((3,), ['gate', 'value'])
    """
    named = check_unique(kind, tuple(children.items()) if isinstance(children, Mapping) else tuple(children))
    check_layers(kind, [layer for _, layer in named])
    index = {child_name: i for i, (child_name, _) in enumerate(named)}
    layers = dict(named)
    where = f"{kind} {name!r}" if name else kind

    def unknown(child_name: str) -> KeyError:
        return KeyError(f"{where}: no child named {child_name!r}; children are {list(index)}")

    def init(key: jax.Array, input_shape: Any):
        keys = jax.random.split(key, len(named))
        shapes: dict[str, Any] = {}

        def abstract_call(child_name: str, x: Any, *, mask: Any = None, train: bool | None = None):
            if child_name not in index:
                raise unknown(child_name)
            layer = layers[child_name]
            in_shape = _example_shape(x)
            shapes.setdefault(child_name, in_shape)
            p, s, _ = init_child(child_name, layer, keys[index[child_name]], shapes[child_name])
            y, _ = apply_child(child_name, layer, p, s, x, key=None, train=False, mask=mask)
            return y

        example = abstract_input(input_shape)
        with not_recording(), capture_paused():
            out = jax.eval_shape(lambda x: forward(abstract_call, x, train=False, mask=None), example)
        params, state = [], []
        for child_name, layer in named:
            if child_name not in shapes:
                raise ValueError(f"{where}: `forward` never calls the child {child_name!r}")
            p, s, _ = init_child(child_name, layer, keys[index[child_name]], shapes[child_name])
            params.append((child_name, p))
            state.append((child_name, s))
        out_shape = jax.tree.map(lambda a: tuple(a.shape), out)
        return gather(params), gather(state), out_shape

    def apply(params, state, x, *, key=None, train=False, mask=None):
        check_entries(where, named, params, state)
        keys = split_key(key, len(named))
        new_state = {child_name: child_tree(where, state, child_name, "state") for child_name, _ in named}
        outer_mask = mask

        def call(child_name: str, h: Any, *, mask: Any = outer_mask, train: bool = train):
            if child_name not in index:
                raise unknown(child_name)
            y, s = apply_child(
                child_name,
                layers[child_name],
                child_tree(where, params, child_name, "params"),
                new_state[child_name],
                h,
                key=keys[index[child_name]],
                train=train,
                mask=mask,
            )
            new_state[child_name] = s
            return y

        y = forward(call, x, train=train, mask=mask)
        return y, gather(list(new_state.items()))

    def rebuild(new_children: tuple[tuple[str, Layer], ...]) -> Layer:
        return composite(new_children, forward, kind=kind, name=name, config=config)

    return Layer(init, apply, name=name, kind=kind, children=named, rebuild=rebuild, config=config)


def _example_shape(x: Any) -> Any:
    """The per-example shape(s) of an abstract value inside ``init`` (no batch axis there)."""
    if isinstance(x, (tuple, list)):
        return tuple(_example_shape(v) for v in x)
    return tuple(x.shape)


def Eval(layer: Layer) -> Layer:
    """Run ``layer`` in evaluation mode whatever ``train`` says: dropout off, batch norm
    normalizing with (and keeping) its running statistics.

    Transparent in paths: its params and state are ``layer``'s own, and its children are
    ``layer``'s, so ``Eval`` can wrap a frozen part of a model without moving any path
    (:func:`fdl.nn.eval_mode`). The PRNG key is still passed on.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Eval(fdl.nn.Dropout(0.5))
    >>> layer.apply({}, {}, jnp.ones(3), key=jax.random.key(0), train=True)[0].tolist()
    [1.0, 1.0, 1.0]
    """
    (layer,) = check_layers("Eval", (layer,))

    def apply(params, state, x, *, key=None, train=False, mask=None):
        del train
        return layer.apply(params, state, x, key=key, train=False, mask=mask)

    def rebuild(children: tuple[tuple[str, Layer], ...]) -> Layer:
        return Eval(with_children(layer, children))

    return Layer(
        layer.init,
        apply,
        name=layer.name,
        kind="Eval",
        children=layer.children,
        rebuild=rebuild if layer.rebuild is not None else None,
        wraps=layer,
    )
