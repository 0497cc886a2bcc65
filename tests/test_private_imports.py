"""No module under src/fdl imports another module's ``_private`` name.

A name that two modules need is either a kernel (a private module such as ``fdl._checks``,
``fdl._dtypes``, ``fdl._io``, ``fdl._plot``, ``fdl.nn._norm``: every module whose own name
starts with ``_``, whose names are meant to be shared) or public API (``fdl.tree``). Importing
the private kernel modules themselves (``from fdl.nn import _window``) is allowed. The check
reads the source with ``ast``, so it also sees imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fdl"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imported_module(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute name of the module ``node`` imports from (resolving relative imports)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def is_module(dotted: str) -> bool:
    relative = Path(*dotted.split("."))
    return (SRC / relative).with_suffix(".py").is_file() or (SRC / relative / "__init__.py").is_file()


def offenders() -> list[str]:
    """``from fdl.x import _y`` (``_y`` not a module) and ``x._y`` where ``x`` names a
    non-private fdl module, in every module under src/fdl."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(SRC.parent)
        modules = {}  # local name -> fdl module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("fdl.") and alias.asname:
                        modules[alias.asname] = alias.name
            if not isinstance(node, ast.ImportFrom):
                continue
            source = imported_module(node, importer, path.name == "__init__.py")
            if source != "fdl" and not source.startswith("fdl."):
                continue
            for alias in node.names:
                if is_module(f"{source}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{source}.{alias.name}"
            if any(is_private(part) for part in source.split(".")):
                continue  # a kernel module: its names are there to be shared
            for alias in node.names:
                if is_private(alias.name) and not is_module(f"{source}.{alias.name}"):
                    found.append(f"{where}:{node.lineno}: from {source} import {alias.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and is_private(node.attr)
                and not any(is_private(p) for p in modules[node.value.id].split("."))
                and not is_module(f"{modules[node.value.id]}.{node.attr}")
            ):
                found.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_checker_sees_what_it_must():
    def check(code: str, importer: str = "fdl.nn.conv", package: bool = False) -> list[str]:
        node = ast.parse(code).body[0]
        source = imported_module(node, importer, package)
        return [
            a.name
            for a in node.names
            if is_private(a.name)
            and not any(is_private(p) for p in source.split("."))
            and not is_module(f"{source}.{a.name}")
        ]

    assert check("from fdl.nn.dense import _promote") == ["_promote"]
    assert check("from .dense import _promote") == ["_promote"]
    assert check("from fdl.nn import _window") == []  # a kernel module
    assert check("from fdl._checks import check_shape") == []
    assert check("from fdl.nn._norm import affine") == []
    assert check("from fdl.optim.base import __version__") == []


def test_no_module_imports_another_modules_private_name():
    found = offenders()
    assert not found, (
        "these imports reach into another module's private names; move the name to a kernel "
        "module (fdl._checks, fdl._dtypes, fdl._io, fdl._plot, ...) or make it public:\n" + "\n".join(found)
    )
