"""The code blocks of the documentation pages run as tests (``pytest --markdown-docs docs/``).

They run as the test suite does (``tests/conftest.py``): JAX's dtype promotion strict and its
rank promotion raising, so a page cannot show code that the suite would reject.

Not collected: ``_hooks/``, the site's build hooks (they import mkdocs, an optional dependency),
and ``design.md``, whose blocks are sketches of multi-host launches and shell sessions, not
runnable pages (mark them ``notest`` there and drop it from this list to run the rest).
"""

import jax

collect_ignore = ["_hooks", "design.md"]

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
