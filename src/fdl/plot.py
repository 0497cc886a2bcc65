"""Figures for scripts and notebooks: the plotting helper that ``fit`` and ``compare`` use.

A figure is a ``matplotlib.figure.Figure`` with its own Agg canvas: no ``pyplot``, no
``matplotlib.use``, so making or saving one never changes the backend an application or a
notebook chose. :func:`save_png` writes atomically (a failed save leaves the previous file).

>>> import pathlib, tempfile
>>> import fdl
>>> fig = fdl.plot.figure((4, 3))
>>> ax = fig.subplots()
>>> _ = ax.plot([1, 2, 3], [1.0, 0.5, 0.25], label="train loss")
>>> with tempfile.TemporaryDirectory() as d:
...     path = fdl.plot.save_png(fig, pathlib.Path(d) / "loss.png")
...     print(path.name, path.read_bytes()[:4])
loss.png b'\\x89PNG'
"""

from __future__ import annotations

from fdl._plot import figure, png_bytes, save_png

__all__ = ["figure", "png_bytes", "save_png"]
