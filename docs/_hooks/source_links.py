"""An mkdocs hook: links from a page to a file of the repository (a test, an example) just work.

A page links to a repository file by its path relative to the page, as on GitHub:
``[tests/toolkit/test_pca.py](../../tests/toolkit/test_pca.py)`` from ``docs/course/x.md``. Such a
target lies outside ``docs/``, which mkdocs cannot link to. This hook adds one generated page per
linked file (``source/<path>.md``: the file, highlighted, with line numbers) and points the link at
it, so the site needs no repository URL, works offline, and a link to a file that does not exist is
a warning, which ``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.source_links")

LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
SOURCE = "source"
LANGUAGES = {
    ".py": "python",
    ".toml": "toml",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".md": "markdown",
    ".sh": "bash",
}


def _repo_target(page_src: str, target: str, docs_dir: Path) -> Path | None:
    """The repository file a link ``target`` from page ``page_src`` names, if outside ``docs/``."""
    if "://" in target or target.startswith(("mailto:", "/")):
        return None
    resolved = (docs_dir / posixpath.dirname(page_src) / target).resolve()
    repo = docs_dir.resolve().parent
    if resolved.is_relative_to(docs_dir.resolve()) or not resolved.is_relative_to(repo):
        return None
    return resolved.relative_to(repo)


def _page(path: Path, text: str) -> str:
    fence = "`" * max([3] + [len(run) + 1 for run in re.findall(r"`{3,}", text)])
    language = LANGUAGES.get(path.suffix, "text")
    return f'# `{path.as_posix()}`\n\n{fence}{language} linenums="1"\n{text}\n{fence}\n'


def on_files(files: Files, config: Any) -> Files:
    """Add a source page for every repository file a documentation page links to."""
    docs_dir = Path(config["docs_dir"])
    repo = docs_dir.resolve().parent
    linked: set[Path] = set()
    for file in files.documentation_pages():
        text = Path(file.abs_src_path).read_text() if file.abs_src_path else ""
        for match in LINK.finditer(text):
            rel = _repo_target(file.src_uri, match["target"], docs_dir)
            if rel is not None:
                if (repo / rel).is_file():
                    linked.add(rel)
                else:
                    log.warning(
                        f"{file.src_uri} links to {match['target']}, which is not a file of the repository"
                    )
    for rel in sorted(linked):
        content = _page(rel, (repo / rel).read_text())
        files.append(File.generated(config, f"{SOURCE}/{rel.as_posix()}.md", content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point each link to a repository file at the file's source page."""
    docs_dir = Path(config["docs_dir"])

    def rewrite(match: re.Match[str]) -> str:
        rel = _repo_target(page.file.src_uri, match["target"], docs_dir)
        if rel is None:
            return match[0]
        source = f"{SOURCE}/{rel.as_posix()}.md"
        target = posixpath.relpath(source, posixpath.dirname(page.file.src_uri) or ".")
        return f"]({target}{match['anchor'] or ''})"

    return LINK.sub(rewrite, markdown)
