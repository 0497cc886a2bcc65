"""Reaching into a model: paths, sub-models, swapped parts, selections and frozen partitions.

A model's parameter and state trees are dicts keyed by the names of its parts, so every leaf has
a path such as ``encoder/conv_1/w`` (:func:`leaf_paths`), and every part of the model a layer
path such as ``encoder/conv_1`` (:func:`layer_paths`). The same paths name leaves in
checkpoints, in :func:`fdl.nn.summary`, in freeze masks and in ``fdl.fit.NonFiniteError``.

Patterns select leaves by path (:func:`select`): segments are separated by ``/``; ``*`` matches
within one segment (``dense_*``), ``**`` matches any number of whole segments (``encoder/**``,
``**/b``), and a pattern that names a part selects every leaf under it (``"encoder"`` equals
``"encoder/**"``).

Values inside a model are read by :func:`capture`: the outputs of the parts it names, and the
values a layer sows (attention's weights), returned next to the output of ``apply``.

Freezing is a partition (:func:`partition`): the selected leaves in one tree, the rest in
another, ``None`` where a leaf went to the other tree (Equinox's convention), so
``jax.grad`` with respect to the trainable tree never computes the frozen part's gradient, and
:func:`combine` puts the two back together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from fdl._checks import check_instance
from fdl._paths import nearest, path_matches, path_string, split_path
from fdl.nn._children import capturing, recording_init, with_children
from fdl.nn.composites import Eval
from fdl.nn.layer import Layer

#: How every message and record spells the path of a tree that is a single leaf (whose own
#: path is empty): fit's NonFiniteError, checkpoints, regularizers and fdl.parallel.
ROOT = "(root)"

__all__ = [
    "ROOT",
    "leaf_paths",
    "layer_paths",
    "tree_at",
    "layer_at",
    "replace_layer",
    "swap",
    "eval_mode",
    "select",
    "partition",
    "combine",
    "param_count",
    "capture",
]

PyTree = Any
Where = str | Sequence[str] | Callable[[str, Any], bool] | PyTree


def leaf_paths(tree: PyTree) -> list[str]:
    """The path of every leaf of ``tree``, in ``jax.tree.leaves`` order (``None`` is no leaf).

    >>> import jax, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(3), fdl.nn.Relu(), fdl.nn.Dense(2, name="head"))
    >>> params, _, _ = model.init(jax.random.key(0), (4,))
    >>> fdl.nn.leaf_paths(params)
    ['dense_0/b', 'dense_0/w', 'head/b', 'head/w']
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [path_string(path) for path, _ in flat]


def layer_paths(model: Layer) -> list[str]:
    """The path of every part of ``model`` (depth first, parents before children).

    >>> import fdl
    >>> body = fdl.nn.Serial(fdl.nn.Dense(8), fdl.nn.Relu(), name="body")
    >>> fdl.nn.layer_paths(fdl.nn.Serial(body, fdl.nn.Dense(2, name="head")))
    ['body', 'body/dense_0', 'body/relu_0', 'head']
    """
    check_instance("model", model, Layer, "fdl.nn.Layer", "layer_paths")
    out: list[str] = []

    def walk(layer: Layer, prefix: str) -> None:
        for child_name, child in layer.children:
            path = f"{prefix}{child_name}"
            out.append(path)
            walk(child, path + "/")

    walk(model, "")
    return out


