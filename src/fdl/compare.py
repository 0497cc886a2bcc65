r"""Compare optimizers on one problem, and fdl's optimizers against optax's, step by step.

Which optimizer suits a problem is best seen by running several from the same point and
watching them: the path each one draws on a 2-D contour plot, and the loss it reaches step by
step. :func:`compare` does that in one call:

.. code-block:: python

    from fdl.compare import compare

    result = compare(
        {"sgd": ("sgd", {"learning_rate": 1e-3}),
         "adam": ("adam", {"learning_rate": 1e-2})},
        "rosenbrock", steps=1000, threshold=1e-3)
    print(result.table())
    result.save("out/")          # table.md/csv/json, curves.csv, contour.png, losses.png, ...

Every optimizer starts from the **same** parameters (``problem.init_params(key(seed))``) and
takes full gradient steps,

.. math::

    g_t = \nabla L(\theta_t), \qquad (u_t, s_{t+1}) = \text{update}(g_t, s_t, \theta_t), \qquad
    \theta_{t+1} = \theta_t + u_t, \qquad t = 0, \dots, T - 1,

and the whole trajectory of :math:`T` = ``steps`` steps is one ``jax.lax.scan``, compiled into
one XLA call. The loss curve holds :math:`L(\theta_0), \dots, L(\theta_T)` (``steps + 1``
values; the first is the common starting loss).

**The twin check.** An optimizer named from the registry that both libraries have
(``"adam"``, ``"fdl:adam"`` or ``"optax:adam"``) is automatically run again with the other
library's version and the same hyperparameters, inside the same compiled scan, and its
divergence is reported per step:

.. math::

    d_t = \max_i \bigl|\theta^{\text{fdl}}_{t,i} - \theta^{\text{optax}}_{t,i}\bigr| ,

the largest difference over every parameter entry. fdl's optimizers are written to follow
optax's order of floating-point operations, so :math:`d_t` stays at the level of float32
rounding; a bug shows up as a divergence that grows. Both trajectories apply their updates with
:func:`fdl.optim.base.apply_updates`, so :math:`d_t` measures the update rules alone.

**Registry names.** ``"fdl:NAME"`` or a bare ``"NAME"`` is fdl's optimizer (imported lazily from
its ``fdl.optim`` module); ``"optax:NAME"`` is optax's. Hyperparameters are the factories' own
keyword arguments (optax's names: ``learning_rate``, ``b1``, ``momentum``...); an unknown one is a
``TypeError`` listing the valid names, and fdl's factories reject invalid values (a negative
learning rate) with a ``ValueError`` naming the argument.

**dtype promotion.** optax raises ``b1`` to an int32 step count, which JAX's strict dtype
promotion rejects, so transformations not built by fdl (optax's, or any object from another
library) are traced under standard promotion, scoped to their own ``init`` and ``update``.
fdl's run under the caller's setting, so a promotion bug in fdl still surfaces.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import difflib
import importlib
import inspect
import io
import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fdl._checks import check_positive_int
from fdl.optim.base import apply_updates
from fdl.problems import Problem, get_problem, problem_names

__all__ = [
    "FDL_OPTIMIZERS",
    "LIBRARIES",
    "OPTAX_OPTIMIZERS",
    "Comparison",
    "OptimizerSpec",
    "Run",
    "SummaryRow",
    "Trajectories",
    "compare",
    "get_optimizer",
    "make_optimizer",
    "optimizer_names",
    "simulate",
]

PyTree = Any
Transformation = Any  # anything with optax's init/update pair
OptimizerSpec = str | tuple[str, Mapping[str, Any]] | Transformation
"""A registry name, a ``(name, hyperparameters)`` pair, or a ready gradient transformation."""

LIBRARIES = ("fdl", "optax")

FDL_OPTIMIZERS: dict[str, str] = {
    "sgd": "fdl.optim.momentum",
    "adam": "fdl.optim.adam",
    "adamw": "fdl.optim.adam",
    "nadam": "fdl.optim.adam",
    "nadamw": "fdl.optim.adam",
    "amsgrad": "fdl.optim.adam",
    "adamax": "fdl.optim.adam",
    "rmsprop": "fdl.optim.rms",
    "adagrad": "fdl.optim.adagrad",
    "adadelta": "fdl.optim.adadelta",
    "lion": "fdl.optim.lion",
}
"""fdl's optimizers by name, each with the module it is imported from (lazily, when used)."""

