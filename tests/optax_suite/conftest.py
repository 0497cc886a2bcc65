"""How a case of optax's own suite counts against ``fdl.optim``.

* **passed**: it passed and reached at least one fdl name;
* **deliberate**: it is listed in :data:`~tests.optax_suite.deliberate.DELIBERATE` and failed
  (reported as xfail with the recorded reason); a listed case that passes fails the run, so the
  table cannot go stale;
* **not twinned**: it asked the swapped module for a name fdl lacks (reported as xfail
  "not yet twinned: <names>"), whatever its outcome;
* **no fdl name**: it passed without touching a swapped name (optax's own plumbing), so it
  proves nothing about fdl and is not counted as a pass;
* **skipped by optax**: optax's test skips it (a combination optax itself does not support,
  such as adadelta on complex parameters);
* anything else that fails is a real failure.

optax's tests are written for JAX's default promotion rules, so this directory runs them under
those rules (the rest of fdl's suite runs with strict dtype and rank promotion). A summary line
per optax test file closes the run (``summary.py``, called from the suite's root conftest: under
pytest-xdist the controller loads only that one).
"""

import jax
import pytest

from tests.optax_suite import swap
from tests.optax_suite.deliberate import DELIBERATE
from tests.optax_suite.summary import KEY as _KEY


@pytest.fixture(autouse=True)
def _optax_defaults():
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


def _case(nodeid: str) -> str:
    """``alias_test__AliasTest::test_x0`` from a node id."""
    return nodeid.split("::", 1)[1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    if call.when == "setup":
        swap.REACHED.clear()
        swap.MISSING.clear()
    outcome = yield
    report = outcome.get_result()
    if call.when != "call":
        return
    case = _case(item.nodeid)
    if swap.MISSING:
        category = "not twinned"
        report.outcome = "skipped"
        report.wasxfail = "not yet twinned: " + ", ".join(sorted(swap.MISSING))
    elif case in DELIBERATE:
        if report.failed:
            category = "deliberate"
            report.outcome = "skipped"
            report.wasxfail = "deliberate difference: " + DELIBERATE[case]
        else:
            category = "listed but passed"
            report.outcome = "failed"
            report.longrepr = (
                f"{case} is listed in tests/optax_suite/deliberate.py as a deliberate difference "
                "but now passes: remove it from the table"
            )
    elif report.passed:
        category = "passed" if swap.REACHED else "no fdl name"
    elif report.skipped:
        category = "skipped by optax"
    else:
        category = "failed"
    report.user_properties.append((_KEY, category))