def tree_at(tree: PyTree, path: str) -> PyTree:
    """The subtree of ``tree`` (params or state) at ``path``; ``""`` is the whole tree.

    Raises:
      KeyError: no such path (the message lists the nearest paths).

    >>> import jax, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(3, name="hidden"), fdl.nn.Dense(2, name="head"))
    >>> params, _, _ = model.init(jax.random.key(0), (4,))
    >>> fdl.nn.tree_at(params, "head/w").shape
    (3, 2)
    """
    node = tree
    for i, part in enumerate(split_path(path)):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (tuple, list)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            known = sorted({p for leaf in leaf_paths(tree) for p in _prefixes(leaf)})
            where = "/".join(split_path(path)[: i + 1])
            raise KeyError(f"no path {path!r} in the tree ({where!r} is missing); {nearest(path, known)}")
    return node


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def layer_at(model: Layer, path: str) -> Layer:
    """The part of ``model`` at ``path`` (a sub-model you can ``init`` and ``apply`` alone, with
    ``tree_at(params, path)`` and ``tree_at(state, path)``).

    Raises:
      KeyError: no such part (the message lists the nearest paths).

    >>> import fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(3), fdl.nn.Dense(2, name="head"))
    >>> fdl.nn.layer_at(model, "head")
    Dense(features=2)
    """
    check_instance("model", model, Layer, "fdl.nn.Layer", "layer_at")
    layer = model
    for part in split_path(path):
        children = dict(layer.children)
        if part not in children:
            raise KeyError(f"no layer at {path!r}; {nearest(path, layer_paths(model))}")
        layer = children[part]
    return layer


def replace_layer(model: Layer, path: str, new: Layer) -> Layer:
    """``model`` with the part at ``path`` replaced by ``new`` (which takes that part's name).

    Every path outside ``path`` is unchanged, so the old params and state still fit there
    (:func:`swap` also re-initializes the new part).

    Raises:
      KeyError: no such part. TypeError: ``new`` is not a layer.
    """
    check_instance("model", model, Layer, "fdl.nn.Layer", "replace_layer")
    check_instance("new", new, Layer, "fdl.nn.Layer", "replace_layer")
    parts = split_path(path)
    if not parts:
        raise ValueError("`path` must name a part of the model, got the root ''")
    layer_at(model, path)  # raises with the nearest paths

    def rebuild(layer: Layer, rest: list[str]) -> Layer:
        head, tail = rest[0], rest[1:]
        children = tuple(
            (child_name, (rebuild(child, tail) if tail else new) if child_name == head else child)
            for child_name, child in layer.children
        )
        return with_children(layer, children)

    return rebuild(model, parts)


def eval_mode(model: Layer, *paths: str) -> Layer:
    """``model`` with the parts at ``paths`` always run in evaluation mode (:func:`fdl.nn.Eval`):
    their dropout is off and their batch norms normalize with, and keep, their running
    statistics, whatever ``train`` says. Paths, params and state are unchanged.

    This is the model side of freezing a part: pair it with a train step that takes the
    gradient of the trainable part only (``fdl.train.make_train_step(..., trainable=...)``).
    """
    for path in paths:
        model = replace_layer(model, path, Eval(layer_at(model, path)))
    return model


def swap(
    model: Layer,
    params: PyTree,
    state: PyTree,
    path: str,
    new: Layer,
    *,
    key: jax.Array,
    input_shape: Any,
) -> tuple[Layer, PyTree, PyTree]:
    """Replace the part at ``path`` by ``new`` and initialize just that part (a new head, say).

    Returns ``(model, params, state)``: the params and state of every other part are the ones
    given, bit for bit; those under ``path`` are ``new``'s fresh ``init`` (from ``key``).

    Raises:
      KeyError: no such part. ValueError: the new part's output does not fit what follows it
        (naming the old and new output shapes and the first parameter that would not fit).
    """
    old_shapes = _shapes(model, input_shape)
    new_model = replace_layer(model, path, new)
    with recording_init() as rows:
        fresh_params, fresh_state, _ = new_model.init(key, input_shape)
    new_shapes = {row[0]: row[3] for row in rows}
    prefix = "/".join(split_path(path))

    def keep(tree: PyTree, fresh: PyTree, what: str) -> PyTree:
        def pick(keypath, fresh_leaf):
            leaf_path = path_string(keypath)
            if leaf_path == prefix or leaf_path.startswith(prefix + "/"):
                return fresh_leaf
            old_leaf = tree_at(tree, leaf_path)
            if np.shape(old_leaf) != np.shape(fresh_leaf):
                raise ValueError(
                    f"swap: the new part at {prefix!r} outputs {new_shapes.get(prefix)} where the "
                    f"old one output {old_shapes.get(prefix)}, so the {what} {leaf_path!r} that "
                    f"follows it would need shape {np.shape(fresh_leaf)}, not its "
                    f"{np.shape(old_leaf)}; swap that part too, or make the new part output "
                    f"{old_shapes.get(prefix)}"
                )
            return old_leaf

        return jax.tree_util.tree_map_with_path(pick, fresh)

    return new_model, keep(params, fresh_params, "parameter"), keep(state, fresh_state, "state entry")


