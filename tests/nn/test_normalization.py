"""LayerNorm, RMSNorm, BatchNorm and GroupNorm against NumPy formulas, hand-computed numbers,
finite differences, and the layer contract (``test_torch_layers.py`` adds PyTorch's LayerNorm
over several axes and RMSNorm).

Tolerances: float32 results are compared to float64 NumPy references with ``rtol=atol=1e-5``
(normalized values are O(1) and each is a few dozen float32 operations, so the rounding error is
a few ulps, ~1e-6); float64 finite-difference checks use ``atol=rtol=1e-6`` as the contract
fixture does (central differences with ``eps=1e-6`` are accurate to ~1e-9 on these smooth maps);
bfloat16 outputs are compared with ``atol=2**-7`` (one bfloat16 ulp at magnitude 1-2).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fdl import initializers
from fdl.nn.batch_norm import BatchNorm
from fdl.nn.combinators import Serial
from fdl.nn.dense import Dense
from fdl.nn.normalization import GroupNorm, LayerNorm, RMSNorm
from tests.nn.helpers import check_layer_contract

TOL = 1e-5  # float32 vs float64 NumPy, see the module docstring
_POOL = 256  # every float32 draw of this file is a slice of one draw of this many normals


def _normal(key, shape):
    """Standard normals of ``shape``, cut from one fixed-size draw.

    Drawing a new shape costs a fresh compilation of the PRNG (about a second on a busy CPU);
    one pool shape for the whole file keeps it fast. Different keys still give independent draws.
    """
    size = math.prod(shape)
    if size > _POOL:
        raise ValueError(f"_normal draws at most {_POOL} values, asked for shape {shape}")
    return jax.random.normal(key, (_POOL,))[:size].reshape(shape)


def _random_affine(keys, channels):
    """Non-trivial scale and bias, so the affine part is checked too."""
    return {
        "scale": _normal(next(keys), (channels,)) + 1.0,
        "bias": _normal(next(keys), (channels,)),
    }


# --------------------------------------------------------------------------------------------
# NumPy references, written from the formulas.


def layer_norm_ref(x, scale, bias, eps, ndim=1):
    """Statistics over the last ``ndim`` axes, flattened to one."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(*x.shape[: x.ndim - ndim], -1)  # (*lead, N)
    mean = flat.mean(axis=-1, keepdims=True)
    var = ((flat - mean) ** 2).mean(axis=-1, keepdims=True)
    x_hat = ((flat - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return x_hat * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)


def rms_norm_ref(x, scale, eps, ndim=1):
    x = np.asarray(x, np.float64)
    flat = x.reshape(*x.shape[: x.ndim - ndim], -1)  # (*lead, N)
    ms = (flat**2).mean(axis=-1, keepdims=True)
    return (flat / np.sqrt(ms + eps)).reshape(x.shape) * np.asarray(scale, np.float64)


def group_norm_ref(x, num_groups, ndim, scale, bias, eps):
    """Loop over examples and groups; each group pools its channels and all spatial positions."""
    x = np.asarray(x, np.float64)
    example = x.shape[x.ndim - ndim :]
    flat = x.reshape((-1, *example))  # (N, *spatial, C)
    out = np.empty_like(flat)
    width = example[-1] // num_groups
    for n in range(flat.shape[0]):
        for g in range(num_groups):
            block = flat[n, ..., g * width : (g + 1) * width]
            mean = block.sum() / block.size
            var = ((block - mean) ** 2).sum() / block.size
            out[n, ..., g * width : (g + 1) * width] = (block - mean) / np.sqrt(var + eps)
    return out.reshape(x.shape) * np.asarray(scale) + np.asarray(bias)


def batch_stats_ref(x):
    """Per-channel mean, biased and unbiased variance over every axis but the last."""
    flat = np.asarray(x, np.float64).reshape(-1, x.shape[-1])  # (n, C)
    return flat.mean(axis=0), flat.var(axis=0, ddof=0), flat.var(axis=0, ddof=1)


def batch_norm_ref(x, mean, var, scale, bias, eps):
    x = np.asarray(x, np.float64)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(scale) + np.asarray(bias)


# --------------------------------------------------------------------------------------------
# The layer contract (evaluation mode), one table for the module.

CONTRACT = [
    ("layer_norm_vector", lambda: LayerNorm(), (6,)),
    ("layer_norm_image", lambda: LayerNorm(epsilon=1e-3), (4, 4, 6)),
    ("layer_norm_sequence", lambda: LayerNorm(use_bias=False), (5, 6)),
    ("layer_norm_2axes", lambda: LayerNorm(ndim=2), (5, 6)),
    ("layer_norm_3axes_no_scale", lambda: LayerNorm(ndim=3, use_scale=False), (4, 4, 6)),
    ("rms_norm_vector", lambda: RMSNorm(), (6,)),
    ("rms_norm_2axes_torch_eps", lambda: RMSNorm(ndim=2, epsilon=None), (5, 6)),
    ("rms_norm_image_no_scale", lambda: RMSNorm(use_scale=False), (4, 4, 6)),
    ("batch_norm_vector", lambda: BatchNorm(), (6,)),
    ("batch_norm_image", lambda: BatchNorm(momentum=0.2), (4, 4, 6)),
    ("batch_norm_sequence", lambda: BatchNorm(use_scale=False), (5, 6)),
    ("group_norm_vector", lambda: GroupNorm(3, ndim=1), (6,)),
    ("group_norm_image", lambda: GroupNorm(2), (4, 4, 6)),
    ("group_norm_sequence", lambda: GroupNorm(3, ndim=2), (5, 6)),
]


@pytest.mark.parametrize("factory, shape", [c[1:] for c in CONTRACT], ids=[c[0] for c in CONTRACT])
def test_layer_contract(keys, factory, shape):
    check_layer_contract(factory, shape, keys)


# --------------------------------------------------------------------------------------------
# LayerNorm.


def test_layer_norm_hand_computed():
    # x = [1, 2, 3, 4]: mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
    layer = LayerNorm(
        epsilon=0.0, scale_init=initializers.constant(2.0), bias_init=initializers.constant(0.5)
    )
    params, state, shape = layer.init(jax.random.key(0), (4,))
    assert shape == (4,) and state == {}
    y, new_state = layer.apply(params, state, jnp.array([1.0, 2.0, 3.0, 4.0]))
    expected = 2.0 * (np.array([1.0, 2.0, 3.0, 4.0]) - 2.5) / np.sqrt(1.25) + 0.5
    np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(y, [-2.1833, -0.3944, 1.3944, 3.1833], atol=1e-4)  # by hand
    assert new_state == {}


def test_layer_norm_params_layout(key):
    params, state, _ = LayerNorm().init(key, (3, 5))
    chex.assert_trees_all_equal(params, {"scale": jnp.ones(5), "bias": jnp.zeros(5)})
    assert state == {}
    assert set(LayerNorm(use_scale=False).init(key, (5,))[0]) == {"bias"}
    assert set(LayerNorm(use_bias=False).init(key, (5,))[0]) == {"scale"}
    assert LayerNorm(use_scale=False, use_bias=False).init(key, (5,))[0] == {}
    assert LayerNorm(param_dtype=jnp.bfloat16).init(key, (5,))[0]["scale"].dtype == jnp.bfloat16


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)])
def test_layer_norm_matches_numpy(keys, shape):
    layer = LayerNorm(epsilon=1e-2)
    params = _random_affine(keys, 5)
    x = 3.0 * _normal(next(keys), shape) + 1.0
    y, state = jax.jit(layer.apply)(params, None, x)
    assert state is None  # stateless layers hand None back
    np.testing.assert_allclose(
        y, layer_norm_ref(x, params["scale"], params["bias"], 1e-2), rtol=TOL, atol=TOL
    )


