"""The code blocks of the documentation pages run as tests (``pytest --markdown-docs docs/``).

They run as the test suite does (``tests/conftest.py``): JAX's dtype promotion strict and its
rank promotion raising, so a page cannot show code that the suite would reject.

Not collected: ``_hooks/``, the site's build hooks (they import mkdocs, an optional dependency).
Every page's ``python`` blocks run, ``design.md``'s included (shell sessions are ``bash`` or
``text`` blocks, which are shown and not run).
"""

import jax

collect_ignore = ["_hooks"]

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
