"""Softmax temperature and entropy; temperature scaling on a reliability diagram; MC dropout's
uncertainty split into its aleatoric and epistemic parts, on digits in and out of distribution."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

LOGITS = (2.0, 1.0, 0.5, -0.5, -1.0)  # the scores of five classes, for the softmax panel
TEMPERATURES = (0.5, 1.0, 3.0)
GROUPS = ("test digits", "upside down", "noise")


def _train(
    model: fdl.nn.Layer, x: jax.Array, y: jax.Array, *, steps: int, learning_rate: float, key: jax.Array
):
    """Full-batch Adam on the mean cross-entropy, one scan (dropout on when the model has it)."""
    params, state, _ = model.init(jax.random.key(0), x.shape[1:])
    optimizer = fdl.optim.adam(learning_rate)

    def step(carry, step_key):
        p, opt_state = carry

        def loss(q):
            logits, _ = model.apply(q, state, x, key=step_key, train=True)
            return fdl.losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean")

        updates, opt_state = optimizer.update(jax.grad(loss)(p), opt_state, p)
        return (fdl.optim.apply_updates(p, updates), opt_state), None

    run = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), jax.random.split(key, steps))[0][0])
    return run(params), state


def compute() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    # --- softmax(z / T): entropy grows with T from 0 (argmax) towards log C (uniform)
    z = jnp.asarray(LOGITS)
    probs = jnp.stack([fdl.activations.softmax(z / t) for t in TEMPERATURES])  # (3, C)
    entropies = fdl.information.entropy(probs)  # (3,)
    assert bool(jnp.all(jnp.diff(entropies) > 0)) and float(entropies[-1]) < np.log(len(LOGITS))
    np.testing.assert_allclose(
        entropies,
        fdl.information.entropy_from_logits(z[None, :] / jnp.asarray(TEMPERATURES)[:, None]),
        rtol=1e-6,
    )
    out["softmax_probs"], out["softmax_entropy"] = np.asarray(probs), np.asarray(entropies)

    # --- an overconfident MLP (150 training images, no dropout) and one fitted temperature
    data = fdl.data.load_digits(seed=0)
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    plain = fdl.models.build_model("mlp", 10, hidden=(64,), dropout=0.0)
    params, state = _train(
        plain, x_train[:150], y_train[:150], steps=300, learning_rate=1e-2, key=jax.random.key(1)
    )
    logits = lambda x: plain.apply(params, state, x)[0]
    temperature = fdl.calibration.fit_temperature(logits(x_train[150:]), y_train[150:])  # held out
    test_logits = logits(x_test)
    for when, scores in [
        ("before", test_logits),
        ("after", fdl.calibration.temperature_scale(test_logits, temperature)),
    ]:
        p = fdl.activations.softmax(scores)
        diagram = fdl.calibration.reliability_diagram(p, y_test, num_bins=10)
        out[f"confidence_{when}"] = np.nan_to_num(np.asarray(diagram.confidence), nan=-1.0)  # -1: empty bin
        out[f"accuracy_{when}"] = np.nan_to_num(np.asarray(diagram.accuracy), nan=-1.0)
        out[f"counts_{when}"] = np.asarray(diagram.counts)
        out[f"ece_{when}"] = np.asarray(fdl.calibration.expected_calibration_error(p, y_test, num_bins=15))
    out["temperature"] = np.asarray(temperature)
    assert float(temperature) > 1.0 and float(out["ece_after"]) < float(out["ece_before"])

    # --- MC dropout: 32 thinned networks, their predictive entropy split in two
    mlp = fdl.models.build_model("mlp", 10, hidden=(128, 128), dropout=0.2)
    params, state = _train(mlp, x_train, y_train, steps=400, learning_rate=3e-3, key=jax.random.key(2))
    images = data.x_test.reshape(-1, 8, 8)
    groups = {
        "test digits": x_test,
        "upside down": jnp.asarray(np.rot90(images, 2, axes=(1, 2)).reshape(-1, 64)),
        "noise": jnp.asarray(np.random.default_rng(0).uniform(size=data.x_test.shape), jnp.float32),
    }
    split = {"predictive": [], "expected": [], "mutual": []}
    for name in GROUPS:
        u = fdl.bayesian.mc_dropout_predict(
            mlp, params, state, groups[name], key=jax.random.key(3), num_samples=32
        )
        np.testing.assert_allclose(u.predictive_entropy, u.expected_entropy + u.mutual_information, atol=1e-5)
        split["predictive"].append(float(jnp.mean(u.predictive_entropy)))
        split["expected"].append(float(jnp.mean(u.expected_entropy)))
        split["mutual"].append(float(jnp.mean(u.mutual_information)))
    for part, values in split.items():
        out[f"mc_{part}"] = np.asarray(values)
    assert (
        out["mc_predictive"][1] > 2 * out["mc_predictive"][0]
        and out["mc_predictive"][2] > 2 * out["mc_predictive"][0]
    )
    assert np.all(out["mc_mutual"][1:] > out["mc_mutual"][0])
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((15, 4.4), dpi=110)
    left, middle, right = fig.subplots(1, 3)

    classes = np.arange(len(LOGITS))
    width = 0.27
    for i, (t, color) in enumerate(zip(TEMPERATURES, ["#08519c", "#4292c6", "#9ecae1"], strict=True)):
        label = f"$T = {t:g}$: $H = {float(data['softmax_entropy'][i]):.2f}$ nats"
        left.bar(classes + (i - 1) * width, data["softmax_probs"][i], width, color=color, label=label)
    left.axhline(
        1 / len(LOGITS),
        color="gray",
        linestyle=":",
        label=f"uniform: $H = \\log {len(LOGITS)} = {np.log(len(LOGITS)):.2f}$",
    )
    left.set_xticks(classes, [f"$z_{k + 1} = {v:g}$" for k, v in enumerate(LOGITS)])
    left.set_ylabel("softmax$(z / T)_i$")
    left.set_title("Softmax with temperature: one set of logits")
    left.legend()

    middle.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    styles = {
        "before": ("#d62728", "o", "before"),
        "after": ("#2ca02c", "s", f"after, $T = {float(data['temperature']):.2f}$"),
    }
    for when, (color, marker, name) in styles.items():
        filled = data[f"counts_{when}"] > 0
        conf, acc = data[f"confidence_{when}"][filled], data[f"accuracy_{when}"][filled]
        label = f"{name} (ECE {float(data[f'ece_{when}']):.3f})"
        middle.plot(conf, acc, marker + "-", color=color, alpha=0.7, markersize=4, label=label)
        area = 20 * np.sqrt(data[f"counts_{when}"][filled])  # the marker's area grows with the count
        middle.scatter(conf, acc, s=area, marker=marker, color=color, alpha=0.7)
    top = int(data["counts_before"][-1])
    middle.annotate(
        f"{top} of {int(np.sum(data['counts_before']))} digits\nin the top bin",
        (float(data["confidence_before"][-1]), float(data["accuracy_before"][-1])),
        xytext=(0.62, 0.12),
        arrowprops={"arrowstyle": "->", "color": "gray"},
    )
    middle.set_xlim(0.0, 1.02)
    middle.set_ylim(-0.02, 1.05)
    middle.set_xlabel("mean top-label confidence in the bin")
    middle.set_ylabel("accuracy in the bin")
    middle.set_title("Reliability of an overconfident MLP (marker area: count)")
    middle.legend(loc="upper left")

    x = np.arange(len(GROUPS))
    right.bar(x, data["mc_expected"], 0.6, color="#9ecae1", label="expected entropy (aleatoric)")
    right.bar(
        x,
        data["mc_mutual"],
        0.6,
        bottom=data["mc_expected"],
        color="#fd8d3c",
        label="mutual information (epistemic)",
    )
    for i, total in enumerate(data["mc_predictive"]):
        right.text(i, total + 0.01, f"{total:.2f}", ha="center", va="bottom")
    right.set_xticks(x, list(GROUPS))
    right.set_ylabel("mean predictive entropy $H[\\bar p]$ (nats)")
    right.set_ylim(0, 1.25 * float(np.max(data["mc_predictive"])))
    right.set_title("MC dropout (32 passes) in and out of distribution")
    right.legend(loc="upper left")
    fdl.plot.save_png(fig, path)
