"""Signal propagation: the tool against NumPy float64 forward/backward passes, the ReLU mean-field
recursion per layer and end to end, and vanishing gradients through time (Elman vs LSTM)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl.signal_propagation import (
    gradient_through_time,
    mlp_signal_propagation,
    relu_mean_field,
    signal_propagation,
)

DEPTH, WIDTH, BATCH = 50, 256, 128
DEEP = fdl.nn.MLP((WIDTH,) * DEPTH)  # one model object: every test below reuses one compilation
INITS = {  # name -> (initializer, c = sigma_w^2 * fan_in)
    "he": (fdl.initializers.he_normal(), 2.0),
    "normal_0.01": (fdl.initializers.normal(0.01), 0.01**2 * WIDTH),
    "normal_1": (fdl.initializers.normal(1.0), 1.0 * WIDTH),
}


def _numpy_mlp(params, x, depth):
    """float64 forward pass of an MLP: every layer's output (input first)."""
    outs, h = [np.asarray(x, np.float64)], np.asarray(x, np.float64)
    for i in range(depth):
        p = params[f"dense_{i}"]
        h = h @ np.asarray(p["w"], np.float64) + np.asarray(p["b"], np.float64)
        outs.append(h)
        if i < depth - 1:
            h = np.maximum(h, 0.0)
            outs.append(h)
    return outs


def _deep(init, key):
    """float64 params of DEEP drawn with ``init`` (as Dense.init draws them: w from the
    initializer, zero biases; drawn directly, which compiles less) and a unit Gaussian batch."""
    k_init, k_x = jax.random.split(key)
    params = {
        f"dense_{i}": {"w": init(k, (WIDTH, WIDTH), jnp.float64), "b": jnp.zeros(WIDTH, jnp.float64)}
        for i, k in enumerate(jax.random.split(k_init, DEPTH))
    }
    return params, jax.random.normal(k_x, (BATCH, WIDTH), jnp.float64)


def test_matches_a_float64_forward_and_backward_pass(keys):
    model = fdl.models.build_model("mlp", 5, hidden=(16, 16, 16))  # dense, relu, dropout (off) x 3
    params, _, _ = model.init(next(keys), (12,))
    x = jax.random.normal(next(keys), (9, 12))
    stats = signal_propagation(model, params, x, loss_fn=lambda y: 0.5 * jnp.sum(y**2))
    assert stats.names == (
        "input",
        *(f"{kind}_{i}" for i in range(3) for kind in ("dense", "relu", "dropout")),
        "dense_3",
    )
    outs = _numpy_mlp(params, x, 4)
    outs = [outs[0], *(a for i in range(1, 7, 2) for a in (outs[i], outs[i + 1], outs[i + 1])), outs[7]]
    grads = [outs[-1]]  # dL/dy = y for L = |y|^2 / 2; back through dense (W^T), relu (mask), dropout
    for i in range(3, -1, -1):
        grads.append(grads[-1] @ np.asarray(params[f"dense_{i}"]["w"], np.float64).T)  # into dense_i
        if i > 0:
            grads += [grads[-1], grads[-1] * (outs[3 * i - 2] > 0)]  # into dropout_{i-1}, relu_{i-1}
    grads = grads[::-1]
    for got, arrays in ((stats.activation_mean_square, outs), (stats.gradient_mean_square, grads)):
        np.testing.assert_allclose(got, [np.mean(a**2) for a in arrays], rtol=1e-4)
    np.testing.assert_allclose(stats.activation_variance, [np.var(a) for a in outs], rtol=1e-4)
    np.testing.assert_allclose(stats.gradient_variance, [np.var(a) for a in grads], rtol=1e-4)


def test_relu_mean_field_closed_form():
    c, q0, sb2 = 1.5, 2.0, 0.1
    want = [q0 * (c / 2) ** n + sb2 * sum((c / 2) ** k for k in range(n)) for n in range(6)]
    got = relu_mean_field(q0, c / 8, 8, 6, bias_variance=sb2)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    batched = relu_mean_field(jnp.array([1.0, 2.0]), jnp.array([2.0, 1.0]) / 8, 8, 3)
    np.testing.assert_allclose(batched, [[1.0, 1.0, 1.0], [2.0, 1.0, 0.5]], rtol=1e-6)


