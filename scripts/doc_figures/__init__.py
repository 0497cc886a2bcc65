"""One module per course chapter: ``docs/course/<name>.md`` shows ``docs/figures/<name>.png``.

Each module defines two functions:

* ``compute() -> dict[str, numpy.ndarray]``: every number the figure draws, computed with fdl.
  Where the page claims two computations agree, ``compute`` asserts it, so a figure cannot show a
  result the library no longer gives.
* ``draw(data, path)``: the figure, from those numbers only.

and may define ``LOG_KEYS``, the keys drawn on a logarithmic axis (compared as ``log10``).
``scripts/make_doc_figures.py`` writes the PNG and the numbers (``docs/figures/<name>.json``);
``tests/test_doc_figures.py`` recomputes the numbers and fails when the committed ones are stale.
"""
