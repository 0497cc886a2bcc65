"""Shared test configuration.

Every test runs with JAX's strict dtype promotion and rank promotion set to raise (as Equinox's
suite does), so an implicit float64 upcast or an accidental broadcast fails loudly.
"""

import itertools
import zlib

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


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
