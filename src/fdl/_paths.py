"""Paths of pytree leaves, spelled ``a/b/w``, and the patterns that select them (a kernel:
:mod:`fdl.nn`'s model surgery and :mod:`fdl.optim`'s labels by path both use it).

Segments are separated by ``/``; in a pattern ``*`` matches within one segment and ``**`` any
number of whole segments, and a pattern that names a part also matches every leaf under it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from typing import Any

import jax

__all__ = ["path_string", "path_label", "quoted_path_label", "split_path", "nearest", "path_matches"]


def path_string(path: Sequence[Any]) -> str:
    """A ``jax.tree_util`` key path as ``a/b/0/w`` (``""`` for the root)."""
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def path_label(path: Sequence[Any]) -> str:
    """A leaf's path for a message: ``a/b/w``, or ``(root)`` for a lone leaf."""
    return path_string(path) or "(root)"


def quoted_path_label(path: Sequence[Any]) -> str:
    """A leaf's path quoted, for a message that lists several: ``'a/b/w'``, or ``(root)``."""
    return repr(path_string(path)) if path else "(root)"


def split_path(path: Any) -> list[str]:
    """The segments of ``path`` (``"a/b/"`` -> ``["a", "b"]``); a non-string is refused."""
    if not isinstance(path, str):
        raise TypeError(f"`path` must be a string like 'encoder/conv_1', got {path!r}")
    return [part for part in path.strip("/").split("/") if part]


def nearest(wanted: str, known: Sequence[str]) -> str:
    """The paths of ``known`` closest to ``wanted``, for an error message."""
    close = difflib.get_close_matches(wanted, known, n=5, cutoff=0.3)
    shown = close or list(known)[:10]
    return f"nearest: {shown}" if close else f"known paths include {shown}"


def _segment_match(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_segment_match(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _segment_match(parts[1:], rest)


def path_matches(path: str, pattern: str, *, under: bool = True) -> bool:
    """Whether the path matches ``pattern`` (``*`` within a segment, ``**`` any segments); with
    ``under``, a pattern also matches every path under the part it names."""
    parts, pat = path.split("/"), split_path(pattern)
    return _segment_match(parts, pat) or (under and _segment_match(parts, pat + ["**"]))