def test_layer_norm_statistics_in_float32():
    # 128..131 are exact in bfloat16, but their mean 129.5 is not (it needs 9 significant bits),
    # so the output is only right if the statistics are computed in float32.
    layer = LayerNorm(epsilon=0.0, param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
    params, _, _ = layer.init(jax.random.key(0), (4,))
    x = jnp.array([128.0, 129.0, 130.0, 131.0], jnp.bfloat16)
    y, _ = layer.apply(params, {}, x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), [-1.3416, -0.4472, 0.4472, 1.3416], atol=2**-7)


def test_layer_norm_default_dtype_promotes(key):
    params, _, _ = LayerNorm().init(key, (4,))
    y, _ = LayerNorm().apply(params, {}, jnp.ones((2, 4), jnp.bfloat16))
    assert y.dtype == jnp.float32  # bfloat16 input, float32 params: standard promotion
    y, _ = LayerNorm(use_scale=False, use_bias=False).apply({}, {}, jnp.arange(4))
    assert y.dtype == jnp.float32  # an int input with no params computes in float32


def test_layer_norm_errors(key):
    with pytest.raises(ValueError, match=r"`epsilon` must be a non-negative finite number, got -1"):
        LayerNorm(epsilon=-1.0)
    with pytest.raises(ValueError, match=r"`ndim` must be a positive integer, got 0"):
        LayerNorm(ndim=0)
    with pytest.raises(
        ValueError,
        match=r"^LayerNorm with ndim=1 needs inputs of shape \(\.\.\., C\), got input_shape \(\)$",
    ):
        LayerNorm(name="ln").init(key, ())
    with pytest.raises(
        ValueError,
        match=r"^LayerNorm with ndim=3 needs inputs of shape \(\.\.\., d1, d2, d3\), "
        r"got input_shape \(5, 6\)$",
    ):
        LayerNorm(ndim=3).init(key, (5, 6))
    params, _, _ = LayerNorm().init(key, (4,))
    with pytest.raises(
        ValueError,
        match=r"^LayerNorm with ndim=1 expects inputs of shape \(\.\.\., 4\), "
        r"got shape \(2, 5\)$",
    ):
        LayerNorm().apply(params, {}, jnp.ones((2, 5)))
    params, _, _ = LayerNorm(ndim=2).init(key, (3, 4))
    with pytest.raises(
        ValueError,
        match=r"^LayerNorm with ndim=2 expects inputs of shape \(\.\.\., 3, 4\), "
        r"got shape \(2, 4, 4\)$",
    ):
        LayerNorm(ndim=2).apply(params, {}, jnp.ones((2, 4, 4)))
    with pytest.raises(ValueError, match=r"got shape \(4,\)$"):
        LayerNorm(ndim=2).apply(params, {}, jnp.ones((4,)))
    # Inside a composite the message is prefixed with the layer's path and kind.
    model = Serial(Dense(4), LayerNorm(name="ln"))
    params, state, _ = model.init(key, (3,))
    params["ln"] = {"scale": jnp.ones(5), "bias": jnp.zeros(5)}
    with pytest.raises(
        ValueError,
        match=r"^layer 'ln' \(LayerNorm\): LayerNorm with ndim=1 expects inputs of "
        r"shape \(\.\.\., 5\), got shape \(2, 4\)$",
    ):
        model.apply(params, state, jnp.ones((2, 3)))


