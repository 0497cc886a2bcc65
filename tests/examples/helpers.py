"""Load an example script as a module, as ``python examples/NAME.py`` would run it.

The examples import their shared loop with ``from _common import ...`` (the script's folder is
on ``sys.path`` when run directly), so :func:`load_example` puts the folder on ``sys.path`` too.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """The module of ``examples/<name>.py``, freshly executed."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
