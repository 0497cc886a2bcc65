"""Holding out a test set: a labelled data set split into training and test parts, by a seed.

One rule serves every loader and script, so a seed and a fraction name the same split wherever
they are used: :func:`fdl.data.load_digits` splits class by class (stratified), ``fdl train`` and
the examples split MNIST-format IDX files at random, both with :func:`split_examples`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from fdl._checks import check_open_fraction, check_seed

__all__ = ["Split", "split_examples"]


class Split(NamedTuple):
    """A train/test split of a labelled data set, as NumPy arrays.

    Shapes use ``N_train``/``N_test`` for the number of examples; the features keep the shape
    they had, ``D`` (flat) or ``H, W, C`` (image layout, NHWC) for fdl's loaders, whose inputs
    are float32 and labels int32 (:func:`split_examples` keeps whatever dtypes it is given).

    Attributes:
        x_train: inputs, shape ``(N_train, ...)``.
        y_train: class labels, shape ``(N_train,)``.
        x_test: inputs, shape ``(N_test, ...)``.
        y_test: class labels, shape ``(N_test,)``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _test_count(test_fraction: float, size: int) -> int:
    """``floor(test_fraction * size + 0.5)``: the share rounded to the nearest count, halves up."""
    return math.floor(test_fraction * size + 0.5)


def _stratified_indices(labels: np.ndarray, test_fraction: float, rng: np.random.Generator):
    """Shuffled (train, test) indices, ``test_fraction`` of each class in the test part."""
    train_parts, test_parts = [], []
    for label in np.unique(labels):  # ascending class order, so the draws are reproducible
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = _test_count(test_fraction, len(members))
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return train, test


def split_examples(
    x: Any, y: Any, *, test_fraction: float = 0.2, seed: int = 0, stratify: bool = False
) -> Split:
    r"""Hold out a share of the examples ``(x, y)`` as a test set, at random or class by class.

    With ``rng = numpy.random.default_rng(seed)`` and :math:`N` examples:

    - ``stratify=False``: ``order = rng.permutation(N)``; the first
      :math:`\lfloor f N + \tfrac12 \rfloor` indices of ``order`` (``f`` = ``test_fraction``,
      rounded half up) are the test part, the rest the training part, each in that drawn order.
    - ``stratify=True``: for each class ``c`` of ``y`` in ascending order, its :math:`n_c` indices
      are shuffled by ``rng.permutation`` and the first :math:`\lfloor f n_c + \tfrac12 \rfloor`
      go to the test part; then the training and the test indices are each shuffled once more
      by ``rng.permutation``, so neither part is sorted by class. Every class keeps its share in
      both parts (up to the rounding), which matters when classes are few or unequal.

    NumPy's ``Generator`` draws the same numbers on every platform, so a seed names the same split
    everywhere (for a given NumPy version: NEP 19 allows streams to change between versions).

    Args:
        x: the inputs, an array with the examples on its leading axis.
        y: the labels, a 1-D array of :math:`N` class labels (any values ``numpy.unique`` orders).
        test_fraction: :math:`f`, the share held out for testing, in (0, 1).
        seed: seed of the NumPy generator that draws the split, a non-negative int.
        stratify: if True, split each class of ``y`` on its own (see above).

    Returns:
        A :class:`Split` ``(x_train, y_train, x_test, y_test)``: ``x`` and ``y`` indexed by the two
        parts (new arrays; the inputs are not changed).

    Raises:
        ValueError: if ``y`` is not 1-D, if ``x`` and ``y`` hold different numbers of examples,
            if ``test_fraction`` is not in (0, 1) or leaves the test or the training part empty,
            or if ``seed`` is not a non-negative int.
        TypeError: if ``stratify`` is not a bool.

    Example:
        >>> import numpy as np
        >>> x, y = np.arange(20.0).reshape(10, 2), np.array([0, 1] * 5)
        >>> x_train, y_train, x_test, y_test = split_examples(x, y, test_fraction=0.4, stratify=True)
        >>> x_train.shape, x_test.shape, sorted(y_test.tolist())
        ((6, 2), (4, 2), [0, 0, 1, 1])

    Differs from scikit-learn:
        ``sklearn.model_selection.train_test_split(x, y)`` returns
        ``[x_train, x_test, y_train, y_test]``; this returns ``(x_train, y_train, x_test, y_test)``,
        the order of :func:`fdl.data.load_digits`. Its ``stratify`` takes the labels themselves;
        here it is a bool that stratifies on ``y``. Its ``random_state`` draws with the legacy
        ``RandomState``, so equal seeds give different splits.
    """
    fraction = check_open_fraction("test_fraction", test_fraction)
    seed = check_seed("seed", seed)
    if not isinstance(stratify, bool):
        raise TypeError(f"`stratify` must be a bool, got {stratify!r}")
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"`y` must be a 1-D array of labels, got shape {y.shape}")
    if x.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"`x` and `y` must hold the same number of examples on their leading axis, got x of "
            f"shape {x.shape} and y of shape {y.shape}"
        )
    rng = np.random.default_rng(seed)
    if stratify:
        train, test = _stratified_indices(y, fraction, rng)
    else:
        order = rng.permutation(len(y))
        test, train = np.split(order, [_test_count(fraction, len(y))])
    if len(test) == 0 or len(train) == 0:
        empty = "test" if len(test) == 0 else "training"
        raise ValueError(
            f"`test_fraction` must leave at least one example in each part, got {test_fraction!r}, "
            f"which leaves the {empty} part of the {len(y)} examples empty"
        )
    return Split(x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
