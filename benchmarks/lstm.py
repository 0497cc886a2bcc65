"""An LSTM train step: fdl's Recurrent(LSTMCell) against raw JAX and Flax linen, in one process.

The model: 50 steps of 32 features, batch 32, hidden 128, the last hidden state into a dense
layer of 10; softmax cross-entropy; Adam (optax), jitted with params and optimizer state donated.
Four forward passes, each inside the very same train step (so only the forward code differs),
all starting from the very same parameter values (read from fdl's tree):

* ``fdl``: ``Serial(Recurrent(LSTMCell(128), return_sequences=False), Dense(10))``, whose cell
  runs the sequence with its own JVP (``fdl.nn._lstm_scan``): reverse mode takes the weight
  gradients after the backward loop instead of accumulating them at every step;
* ``raw``: the floor, written by hand: ``lax.scan`` over time-major inputs, the four gates as one
  matmul on x_t and one on h inside the step;
* ``raw_hoisted``: the same, but with the input projection x W_x + b of all T steps computed in
  one matmul before the scan (what fdl did before: it shows what that costs on this machine);
* ``flax``: ``nn.RNN(nn.OptimizedLSTMCell(128))`` then ``nn.Dense(10)`` on the last output.

Timed by the shared method of ``_common.py`` (warm, interleaved rounds, rounds disturbed by
other processes dropped); we report medians with their interquartile ranges, the ratios to raw
and to Flax with the spread of the per-round ratios, and XLA's cost model for each program. Needs Flax:
``pip install -e '.[bench]'``.

    python benchmarks/lstm.py              # writes benchmarks/results/lstm-<platform>.{json,md}
    python benchmarks/lstm.py --rounds 11  # quicker
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

from _common import (
    RESULTS,
    add_process_options,
    compiled_cost,
    fmt_ratio,
    fmt_time,
    header,
    interleaved,
    machine,
    ratios,
    run_processes,
    save,
    settings,
)
from fdl import nn

HIDDEN, STEPS, FEATURES, BATCH, CLASSES = 128, 50, 32, 32, 10


def xent(logits, labels):
    logp = jax.nn.log_softmax(logits)  # (B, 10)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def fdl_lstm(hidden: int = HIDDEN) -> nn.Layer:
    return nn.Serial(nn.Recurrent(nn.LSTMCell(hidden), return_sequences=False), nn.Dense(CLASSES))


def _lstm_gates(z, c):
    """The LSTM update from the pre-activations ``z (B, 4H)``, gates in fdl's order i, f, g, o."""
    i, f, g, o = jnp.split(z, 4, axis=-1)  # (B, H) each
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def raw_lstm(params, x):
    """The floor by hand: both gate matmuls inside ``lax.scan``; ``params`` is fdl's tree."""
    cell, dense = params["recurrent_0"], params["dense_0"]
    w_x, w_h, b = cell["w_x"], cell["w_h"], cell["b"]

    def step(carry, x_t):
        h, c = carry  # (B, H) each
        h, c = _lstm_gates(x_t @ w_x + h @ w_h + b, c)  # (B, 4H) pre-activations
        return (h, c), None

    zeros = jnp.zeros((x.shape[0], w_h.shape[0]), x.dtype)  # (B, H)
    (h, _), _ = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(x, 0, 1))  # (T, B, F)
    return h @ dense["w"] + dense["b"]


def raw_hoisted_lstm(params, x):
    """As :func:`raw_lstm`, but with ``x W_x + b`` for all steps in one matmul before the scan."""
    cell, dense = params["recurrent_0"], params["dense_0"]
    xw = jnp.swapaxes(x @ cell["w_x"] + cell["b"], 0, 1)  # (B, T, 4H) -> (T, B, 4H)

    def step(carry, xw_t):
        h, c = carry
        h, c = _lstm_gates(xw_t + h @ cell["w_h"], c)
        return (h, c), None

    zeros = jnp.zeros((x.shape[0], cell["w_h"].shape[0]), x.dtype)
    (h, _), _ = jax.lax.scan(step, (zeros, zeros), xw)
    return h @ dense["w"] + dense["b"]