def test_mean_field_per_layer_and_end_to_end(keys):
    """For He, N(0, 0.01^2) and N(0, 1) on the 50-layer ReLU MLP (width 256, float64: (c/2)^49 is
    1e-93 and 1e103, outside float32).

    Per layer: q^{l+1} / q^l = c/2 + e_1 + e_2, the matmul's error e_1 (mean 0 given relu(z^l))
    and the ReLU's e_2 = c mean(z^2 (1[z>0] - 1/2)) / q^l (mean 0 given the layer below, by the
    z -> -z symmetry). Both are means over the `width` columns, i.i.d. given the layer below, so
    each one's standard error is the columns' sample std / sqrt(width); the two are uncorrelated.
    Tolerance: 4.5 standard errors at each of the 3 x 49 layers (all pass with probability
    ~0.999).

    End to end: log(q^49 / q^0) = 49 log(c/2) + a random walk whose per-layer variance is at most
    5 / width (2 / width from the matmul, 3 / width from the ReLU, for one example; a batch
    averages some of it away), so the tolerance is 4 sqrt(5 * 49 / width) = 3.9 in log space.
    The same for the backward pass (fan_out = fan_in here), from the output's gradient down to
    dense_0."""
    tol = 4 * np.sqrt(5 * (DEPTH - 1) / WIDTH)
    with jax.enable_x64(True):
        for name, (init, c) in INITS.items():
            params, x = _deep(init, next(keys))
            stats = signal_propagation(DEEP, params, x, key=next(keys))
            outs = _numpy_mlp(params, x, DEPTH)
            np.testing.assert_allclose(stats.activation_mean_square, [np.mean(a**2) for a in outs], rtol=1e-9)
            q = np.asarray(stats.activation_mean_square)
            g = np.asarray(stats.gradient_mean_square)
            z_q = q[1::2]  # the dense outputs z^0 .. z^49
            walk_var = 0.0  # the variance of log(z_q[k+1] / z_q[0]) about (k+1) log(c/2)
            for k in range(DEPTH - 1):
                z, h, z_next = outs[2 * k + 1], outs[2 * k + 2], outs[2 * k + 3]
                e1_cols = (np.mean(z_next**2, axis=0) - c * np.mean(h**2)) / z_q[k]  # (width,)
                e2_cols = c * np.mean(z**2 * ((z > 0) - 0.5), axis=0) / z_q[k]  # (width,)
                se = np.sqrt((np.var(e1_cols, ddof=1) + np.var(e2_cols, ddof=1)) / WIDTH)
                assert abs(z_q[k + 1] / z_q[k] - c / 2) <= 4.5 * se, (name, k, z_q[k + 1] / z_q[k], se)
                # Across depth: the per-layer errors are independent given the layer below, so
                # log q^{k+1}/q^0 - (k+1) log(c/2) is a random walk with steps of sd se / (c/2)
                # (first order), measured here; every partial sum within 4.5 of its own sds.
                walk_var += (se / (c / 2)) ** 2
                drift = np.log(z_q[k + 1] / z_q[0]) - (k + 1) * np.log(c / 2)
                assert abs(drift) <= 4.5 * np.sqrt(walk_var), (name, k, drift, np.sqrt(walk_var))
            predicted = (DEPTH - 1) * np.log(c / 2)
            assert abs(np.log(q[-1] / q[1]) - predicted) < tol, name
            assert abs(np.log(g[1] / g[-1]) - predicted) < tol, name
            if name == "he":
                # The stated factor. At width 256 each layer's ratio fluctuates by a relative
                # ~sqrt(5 / width), so log q drifts as a random walk whose sd at depth 49 is at
                # most sqrt(5 * 49 / width) = 0.98 (measured from the layers above: 0.93). He
                # keeps every post-ReLU layer's mean square within e^(4 * 0.98) = 50x of the
                # input's (E[relu(z)^2] = q/2 = E[x^2] in the mean-field limit); measured here at
                # most 3.4x, against 1e-93 and 1e103 for the other two.
                assert np.sqrt(walk_var) <= np.sqrt(5 * (DEPTH - 1) / WIDTH), np.sqrt(walk_var)
                assert np.all(np.abs(np.log(q[2::2] / q[0])) < tol), q[2::2] / q[0]
            if name == "normal_0.01":
                assert q[-1] < 1e-80 * q[0]  # collapsed
            if name == "normal_1":
                assert q[-1] > 1e80 * q[0]  # exploded
            # dL/dy = r ~ N(0, 1): its mean square over N = 128 * 256 entries is 1 +- 4 sqrt(2 / N)
            assert abs(g[-1] - 1.0) < 4 * np.sqrt(2 / (BATCH * WIDTH))
        # the same layers given as a list: the same numbers
        layers = [layer for _, layer in DEEP.children]
        listed = signal_propagation(layers, params, x, key=jax.random.key(1))
        same = signal_propagation(DEEP, params, x, key=jax.random.key(1))
        for a, b in zip(listed[1:], same[1:], strict=True):
            np.testing.assert_array_equal(a, b)


