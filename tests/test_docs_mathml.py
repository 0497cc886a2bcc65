"""The site's TeX-to-MathML hook (``docs/_hooks/mathml.py``): what it converts and what it refuses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("latex2mathml", reason='the docs extra is not installed: pip install -e ".[docs]"')
_spec = importlib.util.spec_from_file_location(
    "mathml_hook", Path(__file__).resolve().parent.parent / "docs" / "_hooks" / "mathml.py"
)
assert _spec is not None and _spec.loader is not None
mathml = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mathml)


def test_inline_and_display_formulas_become_mathml():
    inline = mathml.to_mathml(r"\frac{a}{b}", display=False)
    assert inline.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">')
    assert "<mfrac><mrow><mi>a</mi></mrow><mrow><mi>b</mi></mrow></mfrac>" in inline
    assert 'display="block"' in mathml.to_mathml(r"\sum_{i=1}^n x_i", display=True)


def test_the_commands_latex2mathml_lacks_are_rewritten():
    assert "<mtext>eps_root</mtext>" in mathml.to_mathml(r"\text{eps\_root}", display=False)
    norm = mathml.to_mathml(r"\lVert x \rVert", display=False)
    assert norm.count("&#x02016;") == 2 and "\\" not in norm  # the double bar, twice
    assert "<mo>arg</mo>" in mathml.to_mathml(r"\arg\max_y f(y)", display=False)
    spaced = mathml.to_mathml("a,\\\n b", display=False)  # a control space at the end of a line
    assert "\\" not in spaced


def test_aligned_rows_and_matrices_become_tables():
    aligned = mathml.to_mathml("\\begin{aligned} a &= b \\\\[2ex] c &= d \\end{aligned}", display=True)
    assert aligned.count("<mtr>") == 2 and "&" not in aligned.replace("&#x", "") and "2ex" not in aligned
    small = mathml.to_mathml("\\begin{psmallmatrix} 1 & 2 \\\\ 3 & 4 \\end{psmallmatrix}", display=False)
    assert small.count("<mtr>") == 2 and "&#x00028;" in small  # in parentheses
    sized = mathml.to_mathml("\\big\\| x \\big\\|_2 \\Big\\langle a \\Big\\rangle", display=False)
    assert "\\" not in sized and sized.count("\u2016") == 2 and "\u27e8" in sized


def test_what_no_browser_would_draw_is_refused():
    with pytest.raises(ValueError, match=r"an alignment `&` outside an environment"):
        mathml.to_mathml("a &= b", display=True)
    with pytest.raises(ValueError, match=r"a line break `\\\\` outside an environment"):
        mathml.to_mathml("a = b \\\\ c = d", display=True)
    with pytest.raises(ValueError, match=r"it holds a cross-reference"):
        mathml.to_mathml("x \\text{(see [`f`][fdl.f])}", display=True)


def test_an_unknown_command_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"uses a command latex2mathml does not know: 'p\\\\checked_logits'"):
        mathml.to_mathml(r"\text{p\checked_logits}", display=False)


def test_a_formula_in_a_heading_is_a_warning(caplog):
    class Page:
        class file:  # the shape of mkdocs' Page.file
            src_uri = "course/x.md"

    content = (
        '<h2 id="a">Why divide by <span class="arithmatex">\\(\\sqrt{d}\\)</span><a href="#a">&para;</a></h2>'
    )
    with caplog.at_level("WARNING", logger="mkdocs.hooks.mathml"):
        out = mathml.on_page_content(content, page=Page)
    assert "<msqrt>" in out  # typeset all the same
    assert caplog.messages == [
        "course/x.md: a formula in the heading 'Why divide by \\\\(\\\\sqrt{d}\\\\)' (write it in Unicode)"
    ]