OPTAX_OPTIMIZERS: tuple[str, ...] = (
    *FDL_OPTIMIZERS,
    "adabelief",
    "adafactor",
    "adamaxw",
    "adan",
    "fromage",
    "lamb",
    "lars",
    "novograd",
    "radam",
    "sm3",
    "yogi",
)
"""optax's optimizers that :func:`compare` offers: the ones fdl also has, then a few more.

Left out: those that need extra arguments to ``update`` (``polyak_sgd``, ``lbfgs``) or a random
key (``noisy_sgd``).
"""

_THRESHOLD_LABEL = "steps to loss <= {threshold:g}"


# -------------------------------------------------------------------------------- the registry


def optimizer_names(library: str | None = None) -> list[str]:
    """The qualified registry names, ``"fdl:adam"``, ..., ``"optax:adam"``, ...

    Args:
      library: ``"fdl"`` or ``"optax"`` for one library's names, ``None`` for both.

    >>> optimizer_names("fdl")[:2]
    ['fdl:sgd', 'fdl:adam']
    """
    if library is not None and library not in LIBRARIES:
        raise ValueError(f"`library` must be one of {LIBRARIES} or None, got {library!r}")
    names = []
    if library in (None, "fdl"):
        names += [f"fdl:{name}" for name in FDL_OPTIMIZERS]
    if library in (None, "optax"):
        names += [f"optax:{name}" for name in OPTAX_OPTIMIZERS]
    return names