def _shapes(model: Layer, input_shape: Any) -> dict[str, Any]:
    """The output shape of every part of ``model`` for ``input_shape`` (nothing computed)."""
    with recording_init() as rows:
        jax.eval_shape(lambda k: model.init(k, input_shape)[:2], jax.random.key(0))
    return {row[0]: row[3] for row in rows}


# ------------------------------------------------------------------------- selection, freezing


def select(tree: PyTree, where: Where) -> PyTree:
    """A tree of bools like ``tree``: True at the leaves ``where`` selects.

    Args:
      tree: params (or state, or any pytree).
      where: a path pattern (``"encoder/**"``, ``"**/b"``, ``"head"``), a list of patterns (a
        leaf matching any is selected), a predicate ``where(path, leaf) -> bool``, or a tree of
        bools like ``tree`` (returned as is).

    Raises:
      ValueError: a pattern that matches no leaf (the message lists the nearest paths).

    >>> import jax, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(3, name="body"), fdl.nn.Dense(2, name="head"))
    >>> params, _, _ = model.init(jax.random.key(0), (4,))
    >>> fdl.nn.select(params, "**/b")
    {'body': {'b': True, 'w': False}, 'head': {'b': True, 'w': False}}
    """
    paths = leaf_paths(tree)
    if callable(where) and not isinstance(where, (str, Mapping)):
        flags = [bool(where(p, leaf)) for p, leaf in zip(paths, jax.tree.leaves(tree), strict=True)]
    elif isinstance(where, str) or (
        isinstance(where, (list, tuple)) and where and all(isinstance(w, str) for w in where)
    ):
        patterns = [where] if isinstance(where, str) else list(where)
        flags = [False] * len(paths)
        for pattern in patterns:
            hits = [path_matches(p, pattern) for p in paths]
            if not any(hits):
                known = sorted({q for p in paths for q in _prefixes(p)})
                raise ValueError(f"the pattern {pattern!r} matches no leaf; {nearest(pattern, known)}")
            flags = [f or h for f, h in zip(flags, hits, strict=True)]
    else:
        # jax's PyTreeDef alias is untyped
        if jax.tree.structure(where) != jax.tree.structure(tree):  # type: ignore[operator]
            raise ValueError(
                "`where` must be a path pattern, a list of them, a predicate (path, leaf) -> bool, "
                f"or a tree of bools shaped like the tree; got {where!r}"
            )
        return where
    return jax.tree.unflatten(jax.tree.structure(tree), flags)


def partition(tree: PyTree, where: Where) -> tuple[PyTree, PyTree]:
    """Split ``tree`` into ``(selected, rest)``: each keeps the structure, with ``None`` where the
    leaf went to the other one. :func:`combine` is the inverse.

    >>> import jax, jax.numpy as jnp, fdl
    >>> params = {"body": {"w": jnp.ones(2)}, "head": {"w": jnp.zeros(2)}}
    >>> trainable, frozen = fdl.nn.partition(params, "head")
    >>> trainable
    {'body': {'w': None}, 'head': {'w': Array([0., 0.], dtype=float32)}}
    """
    mask = select(tree, where)
    selected = jax.tree.map(lambda leaf, m: leaf if m else None, tree, mask)
    rest = jax.tree.map(lambda leaf, m: None if m else leaf, tree, mask)
    return selected, rest


