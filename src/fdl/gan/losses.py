"""The GAN losses on logits, and the gradient penalties (WGAN-GP, R1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import (
    check_choice,
    check_prng_key,
)

__all__ = ["LOSSES", "discriminator_loss", "generator_loss", "interpolate", "gradient_penalty", "r1_penalty"]

#: The loss names :func:`discriminator_loss`, :func:`generator_loss` and :func:`fdl.gan.make_gan_step` take.
LOSSES = ("minimax", "non_saturating", "least_squares", "hinge", "wasserstein")
PyTree = Any
CriticFn = Callable[[jax.Array], jax.Array]


# ------------------------------------------------------------------------------------ losses


def _logits(name: str, logits: Any) -> jax.Array:
    logits = jnp.asarray(logits)
    if not jnp.issubdtype(logits.dtype, jnp.floating) or not (
        logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1)
    ):
        raise ValueError(
            f"`{name}` must be float logits of shape (B,) or (B, 1), one per example, "
            f"got dtype {logits.dtype} and shape {logits.shape}"
        )
    return logits.reshape(-1)  # (B,)


def discriminator_loss(real_logits: Any, fake_logits: Any, loss: str = "non_saturating") -> jax.Array:
    r"""The discriminator's loss on a batch of real and a batch of generated samples.

    With :math:`r_i = d(x_i)` the logits of real samples, :math:`f_j = d(G(z_j))` those of
    fakes, :math:`\mathbb E` the batch mean and :math:`\operatorname{softplus}(t) = \log(1 +
    e^t)` (so :math:`-\log\sigma(t) = \operatorname{softplus}(-t)`):

    .. math::

        \begin{aligned}
        \text{minimax, non\_saturating:}\quad & \mathbb E\,\operatorname{softplus}(-r)
            + \mathbb E\,\operatorname{softplus}(f)
            = -\mathbb E \log\sigma(r) - \mathbb E\log\bigl(1 - \sigma(f)\bigr) \\
        \text{least\_squares:}\quad & \tfrac12\,\mathbb E\,(r - 1)^2 + \tfrac12\,\mathbb E\,f^2 \\
        \text{hinge:}\quad & \mathbb E\,\max(0, 1 - r) + \mathbb E\,\max(0, 1 + f) \\
        \text{wasserstein:}\quad & \mathbb E\,f - \mathbb E\,r
        \end{aligned}

    The first is the binary cross-entropy of Goodfellow et al. (2014), written on logits so
    that it stays finite where :math:`\sigma` saturates. Least squares uses Mao et al.'s
    (2017) targets :math:`a = 0` (fake), :math:`b = 1` (real). The hinge loss is that of Lim &
    Ye (2017) and Miyato et al. (2018). The Wasserstein critic (Arjovsky et al., 2017)
    maximizes :math:`\mathbb E\,r - \mathbb E\,f`; it needs a Lipschitz constraint, e.g.
    :func:`gradient_penalty`.

    Args:
        real_logits: ``(B,)`` or ``(B, 1)`` logits of real samples.
        fake_logits: ``(B',)`` or ``(B', 1)`` logits of generated samples.
        loss: one of :data:`LOSSES`.

    Returns:
        The scalar loss.

    Raises:
        ValueError: an unknown ``loss``; logits that are not one float per example.

    >>> import jax.numpy as jnp
    >>> float(discriminator_loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 2.0]), "wasserstein"))
    -1.0
    """
    loss = check_choice("loss", loss, LOSSES)
    r, f = _logits("real_logits", real_logits), _logits("fake_logits", fake_logits)
    if loss in ("minimax", "non_saturating"):
        return jnp.mean(jax.nn.softplus(-r)) + jnp.mean(jax.nn.softplus(f))
    if loss == "least_squares":
        return 0.5 * jnp.mean(jnp.square(r - 1)) + 0.5 * jnp.mean(jnp.square(f))
    if loss == "hinge":
        return jnp.mean(jax.nn.relu(1 - r)) + jnp.mean(jax.nn.relu(1 + f))
    return jnp.mean(f) - jnp.mean(r)


def generator_loss(fake_logits: Any, loss: str = "non_saturating") -> jax.Array:
    r"""The generator's loss on the discriminator's logits :math:`f_j = d(G(z_j))` of its samples.

    .. math::

        \begin{aligned}
        \text{minimax:}\quad & \mathbb E \log\bigl(1 - \sigma(f)\bigr)
            = -\mathbb E\,\operatorname{softplus}(f) \\
        \text{non\_saturating:}\quad & -\mathbb E\log\sigma(f) = \mathbb E\,\operatorname{softplus}(-f) \\
        \text{least\_squares:}\quad & \tfrac12\,\mathbb E\,(f - 1)^2 \\
        \text{hinge, wasserstein:}\quad & -\mathbb E\,f
        \end{aligned}

    ``"minimax"`` is the generator's side of Goodfellow et al.'s (2014) two-player game
    :math:`\min_G \max_D V(D, G)`; its gradient vanishes when the discriminator confidently
    rejects the fakes (:math:`\sigma(f) \to 0`), early in training. ``"non_saturating"`` is the
    same paper's fix, maximizing :math:`\log D(G(z))` instead. Least squares pulls the fakes'
    logits to the real target :math:`c = 1` (Mao et al., 2017); the hinge (Lim & Ye, 2017;
    Miyato et al., 2018) and Wasserstein (Arjovsky et al., 2017) generators raise the critic's
    score of their samples.

    Args:
        fake_logits: ``(B,)`` or ``(B, 1)`` logits of generated samples.
        loss: one of :data:`LOSSES`.

    Returns:
        The scalar loss.

    Raises:
        ValueError: an unknown ``loss``; logits that are not one float per example.

    >>> import jax.numpy as jnp
    >>> float(generator_loss(jnp.array([1.0, 3.0]), "least_squares"))  # (0 + 4) / 2 / 2
    1.0
    """
    loss = check_choice("loss", loss, LOSSES)
    f = _logits("fake_logits", fake_logits)
    if loss == "minimax":
        return -jnp.mean(jax.nn.softplus(f))
    if loss == "non_saturating":
        return jnp.mean(jax.nn.softplus(-f))
    if loss == "least_squares":
        return 0.5 * jnp.mean(jnp.square(f - 1))
    return -jnp.mean(f)


# --------------------------------------------------------------------------------- penalties


def _input_gradients(critic_fn: CriticFn, x: jax.Array) -> jax.Array:
    """``(B, ...)``: each example's gradient of its logit, as the gradient of their sum.

    Exact when the critic treats the examples of a batch independently (no batch norm in
    training mode), as the penalties' papers require of their critics. Raises unless the
    critic returns one logit per example, ``(B,)`` or ``(B, 1)``: a batch mean or several
    outputs per example would silently scale or mix the gradients."""
    out = jax.eval_shape(critic_fn, x)
    if not hasattr(out, "shape") or tuple(out.shape) not in ((x.shape[0],), (x.shape[0], 1)):
        got = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise ValueError(
            f"`critic_fn` must return one logit per example, shape ({x.shape[0]},) or "
            f"({x.shape[0]}, 1) for a batch of shape {x.shape}, got {got}"
        )
    return jax.grad(lambda x: jnp.sum(critic_fn(x)))(x)


def _squared_norms(g: jax.Array) -> jax.Array:
    """``(B,)``: each example's squared :math:`L_2` norm over all its axes."""
    return jnp.sum(jnp.square(g), axis=tuple(range(1, g.ndim)))