def _unknown_optimizer(name: Any) -> ValueError:
    close = difflib.get_close_matches(str(name), [*FDL_OPTIMIZERS, *optimizer_names()], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(
        f"unknown optimizer {name!r}{hint}; valid names: NAME or fdl:NAME for NAME in "
        f"{{{', '.join(FDL_OPTIMIZERS)}}}, optax:NAME for NAME in {{{', '.join(OPTAX_OPTIMIZERS)}}}"
    )


def _split_name(name: Any) -> tuple[str, str]:
    """``"optax:adam"`` -> ``("optax", "adam")``; a bare name is fdl's."""
    if not isinstance(name, str):
        raise _unknown_optimizer(name)
    library, sep, base = name.partition(":")
    if not sep:
        library, base = "fdl", name
    registered = FDL_OPTIMIZERS if library == "fdl" else OPTAX_OPTIMIZERS
    if library not in LIBRARIES or base not in registered:
        raise _unknown_optimizer(name)
    return library, base


def get_optimizer(name: str) -> Callable[..., Transformation]:
    """The factory registered as ``name`` (``"adam"``, ``"fdl:adam"``, ``"optax:adam"``).

    fdl's factories are imported from their ``fdl.optim`` module on first use.

    Raises:
      ValueError: an unknown name (the message lists the valid ones), or an fdl optimizer whose
        module is not importable.

    >>> get_optimizer("optax:sgd").__name__
    'sgd'
    """
    library, base = _split_name(name)
    if library == "optax":
        import optax

        return getattr(optax, base)
    module_name = FDL_OPTIMIZERS[base]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise ValueError(
            f"fdl:{base} is not available: its module {module_name} is missing; "
            f"use optax:{base} instead"
        ) from None
    factory = getattr(module, base, None)
    if factory is None:
        raise ValueError(
            f"fdl:{base} is not available: {module_name} defines no `{base}`; "
            f"use optax:{base} instead"
        )
    return factory


def make_optimizer(name: str, hyperparams: Mapping[str, Any] | None = None) -> Transformation:
    """Build the optimizer registered as ``name`` with keyword ``hyperparams``.

    Raises:
      ValueError: an unknown name, or a value the factory rejects (the message says which
        optimizer, then the factory's own message naming the argument).
      TypeError: an argument name the factory does not take, or a missing required one; the
        message lists the valid argument names.

    >>> opt = make_optimizer("optax:sgd", {"learning_rate": 0.1})
    >>> sorted(opt._fields)
    ['init', 'update']
    """
    library, base = _split_name(name)
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
    except ValueError as error:
        raise ValueError(f"{qualified}: {error}") from error
    except TypeError as error:
        raise TypeError(f"{qualified}: {error} (valid arguments: {valid})") from error


# ----------------------------------------------------------------------------- the trajectories


class Trajectories(NamedTuple):
    """What :func:`simulate` returns, as NumPy arrays (``k`` optimizers, ``T`` steps).

    Attributes:
      losses: ``(k, T + 1)``, :math:`L(\\theta_0), \\dots, L(\\theta_T)` for each optimizer.
      paths: ``(k, T + 1, P)``, every parameter vector (flattened), if ``record_path``.
      divergence: ``(T + 1,)``, :math:`\\max_i |\\theta_{t,i}^{(0)} - \\theta_{t,i}^{(1)}|`,
        when ``k == 2``.
    """

    losses: np.ndarray
    paths: np.ndarray | None
    divergence: np.ndarray | None


def _is_transformation(value: Any) -> bool:
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def _promotion(transform: Transformation) -> contextlib.AbstractContextManager[Any]:
    """Standard dtype promotion for transformations not built by fdl (see the module doc)."""
    module = type(transform).__module__
    if module == "fdl" or module.startswith("fdl."):
        return contextlib.nullcontext()
    return jax.numpy_dtype_promotion("standard")


def _max_abs_difference(a: PyTree, b: PyTree) -> jax.Array:
    leaves = [
        jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    ]
    return jnp.max(jnp.stack(leaves))


def simulate(
    transforms: Sequence[Transformation],
    loss: Callable[[PyTree], jax.Array],
    params: PyTree,
    steps: int,
    *,
    record_path: bool = False,
) -> Trajectories:
    r"""Run ``k`` optimizers side by side from ``params`` for ``steps`` full-gradient steps.

    All ``k`` trajectories advance together inside **one** ``jax.lax.scan``, compiled into one
    XLA call. With two optimizers, the per-step divergence
    :math:`d_t = \max_i |\theta^{(0)}_{t,i} - \theta^{(1)}_{t,i}|` is computed in the same call.

    Args:
      transforms: the optimizers (anything with optax's ``init``/``update``).
      loss: ``loss(params) -> scalar``.
      params: the common starting parameters :math:`\theta_0`.
      steps: the number of steps :math:`T \ge 1`.
      record_path: also return every parameter vector (for 2-D plots).

    Returns:
      :class:`Trajectories` of NumPy arrays.

    >>> import jax.numpy as jnp, optax
    >>> out = simulate([optax.sgd(0.25)], lambda p: jnp.sum(p**2), jnp.asarray([1.0]), 2)
    >>> out.losses.tolist()  # theta halves every step: 1, 1/2, 1/4
    [[1.0, 0.25, 0.0625]]
    """
    check_positive_int("steps", steps)
    transforms = tuple(transforms)
    if not transforms:
        raise ValueError("simulate needs at least one transformation, got none")
    for i, transform in enumerate(transforms):
        if not _is_transformation(transform):
            raise TypeError(
                f"transforms[{i}] must be a gradient transformation with init and update, "
                f"got {transform!r}"
            )
    value_and_grad = jax.value_and_grad(loss)

    def record(all_params: tuple[PyTree, ...]) -> dict[str, jax.Array]:
        out = {}
        if record_path:
            out["path"] = jnp.stack([ravel_pytree(p)[0].astype(jnp.float32) for p in all_params])
        if len(all_params) == 2:
            out["divergence"] = _max_abs_difference(*all_params)
        return out

    def step(carry, _):
        all_params, states = carry
        values, new_params, new_states = [], [], []
        for transform, p, s in zip(transforms, all_params, states, strict=True):
            value, grads = value_and_grad(p)
            with _promotion(transform):
                updates, s = transform.update(grads, s, p)
            values.append(value)
            new_params.append(apply_updates(p, updates))
            new_states.append(s)
        out = {"loss": jnp.stack(values), **record(all_params)}  # at theta_t, before the step
        return (tuple(new_params), tuple(new_states)), out

    def run(params: PyTree) -> dict[str, jax.Array]:
        states = []
        for transform in transforms:
            with _promotion(transform):
                states.append(transform.init(params))
        carry = (tuple(params for _ in transforms), tuple(states))
        (last, _), outs = jax.lax.scan(step, carry, None, length=steps)
        final = {"loss": jnp.stack([loss(p) for p in last]), **record(last)}  # theta_T
        return jax.tree.map(lambda seq, x: jnp.concatenate([seq, x[None]]), outs, final)

    outs = jax.device_get(jax.jit(run)(params))
    paths = outs.get("path")
    return Trajectories(
        losses=np.asarray(outs["loss"]).T,  # (T + 1, k) -> (k, T + 1)
        paths=None if paths is None else np.asarray(paths).transpose(1, 0, 2),  # (k, T + 1, P)
        divergence=None if "divergence" not in outs else np.asarray(outs["divergence"]),
    )


# --------------------------------------------------------------------------------- the result


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One optimizer's trajectory.

    Attributes:
      label: the caller's name for it.
      spec: what ran, e.g. ``"fdl:adam(learning_rate=0.01)"``.
      losses: ``(steps + 1,)`` losses :math:`L(\\theta_0), \\dots, L(\\theta_T)`.
      path: ``(steps + 1, 2)`` points :math:`\\theta_t` for 2-D problems, else ``None``.
      divergence: ``(steps + 1,)`` per-step :math:`\\max_i |\\theta^{\\text{fdl}}_{t,i} -
        \\theta^{\\text{optax}}_{t,i}|` against ``twin``, or ``None`` without a twin.
      twin: the spec of the other library's version it was checked against, or ``None``.
    """

    label: str
    spec: str
    losses: np.ndarray
    path: np.ndarray | None = None
    divergence: np.ndarray | None = None
    twin: str | None = None


class SummaryRow(NamedTuple):
    """One line of :meth:`Comparison.summary` (``None``: does not apply / never happened)."""

    optimizer: str
    spec: str
    final_loss: float
    best_loss: float
    best_step: int | None
    steps_to_threshold: int | None
    max_divergence: float | None
    twin: str | None
    nonfinite_step: int | None


def _summarize(run: Run, threshold: float | None) -> SummaryRow:
    losses = np.asarray(run.losses, np.float64)
    finite = np.isfinite(losses)
    nonfinite_step = None if finite.all() else int(np.argmin(finite))
    has_value = ~np.isnan(losses)
    best_step = int(np.nanargmin(losses)) if has_value.any() else None
    reached = None
    if threshold is not None:
        below = losses <= threshold  # NaN compares False: never counts as reached
        reached = int(np.argmax(below)) if below.any() else None
    divergence = None
    if run.divergence is not None:
        divergence = float(np.max(np.asarray(run.divergence, np.float64)))
    return SummaryRow(
        optimizer=run.label,
        spec=run.spec,
        final_loss=float(losses[-1]),
        best_loss=float(losses[best_step]) if best_step is not None else math.nan,
        best_step=best_step,
        steps_to_threshold=reached,
        max_divergence=divergence,
        twin=run.twin,
        nonfinite_step=nonfinite_step,
    )


def _encode(values: Iterable[Any]) -> list[Any]:
    """Floats for JSON; NaN and infinities as ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    out = []
    for v in values:
        if isinstance(v, (list, np.ndarray)):
            out.append(_encode(v))
        else:
            v = float(v)
            if math.isnan(v):
                out.append("NaN")
            elif math.isinf(v):
                out.append("Infinity" if v > 0 else "-Infinity")
            else:
                out.append(v)
    return out


def _decode(values: Iterable[Any]) -> np.ndarray:
    def number(v: Any) -> Any:
        if isinstance(v, list):
            return [number(x) for x in v]
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v)

    return np.asarray([number(v) for v in values], np.float32)


