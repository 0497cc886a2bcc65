r"""A griffe extension: fdl's reST-flavoured docstrings to the Markdown mkdocstrings renders.

fdl's docstrings are Google style (``Args:``, ``Returns:``, ``Raises:``) with Sphinx markup inside.
The sources stay as they are (they read well in ``help()`` and an editor); this extension rewrites
each docstring's text once, after griffe has loaded the package and before mkdocstrings parses the
sections:

* ``:math:`x``` becomes inline arithmatex math ``\(x\)``; a ``.. math::`` block becomes a ``$$``
  block (several equations separated by blank lines become several blocks; a block with ``\\``
  line breaks or ``&`` alignment outside any environment of its own is wrapped in ``aligned``,
  as Sphinx wraps it in ``split``).
* ``:func:`` / ``:class:`` / ``:mod:`` / ``:data:`` / ``:meth:`` / ``:attr:`` roles become autorefs
  links ``[text][fdl.canonical.path]``. A target is looked up as Sphinx would: in the scope of the
  documented object (its class, its module, what the module imports), then from ``fdl``. A name
  that resolves to an fdl object links to where the object is documented (the path where it is
  defined), so a stale or misspelt fdl name fails ``mkdocs build --strict`` (autorefs reports the
  missing target). Names outside fdl (``jax.grad``, ``ValueError``) have no page here and render as
  code; the list of such prefixes is :data:`EXTERNAL` and a bare name that is neither an fdl name
  nor a builtin is reported as a griffe warning, which ``--strict`` turns into a failure.
* ``.. code-block:: lang`` and a paragraph ending in ``::`` become fenced code blocks, and a reST
  link ``` `text <url>`_ ``` becomes ``[text](url)``.

Double-backtick literals are Markdown code spans already, and ``>>>`` examples are parsed by
griffe's Google-style ``Example:`` section.
"""

from __future__ import annotations

import builtins
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import griffe

logger = griffe.get_logger("fdl_docs")

# Prefixes of names that belong to other projects: rendered as code, never linked (their inventories
# would need the network at build time).
EXTERNAL = ("jax", "jnp", "numpy", "np", "optax", "os", "flax", "torch", "scipy", "sklearn", "chex")

# References to fdl objects that exist but have no entry on the API pages (private helpers): shown as
# code. ``FDL_DOCS_LIST_UNDOCUMENTED=1 mkdocs build`` prints them.
UNDOCUMENTED: set[str] = set()

# Targets that a docstring in src/ names by a stale path, mapped to where the object is now. Each
# entry is a docstring to fix; remove the entry with the fix (the build then checks the new name).
KNOWN_STALE: dict[str, str] = {}

ROLE = re.compile(r":(func|class|mod|data|meth|attr|obj|exc):`([^`]+)`")
MATH = re.compile(r":math:`([^`]*)`")
RST_LINK = re.compile(r"`([^`<]+?)\s*<([^>`]+)>`__?", re.DOTALL)
DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. (?P<name>math|code-block)::[ \t]*(?P<arg>.*)$")


