"""MaxPool1D/2D, AvgPool1D/2D, GlobalAvgPool and GlobalMaxPool.

* values against a NumPy reference written here (pad, then loop over output positions), for
  max and average, both divisors of the average, paddings and strides; hand-computed numbers;
* GlobalAvgPool and GlobalMaxPool against ``numpy.mean`` and ``numpy.max`` (and GlobalMaxPool
  against PyTorch's ``AdaptiveMaxPool1d/2d(1)`` in ``test_torch_layers.py``);
* the layer contract for every layer (max pooling is differentiable away from ties; the
  fixture's random normal inputs have a unique maximum in every window);
* composition with convolutions in ``fdl.nn.Serial``, declared shape against actual;
* every error message.

Tolerances: float64 results use 1e-12 (a window sums at most 9 O(1) numbers); max pooling is
exact (it selects an element), so it is compared with equality.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import nn
from fdl.nn.conv import Conv1D, Conv2D
from fdl.nn.pooling import (
    AvgPool1D,
    AvgPool2D,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxPool1D,
    MaxPool2D,
)
from tests.nn.helpers import check_layer_contract

TOL = 1e-12
POOL = 4096


def normal(key, shape, dtype=jnp.float32):
    """Standard normal draws of ``shape``, cut from one fixed-size draw (compiled once)."""
    size = math.prod(shape)
    assert size <= POOL, f"normal(): {shape} needs more than {POOL} draws"
    return jnp.asarray(np.asarray(jax.random.normal(key, (POOL,), dtype))[:size].reshape(shape))


def reference_pads(padding, spatial, window, strides):
    """The (low, high) pairs; "SAME" from ``jax.lax.padtype_to_pads``."""
    if padding == "VALID":
        return [(0, 0)] * len(spatial)
    if padding == "SAME":
        return [tuple(p) for p in jax.lax.padtype_to_pads(spatial, window, strides, "SAME")]
    if isinstance(padding, int):
        return [(padding, padding)] * len(spatial)
    return [tuple(p) for p in padding]


def pool_reference(x, kind, window, strides, pads, count_include_pad=True):
    """Max or mean of each window by a loop over output positions. x: (N, *spatial, C)."""
    ndim = len(window)
    fill = -np.inf if kind == "max" else 0.0
    padded = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    real = np.pad(np.ones(x.shape[1:-1]), pads)  # 1 on real positions, 0 on padding
    out = [(padded.shape[1 + i] - window[i]) // strides[i] + 1 for i in range(ndim)]
    y = np.empty((x.shape[0], *out, x.shape[-1]))
    for o in np.ndindex(*out):
        box = tuple(slice(o[i] * strides[i], o[i] * strides[i] + window[i]) for i in range(ndim))
        patch = padded[(slice(None), *box)]  # (N, *window, C)
        axes = tuple(range(1, ndim + 1))
        if kind == "max":
            y[(slice(None), *o)] = patch.max(axis=axes)
        else:
            divisor = math.prod(window) if count_include_pad else real[box].sum()
            y[(slice(None), *o)] = patch.sum(axis=axes) / divisor
    return y


def as_tuple(value, ndim):
    return (value,) * ndim if isinstance(value, int) else tuple(value)


# (id, factory, kind, kwargs, per-example input shape)
REFERENCE_CASES = [
    ("max1d", MaxPool1D, "max", {"window": 2}, (7, 2)),
    ("max1d_same_strided", MaxPool1D, "max", {"window": 3, "strides": 2, "padding": "SAME"}, (8, 2)),
    ("max1d_explicit_overlap", MaxPool1D, "max", {"window": 3, "strides": 1, "padding": [(2, 1)]}, (5, 3)),
    ("max2d", MaxPool2D, "max", {"window": 2}, (6, 5, 2)),
    ("max2d_same_stride2", MaxPool2D, "max", {"window": 3, "strides": 2, "padding": "SAME"}, (5, 6, 2)),
    (
        "max2d_explicit_rect",
        MaxPool2D,
        "max",
        {"window": (3, 2), "strides": (1, 2), "padding": ((1, 1), (0, 1))},
        (5, 4, 2),
    ),
    ("max2d_int_padding", MaxPool2D, "max", {"window": 3, "strides": 2, "padding": 1}, (5, 5, 1)),
    ("avg1d", AvgPool1D, "avg", {"window": 3}, (7, 2)),
    ("avg1d_same_include", AvgPool1D, "avg", {"window": 3, "strides": 1, "padding": "SAME"}, (5, 2)),
    (
        "avg1d_same_exclude",
        AvgPool1D,
        "avg",
        {"window": 4, "strides": 3, "padding": "SAME", "count_include_pad": False},
        (8, 2),
    ),
    ("avg2d", AvgPool2D, "avg", {"window": (2, 3), "strides": (2, 1)}, (6, 5, 2)),
    ("avg2d_same_include", AvgPool2D, "avg", {"window": 3, "strides": 2, "padding": "SAME"}, (5, 6, 2)),
    (
        "avg2d_same_exclude",
        AvgPool2D,
        "avg",
        {"window": 3, "strides": 2, "padding": "SAME", "count_include_pad": False},
        (5, 6, 2),
    ),
    (
        "avg2d_explicit_exclude",
        AvgPool2D,
        "avg",
        {"window": (3, 2), "strides": 1, "padding": ((2, 0), (1, 1)), "count_include_pad": False},
        (4, 4, 3),
    ),
]


@pytest.mark.parametrize(
    "factory, kind, kwargs, shape",
    [c[1:] for c in REFERENCE_CASES],
    ids=[c[0] for c in REFERENCE_CASES],
)
def test_pool_matches_numpy_loops(factory, kind, kwargs, shape, keys):
    ndim = len(shape) - 1
    layer = factory(**kwargs)
    _, state, out_shape = layer.init(next(keys), shape)
    with jax.enable_x64(True):
        x = normal(next(keys), (2, *shape), jnp.float64)
        y, _ = layer.apply({}, state, x)
        assert y.dtype == jnp.float64
    window = as_tuple(kwargs["window"], ndim)
    strides = as_tuple(kwargs.get("strides", window), ndim)
    pads = reference_pads(kwargs.get("padding", "VALID"), shape[:-1], window, strides)
    expected = pool_reference(
        np.asarray(x), kind, window, strides, pads, kwargs.get("count_include_pad", True)
    )
    assert y.shape == expected.shape == (2, *out_shape)
    if kind == "max":
        np.testing.assert_array_equal(y, expected)
    else:
        np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL)


def test_hand_computed_values():
    x = jnp.arange(16.0).reshape(4, 4, 1)
    np.testing.assert_array_equal(MaxPool2D(2).apply({}, {}, x)[0][..., 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(AvgPool2D(2).apply({}, {}, x)[0][..., 0], [[2.5, 4.5], [10.5, 12.5]])
    # padding 1 on [1, 3, 2, 5, 4]: windows [pad, 1], [3, 2], [5, 4]
    s = jnp.array([1.0, 3.0, 2.0, 5.0, 4.0]).reshape(5, 1)
    np.testing.assert_array_equal(MaxPool1D(2, padding=1).apply({}, {}, s)[0][:, 0], [1, 3, 5])
    # "SAME", window 3, stride 1 on [3, 6, 9]: pads (1, 1); divisor 3, or 2, 3, 2 real elements
    s = jnp.array([3.0, 6.0, 9.0]).reshape(3, 1)
    y, _ = AvgPool1D(3, strides=1, padding="SAME").apply({}, {}, s)
    np.testing.assert_allclose(y[:, 0], [3.0, 6.0, 5.0], rtol=1e-7)
    y, _ = AvgPool1D(3, strides=1, padding="SAME", count_include_pad=False).apply({}, {}, s)
    np.testing.assert_allclose(y[:, 0], [4.5, 6.0, 7.5], rtol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.int32])
def test_max_padding_never_wins_over_negative_values(dtype):
    # "SAME", window 2 on 3 steps pads one at the end: the last window is [-7, pad] -> -7, not 0.
    x = jnp.array([-5, -3, -7], dtype).reshape(3, 1)
    y, _ = MaxPool1D(2, padding="SAME").apply({}, {}, x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[:, 0], [-3, -7])


def test_max_gradient_goes_to_each_windows_maximum():
    x = jnp.array([1.0, 3.0, 2.0, 5.0]).reshape(4, 1)
    grad = jax.grad(lambda v: jnp.sum(MaxPool1D(2).apply({}, {}, v)[0]))(x)
    np.testing.assert_array_equal(grad[:, 0], [0.0, 1.0, 0.0, 1.0])


def test_average_of_integers_is_float32():
    x = jnp.arange(8, dtype=jnp.int32).reshape(2, 2, 2)
    y, _ = AvgPool2D(2).apply({}, {}, x)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y[0, 0], [3.0, 4.0])
    y, _ = GlobalAvgPool(2).apply({}, {}, x)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, [3.0, 4.0])


@pytest.mark.parametrize("spatial_ndim, shape", [(1, (6, 3)), (2, (5, 4, 3)), (3, (2, 3, 4, 2))])
def test_global_avg_pool_matches_numpy_mean(spatial_ndim, shape, keys):
    layer = GlobalAvgPool(spatial_ndim)
    assert layer.init(next(keys), shape)[2] == (shape[-1],)
    with jax.enable_x64(True):
        x = normal(next(keys), (2, 3, *shape), jnp.float64)
        y, _ = layer.apply({}, {}, x)
    expected = np.asarray(x).mean(axis=tuple(range(2, 2 + spatial_ndim)))
    assert y.shape == (2, 3, shape[-1])
    np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("spatial_ndim, shape", [(1, (6, 3)), (2, (5, 4, 3)), (3, (2, 3, 4, 2))])
def test_global_max_pool_matches_numpy_max(spatial_ndim, shape, keys):
    layer = GlobalMaxPool(spatial_ndim)
    params, state, out_shape = layer.init(next(keys), shape)
    assert (params, state, out_shape) == ({}, {}, (shape[-1],))
    with jax.enable_x64(True):
        x = normal(next(keys), (2, 3, *shape), jnp.float64)
        y, _ = layer.apply({}, {}, x)
    expected = np.asarray(x).max(axis=tuple(range(2, 2 + spatial_ndim)))
    assert y.shape == (2, 3, shape[-1]) and y.dtype == jnp.float64
    np.testing.assert_array_equal(y, expected)  # a max selects an element: exact


def test_global_max_pool_hand_computed_and_its_gradient():
    x = jnp.array([[[1.0, -2.0], [3.0, -4.0]], [[0.5, -1.0], [2.0, -3.0]]])  # (H=2, W=2, C=2)
    y, _ = GlobalMaxPool(2).apply({}, {}, x)
    np.testing.assert_array_equal(y, [3.0, -1.0])
    grad = jax.grad(lambda v: jnp.sum(GlobalMaxPool(2).apply({}, {}, v)[0] * jnp.array([1.0, 5.0])))(x)
    expected = np.zeros((2, 2, 2))
    expected[0, 1, 0] = 1.0  # channel 0's maximum 3 at (0, 1)
    expected[1, 0, 1] = 5.0  # channel 1's maximum -1 at (1, 0), weighted by 5
    np.testing.assert_array_equal(grad, expected)
    # A tie splits the gradient equally (jnp.max's rule; PyTorch routes it to one entry).
    tie = jax.grad(lambda v: GlobalMaxPool(1).apply({}, {}, v)[0].sum())(jnp.array([[2.0], [2.0], [1.0]]))
    np.testing.assert_array_equal(tie[:, 0], [0.5, 0.5, 0.0])


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bfloat16])
def test_global_max_pool_keeps_the_dtype(dtype):
    x = jnp.array([[-5, 3], [-7, 1]], dtype)  # (T=2, C=2)
    y, _ = GlobalMaxPool(1).apply({}, {}, x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.astype(jnp.float32), [-5.0, 3.0])


def test_global_pools_ignore_a_mask():
    # Documented: neither takes a padding mask, so a mask handed down changes nothing.
    x = jnp.array([[[1.0], [9.0]], [[4.0], [2.0]]])  # (B=2, T=2, C=1)
    mask = jnp.array([[True, False], [True, True]])
    for layer, expected in ((GlobalMaxPool(1), [[9.0], [4.0]]), (GlobalAvgPool(1), [[5.0], [3.0]])):
        y, _ = layer.apply({}, {}, x, mask=mask)
        np.testing.assert_array_equal(y, expected)


# ----------------------------------------------------------------------------------------------
# The layer contract, and composition.


# Every row uses the example shape (6, 2) or (5, 4, 2), as test_conv.py does, so the eager
# operations compiled for one row serve the next.
CONTRACT = [
    ("max_pool1d_same_strided", lambda: MaxPool1D(3, strides=2, padding="SAME"), (6, 2)),
    ("max_pool2d_explicit", lambda: MaxPool2D((3, 2), strides=(2, 1), padding=((1, 1), (0, 1))), (5, 4, 2)),
    ("avg_pool1d_same", lambda: AvgPool1D(3, strides=1, padding="SAME"), (6, 2)),
    (
        "avg_pool2d_same_exclude",
        lambda: AvgPool2D(3, strides=2, padding="SAME", count_include_pad=False),
        (5, 4, 2),
    ),
    ("global_avg_pool1d", lambda: GlobalAvgPool(1), (6, 2)),
    ("global_avg_pool2d", lambda: GlobalAvgPool(2), (5, 4, 2)),
    ("global_max_pool1d", lambda: GlobalMaxPool(1), (6, 2)),
    ("global_max_pool2d", lambda: GlobalMaxPool(2), (5, 4, 2)),
]


@pytest.mark.parametrize("factory, shape", [c[1:] for c in CONTRACT], ids=[c[0] for c in CONTRACT])
def test_layer_contract(factory, shape, keys):
    check_layer_contract(factory, shape, keys)


def test_conv_pool_stack_declares_its_shapes(keys):
    model = nn.Serial(Conv2D(4, 3, padding="SAME"), nn.Relu(), MaxPool2D(2), nn.Flatten(3), nn.Dense(5))
    params, state, shape = model.init(next(keys), (8, 6, 1))
    assert shape == (5,)
    assert sorted(params) == ["conv2d_0", "dense_0"]  # parameter-free layers are left out
    assert params["conv2d_0"]["w"].shape == (3, 3, 1, 4)
    assert params["dense_0"]["w"].shape == (4 * 3 * 4, 5)  # (8/2) * (6/2) * 4 features
    y, _ = model.apply(params, state, normal(next(keys), (2, 8, 6, 1)))
    assert y.shape == (2, 5)

    for pool in (GlobalAvgPool(1), GlobalMaxPool(1)):
        signal = nn.Serial(Conv1D(6, 3, strides=2), nn.Relu(), pool, nn.Dense(2))
        params, state, shape = signal.init(next(keys), (9, 2))
        assert shape == (2,)
        y, _ = signal.apply(params, state, normal(next(keys), (3, 4, 9, 2)))
        assert y.shape == (3, 4, 2)


# ----------------------------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MaxPool2D(0), r"`window` must be a positive int or a tuple of 2 positive ints, got 0"),
        (
            lambda: AvgPool1D((2, 2)),
            r"`window` must be a positive int or a tuple of 1 positive ints, got \(2, 2\)",
        ),
        (
            lambda: MaxPool2D(2, strides=(1, 0)),
            r"`strides` must be a positive int or a tuple of 2 positive ints, got \(1, 0\)",
        ),
        (
            lambda: AvgPool2D(2, padding="FULL"),
            r"`padding` must be 'SAME', 'VALID', a non-negative int or a sequence of 2 \(low, high\) pairs of non-negative ints, got 'FULL'",
        ),
        (lambda: MaxPool1D(2, padding=[(0, -1)]), r"`padding` must be .* got \[\(0, -1\)\]"),
        (
            lambda: MaxPool2D(2, padding=((2, 0), (0, 0))),
            r"`padding` of pooling must be smaller than the window on each side \(so every window holds a real element\), got padding \(\(2, 0\), \(0, 0\)\) with window \(2, 2\)",
        ),
        (
            lambda: AvgPool1D(3, padding=3),
            r"`padding` of pooling must be smaller than the window .* got padding \(\(3, 3\),\) with window \(3,\)",
        ),
        (lambda: GlobalAvgPool(0), r"`spatial_ndim` must be a positive integer, got 0"),
        (lambda: GlobalMaxPool(-1), r"`spatial_ndim` must be a positive integer, got -1"),
    ],
)
def test_bad_construction_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "layer, shape, match",
    [
        (
            MaxPool2D(2, name="p"),
            (4, 4),
            r"^MaxPool2D expects a per-example input_shape \(H, W, C\), got \(4, 4\)",
        ),
        (
            AvgPool1D(2, name="p"),
            (4, 4, 1),
            r"^AvgPool1D expects a per-example input_shape \(T, C\), got \(4, 4, 1\)",
        ),
        (
            MaxPool2D(3, name="p"),
            (2, 5, 1),
            r"^MaxPool2D: the window spans \(3, 3\), more than the padded input \(2, 5\) \(spatial shape \(2, 5\), padding \(\(0, 0\), \(0, 0\)\)\), so the output would be empty",
        ),
        (
            GlobalAvgPool(2, name="g"),
            (5, 3),
            r"^GlobalAvgPool averages 2 spatial axes and expects a per-example input_shape of 3 axes \(\*spatial, C\), got \(5, 3\)",
        ),
        (GlobalAvgPool(1), (5, -3), r"`input_shape` must be a tuple of non-negative ints, got \(5, -3\)"),
        (
            GlobalMaxPool(1, name="g"),
            (5, 4, 3),
            r"^GlobalMaxPool takes the max over 1 spatial axis and expects a per-example input_shape of 2 axes \(\*spatial, C\), got \(5, 4, 3\)$",
        ),
        (
            GlobalMaxPool(2),
            (0, 4, 3),
            r"^GlobalMaxPool needs a non-empty window, got input_shape \(0, 4, 3\)$",
        ),
    ],
)
def test_bad_input_shape_at_init(layer, shape, match, key):
    with pytest.raises(ValueError, match=match):
        layer.init(key, shape)


@pytest.mark.parametrize(
    "layer, x_shape, match",
    [
        (
            MaxPool2D(2, name="p"),
            (4, 4),
            r"^MaxPool2D expects inputs of shape \(\.\.\., H, W, C\), got shape \(4, 4\)",
        ),
        (
            AvgPool1D(2, name="p"),
            (4,),
            r"^AvgPool1D expects inputs of shape \(\.\.\., T, C\), got shape \(4,\)",
        ),
        (
            AvgPool2D(3, name="p"),
            (5, 2, 4, 1),
            r"^AvgPool2D: the window spans \(3, 3\), more than the padded input \(2, 4\)",
        ),
        (
            GlobalAvgPool(2, name="g"),
            (5, 3),
            r"^GlobalAvgPool expects inputs of shape \(\.\.\., d1, d2, C\), got shape \(5, 3\)",
        ),
        (
            GlobalMaxPool(1),
            (5,),
            r"^GlobalMaxPool expects inputs of shape \(\.\.\., d1, C\), got shape \(5,\)$",
        ),
        (GlobalMaxPool(1), (2, 0, 3), r"^GlobalMaxPool needs a non-empty window, got shape \(2, 0, 3\)$"),
    ],
)
def test_bad_input_at_apply(layer, x_shape, match):
    with pytest.raises(ValueError, match=match):
        layer.apply({}, {}, jnp.ones(x_shape))


def test_bad_input_caught_under_jit():
    with pytest.raises(ValueError, match=r"expects inputs of shape \(\.\.\., H, W, C\), got shape \(3, 4\)"):
        jax.jit(MaxPool2D(2).apply)({}, {}, jnp.ones((3, 4)))
