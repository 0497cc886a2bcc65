"""Top-5 Hessian eigenvalues of an MLP's loss: Lanczos on Hessian-vector products vs dense eigh.

The model is fdl's MLP on the digits (64 inputs, one hidden ReLU layer of width ``h``, 10
logits: ``75 h + 10`` parameters), at He-normal initialisation; the loss is the mean softmax
cross-entropy over the 1,438 training images. Its parameters are flattened with
``jax.flatten_util.ravel_pytree`` into one vector ``w`` of ``P`` entries, and

* **lanczos**: ``spectral.top_eigenpairs`` with ``--iterations`` steps (full
  reorthogonalisation) on ``v -> jax.jvp(jax.grad(loss), (w,), (v,))[1]``, the Hessian-vector
  product (forward over reverse), jitted as one function;
* **hessian**: building the dense ``P x P`` Hessian, ``jax.hessian(loss)(w)``, jitted;
* **eigh**: ``jnp.linalg.eigh`` of that matrix, jitted;
* **dense** = hessian + eigh, summed round by round.

All candidates interleave in rounds (``_common.py``). The dense path costs ``O(P)`` Hessian-vector
products to build and ``O(P^3)`` to diagonalise, Lanczos ``m`` products and ``O(P m^2)``, so the
dense path is timed only up to ``--dense-max`` parameters; above it, Lanczos is timed alone and
its accuracy is given by its residuals ``||H y - theta y|| / |theta|`` (below it, also by its
relative error against ``eigh``).

    python benchmarks/spectral.py                    # writes benchmarks/results/spectral-cpu.{json,md}
    python benchmarks/spectral.py --widths 1 4 13    # quicker
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

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
from fdl import spectral

K = 5  # eigenpairs wanted


def flat_loss(width: int):
    """``(loss(w), w0)``: the MLP's training loss as a function of its flat parameter vector."""
    split = fdl.data.load_digits()
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)  # (1438, 64), (1438,)
    model = fdl.models.build_model("mlp", 10, hidden=(width,), dropout=0.0)
    params, state, _ = model.init(jax.random.key(0), (64,))
    w0, unravel = ravel_pytree(params)  # (P,)

    def loss(w):
        logits, _ = model.apply(unravel(w), state, x)  # (1438, 10)
        return fdl.losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean")

    return loss, w0


def run_case(width: int, iterations: int, dense: bool, rounds: int, max_others: float) -> dict:
    loss, w = flat_loss(width)
    p = int(w.size)
    v0 = jax.random.normal(jax.random.key(1), (p,), w.dtype)

    def hvp(w, v):
        return jax.jvp(jax.grad(loss), (w,), (v,))[1]  # (P,)

    lanczos = jax.jit(
        lambda w, v0: spectral.top_eigenpairs(lambda v: hvp(w, v), v0, K, num_iterations=iterations)
    )
    hessian = jax.jit(jax.hessian(loss))
    eigh = jax.jit(jnp.linalg.eigh)
    out: dict = {}

    def run_lanczos(n):
        for _ in range(n):
            out["lanczos"] = lanczos(w, v0)
        jax.block_until_ready(out["lanczos"])

    def run_hessian(n):
        for _ in range(n):
            out["hessian"] = hessian(w)
        jax.block_until_ready(out["hessian"])

    def run_eigh(n):
        for _ in range(n):
            out["eigh"] = eigh(out["hessian"])
        jax.block_until_ready(out["eigh"])

    runners = {"lanczos": run_lanczos}
    if dense:
        runners |= {"hessian": run_hessian, "eigh": run_eigh}
    for run in runners.values():  # compile and warm up (hessian before eigh: eigh reads it)
        run(1)
    timings = interleaved(runners, rounds, 1, max_others=max_others)

    values, vectors = out["lanczos"]
    residual = jax.vmap(lambda y: hvp(w, y), in_axes=1, out_axes=1)(vectors) - vectors * values[None, :]
    result = {
        "width": width,
        "parameters": p,
        "lanczos_iterations": iterations,
        "lanczos_values": np.asarray(values).tolist(),
        "lanczos_relative_residuals": (np.linalg.norm(residual, axis=0) / np.abs(values)).tolist(),
        "timing": timings.record(),
        "timing_summary": timings.describe(),
    }
    if dense:
        timings.times["dense"] = [
            h + e for h, e in zip(timings.times["hessian"], timings.times["eigh"], strict=True)
        ]
        exact = np.asarray(out["eigh"][0])[::-1][:K]
        result |= {
            "eigh_values": exact.tolist(),
            "lanczos_max_relative_error": float(np.max(np.abs(np.asarray(values) - exact) / np.abs(exact))),
            "dense_over_lanczos": ratios(timings, "dense", "lanczos"),
            "hessian_over_lanczos": ratios(timings, "hessian", "lanczos"),
            "dense_seconds": ratios(timings, "dense", "lanczos")["seconds_per_call"]["dense"],
        }
    return result


def to_markdown(results, info, run) -> str:
    lines = [
        header(info, run),
        "",
        f"Top-{K} eigenvalues of the Hessian of an MLP's loss on the digits (float32): Lanczos on "
        "Hessian-vector products vs `jnp.linalg.eigh` of `jax.hessian` (dense = build + eigh).",
        "",
        "| parameters | lanczos s | hessian build s | eigh s | dense s | dense / lanczos "
        "| hessian build / lanczos | max rel. error vs eigh | max rel. residual | rounds |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        s = r["timing"]["seconds_per_call"]
        if "dense_over_lanczos" in r:
            dense = (
                f"{fmt_time(s['hessian'], 1, 4)} | {fmt_time(s['eigh'], 1, 4)} | "
                f"{fmt_time(r['dense_seconds'], 1, 4)} | {fmt_ratio(r['dense_over_lanczos'], 1)} | "
                f"{fmt_ratio(r['hessian_over_lanczos'], 1)} | {r['lanczos_max_relative_error']:.1e}"
            )
        else:
            dense = "not run | not run | not run | – | – | –"
        lines.append(
            f"| {r['parameters']} | {fmt_time(s['lanczos'], 1, 4)} | {dense} | "
            f"{max(r['lanczos_relative_residuals']):.1e} | {r['timing_summary']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Lanczos vs dense eigh for Hessian top eigenvalues")
    parser.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=[1, 2, 4, 13, 33, 67, 133],
        help="hidden widths h (75 h + 10 parameters: 85, 160, 310, 985, 2485, 5035, 9985)",
    )
    parser.add_argument("--iterations", type=int, default=40, help="Lanczos steps")
    parser.add_argument("--dense-max", type=int, default=5100, help="largest P timed densely")
    parser.add_argument("--rounds", type=int, default=11, help="rounds per process (>= 11)")
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.1,
        help="drop a round when other processes took more than this many cores (_common.py)",
    )
    add_process_options(parser, default=1)
    args = parser.parse_args(argv)
    run_processes(args)
    results = []
    for width in args.widths:
        dense = 75 * width + 10 <= args.dense_max
        iterations = min(args.iterations, 75 * width + 10)
        results.append(run_case(width, iterations, dense, args.rounds, args.max_others))
    info, run = machine(), settings(args)
    save("spectral", info, run, results, to_markdown(results, info, run), RESULTS)


if __name__ == "__main__":
    main()
