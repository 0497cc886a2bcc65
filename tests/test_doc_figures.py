"""The course's figures are current: the numbers each draws are what fdl computes today.

``scripts/make_doc_figures.py`` writes each figure's numbers beside its PNG; recomputing them
here catches a figure left stale after a change to the library or to the figure's code.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_doc_figures", ROOT / "scripts" / "make_doc_figures.py")
assert _spec is not None and _spec.loader is not None
make_doc_figures = importlib.util.module_from_spec(_spec)
sys.modules["make_doc_figures"] = make_doc_figures
_spec.loader.exec_module(make_doc_figures)
CHAPTERS = make_doc_figures.chapters()


def test_every_course_page_has_its_figure_module_and_files():
    pages = sorted(p.stem for p in (ROOT / "docs" / "course").glob("*.md") if p.stem != "index")
    assert pages == sorted(CHAPTERS)
    for name in pages:
        text = (ROOT / "docs" / "course" / f"{name}.md").read_text()
        assert f"../figures/{name}.png" in text, f"docs/course/{name}.md does not show its figure"
        assert (ROOT / "docs" / "figures" / f"{name}.png").is_file()
        assert (ROOT / "docs" / "figures" / f"{name}.json").is_file()


class _Module:
    LOG_KEYS = frozenset({"error"})


def test_a_moved_number_is_reported_and_a_tiny_one_is_not():
    data = {"x": np.linspace(0.0, 10.0, 11), "error": np.logspace(-12, 0, 13)}
    committed = json.loads(make_doc_figures.to_json(data))
    assert make_doc_figures.stale_keys(_Module, committed, data) == []
    nudged = {**data, "x": data["x"] + 0.05}  # 0.5% of the range 10: under a pixel
    assert make_doc_figures.stale_keys(_Module, committed, nudged) == []
    moved = {**data, "x": np.where(np.arange(11) == 3, 4.0, data["x"])}
    (problem,) = make_doc_figures.stale_keys(_Module, committed, moved)
    assert re.fullmatch(r"x: moved by 1, more than 0\.1 \(1% of its range\)", problem)
    decade = {**data, "error": data["error"] * np.where(np.arange(13) == 0, 10.0, 1.0)}
    (problem,) = make_doc_figures.stale_keys(_Module, committed, decade)  # log10 range 12: 0.12 allowed
    assert problem.startswith("error: moved by 1,")
    assert make_doc_figures.stale_keys(_Module, committed, {"x": data["x"]}) == [
        "keys ['error', 'x'] committed, ['x'] computed"
    ]
    labels = {**data, "cluster": np.arange(200) % 10}
    committed_labels = json.loads(make_doc_figures.to_json(labels))
    one_moved = {**labels, "cluster": np.where(np.arange(200) == 7, 0, labels["cluster"])}  # 0.5%
    assert make_doc_figures.stale_keys(_Module, committed_labels, one_moved) == []
    three_moved = {**labels, "cluster": np.where(np.arange(200) < 3, 9, labels["cluster"])}  # 1.5%
    assert make_doc_figures.stale_keys(_Module, committed_labels, three_moved) == [
        "cluster: 1.5% of the entries changed, more than 1%"
    ]
    reshaped = {**data, "x": data["x"][:10]}
    assert make_doc_figures.stale_keys(_Module, committed, reshaped) == [
        "x: shape [11] committed, [10] computed"
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHAPTERS))
def test_committed_figure_numbers_are_current(name):
    module = CHAPTERS[name]
    committed = json.loads((ROOT / "docs" / "figures" / f"{name}.json").read_text())
    problems = make_doc_figures.stale_keys(module, committed, module.compute())
    assert problems == [], (
        f"docs/figures/{name} is stale (run scripts/make_doc_figures.py --only {name}): {problems}"
    )