def interpolate(key: jax.Array, real: Any, fake: Any) -> jax.Array:
    r"""Random points on the segments between real and generated samples, one per pair:
    :math:`\hat x_i = \epsilon_i x_i + (1 - \epsilon_i)\, \tilde x_i` with
    :math:`\epsilon_i \sim U[0, 1]` drawn once per example (Gulrajani et al., 2017).

    Args:
        key: a PRNG key for the :math:`\epsilon_i`.
        real: ``(B, ...)`` real samples :math:`x`.
        fake: ``(B, ...)`` generated samples :math:`\tilde x`, the same shape.

    Raises:
        ValueError: ``real`` and ``fake`` of different shapes; ``key`` not a PRNG key.
    """
    check_prng_key("key", key)
    real, fake = jnp.asarray(real), jnp.asarray(fake)
    if real.shape != fake.shape or real.ndim < 1:
        raise ValueError(
            f"`real` and `fake` must be batches (B, ...) of the same shape, got {real.shape} and {fake.shape}"
        )
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)  # (B, 1, ..., 1)
    return eps * real + (1 - eps) * fake


def gradient_penalty(critic_fn: CriticFn, real: Any, fake: Any, key: jax.Array) -> jax.Array:
    r"""WGAN-GP's two-sided gradient penalty (Gulrajani et al., 2017), without its weight:

    .. math::

        \mathrm{GP} = \mathbb E_i\Bigl(\bigl\lVert \nabla_{\hat x}\, d(\hat x_i)\bigr\rVert_2
            - 1\Bigr)^2, \qquad \hat x = \mathrm{interpolate}(x, \tilde x)

    with the interpolates of :func:`interpolate` and the norm over all of an example's axes.
    It keeps the critic near 1-Lipschitz on the segments between the two distributions, where
    the optimal Wasserstein critic has unit gradient norm. The paper weights it by
    :math:`\lambda = 10`; :func:`make_gan_step` takes that weight as ``gp_weight``.

    The per-example gradients are taken as the gradient of the summed logits, exact when the
    critic treats examples independently: the paper drops batch norm from the critic for that
    reason (use layer norm, or none). The norm's gradient at a zero gradient is taken as 0.

    Args:
        critic_fn: ``x (B, ...) -> logits (B,)`` or ``(B, 1)``.
        real, fake: ``(B, ...)`` real and generated samples.
        key: a PRNG key for the interpolation.

    Returns:
        The scalar penalty.

    Raises:
        ValueError: ``real`` and ``fake`` of different shapes, or a critic that does not
        return one logit per example.

    >>> import jax, jax.numpy as jnp
    >>> critic = lambda x: 3.0 * x[:, 0] + 4.0 * x[:, 1]  # gradient norm 5 everywhere
    >>> x = jnp.zeros((4, 2))
    >>> float(gradient_penalty(critic, x, x + 1.0, jax.random.key(0)))  # (5 - 1)^2
    16.0
    """
    x_hat = interpolate(key, real, fake)
    squared = _squared_norms(_input_gradients(critic_fn, x_hat))  # (B,)
    positive = squared > 0
    norms = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1)), 0)  # a finite gradient at 0
    return jnp.mean(jnp.square(norms - 1))


