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

import numpy as np

from fdl._checks import check_open_fraction, check_seed
from fdl.data.split import Split, split_examples

__all__ = ["load_digits"]

_PIXEL_MAX = 16  # optdigits pixels count black pixels in a 4×4 block: 0..16
_SIDE = 8  # images are _SIDE × _SIDE


def load_digits(*, test_fraction: float = 0.2, seed: int = 0, flat: bool = True) -> Split:
    r"""Load scikit-learn's 1,797 8×8 digit images as a stratified train/test split.

    Pixels are scaled to [0, 1] by the largest possible count,

    .. math::

        x = \mathrm{pixel} / 16,

    and labels are the digit, 0–9.

    The split is deterministic and stratified: :func:`fdl.data.split_examples` with
    ``stratify=True`` holds out ``floor(test_fraction * n_c + 0.5)`` (rounded half up) of the
    ``n_c`` images of each digit, drawn by ``numpy.random.default_rng(seed)``, and shuffles both
    parts, so neither is sorted by class; a seed names the same split on every platform.

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
    check_open_fraction("test_fraction", test_fraction)  # before the second it takes to load
    check_seed("seed", seed)
    if not isinstance(flat, bool):
        raise TypeError(f"`flat` must be a bool, got {flat!r}")

    from sklearn import datasets  # lazy: importing scikit-learn costs about a second

    bunch = datasets.load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float32)  # (N, 64), integers 0..16
    x = pixels / np.float32(_PIXEL_MAX)  # (N, 64) in [0, 1]
    y = np.asarray(bunch.target, dtype=np.int32)  # (N,)
    if not flat:
        x = x.reshape(-1, _SIDE, _SIDE, 1)  # (N, H, W, C): rows of 8 pixels, one channel
    return split_examples(x, y, test_fraction=test_fraction, seed=seed, stratify=True)