@pytest.mark.parametrize(
    "ndim, shape", [(2, (5, 6)), (2, (3, 5, 6)), (3, (2, 4, 3, 2)), (3, (1, 2, 4, 3, 2))]
)
def test_layer_norm_over_several_axes_matches_numpy(keys, ndim, shape):
    layer = LayerNorm(ndim=ndim, epsilon=1e-3)
    example = shape[-ndim - 1 :] if len(shape) > ndim else shape
    init_params, state, out_shape = layer.init(next(keys), example)
    assert out_shape == example
    normalized = shape[len(shape) - ndim :]
    assert init_params["scale"].shape == init_params["bias"].shape == normalized  # as torch
    params = {
        "scale": _normal(next(keys), normalized) + 1.0,
        "bias": _normal(next(keys), normalized),
    }
    x = 2.0 * _normal(next(keys), shape) + 0.5
    y, _ = jax.jit(layer.apply)(params, state, x)
    expected = layer_norm_ref(x, params["scale"], params["bias"], 1e-3, ndim)
    np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL)


def test_layer_norm_over_the_whole_example_is_group_norm_with_one_group(keys):
    # Both pool every entry of an example; with unit scale and zero bias they agree.
    x = _normal(next(keys), (3, 4, 5))
    y, _ = LayerNorm(ndim=2, use_scale=False, use_bias=False).apply({}, {}, x)
    expected, _ = GroupNorm(1, ndim=2, use_scale=False, use_bias=False).apply({}, {}, x)
    np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL)


# --------------------------------------------------------------------------------------------
# RMSNorm.