def r1_penalty(critic_fn: CriticFn, real: Any) -> jax.Array:
    r"""The R1 penalty (Mescheder et al., 2018) on real data, without its weight:

    .. math::

        R_1 = \mathbb E_i\,\bigl\lVert \nabla_x\, d(x_i)\bigr\rVert_2^2

    It penalizes the discriminator's gradient on the data, which makes the GAN's training
    dynamics locally convergent near an equilibrium where the generator matches the data. The
    paper adds :math:`\tfrac{\gamma}{2} R_1` to the discriminator's loss; :func:`make_gan_step`
    takes :math:`\gamma` as ``r1_weight``. Per-example gradients as in
    :func:`gradient_penalty`.

    Args:
        critic_fn: ``x (B, ...) -> logits (B,)`` or ``(B, 1)``.
        real: ``(B, ...)`` real samples.

    Returns:
        The scalar penalty.

    Raises:
        ValueError: a critic that does not return one logit per example.

    >>> import jax.numpy as jnp
    >>> float(r1_penalty(lambda x: jnp.sum(x**2, axis=1), jnp.array([[1.0, 0.0], [0.0, 2.0]])))  # (4 + 16) / 2
    10.0
    """
    real = jnp.asarray(real)
    return jnp.mean(_squared_norms(_input_gradients(critic_fn, real)))
