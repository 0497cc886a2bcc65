"""Pairwise distances and k-means: fdl (jitted JAX) against scikit-learn, in one process.

Data: ``n x 64`` float32 standard-normal points (NumPy generator seeded 0; ``n = 20,000`` by
default).

1. **Pairwise distances.** The ``n x n`` euclidean matrix of the points with themselves:
   ``fdl.distances.pairwise_distances(x)`` (jitted, one matrix product, diagonal zeroed) against
   ``sklearn.metrics.pairwise_distances(x)`` (which upcasts float32 blocks to float64 for
   accuracy). Both return the matrix on the host side's memory: fdl's call ends with
   ``block_until_ready``, not a copy to NumPy.
2. **k-means.** ``k = 10`` clusters, ``n_init`` k-means++ starts, at most ``max_iter`` Lloyd
   iterations, ``tol = 1e-4`` (the same relative tolerance in both):
   ``fdl.clustering.kmeans`` (jitted, the starts ``vmap``-ed, Lloyd in ``lax.while_loop``)
   against ``sklearn.cluster.KMeans(algorithm="lloyd")`` with the same ``n_init``, ``max_iter``
   and ``tol``. Both use greedy k-means++ with ``2 + ln k`` trials. Each library draws its own
   starts, so their iteration counts and inertias differ a little: both are reported. A vmapped
   ``while_loop`` runs until its slowest start converges (the others idle in the batch), while
   scikit-learn runs each start to its own convergence.

Timing: the shared method of ``_common.py`` (compiled and warm, interleaved rounds, disturbed
rounds dropped, medians and ratios). On a machine that other jobs keep busy, ``--max-others``
raises the share of a core that other processes may take before a round is dropped; the value
used is recorded with the results.

    python benchmarks/geometry.py              # writes benchmarks/results/geometry-<platform>.{json,md}
    python benchmarks/geometry.py --n 5000     # quicker

One process by default: a call takes seconds (a round of 11 is minutes), so the process-to-process
variation that pooling averages out for microsecond kernels is small next to the rounds' own
spread; ``--processes 3`` pools three.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances as sk_pairwise_distances

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
from fdl.clustering import kmeans
from fdl.distances import pairwise_distances

K = 10
TOL = 1e-4


def bench_pairwise(x: np.ndarray, rounds: int, max_others: float) -> dict:
    fdl_fn = jax.jit(lambda a: pairwise_distances(a))
    x_device = jax.device_put(x)
    out = {}

    def run_fdl(n):
        for _ in range(n):
            out["fdl"] = fdl_fn(x_device)
        out["fdl"].block_until_ready()

    def run_sklearn(n):
        for _ in range(n):
            out["sklearn"] = sk_pairwise_distances(x)

    runners = {"fdl": run_fdl, "sklearn": run_sklearn}
    for run in runners.values():  # compile and warm up
        run(1)
    error = float(np.max(np.abs(np.asarray(out["fdl"]) - out["sklearn"])))
    out.clear()
    timings = interleaved(runners, rounds, 1, max_others=max_others)
    return {
        "case": f"pairwise euclidean {x.shape[0]}x{x.shape[0]} (d={x.shape[1]})",
        "timing": timings.record(),
        "timing_summary": timings.describe(),
        "fdl_over_sklearn": ratios(timings, "fdl", "sklearn"),
        "max_abs_difference": error,
    }


def bench_kmeans(x: np.ndarray, n_init: int, max_iter: int, rounds: int, max_others: float) -> dict:
    x_device = jax.device_put(x)
    key = jax.random.key(0)
    out = {}

    def run_fdl(n):
        for _ in range(n):
            out["fdl"] = kmeans(key, x_device, K, n_init=n_init, max_iter=max_iter, tol=TOL)
        out["fdl"].inertia.block_until_ready()

    def run_sklearn(n):
        for _ in range(n):
            out["sklearn"] = KMeans(
                K, n_init=n_init, max_iter=max_iter, tol=TOL, algorithm="lloyd", random_state=0
            ).fit(x)

    runners = {"fdl": run_fdl, "sklearn": run_sklearn}
    for run in runners.values():  # compile and warm up
        run(1)
    timings = interleaved(runners, rounds, 1, max_others=max_others)
    fdl_result, sk = out["fdl"], out["sklearn"]
    return {
        "case": f"k-means k={K} n_init={n_init} max_iter={max_iter} on {x.shape[0]}x{x.shape[1]}",
        "timing": timings.record(),
        "timing_summary": timings.describe(),
        "fdl_over_sklearn": ratios(timings, "fdl", "sklearn"),
        "inertia": {"fdl": float(fdl_result.inertia), "sklearn": float(sk.inertia_)},
        "iterations_of_best_run": {"fdl": int(fdl_result.iterations), "sklearn": int(sk.n_iter_)},
    }


def to_markdown(results, info, run, extra) -> str:
    lines = [
        header(info, run),
        "",
        f"fdl (jitted JAX) vs scikit-learn {extra['sklearn']}, float32 standard-normal data; "
        f"rounds dropped when other processes took more than {extra['max_others']} of a core.",
        "",
        "| case | fdl s/call | sklearn s/call | fdl / sklearn | notes | rounds |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        s = r["timing"]["seconds_per_call"]
        if "inertia" in r:
            notes = (
                f"inertia fdl {r['inertia']['fdl']:.1f} / sklearn {r['inertia']['sklearn']:.1f}; "
                f"iterations of the best run {r['iterations_of_best_run']['fdl']} / "
                f"{r['iterations_of_best_run']['sklearn']}"
            )
        else:
            notes = f"max abs difference {r['max_abs_difference']:.2e}"
        lines.append(
            f"| {r['case']} | {fmt_time(s['fdl'], 1, 3)} | {fmt_time(s['sklearn'], 1, 3)} | "
            f"{fmt_ratio(r['fdl_over_sklearn'])} | {notes} | {r['timing_summary']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="fdl distances and k-means vs scikit-learn")
    parser.add_argument("--n", type=int, default=20_000, help="points")
    parser.add_argument("--rounds", type=int, default=11, help="rounds per process (>= 11)")
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--max-others", type=float, default=0.1, help="cores others may take in a kept round")
    parser.add_argument("--skip-pairwise", action="store_true", help="time k-means only")
    add_process_options(parser, default=1)
    args = parser.parse_args(argv)
    run_processes(args)
    x = np.random.default_rng(0).standard_normal((args.n, 64), dtype=np.float32)  # (n, 64)
    results = []
    if not args.skip_pairwise:
        results.append(bench_pairwise(x, args.rounds, args.max_others))
    results.append(bench_kmeans(x, args.n_init, args.max_iter, args.rounds, args.max_others))
    info, run = machine(), settings(args)
    extra = {"sklearn": sklearn.__version__, "max_others": args.max_others}
    save(
        "geometry",
        info,
        run,
        {"extra": extra, "cases": results},
        to_markdown(results, info, run, extra),
        RESULTS,
    )


if __name__ == "__main__":
    main()
