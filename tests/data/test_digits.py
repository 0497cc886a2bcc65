"""Tests for fdl.data.load_digits, checked against scikit-learn's own copy of the data."""

import numpy as np
import pytest
from sklearn import datasets

from fdl.data import Split, load_digits

N_TOTAL = 1797
# Examples per class in scikit-learn's digits (optdigits.tes), digits 0..9.
CLASS_COUNTS = np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180])


@pytest.fixture(scope="module")
def reference():
    """scikit-learn's digits as (x, y): x float32 pixel/16 of shape (N, 64), y int32 (N,)."""
    bunch = datasets.load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    return x, bunch.target.astype(np.int32)


@pytest.fixture(scope="module")
def split():
    return load_digits()


def _sorted_rows(x, y):
    """Rows of [x | y] in lexicographic order, to compare data sets as multisets of examples."""
    table = np.concatenate([x, y[:, None].astype(np.float32)], axis=1)  # (N, 65)
    order = np.lexsort(table.T[::-1])
    return table[order]


def test_shapes_dtypes_and_range(split):
    assert isinstance(split, Split)
    x_train, y_train, x_test, y_test = split
    assert x_train.shape == (1438, 64) and x_test.shape == (359, 64)
    assert y_train.shape == (1438,) and y_test.shape == (359,)
    assert len(y_train) + len(y_test) == N_TOTAL
    for x in (x_train, x_test):
        assert isinstance(x, np.ndarray) and x.dtype == np.float32
        assert x.min() == 0.0 and x.max() == 1.0
    for y in (y_train, y_test):
        assert isinstance(y, np.ndarray) and y.dtype == np.int32
        assert set(np.unique(y)) == set(range(10))


def test_pixels_are_multiples_of_one_sixteenth(split):
    pixels = np.concatenate([split.x_train, split.x_test]) * 16
    np.testing.assert_array_equal(pixels, np.round(pixels))


def test_train_and_test_partition_the_full_set(split, reference):
    x_ref, y_ref = reference
    x_all = np.concatenate([split.x_train, split.x_test])
    y_all = np.concatenate([split.y_train, split.y_test])
    np.testing.assert_array_equal(_sorted_rows(x_all, y_all), _sorted_rows(x_ref, y_ref))


def test_train_and_test_are_disjoint(split):
    # The 1,797 images are pairwise distinct, so disjoint indices mean disjoint rows.
    train_rows = {row.tobytes() for row in split.x_train}
    test_rows = {row.tobytes() for row in split.x_test}
    assert len(train_rows) == len(split.x_train) and len(test_rows) == len(split.x_test)
    assert train_rows.isdisjoint(test_rows)


def test_each_example_keeps_its_label(split, reference):
    x_ref, y_ref = reference
    label_of = {row.tobytes(): label for row, label in zip(x_ref, y_ref, strict=True)}
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        np.testing.assert_array_equal([label_of[row.tobytes()] for row in x], y)


@pytest.mark.parametrize(
    ("test_fraction", "expected_test_counts"),
    [
        # round(0.2 * count): 35.6, 36.4, 35.4, 36.6, 36.2, 36.4, 36.2, 35.8, 34.8, 36.0
        (0.2, [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]),
        # halves round up: 88.5 -> 89, 91.5 -> 92, 90.5 -> 91, 89.5 -> 90
        (0.5, [89, 91, 89, 92, 91, 91, 91, 90, 87, 90]),
    ],
)
def test_stratified_counts_per_class(test_fraction, expected_test_counts):
    split = load_digits(test_fraction=test_fraction)
    test_counts = np.bincount(split.y_test, minlength=10)
    np.testing.assert_array_equal(test_counts, expected_test_counts)
    train_counts = np.bincount(split.y_train, minlength=10)
    np.testing.assert_array_equal(train_counts + test_counts, CLASS_COUNTS)


def test_classes_are_mixed_not_sorted(split):
    # The final shuffle means neither set is grouped by class.
    assert not np.all(np.diff(split.y_train) >= 0)
    assert not np.all(np.diff(split.y_test) >= 0)


def test_same_seed_same_split_other_seed_other_split(split):
    again = load_digits(seed=0)
    for a, b in zip(split, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = load_digits(seed=1)
    assert not np.array_equal(split.x_train, other.x_train)
    assert not np.array_equal(split.y_test, other.y_test)
    # Another seed draws other test members, not only another order.
    test_rows = {row.tobytes() for row in split.x_test}
    other_rows = {row.tobytes() for row in other.x_test}
    assert test_rows != other_rows


def test_image_layout_is_the_reshape_of_flat(split):
    images = load_digits(flat=False)
    assert images.x_train.shape == (1438, 8, 8, 1) and images.x_test.shape == (359, 8, 8, 1)
    assert images.x_train.dtype == np.float32
    np.testing.assert_array_equal(images.x_train, split.x_train.reshape(-1, 8, 8, 1))
    np.testing.assert_array_equal(images.x_test, split.x_test.reshape(-1, 8, 8, 1))
    np.testing.assert_array_equal(images.y_train, split.y_train)
    np.testing.assert_array_equal(images.y_test, split.y_test)


def test_image_layout_matches_sklearn_images(reference):
    # Row r, column c of an image is pixel 8*r + c of the flat vector (sklearn's `images`).
    bunch = datasets.load_digits()
    images = load_digits(flat=False)
    flat = load_digits()
    index = {row.tobytes(): i for i, row in enumerate(reference[0])}
    for x_img, x_flat in zip(images.x_test[:20], flat.x_test[:20], strict=True):
        i = index[x_flat.tobytes()]
        np.testing.assert_array_equal(x_img[..., 0] * 16, bunch.images[i])


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.2", None])
def test_bad_test_fraction(bad):
    with pytest.raises(ValueError, match=r"`test_fraction` must be in \(0, 1\), got "):
        load_digits(test_fraction=bad)


def test_test_fraction_that_empties_a_set():
    # 0.001 * 183 rounds to 0 for every class; 0.999 * n rounds to n for every class.
    with pytest.raises(ValueError, match=r"`test_fraction` .*0\.001, which leaves the test part"):
        load_digits(test_fraction=0.001)
    with pytest.raises(
        ValueError, match=r"got 0\.999, which leaves the training part of the 1797 examples empty"
    ):
        load_digits(test_fraction=0.999)


@pytest.mark.parametrize("bad", [-1, 1.5, None, True])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match=r"`seed` must be a non-negative integer, got "):
        load_digits(seed=bad)


def test_bad_flat():
    with pytest.raises(TypeError, match=r"`flat` must be a bool, got 'no'"):
        load_digits(flat="no")
