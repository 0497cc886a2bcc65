"""Recurrent cells and layers against NumPy references, loops of steps, and per-sequence runs.

Tolerances: comparisons against NumPy or against a Python loop run in float64, where the only
differences are the order of floating-point sums (one fused gate matmul vs separate ones, one
compiled scan vs steps called one by one), so 1e-12 absolute/relative is many orders above the
rounding error (~1e-16 per operation over a few steps) and far below any real error. Masked runs
are compared with exact equality where the same operations run on the same numbers (changing
padded inputs) and at 1e-12 in float64 where the batch shapes differ (a padded batch vs one
sequence alone).
"""

import dataclasses
import functools
import math
import re

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import fdl
from fdl.nn import Bidirectional, Cell, GRUCell, LSTMCell, Recurrent, RNNCell, Stacked
from fdl.nn.combinators import Serial
from fdl.nn.dense import Dense
from fdl.nn.layer import Layer
from tests.nn.helpers import check_layer_contract

TOL = 1e-12  # float64; see the module docstring


POOL = 1024  # the size of every random draw in this file


def normal(key, shape, dtype=jnp.float64, scale=1.0):
    """N(0, scale²) draws of ``shape`` from one fixed-size ``jax.random.normal``, sliced on the host.

    Every new shape would compile the sampler again (about 0.1-1 s each on CPU); with one size
    the file compiles it once per dtype. float64 draws need ``jax.enable_x64``.
    """
    size = math.prod(shape)
    assert size <= POOL
    flat = np.asarray(jax.random.normal(key, (POOL,), dtype))[:size]
    return jnp.asarray(scale * flat.reshape(shape))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ----------------------------------------------------------------------------------------------
# NumPy references, written in PyTorch's formulation: weight_ih (G*H, F), weight_hh (G*H, H) and
# two biases. `to_fdl` converts them with the rules stated in the cells' docstrings, so the tests
# pin both the equations and the documented conversion. Carries in PyTorch's order: LSTM (h, c).


def ref_rnn(tp, x, carry):
    """Elman: h = tanh(W_ih x + b_ih + W_hh h + b_hh). x (B, T, F) -> hs (B, T, H), final h."""
    h, hs = carry, []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ tp["w_ih"].T + tp["b_ih"] + h @ tp["w_hh"].T + tp["b_hh"])
        hs.append(h)
    return np.stack(hs, 1), h


def ref_lstm(tp, x, carry):
    h, c = carry
    hs = []
    for t in range(x.shape[1]):
        gates = x[:, t] @ tp["w_ih"].T + tp["b_ih"] + h @ tp["w_hh"].T + tp["b_hh"]
        i, f, g, o = np.split(gates, 4, axis=-1)
        i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), (h, c)


def ref_gru(tp, x, carry):
    h, hs = carry, []
    for t in range(x.shape[1]):
        gi = x[:, t] @ tp["w_ih"].T + tp["b_ih"]
        gh = h @ tp["w_hh"].T + tp["b_hh"]
        i_r, i_z, i_n = np.split(gi, 3, axis=-1)
        h_r, h_z, h_n = np.split(gh, 3, axis=-1)
        r = sigmoid(i_r + h_r)
        z = sigmoid(i_z + h_z)
        n = np.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs, 1), h


def to_fdl(kind, tp, hidden):
    params = {"w_x": tp["w_ih"].T, "w_h": tp["w_hh"].T}
    if kind == "gru":
        b_hh = tp["b_hh"].copy()
        b_hn = b_hh[2 * hidden :].copy()
        b_hh[2 * hidden :] = 0.0
        params.update(b=tp["b_ih"] + b_hh, b_hn=b_hn)
    else:
        params["b"] = tp["b_ih"] + tp["b_hh"]
    return jax.tree.map(jnp.asarray, params)


CELLS = {
    "rnn": (RNNCell, 1, ref_rnn),
    "lstm": (LSTMCell, 4, ref_lstm),
    "gru": (GRUCell, 3, ref_gru),
}


def torch_params(kind, features, hidden, keys):
    gates = CELLS[kind][1]
    shapes = {
        "w_ih": (gates * hidden, features),
        "w_hh": (gates * hidden, hidden),
        "b_ih": (gates * hidden,),
        "b_hh": (gates * hidden,),
    }
    return {k: np.asarray(normal(next(keys), s, scale=0.6)) for k, s in shapes.items()}


def random_params(cell, features, keys):
    """The cell's parameter tree with every leaf redrawn N(0, 0.6²) in float64 (nonzero biases)."""
    shapes = jax.eval_shape(lambda k: cell.init(k, features), next(keys))
    return jax.tree.map(lambda s: normal(next(keys), s.shape, scale=0.6), shapes)


def random_carry(kind, batch, hidden, keys):
    draw = lambda: normal(next(keys), (*batch, hidden))
    return (draw(), draw()) if kind == "lstm" else draw()


@functools.partial(jax.jit, static_argnums=0)
def reference_step(cell, params, carry, x_t, keep_t):
    """``cell.step``; at a padded step (``keep_t`` False) the old carry and a zero output.

    Jitted, so the reference loop compiles once per cell and shape (eager, every small operation
    would compile on its own).
    """
    new, y = cell.step(params, carry, x_t)
    keep = keep_t[..., None]  # (*batch, 1)
    new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry)
    return new, jnp.where(keep, y, jnp.zeros_like(y))


