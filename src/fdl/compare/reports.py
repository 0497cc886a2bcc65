"""Reports of a :class:`~fdl.compare.Comparison`: a Markdown table, CSV, strict JSON, and the short
text that ``print(comparison)`` shows.

Every function takes the comparison and returns text; writing files is
:meth:`~fdl.compare.Comparison.save`'s job. JSON is strict (``allow_nan=False``): NaN and
infinities are written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` and read
back as floats, so CSV and JSON both round-trip.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fdl.compare.result import Comparison, SummaryRow

__all__ = [
    "FORMAT",
    "curves_csv",
    "markdown_table",
    "read_json",
    "summary_csv",
    "summary_text",
    "to_json",
]

FORMAT = "fdl.compare/1"
"""The ``format`` field of :func:`to_json`'s documents."""

_THRESHOLD_LABEL = "steps to loss <= {threshold:g}"
_DIVERGENCE_LABEL = "max |θ − θ_twin|"


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def _batches(comparison: Comparison) -> str:
    size = comparison.batch_size
    return "full batch" if size is None else f"minibatches of {size}"


def _cells(comparison: Comparison, rows: list[SummaryRow]) -> tuple[list[str], list[list[str]]]:
    """The header and cells shared by the Markdown table and the printed summary."""
    header = ["optimizer", "spec", "final loss", "best loss (step)"]
    if comparison.threshold is not None:
        header.append(_THRESHOLD_LABEL.format(threshold=comparison.threshold))
    header.append(_DIVERGENCE_LABEL)
    show_nonfinite = any(row.nonfinite_step is not None for row in rows)
    if show_nonfinite:
        header.append("non-finite from step")
    lines = []
    for row in rows:
        cells = [
            row.optimizer,
            row.spec,
            _fmt(row.final_loss),
            f"{_fmt(row.best_loss)} ({_fmt(row.best_step, 'd')})",
        ]
        if comparison.threshold is not None:
            reached = row.steps_to_threshold
            cells.append("not reached" if reached is None else str(reached))
        cells.append(_fmt(row.max_divergence, ".2e"))
        if show_nonfinite:
            cells.append(_fmt(row.nonfinite_step, "d"))
        lines.append(cells)
    return header, lines


def _footer(comparison: Comparison) -> list[str]:
    problem = comparison.problem
    lines = [
        f"Problem `{problem.name}`: {problem.description}; {comparison.steps} steps, "
        f"seed {comparison.seed}, {_batches(comparison)}."
    ]
    if any(run.twin is not None for run in comparison.runs.values()):
        lines.append(
            f"{_DIVERGENCE_LABEL}: the largest parameter difference over all steps from the "
            "twin run in the same scan (the other library's version, or the reference given)."
        )
    if not problem.bounded_below:
        lines.append(
            f"Note: `{problem.name}` has no minimum and its loss decreases without "
            "bound; a lower loss means the optimizer escaped further, not that it converged."
        )
    lines += [f"Note: {note}" for note in comparison.notes]
    return lines


