"""``python -m fdl``: the ``fdl`` command line (:mod:`fdl.cli`)."""

from fdl.cli import main

raise SystemExit(main())
