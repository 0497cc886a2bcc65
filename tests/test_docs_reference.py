"""The API reference covers every public name, and every public name has a docstring.

The public API is each module ``fdl.__all__`` names, every public submodule of those that are
packages (``fdl.nn.dense``, ``fdl.optim.schedules.decay``, ...), and each such module's
``__all__``. The reference is what the pages under ``docs/reference/`` render: each
``::: module`` directive of mkdocstrings and the ``members:`` it lists. A name re-exported by a
package (``fdl.nn.Dense``) is covered where it is defined (``fdl.nn.dense.Dense``).

A docstring is the object's own: a function's ``__doc__``, a class' own ``__doc__`` (not the
``Name(field, ...)`` that ``NamedTuple`` and ``dataclass`` write), a module's ``__doc__``, and for
a constant or a type alias the string literal right after its assignment (as griffe and Sphinx
read it).

These tests read the pages and the sources only: they need neither mkdocs nor a network.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import fdl

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"


def public_modules() -> list[str]:
    """``fdl.X`` for X in ``fdl.__all__``, and the public submodules of the packages among them."""
    names = []
    for short in fdl.__all__:
        module = importlib.import_module(f"fdl.{short}")
        names.append(module.__name__)
        if hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, module.__name__ + "."):
                if not any(part.startswith("_") for part in info.name.split(".")):
                    names.append(info.name)
    return names


def rendered_identifiers(reference: Path = REFERENCE) -> set[str]:
    """What the pages render: each ``::: identifier`` and ``identifier.member`` for its members."""
    found: set[str] = set()
    for page in sorted(reference.rglob("*.md")):
        current = None
        in_members = False
        for line in page.read_text().splitlines():
            if line.startswith("::: "):
                current = line[4:].strip()
                found.add(current)
                in_members = False
            elif current and line.strip() == "members:":
                in_members = True
            elif current and in_members and (match := re.fullmatch(r"\s+- (\w+)", line)):
                found.add(f"{current}.{match[1]}")
            elif line.strip() and not line.startswith(" "):
                current, in_members = None, False
    return found


def origin(module_name: str, name: str) -> tuple[str, str]:
    """``(module, name)`` where ``name`` of ``module_name`` is defined: its ``from fdl... import``
    statements followed to the module that assigns or defines it."""
    source = Path(importlib.import_module(module_name).__file__ or "").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("fdl"):
            for alias in node.names:
                if (alias.asname or alias.name) == name and node.module:
                    return origin(node.module, alias.name)
    return module_name, name


def public_names() -> list[tuple[str, str]]:
    return [(module, name) for module in public_modules() for name in importlib.import_module(module).__all__]


def is_covered(module: str, name: str, rendered: set[str]) -> bool:
    value = getattr(importlib.import_module(module), name)
    if isinstance(value, types.ModuleType):
        return value.__name__ in rendered
    home, home_name = origin(module, name)
    return f"{module}.{name}" in rendered or f"{home}.{home_name}" in rendered


def assignment_docstring(module: str, name: str) -> str | None:
    """The documentation of ``name = ...`` (or ``name: T = ...``) at the top of ``module``: the
    string literal right after it, or the ``#:`` comment lines right above it (Sphinx's form)."""
    source = Path(importlib.import_module(module).__file__ or "").read_text()
    lines = source.splitlines()
    body = ast.parse(source).body
    for node, after in zip(body, [*body[1:], None], strict=True):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                return after.value.value
            comments: list[str] = []
            row = node.lineno - 2  # the line above, 0-based
            while row >= 0 and lines[row].lstrip().startswith("#:"):
                comments.insert(0, lines[row].lstrip()[2:].strip())
                row -= 1
            return "\n".join(comments) or None
    return None


def docstring(module: str, name: str) -> str | None:
    value = getattr(importlib.import_module(module), name)
    if isinstance(value, types.ModuleType) or inspect.isfunction(value):
        return value.__doc__
    if inspect.isclass(value):
        own = value.__dict__.get("__doc__")
        generated = own is not None and own.startswith(f"{value.__name__}(")  # NamedTuple, dataclass
        return None if generated else own
    return assignment_docstring(*origin(module, name))


