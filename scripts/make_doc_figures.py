"""Make the figures of the course pages (``docs/figures/<name>.png``) with the code the pages show.

    python scripts/make_doc_figures.py                 # rewrite every figure and its numbers
    python scripts/make_doc_figures.py --only derivatives --out /tmp/figures
    python scripts/make_doc_figures.py --check         # fail if a committed figure is stale

One module per chapter in ``scripts/doc_figures/`` (see its ``__init__``): ``compute()`` returns
every number the figure draws, ``draw(data, path)`` draws them. Beside each PNG the numbers are
written to ``<name>.json``; ``--check`` (and ``tests/test_doc_figures.py``) recomputes them and
compares, because PNG bytes depend on the matplotlib version and the numbers do not.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
import sys
import time
from pathlib import Path
from types import ModuleType

import jax
import numpy as np

SCRIPTS = Path(__file__).resolve().parent
FIGURES = SCRIPTS.parent / "docs" / "figures"
#: A number may move by this share of its key's range (max - min over the committed values,
#: taken on log10 for a module's ``LOG_KEYS``) before the figure counts as stale: about a pixel
#: on the 4-inch axes the figures use, far under what a reader could see. Integer and bool keys
#: (labels, cluster assignments) may change in this share of their entries: a point or two
#: recoloured in a scatter of hundreds.
RELATIVE_TOLERANCE = 0.01


def chapters() -> dict[str, ModuleType]:
    """The figure modules, by chapter name."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    package = importlib.import_module("doc_figures")
    names = sorted(
        info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_")
    )
    return {name: importlib.import_module(f"doc_figures.{name}") for name in names}


def to_json(data: dict[str, np.ndarray]) -> str:
    """The numbers as JSON: each key's shape, dtype and values (floats to 7 significant digits)."""
    out = {}
    for key, value in sorted(data.items()):
        array = np.asarray(value)
        if array.dtype.kind == "f":
            values = [float(f"{v:.7g}") for v in array.ravel()]
        else:
            values = array.ravel().tolist()
        out[key] = {"shape": list(array.shape), "dtype": str(array.dtype), "values": values}
    return json.dumps(out, indent=None, separators=(",", ":")) + "\n"


def stale_keys(module: ModuleType, committed: dict, data: dict[str, np.ndarray]) -> list[str]:
    """What differs between the committed numbers and ``data``: one line per key."""
    problems = []
    if sorted(committed) != sorted(data):
        return [f"keys {sorted(committed)} committed, {sorted(data)} computed"]
    log_keys = getattr(module, "LOG_KEYS", frozenset())
    for key, entry in committed.items():
        new = np.asarray(data[key])
        if list(new.shape) != entry["shape"]:
            problems.append(f"{key}: shape {entry['shape']} committed, {list(new.shape)} computed")
            continue
        if entry["dtype"].startswith(("int", "uint", "bool")):  # labels, counts, assignments
            old_labels = np.asarray(entry["values"]).reshape(new.shape)
            share = float(np.mean(old_labels != new)) if new.size else 0.0
            if share > RELATIVE_TOLERANCE:
                problems.append(f"{key}: {share:.1%} of the entries changed, more than 1%")
            continue
        old = np.asarray(entry["values"], dtype=float).reshape(new.shape)
        new = new.astype(float)
        if key in log_keys:
            old, new = np.log10(old), np.log10(new)
        span = float(np.max(old) - np.min(old)) if old.size else 0.0
        allowed = RELATIVE_TOLERANCE * span if span > 0 else 1e-6 * max(1.0, float(np.max(np.abs(old))))
        worst = float(np.max(np.abs(new - old))) if old.size else 0.0
        if not math.isfinite(worst) or worst > allowed:
            problems.append(f"{key}: moved by {worst:.3g}, more than {allowed:.3g} (1% of its range)")
    return problems


def main(argv: list[str] | None = None) -> int:
    # As the test suite and the pages' blocks run (tests/conftest.py, docs/conftest.py), so the
    # numbers are the same whichever computes them.
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    modules = chapters()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=FIGURES, help="folder for the PNGs (default docs/figures)"
    )
    parser.add_argument("--only", choices=sorted(modules), action="append", help="make only these")
    parser.add_argument("--check", action="store_true", help="recompute and compare; write nothing")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or modules:
        start = time.perf_counter()
        module = modules[name]
        data = module.compute()
        if args.check:
            committed = json.loads((FIGURES / f"{name}.json").read_text())
            problems = stale_keys(module, committed, data)
            failed += [f"{name}: {p}" for p in problems]
            print(f"{name}: {'stale' if problems else 'current'} ({time.perf_counter() - start:.1f} s)")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        module.draw(data, args.out / f"{name}.png")
        (args.out / f"{name}.json").write_text(to_json(data))
        print(f"{args.out / name}.png in {time.perf_counter() - start:.1f} s")
    for line in failed:
        print(line, file=sys.stderr)
    if failed:
        print("run: python scripts/make_doc_figures.py --only NAME", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
