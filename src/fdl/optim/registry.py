r"""Optimizers by name: ``"adam"``, ``"fdl:adam"``, ``"optax:adam"``.

The command line (``fdl train --opt``, ``fdl compare --opt``) and :func:`fdl.compare.compare`
name optimizers with strings. The table of names is not kept by hand; it is *derived*:

* **fdl's names** are the aliases :mod:`fdl.optim` exports: the functions in its ``__all__``
  whose first parameter is ``learning_rate``, less the atoms (``scale_by_*``). A new alias
  exported from :mod:`fdl.optim` is a registry name at once.
* **optax's names** are found the same way in ``optax.__all__`` and in ``optax.contrib``
  (``optax:muon`` is ``optax.contrib.muon``; imported lazily, on first use: :mod:`fdl.optim`
  never needs optax), less the deprecated ones.

Both libraries leave out the aliases a comparison of trajectories cannot run
(:data:`OPTAX_EXCLUDED` says why each is left out). The line searches (``lbfgs``) and
``polyak_sgd`` are in: the one train step passes them ``value``, ``grad`` and ``value_fn``
(:func:`fdl.train.make_step`).

fdl's names are read from :mod:`fdl.optim` at each call, so the registry is always what it
exports; optax's are read once.

A bare ``"NAME"`` is fdl's optimizer; ``"fdl:NAME"`` says so explicitly; ``"optax:NAME"`` is
optax's. Hyperparameters are the factories' own keyword arguments, which are optax's names for
both libraries (``learning_rate``, ``b1``, ``momentum``, ...).

>>> from fdl.optim import make_optimizer, optimizer_names
>>> optimizer_names("fdl")[:3]
['fdl:sgd', 'fdl:adam', 'fdl:adamw']
>>> sorted(make_optimizer("adam", {"learning_rate": 1e-3})._fields)
['init', 'update']
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = [
    "LIBRARIES",
    "OPTAX_EXCLUDED",
    "get_optimizer",
    "make_optimizer",
    "optimizer_names",
    "resolve_name",
    "twin_name",
]

#: The libraries an optimizer name is looked up in: fdl's own optimizers and their optax twins.
LIBRARIES = ("fdl", "optax")

OPTAX_EXCLUDED: dict[str, str] = {
    "noisy_sgd": "it draws noise from a key of its own",
    "dpsgd": "it needs per-example gradients",
    "sophia": "its update needs obj_fn (the loss of the params, for its Hessian estimates), "
    "which a train step does not pass",
}
"""Aliases left out of the registry (optax's and fdl's alike), with the reason: a randomness
of its own, or an ``update`` that needs what a train step does not have."""


def _aliases(namespace: Any, exclude: Collection[str] = (), names: Any = None) -> tuple[str, ...]:
    """The ``names`` (default ``namespace.__all__``) of functions (or partials) taking
    ``learning_rate`` first, less atoms (``scale_by_*``), deprecated names and ``exclude``, in
    order."""
    found = []
    for name in namespace.__all__ if names is None else names:
        if name.startswith("scale_by_") or name in exclude or not name[:1].islower():
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(namespace, name, None)
        if caught or not callable(value) or inspect.isclass(value):  # deprecated ones warn
            continue
        parameters = list(inspect.signature(value).parameters)
        if parameters[:1] == ["learning_rate"]:
            found.append(name)
    return tuple(found)


@functools.cache
def _optax_aliases() -> frozenset[str]:
    import optax
    import optax.contrib

    main = _aliases(optax, OPTAX_EXCLUDED)
    # optax's public names outside its __all__ (optimistic_gradient_descent, ...), and contrib's
    unlisted = sorted(n for n in vars(optax) if not n.startswith("_") and n not in optax.__all__)
    more = _aliases(optax, {*OPTAX_EXCLUDED, *main}, names=unlisted)
    public = sorted(name for name in vars(optax.contrib) if not name.startswith("_"))
    contrib = _aliases(optax.contrib, {*OPTAX_EXCLUDED, *main, *more}, names=public)
    return frozenset((*main, *more, *contrib))


def _names(library: str) -> tuple[str, ...]:
    """fdl's names as :mod:`fdl.optim` exports them now; optax's with fdl's first, in fdl's
    order, then the rest sorted."""
    if library == "fdl":
        import fdl.optim

        return _aliases(fdl.optim, OPTAX_EXCLUDED)
    found = _optax_aliases()
    shared = [name for name in _names("fdl") if name in found]
    return (*shared, *sorted(found - set(shared)))


def optimizer_names(library: str | None = None, *, qualified: bool = True) -> list[str]:
    """The registry names, ``"fdl:sgd"``, ..., ``"optax:sgd"``, ...

    Args:
      library: ``"fdl"`` or ``"optax"`` for one library's names, ``None`` for both.
      qualified: with the ``library:`` prefix (the default), or the bare names.

    Raises:
      ValueError: ``library`` is not one of :data:`LIBRARIES` or ``None``.

    >>> optimizer_names("fdl", qualified=False)[:2]
    ['sgd', 'adam']
    """
    if library is not None and library not in LIBRARIES:
        raise ValueError(f"`library` must be one of {LIBRARIES} or None, got {library!r}")
    libraries = LIBRARIES if library is None else (library,)
    return [f"{lib}:{name}" if qualified else name for lib in libraries for name in _names(lib)]


def _unknown(name: Any) -> ValueError:
    fdl_names, optax_names = _names("fdl"), _names("optax")
    base = name.removeprefix("fdl:") if isinstance(name, str) else None
    if base in optax_names and base not in fdl_names:
        hint = f" (fdl.optim has no {base}: use optax:{base})"
    else:
        close = difflib.get_close_matches(str(name), [*fdl_names, *optimizer_names()], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(
        f"unknown optimizer {name!r}{hint}; valid names: NAME or fdl:NAME for NAME in "
        f"{{{', '.join(fdl_names)}}}, optax:NAME for NAME in {{{', '.join(optax_names)}}}"
    )


def resolve_name(name: str) -> tuple[str, str]:
    """``"optax:adam"`` -> ``("optax", "adam")``; a bare name is fdl's.

    Raises:
      ValueError: an unknown name; the message lists the valid ones, or says where an fdl name
        that only optax has lives.

    >>> resolve_name("adam"), resolve_name("optax:novograd")
    (('fdl', 'adam'), ('optax', 'novograd'))
    """
    if not isinstance(name, str):
        raise _unknown(name)
    library, sep, base = name.partition(":")
    if not sep:
        library, base = "fdl", name
    if library not in LIBRARIES or base not in _names(library):
        raise _unknown(name)
    return library, base


def twin_name(name: str) -> str | None:
    """The other library's optimizer of the same name, or ``None`` if it has none.

    >>> twin_name("adam"), twin_name("optax:adam"), twin_name("optax:novograd")
    ('optax:adam', 'fdl:adam', 'fdl:novograd')
    """
    library, base = resolve_name(name)
    other = LIBRARIES[1 - LIBRARIES.index(library)]
    return f"{other}:{base}" if base in _names(other) else None


def get_optimizer(name: str) -> Callable[..., Any]:
    """The factory registered as ``name`` (``"adam"``, ``"fdl:adam"``, ``"optax:adam"``).

    It is looked up in :mod:`fdl.optim` (or ``optax``) when called, so it is the function
    exported there now.

    Raises:
      ValueError: an unknown name; the message lists the valid ones.

    >>> import fdl
    >>> get_optimizer("adam") is fdl.optim.adam
    True
    """
    library, base = resolve_name(name)
    if library == "optax":  # optax's main namespace, else optax.contrib
        import optax
        import optax.contrib

        return getattr(optax, base, None) or getattr(optax.contrib, base)
    import fdl.optim

    return getattr(fdl.optim, base)


def make_optimizer(name: str, hyperparams: Mapping[str, Any] | None = None) -> Any:
    """Build the optimizer registered as ``name`` with the keyword arguments ``hyperparams``.

    Raises:
      ValueError: an unknown name, or a value the factory rejects (the message says which
        optimizer, then the factory's own message naming the argument).
      TypeError: an argument name the factory does not take, or a missing required one; the
        message lists the valid argument names. Also a value of the wrong type (``"0.9"``,
        ``True``), which fdl's factories reject naming the argument.

    >>> opt = make_optimizer("optax:sgd", {"learning_rate": 0.1})
    >>> sorted(opt._fields)
    ['init', 'update']
    """
    library, base = resolve_name(name)
    qualified = f"{library}:{base}"
    factory = get_optimizer(qualified)
    hyperparams = dict(hyperparams or {})
    for key in hyperparams:
        if not isinstance(key, str):
            raise TypeError(f"{qualified}: hyperparameter names must be strings, got {key!r}")
    signature = inspect.signature(factory)
    valid = ", ".join(signature.parameters)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [key for key in hyperparams if key not in signature.parameters]
    if unknown and not takes_any:
        names = ", ".join(repr(key) for key in unknown)
        raise TypeError(f"{qualified} has no argument {names}; valid arguments: {valid}")
    try:
        signature.bind(**hyperparams)
    except TypeError as error:
        raise TypeError(f"{qualified}: {error}; valid arguments: {valid}") from None
    try:
        return factory(**hyperparams)
    except (ValueError, TypeError) as error:
        kind = TypeError if isinstance(error, TypeError) else ValueError
        message = str(error)
        if message.startswith(f"{base}: "):  # an fdl factory's own message, complete as it is
            message = message.removeprefix(f"{base}: ")
        elif kind is TypeError:
            message += f" (valid arguments: {valid})"
        raise kind(f"{qualified}: {message}") from error
