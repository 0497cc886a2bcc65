"""Shared pieces of the optimizer tests: four problems, a trajectory runner and a comparison.

Plain functions, imported by the test modules (``from tests.optim.helpers import ...``):

* :func:`make_problem` ``(name, dtype)`` builds one of :data:`PROBLEM_NAMES` from
  :mod:`fdl.problems` in a dtype, and :func:`start` gives its fixed starting parameters;
* :func:`run_trajectories` ``(pairs, steps, ...)`` runs fdl and optax optimizers side by side on
  several problems, each trajectory inside one ``jax.lax.scan``, all of them in one compiled
  program, and records the updates and the full optimizer state at every step;
* :func:`assert_same_trajectory` ``(fdl_record, optax_record, where)`` compares two records step
  by step, leaf by leaf, by key path (fdl's state classes are not optax's, so fields are matched
  by name and position, never by type), with the tolerances of :data:`TOLERANCES`;
* :func:`assert_same_tree` ``(fdl_tree, optax_tree, where)`` compares two trees the same way;
* :func:`minimize` ``(optimizer, problem, steps)`` runs one optimizer alone, returns its losses.

Programs compile with the suite's compiler settings (``tests/conftest.py``: XLA's older CPU code
generator, which compiles these many small kernels in about two thirds of the time; both
libraries' code is compiled together, so the choice favours neither).

A problem *is* its data, not a random draw of a test: every problem starts from one fixed point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fdl.optim.base as fdl_base
import fdl.tree
from fdl import problems
from fdl.problems import Problem

PyTree = Any

PROBLEM_NAMES = ("quadratic", "rosenbrock", "logistic", "mlp")

EXAMPLES = 64
"""The data problems use the first ``EXAMPLES`` digits of the training split as one fixed batch
(the whole split would make the 159 parity cases several times slower and test nothing more)."""

QUADRATIC_ANGLE = math.pi / 6
"""How far the test quadratic turns :func:`fdl.problems.quadratic`'s bowl off the axes."""


# -------------------------------------------------------------------------------------- problems


def _rotated_bowl() -> tuple[np.ndarray, np.ndarray]:
    """The test quadratic's rotation by :data:`QUADRATIC_ANGLE` (``(2, 2)``: parameters -> the
    bowl's axes) and ``fdl.problems``' quadratic start, :math:`u = (-4, 1)`, in parameter
    coordinates (``(2,)``), both float64 NumPy."""
    c, s = math.cos(QUADRATIC_ANGLE), math.sin(QUADRATIC_ANGLE)
    rotation = np.array([[c, -s], [s, c]])
    return rotation, rotation.T @ np.asarray(problems.get_problem("quadratic").start)


def _quadratic(dtype: Any) -> Problem:
    r""":func:`fdl.problems.quadratic` divided by 100, in coordinates rotated by 30 degrees.

    .. math:: L(p) = f(u_1, u_2) / 100, \quad u = R_{30^\circ}\, p, \quad
              f(x, y) = \tfrac12 (x^2 + 100\, y^2)

    The Hessian's eigenvalues are 0.01 and 1 (condition number 100): divided by 100, as
    :func:`_rosenbrock` is, one learning rate suits all four problems. The rotation puts the
    valley off the axes, so a per-coordinate method (Adam, RMSprop) cannot simply rescale it
    away. It starts where ``fdl.problems``' quadratic does, :math:`u = (-4, 1)`. The parameters
    are one bare array of shape (2,).
    """
    rotation, start_ = _rotated_bowl()
    rotation_ = jnp.asarray(rotation, dtype)

    def loss(p: jax.Array) -> jax.Array:
        u = rotation_ @ p  # (2,)
        return problems.quadratic(u[0], u[1]) / 100.0

    return Problem(
        "quadratic",
        "fdl.problems.quadratic / 100, rotated by 30 degrees",
        loss,
        lambda key: jnp.asarray(start_, dtype),
    )


