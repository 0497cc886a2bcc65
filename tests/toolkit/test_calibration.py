"""fdl.calibration: ECE and reliability diagrams against a hand-computed case and a NumPy float64
reference; temperature scaling against scipy.optimize.minimize_scalar and, on digits, its effect.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special

import fdl
from fdl import calibration


def _numpy_reliability(probs, labels, num_bins):
    """Loop over bins in float64: bin b holds b/B < confidence <= (b+1)/B (0 goes to bin 0)."""
    p = np.asarray(probs, np.float64).reshape(-1, np.shape(probs)[-1])
    conf = p.max(-1)
    correct = (p.argmax(-1) == np.asarray(labels).reshape(-1)).astype(np.float64)
    conf_b, acc_b, counts = [], [], []
    for b in range(num_bins):
        lo, hi = b / num_bins, (b + 1) / num_bins
        members = ((conf > lo) | (b == 0)) & (conf <= hi)
        counts.append(int(members.sum()))
        conf_b.append(conf[members].mean() if members.any() else np.nan)
        acc_b.append(correct[members].mean() if members.any() else np.nan)
    counts = np.array(counts)
    gaps = np.nan_to_num(np.abs(np.array(acc_b) - np.array(conf_b)))
    return np.array(conf_b), np.array(acc_b), counts, float(np.sum(counts * gaps) / counts.sum())


HAND_PROBS = jnp.array([[0.5, 0.5], [0.75, 0.25], [0.4, 0.6], [0.2, 0.8], [1.0, 0.0]])
HAND_LABELS = jnp.array([1, 0, 0, 1, 0])


def test_ece_hand_computed_with_right_closed_bins():
    # B = 4, edges 0, .25, .5, .75, 1 (exact in binary). Confidences 0.5, 0.75, 0.6, 0.8, 1.0:
    # 0.5 -> bin 1 and 0.75 -> bin 2 (closed on the right). Predictions 0 (tie), 0, 1, 1, 0.
    # bin 1: {0.5, wrong}           conf 0.5,   acc 0,   gap 0.5
    # bin 2: {0.75 right, 0.6 wrong} conf 0.675, acc 0.5, gap 0.175
    # bin 3: {0.8 right, 1.0 right}  conf 0.9,   acc 1,   gap 0.1
    # ECE = (1 * 0.5 + 2 * 0.175 + 2 * 0.1) / 5 = 0.21
    d = calibration.reliability_diagram(HAND_PROBS, HAND_LABELS, num_bins=4)
    assert d.counts.tolist() == [0, 1, 2, 2]
    np.testing.assert_allclose(d.edges, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(d.confidence, [np.nan, 0.5, 0.675, 0.9], rtol=1e-6)
    np.testing.assert_allclose(d.accuracy, [np.nan, 0.0, 0.5, 1.0])
    ece = calibration.expected_calibration_error(HAND_PROBS, HAND_LABELS, num_bins=4)
    assert float(ece) == pytest.approx(0.21, rel=1e-6)


@pytest.mark.parametrize("num_bins", [1, 10, 15])
def test_ece_and_diagram_match_numpy_float64(num_bins):
    rng = np.random.default_rng(num_bins)
    probs = jax.nn.softmax(jnp.asarray(3.0 * rng.normal(size=(1000, 10)), jnp.float32))
    labels = jnp.asarray(rng.integers(0, 10, size=1000), jnp.int32)
    conf, acc, counts, ece = _numpy_reliability(probs, labels, num_bins)
    d = calibration.reliability_diagram(probs, labels, num_bins)
    np.testing.assert_array_equal(d.counts, counts)
    np.testing.assert_allclose(d.confidence, conf, rtol=1e-5)
    np.testing.assert_allclose(d.accuracy, acc, rtol=1e-5)
    assert float(calibration.expected_calibration_error(probs, labels, num_bins)) == pytest.approx(
        ece, abs=1e-6
    )


def test_leading_axes_and_jit():
    rng = np.random.default_rng(0)
    probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(4, 25, 3)), jnp.float32))
    labels = jnp.asarray(rng.integers(0, 3, size=(4, 25)), jnp.int32)
    flat = calibration.expected_calibration_error(probs.reshape(100, 3), labels.reshape(100))
    jitted = jax.jit(calibration.expected_calibration_error, static_argnames="num_bins")(
        probs, labels, num_bins=15
    )
    assert float(jitted) == pytest.approx(float(flat), abs=1e-7)
    assert float(calibration.expected_calibration_error(probs, labels)) == pytest.approx(
        float(flat), abs=1e-7
    )


def test_calibration_input_errors():
    with pytest.raises(ValueError, match=r"`num_bins` must be a positive integer, got 0"):
        calibration.expected_calibration_error(HAND_PROBS, HAND_LABELS, num_bins=0)
    with pytest.raises(
        ValueError, match=r"`labels` must have shape \(5,\) \(= probs.shape\[:-1\]\), got \(4,\)"
    ):
        calibration.reliability_diagram(HAND_PROBS, HAND_LABELS[:4])
    with pytest.raises(TypeError, match=r"`labels` must be integer class labels, got dtype float32"):
        calibration.reliability_diagram(HAND_PROBS, HAND_LABELS.astype(jnp.float32))
    with pytest.raises(
        ValueError,
        match=r"`labels` holds 2 \(at index 0\); class labels must be integers in \[0, 2\) \(`probs` has 2 classes\)",
    ):
        calibration.expected_calibration_error(jnp.array([[0.5, 0.5]]), jnp.array([2]))
    with pytest.raises(
        ValueError, match=r"`probs` must sum to 1 along axis -1 \(within 1e-05\), got a sum of 3"
    ):
        calibration.expected_calibration_error(jnp.array([[1.0, 2.0]]), jnp.array([1]))
    with pytest.raises(
        ValueError, match=r"`probs` must be non-negative probabilities, got a minimum of -0.5"
    ):
        calibration.expected_calibration_error(jnp.array([[1.5, -0.5]]), jnp.array([1]))
    with pytest.raises(ValueError, match=r"`probs` must have a class axis \(last\), got shape \(\)"):
        calibration.reliability_diagram(jnp.array(1.0), jnp.array(0))
    # Within the float32 tolerance is accepted: rounding each entry of a softmax moves the sum far less.
    calibration.expected_calibration_error(jnp.array([[0.5, 0.500005]]), jnp.array([1]))
    with pytest.raises(ValueError, match=r"`temperature` must be a positive finite scalar, got 0.0"):
        calibration.temperature_scale(jnp.ones((2, 3)), 0.0)
    with pytest.raises(ValueError, match=r"`temperature` must be a positive finite scalar, got -2"):
        calibration.temperature_scale(jnp.ones((2, 3)), -2)


# ------------------------------------------------------------------ temperature scaling


def _scipy_temperature(logits, labels, lower=1e-2, upper=1e2):
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels)

    def nll(s):
        scaled = z * np.exp(-s)
        return np.mean(scipy.special.logsumexp(scaled, axis=-1) - scaled[np.arange(len(y)), y])

    result = scipy.optimize.minimize_scalar(
        nll, bounds=(np.log(lower), np.log(upper)), method="bounded", options={"xatol": 1e-12}
    )
    return float(np.exp(result.x))


@pytest.mark.parametrize("true_temperature", [0.5, 2.0, 6.0])
def test_fitted_temperature_matches_scipy_in_float64(true_temperature):
    rng = np.random.default_rng(int(10 * true_temperature))
    logits = 4.0 * rng.normal(size=(400, 5))
    probs = scipy.special.softmax(logits / true_temperature, axis=-1)
    labels = np.array([rng.choice(5, p=p) for p in probs])
    reference = _scipy_temperature(logits, labels)
    with jax.enable_x64(True):
        fitted = calibration.fit_temperature(jnp.asarray(logits, jnp.float64), jnp.asarray(labels))
        assert fitted.dtype == jnp.float64
        assert float(fitted) == pytest.approx(reference, rel=1e-6)
    # In float32 the NLL is flat at its minimum to ~1e-7 relative, so T is good to ~1e-3.
    fitted32 = calibration.fit_temperature(jnp.asarray(logits, jnp.float32), jnp.asarray(labels, jnp.int32))
    assert float(fitted32) == pytest.approx(reference, rel=2e-3)
    assert 0.5 * true_temperature < reference < 2.0 * true_temperature  # the data's own T, roughly


def test_fit_temperature_is_jittable_and_hits_the_bracket_when_all_are_right():
    # Every example right: the NLL falls as T -> 0, so the search ends at the lower end. (In
    # float64: in float32 the NLL rounds to exactly 0 below T ~ 0.15 and the search stops there.)
    with jax.enable_x64(True):
        logits = jnp.array([[3.0, 0.0], [0.0, 2.0], [4.0, 1.0]], jnp.float64)
        labels = jnp.array([0, 1, 0])
        fitted = jax.jit(calibration.fit_temperature, static_argnames=("lower", "upper", "iterations"))(
            logits, labels, lower=0.1, upper=10.0
        )
        assert float(fitted) == pytest.approx(0.1, rel=1e-6)


def test_temperature_scale_keeps_predictions():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(50, 4)), jnp.float32)
    scaled = calibration.temperature_scale(logits, 2.5)
    np.testing.assert_allclose(scaled, logits / 2.5, rtol=1e-6)
    np.testing.assert_array_equal(jnp.argmax(scaled, -1), jnp.argmax(logits, -1))


def test_fit_temperature_errors():
    logits, labels = jnp.zeros((3, 2)), jnp.array([0, 1, 0])
    with pytest.raises(ValueError, match=r"`iterations` must be a positive integer, got 0"):
        calibration.fit_temperature(logits, labels, iterations=0)
    with pytest.raises(ValueError, match=r"`lower` must be a positive finite number, got 0.0"):
        calibration.fit_temperature(logits, labels, lower=0.0)
    with pytest.raises(ValueError, match=r"`lower` must be < `upper`, got lower=5.0, upper=2.0"):
        calibration.fit_temperature(logits, labels, lower=5.0, upper=2.0)
    with pytest.raises(
        ValueError, match=r"`labels` must have shape \(3,\) \(= logits.shape\[:-1\]\), got \(2,\)"
    ):
        calibration.fit_temperature(logits, labels[:2])
    with pytest.raises(TypeError, match=r"`labels` must be integer class labels, got dtype float32"):
        calibration.fit_temperature(logits, labels.astype(jnp.float32))
    with pytest.raises(
        ValueError, match=r"`labels` holds -1 \(at index 2\); class labels must be integers in \[0, 2\)"
    ):
        calibration.fit_temperature(logits, labels.at[2].set(-1))
    with pytest.raises(TypeError, match=r"`logits` must be floating point, got dtype int32"):
        calibration.fit_temperature(logits.astype(jnp.int32), labels)


# ------------------------------------------------------------------ on digits


@pytest.mark.slow
def test_temperature_scaling_lowers_the_test_ece_of_an_overconfident_mlp():
    # Overconfident by construction: an MLP without dropout or weight decay trained to ~zero
    # loss on 150 images; temperature fitted on the other 1,287 training images (held out),
    # ECE measured on the 360 test images.
    data = fdl.data.load_digits(seed=0)
    x_fit, y_fit = jnp.asarray(data.x_train[:150]), jnp.asarray(data.y_train[:150])
    x_held, y_held = jnp.asarray(data.x_train[150:]), jnp.asarray(data.y_train[150:])
    model = fdl.models.build_model("mlp", 10, hidden=(64,), dropout=0.0)
    params, state, _ = model.init(jax.random.key(0), (64,))
    optimizer = fdl.optim.adam(1e-2)

    def step(carry, _):
        p, opt_state = carry
        loss = lambda q: fdl.losses.softmax_cross_entropy_with_integer_labels(
            model.apply(q, state, x_fit)[0], y_fit, reduction="mean"
        )
        updates, opt_state = optimizer.update(jax.grad(loss)(p), opt_state, p)
        return (fdl.optim.apply_updates(p, updates), opt_state), None

    params = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), None, length=300)[0][0])(params)
    logits = lambda x: model.apply(params, state, x)[0]
    temperature = calibration.fit_temperature(logits(x_held), y_held)
    test_logits = logits(jnp.asarray(data.x_test))
    y_test = jnp.asarray(data.y_test)
    before = calibration.expected_calibration_error(jax.nn.softmax(test_logits), y_test)
    after = calibration.expected_calibration_error(
        jax.nn.softmax(calibration.temperature_scale(test_logits, temperature)), y_test
    )
    nll = lambda z: fdl.losses.softmax_cross_entropy_with_integer_labels(z, y_test, reduction="mean")
    assert float(temperature) > 1.0  # overconfident: the fit softens
    assert float(nll(calibration.temperature_scale(test_logits, temperature))) < float(nll(test_logits))
    # Measured (seed 0): ECE 0.051 -> 0.029 with T = 1.61.
    assert float(after) < float(before), (float(before), float(after), float(temperature))