def _elman_reference(params, xs, r):
    """float64 backprop through time of h_t = tanh(x_t W_x + h_{t-1} W_h + b), L = <r, h_{T-1}>."""
    wx, wh, b = (np.asarray(params[k], np.float64) for k in ("w_x", "w_h", "b"))
    xs = np.asarray(xs, np.float64)
    hs, h = [], np.zeros((xs.shape[0], wh.shape[0]))
    for t in range(xs.shape[1]):
        h = np.tanh(xs[:, t] @ wx + h @ wh + b)
        hs.append(h)
    dh, carry_norms, input_norms = np.asarray(r, np.float64), [], []
    for t in range(xs.shape[1] - 1, -1, -1):
        carry_norms.append(np.linalg.norm(dh, axis=-1).mean())
        da = dh * (1 - hs[t] ** 2)  # through tanh
        input_norms.append(np.linalg.norm(da @ wx.T, axis=-1).mean())
        dh = da @ wh.T
    return np.array(carry_norms[::-1]), np.array(input_norms[::-1])


def test_elman_vanishes_geometrically_lstm_far_less(keys):
    """Horizon 30, hidden 64, batch 16, inputs N(0, 1), float64. The Elman gradients match a
    hand-written backprop through time and obey the bound ||dL/dh_{T-1-k}|| <= 0.5^k ||r||
    (|tanh'| <= 1, ||W_h||_2 = 0.5); fitting log-norm against steps back gives a slope below
    log(0.5) (measured about -1.05), against about -0.2 for fdl's default LSTM (forget bias 1),
    whose end-to-end ratio ||g_0|| / ||g_29|| (measured ~1e-3) is over 1e6 times the Elman's
    (measured ~1e-14)."""
    scale, batch, steps, hidden = 0.5, 16, 30, 64
    slopes, ratios = {}, {}
    with jax.enable_x64(True):
        xs = jax.random.normal(next(keys), (batch, steps, 8), jnp.float64)
        cells = {
            "elman": fdl.nn.RNNCell(
                hidden, recurrent_init=fdl.initializers.orthogonal(scale), param_dtype=jnp.float64
            ),
            "lstm": fdl.nn.LSTMCell(hidden, param_dtype=jnp.float64),
        }
        for name, cell in cells.items():
            params, key = cell.init(next(keys), 8), next(keys)
            g = gradient_through_time(cell, params, xs, key=key)
            assert g.steps_back.tolist() == list(range(steps - 1, -1, -1))
            log_norm = np.log(np.asarray(g.carry_grad_norm))
            slopes[name] = np.polyfit(np.asarray(g.steps_back), log_norm, 1)[0]
            ratios[name] = np.exp(log_norm[0] - log_norm[-1])
            if name == "elman":
                r = jax.random.normal(key, (batch, hidden), jnp.float64)
                carry_ref, input_ref = _elman_reference(params, xs, r)
                np.testing.assert_allclose(g.carry_grad_norm, carry_ref, rtol=1e-10)
                np.testing.assert_allclose(g.input_grad_norm, input_ref, rtol=1e-10)
                bound = scale ** np.asarray(g.steps_back) * float(g.carry_grad_norm[-1])
                assert np.all(np.asarray(g.carry_grad_norm) <= bound * (1 + 1e-12))
    assert slopes["elman"] < np.log(scale)  # geometric decay, at least at the bound's rate
    assert slopes["lstm"] > slopes["elman"] / 3  # decays at under a third of the rate
    assert ratios["lstm"] > 1e6 * ratios["elman"]
    print(f"slopes {slopes}, ratios {ratios}")


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("arg", ["depth", "width", "num_samples"])
def test_counts_below_one_are_rejected(arg):
    kwargs = {"depth": 2, "width": 4, "num_samples": 3, arg: 0}
    with pytest.raises(ValueError, match=f"`{arg}` must be a positive integer, got 0"):
        mlp_signal_propagation(jax.random.key(0), w_init=fdl.initializers.he_normal(), **kwargs)


