"""Training throughput on the digits MLP: ``fit`` with fused steps against per-step loops.

Three ways to run the same training (an MLP with dropout 0.1, Adam, batch 32, on the embedded
digits), for a small MLP 64-32-10, where per-call dispatch dominates, and for the digits
example's 64-256-256-10, where the arithmetic does:

* ``fit``: ``fdl.fit.fit`` with ``steps_per_call`` steps fused into one ``lax.scan`` per XLA
  call, the data on the device and shuffled there. Each round is one whole ``fit(...)`` call of
  ``--steps`` steps from the same start, as a user makes it (set-up, copies of the parameters,
  history rows included); the loss and the optimizer are the same objects in every call, so
  ``fit`` reuses its compiled program (a second call does not trace again);
* ``loop``: the plain loop a user writes: host-side shuffled batches (``fdl.data.batches``) fed
  one per call to the jitted step of ``fdl.train.make_train_step``;
* ``raw``: the same loop around a hand-written raw-JAX MLP step (``jax.numpy`` + optax), the
  floor of per-step dispatch.

Timed by the shared method of ``_common.py``: warm (every candidate runs once first, so no round
compiles), interleaved rounds of ``--steps`` steps each, rounds disturbed by other processes
dropped, medians with interquartile ranges. The first ``fit`` call (tracing and compiling) is
reported apart, beside the second.

    python benchmarks/fit.py            # writes benchmarks/results/fit-<platform>.{json,md}
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

import fdl
from _common import (
    RESULTS,
    add_process_options,
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

BATCH = 32
CASES = {"small 64-32-10": (32,), "example 64-256-256-10": (256, 256)}


def build(hidden):
    data = fdl.data.load_digits(seed=0)
    model = fdl.nn.MLP((*hidden, 10), dropout_rate=0.1, w_init=fdl.initializers.he_normal())
    params, state, _ = model.init(jax.random.key(0), (64,))
    return data, model, params, state


def host_batches(data, key):
    while True:
        key, sub = jax.random.split(key)
        yield from fdl.data.batches(sub, (data.x_train, data.y_train), BATCH)


def fit_runner(hidden, steps_per_call: int):
    data, model, params, state = build(hidden)
    loss, optimizer = fdl.fit.classification_loss(model), fdl.optim.adam(1e-3)
    execution = fdl.fit.Execution(steps_per_call=steps_per_call)
    logging = fdl.fit.Logging(progress=False)

    def run(n: int) -> None:
        result = fdl.fit.fit(
            loss,
            optimizer,
            params,
            (data.x_train, data.y_train),
            layer_state=state,
            key=jax.random.key(1),
            batch_size=BATCH,
            steps=n,
            execution=execution,
            logging=logging,
        )
        jax.block_until_ready(result.params)

    return run


def loop_runner(hidden):
    data, model, params, state = build(hidden)
    optimizer = fdl.optim.adam(1e-3)
    step = fdl.train.make_train_step(fdl.fit.classification_loss(model), optimizer)
    carry = {"state": fdl.train.init_state(params, optimizer, layer_state=state)}
    key = jax.random.key(1)
    batches = host_batches(data, key)

    def run(n: int) -> None:
        train_state = carry["state"]
        for i in range(n):
            train_state, _metrics = step(train_state, next(batches), jax.random.fold_in(key, i))
        carry["state"] = jax.block_until_ready(train_state)

    return run


def raw_runner(hidden):
    data, _, params, _ = build(hidden)
    dense = [params[f"dense_{i}"] for i in range(len(params))]  # MLP's dense layers, in order
    optimizer = optax.adam(1e-3)

    def loss_fn(weights, x, y, key):
        h = x
        for i, (w, b) in enumerate(weights[:-1]):
            h = jax.nn.relu(h @ w + b)
            keep = jax.random.bernoulli(jax.random.fold_in(key, i), 0.9, h.shape)
            h = jnp.where(keep, h / 0.9, 0.0)
        w, b = weights[-1]
        logp = jax.nn.log_softmax(h @ w + b)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))

    def step(weights, opt_state, x, y, key):
        grads = jax.grad(loss_fn)(weights, x, y, key)
        updates, opt_state = optimizer.update(grads, opt_state, weights)
        return optax.apply_updates(weights, updates), opt_state

    step = jax.jit(step, donate_argnums=(0, 1))
    weights = [(jnp.array(p["w"]), jnp.array(p["b"])) for p in dense]  # the same initial values
    carry = {"weights": weights, "opt_state": optimizer.init(weights)}
    key = jax.random.key(1)
    batches = host_batches(data, key)

    def run(n: int) -> None:
        weights, opt_state = carry["weights"], carry["opt_state"]
        for i in range(n):
            x, y = next(batches)
            weights, opt_state = step(weights, opt_state, x, y, jax.random.fold_in(key, i))
        carry["weights"], carry["opt_state"] = jax.block_until_ready((weights, opt_state))

    return run


def measure(args, hidden) -> dict:
    runners = {
        "fit": fit_runner(hidden, args.steps_per_call),
        "loop": loop_runner(hidden),
        "raw": raw_runner(hidden),
    }
    first_calls = []
    for _ in range(2):  # the first fit call traces and compiles; the second must not
        start = time.perf_counter()
        runners["fit"](args.steps)
        first_calls.append(time.perf_counter() - start)
    for name in ("loop", "raw"):  # compile and warm up
        runners[name](args.steps)
    timings = interleaved(runners, args.rounds, args.steps)
    return {
        "timing": timings.record(),
        "timing_summary": timings.describe(),
        # speed-ups of fit: the loop's time per step over fit's
        "fit_speedup_over_loop": ratios(timings, "loop", "fit"),
        "fit_speedup_over_raw_loop": ratios(timings, "raw", "fit"),
        "first_fit_call_s": first_calls[0],
        "second_fit_call_s": first_calls[1],
    }


def to_markdown(results: dict, info: dict, run: dict, args) -> str:
    lines = [
        header(info, run),
        "",
        f"Training throughput on the digits (dropout 0.1, Adam, batch {BATCH}); each round is "
        f"{args.steps} steps of each candidate; fit fuses {args.steps_per_call} steps per call. "
        "Speed-up: the per-step loop's time over fit's (above 1: fit is faster).",
        "",
        "| MLP | fit µs/step | per-step loop µs/step | raw JAX loop µs/step | fit speed-up over loop "
        "| over raw loop | first / second fit call (s) | rounds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case, r in results.items():
        s = r["timing"]["seconds_per_call"]
        lines.append(
            f"| {case} | {fmt_time(s['fit'], 1e6)} | {fmt_time(s['loop'], 1e6)} | "
            f"{fmt_time(s['raw'], 1e6)} | {fmt_ratio(r['fit_speedup_over_loop'], 2)} | "
            f"{fmt_ratio(r['fit_speedup_over_raw_loop'], 2)} | "
            f"{r['first_fit_call_s']:.2f} / {r['second_fit_call_s']:.2f} | {r['timing_summary']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="fit's fused steps vs per-step loops")
    parser.add_argument(
        "--rounds", type=int, default=11, help="undisturbed rounds to keep per process (>= 11)"
    )
    parser.add_argument("--steps", type=int, default=4000, help="training steps per candidate per round")
    parser.add_argument("--steps-per-call", type=int, default=50)
    add_process_options(parser)
    args = parser.parse_args(argv)
    if args.steps % args.steps_per_call:
        parser.error(f"--steps ({args.steps}) must be a multiple of --steps-per-call ({args.steps_per_call})")
    run_processes(args)
    results = {case: measure(args, hidden) for case, hidden in CASES.items()}
    info, run = machine(), settings(args)
    save("fit", info, run, results, to_markdown(results, info, run, args), RESULTS)


if __name__ == "__main__":
    main()
