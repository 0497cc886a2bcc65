"""Check whether this jaxlib's CPU backend miscompiles a product with a closed-over uniform matrix.

jaxlib 0.10.2 on CPU, now and then, compiles ``exp(z - max z)`` (``z = x @ w``, ``w`` a constant
of the program whose entries are all equal, such as zero-initialized weights closed over by a
jitted function) into an executable that returns NaN on every call. The same program is compiled
``--compiles`` times, with JAX's caches cleared in between, and the executables whose output holds
a NaN (the right output has none: every entry is 1) are counted. docs/design.md ("A NaN that came
from the compiler") records what was measured and why fdl passes parameters as arguments.

Run it after changing jax or jaxlib::

    python scripts/xla_cpu_splat_nan.py                  # the program as described
    python scripts/xla_cpu_splat_nan.py --weights random # control: a non-uniform matrix
    python scripts/xla_cpu_splat_nan.py --weights argument

Exit status 1 when any executable returned NaN, else 0.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compiles", type=int, default=200, help="compilations to try (200)")
    parser.add_argument(
        "--weights",
        choices=["uniform", "random", "argument"],
        default="uniform",
        help="w closed over with all entries 0.5 (uniform), closed over random, or passed as an argument",
    )
    args = parser.parse_args(argv)
    if args.compiles < 1:
        parser.error(f"--compiles {args.compiles}: expected a positive number of compilations")
    x = jnp.asarray(np.random.default_rng(0).random((1438, 64), dtype=np.float32))  # (N, 64)
    if args.weights == "random":
        w = jnp.asarray(np.random.default_rng(1).normal(size=(64, 10)).astype(np.float32))
    else:
        w = jnp.full((64, 10), 0.5, jnp.float32)  # one value: folded into a broadcast by XLA

    def shifted_exp(x: jax.Array, w: jax.Array) -> jax.Array:  # (N, 10), every entry exp(0) = 1
        z = x @ w
        return jnp.exp(z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True)))

    bad = 0
    for _ in range(args.compiles):
        jax.clear_caches()  # a fresh compilation of the same program
        if args.weights == "argument":
            out = jax.jit(shifted_exp)(x, w)
        else:
            out = jax.jit(lambda x: shifted_exp(x, w))(x)  # w a constant of the program
        bad += bool(np.isnan(np.asarray(out)).any())
    print(
        f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, {jax.default_backend()}, weights "
        f"{args.weights}: {bad} of {args.compiles} executables returned NaN"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