def test_bad_input_variance_is_rejected():
    with pytest.raises(ValueError, match=r"`input_variance` must be > 0, got -1.0"):
        mlp_signal_propagation(
            jax.random.key(0),
            depth=1,
            width=2,
            num_samples=1,
            w_init=fdl.initializers.he_normal(),
            input_variance=-1.0,
        )


def test_batch_not_matching_the_input_shape_is_rejected():
    model = fdl.nn.MLP((8, 2))
    params, _, _ = model.init(jax.random.key(0), (6,))
    key = jax.random.key(1)
    with pytest.raises(
        ValueError,
        match=r"`x` of shape \(4, 5\) does not match the model's input shape: .*"
        r"'dense_0/w' of shape \(5, 8\), but `params` has \(6, 8\)",
    ):
        signal_propagation(model, params, jnp.ones((4, 5)), key=key)
    with pytest.raises(
        ValueError, match=r"`x` must be a batch of shape \(batch, \*input_shape\), got shape \(6,\)"
    ):
        signal_propagation(model, params, jnp.ones(6), key=key)
    with pytest.raises(ValueError, match=r"`params` do not have the structure the model's init gives"):
        signal_propagation(model, {"dense_0": params["dense_0"]}, jnp.ones((4, 6)), key=key)
    conv = fdl.nn.Conv2D(2, 3)
    conv_params, _, _ = conv.init(jax.random.key(0), (5, 5, 1))
    with pytest.raises(ValueError, match=r"`x` of shape \(4, 6\) does not fit the model: "):
        signal_propagation(conv, conv_params, jnp.ones((4, 6)), key=key)


def test_missing_key_and_bad_model_are_rejected():
    model = fdl.nn.Dense(2)
    params, _, _ = model.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match="`key` is needed for the random projection"):
        signal_propagation(model, params, jnp.ones((2, 3)))
    with pytest.raises(TypeError, match=r"`model` must be a fdl\.nn\.Layer"):
        signal_propagation("mlp", params, jnp.ones((2, 3)), key=jax.random.key(0))


def test_gradient_through_time_bad_input():
    cell = fdl.nn.RNNCell(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"`xs` must have shape \(batch, T, features\) .*got shape \(5, 3\)"):
        gradient_through_time(cell, params, jnp.ones((5, 3)), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"T >= 1, got shape \(2, 0, 3\)"):
        gradient_through_time(cell, params, jnp.ones((2, 0, 3)), key=jax.random.key(0))
    with pytest.raises(TypeError, match=r"`cell` must be a fdl\.nn\.Cell"):
        gradient_through_time(fdl.nn.Dense(3), params, jnp.ones((2, 4, 3)), key=jax.random.key(0))