def _rosenbrock(dtype: Any) -> Problem:
    r""":func:`fdl.problems.rosenbrock` divided by 100, from its classical start (-1.2, 1).

    .. math:: L(x, y) = \big((1 - x)^2 + 100\,(y - x^2)^2\big) / 100

    Dividing by 100 keeps the curved valley, the minimum (1, 1) and the conditioning, and lets one
    learning rate suit all four problems (undivided, plain SGD needs a step below 1.5e-3 at the
    start). The parameters are one bare array of shape (2,).
    """
    start_ = problems.get_problem("rosenbrock").start

    def loss(p: jax.Array) -> jax.Array:
        return problems.rosenbrock(p[0], p[1]) / 100.0

    return Problem(
        "rosenbrock", "fdl.problems.rosenbrock / 100", loss, lambda key: jnp.asarray(start_, dtype)
    )


def _data_batch(problem: Problem, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """The first :data:`EXAMPLES` examples of ``problem.data``, the images cast to ``dtype``."""
    x, labels = problem.data
    return jnp.asarray(x[:EXAMPLES], dtype), labels[:EXAMPLES]  # (EXAMPLES, 64), (EXAMPLES,)


def _cast(tree: PyTree, dtype: Any) -> PyTree:
    return jax.tree.map(lambda leaf: leaf.astype(dtype), tree)


def _logistic(dtype: Any) -> Problem:
    r""":func:`fdl.problems.logistic_digits` (L2 1e-3) on a fixed batch of :data:`EXAMPLES`.

    Parameters: ``{"w": (64, 10), "b": (10,)}``, starting at zero. Its L2 penalty is summed in
    float32 whatever the parameters' dtype, so the loss runs under standard promotion (a float32
    loss for bfloat16 parameters); the gradients keep the parameters' dtype.
    """
    digits = problems.get_problem("logistic_digits")
    batch = _data_batch(digits, dtype)
    params = _cast(digits.init_params(jax.random.key(0)), dtype)  # zeros: the key draws nothing

    def loss(p: PyTree) -> jax.Array:
        with jax.numpy_dtype_promotion("standard"):
            return digits.batch_loss(p, batch)

    description = f"fdl.problems.logistic_digits on the first {EXAMPLES} training images"
    return Problem("logistic", description, loss, lambda key: params)


def _mlp(dtype: Any) -> Problem:
    r""":func:`fdl.problems.mlp_digits` (64-32-10, ReLU) on a fixed batch of :data:`EXAMPLES`
    images scaled by a learned scalar :math:`\tau`.

    .. math:: L(\theta, \tau) = L_\text{mlp\_digits}(\theta;\ \tau X, y)

    Parameters: a nested dict with a scalar leaf, ``{"net": {"dense_0": {"w", "b"}, "dense_1":
    {"w", "b"}}, "temperature": ()}``, the weights drawn once with a fixed key, :math:`\tau = 1`.
    """
    digits = problems.get_problem("mlp_digits")
    x, labels = _data_batch(digits, dtype)
    params = {
        "net": _cast(digits.init_params(jax.random.key(1003)), dtype),
        "temperature": jnp.ones((), dtype),
    }

    def loss(p: PyTree) -> jax.Array:
        return digits.batch_loss(p["net"], (p["temperature"] * x, labels))

    description = f"fdl.problems.mlp_digits on the first {EXAMPLES} images, a learned input scale"
    return Problem("mlp", description, loss, lambda key: params)


def _complex_quadratic(dtype: Any) -> Problem:
    r"""The test quadratic over complex parameters: the bowl of :func:`_quadratic` in the real
    and in the imaginary part at once, its minimum moved to :math:`(1 + i)\,(1, -1)`.

    .. math:: L(z) = \tfrac{1}{200} \big(|u_1|^2 + 100\, |u_2|^2\big),
              \quad u = R_{30^\circ} (z - z^\star)

    A real-valued loss of complex parameters, as in optax's own complex tests. The parameters
    are one bare complex array of shape (2,), starting at :math:`(1 - 2i)` times the real
    quadratic's start, so real and imaginary parts differ from the first step.
    """
    rotation_np, real_start = _rotated_bowl()
    rotation = jnp.asarray(rotation_np, dtype)  # real values in the complex dtype
    minimum = jnp.asarray([1 + 1j, -1 - 1j], dtype)
    start_ = (1 - 2j) * real_start

    def loss(z: jax.Array) -> jax.Array:
        u = rotation @ (z - minimum)  # (2,)
        return (fdl.tree.abs_sq(u[0]) + 100.0 * fdl.tree.abs_sq(u[1])) / 200.0

    return Problem(
        "complex_quadratic",
        "the rotated quadratic bowl over complex parameters",
        loss,
        lambda key: jnp.asarray(start_, dtype),
    )


def _complex_regression(dtype: Any) -> Problem:
    r"""Complex least squares, :math:`L = \tfrac1n \sum_k |x_k^\top W + b - y_k|^2`, on fixed
    complex data (64 examples of 8 features, 3 outputs).

    Parameters: a nested dict with a scalar leaf, ``{"linear": {"w": (8, 3), "b": (3,)},
    "gain": ()}`` (the output is multiplied by the gain), starting at ``w = 0``, ``b = 0``,
    ``gain = 1``: a tree of complex leaves of several shapes, the optimizers' usual case.
    """
    rng = np.random.default_rng(1017)
    x = rng.normal(size=(EXAMPLES, 8)) + 1j * rng.normal(size=(EXAMPLES, 8))
    w_true = rng.normal(size=(8, 3)) + 1j * rng.normal(size=(8, 3))
    y = x @ w_true / math.sqrt(8)
    x_, y_ = jnp.asarray(x / math.sqrt(8), dtype), jnp.asarray(y, dtype)
    params = {
        "linear": {"w": jnp.zeros((8, 3), dtype), "b": jnp.zeros((3,), dtype)},
        "gain": jnp.ones((), dtype),
    }

    def loss(p: PyTree) -> jax.Array:
        residual = p["gain"] * (x_ @ p["linear"]["w"] + p["linear"]["b"][None, :]) - y_  # (EXAMPLES, 3)
        return jnp.mean(jnp.sum(fdl.tree.abs_sq(residual), axis=-1))

    return Problem("complex_regression", "complex least squares", loss, lambda key: params)


COMPLEX_PROBLEM_NAMES = ("complex_quadratic", "complex_regression")

_BUILDERS = {
    "quadratic": _quadratic,
    "rosenbrock": _rosenbrock,
    "logistic": _logistic,
    "mlp": _mlp,
    "complex_quadratic": _complex_quadratic,
    "complex_regression": _complex_regression,
}


def make_problem(name: str, dtype: Any) -> Problem:
    """The test problem called ``name`` (one of :data:`PROBLEM_NAMES`, built from
    :mod:`fdl.problems`, or of :data:`COMPLEX_PROBLEM_NAMES` for a complex ``dtype``), with its
    data and parameters in ``dtype``."""
    return _BUILDERS[name](dtype)


def start(problem: Problem) -> PyTree:
    """The fixed starting parameters of a :func:`make_problem` problem (its ``init_params``
    ignores the key)."""
    return problem.init_params(None)


# ------------------------------------------------------------------------------- the runner


def optax_promotion():
    """The promotion rules optax's code needs: standard instead of the suite's strict.

    optax raises its Python-float decay rates to the int32 step count (``b1**count``) and its
    schedules mix int32 counts with Python floats (``jnp.minimum(count, 5.0)``), mixed float/int
    operations that strict promotion rejects. Only optax's calls run in this context;
    fdl's run under the suite's strict rules.
    """
    return jax.numpy_dtype_promotion("standard")


def _step_along(updates: PyTree, atom_lr: float | None) -> PyTree:
    """What is added to the parameters: the updates themselves (an optimizer already holds its
    learning rate and sign), or ``-atom_lr * updates`` for an atom (a direction, no step size)."""
    if atom_lr is None:
        return updates
    return jax.tree.map(lambda u: jnp.asarray(-atom_lr, u.dtype) * u, updates)


def _pack(tree: PyTree) -> tuple[dict[str, jax.Array], tuple[Any, list]]:
    """``tree``'s leaves raveled and concatenated into one vector per dtype, and the layout to
    undo it. Recording a step then writes one buffer per dtype instead of one per leaf, which
    XLA compiles a fifth faster. bfloat16 leaves are recorded as their bits (``uint16``, read
    back bit for bit by :func:`_unpack`): the older code generator's concatenation of bfloat16
    values ran 6x slower than the rest of a case (3.7 s of 500 MLP steps, against 0.1 s)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    groups: dict[str, list[jax.Array]] = {}
    layout = []
    for leaf in leaves:
        key = jnp.dtype(leaf.dtype).name
        parts = groups.setdefault(key, [])
        layout.append((key, sum(part.size for part in parts), leaf.shape))
        if leaf.dtype == jnp.bfloat16:
            leaf = jax.lax.bitcast_convert_type(leaf, jnp.uint16)
        parts.append(jnp.ravel(leaf))
    return {key: jnp.concatenate(parts) for key, parts in groups.items()}, (treedef, layout)


def _unpack(packed: dict[str, np.ndarray], spec: tuple[Any, list]) -> PyTree:
    """The tree of :func:`_pack`, each leaf with the leading (steps) axis of ``packed``."""
    treedef, layout = spec
    leaves = []
    for key, start, shape in layout:
        leaf = packed[key][:, start : start + math.prod(shape)].reshape((-1, *shape))
        leaves.append(leaf.view(jnp.bfloat16) if key == "bfloat16" else leaf)  # the bits, back
    return jax.tree_util.tree_unflatten(treedef, leaves)


def descent_gradient(loss: Any) -> Any:
    """``jax.grad(loss)``, conjugated at complex leaves.

    For a real loss of complex parameters ``jax.grad`` returns the conjugate of the direction of
    steepest ascent; conjugated, it is the gradient an optimizer descends along (what optax's
    own complex tests feed their optimizers). Real leaves are returned as they are.
    """
    grad = jax.grad(loss)
    return lambda params: _conjugate(grad(params))


def _conjugate(grads: PyTree) -> PyTree:
    return jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, grads)


def _trajectory(fdl_opt, optax_opt, problem: Problem, steps: int, teacher_forcing: bool, atom_lr):
    """Scan both optimizers over ``steps`` steps of ``problem``.

    Independent trajectories: each optimizer takes the gradient at its own parameters. Both
    gradients come from one ``lax.map`` loop body, the same compiled code for both, so equal
    parameters give bit-equal gradients (a ``vmap`` was measured to round its two lanes
    differently). Teacher forcing: both take the gradient at fdl's parameters, and fdl's
    parameters as ``params``, so the comparison isolates the optimizers' arithmetic from the
    dynamics.

    Returns the two initial states, the per-step records packed by :func:`_pack` and a list
    that holds the packing layout once the function has been traced.
    """
    grad = descent_gradient(problem.loss)
    spec: list = []

    def step(carry, _):
        fdl_params, fdl_state, optax_params, optax_state = carry
        if teacher_forcing:
            optax_params = fdl_params
            fdl_grads = optax_grads = grad(fdl_params)
        else:
            both = jax.tree.map(lambda a, b: jnp.stack([a, b]), fdl_params, optax_params)
            grads = jax.lax.map(grad, both)
            fdl_grads = jax.tree.map(lambda g: g[0], grads)
            optax_grads = jax.tree.map(lambda g: g[1], grads)
        fdl_updates, fdl_state = fdl_opt.update(fdl_grads, fdl_state, fdl_params)
        with optax_promotion():
            optax_updates, optax_state = optax_opt.update(optax_grads, optax_state, optax_params)
        fdl_params = fdl_base.apply_updates(fdl_params, _step_along(fdl_updates, atom_lr))
        with optax_promotion():
            optax_params = optax.apply_updates(optax_params, _step_along(optax_updates, atom_lr))
        records = (
            {"updates": fdl_updates, "state": fdl_state},
            {"updates": optax_updates, "state": optax_state},
        )
        packed, layout = _pack(records)
        spec[:] = [layout]
        return (fdl_params, fdl_state, optax_params, optax_state), packed

    fdl_state = fdl_opt.init(start(problem))
    with optax_promotion():
        optax_state = optax_opt.init(start(problem))
    init = (start(problem), fdl_state, start(problem), optax_state)
    _, packed = jax.lax.scan(step, init, None, length=steps)
    return (fdl_state, optax_state, packed), spec


def run_trajectories(
    pairs: Sequence[tuple[Any, Any, Problem]],
    steps: int,
    *,
    teacher_forcing: Sequence[bool] | bool = False,
    atom_lr: float | None = None,
) -> list[tuple[PyTree, PyTree]]:
    """Run every ``(fdl_opt, optax_opt, problem)`` for ``steps`` steps in one compiled program.

    Args:
      pairs: ``(fdl_optimizer, optax_optimizer, problem)`` triples.
      steps: the number of steps of every trajectory.
      teacher_forcing: per pair (or for all), whether both optimizers get fdl's gradients.
      atom_lr: ``None`` for optimizers; for atoms, the step size along their output.

    Returns:
      Per pair, ``(fdl_record, optax_record)``: dicts with the initial state ``init_state``,
      and ``updates`` and ``state`` (after the step) with every leaf stacked over the steps.
    """
    if isinstance(teacher_forcing, bool):
        teacher_forcing = [teacher_forcing] * len(pairs)
    specs: list[list] = []

    def run_all():
        outputs = []
        for (fdl_opt, optax_opt, problem), forced in zip(pairs, teacher_forcing, strict=True):
            output, spec = _trajectory(fdl_opt, optax_opt, problem, steps, forced, atom_lr)
            outputs.append(output)
            specs.append(spec)
        return outputs

    outputs = jax.device_get(jax.jit(run_all)())
    records = []
    for (fdl_init, optax_init, packed), (spec,) in zip(outputs, specs, strict=True):
        fdl_steps, optax_steps = _unpack(packed, spec)
        records.append(({"init_state": fdl_init, **fdl_steps}, {"init_state": optax_init, **optax_steps}))
    return records


def minimize(optimizer: Any, problem: Problem, steps: int) -> np.ndarray:
    """The loss before each of ``steps`` steps of ``optimizer`` on ``problem``, then after the
    last (``steps + 1`` values, in float64), from one ``lax.scan``."""

    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(problem.loss)(params)
        updates, state = optimizer.update(_conjugate(grads), state, params)
        return (fdl_base.apply_updates(params, updates), state), loss

    def run():
        init = (start(problem), optimizer.init(start(problem)))
        (params, _), losses = jax.lax.scan(step, init, None, length=steps)
        return jnp.concatenate([losses, problem.loss(params)[None]])

    return np.asarray(jax.jit(run)(), np.float64)


# ---------------------------------------------------------------------------- the comparison

# Tolerances, per dtype of the compared leaf, in one place. A value passes where
#
#     |fdl - optax| <= rtol * size,
#
# ``size`` being the largest magnitude that element takes over the whole trajectory, in either
# library: an element that crosses zero is held to its own scale, and a small element is not
# excused by an absolute floor set for a large one. Integer leaves (step counts) must be equal.
#
# Measured on test_parity.py's 53 rows x 4 problems x 500 steps: every float leaf, in every
# dtype, is bit-identical to optax's when compiled with XLA's older CPU code generator, as the
# suite compiles (``tests/conftest.py``; fdl performs optax's operations in optax's order). With XLA's default code generator the largest difference is
# 8.3e-8 in float32 and 1.5e-16 in float64 (one program fuses a multiply-add the other does not,
# a rounding apart), and none in bfloat16. So:
#
# * float32: 1e-6, i.e. ~8 float32 ulp (2**-23 = 1.2e-7), 12x the largest difference measured;
# * float64: 1e-12, far above the ~1e-16 measured and far below any error in the method;
# * bfloat16: 0, bit for bit. Identical operations give identical bfloat16 results (measured in
#   every case, with both code generators), and one bfloat16 ulp is already 2**-8 = 0.4%: there
#   is no tolerance between "identical" and "a visible difference".
TOLERANCES = {
    "float32": 1e-6,
    "float64": 1e-12,
    "bfloat16": 0.0,
    "complex64": 1e-6,  # float32 parts: the error is the complex modulus |fdl - optax|
    "complex128": 1e-12,
}


class _Fields:
    """A NamedTuple's fields without its class: a pytree node whose structure is the field
    names in order, and whose key paths read ``.mu`` as on the NamedTuple itself."""

    def __init__(self, names: tuple[str, ...], values: tuple[Any, ...]):
        self.names, self.values = names, values


jax.tree_util.register_pytree_with_keys(
    _Fields,
    lambda f: (
        [(jax.tree_util.GetAttrKey(n), v) for n, v in zip(f.names, f.values, strict=True)],
        f.names,
    ),
    lambda names, values: _Fields(names, tuple(values)),
)


def _plain(tree: PyTree) -> PyTree:
    """``tree`` with every NamedTuple replaced by its fields: the classes differ between fdl
    and optax, the field names and their order must not."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return _Fields(tuple(tree._fields), tuple(_plain(v) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_plain(t) for t in tree)
    if isinstance(tree, dict):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def _leaves(tree: PyTree) -> tuple[Any, list[tuple[str, Any]]]:
    plain = _plain(tree)
    flat, _ = jax.tree_util.tree_flatten_with_path(plain)
    return jax.tree_util.tree_structure(plain), [(jax.tree_util.keystr(k), v) for k, v in flat]


def assert_same_trajectory(
    fdl_record: PyTree, optax_record: PyTree, where: str, tolerances: dict[str, float] | None = None
) -> None:
    """Assert two records agree: same structure, key paths, dtypes and shapes, values within
    :data:`TOLERANCES` (or ``tolerances``, per dtype name, where given) at every step (the first
    failing step and path are reported)."""
    for part in ("init_state", "updates", "state"):  # causes before consequences
        stacked = part != "init_state"
        _assert_same_tree(fdl_record[part], optax_record[part], f"{where} {part}", stacked, tolerances)


def _assert_same_tree(
    fdl_tree: PyTree,
    optax_tree: PyTree,
    where: str,
    stacked: bool,
    tolerances: dict[str, float] | None = None,
) -> None:
    fdl_structure, fdl_leaves = _leaves(fdl_tree)
    optax_structure, optax_leaves = _leaves(optax_tree)
    if fdl_structure != optax_structure:
        raise AssertionError(
            f"{where}: the trees differ in structure\n  fdl:   {fdl_structure}\n  optax: {optax_structure}"
        )
    for (path, a), (optax_path, b) in zip(fdl_leaves, optax_leaves, strict=True):
        assert path == optax_path
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, f"{where}{path}: dtype {a.dtype} (fdl) vs {b.dtype} (optax)"
        assert a.shape == b.shape, f"{where}{path}: shape {a.shape} (fdl) vs {b.shape} (optax)"
        if not (np.issubdtype(a.dtype, np.inexact) or a.dtype == jnp.bfloat16):
            np.testing.assert_array_equal(a, b, err_msg=f"{where}{path}")
            continue
        rtol = {**TOLERANCES, **(tolerances or {})}[a.dtype.name]
        wide = np.complex128 if np.iscomplexobj(a) else np.float64
        a64, b64 = a.astype(wide), b.astype(wide)
        size = np.maximum(np.abs(a64), np.abs(b64))
        if stacked:  # each element's largest magnitude over the steps (axis 0)
            size = np.broadcast_to(size.max(axis=0, keepdims=True), size.shape)
        with np.errstate(invalid="ignore"):  # inf - inf (equal infinities pass below)
            error = np.abs(a64 - b64)
        bad = ~((a64 == b64) | (np.isnan(a64) & np.isnan(b64)) | (error <= rtol * size))  # NaN: either part
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            at = f"step {first[0] + 1}, index {first[1:]}" if stacked else f"index {first}"
            worst = np.max(error[bad] / np.where(size[bad] > 0, size[bad], np.inf))
            raise AssertionError(
                f"{where}{path}: {int(bad.sum())} of {bad.size} values differ beyond rtol "
                f"{rtol:g}; first at {at}: fdl {a64[first]!r} vs optax {b64[first]!r}; "
                f"largest error relative to the element's size {worst:.3g}"
            )


def assert_same_tree(fdl_tree: PyTree, optax_tree: PyTree, where: str) -> None:
    """Assert one step's trees (updates or a state) agree, as :func:`assert_same_trajectory`
    compares each step (same paths, dtypes, :data:`TOLERANCES`)."""
    _assert_same_tree(fdl_tree, optax_tree, where, stacked=False)
