r"""Finite-difference gradient checking: does ``jax.grad`` of your function compute its slope?

Autodiff of plain JAX code is right by construction; what goes wrong is the code you wrote
yourself: a ``jax.custom_vjp`` rule, a ``custom_jvp``, a ``stop_gradient`` in the wrong place, a
numerically clipped formula. :func:`check_gradients` compares the reverse-mode gradient of a
scalar function of a pytree with **central differences in float64**, coordinate by coordinate,
and reports the worst relative error per leaf *path* (``encoder/dense_0/w``, as fdl spells paths
everywhere), so a wrong rule for one parameter is named, not averaged away.

**Step size.** For coordinate :math:`i` the step is

.. math::

    h_i = \varepsilon^{1/3} \max(1, |x_i|), \qquad
    \widehat{g}_i = \frac{f(x + h_i e_i) - f(x - h_i e_i)}{(x_i + h_i) - (x_i - h_i)}

with :math:`\varepsilon = 2^{-52}` (so :math:`h_i \approx 6 \cdot 10^{-6}` for :math:`|x_i| \le
1`). Central differences err by :math:`\tfrac{h^2}{6} f'''` (truncation) plus
:math:`\approx \varepsilon |f| / h` (rounding); :math:`h \propto \varepsilon^{1/3}` balances the
two at about :math:`\varepsilon^{2/3} \approx 4 \cdot 10^{-11}` relative to the scale of
:math:`f`. The denominator is the step actually taken (``x + h`` is rounded), not :math:`2h`.

**Error.** Per coordinate, with :math:`g` the autodiff gradient,

.. math::

    e_i = \frac{|g_i - \widehat{g}_i|}{\max(|g_i|, |\widehat{g}_i|, a)}, \qquad
    a = 10^{-6} \max(1, |f(x)|) \text{ by default (``atol``)},

a relative error that turns absolute for gradients too small to compare relatively (where the
finite difference is mostly rounding noise). A leaf fails when its largest :math:`e_i` exceeds
``tolerance`` (default :math:`10^{-4}`, ~100 times the finite-difference noise; a wrong rule is
usually off by :math:`10^{-2}` or more).

**Forward against reverse.** The report also checks :math:`\langle J v, u \rangle = \langle v,
J^\top u \rangle` for random :math:`u, v` (:func:`check_jvp_vjp`): forward mode (``jax.jvp``)
against reverse mode (``jax.vjp``). A ``custom_vjp`` function has no forward mode; its
:math:`J v` is then a central difference along :math:`v`.

**Precision.** The check needs float64: call it inside ``with jax.enable_x64(True):`` (or after
``jax.config.update("jax_enable_x64", True)``); without it, it raises rather than report float32
noise. Float leaves are cast to float64 for the check.

**Cost.** Two evaluations of ``f`` per checked coordinate (batched with ``jax.lax.map``). For
large leaves pass ``max_coordinates_per_leaf``: that many coordinates per leaf are drawn at
random (without replacement, from ``key``); the others are not checked.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fdl import gradcheck
    >>> with jax.enable_x64(True):
    ...     report = gradcheck.check_gradients(lambda p: jnp.sum(jnp.sin(p["w"]) * p["b"]),
    ...                                        {"w": jnp.ones(3), "b": jnp.arange(3.0)})
    >>> report.passed, sorted(report.errors)
    (True, ['b', 'w'])

References:
    Nocedal and Wright, *Numerical Optimization* (2nd ed., 2006), section 8.1 (finite-difference
    derivative approximations and the choice of step).
    Griewank and Walther, *Evaluating Derivatives* (2nd ed., 2008), chapter 3 (forward and
    reverse mode; the identity :math:`\langle J v, u \rangle = \langle v, J^\top u \rangle`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fdl._checks import check_positive_int, check_prng_key
from fdl._paths import path_label, path_string

__all__ = ["GradCheckReport", "check_gradients", "check_jvp_vjp"]

PyTree = Any
_EPS = float(np.finfo(np.float64).eps)


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """What :func:`check_gradients` found.

    Attributes:
        errors: leaf path -> the largest relative error :math:`\\max_i e_i` over its checked
            coordinates (the path of a lone array is ``""``).
        checked: leaf path -> how many of its coordinates were checked.
        coordinates: leaf path -> the flat indices checked (all, or the keyed sample).
        worst: leaf path -> ``(flat index, autodiff value, finite difference)`` of its worst
            coordinate.
        tolerance: the pass threshold on every :math:`e_i`.
        jvp_vjp_error: relative mismatch of :math:`\\langle Jv, u\\rangle` and
            :math:`\\langle v, J^\\top u\\rangle` (largest over the probes).
        jvp_source: ``"forward"`` (``jax.jvp``) or ``"finite differences"`` (for a
            ``custom_vjp`` function, which has no forward mode).
        passed: every leaf and the forward/reverse check within ``tolerance``.
    """

    errors: dict[str, float]
    checked: dict[str, int]
    worst: dict[str, tuple[int, float, float]]
    tolerance: float
    jvp_vjp_error: float
    jvp_source: str
    coordinates: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    @property
    def failing(self) -> list[str]:
        """Paths of the leaves whose largest error exceeds ``tolerance``."""
        return [path for path, error in self.errors.items() if not error <= self.tolerance]

    @property
    def passed(self) -> bool:
        return not self.failing and self.jvp_vjp_error <= self.tolerance

    def __str__(self) -> str:
        lines = [f"gradient check ({'passed' if self.passed else 'FAILED'}, tolerance {self.tolerance:.1e})"]
        for path, error in self.errors.items():
            index, ad, fd = self.worst[path]
            flag = "FAIL" if path in self.failing else "ok"
            lines.append(
                f"  {flag:4} {path or '(root)'}: max relative error {error:.2e} over "
                f"{self.checked[path]} coordinates (worst at flat index {index}: autodiff "
                f"{ad:.8g}, finite difference {fd:.8g})"
            )
        flag = "ok" if self.jvp_vjp_error <= self.tolerance else "FAIL"
        lines.append(f"  {flag:4} <J v, u> vs <v, J^T u> ({self.jvp_source}): {self.jvp_vjp_error:.2e}")
        return "\n".join(lines)


def _require_x64(caller: str) -> None:
    if jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
        raise RuntimeError(
            f"{caller} compares against finite differences in float64, but float64 is disabled: "
            "call it inside `with jax.enable_x64(True):` or after "
            "`jax.config.update('jax_enable_x64', True)`"
        )


def _as_float64(caller: str, tree: PyTree) -> PyTree:
    """Every leaf as a float64 array; a non-float leaf is refused, naming its path."""

    def cast(path: Any, leaf: Any) -> jax.Array:
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise ValueError(
                f"{caller}: leaf {path_label(path)!r} has dtype {leaf.dtype}; only "
                "float leaves have gradients to check"
            )
        return leaf.astype(jnp.float64)

    return jax.tree_util.tree_map_with_path(cast, tree)


def _relative_error(a: np.ndarray, b: np.ndarray, atol: float) -> np.ndarray:
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), atol)


def check_jvp_vjp(
    f: Callable[[PyTree], PyTree],
    primals: PyTree,
    *,
    key: jax.Array | None = None,
    num_probes: int = 2,
    atol: float = 1e-12,
) -> tuple[float, str]:
    r"""Forward against reverse mode: :math:`\langle J v, u \rangle = \langle v, J^\top u \rangle`.

    .. math::

        \text{error} = \max_{s} \frac{|\langle J v_s, u_s \rangle - \langle v_s, J^\top u_s
        \rangle|}{\max(|\langle J v_s, u_s \rangle|, |\langle v_s, J^\top u_s \rangle|, a)}

    for ``num_probes`` pairs of standard normal :math:`v_s` (shaped like ``primals``, scaled to
    unit norm) and :math:`u_s` (shaped like ``f``'s output), :math:`J` the Jacobian of ``f`` at
    ``primals``. :math:`J v` comes from ``jax.jvp``; a ``custom_vjp`` function has no forward
    mode, so then it is the central difference
    :math:`(f(x + h v) - f(x - h v)) / 2h`, :math:`h = \varepsilon^{1/3} \max(1, \|x\|_\infty)`.
    Needs float64 (see the module docstring); every leaf is cast to it.

    Args:
        f: any function of a pytree of float arrays to a pytree of float arrays.
        primals: the point :math:`x`.
        key: PRNG key of the probes (default ``jax.random.key(0)``).
        num_probes: how many :math:`(u, v)` pairs, a positive int.
        atol: the denominator's floor :math:`a`.

    Returns:
        ``(error, source)``: the largest relative mismatch and how :math:`Jv` was computed,
        ``"forward"`` or ``"finite differences"``.

    Raises:
        RuntimeError: if float64 is disabled.
        ValueError: for a non-float leaf (naming its path) or a bad ``num_probes``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> with jax.enable_x64(True):
        ...     error, source = check_jvp_vjp(lambda x: jnp.sin(x) * x[::-1], jnp.arange(4.0))
        >>> bool(error < 1e-12), source
        (True, 'forward')
    """
    _require_x64("check_jvp_vjp")
    num_probes = check_positive_int("num_probes", num_probes)
    key = jax.random.key(0) if key is None else check_prng_key("key", key)
    primals = _as_float64("check_jvp_vjp", primals)
    source = _forward_source(f, primals)
    forward, reverse = jax.jit(_pairings, static_argnums=(0, 3))(
        f, primals, jax.random.split(key, num_probes), source
    )
    return float(_relative_error(np.asarray(forward), np.asarray(reverse), atol).max()), source


def _forward_source(f: Callable[[PyTree], PyTree], primals: PyTree) -> str:
    """``"forward"`` if ``f`` has forward mode, else (a ``custom_vjp``) ``"finite differences"``;
    lowering the JVP (no compile, no run) is enough to find out."""
    try:
        jax.jit(lambda x: jax.jvp(f, (x,), (jax.tree.map(jnp.ones_like, x),))).lower(primals)
    except TypeError:  # "can't apply forward-mode autodiff (jvp) to a custom_vjp function"
        return "finite differences"
    return "forward"


def _pairings(
    f: Callable, primals: PyTree, probe_keys: jax.Array, source: str
) -> tuple[jax.Array, jax.Array]:
    """``(<J v_s, u_s>, <v_s, J^T u_s>)``, each ``(P,)``, for one probe pair per key (traceable)."""
    flat, unravel = ravel_pytree(primals)
    outputs, pullback = jax.vjp(f, primals)
    out_flat, out_unravel = ravel_pytree(outputs)
    h = _EPS ** (1 / 3) * jnp.maximum(1.0, jnp.max(jnp.abs(flat), initial=0.0))

    def pairing(probe_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        v_key, u_key = jax.random.split(probe_key)
        v = jax.random.normal(v_key, flat.shape, jnp.float64)  # (n,)
        v = v / jnp.linalg.norm(v)
        u = jax.random.normal(u_key, out_flat.shape, jnp.float64).astype(out_flat.dtype)  # (m,)
        if source == "forward":
            jv = ravel_pytree(jax.jvp(f, (primals,), (unravel(v),))[1])[0]
        else:
            plus = ravel_pytree(f(unravel(flat + h * v)))[0]
            minus = ravel_pytree(f(unravel(flat - h * v)))[0]
            jv = (plus - minus) / (2 * h)
        return jnp.vdot(jv, u), jnp.vdot(v, ravel_pytree(pullback(out_unravel(u)))[0])

    return jax.lax.map(pairing, probe_keys)


def _sample(key: jax.Array, size: int, most: int | None) -> np.ndarray:
    """Sorted flat indices to check: all of them, or ``most`` drawn without replacement by a
    NumPy generator seeded with ``key``'s bits (no compile per leaf size)."""
    if most is None or size <= most:
        return np.arange(size)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
    return np.sort(rng.choice(size, most, replace=False))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _differences_and_pairings(
    f: Callable, source: str, params: PyTree, where: jax.Array, probe_keys: jax.Array
) -> tuple[jax.Array, ...]:
    """One program (compiled once per ``f`` and shapes): the value, the gradient entries at
    ``where`` ``(c,)``, their central differences ``(c,)`` and the forward/reverse pairings."""
    flat, unravel = ravel_pytree(params)
    value, grad = jax.value_and_grad(f)(params)
    x = flat[where]  # (c,)
    h = _EPS ** (1 / 3) * jnp.maximum(1.0, jnp.abs(x))
    up, down = x + h, x - h

    def at(args: tuple[jax.Array, jax.Array]) -> jax.Array:
        i, moved = args
        return f(unravel(flat.at[i].set(moved)))

    f_up = jax.lax.map(at, (where, up), batch_size=32)  # (c,)
    f_down = jax.lax.map(at, (where, down), batch_size=32)  # (c,)
    fd = (f_up - f_down) / (up - down)  # the steps actually taken, after rounding
    return (value, ravel_pytree(grad)[0][where], fd, *_pairings(f, params, probe_keys, source))


def check_gradients(
    f: Callable[[PyTree], jax.Array],
    params: PyTree,
    *,
    tolerance: float = 1e-4,
    atol: float | None = None,
    max_coordinates_per_leaf: int | None = None,
    key: jax.Array | None = None,
) -> GradCheckReport:
    r"""Check ``jax.grad(f)`` against float64 central differences, leaf by leaf.

    .. math::

        e_i = \frac{|g_i - \widehat{g}_i|}{\max(|g_i|, |\widehat{g}_i|, a)}, \qquad
        \widehat{g}_i = \frac{f(x + h_i e_i) - f(x - h_i e_i)}{2 h_i}, \qquad
        h_i = \varepsilon^{1/3} \max(1, |x_i|)

    (module docstring: the step, the floor :math:`a`, the tolerance). The report gives the
    largest :math:`e_i` per leaf path and the forward/reverse check (:func:`check_jvp_vjp`),
    and prints as a table naming the failing leaves.

    Args:
        f: ``f(params) -> scalar``, JAX-traceable (it is evaluated under ``jax.jit`` and
            ``jax.lax.map``).
        params: the point, any pytree of float arrays (cast to float64).
        tolerance: the largest accepted :math:`e_i`.
        atol: the floor :math:`a`; default :math:`10^{-6} \max(1, |f(x)|)`.
        max_coordinates_per_leaf: check at most this many coordinates of each leaf, drawn
            without replacement from ``key``; ``None`` checks every coordinate.
        key: PRNG key of the coordinate sample and of the forward/reverse probes (default
            ``jax.random.key(0)``).

    Returns:
        A :class:`GradCheckReport`: ``report.passed``, ``report.failing`` (leaf paths),
        ``report.errors`` (path -> largest error), ``str(report)`` a readable table.

    Raises:
        RuntimeError: if float64 is disabled (see the module docstring).
        ValueError: for a non-float leaf, an ``f`` that does not return a scalar, a
            ``max_coordinates_per_leaf`` that is not a positive int, or a non-positive
            ``tolerance``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> @jax.custom_vjp
        ... def square(x):
        ...     return x**2
        >>> square.defvjp(lambda x: (x**2, x), lambda x, g: (3 * x * g,))  # wrong: 3x, not 2x
        >>> with jax.enable_x64(True):
        ...     report = check_gradients(lambda p: jnp.sum(square(p["a"])) + jnp.sum(p["b"]),
        ...                              {"a": jnp.ones(2), "b": jnp.ones(2)})
        >>> report.passed, report.failing
        (False, ['a'])
    """
    _require_x64("check_gradients")
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"`tolerance` must be a positive number, got {tolerance!r}")
    if max_coordinates_per_leaf is not None:
        max_coordinates_per_leaf = check_positive_int("max_coordinates_per_leaf", max_coordinates_per_leaf)
    key = jax.random.key(0) if key is None else check_prng_key("key", key)
    params = _as_float64("check_gradients", params)
    value = jax.eval_shape(f, params)
    if value.shape != ():
        raise ValueError(
            f"check_gradients: `f` must return a scalar (its gradient is what is checked), got "
            f"shape {value.shape}; reduce it (e.g. jnp.sum) or check another output"
        )
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if not leaves:
        raise ValueError("check_gradients: `params` has no leaves, so there is no gradient to check")
    sample_key, probe_key = jax.random.split(key)
    paths, local, offsets, offset = [], [], [], 0  # per leaf: path, checked flat indices, start
    for number, (path, leaf) in enumerate(leaves):
        paths.append(path_string(path))
        local.append(_sample(jax.random.fold_in(sample_key, number), leaf.size, max_coordinates_per_leaf))
        offsets.append(offset)
        offset += leaf.size
    where = jnp.asarray(np.concatenate([o + c for o, c in zip(offsets, local, strict=True)]))  # (c,)
    source = _forward_source(f, params)

    outputs = _differences_and_pairings(f, source, params, where, jax.random.split(probe_key, 2))
    value, ad, fd, forward, reverse = (np.asarray(a) for a in outputs)
    atol = 1e-6 * max(1.0, abs(float(value))) if atol is None else atol
    errors: dict[str, float] = {}
    checked: dict[str, int] = {}
    worst: dict[str, tuple[int, float, float]] = {}
    start = 0
    for name, chosen in zip(paths, local, strict=True):
        stop = start + chosen.size
        e = _relative_error(ad[start:stop], fd[start:stop], atol)
        i = int(np.argmax(e)) if e.size else 0
        errors[name] = float(e.max(initial=0.0))
        checked[name] = int(chosen.size)
        worst[name] = (
            (int(chosen[i]), float(ad[start + i]), float(fd[start + i])) if e.size else (0, 0.0, 0.0)
        )
        start = stop
    jvp_error = float(_relative_error(forward, reverse, atol).max())
    coordinates = {name: tuple(int(i) for i in chosen) for name, chosen in zip(paths, local, strict=True)}
    return GradCheckReport(errors, checked, worst, float(tolerance), jvp_error, source, coordinates)
