"""``fdl.nn._convolve``: the convolution whose derivatives are channels-last convolutions.

* Its derivatives equal those of ``jax.lax.conv_general_dilated`` (JAX's own rules) in float64
  to 1e-12: the gradients for the input and the kernel for 1-D and 2-D kernels across strides,
  paddings, kernel and input dilations and feature groups; forward mode (``jacfwd``), the
  Hessian-vector product (forward over reverse) and reverse over reverse on a 2-D subset.
* A frozen kernel (or a constant input) costs no convolution for its gradient: the compiled
  gradient holds one convolution fewer.
* The reason it exists: inside ``jax.lax.scan`` (as ``fdl.fit`` runs its steps) every
  convolution of the compiled gradient of ``Conv2D`` is channels last (``b01f_01io->b01f``),
  while ``conv_general_dilated``'s own kernel gradient there is not (``f01b_i01o->01bf``), which
  XLA:CPU runs many times slower (benchmarks/conv_loop.py measures it).
"""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.nn import Conv2D
from fdl.nn._convolve import Geometry, convolve

TOL = 1e-12  # float64, relative and absolute: sums of at most a few hundred O(1) products


def _plain(x, w, geometry):
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=geometry.strides,
        padding=geometry.padding,
        lhs_dilation=geometry.lhs_dilation,
        rhs_dilation=geometry.rhs_dilation,
        dimension_numbers=(("NWC", "WIO", "NWC"), ("NHWC", "HWIO", "NHWC"))[x.ndim - 3],
        feature_group_count=geometry.groups,
    )


def _cases():
    """(ndim, strides, kernel dilation, input dilation, groups, padding) with a non-empty output."""
    for ndim, s, d, lhs, g, pad in itertools.product(
        (1, 2), (1, 2, 3), (1, 2), (1, 2), (1, 2), ((0, 0), (1, 2), (2, 0))
    ):
        spatial, window = (7, 6)[:ndim], (3, 2)[:ndim]
        out = [
            ((n - 1) * lhs + 1 + sum(pad) - (k - 1) * d - 1) // s + 1
            for n, k in zip(spatial, window, strict=True)
        ]
        if min(out) >= 1:
            yield ndim, s, d, lhs, g, pad


CASES = list(_cases())


def test_the_cases_cover_every_geometry():
    assert len(CASES) == 144  # of 2 x 3 x 2 x 2 x 2 x 3: none leaves an empty output here
    assert {c[1] for c in CASES} == {1, 2, 3} and {c[4] for c in CASES} == {1, 2}


def _problem(ndim, s, d, lhs, groups, pad):
    """float64 ``x``, ``w``, the geometry, and the loss through ours and through JAX's."""
    rng = np.random.default_rng(ndim * 1000 + s * 100 + d * 10 + lhs + groups)
    spatial, window, channels, features = (7, 6)[:ndim], (3, 2)[:ndim], 4, 6
    x = jnp.asarray(rng.normal(size=(2, *spatial, channels)))
    w = jnp.asarray(rng.normal(size=(*window, channels // groups, features)))
    geometry = Geometry((s,) * ndim, (pad,) * ndim, (lhs,) * ndim, (d,) * ndim, groups)
    y = _plain(x, w, geometry)
    np.testing.assert_array_equal(convolve(x, w, geometry), y)
    weights = jnp.asarray(rng.normal(size=y.shape))
    ours = lambda x, w: jnp.sum(jnp.sin(convolve(x, w, geometry)) * weights)
    jaxs = lambda x, w: jnp.sum(jnp.sin(_plain(x, w, geometry)) * weights)
    return x, w, ours, jaxs, rng


def _assert_same(derivative, ours, jaxs):
    for a, b in zip(derivative(ours), derivative(jaxs), strict=True):
        np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)


@pytest.mark.parametrize(("ndim", "s", "d", "lhs", "groups", "pad"), CASES)
def test_gradients_equal_those_of_conv_general_dilated(ndim, s, d, lhs, groups, pad):
    with jax.enable_x64(True):
        x, w, ours, jaxs, _ = _problem(ndim, s, d, lhs, groups, pad)
        _assert_same(lambda f: jax.grad(f, (0, 1))(x, w), ours, jaxs)


@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize(("d", "lhs"), [(1, 1), (2, 2)])
@pytest.mark.parametrize("groups", [1, 2])
def test_forward_mode_and_second_derivatives_equal_those_of_jax(s, d, lhs, groups):
    with jax.enable_x64(True):
        x, w, ours, jaxs, rng = _problem(2, s, d, lhs, groups, (1, 2))
        v = (jnp.asarray(rng.normal(size=x.shape)), jnp.asarray(rng.normal(size=w.shape)))
        _assert_same(lambda f: jax.jacfwd(f, (0, 1))(x, w), ours, jaxs)
        _assert_same(lambda f: jax.jvp(jax.grad(f, (0, 1)), (x, w), v)[1], ours, jaxs)  # H v
        second = lambda f: jax.grad(lambda x, w: jnp.sum(jax.grad(f, 1)(x, w) ** 2), (0, 1))(x, w)
        _assert_same(second, ours, jaxs)


def _convolutions(fn, *args):
    """The dim_labels of every convolution in the optimized HLO of ``jax.jit(fn)``."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    return re.findall(r"convolution\(.*dim_labels=(\S+?),", text)


def test_a_frozen_kernel_costs_no_convolution_for_its_gradient():
    geometry = Geometry((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1), 1)
    x, w = jnp.ones((4, 8, 8, 3)), jnp.ones((3, 3, 3, 5))
    loss = lambda x, w: jnp.sum(convolve(x, w, geometry) ** 2)
    assert len(_convolutions(jax.grad(loss, (0, 1)), x, w)) == 3  # forward, input, kernel
    assert len(_convolutions(jax.grad(loss, 0), x, w)) == 2  # the kernel's gradient is never formed
    assert len(_convolutions(jax.grad(loss, 1), x, w)) == 2  # nor the input's


def test_in_a_scan_every_convolution_of_the_gradient_is_channels_last():
    layer = Conv2D(16, 3, strides=2)
    params, _, _ = layer.init(jax.random.key(0), (12, 12, 8))
    x = jnp.ones((4, 12, 12, 8))

    def steps(params, x):
        def one(p, i):
            grads = jax.grad(lambda p: jnp.sum(layer.apply(p, {}, x + i)[0] ** 2))(p)
            return jax.tree.map(lambda a, b: a - 1e-3 * b, p, grads), None

        return jax.lax.scan(one, params, jnp.arange(3.0))[0]

    labels = _convolutions(steps, params, x)
    assert len(labels) == 2  # the forward and the kernel's gradient (x is a constant)
    assert all(re.fullmatch(r"b01f_01io->b01f", label) for label in labels), labels
    # what conv_general_dilated's own kernel gradient compiles to in the same loop
    plain = lambda w, x: jnp.sum(_plain(x, w, Geometry((2, 2), ((0, 1), (0, 1)), (1, 1), (1, 1), 1)) ** 2)

    def plain_steps(w, x):
        return jax.lax.scan(lambda w, i: (w - 1e-3 * jax.grad(plain)(w, x + i), None), w, jnp.arange(3.0))[0]

    assert "f01b_i01o->01bf" in _convolutions(plain_steps, params["w"], x)
