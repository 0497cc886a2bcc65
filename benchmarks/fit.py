"""Training throughput on the digits MLP: ``fit`` with fused steps against per-step loops.

Three ways to run the same training (an MLP with dropout 0.1, Adam, batch 32, on the embedded
digits), for a small MLP 64-32-10, where per-call dispatch dominates, and for the digits
example's 64-256-256-10, where the arithmetic does:

* ``fit``: ``fdl.fit.fit`` with ``steps_per_call`` steps fused into one ``lax.scan`` per XLA
  call, the data on the device and shuffled there;
* ``loop``: the plain loop a user writes: host-side shuffled batches (``fdl.data.batches``) fed
  one per call to the jitted step of ``fdl.train.make_stateful_train_step``;
* ``raw``: the same loop around a hand-written raw-JAX MLP step (``jax.numpy`` + optax), the
  floor of per-step dispatch.

Each is timed end to end for ``N`` and for ``2N`` steps in one process, and the steady-state
throughput is ``N · batch / (T(2N) − T(N))`` examples per second: the difference cancels the
compilation and set-up that both runs share. N is chosen per runner (probed) so that the N extra
steps take ``--seconds``, far above the jitter of compilation. Repeats interleave the three;
we report medians.

    python benchmarks/fit.py            # writes benchmarks/results/fit-<platform>.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import fdl
from _common import RESULTS, machine, save

BATCH = 32
CASES = {"small 64-32-10": (32,), "example 64-256-256-10": (256, 256)}


def build(hidden):
    data = fdl.data.load_digits(seed=0)
    model = fdl.nn.MLP((*hidden, 10), dropout_rate=0.1, w_init=fdl.initializers.he_normal())
    params, state, _ = model.init(jax.random.key(0), (64,))
    return data, model, params, state


def run_fit(hidden, steps: int, steps_per_call: int) -> float:
    data, model, params, state = build(hidden)
    start = time.perf_counter()
    result = fdl.fit.fit(
        fdl.fit.classification_loss(model),
        fdl.optim.adam(1e-3),
        params,
        (data.x_train, data.y_train),
        layer_state=state,
        key=jax.random.key(1),
        batch_size=BATCH,
        steps=steps,
        execution=fdl.fit.Execution(steps_per_call=steps_per_call),
        logging=fdl.fit.Logging(progress=False),
    )
    jax.block_until_ready(result.params)
    return time.perf_counter() - start


def host_batches(data, key):
    while True:
        key, sub = jax.random.split(key)
        yield from fdl.data.batches(sub, (data.x_train, data.y_train), BATCH)


def run_loop(hidden, steps: int) -> float:
    data, model, params, state = build(hidden)
    start = time.perf_counter()
    optimizer = fdl.optim.adam(1e-3)
    step = fdl.train.make_train_step(fdl.fit.classification_loss(model), optimizer)
    train_state, key = fdl.train.init_state(params, optimizer, layer_state=state), jax.random.key(1)
    for i, batch in zip(range(steps), host_batches(data, key), strict=False):
        train_state, _metrics = step(train_state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready(train_state)
    return time.perf_counter() - start


def run_raw(hidden, steps: int) -> float:
    data, _, params, _ = build(hidden)
    start = time.perf_counter()
    dense = [params[f"dense_{i}"] for i in range(len(params))]  # MLP's dense layers, in order
    weights = [(p["w"], p["b"]) for p in dense]  # the same initial values
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
    opt_state, key = optimizer.init(weights), jax.random.key(1)
    for i, (x, y) in zip(range(steps), host_batches(data, key), strict=False):
        weights, opt_state = step(weights, opt_state, x, y, jax.random.fold_in(key, i))
    jax.block_until_ready(weights)
    return time.perf_counter() - start


def steps_for(runner, seconds: float) -> int:
    """A step count N whose extra N steps take about ``seconds``: probed from T(2n) - T(n)."""
    n = 200
    while True:
        extra = runner(2 * n) - runner(n)
        if extra > 0.2 * seconds or n >= 200_000:
            return max(n, int(n * seconds / max(extra, 1e-9)))
        n *= 4


def measure(args, hidden) -> dict:
    runners = {
        "fit (fused)": lambda n: run_fit(hidden, n, args.steps_per_call),
        "loop (per-step)": lambda n: run_loop(hidden, n),
        "raw JAX (per-step)": lambda n: run_raw(hidden, n),
    }
    # Each runner gets its own N, so that the N extra steps take ~args.seconds: the difference
    # T(2N) - T(N) must dwarf the run-to-run jitter of compilation (about 0.1 s here).
    steps = {name: steps_for(runner, args.seconds) for name, runner in runners.items()}
    throughput: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.repeats):
        names = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for name in names:
            n = steps[name]
            short, long = runners[name](n), runners[name](2 * n)
            throughput[name].append(n * BATCH / (long - short))
    med = {name: statistics.median(v) for name, v in throughput.items()}
    return {
        "steps": steps,
        "examples_per_s": med,
        "all_examples_per_s": throughput,
        "fit_over_loop": med["fit (fused)"] / med["loop (per-step)"],
        "fit_over_raw_loop": med["fit (fused)"] / med["raw JAX (per-step)"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description="fit's fused steps vs per-step loops")
    parser.add_argument(
        "--seconds", type=float, default=1.5, help="target duration of the N extra steps of each runner"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps-per-call", type=int, default=50)
    args = parser.parse_args(argv)
    results = {}
    for case, hidden in CASES.items():
        results[case] = measure(args, hidden)
    info = machine()
    lines = [
        f"Training throughput on the digits (dropout 0.1, Adam, batch {BATCH}), steady state from "
        f"T(2N) - T(N), N chosen per run so that N steps take ~{args.seconds} s, median of "
        f"{args.repeats}; fit fuses "
        f"{args.steps_per_call} steps per call. Device: {info['device']} ({info['platform']}), "
        f"{info['cpu_count']} CPUs, jax {info['jax']}.",
        "",
        "| MLP | fit (fused) ex/s | per-step loop ex/s | raw JAX per-step ex/s | fit / loop "
        "| fit / raw loop |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case, r in results.items():
        m = r["examples_per_s"]
        lines.append(
            f"| {case} | {m['fit (fused)']:,.0f} | {m['loop (per-step)']:,.0f} | "
            f"{m['raw JAX (per-step)']:,.0f} | {r['fit_over_loop']:.2f} | "
            f"{r['fit_over_raw_loop']:.2f} |"
        )
    record = {
        "seconds": args.seconds,
        "batch": BATCH,
        "repeats": args.repeats,
        "steps_per_call": args.steps_per_call,
        "cases": results,
    }
    save("fit", info, record, "\n".join(lines) + "\n", RESULTS)


if __name__ == "__main__":
    main()