def _scalar(value: Any) -> Any:
    """A summary value as JSON/CSV sees it (non-finite floats as strings in JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return _encode([value])[0]
    return value


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


@dataclasses.dataclass(frozen=True, eq=False)
class Comparison:
    """The result of :func:`compare`: every trajectory, with tables, exports and plots.

    Attributes:
      problem: the :class:`~fdl.problems.Problem` that was solved.
      steps, seed, threshold: the arguments of :func:`compare`.
      runs: the :class:`Run` of every optimizer, by label, in the order given.
      notes: remarks on the run (twins that could not be built, ...).
    """

    problem: Problem
    steps: int
    seed: int
    threshold: float | None
    runs: dict[str, Run]
    notes: tuple[str, ...] = ()

    # ---- tables

    def summary(self) -> list[SummaryRow]:
        """One :class:`SummaryRow` per optimizer: final and best loss, steps to the threshold
        (the first step :math:`t` with :math:`L(\\theta_t) \\le` threshold), divergence from
        the twin, and the first step with a non-finite loss."""
        return [_summarize(run, self.threshold) for run in self.runs.values()]

    def table(self) -> str:
        """The summary as a Markdown table, with the problem and any notes below it."""
        rows = self.summary()
        header = ["optimizer", "spec", "final loss", "best loss (step)"]
        if self.threshold is not None:
            header.append(_THRESHOLD_LABEL.format(threshold=self.threshold))
        header.append("max \\|fdl − optax\\|")
        show_nonfinite = any(row.nonfinite_step is not None for row in rows)
        if show_nonfinite:
            header.append("non-finite from step")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            cells = [
                row.optimizer.replace("|", "\\|"),
                row.spec.replace("|", "\\|"),
                _fmt(row.final_loss),
                f"{_fmt(row.best_loss)} ({_fmt(row.best_step, 'd')})",
            ]
            if self.threshold is not None:
                reached = row.steps_to_threshold
                cells.append("not reached" if reached is None else str(reached))
            cells.append(_fmt(row.max_divergence, ".2e"))
            if show_nonfinite:
                cells.append(_fmt(row.nonfinite_step, "d"))
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Problem `{self.problem.name}`: {self.problem.description}; "
                  f"{self.steps} steps, seed {self.seed}."]
        if not self.problem.bounded_below:
            lines.append(
                f"Note: `{self.problem.name}` has no minimum and its loss decreases without "
                "bound; a lower loss means the optimizer escaped further, not that it converged."
            )
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def summary_csv(self) -> str:
        """The summary as CSV (one row per optimizer; empty cells for ``None``)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SummaryRow._fields)
        for row in self.summary():
            writer.writerow(
                ["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row]
            )
        return buffer.getvalue()

    def curves_csv(self) -> str:
        """Every step of every run, long format: ``optimizer, step, loss[, x, y], divergence``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        header = ["optimizer", "step", "loss"]
        if self.problem.is_2d:
            header += ["x", "y"]
        header.append("divergence")
        writer.writerow(header)
        for run in self.runs.values():
            for t, value in enumerate(run.losses):
                line = [run.label, t, repr(float(value))]
                if self.problem.is_2d:
                    line += [repr(float(run.path[t, 0])), repr(float(run.path[t, 1]))]
                line.append("" if run.divergence is None else repr(float(run.divergence[t])))
                writer.writerow(line)
        return buffer.getvalue()

    # ---- JSON

    def to_json(self) -> str:
        """Everything (problem, settings, summary, every curve and path) as strict JSON.

        Non-finite numbers are written as the strings ``"NaN"``, ``"Infinity"`` and
        ``"-Infinity"``; :meth:`from_json` reads them back.
        """
        problem = self.problem
        document = {
            "format": "fdl.compare/1",
            "problem": {
                "name": problem.name,
                "description": problem.description,
                "min_value": problem.min_value,
                "bounded_below": problem.bounded_below,
                "start": problem.start,
                "window": problem.window,
                "minima": problem.minima,
            },
            "steps": self.steps,
            "seed": self.seed,
            "threshold": self.threshold,
            "notes": list(self.notes),
            "summary": [
                {k: _scalar(v) for k, v in row._asdict().items()} for row in self.summary()
            ],
            "runs": [
                {
                    "label": run.label,
                    "spec": run.spec,
                    "twin": run.twin,
                    "losses": _encode(run.losses),
                    "path": None if run.path is None else _encode(run.path),
                    "divergence": None if run.divergence is None else _encode(run.divergence),
                }
                for run in self.runs.values()
            ],
        }
        return json.dumps(document, indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, problem: Problem | None = None) -> Comparison:
        """Read back what :meth:`to_json` wrote.

        Args:
          text: the JSON text.
          problem: the problem, for one that :func:`~fdl.problems.get_problem` does not know
            (a custom one); by default it is looked up by its name.
        """
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("format") != "fdl.compare/1":
            raise ValueError(
                "not an fdl.compare result: expected a JSON object with format 'fdl.compare/1'"
            )
        if problem is None:
            problem = get_problem(document["problem"]["name"])
        runs = {}
        for item in document["runs"]:
            runs[item["label"]] = Run(
                label=item["label"],
                spec=item["spec"],
                losses=_decode(item["losses"]),
                path=None if item["path"] is None else _decode(item["path"]),
                divergence=None if item["divergence"] is None else _decode(item["divergence"]),
                twin=item["twin"],
            )
        return cls(
            problem=problem,
            steps=document["steps"],
            seed=document["seed"],
            threshold=document["threshold"],
            runs=runs,
            notes=tuple(document["notes"]),
        )

    # ---- plots

    def plot_contour(self, path: str | Path) -> Path:
        """Save a PNG: the problem's contour lines with every optimizer's path (2-D only).

        Levels are log-spaced in :math:`f - f^*` (:math:`f^*` the known minimum, else the
        lowest value on the grid), so both the steep walls and the flat valley floor show.
        A function with no minimum (the saddle) gets evenly spaced levels instead. The start
        is a black circle, the known minima red stars, each path's end a dot.
        """
        problem = self.problem
        if not problem.is_2d:
            raise ValueError(
                f"plot_contour needs a 2-D problem; `{problem.name}` has a parameter tree, "
                "use plot_losses"
            )
        from matplotlib.colors import LogNorm
        from matplotlib.ticker import LogLocator

        (x_lo, x_hi), (y_lo, y_hi) = problem.window
        grid_x, grid_y = np.meshgrid(np.linspace(x_lo, x_hi, 300), np.linspace(y_lo, y_hi, 300))
        values = np.asarray(
            problem.function(jnp.asarray(grid_x, jnp.float32), jnp.asarray(grid_y, jnp.float32)),
            np.float64,
        )
        fig = _figure((7.0, 6.0))
        ax = fig.add_subplot()
        if problem.bounded_below:
            floor = problem.min_value if problem.min_value is not None else float(np.min(values))
            gap = values - floor
            top = float(np.max(gap))
            low = max(float(np.min(gap[gap > 0])), top * 1e-9)
            levels = np.logspace(math.log10(low), math.log10(top), 30)
            gap = np.clip(gap, low, top)
            filled = ax.contourf(
                grid_x, grid_y, gap, levels=levels, norm=LogNorm(), cmap="Greys_r", alpha=0.45
            )
            ax.contour(
                grid_x, grid_y, gap, levels=levels, norm=LogNorm(), colors="0.45", linewidths=0.4
            )
            label = "f − f*" if problem.min_value is not None else "f − min on grid"
            fig.colorbar(filled, ax=ax, label=f"{label} (log scale)", ticks=LogLocator())
        else:
            levels = np.linspace(float(np.min(values)), float(np.max(values)), 25)
            filled = ax.contourf(grid_x, grid_y, values, levels=levels, cmap="RdBu_r", alpha=0.45)
            ax.contour(grid_x, grid_y, values, levels=levels, colors="0.45", linewidths=0.4)
            fig.colorbar(filled, ax=ax, label="f (no minimum: linear levels)")
        for i, run in enumerate(self.runs.values()):
            points = np.where(np.isfinite(run.path), run.path, np.nan)
            color = f"C{i % 10}"
            ax.plot(points[:, 0], points[:, 1], "-", color=color, lw=1.4, label=run.label)
            ax.plot(points[-1, 0], points[-1, 1], "o", color=color, ms=5)
        ax.plot(*problem.start, "o", color="black", ms=8, label="start")
        if problem.minima:
            mx, my = zip(*problem.minima, strict=True)
            ax.plot(mx, my, "*", color="red", ms=14, mec="black", label="minimum")
        ax.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi), xlabel="x", ylabel="y")
        ax.set_title(f"{problem.name}: {self.steps} steps from {problem.start}")
        ax.legend(loc="best", fontsize=8, framealpha=0.85)
        return _save_png(fig, path)

    def plot_losses(self, path: str | Path) -> Path:
        """Save a PNG of the loss against the step, on a log scale.

        With a known minimum :math:`f^*` it plots :math:`L(\\theta_t) - f^*` (a curve that stops
        has reached :math:`f^*` exactly in float32); otherwise the loss itself, on a log scale
        if every loss is positive and on a *symlog* scale (linear within
        :math:`\\pm 10^{-3}`, logarithmic outside) if some are not, as on the saddle.
        """
        problem = self.problem
        curves = {label: np.asarray(run.losses, np.float64) for label, run in self.runs.items()}
        curves = {label: np.where(np.isfinite(c), c, np.nan) for label, c in curves.items()}
        fig = _figure((7.5, 4.5))
        ax = fig.add_subplot()
        if problem.min_value is not None:
            curves = {label: c - problem.min_value for label, c in curves.items()}
            curves = {label: np.where(c > 0, c, np.nan) for label, c in curves.items()}
            ax.set_yscale("log")
            ylabel = f"loss − f*  (f* = {problem.min_value:g})"
        elif all(np.all(c[~np.isnan(c)] > 0) for c in curves.values()):
            ax.set_yscale("log")
            ylabel = "loss"
        else:
            ax.set_yscale("symlog", linthresh=1e-3)
            ylabel = "loss (symlog scale)"
        for i, (label, curve) in enumerate(curves.items()):
            ax.plot(np.arange(curve.size), curve, color=f"C{i % 10}", lw=1.4, label=label)
        if self.threshold is not None:
            shift = problem.min_value or 0.0
            ax.axhline(
                self.threshold - shift, color="black", ls=":", lw=1,
                label=f"threshold {self.threshold:g}",
            )
        title = f"{problem.name}: loss per step"
        if not problem.bounded_below:
            title += " (no minimum: lower = escaped further)"
        ax.set(xlabel="step", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        return _save_png(fig, path)

    def plot_divergence(self, path: str | Path) -> Path:
        """Save a PNG of each twin pair's per-step :math:`\\max_i |\\theta^{\\text{fdl}}_{t,i}
        - \\theta^{\\text{optax}}_{t,i}|`, on a symlog scale (linear within
        :math:`\\pm 10^{-9}`, so exact agreement shows as 0)."""
        pairs = {}
        for run in self.runs.values():
            if run.divergence is not None:
                pairs.setdefault(frozenset((run.spec, run.twin)), run)
        if not pairs:
            raise ValueError("plot_divergence: no optimizer here has a twin in the other library")
        fig = _figure((7.5, 4.5))
        ax = fig.add_subplot()
        for i, run in enumerate(pairs.values()):
            steps = np.arange(run.divergence.size)
            label = f"{run.label} vs {run.twin}"
            ax.plot(steps, run.divergence, color=f"C{i % 10}", lw=1.2, label=label)
        ax.set_yscale("symlog", linthresh=1e-9)
        largest = max(float(np.nanmax(run.divergence, initial=0.0)) for run in pairs.values())
        ax.set_ylim(0.0, max(10.0 * largest, 1e-6))  # a distance: nothing below 0
        title = f"{self.problem.name}: fdl vs optax"
        ax.set(xlabel="step", ylabel="max |θ_fdl − θ_optax|", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        return _save_png(fig, path)

    # ---- everything at once

    def save(self, directory: str | Path) -> list[Path]:
        """Write every export into ``directory`` (created if needed), each file atomically.

        Files: ``table.md`` (:meth:`table`), ``table.csv`` (:meth:`summary_csv`),
        ``table.json`` (:meth:`to_json`, everything), ``curves.csv`` (:meth:`curves_csv`),
        ``losses.png``, and ``contour.png`` (2-D problems) and ``divergence.png`` (when some
        optimizer has a twin).

        Returns:
          The paths written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in (
            ("table.md", self.table()),
            ("table.csv", self.summary_csv()),
            ("table.json", self.to_json()),
            ("curves.csv", self.curves_csv()),
        ):
            _write_atomic(directory / name, text.encode())
            written.append(directory / name)
        written.append(self.plot_losses(directory / "losses.png"))
        if self.problem.is_2d:
            written.append(self.plot_contour(directory / "contour.png"))
        if any(run.divergence is not None for run in self.runs.values()):
            written.append(self.plot_divergence(directory / "divergence.png"))
        return written


def _figure(size: tuple[float, float]) -> Any:
    """A matplotlib figure on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _write_atomic(path, buffer.getvalue())
    return path


# -------------------------------------------------------------------------------- compare


@dataclasses.dataclass
class _Lane:
    """One trajectory to compute: a transformation, what it is, and the labels that show it."""

    transform: Transformation
    spec: str
    labels: list[str]


def _describe(library: str, base: str, hyperparams: Mapping[str, Any]) -> str:
    def show(v: Any) -> str:
        return getattr(v, "__name__", None) or repr(v)

    args = ", ".join(f"{k}={show(v)}" for k, v in hyperparams.items())
    return f"{library}:{base}({args})"


def _hyperparams_key(hyperparams: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable identity for a set of hyperparameters (objects other than plain values by id)."""

    def key(v: Any) -> Any:
        plain = v is None or isinstance(v, (bool, numbers.Number, str))
        return repr(v) if plain else id(v)

    return tuple(sorted((k, key(v)) for k, v in hyperparams.items()))


def _parse_spec(label: Any, spec: Any) -> tuple[str | None, str | None, dict[str, Any], Any]:
    """``(library, base, hyperparams, transform-or-None)`` for one entry of ``optimizers``."""
    if not isinstance(label, str) or not label:
        raise TypeError(f"optimizer labels must be non-empty strings, got {label!r}")
    if _is_transformation(spec):
        return None, None, {}, spec
    if isinstance(spec, str):
        name, hyperparams = spec, {}
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], Mapping):
        name, hyperparams = spec[0], dict(spec[1])
    else:
        raise TypeError(
            f"optimizer {label!r}: the spec must be a registry name ('adam'), a pair "
            f"(name, hyperparameters) such as ('adam', {{'learning_rate': 1e-2}}), or a "
            f"gradient transformation; got {spec!r}"
        )
    library, base = _split_name(name)
    return library, base, hyperparams, None


def _plan(
    optimizers: Mapping[str, OptimizerSpec], twins: bool
) -> tuple[list[list[_Lane]], list[str]]:
    """Group the optimizers into scans: each named one with its twin, duplicates once."""
    groups: dict[Any, list[_Lane]] = {}
    notes: list[str] = []
    for label, spec in optimizers.items():
        library, base, hyperparams, transform = _parse_spec(label, spec)
        if transform is not None:
            spec = f"{type(transform).__name__} (given)"
            groups[("given", label)] = [_Lane(transform, spec, [label])]
            continue
        key = (base, _hyperparams_key(hyperparams))
        lane_index = LIBRARIES.index(library)
        pair = groups.get(("pair", *key))
        if pair is not None:
            pair[lane_index].labels.append(label)
            continue
        single = groups.get(("single", library, *key))
        if single is not None:
            single[0].labels.append(label)
            continue
        own = _Lane(
            make_optimizer(f"{library}:{base}", hyperparams),
            _describe(library, base, hyperparams),
            [label],
        )
        other = LIBRARIES[1 - lane_index]
        has_twin = base in FDL_OPTIMIZERS and base in OPTAX_OPTIMIZERS
        twin = None
        if twins and has_twin:
            try:
                twin_transform = make_optimizer(f"{other}:{base}", hyperparams)
                twin = _Lane(twin_transform, _describe(other, base, hyperparams), [])
            except (TypeError, ValueError) as error:
                notes.append(
                    f"no twin check for {label!r}: {other}:{base} could not be built ({error})"
                )
        if twin is None:
            groups[("single", library, *key)] = [own]
        else:
            groups[("pair", *key)] = [own, twin] if lane_index == 0 else [twin, own]
    return list(groups.values()), notes


def compare(
    optimizers: Mapping[str, OptimizerSpec],
    problem: str | Problem,
    steps: int = 500,
    *,
    seed: int = 0,
    threshold: float | None = None,
    twins: bool = True,
) -> Comparison:
    r"""Run every optimizer on ``problem`` from the same start and collect the trajectories.

    Args:
      optimizers: label -> spec, where a spec is a registry name (``"adam"``, ``"fdl:adam"``,
        ``"optax:adam"``), a pair ``(name, {"learning_rate": 1e-2, ...})``, or a ready gradient
        transformation (fdl's, optax's, or any ``init``/``update`` pair).
      problem: a name from :func:`fdl.problems.problem_names` or a
        :class:`~fdl.problems.Problem`.
      steps: the number of steps :math:`T`, a positive int.
      seed: seeds the key given to ``problem.init_params`` (the 2-D problems ignore it).
      threshold: report the first step at which the loss is ``<= threshold``.
      twins: run each named optimizer's twin from the other library and report the
        divergence (on by default).

    Returns:
      A :class:`Comparison`.

    Raises:
      ValueError: unknown optimizer or problem names (the message lists the valid ones),
        hyperparameter values an fdl factory rejects, ``steps`` not a positive int, a
        non-finite ``threshold``.
      TypeError: a hyperparameter name the factory does not take (the message lists the
        valid ones), or a spec of the wrong kind.

    >>> result = compare({"gd": ("optax:sgd", {"learning_rate": 0.01})}, "quadratic", steps=3,
    ...                  twins=False)
    >>> [round(v, 3) for v in result.runs["gd"].losses.tolist()]  # y is 0 after one step
    [58.0, 7.841, 7.685, 7.532]
    """
    check_positive_int("steps", steps)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an integer, got {seed!r}")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
    ):
        raise ValueError(f"`threshold` must be a finite number or None, got {threshold!r}")
    if isinstance(problem, str):
        problem = get_problem(problem)
    elif not isinstance(problem, Problem):
        raise TypeError(
            f"`problem` must be a name ({', '.join(problem_names())}) or a fdl.problems.Problem, "
            f"got {problem!r}"
        )
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise ValueError(
            "`optimizers` must be a non-empty mapping label -> spec, e.g. "
            f"{{'adam': ('adam', {{'learning_rate': 1e-2}})}}, got {optimizers!r}"
        )
    groups, notes = _plan(optimizers, twins)

    params = problem.init_params(jax.random.key(int(seed)))
    runs: dict[str, Run] = {}
    for lanes in groups:
        transforms = [lane.transform for lane in lanes]
        result = simulate(transforms, problem.loss, params, steps, record_path=problem.is_2d)
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
    )