def test_rms_norm_hand_computed():
    # x = [3, -4]: mean square (9 + 16) / 2 = 12.5; y = scale * x / sqrt(12.5 + eps).
    layer = RMSNorm(epsilon=0.5, scale_init=initializers.constant(2.0))
    params, state, shape = layer.init(jax.random.key(0), (2,))
    assert shape == (2,) and state == {} and set(params) == {"scale"}
    y, new_state = layer.apply(params, state, jnp.array([3.0, -4.0]))
    np.testing.assert_allclose(y, [2.0 * 3.0 / np.sqrt(13.0), 2.0 * -4.0 / np.sqrt(13.0)], rtol=TOL)
    np.testing.assert_allclose(y, [1.6641, -2.2188], atol=1e-4)  # by hand: 6/3.6056, -8/3.6056
    assert new_state == {}


@pytest.mark.parametrize("ndim, shape", [(1, (6,)), (1, (2, 3, 6)), (2, (3, 5, 6)), (3, (2, 4, 3, 2))])
def test_rms_norm_matches_numpy(keys, ndim, shape):
    layer = RMSNorm(ndim=ndim, epsilon=1e-2)
    normalized = shape[len(shape) - ndim :]
    init_params, _, _ = layer.init(next(keys), normalized)
    assert init_params["scale"].shape == normalized
    params = {"scale": _normal(next(keys), normalized) + 1.0}
    x = 2.0 * _normal(next(keys), shape) + 1.0  # not centred: RMS norm does not subtract a mean
    y, state = jax.jit(layer.apply)(params, None, x)
    assert state is None
    np.testing.assert_allclose(y, rms_norm_ref(x, params["scale"], 1e-2, ndim), rtol=TOL, atol=TOL)


def test_rms_norm_epsilon_none_is_the_machine_epsilon():
    # With x = [e, e], mean square e^2 and y = e / sqrt(e^2 + eps): the epsilon shows.
    x = jnp.full((2,), 1e-4)
    for dtype, eps in ((jnp.float32, 2.0**-23), (jnp.bfloat16, 2.0**-7)):
        layer = RMSNorm(epsilon=None, use_scale=False, dtype=dtype)
        y, _ = layer.apply({}, {}, x)
        assert y.dtype == dtype
        expected = 1e-4 / np.sqrt(1e-8 + eps)
        np.testing.assert_allclose(y.astype(jnp.float32), [expected] * 2, rtol=1e-2)
    assert float(jnp.finfo(jnp.float32).eps) == 2.0**-23  # torch.finfo(torch.float32).eps
    y, _ = RMSNorm(use_scale=False).apply({}, {}, x)  # the default 1e-6
    np.testing.assert_allclose(y, [1e-4 / np.sqrt(1e-8 + 1e-6)] * 2, rtol=TOL)


def test_rms_norm_dtypes(key):
    layer = RMSNorm(param_dtype=jnp.bfloat16, dtype=jnp.bfloat16, epsilon=0.0)
    params, _, _ = layer.init(key, (2,))
    assert params["scale"].dtype == jnp.bfloat16
    # x = [300, 400]: rms = sqrt(125000) = 353.55; the output is cast to bfloat16.
    y, _ = layer.apply(params, {}, jnp.array([300.0, 400.0], jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), [0.8485, 1.1314], atol=2**-7)
    y, _ = RMSNorm().apply(params, {}, jnp.ones((2,), jnp.float32))
    assert y.dtype == jnp.float32  # float32 input, bfloat16 params: standard promotion


def test_rms_norm_errors(key):
    with pytest.raises(
        ValueError,
        match=r"^`epsilon` must be a non-negative finite number or None \(the machine "
        r"epsilon of the compute dtype, PyTorch's default\), got -1.0$",
    ):
        RMSNorm(epsilon=-1.0)
    with pytest.raises(ValueError, match=r"`epsilon` must be .* got nan"):
        RMSNorm(epsilon=float("nan"))
    with pytest.raises(ValueError, match=r"`epsilon` must be a non-negative finite number, got None"):
        LayerNorm(epsilon=None)  # only RMSNorm takes PyTorch's None
    with pytest.raises(ValueError, match=r"`ndim` must be a positive integer, got 1.5"):
        RMSNorm(ndim=1.5)
    with pytest.raises(
        ValueError,
        match=r"^RMSNorm with ndim=2 needs inputs of shape \(\.\.\., d1, d2\), got "
        r"input_shape \(6,\)$",
    ):
        RMSNorm(ndim=2).init(key, (6,))
    params, _, _ = RMSNorm().init(key, (6,))
    with pytest.raises(
        ValueError,
        match=r"^RMSNorm with ndim=1 expects inputs of shape \(\.\.\., 6\), got "
        r"shape \(3, 5\)$",
    ):
        RMSNorm().apply(params, {}, jnp.ones((3, 5)))


