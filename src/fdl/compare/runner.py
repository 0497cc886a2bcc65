r""":func:`compare`: plan the lanes (each optimizer with its twin or reference), run each group
with :func:`~fdl.compare.simulate`, and gather a :class:`~fdl.compare.Comparison`."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

import jax

from fdl._checks import check_positive_int
from fdl.compare.core import is_transformation, minibatches, simulate
from fdl.compare.result import Comparison, Run
from fdl.optim.registry import make_optimizer, resolve_name, twin_name
from fdl.problems import Problem, get_problem, problem_names

__all__ = ["Lane", "OptimizerSpec", "compare", "plan"]

Transformation = Any  # anything with optax's init/update pair
OptimizerSpec = str | tuple[str, Mapping[str, Any]] | Transformation
"""A registry name, a ``(name, hyperparameters)`` pair, or a ready gradient transformation."""


@dataclasses.dataclass
class Lane:
    """One trajectory to compute: a transformation, what it is, and the labels that show it."""

    transform: Transformation
    spec: str
    labels: list[str]


def _describe(name: str, hyperparams: Mapping[str, Any]) -> str:
    def show(v: Any) -> str:
        return getattr(v, "__name__", None) or repr(v)

    return f"{name}({', '.join(f'{k}={show(v)}' for k, v in hyperparams.items())})"


def _hyperparams_key(hyperparams: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable identity for a set of hyperparameters (objects other than plain values by id)."""

    def key(v: Any) -> Any:
        plain = v is None or isinstance(v, (bool, numbers.Number, str))
        return repr(v) if plain else id(v)

    return tuple(sorted((k, key(v)) for k, v in hyperparams.items()))


def _parse(what: str, spec: Any) -> tuple[str | None, dict[str, Any], Any]:
    """``(qualified name, hyperparams, transform-or-None)`` for one spec; ``what`` names it."""
    if is_transformation(spec):
        return None, {}, spec
    if isinstance(spec, str):
        name, hyperparams = spec, {}
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], Mapping):
        name, hyperparams = spec[0], dict(spec[1])
    else:
        raise TypeError(
            f"{what}: the spec must be a registry name ('adam'), a pair "
            f"(name, hyperparameters) such as ('adam', {{'learning_rate': 1e-2}}), or a "
            f"gradient transformation; got {spec!r}"
        )
    library, base = resolve_name(name)
    return f"{library}:{base}", hyperparams, None


def _lane(name: str | None, hyperparams: dict[str, Any], transform: Any, labels: list[str]) -> Lane:
    if name is None:  # a given transformation (``_parse`` names only the others)
        return Lane(transform, f"{type(transform).__name__} (given)", labels)
    return Lane(make_optimizer(name, hyperparams), _describe(name, hyperparams), labels)


def plan(
    optimizers: Mapping[str, OptimizerSpec],
    twins: bool = True,
    reference: Mapping[str, OptimizerSpec] | None = None,
) -> tuple[list[list[Lane]], list[str]]:
    """Group the optimizers into scans of one or two lanes, and collect notes.

    An optimizer with a ``reference`` runs beside it. A named one runs beside its twin from
    the other library (if ``twins`` and the twin can be built); a pair requested twice (``adam``
    and ``optax:adam`` with the same hyperparameters) runs once. The rest run alone, identical
    requests once.
    """
    reference = dict(reference or {})
    for label in reference:
        if label not in optimizers:
            raise ValueError(
                f"`reference` names {label!r}, which is not one of the optimizers' labels: "
                f"{', '.join(map(repr, optimizers))}"
            )
    groups: dict[Any, list[Lane]] = {}
    notes: list[str] = []
    for label, spec in optimizers.items():
        if not isinstance(label, str) or not label:
            raise TypeError(f"optimizer labels must be non-empty strings, got {label!r}")
        name, hyperparams, transform = _parse(f"optimizer {label!r}", spec)
        if label in reference:
            ref = _parse(f"reference of {label!r}", reference[label])
            own, other = _lane(name, hyperparams, transform, [label]), _lane(*ref, [])
            groups[("reference", label)] = [own, other]
            notes.append(f"{label!r} is checked against its reference {other.spec}")
            continue
        if name is None:  # a given transformation (``_parse`` names only the others)
            groups[("given", label)] = [_lane(None, {}, transform, [label])]
            continue
        base = name.partition(":")[2]
        key = (base, _hyperparams_key(hyperparams))
        pair_key, single_key = ("pair", *key), ("single", name, *key)
        first = name.startswith("fdl:")  # fdl's lane first in a pair
        pair = groups.get(pair_key)
        if pair is not None:
            pair[0 if first else 1].labels.append(label)
            continue
        single = groups.get(single_key)
        if single is not None:
            single[0].labels.append(label)
            continue
        own = _lane(name, hyperparams, None, [label])
        other_name = twin_name(name) if twins else None
        twin = None
        if other_name is not None:
            try:
                twin = _lane(other_name, hyperparams, None, [])
            except (TypeError, ValueError) as error:
                notes.append(f"no twin check for {label!r}: {other_name} could not be built ({error})")
        if twin is None:
            groups[single_key] = [own]
        else:
            groups[pair_key] = [own, twin] if first else [twin, own]
    return list(groups.values()), notes


