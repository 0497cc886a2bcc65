"""How every schedule handles its numbers (a kernel module)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_concrete_number, check_whole_steps

Value = Any  # a Python number, a NumPy scalar or a (possibly traced) JAX array


def prepare(value: Value, dtype: jnp.dtype) -> Value:
    """Keep a Python number as is (a weak type, rounded once, as optax does); cast arrays."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return jnp.asarray(value, dtype)


def float_count(count: Any, dtype: jnp.dtype) -> jax.Array:
    """The step count as an array of the schedule dtype."""
    return jnp.asarray(count).astype(dtype)


def sorted_phases(boundaries_and_scales: Any, why: str) -> list[tuple[int, Any]]:
    """``boundaries_and_scales`` (``{step: scale}`` or ``None``) checked and as ``[(step, scale),
    ...]`` in increasing step order: steps whole numbers >= 0 (``why`` says what they are),
    scales concrete numbers >= 0."""
    if boundaries_and_scales is None:
        return []
    if not isinstance(boundaries_and_scales, Mapping):
        raise ValueError(
            "`boundaries_and_scales` must be a mapping {step: scale} or None, got "
            f"{boundaries_and_scales!r}"
        )
    phases = []
    for boundary, scale in boundaries_and_scales.items():
        step = check_whole_steps("boundaries_and_scales", boundary, why)
        if check_concrete_number("boundaries_and_scales", scale) < 0:
            raise ValueError(
                f"`boundaries_and_scales` scales must be >= 0, got scale {scale!r} at step {boundary!r}"
            )
        phases.append((step, scale))
    return sorted(phases, key=lambda phase: phase[0])