def _block(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
    """The lines after ``start`` indented deeper than ``indent`` (or blank): a directive's body."""
    body = []
    i = start
    while i < len(lines):
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
        i += 1
    while body and not body[-1].strip():  # trailing blank lines belong to the text after
        body.pop()
        i -= 1
    return textwrap.dedent("\n".join(body)).strip("\n").split("\n") if body else [], i


def _top_level(equation: str) -> str:
    """``equation`` without the insides of its environments (``cases``, ``matrix``, ...)."""
    inner = re.compile(r"\\begin\{([^}]*)\}(?:(?!\\begin\{).)*?\\end\{\1\}", re.S)
    while True:
        stripped = inner.sub("", equation)
        if stripped == equation:
            return equation
        equation = stripped


def _math_blocks(arg: str, body: list[str], pad: str) -> list[str]:
    """``$$`` blocks at indentation ``pad``, one per blank-line-separated equation."""
    text = "\n".join(([arg] if arg else []) + body)
    out: list[str] = []
    for equation in re.split(r"\n\s*\n", text.strip()):
        top = _top_level(equation)
        if "\\\\" in top or "&" in top:
            equation = "\\begin{aligned}\n" + equation + "\n\\end{aligned}"
        out += ["", pad + "$$"] + [pad + line for line in equation.split("\n")] + [pad + "$$", ""]
    return out


SECTION = re.compile(r"^(?P<indent>[ \t]*)(?P<title>Args|Arguments|Parameters|Attributes|Raises):[ \t]*$")
ITEM = re.compile(r"^(?P<names>[\w*.]+(?:[ \t]*,[ \t]*[\w*.]+)*)[ \t]*(?:\([^)]*\))?:(?:[ \t]|$)")
NAMES_ONLY = re.compile(r"^[\w*]+(?:[ \t]*,[ \t]*[\w*]+)*,[ \t]*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def fix_sections(text: str) -> str:
    """Make Napoleon-isms griffe's Google parser rejects parse: grouped names, flush continuations.

    ``a, b: text`` in ``Args:`` (or ``Attributes:``) becomes one item per name, each with the whole
    description; a continuation line written at the items' indentation (not deeper) is indented
    under its item; a list of names wrapped over two lines is joined.
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = SECTION.match(lines[i])
        out.append(lines[i])
        i += 1
        if not header:
            continue
        outer = _indent(lines[i - 1])
        items: list[list[str]] = []  # each item: its lines, relative to the item indentation
        item_indent = None
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > outer):
            line = lines[i]
            if line.strip() and item_indent is None:
                item_indent = _indent(line)
            stripped = line.strip()
            if line.strip() and _indent(line) == item_indent:
                if NAMES_ONLY.match(stripped) and i + 1 < len(lines):
                    stripped = stripped + " " + lines[i + 1].strip()
                    i += 1
                if ITEM.match(stripped) or not items:
                    items.append([stripped])
                else:
                    items[-1].append("    " + stripped)
            elif line.strip():
                items[-1].append(" " * (_indent(line) - (item_indent or 0)) + stripped)
            else:
                (items[-1] if items else out).append("")
            i += 1
        pad = " " * (item_indent or 0)
        if header["title"] == "Raises" and items and not any(ITEM.match(item[0]) for item in items):
            out[-1] = out[-1].replace("Raises:", "Errors:")  # "As f." is no (exception, text) pair
        for item in items:
            match = ITEM.match(item[0])
            names = [n.strip() for n in match["names"].split(",")] if match else []
            if header["title"] != "Raises" and len(names) > 1:
                rest = item[0][match.end() :].strip() if match else ""
                for name in names:
                    out.append(f"{pad}{name}: {rest}".rstrip())
                    out += [pad + line if line else "" for line in item[1:]]
            else:
                out += [pad + line if line else "" for line in item]
    return "\n".join(out)


def fence_doctests(text: str) -> str:
    """Each run of ``>>>`` lines and their output becomes a fenced ``pycon`` block.

    Griffe reads ``>>>`` lines as code only in an ``Examples:`` section, where a fenced block is
    read as text (and rendered as code) as well; fdl's docstrings also use ``Example:`` and
    examples after the other sections.
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith(">>>"):
            indent = _indent(lines[i])
            pad = " " * indent
            if out and out[-1].strip() and not re.match(r"^[ \t]*[\w ,-]+:[ \t]*$", out[-1]):
                out.append("")  # a blank line after a section title would end the section
            out.append(pad + "```pycon")
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= indent:
                out.append(pad + lines[i][indent:])
                i += 1
            out += [pad + "```", ""]
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


TABLE_BORDER = re.compile(r"^(?P<indent>[ \t]*)=+(?P<gap> +)=+[ \t]*$")


def convert_tables(text: str) -> str:
    """A two-column reST simple table (``=== ===`` borders, no header) becomes a bulleted list,
    ``- left: right``; a row whose left cell is blank continues the row above."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        border = TABLE_BORDER.match(lines[i])
        end = next((j for j in range(i + 1, len(lines)) if TABLE_BORDER.match(lines[j])), None)
        if not border or end is None:
            out.append(lines[i])
            i += 1
            continue
        indent = len(border["indent"])
        split = lines[i].index("=", indent + lines[i][indent:].index(" "))  # where column 2 starts
        rows: list[list[str]] = []
        for line in lines[i + 1 : end]:
            left, right = line[indent:split].strip(), line[split:].strip()
            if left or not rows:
                rows.append([left, right])
            else:
                rows[-1][1] += " " + right
        out += [f"{border['indent']}- {left}: {right}" for left, right in rows]
        i = end + 1
    return "\n".join(out)


def _list_pad(before: list[str], indent: int) -> str:
    """The indentation a block at ``indent`` needs to stay inside the list item above it.

    reST indents an item's body under its text (2 spaces after ``* ``); Markdown wants 4 more
    than the bullet, or the block leaves the list (and a ``$$`` block is then read as text).
    """
    for line in reversed(before):
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            bullet = re.match(r"^([ \t]*)(?:[*+-]|\d+\.) ", line)
            return " " * (len(bullet[1]) + 4) if bullet else " " * indent
    return " " * indent


def convert_blocks(text: str) -> str:
    """Rewrite ``.. math::``, ``.. code-block::`` and ``::`` literal blocks (see the module doc)."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = DIRECTIVE.match(line)
        literal = not match and line.rstrip().endswith("::") and not line.rstrip().endswith(":::")
        if match:
            indent = len(match["indent"].expandtabs())
            body, i = _block(lines, i + 1, indent)
            pad = " " * indent
            if match["name"] == "math":
                out += _math_blocks(match["arg"].strip(), body, _list_pad(out, indent))
            else:
                out += ["", pad + "```" + match["arg"].strip()] + [pad + b for b in body] + [pad + "```", ""]
            continue
        if literal:
            indent = len(line) - len(line.lstrip())
            body, j = _block(lines, i + 1, indent)
            if body and any(b.strip() for b in body):
                out.append(line.rstrip()[:-1])  # "reads::" -> "reads:"
                pad = " " * indent
                out += ["", pad + "```text"] + [pad + b for b in body] + [pad + "```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


class Resolver:
    """Sphinx-style lookup of a role's target in the scope of a documented object."""

    def __init__(self, package: griffe.Module) -> None:
        self.package = package

    def _member(self, obj: Any, name: str) -> Any:
        try:
            member = obj.members.get(name)
            if member is None and obj.is_class:  # inherited members
                member = obj.all_members.get(name)
            return member
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None

    def _walk(self, obj: Any, parts: list[str]) -> Any:
        for part in parts:
            obj = self._member(obj, part)
            if obj is None:
                return None
        return obj

    def find(self, target: str, scope: Any) -> Any:
        """The griffe object ``target`` names, seen from ``scope``, or ``None``."""
        parts = target.split(".")
        if parts[0] == "fdl":
            return self._walk(self.package, parts[1:])
        obj = scope
        while obj is not None:
            found = self._walk(obj, parts)
            if found is not None:
                return found
            obj = obj.parent
        return self._walk(self.package, parts)

    def documented_path(self, obj: Any) -> str | None:
        """Where ``obj`` is documented on the API pages, or ``None`` if it has no entry there.

        An object is documented at the path where it is defined (an alias' final target), or, if
        that is a private module, at a public path that re-exports it (``fdl.nn.sow``); a method or
        attribute is documented with its class.
        """
        try:
            while obj.is_alias:
                obj = obj.target
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
        candidates = [obj.path, *sorted(getattr(obj, "aliases", {}))]
        for path in candidates:
            if path in DOCUMENTED:
                return path
        parent = obj.parent
        if parent is not None and parent.is_class and not obj.name.startswith("_"):
            owner = self.documented_path(parent)
            if owner is not None and obj.docstring is not None:
                return f"{owner}.{obj.name}"
            return owner  # a field with no docstring of its own is documented by its class
        return None


def documented_identifiers(reference: Path) -> set[str]:
    """The identifiers the API pages render: each ``::: module`` and its listed members."""
    found: set[str] = set()
    for page in reference.rglob("*.md"):
        module = None
        for line in page.read_text().split("\n"):
            if line.startswith("::: "):
                module = line[4:].strip()
                found.add(module)
            elif module and re.match(r"^ {8}- \w+$", line):
                found.add(f"{module}.{line.strip()[2:]}")
    return found


DOCUMENTED = documented_identifiers(Path(__file__).resolve().parent.parent / "reference")


def convert_roles(text: str, obj: Any, resolver: Resolver) -> str:
    """Math roles to arithmatex, cross-reference roles to autorefs links (see the module doc)."""
    text = MATH.sub(lambda m: "\\(" + m[1] + "\\)", text)

    def link(match: re.Match[str]) -> str:
        role, raw = match[1], match[2].strip()
        short = raw.startswith("~")
        target = raw.lstrip("~").removesuffix("()")
        if " <" in target:  # :func:`text <target>`
            shown, target = target.split(" <", 1)
            target = target.rstrip(">").lstrip("~").removesuffix("()")
        else:
            shown = target.rsplit(".", 1)[-1] if short else target
        if role in ("func", "meth") and not shown.endswith(")"):
            shown += "()"
        target = KNOWN_STALE.get(target, target)
        head = target.split(".")[0]
        found = resolver.find(target, obj)
        if found is not None:
            path = resolver.documented_path(found)
            if path is not None:
                return f"[`{shown}`][{path}]"
            UNDOCUMENTED.add(f"{obj.path}: :{role}:`{raw}`")
            return f"`{shown}`"  # a private or unlisted helper: exists, but has no entry to link to
        if head == "fdl":  # an fdl name that does not exist: let autorefs fail the strict build
            return f"[`{shown}`][{target}]"
        if head in EXTERNAL or hasattr(builtins, head):
            return f"`{shown}`"
        logger.warning(f"{obj.path}: cannot resolve :{role}:`{raw}`")
        return f"`{shown}`"

    text = ROLE.sub(link, text)
    return RST_LINK.sub(lambda m: f"[{' '.join(m[1].split())}]({m[2].strip()})", text)


def convert(text: str, obj: Any, resolver: Resolver) -> str:
    """The whole rewrite of one docstring."""
    return convert_roles(fence_doctests(convert_blocks(convert_tables(fix_sections(text)))), obj, resolver)


def sphinx_comment(obj: Any) -> str:
    """The ``#:`` comment lines right above an attribute's assignment (Sphinx's doc comment)."""
    if not obj.lineno or obj.filepath is None or isinstance(obj.filepath, list):
        return ""
    lines = Path(obj.filepath).read_text().split("\n")
    row = obj.lineno - 2
    comment: list[str] = []
    while row >= 0 and lines[row].lstrip().startswith("#:"):
        comment.insert(0, lines[row].lstrip()[2:].strip())
        row -= 1
    return "\n".join(comment)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring of a loaded package once (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        resolver = Resolver(pkg)
        seen: set[int] = set()

        def visit(obj: Any) -> None:
            if obj.is_alias or id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is None and obj.is_attribute:
                comment = sphinx_comment(obj)
                if comment:
                    obj.docstring = griffe.Docstring(comment, lineno=obj.lineno, parent=obj)
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj, resolver)
            for member in list(obj.members.values()):
                visit(member)

        visit(pkg)
        if os.environ.get("FDL_DOCS_LIST_UNDOCUMENTED"):
            for line in sorted(UNDOCUMENTED):
                logger.info(f"reference to an undocumented object: {line}")
