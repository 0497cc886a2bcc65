"""MkDocs hook: typeset the pages' TeX as MathML when the site is built.

pymdownx.arithmatex (generic mode) leaves each formula as ``\\(...\\)`` in a
``<span class="arithmatex">`` (inline) or ``\\[...\\]`` in a ``<div class="arithmatex">``
(display), on the course pages and in the docstrings mkdocstrings renders. This hook replaces
each by the MathML that ``latex2mathml`` makes of it, so the formulas are in the HTML itself:
every current browser lays MathML out natively, nothing is fetched from a CDN, and the site
reads the same offline as online (see docs/design.md, issue 15).

A formula that ``latex2mathml`` cannot read, or that uses a command it does not know (which it
would print as text, backslash and all), is a build warning naming the page and the formula, so
``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.hooks.mathml")

_FORMULA = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
# latex2mathml reads neither ``\_`` (an underscore in \text or \operatorname) nor a control space
# written as a backslash at the end of a line; ``\lVert``, ``\rVert`` and ``\arg`` it lacks. It
# lays out ``align*`` as a table but not ``aligned`` or ``gathered`` (their ``&`` and ``\\``
# come out as text and a line break no browser draws), nor ``psmallmatrix``, and it prints a row
# gap ``\\[2ex]``.
_UNDERSCORE = "\ue000"  # a private-use character, restored after the conversion
_REWRITES = [
    (re.compile(r"\\_"), _UNDERSCORE),
    (re.compile(r"(?<!\\)((?:\\\\)*)\\\n"), r"\1\\ \n"),
    (re.compile(r"\\[lr]Vert(?![A-Za-z])"), r"\\|"),
    (re.compile(r"\\arg(?![A-Za-z])"), r"\\operatorname{arg}"),
    (re.compile(r"\\(begin|end)\{aligned\}"), r"\\\1{align*}"),
    (re.compile(r"\\begin\{(?:gathered|gather\*?)\}"), r"\\begin{array}{c}"),
    (re.compile(r"\\end\{(?:gathered|gather\*?)\}"), r"\\end{array}"),
    (re.compile(r"\\\\\[[^\]]*\]"), r"\\\\"),
    (re.compile(r"\\begin\{psmallmatrix\}"), r"\\left(\\begin{smallmatrix}"),
    (re.compile(r"\\end\{psmallmatrix\}"), r"\\end{smallmatrix}\\right)"),
]
_HEADING = re.compile(r"<(h[1-6])[^>]*>(.*?)</\1>", re.S)
# After \big, \Big, ... latex2mathml writes the delimiter's command itself into the <mo>.
_SIZED = {
    "\\|": "\u2016", "\\Vert": "\u2016", "\\lVert": "\u2016", "\\rVert": "\u2016",
    "\\vert": "|", "\\lvert": "|", "\\rvert": "|", "\\{": "{", "\\}": "}",
    "\\langle": "\u27e8", "\\rangle": "\u27e9", "\\lfloor": "\u230a", "\\rfloor": "\u230b",
    "\\lceil": "\u2308", "\\rceil": "\u2309",
}  # fmt: skip
_SIZED_MO = re.compile(r"(<mo[^>]*>)(\\(?:[A-Za-z]+|[|{}]))(</mo>)")
# A backslash left in a text node of the MathML is a command latex2mathml did not know.
_UNKNOWN = re.compile(r">[^<]*\\[^<]*<")


def to_mathml(tex: str, display: bool) -> str:
    """The MathML of one formula (``display`` for a block), or ValueError naming what failed."""
    if re.search(r"\]\[[\w.]+\]", tex):
        raise ValueError("it holds a cross-reference, which a formula cannot show: move it to the prose")
    for pattern, replacement in _REWRITES:
        tex = pattern.sub(replacement, tex)
    try:
        mathml = convert(tex, display="block" if display else "inline")
    except Exception as error:  # latex2mathml raises its own exception types
        raise ValueError(f"latex2mathml cannot read it ({type(error).__name__}: {error})") from None
    mathml = _SIZED_MO.sub(lambda m: m.group(1) + _SIZED.get(m.group(2), m.group(2)) + m.group(3), mathml)
    unknown = _UNKNOWN.search(mathml)
    if unknown:
        raise ValueError(f"it uses a command latex2mathml does not know: {unknown.group(0)[1:-1]!r}")
    if "<mi>&</mi>" in mathml:
        raise ValueError("an alignment `&` outside an environment latex2mathml lays out (use aligned)")
    if 'linebreak="newline"' in mathml:
        raise ValueError("a line break `\\\\` outside an environment (use aligned): browsers do not draw it")
    return mathml.replace(_UNDERSCORE, "_")


def _typeset(match: re.Match[str], page: str) -> str:
    tag, body = match.group(1), html.unescape(match.group(2)).strip()
    display = tag == "div"
    opening, closing = (r"\[", r"\]") if display else (r"\(", r"\)")
    if not (body.startswith(opening) and body.endswith(closing)):
        log.warning("%s: a formula not delimited by %s %s: %r", page, opening, closing, body[:80])
        return match.group(0)
    tex = body[2:-2]
    try:
        mathml = to_mathml(tex, display)
    except ValueError as error:
        log.warning("%s: the formula %r: %s", page, tex[:120], error)
        return match.group(0)
    return f'<{tag} class="arithmatex">{mathml}</{tag}>'


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    """Replace each arithmatex formula of the page by its MathML.

    A formula in a heading is a warning: the table of contents and the page title take the
    heading's text, where the formula would show as TeX (write it in Unicode: "√d", "ε").
    """
    for heading in _HEADING.finditer(html_text):
        if 'class="arithmatex"' in heading.group(2):
            text = html.unescape(re.sub(r"<[^>]+>", "", heading.group(2))).replace("¶", "").strip()
            log.warning("%s: a formula in the heading %r (write it in Unicode)", page.file.src_uri, text)
    return _FORMULA.sub(lambda m: _typeset(m, page.file.src_uri), html_text)