def loop_of_steps(cell, params, x, carry=None, *, reverse=False, mask=None):
    """The reference layer: a Python loop of cell steps over time, padded steps skipped.

    ``x`` ``(*batch, T, F)``; returns ``(ys (*batch, T, H), last real output (*batch, H), final
    carry)``, the arrays as NumPy.
    """
    x = np.asarray(x)
    batch, t_len = x.shape[:-2], x.shape[-2]
    mask = np.ones(x.shape[:-1], bool) if mask is None else np.asarray(mask)
    carry = cell.initial_carry(batch, x.dtype) if carry is None else carry
    ys, last = [None] * t_len, None
    for t in reversed(range(t_len)) if reverse else range(t_len):
        carry, ys[t] = reference_step(cell, params, carry, x[..., t, :], mask[..., t])
        y = np.asarray(ys[t])
        last = np.where(mask[..., t, None], y, 0.0 if last is None else last)
    ys = np.stack([np.asarray(y) for y in ys], axis=-2)
    return ys, last, jax.tree.map(np.asarray, carry)


def padding_mask(lengths, t_len):
    lengths = np.asarray(lengths)
    return jnp.asarray(np.arange(t_len)[None, :] < lengths[:, None])  # (B, T)


# ----------------------------------------------------------------------------------------------
# Cells against NumPy.


@pytest.mark.parametrize("kind", CELLS)
def test_cell_steps_match_numpy_in_pytorch_form(kind, keys):
    make, _, ref = CELLS[kind]
    batch, t_len, features, hidden = 2, 4, 3, 5
    with jax.enable_x64(True):
        tp = torch_params(kind, features, hidden, keys)
        params = to_fdl(kind, tp, hidden)
        cell = make(hidden)
        x = normal(next(keys), (batch, t_len, features))
        carry = random_carry(kind, (batch,), hidden, keys)
        want_ys, want_final = ref(tp, np.asarray(x), jax.tree.map(np.asarray, carry))
        ys = []
        for t in range(t_len):
            carry, h = cell.step(params, carry, x[:, t])
            ys.append(h)
        np.testing.assert_allclose(jnp.stack(ys, 1), want_ys, rtol=TOL, atol=TOL)
        chex.assert_trees_all_close(carry, want_final, rtol=TOL, atol=TOL)


def test_gru_is_not_the_reset_before_matmul_convention(keys):
    """The GRU's reset gate scales W_hn h after the matmul; Cho et al.'s original would not match."""
    hidden, features = 3, 2
    with jax.enable_x64(True):
        tp = torch_params("gru", features, hidden, keys)
        params = to_fdl("gru", tp, hidden)
        x = np.asarray(normal(next(keys), (1, features)))
        h = np.asarray(normal(next(keys), (1, hidden)))
        _, got = GRUCell(hidden).step(params, jnp.asarray(h), jnp.asarray(x))
        w_ir, w_iz, w_in = np.split(tp["w_ih"], 3)
        w_hr, w_hz, w_hn = np.split(tp["w_hh"], 3)
        b = tp["b_ih"] + tp["b_hh"]
        r = sigmoid(x @ w_ir.T + h @ w_hr.T + b[:hidden])
        z = sigmoid(x @ w_iz.T + h @ w_hz.T + b[hidden : 2 * hidden])
        n_before = np.tanh(x @ w_in.T + (r * h) @ w_hn.T + b[2 * hidden :])
        cho = (1 - z) * n_before + z * h
        assert np.abs(np.asarray(got) - cho).max() > 1e-3


def test_lstm_hand_computed_single_unit():
    """H = F = 1, all weights 1, zero biases except the forget-gate default of 1; carry (h, c)."""
    cell = LSTMCell(1, input_init=fdl.initializers.ones(), recurrent_init=fdl.initializers.ones())
    params = cell.init(jax.random.key(0), 1)  # the key is unused by constant initializers
    (h, c), y = cell.step(params, (jnp.array([0.25]), jnp.array([0.5])), jnp.array([1.0]))
    s = lambda v: 1 / (1 + np.exp(-v))
    c_want = s(1.25 + 1.0) * 0.5 + s(1.25) * np.tanh(1.25)
    np.testing.assert_allclose(c, [c_want], rtol=1e-6)
    np.testing.assert_allclose(h, [s(1.25) * np.tanh(c_want)], rtol=1e-6)
    np.testing.assert_array_equal(y, h)


