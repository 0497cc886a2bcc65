"""``scripts/xla_cpu_splat_nan.py``, the check for jaxlib's CPU miscompile: its report and its errors.

Whether a jaxlib has the defect is measured by running the script (docs/design.md, "A NaN that
came from the compiler"); here only the variant that has never returned NaN runs, briefly.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("xla_cpu_splat_nan", ROOT / "scripts" / "xla_cpu_splat_nan.py")
assert _spec is not None and _spec.loader is not None
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_the_report_counts_the_executables(capsys):
    assert script.main(["--weights", "argument", "--compiles", "2"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(
        r"jax \S+, jaxlib \S+, \w+, weights argument: 0 of 2 executables returned NaN\n", out
    ), out


@pytest.mark.parametrize("compiles", ["0", "-3"])
def test_a_count_below_one_is_refused(compiles, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--compiles", compiles])
    assert exit_info.value.code == 2
    assert f"--compiles {compiles}: expected a positive number of compilations" in capsys.readouterr().err