# --------------------------------------------------------------------------------------------
# GroupNorm.


def test_group_norm_hand_computed():
    # Groups [1, 3] and [10, 20]: means 2 and 15, biased variances 1 and 25.
    layer = GroupNorm(2, ndim=1, epsilon=0.0)
    params, state, shape = layer.init(jax.random.key(0), (4,))
    assert shape == (4,) and state == {}
    y, _ = layer.apply(params, state, jnp.array([1.0, 3.0, 10.0, 20.0]))
    np.testing.assert_allclose(y, [-1.0, 1.0, -1.0, 1.0], rtol=TOL, atol=TOL)
    # One group over x = [1, 2, 3, 4] is layer norm: (x - 2.5) / sqrt(1.25).
    y, _ = GroupNorm(1, ndim=1, epsilon=0.0).apply(params, {}, jnp.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(y, [-1.3416, -0.4472, 0.4472, 1.3416], atol=1e-4)


@pytest.mark.parametrize(
    "num_groups, ndim, shape",
    [
        (3, 1, (2, 3, 6)),  # vectors, two batch axes
        (2, 2, (3, 5, 6)),  # sequences (T, C)
        (3, 3, (2, 4, 4, 6)),  # NHWC images
        (1, 3, (2, 3, 3, 4)),  # one group: each example over all its entries
        (4, 3, (2, 3, 3, 4)),  # G = C: instance norm
        (2, 3, (3, 3, 4)),  # a single image, no batch axis
    ],
)
def test_group_norm_matches_numpy(keys, num_groups, ndim, shape):
    layer = GroupNorm(num_groups, ndim=ndim, epsilon=1e-3)
    init_params, _, out_shape = layer.init(next(keys), shape[len(shape) - ndim :])
    assert out_shape == shape[len(shape) - ndim :]
    params = _random_affine(keys, shape[-1])
    chex.assert_trees_all_equal_shapes_and_dtypes(params, init_params)
    x = 2.0 * _normal(next(keys), shape) - 1.0
    y, state = jax.jit(layer.apply)(params, {}, x)
    assert state == {}
    expected = group_norm_ref(x, num_groups, ndim, params["scale"], params["bias"], 1e-3)
    np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL)


def test_group_norm_errors(key):
    with pytest.raises(ValueError, match=r"`num_groups` must be a positive integer, got 0"):
        GroupNorm(0)
    with pytest.raises(ValueError, match=r"`ndim` must be a positive integer, got 0"):
        GroupNorm(2, ndim=0)
    with pytest.raises(ValueError, match=r"`epsilon` must be a non-negative finite number"):
        GroupNorm(2, epsilon=-1e-5)
    with pytest.raises(
        ValueError,
        match=r"^GroupNorm: `num_groups` \(4\) must divide the channel count C \(6\)$",
    ):
        GroupNorm(4, name="gn").init(key, (3, 3, 6))
    with pytest.raises(
        ValueError,
        match=r"^GroupNorm with ndim=3 expects per-example "
        r"input_shape with 3 axes \(\*spatial, C\), got input_shape \(5, 6\); pass ndim=2",
    ):
        GroupNorm(2).init(key, (5, 6))
    params, _, _ = GroupNorm(2, ndim=2).init(key, (5, 6))
    with pytest.raises(
        ValueError,
        match=r"^GroupNorm with ndim=2 expects inputs of shape "
        r"\(\*batch, \.\.\., 6\), got shape \(3, 5, 4\)",
    ):
        GroupNorm(2, ndim=2).apply(params, {}, jnp.ones((3, 5, 4)))
    with pytest.raises(ValueError, match=r"got shape \(6,\)"):
        GroupNorm(2, ndim=2).apply(params, {}, jnp.ones((6,)))
    # Without params C comes from the input, and is checked against num_groups at apply.
    with pytest.raises(ValueError, match=r"`num_groups` \(2\) must divide the channel count C \(5\)"):
        GroupNorm(2, ndim=1, use_scale=False, use_bias=False).apply({}, {}, jnp.ones((3, 5)))


# --------------------------------------------------------------------------------------------
# BatchNorm.