def missing_from(names: list[tuple[str, str]], rendered: set[str]) -> list[str]:
    return [f"{m}.{n}" for m, n in names if not is_covered(m, n, rendered)]


def without_docstring(names: list[tuple[str, str]]) -> list[str]:
    return [f"{m}.{n}" for m, n in names if not (docstring(m, n) or "").strip()]


def test_every_public_module_has_a_page():
    rendered = rendered_identifiers()
    missing = [m for m in public_modules() if m not in rendered]
    assert not missing, (
        f"modules with no page under docs/reference/ (run scripts/make_api_pages.py): {missing}"
    )


def test_every_public_name_is_in_the_reference():
    missing = missing_from(public_names(), rendered_identifiers())
    assert not missing, (
        f"public names the API reference does not render (run scripts/make_api_pages.py): {missing}"
    )


# Public constants and type aliases that had no docstring when this test was written. Each is a
# one-line docstring to add in src/ (a string literal after the assignment, or ``#:`` comments
# above it); the test fails when one gains it, so that the entry is removed.
KNOWN_UNDOCUMENTED: set[str] = set()


def test_every_public_name_has_a_docstring():
    missing = set(without_docstring(public_names()))
    assert not missing - KNOWN_UNDOCUMENTED, (
        f"public names without a docstring: {sorted(missing - KNOWN_UNDOCUMENTED)}"
    )
    fixed = KNOWN_UNDOCUMENTED - missing
    assert not fixed, f"these have a docstring now: remove them from KNOWN_UNDOCUMENTED: {sorted(fixed)}"


def test_every_public_module_has_a_docstring():
    missing = [m for m in public_modules() if not (importlib.import_module(m).__doc__ or "").strip()]
    assert not missing, f"public modules without a docstring: {missing}"


def test_the_checks_catch_a_missing_name_and_a_missing_docstring(tmp_path):
    """The checks above can fail: a page without one member, a name without a docstring."""
    page = REFERENCE / "pca.md"
    (tmp_path / "pca.md").write_text(page.read_text().replace("        - transform\n", ""))
    rendered = rendered_identifiers(tmp_path)
    assert missing_from([("fdl.pca", "transform"), ("fdl.pca", "fit_pca")], rendered) == ["fdl.pca.transform"]

    undocumented = types.ModuleType("fdl_docs_probe")
    undocumented.__file__ = str(tmp_path / "fdl_docs_probe.py")
    (tmp_path / "fdl_docs_probe.py").write_text(
        'LIMIT = 3\nNAME = "x"\n"""The name."""\n#: The size.\nSIZE = 2\n'
    )
    exec("def f():\n    pass\nclass P(__import__('typing').NamedTuple):\n    a: int\n", undocumented.__dict__)
    undocumented.LIMIT, undocumented.NAME, undocumented.SIZE = 3, "x", 2
    sys.modules["fdl_docs_probe"] = undocumented
    try:
        names = [("fdl_docs_probe", n) for n in ("f", "P", "LIMIT", "NAME", "SIZE")]
        assert without_docstring(names) == ["fdl_docs_probe.f", "fdl_docs_probe.P", "fdl_docs_probe.LIMIT"]
    finally:
        del sys.modules["fdl_docs_probe"]


def test_the_pages_are_current():
    """``scripts/make_api_pages.py --check``: the pages and the nav match the modules' ``__all__``."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_api_pages.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_page_renders_a_public_module():
    """No page documents a module that is gone or private (mkdocs would fail on it, later)."""
    modules = set(public_modules())
    stray = [
        f"docs/reference/{page.relative_to(REFERENCE)}: {identifier}"
        for page in sorted(REFERENCE.rglob("*.md"))
        for identifier in re.findall(r"^::: (\S+)$", page.read_text(), flags=re.M)
        if identifier not in modules
    ]
    assert not stray, f"pages that render no public module: {stray}"
