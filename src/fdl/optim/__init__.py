"""Optimizers written in fdl, with optax's interface (filled in as the modules land)."""

from fdl.optim.base import (
    EmptyState,
    GradientTransformation,
    ScaleByScheduleState,
    apply_updates,
    chain,
    identity,
    safe_increment,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
)
