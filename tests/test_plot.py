"""fdl.plot / fdl._plot: figures on their own canvas, saved atomically, no global state."""

from __future__ import annotations

import sys

import matplotlib
import pytest

import fdl
from fdl import _plot


def test_public_plot_is_the_kernel():
    assert fdl.plot.figure is _plot.figure
    assert fdl.plot.save_png is _plot.save_png
    assert set(fdl.plot.__all__) == {"figure", "png_bytes", "save_png"}


def test_a_figure_and_its_png_leave_the_backend_and_pyplot_alone(tmp_path):
    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    fig = _plot.figure((3, 2))
    assert fig.get_size_inches().tolist() == [3.0, 2.0]
    ax = fig.subplots()
    ax.plot([0, 1, 2], [3, 1, 2], label="train loss")
    path = _plot.save_png(fig, tmp_path / "loss.png")
    assert path == tmp_path / "loss.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


def test_a_failed_save_keeps_the_previous_png(tmp_path):
    path = tmp_path / "loss.png"
    path.write_bytes(b"previous")

    class Broken:
        def savefig(self, *args, **kwargs):
            raise RuntimeError("render failed")

    with pytest.raises(RuntimeError, match="render failed"):
        _plot.save_png(Broken(), path)
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now fails
    with pytest.raises(
        ImportError,
        match=r"^plotting needs matplotlib, which is not installed; install it with "
        r"`pip install matplotlib`$",
    ):
        _plot.figure((3, 2))