def _check_problem(problem: Any, batch_size: Any) -> Problem:
    if isinstance(problem, str):
        problem = get_problem(problem)
    elif not isinstance(problem, Problem):
        raise TypeError(
            f"`problem` must be a name ({', '.join(problem_names())}) or a fdl.problems.Problem, "
            f"got {problem!r}"
        )
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
        if problem.data is None:
            with_data = [name for name in problem_names() if get_problem(name).data is not None]
            raise ValueError(
                f"`batch_size` needs a problem with data; `{problem.name}` has none (its loss is "
                f"a fixed function). Problems with data: {', '.join(with_data)}"
            )
    return problem


def compare(
    optimizers: Mapping[str, OptimizerSpec],
    problem: str | Problem,
    steps: int = 500,
    *,
    seed: int = 0,
    threshold: float | None = None,
    twins: bool = True,
    reference: Mapping[str, OptimizerSpec] | None = None,
    batch_size: int | None = None,
) -> Comparison:
    r"""Run every optimizer on ``problem`` from the same start and collect the trajectories.

    Args:
      optimizers: label -> spec, where a spec is a registry name (``"adam"``, ``"fdl:adam"``,
        ``"optax:adam"``; :func:`fdl.optim.optimizer_names`), a pair
        ``(name, {"learning_rate": 1e-2, ...})``, or a ready gradient transformation (fdl's,
        optax's, or any ``init``/``update`` pair).
      problem: a name from :func:`fdl.problems.problem_names` or a
        :class:`~fdl.problems.Problem`.
      steps: the number of steps :math:`T`, a positive int.
      seed: seeds the key given to ``problem.init_params`` (the 2-D problems ignore it) and,
        with ``batch_size``, the order of the examples.
      threshold: report the first step at which the loss is ``<= threshold``.
      twins: run each named optimizer's twin from the other library and report the
        divergence (on by default).
      reference: label -> spec: run that optimizer beside the reference instead of its twin,
        and report the divergence from it. Any optimizer can have one, a transformation of
        your own included (``reference={"mine": ("optax:adam", {"learning_rate": 1e-2})}``).
      batch_size: take each step's gradient on a minibatch of this many examples (a problem
        with ``data``), the batch a pure function of the step (:func:`~fdl.compare.minibatches`),
        the same for every optimizer. The recorded loss stays the full loss. ``None``: full
        batch.

    Returns:
      A :class:`~fdl.compare.Comparison`; ``print`` it for a short summary.

    Raises:
      ValueError: unknown optimizer or problem names (the message lists the valid ones),
        hyperparameter values an fdl factory rejects, ``steps`` or ``batch_size`` not a
        positive int, a ``batch_size`` for a problem without data or larger than its data, a
        non-finite ``threshold``, a ``reference`` for a label that is not in ``optimizers``.
      TypeError: a hyperparameter name the factory does not take (the message lists the
        valid ones), or a spec of the wrong kind.

    >>> result = compare({"gd": ("optax:sgd", {"learning_rate": 0.01})}, "quadratic", steps=3,
    ...                  twins=False)
    >>> [round(v, 3) for v in result.runs["gd"].losses.tolist()]  # y is 0 after one step
    [58.0, 7.841, 7.685, 7.532]
    """
    steps = check_positive_int("steps", steps)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an integer, got {seed!r}")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold)
    ):
        raise ValueError(f"`threshold` must be a finite number or None, got {threshold!r}")
    problem = _check_problem(problem, batch_size)
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise ValueError(
            "`optimizers` must be a non-empty mapping label -> spec, e.g. "
            f"{{'adam': ('adam', {{'learning_rate': 1e-2}})}}, got {optimizers!r}"
        )
    if reference is not None and not isinstance(reference, Mapping):
        raise TypeError(
            f"`reference` must be a mapping label -> spec, e.g. {{'mine': 'optax:adam'}}, got {reference!r}"
        )
    groups, notes = plan(optimizers, twins, reference)

    key = jax.random.key(int(seed))
    params = problem.init_params(key)
    minibatch = {}
    if batch_size is not None:
        data_key = jax.random.fold_in(key, 1)
        minibatch = {
            "batch_loss": problem.batch_loss,
            "batch_at": minibatches(problem.data, batch_size, data_key),
        }
    runs: dict[str, Run] = {}
    for lanes in groups:
        transforms = [lane.transform for lane in lanes]
        result = simulate(transforms, problem.loss, params, steps, record_path=problem.is_2d, **minibatch)
        for i, lane in enumerate(lanes):
            twin = lanes[1 - i].spec if len(lanes) == 2 else None
            for label in lane.labels:
                runs[label] = Run(
                    label=label,
                    spec=lane.spec,
                    losses=result.losses[i],
                    path=None if result.paths is None else result.paths[i],
                    divergence=result.divergence,
                    twin=twin,
                )
    return Comparison(
        problem=problem,
        steps=steps,
        seed=int(seed),
        threshold=None if threshold is None else float(threshold),
        runs={label: runs[label] for label in optimizers},
        notes=tuple(notes),
        batch_size=batch_size,
    )
