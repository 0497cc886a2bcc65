r"""Plots of a :class:`~fdl.compare.Comparison`, each a ``matplotlib.figure.Figure``.

:func:`contour` draws every optimizer's path over the problem's contour lines (2-D problems),
:func:`losses` the loss per step, :func:`divergence` each twin pair's per-step
:math:`\max_i |\theta_{t,i} - \theta^{\text{twin}}_{t,i}|`. Figures are built on
:mod:`fdl._plot`'s canvas (no pyplot, no global backend switch); matplotlib is imported only
when a plot is drawn.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from fdl import _plot

if TYPE_CHECKING:
    from fdl.compare.result import Comparison, Run

__all__ = ["DPI", "IDENTICAL", "contour", "divergence", "losses"]

DPI = 110
"""The resolution of every figure here, in dots per inch."""

IDENTICAL = "identical at every step"
"""What :func:`divergence` writes on its axes when every pair agrees exactly (all zeros)."""


def contour(comparison: Comparison) -> Any:
    """The problem's contour lines with every optimizer's path (2-D problems only).

    Levels are log-spaced in :math:`f - f^*` (:math:`f^*` the known minimum, else the lowest
    value on the grid), so both the steep walls and the flat valley floor show. A function with
    no minimum (the saddle) gets evenly spaced levels instead. The start is a black circle, the
    known minima red stars, each path's end a dot.

    Raises:
      ValueError: the problem is not 2-D.
    """
    problem = comparison.problem
    if not problem.is_2d:
        raise ValueError(
            f"plot_contour needs a 2-D problem; `{problem.name}` has a parameter tree, use plot_losses"
        )
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import LogLocator

    function, start, window = problem.function, problem.start, problem.window
    assert function is not None and start is not None and window is not None  # is_2d: from_2d
    (x_lo, x_hi), (y_lo, y_hi) = window
    grid_x, grid_y = np.meshgrid(np.linspace(x_lo, x_hi, 300), np.linspace(y_lo, y_hi, 300))
    values = np.asarray(
        function(jnp.asarray(grid_x, jnp.float32), jnp.asarray(grid_y, jnp.float32)),
        np.float64,
    )  # (300, 300)
    fig = _plot.figure((7.0, 6.0), dpi=DPI)
    ax = fig.add_subplot()
    if problem.bounded_below:
        floor = problem.min_value if problem.min_value is not None else float(np.min(values))
        gap = values - floor
        top = float(np.max(gap))
        low = max(float(np.min(gap[gap > 0])), top * 1e-9)
        levels = np.logspace(math.log10(low), math.log10(top), 30)
        gap = np.clip(gap, low, top)
        filled = ax.contourf(grid_x, grid_y, gap, levels=levels, norm=LogNorm(), cmap="Greys_r", alpha=0.45)
        ax.contour(grid_x, grid_y, gap, levels=levels, norm=LogNorm(), colors="0.45", linewidths=0.4)
        label = "f − f*" if problem.min_value is not None else "f − min on grid"
        fig.colorbar(filled, ax=ax, label=f"{label} (log scale)", ticks=LogLocator())
    else:
        levels = np.linspace(float(np.min(values)), float(np.max(values)), 25)
        filled = ax.contourf(grid_x, grid_y, values, levels=levels, cmap="RdBu_r", alpha=0.45)
        ax.contour(grid_x, grid_y, values, levels=levels, colors="0.45", linewidths=0.4)
        fig.colorbar(filled, ax=ax, label="f (no minimum: linear levels)")
    for i, run in enumerate(comparison.runs.values()):
        assert run.path is not None  # a 2-D problem records every run's path
        points = np.where(np.isfinite(run.path), run.path, np.nan)  # (T + 1, 2)
        color = f"C{i % 10}"
        ax.plot(points[:, 0], points[:, 1], "-", color=color, lw=1.4, label=run.label)
        ax.plot(points[-1, 0], points[-1, 1], "o", color=color, ms=5)
    ax.plot(*start, "o", color="black", ms=8, label="start")
    if problem.minima:
        mx, my = zip(*problem.minima, strict=True)
        ax.plot(mx, my, "*", color="red", ms=14, mec="black", label="minimum")
    ax.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi), xlabel="x", ylabel="y")
    ax.set_title(f"{problem.name}: {comparison.steps} steps from {start}")
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    return fig


def losses(comparison: Comparison) -> Any:
    """The loss against the step, on a log scale.

    With a known minimum :math:`f^*` it plots :math:`L(\\theta_t) - f^*` (a curve that stops
    has reached :math:`f^*` exactly in float32); otherwise the loss itself, on a log scale if
    every loss is positive and on a *symlog* scale (linear within :math:`\\pm 10^{-3}`,
    logarithmic outside) if some are not, as on the saddle.
    """
    problem = comparison.problem
    curves = {label: np.asarray(run.losses, np.float64) for label, run in comparison.runs.items()}
    curves = {label: np.where(np.isfinite(c), c, np.nan) for label, c in curves.items()}
    fig = _plot.figure((7.5, 4.5), dpi=DPI)
    ax = fig.add_subplot()
    if problem.min_value is not None:
        curves = {label: c - problem.min_value for label, c in curves.items()}
        curves = {label: np.where(c > 0, c, np.nan) for label, c in curves.items()}
        ax.set_yscale("log")
        ylabel = f"loss − f*  (f* = {problem.min_value:g})"
    elif all(np.all(c[~np.isnan(c)] > 0) for c in curves.values()):
        ax.set_yscale("log")
        ylabel = "loss"
    else:
        ax.set_yscale("symlog", linthresh=1e-3)
        ylabel = "loss (symlog scale)"
    for i, (label, curve) in enumerate(curves.items()):
        ax.plot(np.arange(curve.size), curve, color=f"C{i % 10}", lw=1.4, label=label)
    if comparison.threshold is not None:
        shift = problem.min_value or 0.0
        ax.axhline(
            comparison.threshold - shift,
            color="black",
            ls=":",
            lw=1,
            label=f"threshold {comparison.threshold:g}",
        )
    title = f"{problem.name}: loss per step"
    if comparison.batch_size is not None:
        title += f" (gradients on minibatches of {comparison.batch_size}, full loss shown)"
    if not problem.bounded_below:
        title += " (no minimum: lower = escaped further)"
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def divergence(comparison: Comparison) -> Any:
    """Each twin pair's per-step :math:`\\max_i |\\theta_{t,i} - \\theta^{\\text{twin}}_{t,i}|`,
    on a symlog scale (linear within :math:`\\pm 10^{-9}`, so exact agreement shows as 0).

    When every pair is 0 at every step, the lines would all lie on the axis, hiding each
    other: the axes say :data:`IDENTICAL` instead, listing the pairs.

    Raises:
      ValueError: no run has a twin.
    """
    pairs: dict[frozenset[str | None], tuple[Run, np.ndarray]] = {}
    for run in comparison.runs.values():
        if run.divergence is not None:
            pairs.setdefault(frozenset((run.spec, run.twin)), (run, run.divergence))
    if not pairs:
        raise ValueError("plot_divergence: no optimizer here has a twin in the other library")
    fig = _plot.figure((7.5, 4.5), dpi=DPI)
    ax = fig.add_subplot()
    ax.set(
        xlabel="step",
        ylabel="max |θ − θ_twin|",
        title=f"{comparison.problem.name}: each optimizer against its twin",
    )
    largest = max(float(np.nanmax(d, initial=0.0)) for _, d in pairs.values())
    all_zero = all(np.all(np.asarray(d) == 0) for _, d in pairs.values())
    if all_zero:
        names = "\n".join(f"{run.label} vs {run.twin}" for run, _ in pairs.values())
        ax.text(
            0.5,
            0.75,
            f"{IDENTICAL}\n\n{names}",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=10,
        )
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set(xlim=(0, comparison.steps), ylim=(-1.0, 1.0), yticks=[0.0])
        return fig
    for i, (run, d) in enumerate(pairs.values()):
        steps = np.arange(d.size)
        same = " (identical at every step)" if np.all(np.asarray(d) == 0) else ""
        ax.plot(steps, d, color=f"C{i % 10}", lw=1.2, label=f"{run.label} vs {run.twin}{same}")
    ax.set_yscale("symlog", linthresh=1e-9)
    ax.set_ylim(0.0, max(10.0 * largest, 1e-6))  # a distance: nothing below 0
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
