"""optax's own test suite, run against ``fdl.optim`` (see :mod:`tests.optax_suite.swap`).

Every ``absltest`` class of each optax test module in :data:`~tests.optax_suite.swap.SUITE`
is collected here under the name ``<module>__<class>``; pytest runs its cases as unittest cases.
How each case counts (passed, deliberate difference, not yet twinned) is decided in this
directory's ``conftest.py``.
"""

import contextlib
import unittest

import pytest
from absl import flags

from tests.optax_suite import swap

# About 1,700 cases of another project's suite (two minutes of the suite's wall time on two
# cores): run in CI, skipped by the quick local loop `-m "not slow"`.
pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _sub_test(self, msg=None, **params):
    """``TestCase.subTest`` for this suite: a failing parameter combination fails its case (one
    outcome per case, so the counts and the deliberate table are per case); a combination that
    optax's test skips (``self.skipTest``: "adadelta does not support complex parameters") is
    passed over and the next one runs, as under unittest."""
    try:
        yield
    except unittest.SkipTest:
        pass


flags.FLAGS.mark_as_parsed()  # absltest's temp-dir helpers read flags; pytest never parses them

for _module_name in swap.SUITE:
    _module = swap.load(_module_name)
    for _name, _value in vars(_module).items():
        if (
            isinstance(_value, type)
            and issubclass(_value, unittest.TestCase)
            and _value.__module__ == _module_name
        ):
            _short = _module_name.rsplit(".", 1)[1]
            globals()[f"{_short}__{_name}"] = type(
                f"{_short}__{_name}", (_value,), {"__module__": __name__, "subTest": _sub_test}
            )

del _module_name, _module, _name, _value, _short  # the loop's last class must not be collected twice
