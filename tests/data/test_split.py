"""Tests for fdl.data.split_examples: the documented draw, partitions, stratification, errors."""

import math

import numpy as np
import pytest
from sklearn import datasets

from fdl.data import Split, load_digits, split_examples


def _data(n=50, classes=5):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)  # row i is 3i, 3i+1, 3i+2: i from x[:, 0]
    y = (np.arange(n) * 7 % classes).astype(np.int32)  # every class, not sorted
    return x, y


def _indices(part_x):
    return (part_x[:, 0] / 3).astype(int)


@pytest.mark.parametrize("stratify", [False, True])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_the_parts_partition_the_examples_and_keep_x_with_y(fraction, stratify):
    x, y = _data()
    split = split_examples(x, y, test_fraction=fraction, seed=3, stratify=stratify)
    assert isinstance(split, Split)
    train, test = _indices(split.x_train), _indices(split.x_test)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
    np.testing.assert_array_equal(split.y_train, y[train])  # each label stays with its example
    np.testing.assert_array_equal(split.y_test, y[test])


@pytest.mark.parametrize(
    ("fraction", "n", "n_test"), [(0.2, 50, 10), (0.25, 10, 3), (0.05, 10, 1), (0.3, 7, 2)]
)
def test_a_random_split_is_the_documented_draw(fraction, n, n_test):
    # 0.25 * 10 = 2.5 rounds half up to 3 (Python's round would give 2); 0.05 * 10 = 0.5 to 1
    x, y = _data(n)
    assert math.floor(fraction * n + 0.5) == n_test
    split = split_examples(x, y, test_fraction=fraction, seed=11)
    order = np.random.default_rng(11).permutation(n)
    np.testing.assert_array_equal(_indices(split.x_test), order[:n_test])
    np.testing.assert_array_equal(_indices(split.x_train), order[n_test:])


def test_a_stratified_split_holds_out_each_class_share():
    y = np.repeat(np.array([2, 0, 1], dtype=np.int32), [10, 30, 5])  # unequal classes, not sorted
    x = np.arange(len(y) * 2.0).reshape(-1, 2)
    split = split_examples(x, y, test_fraction=0.3, seed=0, stratify=True)
    for label, size in ((0, 30), (1, 5), (2, 10)):
        assert np.sum(split.y_test == label) == math.floor(0.3 * size + 0.5)  # 9, 2 (1.5 up), 3
        assert np.sum(split.y_train == label) == size - math.floor(0.3 * size + 0.5)
    assert not np.all(np.diff(split.y_train) >= 0)  # shuffled, not grouped by class


def test_load_digits_is_the_stratified_split_of_scikit_learns_digits():
    bunch = datasets.load_digits()
    x = (bunch.data / 16).astype(np.float32)
    expected = split_examples(x, bunch.target.astype(np.int32), test_fraction=0.3, seed=5, stratify=True)
    for got, want in zip(load_digits(test_fraction=0.3, seed=5), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_seed_names_one_split_and_the_inputs_are_not_changed():
    x, y = _data()
    x_before, y_before = x.copy(), y.copy()
    first = split_examples(x, y, seed=4)
    again = split_examples(x, y, seed=4)
    other = split_examples(x, y, seed=5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.y_test, other.y_test) or not np.array_equal(first.x_test, other.x_test)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    first.x_train[:] = -1  # new arrays, not views of x
    np.testing.assert_array_equal(x, x_before)


def test_images_keep_their_trailing_shape():
    x = np.zeros((12, 4, 4, 1), np.float32)
    y = np.arange(12) % 3
    split = split_examples(x, y, test_fraction=0.25)
    assert split.x_train.shape == (9, 4, 4, 1) and split.x_test.shape == (3, 4, 4, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"test_fraction": 0.0}, ValueError, r"^`test_fraction` must be in \(0, 1\), got 0\.0$"),
        ({"test_fraction": 1}, ValueError, r"^`test_fraction` must be in \(0, 1\), got 1$"),
        ({"test_fraction": True}, ValueError, r"^`test_fraction` must be in \(0, 1\), got True$"),
        ({"test_fraction": float("nan")}, ValueError, r"^`test_fraction` must be in \(0, 1\), got nan$"),
        ({"seed": -1}, ValueError, r"^`seed` must be a non-negative integer, got -1$"),
        ({"seed": 1.5}, ValueError, r"^`seed` must be a non-negative integer, got 1\.5$"),
        ({"stratify": "yes"}, TypeError, r"^`stratify` must be a bool, got 'yes'$"),
        (
            {"test_fraction": 0.005},
            ValueError,
            r"^`test_fraction` must leave at least one example in each part, got 0\.005, which leaves "
            r"the test part of the 50 examples empty$",
        ),
        (
            {"test_fraction": 0.99},
            ValueError,
            r"^`test_fraction` must leave at least one example in each part, got 0\.99, which leaves "
            r"the training part of the 50 examples empty$",
        ),
        (
            {"test_fraction": 0.04, "stratify": True},  # 0 of each class of 10 (2 of 50 unstratified)
            ValueError,
            r"^`test_fraction` must leave at least one example in each part, got 0\.04, which leaves "
            r"the test part of the 50 examples empty$",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    x, y = _data()
    with pytest.raises(error, match=message):
        split_examples(x, y, **kwargs)


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "message"),
    [
        (
            (10, 3),
            (9,),
            r"^`x` and `y` must hold the same number of examples on their leading axis, "
            r"got x of shape \(10, 3\) and y of shape \(9,\)$",
        ),
        ((), (1,), r"^`x` and `y` must hold the same number of examples .* got x of shape \(\) and y"),
        ((10, 3), (10, 1), r"^`y` must be a 1-D array of labels, got shape \(10, 1\)$"),
    ],
)
def test_mismatched_inputs_are_refused_with_their_shapes(x_shape, y_shape, message):
    with pytest.raises(ValueError, match=message):
        split_examples(np.zeros(x_shape), np.zeros(y_shape, np.int32))
