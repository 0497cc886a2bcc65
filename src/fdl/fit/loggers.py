"""Where ``fit``'s history goes: JSONL and CSV files, TensorBoard event files, a plot.

A logger is any object with ``write(history)``, called after each history row with the whole
history so far (a list of dicts of floats, each with ``step``), and optionally ``close()``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["HistoryFile", "TensorBoardLogger", "save_history_plot"]

Row = dict[str, float]


class HistoryFile:
    """The whole history in one file, rewritten atomically after each row: JSON lines for
    ``.jsonl``, CSV for ``.csv``; keys (columns) ``step`` first, then sorted, so that a resumed
    run's file (whose earlier rows come back from a checkpoint) equals an uninterrupted run's
    byte for byte.

    Both are strict: a non-finite value (a NaN evaluation metric, an infinite loss) is written
    as the string ``"nan"``, ``"inf"`` or ``"-inf"`` (in JSON lines, a JSON string, never the
    non-standard ``NaN`` token), which ``float()`` reads back;
    ``fdl._io.decode_non_finite`` turns a parsed row's strings back into floats. The first
    write deletes the temporary files of earlier writers of the same file that were killed
    mid-write.
    """

    def __init__(self, path: str | Path):
        from fdl._checks import check_suffix

        self.path = Path(check_suffix("history", path, (".jsonl", ".csv")))
        self._cleaned = False

    def write(self, history: Sequence[Row]) -> None:
        from fdl._io import atomic_write, encode_non_finite, remove_stale_temporaries

        rows = [encode_non_finite(dict(sorted(row.items(), key=_step_first))) for row in history]
        if self.path.suffix == ".csv":
            buffer = io.StringIO()
            fields = sorted({k for row in rows for k in row}, key=lambda k: _step_first((k, None)))
            writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            text = buffer.getvalue()
        else:
            text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._cleaned:
            remove_stale_temporaries(self.path.parent, re.compile(re.escape(self.path.name)))
            self._cleaned = True
        atomic_write(self.path, text)


def _step_first(item: tuple[str, Any]) -> tuple[bool, str]:
    return item[0] != "step", item[0]


class TensorBoardLogger:
    """Scalars as TensorBoard event files in ``log_dir``, one tag per history key (``loss``,
    ``accuracy``, ``eval_loss``, ...) at each row's step.

    Uses ``tensorboardX``'s writer, an optional extra: ``pip install 'fdl[tensorboard]'``.
    """

    def __init__(self, log_dir: str | Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as error:
            raise ImportError(
                "TensorBoardLogger needs tensorboardX, an optional extra: pip install 'fdl[tensorboard]'"
            ) from error
        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(logdir=str(self.log_dir))
        self._written = 0

    def write(self, history: Sequence[Row]) -> None:
        for row in history[self._written :]:
            step = int(row["step"])
            for name, value in row.items():
                if name != "step":
                    self._writer.add_scalar(name, value, global_step=step)
        self._written = len(history)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def save_history_plot(history: Sequence[Row], path: str | Path) -> Path:
    """Losses per step (training and evaluation, log scale) beside the other metrics
    (training ones as lines, evaluation ones as dots), as a PNG."""
    from fdl._plot import figure, save_png

    train = [r for r in history if "loss" in r]
    evals = [r for r in history if any(k.startswith("eval_") for k in r)]
    eval_keys = sorted({k for r in evals for k in r if k.startswith("eval_")})
    train_keys = sorted(
        {k for r in train for k in r if not k.startswith("eval_")} - {"step", "loss", "skipped"}
    )
    fig = figure((10, 4))
    loss_ax, metric_ax = fig.subplots(1, 2)
    loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    for k in eval_keys:
        if k.endswith("loss"):
            loss_ax.plot([r["step"] for r in evals], [r[k] for r in evals], "o-", label=k.replace("_", " "))
    loss_ax.set(xlabel="step", ylabel="loss", yscale="log", title="loss")
    loss_ax.legend()
    for k in train_keys:
        rows = [r for r in train if k in r]
        metric_ax.plot([r["step"] for r in rows], [r[k] for r in rows], label=f"train {k}")
    for k in eval_keys:
        if not k.endswith("loss"):
            metric_ax.plot([r["step"] for r in evals], [r[k] for r in evals], "o-", label=k.replace("_", " "))
    metric_ax.set(xlabel="step", title="metrics")
    metric_ax.grid(alpha=0.3)
    if metric_ax.lines:
        metric_ax.legend()
    return save_png(fig, path)


def close_all(loggers: Sequence[Any]) -> None:
    for logger in loggers:
        close = getattr(logger, "close", None)
        if callable(close):
            close()