def flax_lstm(fdl_params, hidden: int = HIDDEN):
    """Flax linen's RNN(OptimizedLSTMCell) + Dense, and fdl's parameter values in its layout.

    OptimizedLSTMCell keeps one (F, H) input kernel per gate (``ii``, ``if``, ``ig``, ``io``, no
    bias) and one (H, H) recurrent kernel with a bias per gate (``hi``, ...); it concatenates them
    in the step, in the gate order i, f, g, o, as fdl's (F, 4H) blocks are.
    """
    import flax.linen as fnn

    class Model(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            ys = fnn.RNN(fnn.OptimizedLSTMCell(hidden))(x)  # (B, T, H)
            return fnn.Dense(CLASSES)(ys[:, -1])

    cell, dense = fdl_params["recurrent_0"], fdl_params["dense_0"]
    gates = {}
    for k, gate in enumerate("ifgo"):
        block = slice(k * hidden, (k + 1) * hidden)
        gates[f"i{gate}"] = {"kernel": cell["w_x"][:, block]}  # (F, H)
        gates[f"h{gate}"] = {"kernel": cell["w_h"][:, block], "bias": cell["b"][block]}  # (H, H)
    params = {
        "params": {
            "OptimizedLSTMCell_0": gates,  # the cell is created in Model, so named under it
            "Dense_0": {"kernel": dense["w"], "bias": dense["b"]},
        }
    }
    model = Model()
    return (lambda p, x: model.apply(p, x)), params


def run(rounds: int, steps: int) -> dict:
    keys = jax.random.split(jax.random.key(2), 3)
    x = jax.random.normal(keys[0], (BATCH, STEPS, FEATURES))
    y = jax.random.randint(keys[1], (BATCH,), 0, CLASSES)
    model = fdl_lstm()
    params, state, _ = model.init(keys[2], (STEPS, FEATURES))
    flax_forward, flax_params = flax_lstm(params)
    candidates = {
        "fdl": (lambda p, xs: model.apply(p, state, xs)[0], params),
        "raw": (raw_lstm, params),
        "raw_hoisted": (raw_hoisted_lstm, params),
        "flax": (flax_forward, flax_params),
    }
    optimizer = optax.adam(1e-3)

    def make_step(forward):
        def step(p, opt_state, x, y):
            loss, grads = jax.value_and_grad(lambda q: xent(forward(q, x), y))(p)
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        return jax.jit(step, donate_argnums=(0, 1))

    steps_fns, carries, costs, first_loss, last_loss = {}, {}, {}, {}, {}
    for name, (forward, p) in candidates.items():
        steps_fns[name] = make_step(forward)
        first_loss[name] = float(xent(forward(p, x), y))
        copy = jax.tree.map(jnp.copy, p)  # each candidate owns (and donates) its buffers
        carries[name] = (copy, optimizer.init(copy))
        costs[name] = compiled_cost(steps_fns[name].lower(*carries[name], x, y).compile())

    def runner(name):
        def go(n):
            p, s = carries[name]
            for _ in range(n):
                p, s, loss = steps_fns[name](p, s, x, y)
            jax.block_until_ready((p, s))
            carries[name] = (p, s)
            last_loss[name] = float(loss)

        return go

    if max(first_loss.values()) - min(first_loss.values()) > 1e-5:  # the same function?
        raise RuntimeError(f"the candidates disagree on the initial loss: {first_loss}")
    runners = {name: runner(name) for name in candidates}
    for go in runners.values():  # compile and warm up
        go(3)
    timings = interleaved(runners, rounds, steps)
    return {
        "case": f"lstm_h{HIDDEN}_t{STEPS}_f{FEATURES}_b{BATCH}",
        "timing": timings.record(),
        "timing_summary": timings.describe(),
        "vs_raw": {name: ratios(timings, name, "raw") for name in ("fdl", "raw_hoisted", "flax")},
        "fdl_vs_flax": ratios(timings, "fdl", "flax"),
        "loss_before": first_loss,
        "loss_after_warmup_and_rounds": last_loss,
        "xla_cost": costs,
    }


def to_markdown(result: dict, info: dict, run: dict) -> str:
    vs_raw, s = result["vs_raw"], result["timing"]["seconds_per_call"]
    lines = [
        header(info, run),
        "",
        f"LSTM train step ({result['case']}, Adam, donated), the same step around four forward "
        f"passes; flax {info['flax']}; {result['timing_summary']}.",
        "",
        "| forward | ms/step | / raw | XLA fusions |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in ("fdl", "raw", "raw_hoisted", "flax"):
        ratio = "1" if name == "raw" else fmt_ratio(vs_raw[name])
        lines.append(
            f"| {name} | {fmt_time(s[name], 1e3, 3)} | {ratio} | {result['xla_cost'][name]['fusions']} |"
        )
    lines += [
        "",
        f"fdl / flax: {fmt_ratio(result['fdl_vs_flax'])}.",
        "",
        "raw, raw_hoisted and Flax are differentiated by autodiff through the scan, whose "
        "backward loop accumulates dW_x and dW_h at every step (two matmuls with an inner "
        "dimension of the batch size); fdl's LSTMCell has its own JVP, so reverse mode takes "
        "the weight gradients after the backward loop, one matmul over all T x B rows. "
        "raw_hoisted also computes x W_x + b for all steps before the scan, which writes, "
        "transposes and re-reads a (T, B, 4H) array (see docs/design.md).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="LSTM train step: fdl vs raw JAX vs Flax")
    parser.add_argument("--rounds", type=int, default=11, help="rounds per process (>= 11)")
    parser.add_argument("--steps", type=int, default=10, help="steps per round")
    add_process_options(parser)
    args = parser.parse_args(argv)
    run_processes(args)
    import flax

    result = run(args.rounds, args.steps)
    info, how = {**machine(), "flax": flax.__version__}, settings(args)
    save("lstm", info, how, result, to_markdown(result, info, how), RESULTS)


if __name__ == "__main__":
    main()
