"""Recurrent cells and layers against NumPy references, loops of steps, and per-sequence runs.

Tolerances: comparisons against NumPy or against a Python loop run in float64, where the only
differences are the order of floating-point sums (one fused gate matmul vs separate ones,
projections hoisted out of the loop), so 1e-12 absolute/relative is many orders above the
rounding error (~1e-16 per operation over a few steps) and far below any real error. Masked runs
are compared with exact equality where the same operations run on the same numbers (changing
padded inputs) and at 1e-12 in float64 where the batch shapes differ (a padded batch vs one
sequence alone).
"""

import functools
import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import fdl
from fdl.nn.combinators import Serial
from fdl.nn.dense import Dense
from fdl.nn.recurrent import Bidirectional, GRUCell, LSTMCell, Recurrent, RNNCell, stacked

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
# pin both the equations and the documented conversion.


def ref_rnn(tp, x, carry):
    """Elman: h = tanh(W_ih x + b_ih + W_hh h + b_hh). x (B, T, F) -> hs (B, T, H), final h."""
    h, hs = carry, []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ tp["w_ih"].T + tp["b_ih"] + h @ tp["w_hh"].T + tp["b_hh"])
        hs.append(h)
    return np.stack(hs, 1), h


def ref_lstm(tp, x, carry):
    c, h = carry
    hs = []
    for t in range(x.shape[1]):
        gates = x[:, t] @ tp["w_ih"].T + tp["b_ih"] + h @ tp["w_hh"].T + tp["b_hh"]
        i, f, g, o = np.split(gates, 4, axis=-1)
        i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), (c, h)


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
    draw = lambda: normal(next(keys), (*batch, hidden))  # noqa: E731
    return (draw(), draw()) if kind == "lstm" else draw()


@functools.partial(jax.jit, static_argnums=0)
def reference_step(cell, params, carry, x_t, keep_t):
    """``cell.step``; at a padded step (``keep_t`` False) the old carry and a zero output.

    Jitted, so the reference loop compiles once per cell and shape (eager, every small operation
    would compile on its own).
    """
    new, h = cell.step(params, carry, x_t)
    keep = keep_t[..., None]  # (*batch, 1)
    new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry)
    return new, jnp.where(keep, h, jnp.zeros_like(h))


def loop_of_steps(cell, params, x, carry=None, *, reverse=False, mask=None):
    """The reference layer: a Python loop of cell steps over time, padded steps skipped.

    ``x`` ``(*batch, T, F)``; returns NumPy ``(ys (*batch, T, H), last h (*batch, H))``.
    """
    x = np.asarray(x)
    batch, t_len = x.shape[:-2], x.shape[-2]
    mask = np.ones(x.shape[:-1], bool) if mask is None else np.asarray(mask)
    carry = cell.initial_carry(batch, x.dtype) if carry is None else carry
    ys = [None] * t_len
    for t in reversed(range(t_len)) if reverse else range(t_len):
        carry, ys[t] = reference_step(cell, params, carry, x[..., t, :], mask[..., t])
    return np.stack([np.asarray(y) for y in ys], axis=-2), np.asarray(cell.output(carry))


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
    """H = F = 1, all weights 1, zero biases except the forget-gate default of 1."""
    cell = LSTMCell(1, input_init=fdl.initializers.ones(), recurrent_init=fdl.initializers.ones())
    params = cell.init(jax.random.key(0), 1)  # the key is unused by constant initializers
    (c, h), y = cell.step(params, (jnp.array([0.5]), jnp.array([0.25])), jnp.array([1.0]))
    s = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c_want = s(1.25 + 1.0) * 0.5 + s(1.25) * np.tanh(1.25)
    np.testing.assert_allclose(c, [c_want], rtol=1e-6)
    np.testing.assert_allclose(h, [s(1.25) * np.tanh(c_want)], rtol=1e-6)
    np.testing.assert_array_equal(y, h)