def markdown_table(comparison: Comparison) -> str:
    """The summary as a Markdown table (``|`` in labels escaped), the problem and notes below."""
    header, rows = _cells(comparison, comparison.summary())
    escape = [cell.replace("|", "\\|") for cell in header]
    lines = ["| " + " | ".join(escape) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join([*lines, "", *_footer(comparison)]) + "\n"


def summary_text(comparison: Comparison) -> str:
    """What ``print(comparison)`` shows: the settings, then one aligned line per optimizer.

    No loss arrays: :meth:`~fdl.compare.Comparison.to_json` and
    :meth:`~fdl.compare.Comparison.curves_csv` have every step.
    """
    threshold = "" if comparison.threshold is None else f", threshold {comparison.threshold:g}"
    title = (
        f"Comparison of {len(comparison.runs)} optimizer(s) on {comparison.problem.name!r}: "
        f"{comparison.steps} steps, seed {comparison.seed}, {_batches(comparison)}{threshold}"
    )
    header, rows = _cells(comparison, comparison.summary())
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    notes = [f"note: {note}" for note in comparison.notes]
    return "\n".join([title, *("  " + line for line in table), *notes])


def summary_csv(comparison: Comparison) -> str:
    """The summary as CSV: the fields of :class:`~fdl.compare.SummaryRow`, empty for ``None``,
    floats written with ``repr`` (exact)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    rows = comparison.summary()
    writer.writerow(type(rows[0])._fields if rows else [])
    for row in rows:
        writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row])
    return buffer.getvalue()


def curves_csv(comparison: Comparison) -> str:
    """Every step of every run, long format: ``optimizer, step, loss[, x, y], divergence``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    is_2d = comparison.problem.is_2d
    writer.writerow(["optimizer", "step", "loss", *(["x", "y"] if is_2d else []), "divergence"])
    for run in comparison.runs.values():
        for t, value in enumerate(run.losses):
            line = [run.label, t, repr(float(value))]
            if is_2d:
                assert run.path is not None  # a 2-D problem records every run's path
                line += [repr(float(run.path[t, 0])), repr(float(run.path[t, 1]))]
            line.append("" if run.divergence is None else repr(float(run.divergence[t])))
            writer.writerow(line)
    return buffer.getvalue()


def _encode(values: Iterable[Any]) -> list[Any]:
    """Floats for JSON; NaN and infinities as ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, (list, np.ndarray)):
            out.append(_encode(v))
        else:
            v = float(v)
            if math.isnan(v):
                out.append("NaN")
            elif math.isinf(v):
                out.append("Infinity" if v > 0 else "-Infinity")
            else:
                out.append(v)
    return out


def _decode(values: Iterable[Any] | None) -> np.ndarray | None:
    if values is None:
        return None

    def number(v: Any) -> Any:
        if isinstance(v, list):
            return [number(x) for x in v]
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v)

    return np.asarray([number(v) for v in values], np.float32)


def _scalar(value: Any) -> Any:
    """A summary value as JSON sees it (non-finite floats as strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return _encode([value])[0]
    return value


def to_json(comparison: Comparison) -> str:
    """Everything (problem, settings, summary, every curve and path) as strict JSON."""
    problem = comparison.problem
    document = {
        "format": FORMAT,
        "problem": {
            "name": problem.name,
            "description": problem.description,
            "min_value": problem.min_value,
            "bounded_below": problem.bounded_below,
            "start": problem.start,
            "window": problem.window,
            "minima": problem.minima,
        },
        "steps": comparison.steps,
        "seed": comparison.seed,
        "threshold": comparison.threshold,
        "batch_size": comparison.batch_size,
        "notes": list(comparison.notes),
        "summary": [{k: _scalar(v) for k, v in row._asdict().items()} for row in comparison.summary()],
        "runs": [
            {
                "label": run.label,
                "spec": run.spec,
                "twin": run.twin,
                "losses": _encode(run.losses),
                "path": None if run.path is None else _encode(run.path),
                "divergence": None if run.divergence is None else _encode(run.divergence),
            }
            for run in comparison.runs.values()
        ],
    }
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def read_json(text: str) -> dict[str, Any]:
    """The fields of the comparison :func:`to_json` wrote: ``problem_name``, ``steps``,
    ``seed``, ``threshold``, ``batch_size``, ``notes`` and ``runs`` (a list of the keyword
    arguments of :class:`~fdl.compare.Run`, arrays decoded).

    Raises:
      ValueError: not a JSON object with ``format`` :data:`FORMAT`.
    """
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"not an fdl.compare result: expected a JSON object with format {FORMAT!r}")
    runs = [
        {
            "label": item["label"],
            "spec": item["spec"],
            "twin": item["twin"],
            "losses": _decode(item["losses"]),
            "path": _decode(item["path"]),
            "divergence": _decode(item["divergence"]),
        }
        for item in document["runs"]
    ]
    return {
        "problem_name": document["problem"]["name"],
        "steps": document["steps"],
        "seed": document["seed"],
        "threshold": document["threshold"],
        "batch_size": document.get("batch_size"),  # absent before minibatches existed
        "notes": tuple(document["notes"]),
        "runs": runs,
    }
