"""Write the API reference pages (``docs/reference/``) and their nav in ``mkdocs.yml``.

One page per public module: each module ``fdl.__all__`` names, and for a subpackage (``fdl.nn``,
``fdl.optim``, ...) one page for the package and one for each public submodule, recursively. A page
is a mkdocstrings directive that lists the module's ``__all__`` as its members, so the page says
exactly what it documents (``tests/test_docs_reference.py`` reads these lists back and fails when a
public name is missing). A package page documents the names of the package's ``__all__`` that are
defined in the package itself or in a private module (``fdl.nn._children.sow``); the rest are
documented on the page of the public submodule that defines them.

Run it after adding a module or a public name::

    python scripts/make_api_pages.py          # rewrite the pages and the nav
    python scripts/make_api_pages.py --check  # exit 1 if they are not current (CI)
"""

from __future__ import annotations

import argparse
import ast
import importlib
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
MKDOCS = ROOT / "mkdocs.yml"
NAV_BEGIN = "      # BEGIN API NAV (written by scripts/make_api_pages.py)"
NAV_END = "      # END API NAV"


def public_modules(package: ModuleType) -> list[str]:
    """The public submodules of ``package``, recursively, sorted (no ``_private`` part)."""
    names = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def defining_module(module_name: str, name: str) -> str:
    """The module that ``name`` in ``module_name`` comes from, following ``from x import name``."""
    module = importlib.import_module(module_name)
    value = getattr(module, name)
    if isinstance(value, ModuleType):  # a submodule: documented on its own page
        return value.__name__
    source = Path(module.__file__ or "").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if (alias.asname or alias.name) == name and node.module.startswith("fdl"):
                    return defining_module(node.module, alias.name)
    return module_name


def page_members(module_name: str) -> list[str]:
    """The members a module's page documents: its ``__all__``, less those documented elsewhere."""
    module = importlib.import_module(module_name)
    members = []
    for name in module.__all__:
        origin = defining_module(module_name, name)
        if origin == module_name or any(part.startswith("_") for part in origin.split(".")):
            members.append(name)
    return members


def page_path(module_name: str, is_package: bool) -> Path:
    """``fdl.nn`` -> ``nn/index.md``, ``fdl.nn.dense`` -> ``nn/dense.md``, ``fdl.pca`` -> ``pca.md``."""
    parts = module_name.split(".")[1:]
    return Path(*parts, "index.md") if is_package else Path(*parts[:-1], parts[-1] + ".md")


def page_text(module_name: str) -> str:
    """A page: one mkdocstrings directive for the module, its documented members listed."""
    members = page_members(module_name)
    lines = [
        f"<!-- Written by scripts/make_api_pages.py from {module_name}.__all__: do not edit. -->",
        "",
        f"::: {module_name}",
        "    options:",
        "      heading_level: 1",
    ]
    if members:
        lines.append("      members:")
        lines += [f"        - {name}" for name in members]
    else:
        lines.append("      members: false")
    return "\n".join(lines) + "\n"


def pages() -> tuple[dict[Path, str], list[str]]:
    """Every page's text by path, and the nav lines for ``mkdocs.yml``."""
    import fdl

    texts: dict[Path, str] = {}
    nav: list[str] = []
    for short in fdl.__all__:
        name = f"fdl.{short}"
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):
            index = page_path(name, True)
            texts[index] = page_text(name)
            nav.append(f"      - {name}:")
            nav.append(f"          - reference/{index.as_posix()}")
            for sub in public_modules(module):
                is_package = hasattr(importlib.import_module(sub), "__path__")
                path = page_path(sub, is_package)
                texts[path] = page_text(sub)
                nav.append(f"          - {sub}: reference/{path.as_posix()}")
        else:
            path = page_path(name, False)
            texts[path] = page_text(name)
            nav.append(f"      - {name}: reference/{path.as_posix()}")
    return texts, nav


def with_nav(config: str, nav: list[str]) -> str:
    """``mkdocs.yml``'s text with the lines between the nav markers replaced by ``nav``."""
    lines = config.split("\n")
    begin, end = lines.index(NAV_BEGIN), lines.index(NAV_END)
    return "\n".join(lines[: begin + 1] + nav + lines[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the pages are not current")
    args = parser.parse_args(argv)
    texts, nav = pages()
    config = MKDOCS.read_text()
    wanted_config = with_nav(config, nav)
    stale = [p for p, t in texts.items() if not (REFERENCE / p).exists() or (REFERENCE / p).read_text() != t]
    overview = Path("index.md")  # docs/reference/index.md is written by hand
    extra = [p.relative_to(REFERENCE) for p in REFERENCE.rglob("*.md")]
    extra = [p for p in extra if p not in texts and p != overview]
    if args.check:
        problems = [f"stale: docs/reference/{p}" for p in stale] + [
            f"extra: docs/reference/{p}" for p in extra
        ]
        if wanted_config != config:
            problems.append("stale: the API nav in mkdocs.yml")
        for problem in problems:
            print(problem)
        if problems:
            print("run: python scripts/make_api_pages.py")
        return 1 if problems else 0
    for path in stale:
        (REFERENCE / path).parent.mkdir(parents=True, exist_ok=True)
        (REFERENCE / path).write_text(texts[path])
    for path in extra:
        (REFERENCE / path).unlink()
    MKDOCS.write_text(wanted_config)
    print(f"{len(texts)} pages ({len(stale)} written, {len(extra)} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