# ----------------------------------------------------------------------------------------------
# Parameters and initialization.


@pytest.mark.parametrize(
    "make, names",
    [
        (RNNCell, {"w_x": (3, 4), "w_h": (4, 4), "b": (4,)}),
        (LSTMCell, {"w_x": (3, 16), "w_h": (4, 16), "b": (16,)}),
        (GRUCell, {"w_x": (3, 12), "w_h": (4, 12), "b": (12,), "b_hn": (4,)}),
    ],
    ids=["rnn", "lstm", "gru"],
)
def test_param_names_shapes_and_default_init(make, names, key):
    cell = make(4)
    params = cell.init(key, 3)
    assert {k: v.shape for k, v in params.items()} == names
    assert all(v.dtype == jnp.float32 for v in params.values())
    gates = cell.num_gates
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
    half = Recurrent(LSTMCell(2, param_dtype=jnp.bfloat16, dtype=jnp.bfloat16))
    assert half.apply(params, state, x)[0].dtype == jnp.bfloat16
    carry = LSTMCell(2).initial_carry((3,), jnp.bfloat16)
    assert [c.shape for c in carry] == [(3, 2), (3, 2)] and carry[0].dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------------------
# The sequence layer.


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_recurrent_equals_loop_of_steps(kind, reverse, keys):
    make = CELLS[kind][0]
    cell = make(3)
    seq = Recurrent(cell, reverse=reverse)
    last = Recurrent(cell, reverse=reverse, return_sequences=False)
    assert seq.init(next(keys), (5, 2))[2] == (5, 3) and last.init(next(keys), (5, 2))[2] == (3,)
    with jax.enable_x64(True):
        params = random_params(cell, 2, keys)
        batch = (2, 3)  # no batch axes and vmap: the contract test below
        x = normal(next(keys), (*batch, 5, 2))
        want_ys, want_last = loop_of_steps(cell, params, x, reverse=reverse)
        ys, _ = seq.apply(params, {}, x)
        y_last, state = last.apply(params, None, x)
        assert ys.shape == (*batch, 5, 3) and state is None
        np.testing.assert_allclose(ys, want_ys, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(y_last, want_last, rtol=TOL, atol=TOL)
        # the last state is the last output read: h_T forward, h_1 in reverse
        # (two compiled scans, fused differently: equal to rounding, hence TOL)
        np.testing.assert_allclose(y_last, ys[..., 0 if reverse else -1, :], rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kind", CELLS)
def test_given_initial_carry(kind, keys):
    cell = CELLS[kind][0](3)
    layer = Recurrent(cell)
    with jax.enable_x64(True):
        params = random_params(cell, 2, keys)
        x = normal(next(keys), (2, 4, 2))
        carry = random_carry(kind, (2,), 3, keys)
        want, _ = loop_of_steps(cell, params, x, carry)
        got, _ = layer.apply(params, {}, (x, None, carry))  # no mask: y alone comes back
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
        zero_start, _ = layer.apply(params, {}, x)
        assert np.abs(np.asarray(zero_start - got)).max() > 1e-3
        explicit_zero, _ = layer.apply(params, {}, (x, None, cell.initial_carry((2,), jnp.float64)))
        np.testing.assert_array_equal(explicit_zero, zero_start)
        # a mask and a carry together: identical to the loop with padding
        mask = padding_mask([4, 2], 4)
        (got, mask_out), _ = layer.apply(params, {}, (x, mask, carry))
        want, _ = loop_of_steps(cell, params, x, carry, mask=mask)
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)
        assert mask_out is mask
        if kind == "lstm":  # the carry (c, h) may also come as a list [c, h]
            as_list, _ = layer.apply(params, {}, (x, None, list(carry)))
            np.testing.assert_array_equal(as_list, layer.apply(params, {}, (x, None, carry))[0])


# ----------------------------------------------------------------------------------------------
# Masks.


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_padded_steps_have_no_effect(kind, reverse, keys):
    cell = CELLS[kind][0](3)
    seq, last = (Recurrent(cell, reverse=reverse, return_sequences=r) for r in (True, False))
    t_len, lengths = 5, [5, 3, 1, 0]
    mask = padding_mask(lengths, t_len)  # (4, 5)
    with jax.enable_x64(True):
        params = random_params(cell, 2, keys)
        x = normal(next(keys), (4, t_len, 2))
        noise = normal(next(keys), x.shape)
        x_other = np.where(mask[..., None], x, 100.0 * np.asarray(noise))  # other padded inputs
        (ys, mask_out), _ = seq.apply(params, {}, (x, mask))
        assert mask_out is mask
        y_last, _ = last.apply(params, {}, (x, mask))
        np.testing.assert_array_equal(seq.apply(params, {}, (x_other, mask))[0][0], ys)
        np.testing.assert_array_equal(last.apply(params, {}, (x_other, mask))[0], y_last)
        np.testing.assert_array_equal(np.where(mask[..., None], 0.0, ys), np.zeros(ys.shape))
        x = np.asarray(x)
        for b, n in enumerate(lengths):  # each sequence alone at its true length
            if n == 0:
                np.testing.assert_array_equal(y_last[b], np.zeros(3))  # the initial carry
                continue
            alone, alone_last = loop_of_steps(cell, params, x[b, :n], reverse=reverse)
            np.testing.assert_allclose(ys[b, :n], alone, rtol=TOL, atol=TOL)
            np.testing.assert_allclose(y_last[b], alone_last, rtol=TOL, atol=TOL)


def test_mask_with_holes_skips_exactly_the_masked_steps(keys):
    cell = GRUCell(2)
    mask = jnp.array([[True, False, True, False, True]])
    with jax.enable_x64(True):
        params = random_params(cell, 3, keys)
        x = normal(next(keys), (1, 5, 3))
        y, _ = Recurrent(cell, return_sequences=False).apply(params, {}, (x, mask))
        _, alone = loop_of_steps(cell, params, np.asarray(x)[:, ::2])  # steps 0, 2, 4 only
        np.testing.assert_allclose(y, alone, rtol=TOL, atol=TOL)


# ----------------------------------------------------------------------------------------------
# Bidirectional.


def _reference_bidirectional(fwd, bwd, params, x, lengths, merge):
    """Per sequence: forward on x[:n]; backward on x[:n] reversed, its outputs reversed back."""
    seqs, lasts = [], []
    for b, n in enumerate(lengths):
        xs = np.asarray(x)[b, :n]  # (n, F)
        yf, last_f = loop_of_steps(fwd, params["forward"], xs)
        yb_rev, last_b = loop_of_steps(bwd, params["backward"], xs[::-1])
        yb = yb_rev[::-1]
        y = np.concatenate([yf, yb], -1) if merge == "concat" else yf + yb
        seqs.append(np.concatenate([y, np.zeros((x.shape[1] - n, y.shape[-1]))], 0))
        lasts.append(np.concatenate([last_f, last_b]) if merge == "concat" else last_f + last_b)
    return np.stack(seqs), np.stack(lasts)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_masked_equals_per_sequence_reversal_within_length(merge, keys):
    fwd, bwd = (LSTMCell(3), GRUCell(2)) if merge == "concat" else (GRUCell(3), GRUCell(3))
    seq = Bidirectional(fwd, bwd, merge=merge)
    last = Bidirectional(fwd, bwd, merge=merge, return_sequences=False)
    width = 5 if merge == "concat" else 3
    assert seq.init(next(keys), ((6, 2), (6,)))[2] == ((6, width), (6,))
    assert last.init(next(keys), ((6, 2), (6,)))[2] == (width,)
    lengths = [6, 4, 2]
    mask = padding_mask(lengths, 6)
    with jax.enable_x64(True):
        params = {"forward": random_params(fwd, 2, keys), "backward": random_params(bwd, 2, keys)}
        x = normal(next(keys), (3, 6, 2))
        want_seq, want_last = _reference_bidirectional(fwd, bwd, params, x, lengths, merge)
        (got, mask_out), _ = seq.apply(params, {}, (x, mask))
        assert mask_out is mask and got.shape == (3, 6, width)
        np.testing.assert_allclose(got, want_seq, rtol=TOL, atol=TOL)
        got_last, _ = last.apply(params, {}, (x, mask))
        np.testing.assert_allclose(got_last, want_last, rtol=TOL, atol=TOL)
        # reversing the whole padded array instead (padding first) gives something else
        naive = Recurrent(bwd).apply(params["backward"], {}, (x[:, ::-1], mask))[0][0][:, ::-1]
        assert np.abs(np.asarray(naive[1, :4] - got[1, :4, -naive.shape[-1] :])).max() > 1e-3


def test_bidirectional_without_mask_is_forward_and_flipped_backward(keys):
    fwd = RNNCell(2)
    layer = Bidirectional(fwd)  # the backward cell copies the forward configuration
    params, state, shape = layer.init(next(keys), (4, 3))
    assert shape == (4, 4) and set(params) == {"forward", "backward"}
    x = normal(next(keys), (2, 4, 3), jnp.float32)
    y, _ = layer.apply(params, state, x)
    yf, _ = Recurrent(fwd).apply(params["forward"], {}, x)
    yb, _ = Recurrent(fwd).apply(params["backward"], {}, x[:, ::-1])
    np.testing.assert_allclose(y, jnp.concatenate([yf, yb[:, ::-1]], -1), rtol=1e-6, atol=1e-6)
    # initial carries, one per direction
    carries = (jnp.ones((2, 2)), -jnp.ones((2, 2)))
    y0, _ = layer.apply(params, state, (x, None, carries))
    yf0, _ = Recurrent(fwd).apply(params["forward"], {}, (x, None, carries[0]))
    np.testing.assert_allclose(y0[..., :2], yf0, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Stacking.


def test_stacked_layers_pass_the_mask_through_serial(keys):
    cells = [LSTMCell(4), GRUCell(3)]
    model = stacked(cells, return_sequences=False)
    manual = Serial(Recurrent(cells[0]), Recurrent(cells[1], return_sequences=False))
    params, state, shape = model.init(next(keys), ((5, 2), (5,)))
    assert shape == (3,) and len(params) == 2
    assert Recurrent(cells[0]).init(next(keys), ((5, 2), (5,)))[2] == ((5, 4), (5,))
    assert stacked(cells).init(next(keys), ((5, 2), (5,)))[2] == ((5, 3), (5,))
    lengths = [5, 2]
    mask = padding_mask(lengths, 5)
    x = normal(next(keys), (2, 5, 2), jnp.float32)
    y, _ = model.apply(params, state, (x, mask))
    np.testing.assert_array_equal(manual.apply(params, state, (x, mask))[0], y)
    for b, n in enumerate(lengths):  # the top layer's last state, each sequence alone
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


# Every row uses the per-example shape (5, 3), so the fixture's input draws compile once.
CONTRACT = [
    ("rnn", lambda: Recurrent(RNNCell(3)), (5, 3)),
    ("lstm", lambda: Recurrent(LSTMCell(3)), (5, 3)),
    ("gru_last_reverse", lambda: Recurrent(GRUCell(3), return_sequences=False, reverse=True), (5, 3)),
    ("bidirectional_concat", lambda: Bidirectional(LSTMCell(3), GRUCell(2)), (5, 3)),
]
MASKED_CONTRACT = [
    (
        "stacked_masked_last",
        lambda: stacked([LSTMCell(3), GRUCell(2)], return_sequences=False),
        ((5, 3), (5,)),
    ),
    (
        "bidirectional_sum_then_rnn_masked",
        lambda: Serial(
            Bidirectional(GRUCell(2), merge="sum"), Recurrent(RNNCell(2), return_sequences=False)
        ),
        ((5, 3), (5,)),
    ),
]


@pytest.mark.parametrize("_, factory, shape", CONTRACT, ids=[r[0] for r in CONTRACT])
def test_layer_contract(_, factory, shape, keys, layer_contract):
    layer_contract(factory, shape, keys)


@pytest.mark.parametrize("_, factory, shape", MASKED_CONTRACT, ids=[r[0] for r in MASKED_CONTRACT])
def test_layer_contract_with_mask(_, factory, shape, keys, layer_contract):
    # the fixture differentiates x + 0.1 sign(x), which a tuple does not support: the gradient
    # with respect to a masked input is checked below instead
    layer_contract(factory, shape, keys, make_input=masked_input, differentiable_input=False)


def test_masked_gradients_by_finite_differences(keys):
    """d(y)/d(x) through every cell, both directions and the mask flowing between layers, y the
    (*batch, T, H) part of (y, mask). The parameter gradients with a mask are the contract test's
    (masked rows above); tolerance as the fixture's (float64, 1e-6)."""
    layer = Serial(Recurrent(LSTMCell(2)), Bidirectional(GRUCell(2), RNNCell(2)))
    mask = padding_mask([4, 2], 4)
    with jax.enable_x64(True):
        params, state, shape = layer.init(next(keys), ((4, 3), (4,)))
        assert shape == ((4, 4), (4,))
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        x = normal(next(keys), (2, 4, 3))
        f = lambda xi: layer.apply(params, state, (xi, mask))[0][0]  # noqa: E731
        check_grads(f, (x,), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-6, rtol=1e-6)
        grad_x = jax.grad(lambda xi: jnp.sum(f(xi) ** 2))(x)
        np.testing.assert_array_equal(grad_x[1, 2:], np.zeros((2, 3)))  # padded inputs: no effect
        assert np.abs(np.asarray(grad_x[1, :2])).min() > 0


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
    with pytest.raises(ValueError, match=r"LSTMCell.step expects x_t of shape \(\.\.\., 3\), got shape \(2, 4\)"):
        LSTMCell(2).step(params, LSTMCell(2).initial_carry((2,)), jnp.ones((2, 4)))


def test_invalid_layer_construction():
    with pytest.raises(TypeError, match=r"Recurrent: `cell` must be a recurrent cell \(RNNCell, LSTMCell or GRUCell\), got"):
        Recurrent(Dense(3))
    with pytest.raises(ValueError, match=r"`return_sequences` must be True or False, got 'yes'"):
        Recurrent(RNNCell(2), return_sequences="yes")
    with pytest.raises(ValueError, match=r"`reverse` must be True or False, got 1"):
        Recurrent(RNNCell(2), reverse=1)
    with pytest.raises(TypeError, match=r"Bidirectional: `forward` must be a recurrent cell"):
        Bidirectional(Recurrent(RNNCell(2)))
    with pytest.raises(TypeError, match=r"Bidirectional: `backward` must be a recurrent cell"):
        Bidirectional(RNNCell(2), 3)
    with pytest.raises(ValueError, match=r"`merge` must be one of 'concat', 'sum', got 'mean'"):
        Bidirectional(RNNCell(2), merge="mean")
    with pytest.raises(ValueError, match=r"Bidirectional layer 'bi': merge='sum' needs equal hidden sizes, got forward 3 and backward 2"):
        Bidirectional(GRUCell(3), GRUCell(2), merge="sum", name="bi")
    with pytest.raises(ValueError, match=r"stacked 'enc' needs at least one cell, got none"):
        stacked([], name="enc")
    with pytest.raises(TypeError, match=r"stacked 'stacked': `cells\[1\]` must be a recurrent cell"):
        stacked([RNNCell(2), "gru"])


def test_input_shape_errors_at_init(key):
    layer = Recurrent(LSTMCell(2), name="enc")
    for bad in [(3,), (2, 5, 3)]:
        message = f"Recurrent layer 'enc' expects (..., T, F) inputs, so input_shape (T, F), got {bad}"
        with pytest.raises(ValueError, match=re.escape(message)):
            layer.init(key, bad)
    with pytest.raises(ValueError, match=r"Recurrent layer 'enc': the mask shape must be \(T,\) = \(5,\) for input_shape \(5, 3\), got \(4,\)"):
        layer.init(key, ((5, 3), (4,)))
    with pytest.raises(ValueError, match=r"Recurrent layer 'enc' takes input_shape \(T, F\), \(\(T, F\), \(T,\)\) or"):
        layer.init(key, ((5, 3), (5,), None, None))
    with pytest.raises(ValueError, match=r"Bidirectional layer 'bidirectional' expects \(\.\.\., T, F\) inputs"):
        Bidirectional(GRUCell(2)).init(key, (4,))


def test_input_errors_at_apply(keys):
    layer = Recurrent(GRUCell(2), name="enc")
    params, state, _ = layer.init(next(keys), (5, 3))
    x = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match=r"Recurrent layer 'enc' expects inputs of shape \(\.\.\., T, F\) with F = 3, got shape \(3,\)"):
        layer.apply(params, state, jnp.ones(3))
    with pytest.raises(ValueError, match=r"with F = 3, got shape \(2, 5, 4\)"):
        layer.apply(params, state, jnp.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"with F = 3, got shape \(2, 5, 4\)"):
        jax.jit(layer.apply)(params, state, jnp.ones((2, 5, 4)))  # static shapes: raised while tracing
    with pytest.raises(ValueError, match=r"Recurrent layer 'enc': `mask` must have shape \(\*batch, T\) = \(2, 5\) for inputs of shape \(2, 5, 3\), got \(2, 4\)"):
        layer.apply(params, state, (x, jnp.ones((2, 4), bool)))
    with pytest.raises(ValueError, match=r"`mask` must be bool \(True at real steps\), got dtype float32"):
        layer.apply(params, state, (x, jnp.ones((2, 5))))
    with pytest.raises(ValueError, match=r"Recurrent layer 'enc' takes x, \(x, mask\) or \(x, mask, initial_carry\), got a tuple of length 4"):
        layer.apply(params, state, (x, None, None, None))
    with pytest.raises(ValueError, match=r"Recurrent layer 'enc': `initial_carry` for GRUCell must be h, each of shape \(\*batch, H\) = \(2, 2\), got \(2,\)"):
        layer.apply(params, state, (x, None, jnp.zeros(2)))
    lstm = Recurrent(LSTMCell(2), name="enc")
    lstm_params, _, _ = lstm.init(next(keys), (5, 3))
    with pytest.raises(ValueError, match=r"`initial_carry` for LSTMCell must be \(c, h\), each of shape \(\*batch, H\) = \(2, 2\), got \(2, 2\)"):
        lstm.apply(lstm_params, state, (x, None, jnp.zeros((2, 2))))


def test_bidirectional_apply_errors(keys):
    layer = Bidirectional(GRUCell(2), name="bi")
    params, state, _ = layer.init(next(keys), (5, 3))
    x = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match=r"Bidirectional layer 'bi' \(forward\) expects inputs of shape \(\.\.\., T, F\) with F = 3, got shape \(2, 5, 4\)"):
        layer.apply(params, state, jnp.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"Bidirectional layer 'bi': `initial_carry` must be a pair \(carry_forward, carry_backward\), got \(2, 2\)"):
        layer.apply(params, state, (x, None, jnp.zeros((2, 2))))
    with pytest.raises(ValueError, match=r"Bidirectional layer 'bi' expects params \{'forward': \.\.\., 'backward': \.\.\.\} \(as its init returned\), got tuple"):
        layer.apply((params["forward"], params["backward"]), state, x)
