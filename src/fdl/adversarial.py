r"""Adversarial examples: attacks inside an :math:`\varepsilon`-ball, robust accuracy, and
adversarial training.

A classifier :math:`f` with loss :math:`L(f(x), y)` is attacked by a perturbation
:math:`\delta` that raises the loss while staying small, :math:`\lVert\delta\rVert \le
\varepsilon`, and keeps the input in its data range :math:`[lo, hi]`:

.. math::

    \max_{\lVert\delta\rVert \le \varepsilon,\; lo \le x + \delta \le hi} L\bigl(f(x + \delta), y\bigr).

* :func:`fgsm` takes one step along the sign of the gradient (Goodfellow et al., 2015);
* :func:`pgd` takes ``steps`` projected steps from a random start in the ball, under the
  :math:`L_\infty` or the :math:`L_2` norm (Madry et al., 2018);
* a **targeted** attack lowers the loss of a chosen label instead, so the prediction moves to it;
* :func:`robust_accuracy` is the accuracy on attacked inputs, and :func:`adversarial_loss` is
  Madry et al.'s adversarial training, :math:`\min_\theta \mathbb{E}\,\max_\delta L`, as a loss
  for :func:`fdl.fit.fit`.

Conventions: ``logits_fn(x) -> (B, C)`` logits for a batch ``x`` of shape ``(B, ...)`` (any
example shape, e.g. ``(B, 8, 8, 1)`` images); ``labels`` are ``(B,)`` integers. The loss is the
softmax cross-entropy, summed over the batch so that its gradient holds each example's own
input gradient. Norms are per example, over all its axes. Each function is pure and jit-able
(``epsilon``, ``steps``, ``norm`` and the range are static settings).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fdl import adversarial
    >>> w = jnp.array([[1.0, -1.0], [0.5, 0.5]])
    >>> logits_fn = lambda x: x @ w
    >>> x = jnp.array([[0.5, 0.5]])
    >>> x_adv = adversarial.fgsm(logits_fn, x, jnp.array([0]), epsilon=0.1)
    >>> x_adv.tolist()  # each pixel moved by 0.1 against label 0
    [[0.4000000059604645, 0.6000000238418579]]

References:
    I. Goodfellow, J. Shlens and C. Szegedy, "Explaining and Harnessing Adversarial Examples",
    ICLR 2015.
    A. Madry, A. Makelov, L. Schmidt, D. Tsipras and A. Vladu, "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import (
    check_choice,
    check_non_negative_finite,
    check_positive_finite,
    check_positive_int,
    check_prng_key,
)

__all__ = ["NORMS", "fgsm", "pgd", "project", "robust_accuracy", "adversarial_loss"]

#: The norms of the perturbation ball :func:`pgd` and :func:`project` take.
NORMS = ("linf", "l2")
LogitsFn = Callable[[jax.Array], jax.Array]
Range = tuple[float, float] | None


# ------------------------------------------------------------------------------------ checks


def _check_range(data_range: Any) -> Range:
    if data_range is None:
        return None
    ok = isinstance(data_range, (tuple, list)) and len(data_range) == 2
    if ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data_range):
        lo, hi = float(data_range[0]), float(data_range[1])
        if lo < hi:
            return lo, hi
    raise ValueError(
        f"`data_range` must be None or a pair (lo, hi) of numbers with lo < hi, got {data_range!r}"
    )


def _check_inputs(x: Any, labels: Any) -> tuple[jax.Array, jax.Array]:
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.ndim < 1:
        raise TypeError(f"`x` must be a float batch (B, ...), got dtype {x.dtype} and shape {x.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != x.shape[:1]:
        raise ValueError(
            f"`labels` must be integers of shape (B,) = {x.shape[:1]} for `x` of shape {x.shape}, "
            f"got dtype {labels.dtype} and shape {labels.shape}"
        )
    return x, labels


def _check_epsilon(epsilon: Any) -> float:
    return check_non_negative_finite("epsilon", epsilon)


# ------------------------------------------------------------------------------------ pieces


def _loss_gradient(logits_fn: LogitsFn, x: jax.Array, labels: jax.Array) -> jax.Array:
    """The gradient of the batch's summed cross-entropy: each example's own input gradient."""

    def total(x: jax.Array) -> jax.Array:
        logits = logits_fn(x)  # (B, C)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, x.dtype)))
        return -jnp.sum(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))

    return jax.grad(total)(x)


def _example_norms(a: jax.Array) -> jax.Array:
    """``(B, 1, ..., 1)``: each example's :math:`L_2` norm over all its axes."""
    axes = tuple(range(1, a.ndim))
    return jnp.sqrt(jnp.sum(a * a, axis=axes, keepdims=True))