def test_batch_norm_hand_computed():
    # x = [1, 2, 3, 4] in one channel: batch mean 2.5, biased variance 1.25, unbiased 5/3.
    layer = BatchNorm(epsilon=0.0)
    params, state, shape = layer.init(jax.random.key(0), (1,))
    assert shape == (1,)
    chex.assert_trees_all_equal(state, {"mean": jnp.zeros(1), "var": jnp.ones(1)})
    x = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    y, new_state = layer.apply(params, state, x, train=True)
    np.testing.assert_allclose(y[:, 0], [-1.3416, -0.4472, 0.4472, 1.3416], atol=1e-4)
    # running mean 0.9 * 0 + 0.1 * 2.5; running var 0.9 * 1 + 0.1 * 5/3.
    np.testing.assert_allclose(new_state["mean"], [0.25], rtol=TOL)
    np.testing.assert_allclose(new_state["var"], [0.9 + 0.1 * 5.0 / 3.0], rtol=TOL)
    # Evaluation with the new statistics: (x - 0.25) / sqrt(1.0666...).
    y_eval, same = layer.apply(params, new_state, x)
    assert same is new_state
    np.testing.assert_allclose(
        y_eval[:, 0], (np.array([1.0, 2.0, 3.0, 4.0]) - 0.25) / np.sqrt(0.9 + 0.5 / 3.0), rtol=TOL
    )


def _batches(keys, num, shape):
    """``num`` batches with channel means and scales far from the initial state (0, 1)."""
    offset = jnp.arange(shape[-1], dtype=jnp.float32)  # (C,)
    return [3.0 * _normal(next(keys), shape) + jnp.broadcast_to(offset, shape) for _ in range(num)]