def combine(*trees: PyTree) -> PyTree:
    """Merge trees of the same structure that hold ``None`` where another holds the leaf.

    Raises:
      ValueError: two trees hold a leaf at the same path.
    """
    if not trees:
        raise ValueError("combine needs at least one tree")

    def pick(*leaves):
        present = [leaf for leaf in leaves if leaf is not None]
        if len(present) > 1:
            raise ValueError("combine: two trees hold a leaf at the same path")
        return present[0] if present else None

    return jax.tree.map(pick, *trees, is_leaf=lambda x: x is None)


def param_count(tree: PyTree) -> int:
    """The number of scalars in ``tree`` (``None`` leaves count 0)."""
    return sum(math.prod(np.shape(leaf)) for leaf in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------- intermediates


def capture(model: Layer, where: str | Sequence[str] | Callable[[str], bool]) -> Callable[..., Any]:
    """``model.apply`` that also returns values from inside the model, keyed by path.

    The returned function takes ``model.apply``'s arguments, ``(params, state, x, *, key=None,
    train=False, mask=None)``, and returns ``(y, new_state, captured)``: ``y`` and
    ``new_state`` exactly as ``model.apply``'s, and ``captured`` a dict from path to value.
    Two kinds of value have paths:

    * the **output of every part**, at its layer path (:func:`layer_paths`: ``block_0``,
      ``block_0/self_attention``);
    * a **sown value**, at ``<layer path>/<name>``: a layer exposes a value that is not its
      output with :func:`fdl.nn.sow` (:func:`~fdl.nn.MultiHeadAttention` sows its
      weights as ``attention_weights``).

    It is pure and composes with ``jax.jit``, ``jax.grad`` and ``jax.vmap`` (the values are
    traced with the output, like Flax's ``capture_intermediates``). Nothing inside a recurrent
    layer's scan is captured (those values exist per time step only inside the scan), nor
    anything of ``init``.

    Args:
      model: the layer to apply.
      where: a path pattern (as :func:`select`'s, but a pattern names only the paths it matches:
        ``"block_0"`` is that block's output, ``"block_0/**"`` that output and everything inside
        it), a list of
        patterns, or a predicate ``where(path) -> bool``.

    Raises:
      ValueError: at the call, a pattern that matches no path of the model (the message lists
        the nearest), or one path produced twice (a layer applied twice under one name).

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(3, name="hidden"), fdl.nn.Relu(), fdl.nn.Dense(2))
    >>> params, state, _ = model.init(jax.random.key(0), (4,))
    >>> y, _, captured = fdl.nn.capture(model, "hidden")(params, state, jnp.ones((5, 4)))
    >>> list(captured), captured["hidden"].shape, y.shape
    (['hidden'], (5, 3), (5, 2))
    """
    check_instance("model", model, Layer, "fdl.nn.Layer", "capture")
    if callable(where) and not isinstance(where, str):
        predicate, patterns = where, []
    elif isinstance(where, str) or (
        isinstance(where, (list, tuple)) and where and all(isinstance(w, str) for w in where)
    ):
        patterns = [where] if isinstance(where, str) else list(where)

        def predicate(path: str) -> bool:
            return any(path_matches(path, p, under=False) for p in patterns)

    else:
        raise TypeError(
            f"`where` must be a path pattern, a non-empty list of them, or a predicate "
            f"path -> bool; got {where!r}"
        )

    def apply(params: PyTree, state: PyTree, x: Any, **kwargs: Any) -> tuple[Any, PyTree, dict[str, Any]]:
        with capturing(predicate) as record:
            y, new_state = model.apply(params, state, x, **kwargs)
        for pattern in patterns:
            if not any(path_matches(p, pattern, under=False) for p in record.seen):
                raise ValueError(
                    f"fdl.nn.capture: the pattern {pattern!r} matches no layer output or sown "
                    f"value of the model; {nearest(pattern, record.seen)}"
                )
        return y, new_state, dict(record.values)

    return apply
