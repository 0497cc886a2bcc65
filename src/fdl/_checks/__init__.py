"""Validation of static configuration, shared by every module.

Checks run in factories and at trace time on static Python values, never inside traced code, and
never with ``assert``. Each message names the argument, shows the value received and says what is
accepted.

One package, split by concern (each module under 500 lines), re-exported here: every module
imports its checks from ``fdl._checks``.
"""

from fdl._checks.basic import *  # noqa: F403
from fdl._checks.hyper import *  # noqa: F403
from fdl._checks.shapes import *  # noqa: F403
from fdl._checks.training import *  # noqa: F403
