"""Checks that updates and parameters have the same tree structure and shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from fdl._paths import quoted_path_label

# ------------------------------------------------------------------ arrays compared entry by entry


def check_same_array_shape(name_a: str, a: Any, name_b: str, b: Any, hint: str = "") -> None:
    """Raise if two arrays compared entry by entry have different static shapes."""
    if a.shape != b.shape:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape, got "
            f"{name_a}.shape={a.shape} and {name_b}.shape={b.shape}{hint}"
        )


# ------------------------------------------------------------------ update and parameter shapes


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
        paths = [quoted_path_label(path) for path, _ in leaves]
        like_paths = [quoted_path_label(path) for path, _ in like_leaves]
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
                f"{caller}: {name} leaf {quoted_path_label(path)} {described(shape)}, but its {like_name} leaf "
                f"{described(like_shape)} ({why})"
            )


def check_update_shapes(caller: str, updates: Any, params: Any, state_name: str, state_tree: Any) -> None:
    """In a transformation's ``update``: the updates must have the shapes of ``params`` (when
    given) and of the per-parameter tree ``state_tree`` of the state (field ``state_name``),
    which ``init`` built from the parameters (:func:`check_same_shapes`)."""
    if params is not None:
        check_same_shapes(caller, "`updates`", updates, "`params`", params)
    check_same_shapes(caller, "`updates`", updates, f"`state.{state_name}`", state_tree)