def _clip_to_range(x: jax.Array, delta: jax.Array, data_range: Range) -> jax.Array:
    """The perturbation that keeps ``x + delta`` in the data range (each entry only shrinks in
    magnitude when ``x`` itself lies in the range, so the ball is kept)."""
    if data_range is None:
        return delta
    lo, hi = data_range
    return jnp.clip(x + delta, lo, hi) - x


def project(delta: jax.Array, epsilon: float, norm: str = "linf") -> jax.Array:
    r"""The closest perturbation in the :math:`\varepsilon`-ball, per example.

    .. math::

        \Pi_\infty(\delta) = \operatorname{clip}(\delta, -\varepsilon, \varepsilon), \qquad
        \Pi_2(\delta) = \delta \cdot \min\Bigl(1, \frac{\varepsilon}{\lVert\delta\rVert_2}\Bigr)

    Args:
        delta: ``(B, ...)`` perturbations.
        epsilon: the radius :math:`\varepsilon \ge 0`.
        norm: ``"linf"`` or ``"l2"``.

    >>> import jax.numpy as jnp
    >>> project(jnp.array([[3.0, 4.0]]), 1.0, "l2").tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    epsilon = _check_epsilon(epsilon)
    norm = check_choice("norm", norm, NORMS)
    delta = jnp.asarray(delta)
    if norm == "linf":
        return jnp.clip(delta, -epsilon, epsilon)
    length = _example_norms(delta)
    scale = jnp.where(length > epsilon, epsilon / jnp.where(length > 0, length, 1.0), 1.0)
    return delta * scale.astype(delta.dtype)


# ------------------------------------------------------------------------------------ attacks


def fgsm(
    logits_fn: LogitsFn,
    x: Any,
    labels: Any,
    epsilon: float,
    *,
    targeted: bool = False,
    data_range: Range = (0.0, 1.0),
) -> jax.Array:
    r"""The fast gradient sign method: one step of size :math:`\varepsilon` along the sign of the
    input gradient of the loss.

    .. math::

        x_{adv} = \operatorname{clip}_{[lo, hi]}\bigl(x + s\,\varepsilon\,
            \operatorname{sign} \nabla_x L(f(x), y)\bigr), \qquad s = +1 \text{ (untargeted)},
            \; -1 \text{ (targeted: } y \text{ is the target)}

    The step is the :math:`L_\infty`-ball's steepest ascent of the loss's linearisation.

    Args:
        logits_fn: ``x (B, ...) -> logits (B, C)``.
        x: ``(B, ...)`` float inputs, inside ``data_range``.
        labels: ``(B,)`` integer labels (the targets when ``targeted``).
        epsilon: :math:`\varepsilon \ge 0`, the :math:`L_\infty` radius.
        targeted: lower the loss of ``labels`` instead of raising it.
        data_range: ``(lo, hi)`` the inputs are clipped to, or ``None``.

    Returns:
        ``(B, ...)`` adversarial inputs, within :math:`\varepsilon` of ``x`` in every entry.

    Raises:
        ValueError: ``epsilon`` negative or not finite; ``labels`` not ``(B,)``; a bad range.
    """
    epsilon = _check_epsilon(epsilon)
    data_range = _check_range(data_range)
    x, labels = _check_inputs(x, labels)
    sign = -1.0 if targeted else 1.0
    step = (sign * epsilon) * jnp.sign(_loss_gradient(logits_fn, x, labels))
    return x + _clip_to_range(x, step.astype(x.dtype), data_range)


def pgd(
    logits_fn: LogitsFn,
    x: Any,
    labels: Any,
    epsilon: float,
    *,
    steps: int,
    step_size: float | None = None,
    norm: str = "linf",
    key: jax.Array | None = None,
    targeted: bool = False,
    data_range: Range = (0.0, 1.0),
) -> jax.Array:
    r"""Projected gradient descent on the loss: ``steps`` steps of size :math:`\alpha`, each
    projected back into the :math:`\varepsilon`-ball and the data range (Madry et al., 2018).

    .. math::

        \delta_{k+1} = \Pi\bigl(\delta_k + s\,\alpha\, d_k\bigr), \qquad
        d_k = \begin{cases} \operatorname{sign} g_k & L_\infty \\ g_k / \lVert g_k\rVert_2 & L_2
        \end{cases}, \qquad g_k = \nabla_x L\bigl(f(x + \delta_k), y\bigr)

    with :math:`\Pi` the projection (:func:`project`) followed by the clip to the data range,
    and :math:`s = -1` for a targeted attack. With a ``key``, :math:`\delta_0` is drawn
    uniformly from the ball (:math:`L_\infty`: each entry from :math:`U(-\varepsilon,
    \varepsilon)`; :math:`L_2`: a uniform direction at radius :math:`\varepsilon u^{1/d}`, the
    uniform law on the ball of dimension :math:`d`); without one, :math:`\delta_0 = 0`.

    Args:
        logits_fn, x, labels, targeted, data_range: as in :func:`fgsm`.
        epsilon: the radius :math:`\varepsilon \ge 0`.
        steps: the number of steps (``>= 1``).
        step_size: :math:`\alpha > 0`; ``None`` takes :math:`2.5\,\varepsilon / \text{steps}`
            (Madry et al.'s choice, so the walk can cross the ball).
        norm: ``"linf"`` or ``"l2"``.
        key: a PRNG key for the random start, or ``None``.

    Returns:
        ``(B, ...)`` adversarial inputs, inside the ball around ``x`` and the data range.

    Raises:
        ValueError: ``epsilon`` negative or not finite, ``steps < 1``, ``step_size <= 0``, an
            unknown ``norm``, ``labels`` not ``(B,)``, a bad range.

    >>> import jax, jax.numpy as jnp
    >>> w = jnp.array([[1.0, -1.0], [0.5, 0.5]])
    >>> x = jnp.array([[0.5, 0.5]])
    >>> x_adv = pgd(lambda x: x @ w, x, jnp.array([0]), 0.1, steps=5, norm="l2")
    >>> round(float(jnp.linalg.norm(x_adv - x)), 4)  # on the sphere: the loss is linear in x
    0.1
    """
    epsilon = _check_epsilon(epsilon)
    steps = check_positive_int("steps", steps)
    norm = check_choice("norm", norm, NORMS)
    data_range = _check_range(data_range)
    x, labels = _check_inputs(x, labels)
    step_size = check_positive_finite("step_size", step_size, none_means="2.5 epsilon / steps")
    if step_size is None:
        step_size = 2.5 * epsilon / steps
    sign = -1.0 if targeted else 1.0

    delta = jnp.zeros_like(x)
    if key is not None:
        delta = _random_start(check_prng_key("key", key), x, epsilon, norm)
    delta = _clip_to_range(x, delta, data_range)

    def one_step(_: int, delta: jax.Array) -> jax.Array:
        g = _loss_gradient(logits_fn, x + delta, labels)
        if norm == "linf":
            direction = jnp.sign(g)
        else:
            length = _example_norms(g)
            direction = g / jnp.where(length > 0, length, 1.0)
        moved = delta + (sign * step_size) * direction.astype(x.dtype)
        return _clip_to_range(x, project(moved, epsilon, norm), data_range)

    return x + jax.lax.fori_loop(0, steps, one_step, delta)


def _random_start(key: jax.Array, x: jax.Array, epsilon: float, norm: str) -> jax.Array:
    if norm == "linf":
        return jax.random.uniform(key, x.shape, x.dtype, -epsilon, epsilon)
    direction_key, radius_key = jax.random.split(key)
    direction = jax.random.normal(direction_key, x.shape, x.dtype)
    direction = direction / jnp.maximum(_example_norms(direction), jnp.finfo(x.dtype).tiny)
    d = x[0].size
    radius = epsilon * jax.random.uniform(radius_key, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype) ** (
        1.0 / d
    )
    return direction * radius


# ----------------------------------------------------------------------- evaluation, training


def robust_accuracy(
    logits_fn: LogitsFn, x: Any, labels: Any, attack: Callable[[LogitsFn, jax.Array, jax.Array], jax.Array]
) -> jax.Array:
    r"""The accuracy on attacked inputs, :math:`\frac1B \sum_i [\arg\max f(x_i^{adv}) = y_i]`
    with :math:`x^{adv} = \text{attack}(f, x, y)`.

    ``attack`` is any ``(logits_fn, x, labels) -> x_adv``, e.g.
    ``functools.partial(pgd, epsilon=0.1, steps=20, key=key)``. Lower than the clean accuracy
    by what the attack finds; an attack that finds nothing returns the clean accuracy.

    >>> import functools, jax.numpy as jnp
    >>> w = jnp.array([[1.0, -1.0], [-1.0, 1.0]])  # logits (x0 - x1, x1 - x0)
    >>> x, y = jnp.array([[0.9, 0.1], [0.2, 0.8]]), jnp.array([0, 1])
    >>> [float(robust_accuracy(lambda x: x @ w, x, y, functools.partial(fgsm, epsilon=e))) for e in (0.0, 0.5)]
    [1.0, 0.0]
    """
    x, labels = _check_inputs(x, labels)
    x_adv = attack(logits_fn, x, labels)
    return jnp.mean((jnp.argmax(logits_fn(x_adv), axis=-1) == labels).astype(jnp.float32))


def adversarial_loss(
    model: Any,
    epsilon: float,
    *,
    steps: int = 7,
    step_size: float | None = None,
    norm: str = "linf",
    data_range: Range = (0.0, 1.0),
) -> Callable[..., Any]:
    r"""Adversarial training (Madry et al., 2018) as a loss for :func:`fdl.fit.fit`:

    .. math::

        \min_\theta\; \frac1B \sum_{i} \max_{\lVert\delta_i\rVert \le \varepsilon}
            L\bigl(f_\theta(x_i + \delta_i), y_i\bigr)

    where the inner maximum is approximated by :func:`pgd` from a random start (the step's key),
    run on the model in evaluation mode with the current parameters, and held fixed
    (``stop_gradient``) while the outer loss, the cross-entropy of ``model`` in training mode on
    the attacked batch, is differentiated: Danskin's theorem makes that the gradient of the max.

    Returns ``loss_fn(params, layer_state, (x, y), key) -> (loss, (layer_state, {"accuracy"}))``,
    :data:`fdl.train.LOSS_SIGNATURE`, with ``accuracy`` on the attacked batch, and the model and
    label check of :func:`fdl.fit.classification_loss`.

    Raises:
        ValueError: as :func:`pgd`, for the attack's settings.
    """
    from fdl.fit import classification_loss  # fdl.fit imports the layers

    epsilon = _check_epsilon(epsilon)
    steps = check_positive_int("steps", steps)
    step_size = check_positive_finite("step_size", step_size, none_means="2.5 epsilon / steps")
    norm = check_choice("norm", norm, NORMS)
    data_range = _check_range(data_range)
    clean_loss = classification_loss(model)

    def loss_fn(params: Any, layer_state: Any, batch: Any, key: jax.Array) -> Any:
        x, y = batch
        attack_key, step_key = jax.random.split(key)

        def logits_fn(inputs: jax.Array) -> jax.Array:
            return model.apply(params, layer_state, inputs, train=False)[0]

        x_adv = pgd(
            logits_fn,
            x,
            y,
            epsilon,
            steps=steps,
            step_size=step_size,
            norm=norm,
            key=attack_key,
            data_range=data_range,
        )
        return clean_loss(params, layer_state, (jax.lax.stop_gradient(x_adv), y), step_key)

    loss_fn.model = model  # type: ignore[attr-defined]  # fit reads the initial layer state
    loss_fn.check_data = clean_loss.check_data  # type: ignore[attr-defined]
    return loss_fn
