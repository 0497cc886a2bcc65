"""optax's own test modules, loaded from the installed optax with the module under test swapped
for a stand-in that answers from ``fdl.optim``.

A test module of optax imports the module it tests (``from optax._src import alias``) and calls
its names at test time (``alias.adam(0.1)``). :func:`load` imports a fresh copy of the test
module while ``optax._src.alias`` (the attribute and the ``sys.modules`` entry) is a
:class:`Swapped` stand-in, then puts the real module back. Every assertion and tolerance is
optax's: nothing of the test module is edited or copied.

The stand-in answers a public name with fdl's object of that name, and records it. A public
name fdl lacks is recorded too, and answered with a :class:`Missing` placeholder (a test module
may list optimizers at import time) that raises :class:`NotTwinned` when used, so a case that
needs it is counted as *not yet twinned*, never as a pass. Private names (``_helper``) are the
test's own plumbing and come from optax.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import types
from typing import Any

import fdl.optim

# The optax test modules run against fdl, and the optax modules each swaps (the ones it tests).
# Modules not listed (optax's base types, numerics, tree utilities, test_utils) stay optax's.
SUITE: dict[str, tuple[str, ...]] = {
    "optax._src.alias_test": ("optax._src.alias",),
    "optax._src.transform_test": ("optax._src.transform",),
    "optax._src.combine_test": ("optax._src.combine",),
    "optax._src.update_test": ("optax._src.update",),
    "optax._src.float64_test": ("optax._src.alias", "optax._src.transform", "optax._src.update"),
    "optax._src.lookahead_test": ("optax._src.lookahead",),
    "optax._src.linesearch_test": ("optax._src.linesearch",),
    "optax.schedules._schedule_test": ("optax.schedules._schedule",),
    "optax.schedules._join_test": ("optax.schedules._join",),
    "optax.schedules._inject_test": ("optax.schedules",),
    "optax.transforms._clipping_test": ("optax.transforms._clipping",),
    "optax.transforms._combining_test": ("optax.transforms._combining",),
    "optax.transforms._adding_test": ("optax.transforms._adding",),
    "optax.transforms._masking_test": ("optax.transforms._masking",),
    "optax.transforms._accumulation_test": ("optax.transforms._accumulation",),
    "optax.transforms._conditionality_test": ("optax.transforms._conditionality",),
    "optax.transforms._constraining_test": ("optax.transforms._constraining",),
    "optax.transforms._freezing_test": ("optax.transforms._freezing",),
    "optax.transforms._monitoring_test": ("optax.transforms._monitoring",),
    "optax.transforms._layouts_test": ("optax.transforms._layouts",),
    "optax.contrib._common_test": ("optax.contrib",),
    "optax.contrib._muon_test": ("optax.contrib._muon",),
    "optax.contrib._sam_test": ("optax.contrib._sam",),
    "optax.contrib._schedule_free_test": ("optax.contrib._schedule_free",),
    "optax.contrib._reduce_on_plateau_test": ("optax.contrib._reduce_on_plateau",),
    "optax.contrib._privacy_test": ("optax.contrib._privacy",),
}

# What one test case touched: fdl names it got, and names it asked for that fdl lacks.
REACHED: set[str] = set()
MISSING: set[str] = set()
_importing = False


class NotTwinned(AttributeError):
    """A public optax name that ``fdl.optim`` does not have (yet)."""

    def __init__(self, module: str, name: str):
        super().__init__(f"fdl.optim has no twin of {module}.{name}")
        self.name = name


class Missing:
    """Stands in for a name fdl lacks: calling it, or reading any attribute, raises."""

    def __init__(self, module: str, name: str):
        self._module, self._name = module, name

    def _fail(self) -> Missing:
        if _importing:  # a test module building its parameter lists: fail when a case runs
            return self
        MISSING.add(self._name)
        raise NotTwinned(self._module, self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fail()

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # functools.wraps, repr and friends
            raise AttributeError(attr)
        return self._fail()

    def __repr__(self) -> str:
        return f"<no fdl twin of {self._module}.{self._name}>"


def _recording(name: str, function: Any) -> Any:
    """``function`` that records ``name`` as reached each time it is called (a test module may
    take fdl's function at import time, before any case runs)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        REACHED.add(name)
        return function(*args, **kwargs)

    return call


def fdl_object(name: str) -> Any:
    """fdl's object named ``name`` (from ``fdl.optim`` or its schedules), or ``None``."""
    for namespace in (fdl.optim, fdl.optim.schedules):
        if name in getattr(namespace, "__all__", ()):
            return getattr(namespace, name)
    return None


class Swapped(types.ModuleType):
    """Stands in for the optax module ``original``: public names from fdl, private from optax."""

    def __init__(self, original: types.ModuleType):
        super().__init__(original.__name__)
        self._original = original

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not hasattr(self._original, name):
            return getattr(self._original, name)  # optax's plumbing, or optax's AttributeError
        value = fdl_object(name)
        if value is None:
            MISSING.add(name)
            return Missing(self._original.__name__, name)
        REACHED.add(name)
        if _importing and inspect.isfunction(value):  # kept in a parameter list: record its calls
            return _recording(name, value)
        return value


def _parent_and_attr(module_name: str) -> tuple[types.ModuleType, str]:
    package, _, attr = module_name.rpartition(".")
    return importlib.import_module(package), attr


def load(test_module: str) -> types.ModuleType:
    """A fresh import of optax's ``test_module`` with its modules under test swapped for fdl."""
    global _importing
    originals = {name: importlib.import_module(name) for name in SUITE[test_module]}
    saved_test = sys.modules.pop(test_module, None)
    try:
        for name, original in originals.items():
            parent, attr = _parent_and_attr(name)
            swapped = Swapped(original)
            sys.modules[name] = swapped
            setattr(parent, attr, swapped)
        _importing = True
        return importlib.import_module(test_module)
    finally:
        _importing = False
        for name, original in originals.items():
            parent, attr = _parent_and_attr(name)
            sys.modules[name] = original
            setattr(parent, attr, original)
        # the swapped copy stays reachable from the test classes; optax's own stays in sys.modules
        if saved_test is not None:
            sys.modules[test_module] = saved_test
        else:
            sys.modules.pop(test_module, None)
