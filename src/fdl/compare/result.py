r"""The result model: one :class:`Run` per optimizer, gathered in a :class:`Comparison`.

A :class:`Comparison` holds the trajectories and what produced them. Its tables and files come
from :mod:`fdl.compare.reports`, its plots from :mod:`fdl.compare.plots`; the methods here only
call them, so the object reads as the table of contents of what a comparison offers.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fdl._io import atomic_write
from fdl._plot import save_png
from fdl.compare import plots, reports
from fdl.problems import Problem, get_problem

__all__ = ["Comparison", "Run", "SummaryRow", "summarize"]


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One optimizer's trajectory.

    Attributes:
      label: the caller's name for it.
      spec: what ran, e.g. ``"fdl:adam(learning_rate=0.01)"``.
      losses: ``(steps + 1,)`` losses :math:`L(\\theta_0), \\dots, L(\\theta_T)`.
      path: ``(steps + 1, 2)`` points :math:`\\theta_t` for 2-D problems, else ``None``.
      divergence: ``(steps + 1,)`` per-step :math:`\\max_i |\\theta_{t,i} -
        \\theta^{\\text{twin}}_{t,i}|` against ``twin``, or ``None`` without one.
      twin: the spec of the trajectory it was checked against: the other library's version
        of a named optimizer, or the ``reference=`` given to :func:`~fdl.compare.compare`;
        ``None`` when there is none.
    """

    label: str
    spec: str
    losses: np.ndarray
    path: np.ndarray | None = None
    divergence: np.ndarray | None = None
    twin: str | None = None


class SummaryRow(NamedTuple):
    """One line of :meth:`Comparison.summary` (``None``: does not apply / never happened)."""

    optimizer: str
    spec: str
    final_loss: float
    best_loss: float
    best_step: int | None
    steps_to_threshold: int | None
    max_divergence: float | None
    twin: str | None
    nonfinite_step: int | None


def summarize(run: Run, threshold: float | None) -> SummaryRow:
    r"""Final and best loss, the first step :math:`t` with :math:`L(\theta_t) \le` ``threshold``
    (``None`` if never; a NaN never counts), the largest divergence from the twin, and the
    first step with a non-finite loss."""
    losses = np.asarray(run.losses, np.float64)
    finite = np.isfinite(losses)
    nonfinite_step = None if finite.all() else int(np.argmin(finite))
    has_value = ~np.isnan(losses)
    best_step = int(np.nanargmin(losses)) if has_value.any() else None
    reached = None
    if threshold is not None:
        below = losses <= threshold
        reached = int(np.argmax(below)) if below.any() else None
    divergence = None
    if run.divergence is not None:
        divergence = float(np.max(np.asarray(run.divergence, np.float64)))
    return SummaryRow(
        optimizer=run.label,
        spec=run.spec,
        final_loss=float(losses[-1]),
        best_loss=float(losses[best_step]) if best_step is not None else math.nan,
        best_step=best_step,
        steps_to_threshold=reached,
        max_divergence=divergence,
        twin=run.twin,
        nonfinite_step=nonfinite_step,
    )


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Comparison:
    """The result of :func:`~fdl.compare.compare`: every trajectory, with tables, files and plots.

    ``print(comparison)`` shows a short summary (one line per optimizer, no loss arrays);
    :meth:`table` is the Markdown version.

    Attributes:
      problem: the :class:`~fdl.problems.Problem` that was solved.
      steps, seed, threshold, batch_size: the arguments of :func:`~fdl.compare.compare`
        (``batch_size=None``: full-batch gradients).
      runs: the :class:`Run` of every optimizer, by label, in the order given.
      notes: remarks on the run (twins that could not be built, references, ...).
    """

    problem: Problem
    steps: int
    seed: int
    threshold: float | None
    runs: dict[str, Run]
    notes: tuple[str, ...] = ()
    batch_size: int | None = None

    def __repr__(self) -> str:
        return reports.summary_text(self)

    # ---- tables

    def summary(self) -> list[SummaryRow]:
        """One :class:`SummaryRow` per optimizer (see :func:`summarize`)."""
        return [summarize(run, self.threshold) for run in self.runs.values()]

    def table(self) -> str:
        """The summary as a Markdown table, with the problem and any notes below it."""
        return reports.markdown_table(self)

    def summary_csv(self) -> str:
        """The summary as CSV (one row per optimizer; empty cells for ``None``)."""
        return reports.summary_csv(self)

    def curves_csv(self) -> str:
        """Every step of every run, long format: ``optimizer, step, loss[, x, y], divergence``."""
        return reports.curves_csv(self)

    def to_json(self) -> str:
        """Everything (problem, settings, summary, every curve and path) as strict JSON, with
        non-finite numbers as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
        return reports.to_json(self)

    @classmethod
    def from_json(cls, text: str, problem: Problem | None = None) -> Comparison:
        """Read back what :meth:`to_json` wrote.

        Args:
          text: the JSON text.
          problem: the problem, for one that :func:`~fdl.problems.get_problem` does not know
            (a custom one); by default it is looked up by its name.

        Raises:
          ValueError: the text is not an ``fdl.compare`` document.
        """
        fields = reports.read_json(text)
        runs = {item["label"]: Run(**item) for item in fields.pop("runs")}
        problem_name = fields.pop("problem_name")
        if problem is None:
            problem = get_problem(problem_name)
        return cls(problem=problem, runs=runs, **fields)

    # ---- plots

    def plot_contour(self, path: str | Path) -> Path:
        """Save a PNG of the contour lines with every optimizer's path (2-D problems only);
        see :func:`fdl.compare.plots.contour`."""
        return save_png(plots.contour(self), path)

    def plot_losses(self, path: str | Path) -> Path:
        """Save a PNG of the loss per step; see :func:`fdl.compare.plots.losses`."""
        return save_png(plots.losses(self), path)

    def plot_divergence(self, path: str | Path) -> Path:
        """Save a PNG of each twin pair's per-step divergence; see
        :func:`fdl.compare.plots.divergence`."""
        return save_png(plots.divergence(self), path)

    # ---- everything at once

    def save(self, directory: str | Path) -> list[Path]:
        """Write every export into ``directory`` (created if needed), each file atomically.

        Files: ``table.md`` (:meth:`table`), ``table.csv`` (:meth:`summary_csv`),
        ``table.json`` (:meth:`to_json`, everything), ``curves.csv`` (:meth:`curves_csv`),
        ``losses.png``, and ``contour.png`` (2-D problems) and ``divergence.png`` (when some
        optimizer has a twin).

        Returns:
          The paths written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in (
            ("table.md", self.table()),
            ("table.csv", self.summary_csv()),
            ("table.json", self.to_json()),
            ("curves.csv", self.curves_csv()),
        ):
            atomic_write(directory / name, text)
            written.append(directory / name)
        written.append(self.plot_losses(directory / "losses.png"))
        if self.problem.is_2d:
            written.append(self.plot_contour(directory / "contour.png"))
        if any(run.divergence is not None for run in self.runs.values()):
            written.append(self.plot_divergence(directory / "divergence.png"))
        return written
