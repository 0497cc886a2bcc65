"""The one plotting helper: figures built on ``matplotlib.figure.Figure`` (a kernel module).

No ``pyplot`` and no ``matplotlib.use``: a figure made here has its own Agg canvas, so drawing
touches no global state (the backend an application or a notebook chose stays as it was) and
figures are freed with their last reference. matplotlib is an optional dependency, imported
only when a figure is made; without it the error says how to install it.

Used by ``fit``'s history plot, ``compare``'s plots and, through :mod:`fdl.plot`, the examples.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from fdl._io import atomic_write

MISSING = "plotting needs matplotlib, which is not installed; install it with `pip install matplotlib`"


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(MISSING) from err
    return Figure


def figure(size: tuple[float, float] = (6.4, 4.8), *, dpi: float = 100) -> Any:
    """A new ``matplotlib.figure.Figure`` of ``size`` inches (width, height), constrained
    layout, with its own Agg canvas (no pyplot, no global backend switch).

    Raises:
      ImportError: matplotlib is not installed (the message says how to install it).

    >>> fig = figure((4, 3))
    >>> ax = fig.subplots()
    >>> ax.plot([0, 1], [1, 0], label="loss")[0].get_label()
    'loss'
    """
    Figure = _figure_class()
    fig = Figure(figsize=tuple(size), dpi=dpi, layout="constrained")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches itself to fig: savefig works without pyplot
    return fig


def png_bytes(fig: Any) -> bytes:
    """The figure rendered as PNG bytes.

    >>> png_bytes(figure((1, 1)))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(fig: Any, path: str | os.PathLike) -> Path:
    """Render ``fig`` as a PNG and write it to ``path`` atomically (:func:`fdl._io.atomic_write`:
    a failed save leaves any previous file intact); return ``path``."""
    return atomic_write(path, png_bytes(fig))
