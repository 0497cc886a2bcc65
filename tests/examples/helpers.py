"""Load an example script as a module, as ``python examples/NAME.py`` would run it.

The examples import their shared loop with ``from _common import ...`` (the script's folder is
on ``sys.path`` when run directly), so the folder goes on ``sys.path`` here too.
"""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def load_example(monkeypatch):
    """``load_example(name)``: the module of ``examples/<name>.py``."""
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
