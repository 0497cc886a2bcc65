"""The 8×8 handwritten digits that ship inside scikit-learn, split for training and testing.

The data set is the test part of UCI's "Optical Recognition of Handwritten Digits" (optdigits):
1,797 images of the digits 0–9, written by 13 people. Each 32×32 bitmap was divided into 4×4
blocks and the black pixels of each block counted, so every pixel of the 8×8 image is an integer in
[0, 16]. scikit-learn stores the file inside its wheel, so :func:`load_digits` needs no network.

It is small enough to train an MLP or a small CNN on a laptop CPU in seconds, and real enough that
test accuracy means something.

References:
    E. Alpaydin and C. Kaynak, "Cascading Classifiers", Kybernetika 34(4):369–374, 1998.
    E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning
    Repository, 1998. https://archive.ics.uci.edu/dataset/80
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fdl._checks import check_open_fraction, check_seed

__all__ = ["Split", "load_digits"]

_PIXEL_MAX = 16  # optdigits pixels count black pixels in a 4×4 block: 0..16
_SIDE = 8  # images are _SIDE × _SIDE


class Split(NamedTuple):
    """A train/test split of a labelled data set, as NumPy arrays.

    Shapes use ``N_train``/``N_test`` for the number of examples and ``D`` (flat) or ``H, W, C``
    (image layout, NHWC) for the features.

    Attributes:
        x_train: float32 inputs, shape ``(N_train, D)`` or ``(N_train, H, W, C)``.
        y_train: int32 class labels, shape ``(N_train,)``.
        x_test: float32 inputs, shape ``(N_test, D)`` or ``(N_test, H, W, C)``.
        y_test: int32 class labels, shape ``(N_test,)``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _round_half_up(value: float) -> int:
    """Round to the nearest integer, halves away from zero (for non-negative ``value``)."""
    return math.floor(value + 0.5)


def _stratified_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into shuffled (train, test) index arrays, class by class."""
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for label in np.unique(labels):  # ascending class order, so the draws are reproducible
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = _round_half_up(test_fraction * len(members))
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return train, test


def load_digits(*, test_fraction: float = 0.2, seed: int = 0, flat: bool = True) -> Split:
    r"""Load scikit-learn's 1,797 8×8 digit images as a stratified train/test split.

    Pixels are scaled to [0, 1] by the largest possible count,

    .. math::

        x = \mathrm{pixel} / 16,

    and labels are the digit, 0–9.

    The split is deterministic and stratified. With ``rng = numpy.random.default_rng(seed)``, for
    each class ``c`` in ascending order the indices of its ``n_c`` examples are shuffled by
    ``rng.permutation`` and the first ``floor(test_fraction * n_c + 0.5)`` (rounded half up) go to
    the test set, the rest to the training set; then the training and the test indices are each
    shuffled once more by ``rng.permutation``, so neither set is sorted by class. NumPy's
    ``Generator`` gives the same draws on every platform, so a seed names the same split
    everywhere (for a given NumPy version: NEP 19 allows streams to change between versions).

    Shapes: ``N_train + N_test = 1797``; with the default ``test_fraction=0.2`` they are 1438 and
    359.

    Args:
        test_fraction: share of each class that goes to the test set, in (0, 1).
        seed: seed of the NumPy generator that draws the split, a non-negative int.
        flat: if True, images are flattened to vectors of 64 pixels (row-major); if False they
            keep their layout as ``(N, 8, 8, 1)``, NHWC with one channel, for convolutions.

    Returns:
        A :class:`Split` ``(x_train, y_train, x_test, y_test)`` of NumPy arrays: ``x`` float32 of
        shape ``(N, 64)`` (``flat=True``) or ``(N, 8, 8, 1)`` (``flat=False``) with values in
        [0, 1]; ``y`` int32 of shape ``(N,)``.

    Raises:
        ValueError: if ``test_fraction`` is not in (0, 1), if it is so close to 0 or 1 that the
            test or the training set would be empty, or if ``seed`` is not a non-negative int.

    Example:
        >>> from fdl.data import load_digits
        >>> x_train, y_train, x_test, y_test = load_digits()
        >>> x_train.shape, x_train.dtype, y_train.shape, y_train.dtype
        ((1438, 64), dtype('float32'), (1438,), dtype('int32'))
        >>> x_test.shape, y_test.shape
        ((359, 64), (359,))
        >>> float(x_train.min()), float(x_train.max())
        (0.0, 1.0)
        >>> load_digits(flat=False).x_train.shape
        (1438, 8, 8, 1)

    References:
        E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
        Learning Repository, 1998 (the ``optdigits.tes`` part).
        https://archive.ics.uci.edu/dataset/80
    """
    fraction = check_open_fraction("test_fraction", test_fraction)
    seed = check_seed("seed", seed)
    if not isinstance(flat, bool):
        raise TypeError(f"`flat` must be a bool, got {flat!r}")

    from sklearn import datasets  # lazy: importing scikit-learn costs about a second

    bunch = datasets.load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float32)  # (N, 64), integers 0..16
    x = pixels / np.float32(_PIXEL_MAX)  # (N, 64) in [0, 1]
    y = np.asarray(bunch.target, dtype=np.int32)  # (N,)
    if not flat:
        x = x.reshape(-1, _SIDE, _SIDE, 1)  # (N, H, W, C): rows of 8 pixels, one channel

    train, test = _stratified_indices(y, fraction, seed)
    if len(test) == 0 or len(train) == 0:
        empty = "test" if len(test) == 0 else "training"
        raise ValueError(
            f"`test_fraction` must leave at least one example in each set, got {test_fraction!r}, "
            f"which leaves the {empty} set empty"
        )
    return Split(x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
