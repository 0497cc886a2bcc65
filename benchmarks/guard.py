"""What fit's non-finite guard costs the compiled step, on the digits example's MLP.

The same train step (``fdl.train.make_step``: the 64-256-256-10 MLP of ``fit.py``, dropout 0.1,
Adam, batch 32) runs ``--steps`` times inside one jitted ``lax.fori_loop``, so only compiled
work is timed, in these forms:

* ``plain``: the step alone, as ``fdl.train.make_train_step`` compiles it;
* ``guard``: the step inside fit's guard (``fdl.fit.pieces.guard``, ``nan_policy="raise"``): the
  loss, every gradient leaf and every leaf of the new parameters and optimizer state are checked,
  and a ``where`` keeps the old state when any is not finite;
* ``loss_check``: the cheapest guard one could write, for scale: only the loss is checked, with
  the same ``where``;
* ``state_flag``: every check of ``guard`` reduced to one flag, the new state applied without a
  ``where`` (what the checks of the new state cost on their own);
* ``fast_guard``: what ``fit`` runs at every step since the guard's redesign
  (``fdl.fit.pieces.fast_guard``): the loss and the gradients checked, the new state applied; the
  whole state is checked once per fused call, and a call with anything non-finite is run again
  under ``guard`` (``fdl.fit.pieces.make_checked_run``).

Timed by the shared method of ``_common.py``; XLA's cost model gives the bytes each program moves
(these steps are memory-bound). The finding and what to do about it: ``docs/design.md``
("Issue 17").

    python benchmarks/guard.py          # writes benchmarks/results/guard-<platform>.{json,md}
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import fdl
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
from fdl.fit import pieces

BATCH = 32


def candidates():
    """The step forms, each ``f(carry, batch, key) -> carry``, and a start carry."""
    data = fdl.data.load_digits(seed=0)
    model = fdl.nn.MLP((256, 256, 10), dropout_rate=0.1, w_init=fdl.initializers.he_normal())
    params, state, _ = model.init(jax.random.key(0), (64,))
    optimizer = fdl.optim.adam(1e-3)
    step = fdl.train.make_step(fdl.fit.classification_loss(model), optimizer)
    guarded = pieces.guard(step, "raise")
    fast = pieces.fast_guard(step)

    def plain(carry, batch, key):
        return carry._replace(state=step(carry.state, batch, key)[0])

    def loss_check(carry, batch, key):
        new, metrics, _ = step(carry.state, batch, key)
        finite = jnp.isfinite(metrics["loss"])
        return carry._replace(state=jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, carry.state))

    def all_finite(tree):
        leaves = jax.tree.leaves(tree)
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))

    def flag(carry, batch, key):
        new, metrics, grads = step(carry.state, batch, key)
        finite = jnp.isfinite(metrics["loss"]) & all_finite(grads) & all_finite((new.params, new.opt_state))
        return carry._replace(state=new, halted=carry.halted | ~finite)

    def fast_form(carry, batch, key):  # the flag kept alive, as fit's stacked records keep it
        new, record = fast(carry, batch, key)
        return new._replace(halted=new.halted | ~record["finite"])

    forms = {
        "plain": plain,
        "guard": lambda c, b, k: guarded(c, b, k)[0],
        "loss_check": loss_check,
        "state_flag": flag,
        "fast_guard": fast_form,
    }
    start = pieces.Carry(fdl.train.init_state(params, optimizer, layer_state=state), jnp.asarray(False))
    batch = (jnp.asarray(data.x_train[:BATCH]), jnp.asarray(data.y_train[:BATCH]))
    return forms, start, batch


def run(rounds: int, steps: int) -> dict:
    forms, start, batch = candidates()
    step_key = jax.random.key(1)

    def fused(form):
        def loop(carry):
            return jax.lax.fori_loop(
                0, steps, lambda i, c: form(c, batch, jax.random.fold_in(step_key, i)), carry
            )

        return jax.jit(loop, donate_argnums=0)

    loops = {name: fused(form) for name, form in forms.items()}
    carries = {name: jax.tree.map(jnp.copy, start) for name in forms}
    costs = {
        name: compiled_cost(jax.jit(form).lower(start, batch, step_key).compile())
        for name, form in forms.items()
    }

    def runner(name):
        def go(n):
            assert n == steps, "the loop is compiled for `steps` steps"
            carries[name] = jax.block_until_ready(loops[name](carries[name]))

        return go

    runners = {name: runner(name) for name in forms}
    for go in runners.values():  # compile and warm up
        go(steps)
    timings = interleaved(runners, rounds, steps)
    return {
        "timing": timings.record(),
        "timing_summary": timings.describe(),
        "over_plain": {name: ratios(timings, name, "plain") for name in forms if name != "plain"},
        "xla_cost": costs,
    }


def to_markdown(result: dict, info: dict, run_info: dict) -> str:
    s, cost = result["timing"]["seconds_per_call"], result["xla_cost"]
    lines = [
        header(info, run_info),
        "",
        f"One train step of the 64-256-256-10 MLP (dropout 0.1, Adam, batch {BATCH}), compiled, "
        f"in one jitted loop; {result['timing_summary']}.",
        "",
        "| step | µs/step | / plain | XLA bytes / plain | XLA fusions |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in result["xla_cost"]:
        ratio = "1" if name == "plain" else fmt_ratio(result["over_plain"][name])
        moved = cost[name]["bytes_accessed"] / cost["plain"]["bytes_accessed"]
        lines.append(
            f"| {name} | {fmt_time(s[name], 1e6)} | {ratio} | {moved:.3f} | {cost[name]['fusions']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="what fit's non-finite guard costs the compiled step")
    parser.add_argument("--rounds", type=int, default=11, help="rounds per process (>= 11)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per round")
    add_process_options(parser)
    args = parser.parse_args(argv)
    run_processes(args)
    result = run(args.rounds, args.steps)
    info, how = machine(), settings(args)
    save("guard", info, how, result, to_markdown(result, info, how), RESULTS)


if __name__ == "__main__":
    main()