@pytest.mark.parametrize("shape", [(8, 3), (2, 3, 3, 4), (2, 4, 5, 3)])
def test_batch_norm_running_statistics_recursion(keys, shape):
    m, eps = 0.3, 1e-3
    layer = BatchNorm(momentum=m, epsilon=eps)
    params, state, _ = layer.init(next(keys), shape[1:])
    params = _random_affine(keys, shape[-1])
    run_mean, run_var = np.zeros(shape[-1]), np.ones(shape[-1])
    step = jax.jit(lambda p, s, x: layer.apply(p, s, x, train=True))  # eager: the test below
    for x in _batches(keys, 3, shape):
        y, state = step(params, state, x)
        mean, biased, unbiased = batch_stats_ref(x)
        # The output uses the batch statistics with the biased variance ...
        np.testing.assert_allclose(
            y,
            batch_norm_ref(x, mean, biased, params["scale"], params["bias"], eps),
            rtol=TOL,
            atol=TOL,
        )
        # ... and the running average the unbiased one, weighting the new batch by m.
        run_mean = (1 - m) * run_mean + m * mean
        run_var = (1 - m) * run_var + m * unbiased
        np.testing.assert_allclose(state["mean"], run_mean, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(state["var"], run_var, rtol=TOL, atol=TOL)
        assert state["mean"].dtype == state["var"].dtype == jnp.float32
    # Evaluation normalizes with the running statistics and leaves the state unchanged.
    x = _batches(keys, 1, shape)[0]
    y, new_state = jax.jit(layer.apply)(params, state, x)
    chex.assert_trees_all_equal(new_state, state)
    np.testing.assert_allclose(
        y,
        batch_norm_ref(x, run_mean, run_var, params["scale"], params["bias"], eps),
        rtol=TOL,
        atol=TOL,
    )


def test_batch_norm_momentum_edges(keys):
    x = _batches(keys, 1, (6, 2))[0]
    layer = BatchNorm(momentum=0.0)
    params, state, _ = layer.init(next(keys), (2,))
    _, kept = layer.apply(params, state, x, train=True)
    chex.assert_trees_all_equal(kept, state)  # m = 0: the running statistics never move
    _, replaced = BatchNorm(momentum=1.0).apply(params, state, x, train=True)
    mean, _, unbiased = batch_stats_ref(x)
    np.testing.assert_allclose(replaced["mean"], mean, rtol=TOL, atol=TOL)  # m = 1: last batch
    np.testing.assert_allclose(replaced["var"], unbiased, rtol=TOL, atol=TOL)


def test_batch_norm_jit_and_scan_match_eager(keys):
    layer = BatchNorm(momentum=0.2)
    params, state0, _ = layer.init(next(keys), (3, 3, 4))
    params = _random_affine(keys, 4)
    batches = _batches(keys, 3, (2, 3, 3, 4))

    eager_ys, state = [], state0
    for x in batches:
        y, state = layer.apply(params, state, x, train=True)
        eager_ys.append(y)
    eager_state = state

    @jax.jit
    @chex.assert_max_traces(n=1)  # the returned state has the input's structure: no retrace
    def step(p, s, x):
        return layer.apply(p, s, x, train=True)

    state = state0
    for x, expected in zip(batches, eager_ys, strict=True):
        y, state = step(params, state, x)
        np.testing.assert_allclose(y, expected, rtol=TOL, atol=TOL)
    chex.assert_trees_all_close(state, eager_state, rtol=TOL, atol=TOL)

    def body(carry, x):
        p, s = carry
        y, s = layer.apply(p, s, x, train=True)
        return (p, s), y

    (_, scan_state), scan_ys = jax.lax.scan(body, (params, state0), jnp.stack(batches))
    np.testing.assert_allclose(scan_ys, jnp.stack(eager_ys), rtol=TOL, atol=TOL)
    chex.assert_trees_all_close(scan_state, eager_state, rtol=TOL, atol=TOL)
    chex.assert_trees_all_equal_shapes_and_dtypes(scan_state, state0)


def test_batch_norm_gradient_in_training_matches_finite_differences(keys):
    # The output depends on the batch statistics, so d y_i / d x_j couples every example.
    with jax.enable_x64(True):
        layer = BatchNorm(param_dtype=jnp.float64)
        params, state, _ = layer.init(next(keys), (3,))
        params = jax.tree.map(lambda p: p.astype(jnp.float64), _random_affine(keys, 3))
        state = {"mean": jnp.full(3, 0.5), "var": jnp.full(3, 2.0)}  # fixed, unused by y
        x = jax.random.normal(next(keys), (4, 3), jnp.float64)
        f = lambda p, xi: layer.apply(p, state, xi, train=True)[0]
        check_grads(f, (params, x), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-6, rtol=1e-6)
        # Through the batch statistics the gradient is not that of a fixed affine map: the
        # summed output is constant in x (each channel has mean bias), so its x-gradient is 0.
        g = jax.grad(lambda xi: f(params, xi).sum())(x)
        np.testing.assert_allclose(g, np.zeros((4, 3)), atol=1e-12)


def test_batch_norm_training_loop_under_jit_and_scan(keys):
    dense, bn = Dense(3), BatchNorm(momentum=0.5)
    dense_params, _, _ = dense.init(next(keys), (2,))
    bn_params, state0, _ = bn.init(next(keys), (3,))
    params0 = (dense_params, bn_params)
    xs = _normal(next(keys), (4, 8, 2))  # 4 steps of 8 examples
    targets = _normal(next(keys), (4, 8, 3))

    def loss_fn(params, state, x, t):
        h, _ = dense.apply(params[0], {}, x)
        y, state = bn.apply(params[1], state, h, train=True)
        return jnp.mean(jnp.square(y - t)), state

    def step(carry, batch):
        params, state = carry
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, *batch)
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        return (params, state), loss

    jit_step = jax.jit(step)
    carry, losses = (params0, state0), []
    for i in range(4):
        carry, loss = jit_step(carry, (xs[i], targets[i]))
        losses.append(loss)
    # The state moved off its initial value, and keeps its structure and dtypes.
    assert not np.allclose(carry[1]["mean"], 0.0) and not np.allclose(carry[1]["var"], 1.0)
    chex.assert_trees_all_equal_shapes_and_dtypes(carry[1], state0)
    # The state after one step is the momentum-0.5 average with this step's Dense outputs.
    (_, state1), _ = step((params0, state0), (xs[0], targets[0]))
    h0, _ = dense.apply(dense_params, {}, xs[0])
    mean, _, unbiased = batch_stats_ref(h0)
    np.testing.assert_allclose(state1["mean"], 0.5 * mean, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(state1["var"], 0.5 + 0.5 * unbiased, rtol=TOL, atol=TOL)
    # The same loop inside lax.scan carrying (params, state) gives the same trajectory.
    scan_carry, scan_losses = jax.lax.scan(step, (params0, state0), (xs, targets))
    np.testing.assert_allclose(scan_losses, jnp.stack(losses), rtol=TOL, atol=TOL)
    chex.assert_trees_all_close(scan_carry, carry, rtol=TOL, atol=TOL)
    # SGD on the same batch lowers the loss: the gradient through batch norm points downhill.
    before, _ = loss_fn(params0, state0, xs[0], targets[0])
    (after_params, _), _ = step((params0, state0), (xs[0], targets[0]))
    after, _ = loss_fn(after_params, state0, xs[0], targets[0])
    assert float(after) < float(before)


def test_batch_norm_vmap_in_training_uses_per_example_statistics(keys):
    # Documented: under vmap each image is its own batch (its H * W positions), so vmap equals
    # per-example normalization over spatial axes, not the batched call.
    layer = BatchNorm(epsilon=1e-3)
    params, state, _ = layer.init(next(keys), (3, 3, 2))
    x = _batches(keys, 1, (4, 3, 3, 2))[0]
    mapped, states = jax.vmap(lambda xi: layer.apply(params, state, xi, train=True))(x)
    for i in range(4):
        mean, biased, _ = batch_stats_ref(x[i])
        np.testing.assert_allclose(
            mapped[i], batch_norm_ref(x[i], mean, biased, 1.0, 0.0, 1e-3), rtol=TOL, atol=TOL
        )
    assert states["mean"].shape == (4, 2)  # one updated state per example


def test_batch_norm_statistics_in_float32(keys):
    layer = BatchNorm(param_dtype=jnp.bfloat16, dtype=jnp.bfloat16, epsilon=0.0)
    params, state, _ = layer.init(next(keys), (1,))
    assert params["scale"].dtype == jnp.bfloat16 and state["mean"].dtype == jnp.float32
    # Exact in bfloat16, but the mean 129.5 is not: right only with float32 statistics.
    x = jnp.array([[128.0], [129.0], [130.0], [131.0]], jnp.bfloat16)
    y, new_state = layer.apply(params, state, x, train=True)
    assert y.dtype == jnp.bfloat16 and new_state["mean"].dtype == jnp.float32
    np.testing.assert_allclose(y[:, 0].astype(jnp.float32), [-1.3416, -0.4472, 0.4472, 1.3416], atol=2**-7)
    np.testing.assert_allclose(new_state["mean"], [12.95], rtol=TOL)


def test_batch_norm_without_its_state_in_a_model(key):
    # A model applied with state={} (say, a stateless call) hands {} to the BatchNorm child.
    model = Serial(Dense(3), BatchNorm(name="bn"))
    params, state, _ = model.init(key, (2,))
    assert set(state) == {"bn"}
    with pytest.raises(
        ValueError,
        match=r"^layer 'bn' \(BatchNorm\): BatchNorm needs its running statistics in "
        r"`state`.* got state=\{\}$",
    ):
        model.apply(params, {}, jnp.ones((4, 2)), train=True)


def test_batch_norm_errors(key):
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"`momentum` must be in \[0, 1\] .*, got {bad}"):
            BatchNorm(momentum=bad)
    with pytest.raises(ValueError, match=r"`epsilon` must be a non-negative finite number, got -1"):
        BatchNorm(epsilon=-1.0)
    with pytest.raises(
        ValueError,
        match=r"^BatchNorm needs inputs with at least one axis \(\.\.\., C\), got input_shape \(\)$",
    ):
        BatchNorm(name="bn").init(key, ())
    layer = BatchNorm(name="bn")
    params, state, _ = layer.init(key, (4, 4, 3))
    for train in (False, True):
        with pytest.raises(
            ValueError,
            match=r"^BatchNorm expects inputs of shape \(\.\.\., 3\) "
            r"\(channels last\), got shape \(2, 4, 4, 5\)$",
        ):
            layer.apply(params, state, jnp.ones((2, 4, 4, 5)), train=train)
    for missing, shown in (({}, r"\{\}"), (None, "None"), ({"mean": jnp.zeros(3)}, r"\{'mean'.*")):
        for train in (False, True):
            with pytest.raises(
                ValueError,
                match=r"^BatchNorm needs its running statistics in `state`, the dict "
                r"\{'mean': \(C,\), 'var': \(C,\)\} that `init` returns \(params, state, shape = "
                rf"layer.init\(key, input_shape\)\), got state={shown}$",
            ):
                layer.apply(params, missing, jnp.ones((2, 4, 4, 3)), train=train)
    params, state, _ = layer.init(key, (3,))
    with pytest.raises(
        ValueError,
        match=r"^BatchNorm needs more than one value per channel in "
        r"training .* got input shape \(3,\)",
    ):
        layer.apply(params, state, jnp.ones(3), train=True)