def test_a_cell_is_a_record_of_three_pure_functions(key):
    cell = LSTMCell(3, forget_bias=0.0)
    init, step, initial_carry = cell  # unpacks like a layer's pair
    assert (init, step, initial_carry) == (cell.init, cell.step, cell.initial_carry)
    assert repr(cell) == "LSTMCell(hidden_size=3, forget_bias=0.0)"
    assert repr(GRUCell(2, dtype=jnp.bfloat16)) == "GRUCell(hidden_size=2, dtype=bfloat16)"
    h, c = initial_carry((2, 5))
    assert h.shape == c.shape == (2, 5, 3) and not h.any() and not c.any()
    assert RNNCell(4).initial_carry().shape == (4,)
    # a cell of one's own: a running sum, carry h, with a scale parameter
    running = Cell(
        init=lambda k, features: {"scale": jnp.array(2.0)},
        step=lambda p, h, x_t: (h + p["scale"] * x_t, h + p["scale"] * x_t),
        initial_carry=lambda batch_shape=(), dtype=jnp.float32: jnp.zeros((*batch_shape, 2), dtype),
    )
    layer = Recurrent(running, return_carry=True)
    params, state, shape = layer.init(key, (3, 2))
    assert shape == ((3, 2), (2,))
    (y, final), _ = layer.apply(params, state, jnp.ones((4, 3, 2)))
    np.testing.assert_array_equal(y[0, :, 0], [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(final, np.full((4, 2), 6.0))


# ----------------------------------------------------------------------------------------------
# Parameters and initialization.


@pytest.mark.parametrize(
    "make, gates, names",
    [
        (RNNCell, 1, {"w_x": (3, 4), "w_h": (4, 4), "b": (4,)}),
        (LSTMCell, 4, {"w_x": (3, 16), "w_h": (4, 16), "b": (16,)}),
        (GRUCell, 3, {"w_x": (3, 12), "w_h": (4, 12), "b": (12,), "b_hn": (4,)}),
    ],
    ids=["rnn", "lstm", "gru"],
)
def test_param_names_shapes_and_default_init(make, gates, names, key):
    cell = make(4)
    params = cell.init(key, 3)
    assert {k: v.shape for k, v in params.items()} == names
    assert all(v.dtype == jnp.float32 for v in params.values())
    for g in range(gates):  # each gate's recurrent block is orthogonal on its own
        block = params["w_h"][:, g * 4 : (g + 1) * 4]  # (H, H)
        np.testing.assert_allclose(block.T @ block, np.eye(4), atol=1e-5)
    bias = np.zeros(4 * gates)
    if make is LSTMCell:
        bias[4:8] = 1.0  # b_f, the second block (order i, f, g, o)
    np.testing.assert_array_equal(params["b"], bias)
    if make is GRUCell:
        np.testing.assert_array_equal(params["b_hn"], np.zeros(4))


def test_initializers_are_called_per_gate_block(key):
    calls = []

    def recording(value):
        def init(k, shape, dtype=jnp.float32):
            calls.append(tuple(shape))
            return jnp.full(shape, value, dtype)

        return init

    cell = GRUCell(2, input_init=recording(1.0), recurrent_init=recording(2.0), bias_init=recording(3.0))
    params = cell.init(key, 5)
    assert calls == [(5, 2)] * 3 + [(2, 2)] * 3 + [(2,)] * 3 + [(2,)]
    np.testing.assert_array_equal(params["w_x"], np.ones((5, 6)))
    np.testing.assert_array_equal(params["w_h"], np.full((2, 6), 2.0))
    np.testing.assert_array_equal(params["b_hn"], np.full(2, 3.0))


def test_forget_bias_option(key):
    np.testing.assert_array_equal(LSTMCell(2, forget_bias=0.0).init(key, 3)["b"], np.zeros(8))
    b = LSTMCell(2, forget_bias=2.5, bias_init=fdl.initializers.constant(0.5)).init(key, 3)["b"]
    np.testing.assert_array_equal(b, [0.5, 0.5, 3.0, 3.0, 0.5, 0.5, 0.5, 0.5])


def test_param_and_compute_dtypes(keys):
    x = normal(next(keys), (2, 4, 3), jnp.float32)
    layer = Recurrent(LSTMCell(2, param_dtype=jnp.bfloat16))
    params, state, _ = layer.init(next(keys), (4, 3))
    assert all(v.dtype == jnp.bfloat16 for v in params.values())
    assert layer.apply(params, state, x)[0].dtype == jnp.float32  # promoted with the input
    half = Recurrent(LSTMCell(2, param_dtype=jnp.bfloat16, dtype=jnp.bfloat16), return_carry=True)
    # a float32 initial carry is cast to the cell's compute dtype, and so is the final carry
    (y, (h, c)), _ = half.apply(params, state, (x, LSTMCell(2).initial_carry((2,))))
    assert y.dtype == h.dtype == c.dtype == jnp.bfloat16
    carry = LSTMCell(2).initial_carry((3,), jnp.bfloat16)
    assert [a.shape for a in carry] == [(3, 2), (3, 2)] and carry[0].dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------------------
# The sequence layer.


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_recurrent_equals_loop_of_steps(kind, reverse, keys):
    make = CELLS[kind][0]
    cell = make(3)
    seq = Recurrent(cell, reverse=reverse, return_carry=True)
    last = Recurrent(cell, reverse=reverse, return_sequences=False)
    carry_shape = ((3,), (3,)) if kind == "lstm" else (3,)
    assert seq.init(next(keys), (5, 2))[2] == ((5, 3), carry_shape)
    assert last.init(next(keys), (5, 2))[2] == (3,)
    with jax.enable_x64(True):
        params = random_params(cell, 2, keys)
        batch = (2, 3)  # no batch axes and vmap: the contract test below
        x = normal(next(keys), (*batch, 5, 2))
        want_ys, want_last, want_carry = loop_of_steps(cell, params, x, reverse=reverse)
        (ys, carry), _ = seq.apply(params, {}, x)
        y_last, state = last.apply(params, None, x)
        assert ys.shape == (*batch, 5, 3) and state is None
        np.testing.assert_allclose(ys, want_ys, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(y_last, want_last, rtol=TOL, atol=TOL)
        chex.assert_trees_all_close(carry, want_carry, rtol=TOL, atol=TOL)
        # the last output is the last one read: h_T forward, h_1 in reverse, and h of the carry
        np.testing.assert_allclose(y_last, ys[..., 0 if reverse else -1, :], rtol=TOL, atol=TOL)
        h = carry[0] if kind == "lstm" else carry
        np.testing.assert_allclose(y_last, h, rtol=TOL, atol=TOL)


def _plain(cell):
    """The same cell without its whole-sequence ``scan``: ``Recurrent`` scans ``step``."""
    return dataclasses.replace(cell, scan=None)


# Eight ways through the custom JVP; each checks values, both modes and second order eagerly,
# 5 to 30 s apiece. The quick tier runs the one that takes every branch (sequences, reverse,
# masked); the other seven are slow and run in CI.
_SCAN_CASES = [
    pytest.param(
        return_sequences,
        reverse,
        masked,
        id="-".join(
            (
                "sequences" if return_sequences else "last",
                "reverse" if reverse else "forward",
                "masked" if masked else "full",
            )
        ),
        marks=() if (return_sequences and reverse and masked) else pytest.mark.slow,
    )
    for return_sequences in (True, False)
    for reverse in (False, True)
    for masked in (False, True)
]


@pytest.mark.parametrize(("return_sequences", "reverse", "masked"), _SCAN_CASES)
def test_lstm_scan_equals_autodiff_through_the_plain_scan(masked, reverse, return_sequences, keys):
    # LSTMCell's own scan (a custom JVP, so that reverse mode takes the weight gradients in one
    # matmul) against autodiff through a scan of its step: values, reverse mode, forward mode,
    # and second order, through the initial and the final carry.
    cell = LSTMCell(3)
    fused, plain = (
        Recurrent(c, reverse=reverse, return_sequences=return_sequences, return_carry=True)
        for c in (cell, _plain(cell))
    )
    assert cell.scan is not None and _plain(cell).scan is None
    with jax.enable_x64(True):
        params = random_params(cell, 2, keys)
        x = normal(next(keys), (2, 5, 2))
        carry = (normal(next(keys), (2, 3)), normal(next(keys), (2, 3)))
        mask = padding_mask([5, 2], 5) if masked else None

        def loss(layer, params, x, carry):
            (y, (h, c)), _ = layer.apply(params, {}, (x, carry), mask=mask)
            return jnp.sum(jnp.sin(y)) + jnp.sum(h * jnp.cos(c)) + jnp.sum(c**2)

        args = (params, x, carry)
        # Each transformation is jitted: compiled once, not dispatched op by op (half the time).
        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(1, 2, 3)), static_argnums=0)
        chex.assert_trees_all_close(
            value_and_grad(fused, *args), value_and_grad(plain, *args), rtol=TOL, atol=TOL
        )
        tangents = jax.tree.map(lambda a: jnp.cos(a + 1.0), args)  # any direction
        chex.assert_trees_all_close(
            jax.jit(functools.partial(jax.jvp, functools.partial(loss, fused)))(args, tangents),
            jax.jit(functools.partial(jax.jvp, functools.partial(loss, plain)))(args, tangents),
            rtol=TOL,
            atol=TOL,
        )
        hessians = [
            jax.jit(jax.hessian(lambda p, layer=layer: loss(layer, p, x, carry)))(params)
            for layer in (fused, plain)
        ]
        chex.assert_trees_all_close(*hessians, rtol=1e-10, atol=1e-10)
        check_grads(jax.jit(functools.partial(loss, fused)), args, order=2, modes=("fwd", "rev"), eps=1e-6)


def _dots_in_scan_bodies(jaxpr):
    """The number of ``dot_general``s in the body of every ``scan`` in ``jaxpr``, in order."""
    counts = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            body = eqn.params["jaxpr"].jaxpr
            counts.append(sum(e.primitive.name == "dot_general" for e in body.eqns))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            if eqn.primitive.name != "scan":
                counts += _dots_in_scan_bodies(sub)
    return counts


def test_lstm_backward_loop_computes_no_weight_gradient():
    # Reverse mode through the plain scan accumulates dW_x and dW_h inside the backward loop (three
    # matmuls a step); through LSTMCell's scan the backward loop does only dh_{t-1} = du_t W_h^T,
    # and the weight gradients are taken after it, over all steps at once.
    cell = LSTMCell(4)
    x = jnp.ones((3, 6, 2))
    counts = {}
    for name, c in (("fused", cell), ("plain", _plain(cell))):
        layer = Recurrent(c, return_sequences=False)
        params, state, _ = layer.init(jax.random.key(0), (6, 2))
        grad = jax.grad(lambda p, layer=layer, state=state: jnp.sum(layer.apply(p, state, x)[0]))
        counts[name] = _dots_in_scan_bodies(jax.make_jaxpr(grad)(params).jaxpr)
    assert counts["plain"][-1] == 3  # the backward loop: dh, dW_x, dW_h
    assert counts["fused"][-1] == 1  # the backward loop: dh only


@pytest.mark.parametrize("kind", CELLS)
def test_given_initial_carry(kind, keys):
    cell = CELLS[kind][0](3)
    layer = Recurrent(cell)
    carry_shape = ((3,), (3,)) if kind == "lstm" else (3,)
    assert layer.init(next(keys), ((4, 2), carry_shape))[2] == (4, 3)
    with jax.enable_x64(True):
        params = random_params(cell, 2, keys)
        x = normal(next(keys), (2, 4, 2))
        carry = random_carry(kind, (2,), 3, keys)
        want, _, _ = loop_of_steps(cell, params, x, carry)
        got, _ = layer.apply(params, {}, (x, carry))
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
        zero_start, _ = layer.apply(params, {}, x)
        assert np.abs(np.asarray(zero_start - got)).max() > 1e-3
        explicit_zero, _ = layer.apply(params, {}, (x, cell.initial_carry((2,), jnp.float64)))
        np.testing.assert_array_equal(explicit_zero, zero_start)
        # a mask and a carry together: identical to the loop with padding
        mask = padding_mask([4, 2], 4)
        got = layer.apply(params, {}, (x, carry), mask=mask)[0]
        want, _, _ = loop_of_steps(cell, params, x, carry, mask=mask)
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_carry_of_one_half_continues_into_the_other(kind, reverse, keys):
    """Run T = 6 in two pieces of 3, the second starting from the first's final carry: equal to
    one run over all 6 steps (in reverse the last half is read first)."""
    cell = CELLS[kind][0](3)
    layer = Recurrent(cell, reverse=reverse, return_carry=True)
    with jax.enable_x64(True):
        params = random_params(cell, 2, keys)
        x = normal(next(keys), (2, 6, 2))
        (whole, carry_whole), _ = layer.apply(params, {}, x)
        first, second = (x[:, 3:], x[:, :3]) if reverse else (x[:, :3], x[:, 3:])
        (y1, carry_1), _ = layer.apply(params, {}, first)
        (y2, carry_2), _ = layer.apply(params, {}, (second, carry_1))
        pieces = jnp.concatenate([y2, y1] if reverse else [y1, y2], axis=1)
        np.testing.assert_allclose(pieces, whole, rtol=TOL, atol=TOL)
        chex.assert_trees_all_close(carry_2, carry_whole, rtol=TOL, atol=TOL)


def test_encoder_carry_starts_a_decoder(keys):
    """``Serial(Recurrent(encoder, return_carry=True), Recurrent(decoder))``: the decoder reads the
    encoder's outputs from the encoder's final carry (h, c)."""
    encoder, decoder = LSTMCell(3), LSTMCell(3)
    model = Serial(Recurrent(encoder, return_carry=True), Recurrent(decoder))
    params, state, shape = model.init(next(keys), (5, 2))
    assert shape == (5, 3) and sorted(params) == ["recurrent_0", "recurrent_1"]
    x = normal(next(keys), (2, 5, 2), jnp.float32)
    y, _ = model.apply(params, state, x)
    (h_enc, carry), _ = Recurrent(encoder, return_carry=True).apply(params["recurrent_0"], {}, x)
    want, _ = Recurrent(decoder).apply(params["recurrent_1"], {}, (h_enc, carry))
    np.testing.assert_array_equal(y, want)


# ----------------------------------------------------------------------------------------------
# Masks.


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_padded_steps_have_no_effect(kind, reverse, keys):
    cell = CELLS[kind][0](3)
    seq = Recurrent(cell, reverse=reverse, return_carry=True)
    last = Recurrent(cell, reverse=reverse, return_sequences=False)
    t_len, lengths = 5, [5, 3, 1, 0]
    mask = padding_mask(lengths, t_len)  # (4, 5)
    with jax.enable_x64(True):
        params = random_params(cell, 2, keys)
        x = normal(next(keys), (4, t_len, 2))
        noise = normal(next(keys), x.shape)
        x_other = np.where(mask[..., None], x, 100.0 * np.asarray(noise))  # other padded inputs
        (ys, carry), _ = seq.apply(params, {}, x, mask=mask)
        y_last, _ = last.apply(params, {}, x, mask=mask)
        np.testing.assert_array_equal(seq.apply(params, {}, x_other, mask=mask)[0][0], ys)
        np.testing.assert_array_equal(last.apply(params, {}, x_other, mask=mask)[0], y_last)
        np.testing.assert_array_equal(np.where(mask[..., None], 0.0, ys), np.zeros(ys.shape))
        x = np.asarray(x)
        for b, n in enumerate(lengths):  # each sequence alone at its true length
            carry_b = jax.tree.map(lambda a: a[b], carry)  # noqa: B023
            if n == 0:  # no real step: the last output is 0, the carry the initial one
                np.testing.assert_array_equal(y_last[b], np.zeros(3))
                chex.assert_trees_all_equal(carry_b, cell.initial_carry((), jnp.float64))
                continue
            alone, alone_last, alone_carry = loop_of_steps(cell, params, x[b, :n], reverse=reverse)
            np.testing.assert_allclose(ys[b, :n], alone, rtol=TOL, atol=TOL)
            np.testing.assert_allclose(y_last[b], alone_last, rtol=TOL, atol=TOL)
            # the final carry is the carry after the last real step
            chex.assert_trees_all_close(carry_b, alone_carry, rtol=TOL, atol=TOL)


def test_mask_with_holes_skips_exactly_the_masked_steps(keys):
    cell = GRUCell(2)
    mask = jnp.array([[True, False, True, False, True]])
    with jax.enable_x64(True):
        params = random_params(cell, 3, keys)
        x = normal(next(keys), (1, 5, 3))
        y, _ = Recurrent(cell, return_sequences=False).apply(params, {}, x, mask=mask)
        _, alone, _ = loop_of_steps(cell, params, np.asarray(x)[:, ::2])  # steps 0, 2, 4 only
        np.testing.assert_allclose(y, alone, rtol=TOL, atol=TOL)


def test_mask_shape_and_dtype_errors(keys):
    layer = Recurrent(GRUCell(2), name="enc")
    params, state, _ = layer.init(next(keys), (5, 3))
    x = jnp.ones((2, 5, 3))
    message = (
        "Recurrent expects a mask of shape (*batch, T) = (2, 5) for inputs of shape (2, 5, 3), "
        "got a mask of shape (2, 4)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        layer.apply(params, state, x, mask=jnp.ones((2, 4), bool))
    with pytest.raises(
        ValueError, match=re.escape("= (2, 5) for inputs of shape (2, 5, 3), got a mask of shape (5,)")
    ):
        layer.apply(params, state, x, mask=jnp.ones(5, bool))  # no broadcasting over the batch
    with pytest.raises(
        ValueError, match=r"Recurrent expects a bool mask \(True at real steps\), got dtype float32"
    ):
        layer.apply(params, state, x, mask=jnp.ones((2, 5)))
    # inside a composite the path comes first
    model = Serial(Dense(3), Recurrent(GRUCell(2), name="enc"))
    params, state, _ = model.init(next(keys), (5, 3))
    with pytest.raises(ValueError, match=r"layer 'enc' \(Recurrent\): Recurrent expects a mask of shape"):
        model.apply(params, state, x, mask=jnp.ones((2, 4), bool))


# ----------------------------------------------------------------------------------------------
# Bidirectional.


def _reference_bidirectional(fwd, bwd, params, x, lengths, merge):
    """Per sequence: forward on x[:n]; backward on x[:n] reversed, its outputs reversed back."""
    seqs, lasts, carries = [], [], []
    for b, n in enumerate(lengths):
        xs = np.asarray(x)[b, :n]  # (n, F)
        yf, last_f, carry_f = loop_of_steps(fwd, params["forward"], xs)
        yb_rev, last_b, carry_b = loop_of_steps(bwd, params["backward"], xs[::-1])
        yb = yb_rev[::-1]
        y = np.concatenate([yf, yb], -1) if merge == "concat" else yf + yb
        seqs.append(np.concatenate([y, np.zeros((x.shape[1] - n, y.shape[-1]))], 0))
        lasts.append(np.concatenate([last_f, last_b]) if merge == "concat" else last_f + last_b)
        carries.append((carry_f, carry_b))
    return np.stack(seqs), np.stack(lasts), carries


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_masked_equals_per_sequence_reversal_within_length(merge, keys):
    fwd, bwd = (LSTMCell(3), GRUCell(2)) if merge == "concat" else (GRUCell(3), GRUCell(3))
    seq = Bidirectional(fwd, bwd, merge=merge, return_carry=True)
    last = Bidirectional(fwd, bwd, merge=merge, return_sequences=False)
    width = 5 if merge == "concat" else 3
    carry_shapes = (((3,), (3,)), (2,)) if merge == "concat" else ((3,), (3,))
    assert seq.init(next(keys), (6, 2))[2] == ((6, width), carry_shapes)
    assert last.init(next(keys), (6, 2))[2] == (width,)
    lengths = [6, 4, 2]
    mask = padding_mask(lengths, 6)
    with jax.enable_x64(True):
        params = {"forward": random_params(fwd, 2, keys), "backward": random_params(bwd, 2, keys)}
        x = normal(next(keys), (3, 6, 2))
        want_seq, want_last, want_carries = _reference_bidirectional(fwd, bwd, params, x, lengths, merge)
        (got, carries), _ = seq.apply(params, {}, x, mask=mask)
        assert got.shape == (3, 6, width)
        np.testing.assert_allclose(got, want_seq, rtol=TOL, atol=TOL)
        for b, want in enumerate(want_carries):
            chex.assert_trees_all_close(jax.tree.map(lambda a: a[b], carries), want, rtol=TOL, atol=TOL)  # noqa: B023
        got_last, _ = last.apply(params, {}, x, mask=mask)
        np.testing.assert_allclose(got_last, want_last, rtol=TOL, atol=TOL)
        # reversing the whole padded array instead (padding first) gives something else
        naive = Recurrent(bwd).apply(params["backward"], {}, x[:, ::-1], mask=mask)[0][:, ::-1]
        assert np.abs(np.asarray(naive[1, :4] - got[1, :4, -naive.shape[-1] :])).max() > 1e-3


def test_bidirectional_without_mask_is_forward_and_flipped_backward(keys):
    fwd = RNNCell(2)
    layer = Bidirectional(fwd)  # the backward cell is the forward one, with its own parameters
    params, state, shape = layer.init(next(keys), (4, 3))
    assert shape == (4, 4) and set(params) == {"forward", "backward"}
    x = normal(next(keys), (2, 4, 3), jnp.float32)
    y, _ = layer.apply(params, state, x)
    yf, _ = Recurrent(fwd).apply(params["forward"], {}, x)
    yb, _ = Recurrent(fwd).apply(params["backward"], {}, x[:, ::-1])
    np.testing.assert_allclose(y, jnp.concatenate([yf, yb[:, ::-1]], -1), rtol=1e-6, atol=1e-6)
    # initial carries, one per direction
    carries = (jnp.ones((2, 2)), -jnp.ones((2, 2)))
    assert layer.init(next(keys), ((4, 3), ((2,), (2,))))[2] == (4, 4)
    y0, _ = layer.apply(params, state, (x, carries))
    yf0, _ = Recurrent(fwd).apply(params["forward"], {}, (x, carries[0]))
    yb0, _ = Recurrent(fwd, reverse=True).apply(params["backward"], {}, (x, carries[1]))
    np.testing.assert_allclose(y0, jnp.concatenate([yf0, yb0], -1), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Stacking.


def test_stacked_layers_pass_the_mask_through_serial(keys):
    cells = [LSTMCell(4), GRUCell(3)]
    model = Stacked(cells, return_sequences=False)
    manual = Serial(Recurrent(cells[0]), Recurrent(cells[1], return_sequences=False))
    params, state, shape = model.init(next(keys), (5, 2))
    assert shape == (3,) and sorted(params) == ["recurrent_0", "recurrent_1"]
    assert Stacked(cells).init(next(keys), (5, 2))[2] == (5, 3)
    lengths = [5, 2]
    mask = padding_mask(lengths, 5)
    x = normal(next(keys), (2, 5, 2), jnp.float32)
    y, _ = model.apply(params, state, x, mask=mask)
    np.testing.assert_array_equal(manual.apply(params, state, x, mask=mask)[0], y)
    for b, n in enumerate(lengths):  # the top layer's last output, each sequence alone
        alone, _ = model.apply(params, state, x[b, :n])
        np.testing.assert_allclose(y[b], alone, rtol=1e-6, atol=1e-6)  # float32, shapes differ


# ----------------------------------------------------------------------------------------------
# The layer contract (declared shapes, vmap, jit, finite-difference gradients).


def masked_input(key, full_shape, dtype):
    """``(x, mask)`` for ``full_shape = (*batch, (T, F), (T,))``, right-padded.

    The lengths, in [1, T], are 1 + the number of positive ``x[..., 1:, 0]`` (random through
    ``x``), computed on the host so that no extra sampler is compiled.
    """
    *batch, x_shape, _ = full_shape
    x = jax.random.normal(key, (*batch, *x_shape), dtype)
    t_len = x_shape[0]
    lengths = 1 + np.sum(np.asarray(x)[..., 1:, 0] > 0, axis=-1)  # (*batch,)
    mask = np.arange(t_len) < np.asarray(lengths)[..., None]  # (*batch, T)
    return x, jnp.asarray(mask)


def mask_from_input(layer):
    """A test adapter: the layer with its input taken as the pair ``(x, mask)`` and the mask
    handed on as the ``mask`` keyword, so the shared contract check (which calls
    ``apply(params, state, x)`` and vmaps over ``x``) covers masked runs too."""

    def init(key, input_shape):  # ((T, F), (T,))
        return layer.init(key, input_shape[0])

    def apply(params, state, x, *, key=None, train=False, mask=None):
        return layer.apply(params, state, x[0], key=key, train=train, mask=x[1])

    return Layer(init, apply)


def _row_id(row):
    return row.values[0] if hasattr(row, "values") else row[0]  # a pytest.param or a tuple


# Every row uses the per-example shape (5, 3), so the fixture's input draws compile once.
CONTRACT = [
    ("rnn", lambda: Recurrent(RNNCell(3)), (5, 3)),
    ("lstm", lambda: Recurrent(LSTMCell(3)), (5, 3)),
    ("gru_last_reverse", lambda: Recurrent(GRUCell(3), return_sequences=False, reverse=True), (5, 3)),
    # the compositions below are tens of seconds each on 2 cores: slow (CI), their parts stay quick
    pytest.param(
        "bidirectional_concat", lambda: Bidirectional(LSTMCell(3), GRUCell(2)), (5, 3), marks=pytest.mark.slow
    ),
]
MASKED_CONTRACT = [
    pytest.param(
        "stacked_masked_last",
        lambda: mask_from_input(Stacked([LSTMCell(3), GRUCell(2)], return_sequences=False)),
        ((5, 3), (5,)),
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "bidirectional_sum_then_rnn_masked",
        lambda: mask_from_input(
            Serial(Bidirectional(GRUCell(2), merge="sum"), Recurrent(RNNCell(2), return_sequences=False))
        ),
        ((5, 3), (5,)),
        marks=pytest.mark.slow,
    ),
    ("gru_masked", lambda: mask_from_input(Recurrent(GRUCell(2))), ((5, 3), (5,))),  # the quick tier's
]


@pytest.mark.parametrize("_, factory, shape", CONTRACT, ids=[_row_id(r) for r in CONTRACT])
def test_layer_contract(_, factory, shape, keys):
    check_layer_contract(factory, shape, keys)


@pytest.mark.parametrize("_, factory, shape", MASKED_CONTRACT, ids=[_row_id(r) for r in MASKED_CONTRACT])
def test_layer_contract_with_mask(_, factory, shape, keys):
    # the contract differentiates x + 0.1 sign(x), which a pair does not support: the gradient
    # with respect to a masked input is checked below instead
    check_layer_contract(factory, shape, keys, make_input=masked_input, differentiable_input=False)


def test_masked_gradients_by_finite_differences(keys):
    """d(y)/d(x) through every cell, both directions and the mask reaching every layer. The
    parameter gradients with a mask are the contract test's (masked rows above); tolerance as the
    fixture's (float64, 1e-6)."""
    layer = Serial(Recurrent(LSTMCell(2)), Bidirectional(GRUCell(2), RNNCell(2)))
    mask = padding_mask([4, 2], 4)
    with jax.enable_x64(True):
        params, state, shape = layer.init(next(keys), (4, 3))
        assert shape == (4, 4)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        x = normal(next(keys), (2, 4, 3))
        f = lambda xi: layer.apply(params, state, xi, mask=mask)[0]
        check_grads(f, (x,), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-6, rtol=1e-6)
        grad_x = jax.grad(lambda xi: jnp.sum(f(xi) ** 2))(x)
        np.testing.assert_array_equal(grad_x[1, 2:], np.zeros((2, 3)))  # padded inputs: no effect
        assert np.abs(np.asarray(grad_x[1, :2])).min() > 0


def test_gradient_through_the_initial_and_final_carry(keys):
    """Both carries are differentiable: d(c_T)/d(h_0, c_0) by finite differences (float64)."""
    cell = LSTMCell(2)
    layer = Recurrent(cell, return_carry=True)
    with jax.enable_x64(True):
        params = random_params(cell, 3, keys)
        x = normal(next(keys), (2, 4, 3))
        carry = random_carry("lstm", (2,), 2, keys)
        f = lambda h0, c0: layer.apply(params, {}, (x, (h0, c0)))[0][1][1]
        check_grads(f, carry, order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-6, rtol=1e-6)


def test_jitted_sgd_on_a_tiny_lstm_regression_reduces_the_loss(keys):
    model = Serial(Recurrent(LSTMCell(8), return_sequences=False), Dense(1))
    params, _, _ = model.init(next(keys), (6, 2))
    x = normal(next(keys), (32, 6, 2), jnp.float32)
    target = 0.3 * jnp.sum(x[..., :1], axis=1)  # (32, 1): a running sum to remember
    f = fdl.nn.as_function(model)

    def loss(p):
        return jnp.mean((f(p, x) - target) ** 2)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p):
        value, grads = jax.value_and_grad(loss)(p)
        return jax.tree.map(lambda w, g: w - 0.5 * g, p, grads), value

    first = None
    for _ in range(40):
        params, value = step(params)
        first = value if first is None else first
    assert float(loss(params)) < 0.3 * float(first)


# ----------------------------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize("make", [RNNCell, LSTMCell, GRUCell])
@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4"])
def test_invalid_hidden_size(make, bad):
    with pytest.raises(ValueError, match=rf"`hidden_size` must be a positive integer, got {bad!r}"):
        make(bad)


def test_invalid_cell_options(key):
    with pytest.raises(ValueError, match=r"`forget_bias` must be a real number, got '1'"):
        LSTMCell(2, forget_bias="1")
    with pytest.raises(ValueError, match=r"`input_features` must be a positive integer, got 0"):
        GRUCell(2).init(key, 0)
    params = LSTMCell(2).init(key, 3)
    with pytest.raises(ValueError, match=r"LSTMCell expects x_t of shape \(\.\.\., 3\), got shape \(2, 4\)"):
        LSTMCell(2).step(params, LSTMCell(2).initial_carry((2,)), jnp.ones((2, 4)))
    with pytest.raises(TypeError, match=r"Cell needs a callable `step`, got None"):
        Cell(init=lambda k, f: {}, step=None, initial_carry=lambda *a: None)
    with pytest.raises(TypeError, match=r"Cell's `scan` must be callable or None, got 'fast'"):
        Cell(init=lambda k, f: {}, step=lambda p, c, x: (c, x), initial_carry=lambda *a: None, scan="fast")


def test_invalid_layer_construction():
    with pytest.raises(
        TypeError,
        match=r"Recurrent: `cell` must be a fdl.nn.Cell \(RNNCell\(H\), LSTMCell\(H\), GRUCell\(H\) or Cell\(init, step, initial_carry\)\), got Dense\(features=3\)",
    ):
        Recurrent(Dense(3))
    with pytest.raises(TypeError, match=r"`return_sequences` must be a bool, got 'yes'"):
        Recurrent(RNNCell(2), return_sequences="yes")
    with pytest.raises(TypeError, match=r"`return_carry` must be a bool, got None"):
        Recurrent(RNNCell(2), return_carry=None)
    with pytest.raises(TypeError, match=r"`reverse` must be a bool, got 1"):
        Recurrent(RNNCell(2), reverse=1)
    with pytest.raises(TypeError, match=r"Bidirectional: `forward` must be a fdl.nn.Cell"):
        Bidirectional(Recurrent(RNNCell(2)))
    with pytest.raises(TypeError, match=r"Bidirectional: `backward` must be a fdl.nn.Cell"):
        Bidirectional(RNNCell(2), 3)
    with pytest.raises(ValueError, match=r"`merge` must be one of 'concat', 'sum', got 'mean'"):
        Bidirectional(RNNCell(2), merge="mean")
    with pytest.raises(ValueError, match=r"Stacked needs at least one cell, got none"):
        Stacked([])
    with pytest.raises(TypeError, match=r"Stacked: `cells\[1\]` must be a fdl.nn.Cell"):
        Stacked([RNNCell(2), "gru"])


def test_input_shape_errors_at_init(key):
    layer = Recurrent(LSTMCell(2), name="enc")
    for bad in [(3,), (2, 5, 3)]:
        message = f"Recurrent expects (..., T, F) inputs, so input_shape (T, F), got {bad}"
        with pytest.raises(ValueError, match=re.escape(message)):
            layer.init(key, bad)
    message = (
        "Recurrent expects the initial carry's shapes to be ((2,), (2,)) (per example) for "
        "LSTMCell(hidden_size=2), got (2,)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        layer.init(key, ((5, 3), (2,)))
    layer.init(key, ((5, 3), [[2], [2]]))  # shapes may be written as lists
    with pytest.raises(
        ValueError,
        match=r"Recurrent takes input_shape \(T, F\), or \(\(T, F\), carry_shapes\) when given an initial carry, got",
    ):
        layer.init(key, ((5, 3), (5,), None))
    with pytest.raises(
        ValueError, match=r"layer 'forward' \(Recurrent\): Recurrent expects \(\.\.\., T, F\) inputs"
    ):
        Bidirectional(GRUCell(2)).init(key, (4,))
    with pytest.raises(
        ValueError,
        match=r"Bidirectional with merge='sum' needs equal output sizes, got forward 3 and backward 2",
    ):
        Bidirectional(GRUCell(3), GRUCell(2), merge="sum").init(key, (4, 2))


def test_input_errors_at_apply(keys):
    layer = Recurrent(GRUCell(2), name="enc")
    params, state, _ = layer.init(next(keys), (5, 3))
    x = jnp.ones((2, 5, 3))
    with pytest.raises(
        ValueError, match=r"Recurrent expects inputs of shape \(\.\.\., T, F\), got shape \(3,\)"
    ):
        layer.apply(params, state, jnp.ones(3))
    message = (
        "Recurrent got inputs of shape (2, 5, 4) (steps (2, 4)): GRUCell expects x_t of shape "
        "(..., 3), got shape (2, 4)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        layer.apply(params, state, jnp.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=re.escape(message)):
        jax.jit(layer.apply)(params, state, jnp.ones((2, 5, 4)))  # static shapes: raised while tracing
    with pytest.raises(
        ValueError, match=r"Recurrent takes x or the pair \(x, initial_carry\), got a tuple of length 3"
    ):
        layer.apply(params, state, (x, None, None))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Recurrent expects an initial carry like GRUCell(hidden_size=2)'s for inputs of shape (2, 5, 3): shapes (2, 2), got (2,)"
        ),
    ):
        layer.apply(params, state, (x, jnp.zeros(2)))
    lstm = Recurrent(LSTMCell(2), name="enc")
    lstm_params, _, _ = lstm.init(next(keys), (5, 3))
    with pytest.raises(ValueError, match=re.escape("shapes ((2, 2), (2, 2)), got (2, 2)")):
        lstm.apply(lstm_params, state, (x, jnp.zeros((2, 2))))
    with pytest.raises(ValueError, match=re.escape("shapes ((2, 2), (2, 2)), got [(2, 2), (2, 2)]")):
        lstm.apply(lstm_params, state, (x, [jnp.zeros((2, 2))] * 2))  # a pytree: tuple, not list


def test_bidirectional_apply_errors(keys):
    layer = Bidirectional(GRUCell(2), name="bi")
    params, state, _ = layer.init(next(keys), (5, 3))
    x = jnp.ones((2, 5, 3))
    with pytest.raises(
        ValueError, match=r"layer 'forward' \(Recurrent\): Recurrent got inputs of shape \(2, 5, 4\)"
    ):
        layer.apply(params, state, jnp.ones((2, 5, 4)))
    with pytest.raises(
        ValueError,
        match=r"Bidirectional expects the initial carry as the pair \(carry_forward, carry_backward\), got shapes \(2, 2\)",
    ):
        layer.apply(params, state, (x, jnp.zeros((2, 2))))
    with pytest.raises(
        ValueError, match=r"Bidirectional 'bi' expects `params` to be a dict keyed by its children's names"
    ):
        layer.apply((params["forward"], params["backward"]), state, x)
