"""Conv1D, Conv2D, ConvTranspose1D and ConvTranspose2D.

* values against a NumPy reference written here with explicit loops (pad, then loop over output
  positions, kernel taps, groups), in float64, across strides, paddings, dilations and groups;
  hand-computed numbers on tiny inputs;
* ConvTranspose1D/2D: the adjoint identity <conv(x), y> = <x, conv_transpose(y)> with the same
  kernel, strides, padding, dilation and groups, equality with ``jax.vjp`` of the convolution
  with respect to its input, and hand-computed output sizes and values (``test_torch_layers.py``
  adds PyTorch's ConvTranspose1d/2d with groups);
* the layer contract (shapes, vmap, jit, finite-difference gradients) for every layer;
* parameters, initializers, dtypes and every error message.

Tolerances: float64 comparisons use 1e-12 (each output sums at most a few hundred O(1) products,
so rounding stays near 1e-14); the one statistical test states its own bound.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.initializers import compute_fans
from fdl.nn.conv import Conv1D, Conv2D
from fdl.nn.conv_transpose import ConvTranspose1D, ConvTranspose2D
from tests.nn.helpers import check_layer_contract

TOL = 1e-12  # float64; see the module docstring


# ----------------------------------------------------------------------------------------------
# The independent reference.


def reference_pads(padding, spatial, kernel, strides, dilation):
    """The (low, high) pairs; "SAME" from ``jax.lax.padtype_to_pads`` on the dilated window."""
    ndim = len(spatial)
    if padding == "VALID":
        return [(0, 0)] * ndim
    if padding == "SAME":
        spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
        return [tuple(p) for p in jax.lax.padtype_to_pads(spatial, spans, strides, "SAME")]
    if isinstance(padding, int):
        return [(padding, padding)] * ndim
    return [tuple(p) for p in padding]


def conv_reference(x, w, b, strides, pads, dilation, groups):
    """Cross-correlation by explicit loops. x: (N, *spatial, C), w: (*kernel, C/G, F)."""
    ndim = w.ndim - 2
    kernel, c_per_group, features = w.shape[:ndim], w.shape[-2], w.shape[-1]
    f_per_group = features // groups
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    out = [(xp.shape[1 + i] - dilation[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(ndim)]
    y = np.zeros((x.shape[0], *out, features))
    for n in range(x.shape[0]):
        for o in np.ndindex(*out):
            for f in range(features):
                g = f // f_per_group
                total = b[f]
                for tap in np.ndindex(*kernel):
                    pos = tuple(o[i] * strides[i] + tap[i] * dilation[i] for i in range(ndim))
                    for c in range(c_per_group):
                        total += xp[(n, *pos, g * c_per_group + c)] * w[(*tap, c, f)]
                y[(n, *o, f)] = total
    return y


POOL = 4096


def normal(key, shape, dtype=jnp.float32):
    """Standard normal draws of ``shape``, cut from one fixed-size draw (compiled once)."""
    size = math.prod(shape)
    assert size <= POOL, f"normal(): {shape} needs more than {POOL} draws"
    return jnp.asarray(np.asarray(jax.random.normal(key, (POOL,), dtype))[:size].reshape(shape))


def normal_init(key, shape, dtype=jnp.float32):
    """An initializer drawing standard normals through :func:`normal` (fast to compile)."""
    return normal(key, tuple(shape), dtype)


def as_tuple(value, ndim):
    return (value,) * ndim if isinstance(value, int) else tuple(value)


# (id, factory, kwargs, per-example input shape)
REFERENCE_CASES = [
    ("1d_same", Conv1D, {"features": 3, "kernel_size": 3}, (7, 2)),
    ("1d_valid_stride2", Conv1D, {"features": 2, "kernel_size": 4, "strides": 2, "padding": "VALID"}, (9, 3)),
    ("1d_same_stride3_even", Conv1D, {"features": 2, "kernel_size": 2, "strides": 3}, (8, 1)),
    (
        "1d_explicit_dilated",
        Conv1D,
        {"features": 2, "kernel_size": 3, "padding": [(3, 1)], "dilation": 2},
        (6, 2),
    ),
    ("1d_groups", Conv1D, {"features": 4, "kernel_size": 2, "groups": 2, "strides": 2, "padding": 1}, (7, 4)),
    ("1d_depthwise", Conv1D, {"features": 6, "kernel_size": 3, "groups": 3}, (5, 3)),
    ("2d_same", Conv2D, {"features": 3, "kernel_size": 3}, (5, 6, 2)),
    (
        "2d_valid_rect_strided",
        Conv2D,
        {"features": 2, "kernel_size": (3, 2), "strides": (2, 1), "padding": "VALID"},
        (7, 5, 3),
    ),
    ("2d_same_stride2", Conv2D, {"features": 2, "kernel_size": 3, "strides": 2}, (6, 5, 2)),
    (
        "2d_explicit_asym",
        Conv2D,
        {"features": 2, "kernel_size": (2, 3), "padding": ((1, 0), (2, 1))},
        (4, 5, 2),
    ),
    ("2d_int_padding", Conv2D, {"features": 2, "kernel_size": 3, "strides": 2, "padding": 1}, (5, 5, 1)),
    ("2d_dilated_same", Conv2D, {"features": 2, "kernel_size": 3, "dilation": 2}, (6, 6, 2)),
    (
        "2d_groups_mixed",
        Conv2D,
        {
            "features": 6,
            "kernel_size": (2, 3),
            "strides": (1, 2),
            "padding": ((0, 2), (1, 1)),
            "dilation": (2, 1),
            "groups": 2,
        },
        (5, 6, 4),
    ),
    ("2d_depthwise", Conv2D, {"features": 3, "kernel_size": 3, "groups": 3}, (5, 4, 3)),
    (
        "2d_depthwise_x2_strided",
        Conv2D,
        {"features": 4, "kernel_size": 2, "groups": 2, "strides": 2, "padding": "VALID"},
        (5, 4, 2),
    ),
]


@pytest.mark.parametrize(
    "factory, kwargs, shape", [c[1:] for c in REFERENCE_CASES], ids=[c[0] for c in REFERENCE_CASES]
)
def test_conv_matches_numpy_loops(factory, kwargs, shape, keys):
    ndim = len(shape) - 1
    with jax.enable_x64(True):
        layer = factory(**kwargs, w_init=normal_init, b_init=normal_init, param_dtype=jnp.float64)
        params, state, out_shape = layer.init(next(keys), shape)
        x = normal(next(keys), (2, *shape), jnp.float64)
        y, _ = layer.apply(params, state, x)
        assert y.dtype == jnp.float64
    strides = as_tuple(kwargs.get("strides", 1), ndim)
    dilation = as_tuple(kwargs.get("dilation", 1), ndim)
    kernel = as_tuple(kwargs["kernel_size"], ndim)
    pads = reference_pads(kwargs.get("padding", "SAME"), shape[:-1], kernel, strides, dilation)
    expected = conv_reference(
        np.asarray(x),
        np.asarray(params["w"]),
        np.asarray(params["b"]),
        strides,
        pads,
        dilation,
        kwargs.get("groups", 1),
    )
    assert y.shape == expected.shape == (2, *out_shape)
    np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("n, stride", [(5, 1), (5, 2), (6, 2), (7, 3)])
def test_same_padding_gives_ceil_of_size_over_stride(n, stride, key):
    _, _, shape = Conv2D(2, 3, strides=stride).init(key, (n, n + 1, 1))
    assert shape == (math.ceil(n / stride), math.ceil((n + 1) / stride), 2)


def test_hand_computed_values():
    # 2-D: w[0,0] = 1, w[1,1] = -1, so y[i,j] = x[i,j] - x[i+1,j+1] + b = 1 - 5 + 0.5.
    x = jnp.arange(1.0, 10.0).reshape(3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]
    w = jnp.array([[1.0, 0.0], [0.0, -1.0]]).reshape(2, 2, 1, 1)
    y, _ = Conv2D(1, 2, padding="VALID").apply({"w": w, "b": jnp.array([0.5])}, {}, x)
    np.testing.assert_array_equal(y[..., 0], [[-3.5, -3.5], [-3.5, -3.5]])
    # 1-D, stride 2, one zero in front: padded [0,1,2,3,4,5], windows at 0, 2, 4 with w = [1, 2].
    x = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(5, 1)
    w = jnp.array([1.0, 2.0]).reshape(2, 1, 1)
    y, _ = Conv1D(1, 2, strides=2, padding=[(1, 0)], use_bias=False).apply({"w": w}, {}, x)
    np.testing.assert_array_equal(y[:, 0], [0 + 2, 2 + 6, 4 + 10])
    # 1-D, dilation 2: y[t] = x[t] - x[t + 2].
    w = jnp.array([1.0, -1.0]).reshape(2, 1, 1)
    y, _ = Conv1D(1, 2, dilation=2, padding="VALID", use_bias=False).apply({"w": w}, {}, x)
    np.testing.assert_array_equal(y[:, 0], [-2.0, -2.0, -2.0])
    # groups = 2 with 1x1 kernels: each output channel scales its own input channel only.
    x = jnp.array([[1.0, 10.0], [2.0, 20.0]])  # (T=2, C=2)
    w = jnp.array([3.0, 5.0]).reshape(1, 1, 2)  # (k=1, C/G=1, F=2)
    y, _ = Conv1D(2, 1, groups=2, use_bias=False).apply({"w": w}, {}, x)
    np.testing.assert_array_equal(y, [[3.0, 50.0], [6.0, 100.0]])


# ----------------------------------------------------------------------------------------------
# ConvTranspose1D/2D: the adjoint.

# (id, kwargs, per-example input shape (*spatial', C), features); 2-D unless the shape says 1-D
TRANSPOSE_CASES = [
    ("same_stride1", {"kernel_size": 3}, (4, 5, 2), 3),
    ("same_stride2", {"kernel_size": 3, "strides": 2}, (3, 4, 2), 2),
    ("same_stride3_dilated", {"kernel_size": (3, 2), "strides": (3, 2), "dilation": (1, 2)}, (2, 3, 1), 2),
    ("valid_stride2", {"kernel_size": (3, 2), "strides": 2, "padding": "VALID"}, (3, 3, 2), 2),
    (
        "valid_stride2_outpad",
        {"kernel_size": 3, "strides": 2, "padding": "VALID", "output_padding": (1, 0)},
        (3, 3, 2),
        1,
    ),
    (
        "explicit_asym",
        {"kernel_size": (2, 3), "strides": (2, 3), "padding": ((2, 0), (1, 3)), "output_padding": (0, 2)},
        (3, 3, 2),
        2,
    ),
    (
        "explicit_pad_beyond_kernel",
        {"kernel_size": 2, "padding": ((3, 1), (0, 2)), "dilation": 2},
        (6, 5, 1),
        2,
    ),
    ("int_padding", {"kernel_size": 3, "strides": 2, "padding": 1}, (3, 4, 3), 2),
    (
        "groups2_strided_outpad",
        {
            "kernel_size": (3, 2),
            "strides": 2,
            "padding": 1,
            "output_padding": 1,
            "groups": 2,
            "dilation": (1, 2),
        },
        (3, 3, 4),
        6,
    ),
    ("groups3_same", {"kernel_size": 2, "strides": (1, 2), "groups": 3}, (3, 2, 6), 3),
    ("depthwise_x2", {"kernel_size": 3, "strides": 2, "padding": "VALID", "groups": 2}, (2, 3, 2), 4),
    ("1d_same_stride2", {"kernel_size": 3, "strides": 2}, (4, 2), 3),
    (
        "1d_valid_dilated_outpad",
        {"kernel_size": 3, "strides": 3, "padding": "VALID", "dilation": 2, "output_padding": 2},
        (3, 1),
        2,
    ),
    (
        "1d_groups_explicit",
        {"kernel_size": 2, "strides": 2, "padding": [(1, 2)], "groups": 2, "output_padding": 1},
        (4, 4),
        2,
    ),
]


@pytest.mark.parametrize(
    "kwargs, y_shape, features", [c[1:] for c in TRANSPOSE_CASES], ids=[c[0] for c in TRANSPOSE_CASES]
)
def test_conv_transpose_is_the_adjoint_and_the_vjp(kwargs, y_shape, features, keys):
    ndim = len(y_shape) - 1
    conv_kwargs = {k: v for k, v in kwargs.items() if k != "output_padding"}
    transpose_factory, conv_factory = {1: (ConvTranspose1D, Conv1D), 2: (ConvTranspose2D, Conv2D)}[ndim]
    groups = kwargs.get("groups", 1)
    with jax.enable_x64(True):
        transpose = transpose_factory(
            features, **kwargs, use_bias=False, w_init=normal_init, param_dtype=jnp.float64
        )
        params, _, x_shape = transpose.init(next(keys), y_shape)
        kernel = as_tuple(kwargs["kernel_size"], ndim)
        assert params["w"].shape == (*kernel, features // groups, y_shape[-1])
        # The forward convolution with the same kernel array maps x's shape back to y's.
        conv = conv_factory(y_shape[-1], **conv_kwargs, use_bias=False, w_init=normal_init)
        assert conv.init(next(keys), x_shape)[2] == y_shape
        x = normal(next(keys), (2, *x_shape), jnp.float64)
        y = normal(next(keys), (2, *y_shape), jnp.float64)
        conv_x, _ = conv.apply(params, {}, x)
        transpose_y, _ = transpose.apply(params, {}, y)
        _, vjp = jax.vjp(lambda v: conv.apply(params, {}, v)[0], x)
        (vjp_y,) = vjp(y)
        lhs, rhs = float(jnp.sum(conv_x * y)), float(jnp.sum(x * transpose_y))
    np.testing.assert_allclose(lhs, rhs, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(transpose_y, vjp_y, rtol=TOL, atol=TOL)


@pytest.mark.parametrize(
    "kwargs, size",
    [
        # n' = 4, k = 3, s = 2: (n' - 1) s + d (k - 1) + 1 - lo - hi + r
        ({"kernel_size": 3, "strides": 2, "padding": "VALID"}, 9),  # 6 + 3
        ({"kernel_size": 3, "strides": 2, "padding": "VALID", "output_padding": 1}, 10),
        ({"kernel_size": 3, "strides": 2, "padding": "SAME"}, 8),  # n' s
        ({"kernel_size": 3, "strides": 2, "padding": 1}, 7),  # 6 + 3 - 2 (PyTorch's formula)
        ({"kernel_size": 3, "strides": 2, "padding": 1, "output_padding": 1}, 8),
        ({"kernel_size": 3, "strides": 1, "padding": "VALID", "dilation": 2}, 8),  # 3 + 5
        ({"kernel_size": 3, "strides": 1, "padding": "SAME", "dilation": 2}, 4),
        ({"kernel_size": 3, "strides": 2, "padding": ((2, 0), (2, 0))}, 7),  # 6 + 3 - 2
    ],
)
def test_conv_transpose_output_sizes(kwargs, size, key):
    layer = ConvTranspose2D(5, **kwargs)
    params, _, shape = layer.init(key, (4, 4, 2))
    assert shape == (size, size, 5)
    y, _ = layer.apply(params, {}, jnp.zeros((3, 4, 4, 2)))
    assert y.shape == (3, size, size, 5)


def test_conv_transpose_hand_computed():
    # Each input value scatters the kernel [1, 2] at stride 2: [1, 10] -> [1, 2, 10, 20].
    w = jnp.array([1.0, 2.0]).reshape(1, 2, 1, 1)  # (k_h, k_w, features, C)
    layer = ConvTranspose2D(1, (1, 2), strides=(1, 2), padding="VALID")
    y, _ = layer.apply({"w": w, "b": jnp.array([0.5])}, {}, jnp.array([[[1.0], [10.0]]]))
    np.testing.assert_array_equal(y[..., 0], [[1.5, 2.5, 10.5, 20.5]])
    # Stride 1, kernel [1, 2, 3], forward padding 1 on each side: the adjoint of
    # y_t = x_{t-1} + 2 x_t + 3 x_{t+1} is x_u = 3 y_{u-1} + 2 y_u + y_{u+1}.
    w = jnp.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    layer = ConvTranspose2D(1, (1, 3), padding=((0, 0), (1, 1)), use_bias=False)
    y, _ = layer.apply({"w": w}, {}, jnp.array([[[1.0], [0.0], [0.0], [10.0]]]))
    np.testing.assert_array_equal(y[..., 0], [[2.0, 3.0, 10.0, 20.0]])
    # The same in 1-D.
    layer = ConvTranspose1D(1, 3, padding=1, use_bias=False)
    y, _ = layer.apply({"w": w.reshape(3, 1, 1)}, {}, jnp.array([[1.0], [0.0], [0.0], [10.0]]))
    np.testing.assert_array_equal(y[:, 0], [2.0, 3.0, 10.0, 20.0])


def test_grouped_conv_transpose_hand_computed():
    # groups=2, C=2 input channels, F=4 output channels, kernel 1 (no spatial mixing):
    # w[0, i, c] maps input channel c (group g = c) to output channel 2 g + i.
    w = jnp.array([[[1.0, 10.0], [2.0, 20.0]]])  # (k=1, F/G=2, C=2)
    layer = ConvTranspose1D(4, 1, groups=2, use_bias=False)
    y, _ = layer.apply({"w": w}, {}, jnp.array([[1.0, 100.0]]))  # (T=1, C=2)
    # group 0 (input 1.0): outputs 0, 1 = 1 * w[0, 0, 0], 1 * w[0, 1, 0] = 1, 2
    # group 1 (input 100): outputs 2, 3 = 100 * w[0, 0, 1], 100 * w[0, 1, 1] = 1000, 2000
    np.testing.assert_array_equal(y, [[1.0, 2.0, 1000.0, 2000.0]])
    # Without groups the same kernel shape (1, 2, 2) means F=2 outputs from both inputs.
    y, _ = ConvTranspose1D(2, 1, use_bias=False).apply({"w": w}, {}, jnp.array([[1.0, 100.0]]))
    np.testing.assert_array_equal(y, [[1.0 + 1000.0, 2.0 + 2000.0]])


# ----------------------------------------------------------------------------------------------
# The layer contract, for every layer.

# Every row uses the example shape (6, 2) or (5, 4, 2), as test_pooling.py does, so the eager
# operations compiled for one row serve the next; each row combines several options.
CONTRACT = [
    ("conv1d_strided_dilated_groups", lambda: Conv1D(4, 3, strides=2, dilation=2, groups=2), (6, 2)),
    (
        "conv2d_depthwise_explicit_strided_dilated",  # groups == C == 2, channel multiplier 2
        lambda: Conv2D(4, (2, 3), strides=(2, 1), padding=((1, 0), (0, 2)), dilation=(2, 1), groups=2),
        (5, 4, 2),
    ),
    (
        "conv_transpose2d_same_stride2_no_bias",
        lambda: ConvTranspose2D(3, 3, strides=2, use_bias=False),
        (5, 4, 2),
    ),
    (
        "conv_transpose2d_explicit_outpad_dilated",
        lambda: ConvTranspose2D(
            2, (2, 3), strides=2, padding=((1, 0), (0, 1)), output_padding=(1, 0), dilation=(1, 2)
        ),
        (5, 4, 2),
    ),
    (
        "conv_transpose2d_groups_strided_dilated",
        lambda: ConvTranspose2D(4, (3, 2), strides=(2, 1), padding=1, dilation=(1, 2), groups=2),
        (5, 4, 2),
    ),
    (
        "conv_transpose1d_groups_outpad",
        lambda: ConvTranspose1D(4, 3, strides=2, padding="VALID", output_padding=1, groups=2),
        (6, 2),
    ),
]


@pytest.mark.parametrize("factory, shape", [c[1:] for c in CONTRACT], ids=[c[0] for c in CONTRACT])
def test_layer_contract(factory, shape, keys):
    check_layer_contract(factory, shape, keys)


# ----------------------------------------------------------------------------------------------
# Parameters, initializers and dtypes.


def test_params_are_named_and_shaped(key):
    params, state, shape = Conv2D(6, (3, 2), groups=3).init(key, (8, 8, 9))
    assert state == {} and shape == (8, 8, 6)
    assert params["w"].shape == (3, 2, 3, 6) and params["b"].shape == (6,)
    np.testing.assert_array_equal(params["b"], np.zeros(6))
    assert set(Conv1D(2, 3, use_bias=False).init(key, (5, 1))[0]) == {"w"}
    assert set(ConvTranspose2D(2, 3, use_bias=False).init(key, (5, 5, 1))[0]) == {"w"}
    params, _, shape = ConvTranspose2D(6, (3, 2), strides=2, groups=3).init(key, (4, 4, 9))
    assert shape == (8, 8, 6) and params["w"].shape == (3, 2, 2, 9)  # (k_h, k_w, F / G, C)
    params, _, shape = ConvTranspose1D(4, 3, strides=3, groups=2).init(key, (5, 2))
    assert shape == (15, 4) and params["w"].shape == (3, 2, 2)


def test_kernel_initializer_gets_the_kernel_shape(key):
    calls = []

    def spy(k, shape, dtype=jnp.float32):
        calls.append(tuple(shape))
        return jnp.ones(shape, dtype)

    Conv2D(8, 3, groups=4, w_init=spy).init(key, (5, 5, 16))
    Conv1D(4, 5, w_init=spy).init(key, (9, 3))
    assert calls == [(3, 3, 4, 8), (5, 3, 4)]
    # so the fans count the inputs one output sees: k_h k_w C / groups
    assert compute_fans(calls[0]) == (3 * 3 * 4, 3 * 3 * 8)


def test_default_kernel_init_is_lecun_normal(key):
    w = Conv2D(64, 3).init(key, (8, 8, 16))[0]["w"]  # fan_in = 3 * 3 * 16 = 144
    # 9,216 draws: the sample variance has relative std sqrt(2 / 9216) = 1.5%; 8% is > 5 sigma.
    np.testing.assert_allclose(float(jnp.var(w)) * 144, 1.0, rtol=0.08)
    assert abs(float(jnp.mean(w))) < 5 / math.sqrt(144 * 9216)  # 5 sigma of the sample mean


@pytest.mark.parametrize(
    "factory",
    [lambda **kw: Conv2D(2, 3, **kw), lambda **kw: ConvTranspose2D(2, 3, **kw)],
    ids=["conv2d", "conv_transpose2d"],
)
def test_param_and_compute_dtypes(factory, key):
    layer = factory(param_dtype=jnp.bfloat16, dtype=jnp.float32)
    params, state, _ = layer.init(key, (4, 4, 1))
    assert params["w"].dtype == params["b"].dtype == jnp.bfloat16
    y, _ = layer.apply(params, state, jnp.ones((2, 4, 4, 1), jnp.bfloat16))
    assert y.dtype == jnp.float32  # the compute dtype, separate from the parameter dtype
    # default: promote the input's and the parameters' dtypes (int32 image, float32 weights)
    params, state, _ = factory().init(key, (4, 4, 1))
    y, _ = factory().apply(params, state, jnp.ones((4, 4, 1), jnp.int32))
    assert y.dtype == jnp.float32


def test_apply_accepts_another_spatial_size(keys):
    layer = Conv2D(2, 3, strides=2)
    params, state, _ = layer.init(next(keys), (8, 8, 1))
    x = normal(next(keys), (3, 5, 7, 1))
    y, _ = layer.apply(params, state, x)
    assert y.shape == (3, 3, 4, 2)


# ----------------------------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Conv2D(0, 3), r"`features` must be a positive integer, got 0"),
        (lambda: Conv2D(2, 0), r"`kernel_size` must be a positive int or a tuple of 2 positive ints, got 0"),
        (lambda: Conv2D(2, (3, -1)), r"`kernel_size` must be .* got \(3, -1\)"),
        (lambda: Conv2D(2, (3, 3, 3)), r"`kernel_size` must be .* tuple of 2 positive ints, got \(3, 3, 3\)"),
        (
            lambda: Conv1D(2, 2.5),
            r"`kernel_size` must be a positive int or a tuple of 1 positive ints, got 2.5",
        ),
        (lambda: Conv2D(2, 3, strides=0), r"`strides` must be a positive int .* got 0"),
        (lambda: Conv2D(2, 3, strides=(1, 0)), r"`strides` must be .* got \(1, 0\)"),
        (lambda: Conv1D(2, 3, dilation=-1), r"`dilation` must be a positive int .* got -1"),
        (
            lambda: Conv2D(2, 3, padding="FULL"),
            r"`padding` must be 'SAME', 'VALID', a non-negative int or a sequence of 2 \(low, high\) pairs of non-negative ints, got 'FULL'",
        ),
        (lambda: Conv2D(2, 3, padding="same"), r"`padding` must be 'SAME', 'VALID'.* got 'same'"),
        (lambda: Conv2D(2, 3, padding=-1), r"`padding` must be .* got -1"),
        (lambda: Conv2D(2, 3, padding=((1, 1),)), r"`padding` must be .* got \(\(1, 1\),\)"),
        (
            lambda: Conv2D(2, 3, padding=((1, -1), (0, 0))),
            r"`padding` must be .* got \(\(1, -1\), \(0, 0\)\)",
        ),
        (lambda: Conv1D(2, 3, padding=[3]), r"`padding` must be .* got \[3\]"),
        (lambda: Conv2D(2, 3, groups=0), r"`groups` must be a positive integer, got 0"),
        (lambda: Conv2D(6, 3, groups=4, name="c"), r"^Conv2D: `groups` \(4\) must divide `features` \(6\)"),
        (
            lambda: ConvTranspose2D(2, 3, strides=2, padding="VALID", output_padding=2),
            r"`output_padding` must be smaller than `strides` on every axis .* got output_padding \(2, 2\) with strides \(2, 2\)",
        ),
        (
            lambda: ConvTranspose2D(2, 3, output_padding=-1),
            r"`output_padding` must be a non-negative int or a tuple of 2 non-negative ints, got -1",
        ),
        (
            lambda: ConvTranspose2D(2, 3, strides=2, output_padding=1),
            r"`output_padding` must be 0 with padding 'SAME' .* got 1",
        ),
        (
            lambda: ConvTranspose2D(6, 3, groups=4),
            r"^ConvTranspose2D: `groups` \(4\) must divide `features` \(6\)$",
        ),
        (lambda: ConvTranspose1D(2, 3, groups=0), r"`groups` must be a positive integer, got 0"),
        (
            lambda: ConvTranspose1D(2, (3, 3)),
            r"`kernel_size` must be a positive int or a tuple of 1 positive ints, got \(3, 3\)",
        ),
        (
            lambda: ConvTranspose1D(2, 3, strides=2, padding="VALID", output_padding=(2,)),
            r"`output_padding` must be smaller than `strides` .* got output_padding \(2,\) with strides \(2,\)",
        ),
    ],
)
def test_bad_construction_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_groups_must_divide_input_channels(key):
    with pytest.raises(
        ValueError,
        match=r"^Conv2D: `groups` \(4\) must divide the input channels \(6\) of input_shape \(5, 5, 6\)$",
    ):
        Conv2D(8, 3, groups=4, name="c").init(key, (5, 5, 6))
    with pytest.raises(
        ValueError,
        match=r"^ConvTranspose2D: `groups` \(2\) must divide the input channels \(3\) of input shape \(4, 4, 3\)$",
    ):
        ConvTranspose2D(4, 3, groups=2).init(key, (4, 4, 3))
    with pytest.raises(
        ValueError, match=r"^ConvTranspose1D: `groups` \(4\) must divide the input channels \(6\)"
    ):
        ConvTranspose1D(4, 3, groups=4).init(key, (5, 6))


@pytest.mark.parametrize(
    "layer, shape, match",
    [
        (
            Conv2D(2, 3, name="c"),
            (8, 8),
            r"^Conv2D expects a per-example input_shape \(H, W, C\), got \(8, 8\)",
        ),
        (Conv2D(2, 3), (1, 8, 8, 1), r"input_shape \(H, W, C\), got \(1, 8, 8, 1\)"),
        (
            Conv1D(2, 3, name="c"),
            (8, 8, 1),
            r"^Conv1D expects a per-example input_shape \(T, C\), got \(8, 8, 1\)",
        ),
        (
            ConvTranspose2D(2, 3, name="t"),
            (8,),
            r"^ConvTranspose2D expects a per-example input_shape \(H, W, C\), got \(8,\)",
        ),
        (
            ConvTranspose1D(2, 3),
            (8, 8, 1),
            r"^ConvTranspose1D expects a per-example input_shape \(T, C\), got \(8, 8, 1\)$",
        ),
        (
            ConvTranspose1D(2, 2, padding=[(2, 2)]),
            (2, 1),
            r"^ConvTranspose1D: padding \(\(2, 2\),\) removes the whole output: an input of spatial shape \(2,\) would give spatial shape \(-1,\)$",
        ),
        (Conv2D(2, 3), (8, -1, 1), r"`input_shape` must be a tuple of non-negative ints, got \(8, -1, 1\)"),
        (
            Conv2D(2, 5, padding="VALID", name="c"),
            (3, 8, 1),
            r"^Conv2D: the dilated kernel spans \(5, 5\), more than the padded input \(3, 8\) \(spatial shape \(3, 8\), padding \(\(0, 0\), \(0, 0\)\)\), so the output would be empty",
        ),
        (
            Conv1D(2, 3, dilation=3, padding=[(1, 1)]),
            (4, 1),
            r"the dilated kernel spans \(7,\), more than the padded input \(6,\)",
        ),
        (
            ConvTranspose2D(2, 3, padding=((3, 3), (0, 0)), name="t"),
            (2, 2, 1),
            r"^ConvTranspose2D: padding \(\(3, 3\), \(0, 0\)\) removes the whole output: an input of spatial shape \(2, 2\) would give spatial shape \(-2, 4\)",
        ),
    ],
)
def test_bad_input_shape_at_init(layer, shape, match, key):
    with pytest.raises(ValueError, match=match):
        layer.init(key, shape)


@pytest.mark.parametrize(
    "layer, init_shape, x_shape, match",
    [
        (
            Conv2D(2, 3, name="c"),
            (8, 8, 3),
            (8, 3),
            r"^Conv2D expects inputs of shape \(\.\.\., H, W, C\), got shape \(8, 3\)",
        ),
        (
            Conv2D(2, 3, name="c"),
            (8, 8, 3),
            (2, 8, 8, 4),
            r"^Conv2D expects inputs of shape \(\.\.\., H, W, 3\), got shape \(2, 8, 8, 4\)",
        ),
        (
            Conv2D(4, 3, groups=2),
            (8, 8, 6),
            (8, 8, 3),
            r"expects inputs of shape \(\.\.\., H, W, 6\), got shape \(8, 8, 3\)",
        ),
        (
            Conv1D(2, 3, name="c"),
            (8, 3),
            (3,),
            r"^Conv1D expects inputs of shape \(\.\.\., T, C\), got shape \(3,\)",
        ),
        (Conv1D(2, 3), (8, 3), (5, 8, 2), r"expects inputs of shape \(\.\.\., T, 3\), got shape \(5, 8, 2\)"),
        (
            Conv2D(2, 3, padding="VALID"),
            (8, 8, 1),
            (2, 8, 1),
            r"the dilated kernel spans \(3, 3\), more than the padded input \(2, 8\)",
        ),
        (
            ConvTranspose2D(2, 3, name="t"),
            (4, 4, 3),
            (4, 4, 2),
            r"^ConvTranspose2D expects inputs of shape \(\.\.\., H, W, 3\), got shape \(4, 4, 2\)",
        ),
        (
            ConvTranspose2D(2, 3),
            (4, 4, 3),
            (4, 3),
            r"expects inputs of shape \(\.\.\., H, W, C\), got shape \(4, 3\)",
        ),
        (
            ConvTranspose2D(4, 3, groups=2),
            (4, 4, 6),
            (2, 4, 4, 3),
            r"^ConvTranspose2D expects inputs of shape \(\.\.\., H, W, 6\), got shape \(2, 4, 4, 3\)$",
        ),
        (
            ConvTranspose1D(2, 3),
            (4, 3),
            (2, 4, 2),
            r"^ConvTranspose1D expects inputs of shape \(\.\.\., T, 3\), got shape \(2, 4, 2\)$",
        ),
    ],
)
def test_bad_input_at_apply(layer, init_shape, x_shape, match, key):
    params, state, _ = layer.init(key, init_shape)
    with pytest.raises(ValueError, match=match):
        layer.apply(params, state, jnp.ones(x_shape))


def test_wrong_channels_caught_under_jit(key):
    layer = Conv2D(2, 3)
    params, state, _ = layer.init(key, (8, 8, 3))
    with pytest.raises(
        ValueError, match=r"expects inputs of shape \(\.\.\., H, W, 3\), got shape \(4, 8, 8, 1\)"
    ):
        jax.jit(layer.apply)(params, state, jnp.ones((4, 8, 8, 1)))
