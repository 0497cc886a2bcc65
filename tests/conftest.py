"""Shared test configuration.

Every test runs with JAX's strict dtype promotion and rank promotion set to raise (as Equinox's
suite does), so an implicit float64 upcast or an accidental broadcast fails loudly.

The suite compiles with XLA's older CPU code generator for fused elementwise kernels
(``--xla_cpu_use_fusion_emitters=false``, through ``XLA_FLAGS``, so the subprocesses that tests
start use it too). Compiling small programs is most of the suite's time, and the older
generator compiles them in about 30% less CPU time (measured on ``tests/nn``: 5.5 against 4.0
CPU minutes). Both generators implement the same XLA semantics, so no test's meaning changes
(the optimizer parity tests are bit-identical to optax under it). Where a jaxlib no longer knows
the flag (XLA would abort on it), a probe in a subprocess finds out once and the defaults stay.
"""

import itertools
import os
import subprocess
import sys
import zlib

LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


if "FDL_TEST_XLA_PROBED" not in os.environ:  # the first process of the run (xdist's controller)
    os.environ["FDL_TEST_XLA_PROBED"] = "1"
    flags = os.environ.get("XLA_FLAGS", "")
    if LEGACY_EMITTERS not in flags:
        flags = f"{flags} {LEGACY_EMITTERS}".strip()
        probe = subprocess.run(
            [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"],
            env={**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"},
            capture_output=True,
            timeout=300,
            check=False,
        )
        if probe.returncode == 0:
            os.environ["XLA_FLAGS"] = flags

# One persistent compilation cache for the test processes of a run (xdist's workers inherit the
# controller's environment): a program that both workers compile (the same eager op, the same
# small model) is compiled once, and a second run of the suite reads back what the first one
# compiled. The cache is keyed on the XLA program, the compile options and the jax/jaxlib
# versions, so a changed program is compiled anew; an entry holds the very executable XLA built,
# so no number changes. Only the pytest processes use it (a ``jax.config`` setting, not JAX's
# environment variables): the subprocesses that tests start, some of them killed mid-write on
# purpose, compile on their own. ``FDL_TEST_JAX_CACHE=""`` turns it off.
os.environ.setdefault(
    "FDL_TEST_JAX_CACHE",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax"),
)

import jax  # noqa: E402  (after XLA_FLAGS is set: XLA reads it when the backend starts)
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
if os.environ["FDL_TEST_JAX_CACHE"]:
    jax.config.update("jax_compilation_cache_dir", os.environ["FDL_TEST_JAX_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the many small programs too


@pytest.fixture
def keys(request):
    """A generator of fresh PRNG keys, seeded by the test's own id.

    Each ``next(keys)`` is a new key, so unrelated draws never share a literal key, and a test's
    keys do not change when other tests are added.
    """
    seed = zlib.crc32(request.node.nodeid.encode())
    base = jax.random.key(seed)
    return (jax.random.fold_in(base, i) for i in itertools.count())


@pytest.fixture
def key(keys):
    """One fresh PRNG key."""
    return next(keys)


def pytest_terminal_summary(terminalreporter):
    """Close the run with the counts of optax's own suite (tests/optax_suite), when it ran."""
    from tests.optax_suite import summary

    summary.write(terminalreporter)
