"""One jitted GAN step: n discriminator updates, then one generator update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import (
    check_choice,
    check_instance,
    check_non_negative_finite,
    check_optimizer,
    check_positive_int,
    check_prng_key,
    check_shape,
)
from fdl.gan.losses import LOSSES, discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from fdl.nn.layer import Layer
from fdl.train import TrainState, init_state, make_step

__all__ = ["GANState", "GAN", "make_gan_step"]

PyTree = Any


# ---------------------------------------------------------------------------------- the step


class GANState(NamedTuple):
    """Both players' training states, a pytree: each a :class:`fdl.train.TrainState` (params,
    layer state, optimizer state, step count)."""

    generator: TrainState
    discriminator: TrainState


class GAN(NamedTuple):
    """What :func:`make_gan_step` returns.

    Attributes:
        init: ``init(key, data_shape) -> GANState``: both models initialized (the generator on
            ``(latent_dim,)``, the discriminator on ``data_shape``, one example's shape), their
            optimizer states, step counts 0.
        step: ``step(state, real, key) -> (state, metrics)``: ``n_critic`` discriminator steps
            then one generator step; ``real`` is ``(n_critic, B, *data_shape)``, one batch per
            discriminator step. ``step.pure`` is the same step unjitted (no donation), to
            ``jax.vmap`` over seeds or ``jax.lax.scan`` over steps inside one compiled call.
        sample: ``sample(state, key, num, train=False) -> (num, *data_shape)``: generated
            samples, the generator in evaluation mode unless ``train``.
    """

    init: Callable[[jax.Array, Any], GANState]
    step: Callable[[GANState, Any, jax.Array], tuple[GANState, dict[str, jax.Array]]]
    sample: Callable[..., jax.Array]


def _mismatch(fake_shape: tuple[int, ...], data_shape: tuple[int, ...]) -> ValueError:
    return ValueError(
        f"the generator's output shape {fake_shape} (one example) is not the discriminator's "
        f"input shape {data_shape}: the generator must make samples shaped like the real data"
    )


def make_gan_step(
    generator: Layer,
    discriminator: Layer,
    g_optimizer: Any,
    d_optimizer: Any,
    *,
    latent_dim: int,
    loss: str = "non_saturating",
    n_critic: int = 1,
    gp_weight: float = 0.0,
    r1_weight: float = 0.0,
    donate: bool = True,
) -> GAN:
    r"""One jitted GAN training step: ``n_critic`` discriminator steps, then one generator step.

    Each discriminator step :math:`k = 1 \dots n` draws :math:`z \sim \mathcal N(0, I)` of
    shape ``(B, latent_dim)``, makes fakes :math:`\tilde x = G(z)` (held fixed), and takes one
    ``d_optimizer`` step on

    .. math::

        L_D\bigl(d(x^{(k)}), d(\tilde x)\bigr)
            + \lambda\, \mathrm{GP}(x^{(k)}, \tilde x) + \tfrac{\gamma}{2}\, R_1(x^{(k)})

    (:func:`discriminator_loss`, :func:`gradient_penalty` with :math:`\lambda` =
    ``gp_weight``, :func:`r1_penalty` with :math:`\gamma` = ``r1_weight``; a zero weight skips
    its penalty) with the real batch :math:`x^{(k)}` = ``real[k - 1]``. The generator step then
    draws a new :math:`z` and takes one ``g_optimizer`` step on :math:`L_G(d(G(z)))`
    (:func:`generator_loss`) against the updated discriminator. WGAN-GP is ``loss="wasserstein",
    n_critic=5, gp_weight=10`` (Gulrajani et al., 2017).

    Each update is :func:`fdl.train.make_step`'s, so any optax-style optimizer works, and both
    models run in training mode throughout. **Layer state** (batch norm's running statistics)
    is threaded: the generator's through every call that makes fakes (each discriminator step
    and the generator step), the discriminator's through its own steps (the real batch first,
    then the fakes, as two calls: batch norm normalizes each with its own statistics). In the
    generator step the discriminator uses batch statistics but keeps its running ones: its
    state changes only in its own steps. The penalties call the critic with the layer state
    the step started from and drop the state it returns.

    **Keys.** ``keys = jax.random.split(key, n_critic + 1)``. Discriminator step ``k`` splits
    ``keys[k]`` into ``(latent, generator, discriminator)``; the discriminator's key is split
    into ``(real, fake, interpolation, penalty)`` for the two calls, the GP's :math:`\epsilon`
    and the penalties' critic calls. The generator step splits ``keys[n_critic]`` into
    ``(latent, step)`` and ``step`` into ``(generator, discriminator)``.

    Args:
        generator: a layer ``(latent_dim,) -> data_shape``.
        discriminator: a layer ``data_shape -> ()`` or ``(1,)``: one logit per example.
        g_optimizer, d_optimizer: optax-style ``(init, update)`` pairs, one per player.
        latent_dim: the size of :math:`z`.
        loss: one of :data:`LOSSES`.
        n_critic: discriminator steps per generator step (``>= 1``).
        gp_weight: :math:`\lambda \ge 0`, the weight of :func:`gradient_penalty`.
        r1_weight: :math:`\gamma \ge 0`; :math:`\gamma / 2` weights :func:`r1_penalty`.
        donate: donate the state's buffers to the step (XLA updates them in place; the state
            passed in is then consumed: use the returned one).

    Returns:
        A :class:`GAN` ``(init, step, sample)``. ``step``'s metrics: ``d_loss`` (the penalized
        loss), ``real_logit`` and ``fake_logit`` (mean logits), and ``gradient_penalty`` and
        ``r1`` when weighted, each the mean over the ``n_critic`` discriminator steps;
        ``g_loss`` from the generator step.

    Raises:
        ValueError: an unknown ``loss``, ``n_critic < 1``, a negative or non-finite weight,
            ``latent_dim < 1``; at ``init``, or when the step is first traced, a generator
            whose output shape is not the discriminator's input shape, a discriminator that
            does not output one logit per example, ``real`` not ``(n_critic, B, *data_shape)``.
        TypeError: a model that is not an :class:`fdl.nn.Layer`, an optimizer without
            ``init``/``update``.

    >>> import jax, fdl
    >>> from fdl.gan import make_gan_step
    >>> gan = make_gan_step(fdl.nn.MLP((16, 2)), fdl.nn.MLP((16, 1)), fdl.optim.adam(1e-3),
    ...                     fdl.optim.adam(1e-3), latent_dim=4, loss="hinge", n_critic=2)
    >>> state = gan.init(jax.random.key(0), (2,))
    >>> real = jax.random.normal(jax.random.key(1), (2, 32, 2))  # (n_critic, B, 2)
    >>> state, metrics = gan.step(state, real, jax.random.key(2))
    >>> int(state.discriminator.step), int(state.generator.step), sorted(metrics)
    (2, 1, ['d_loss', 'fake_logit', 'g_loss', 'real_logit'])
    """
    layer = "fdl.nn.Layer (e.g. fdl.nn.MLP((64, 1)))"
    generator = check_instance("generator", generator, Layer, layer)
    discriminator = check_instance("discriminator", discriminator, Layer, layer)
    check_optimizer("make_gan_step", g_optimizer, "g_optimizer")
    check_optimizer("make_gan_step", d_optimizer, "d_optimizer")
    latent_dim = check_positive_int("latent_dim", latent_dim)
    loss = check_choice("loss", loss, LOSSES)
    n_critic = check_positive_int("n_critic", n_critic)
    gp_weight = check_non_negative_finite("gp_weight", gp_weight)
    r1_weight = check_non_negative_finite("r1_weight", r1_weight)

    def init(key: jax.Array, data_shape: Any) -> GANState:
        check_prng_key("key", key)
        data_shape = check_shape("data_shape", data_shape)
        g_key, d_key = jax.random.split(key)
        g_params, g_state, fake_shape = generator.init(g_key, (latent_dim,))
        if tuple(fake_shape) != data_shape:
            raise _mismatch(tuple(fake_shape), data_shape)
        d_params, d_state, logit_shape = discriminator.init(d_key, data_shape)
        if tuple(logit_shape) not in ((), (1,)):
            raise ValueError(
                f"the discriminator must output one logit per example (shape () or (1,)), "
                f"got output shape {tuple(logit_shape)} for input shape {data_shape}"
            )
        return GANState(
            init_state(g_params, g_optimizer, layer_state=g_state),
            init_state(d_params, d_optimizer, layer_state=d_state),
        )

    def d_loss_fn(params: PyTree, layer_state: PyTree, batch: Any, key: jax.Array) -> Any:
        real, fake = batch
        real_key, fake_key, mix_key, penalty_key = jax.random.split(key, 4)
        real_logits, state = discriminator.apply(params, layer_state, real, key=real_key, train=True)
        fake_logits, state = discriminator.apply(params, state, fake, key=fake_key, train=True)
        total = discriminator_loss(real_logits, fake_logits, loss)
        metrics = {
            "real_logit": jnp.mean(real_logits.astype(jnp.float32)),
            "fake_logit": jnp.mean(fake_logits.astype(jnp.float32)),
        }

        def critic(x: jax.Array) -> jax.Array:
            return discriminator.apply(params, layer_state, x, key=penalty_key, train=True)[0]

        if gp_weight > 0:
            metrics["gradient_penalty"] = gradient_penalty(critic, real, fake, mix_key)
            total = total + gp_weight * metrics["gradient_penalty"]
        if r1_weight > 0:
            metrics["r1"] = r1_penalty(critic, real)
            total = total + (0.5 * r1_weight) * metrics["r1"]
        return total, (state, metrics)

    def g_loss_fn(params: PyTree, layer_state: PyTree, batch: Any, key: jax.Array) -> Any:
        z, d_params, d_state = batch
        g_key, d_key = jax.random.split(key)
        fake, state = generator.apply(params, layer_state, z, key=g_key, train=True)
        logits, _ = discriminator.apply(d_params, d_state, fake, key=d_key, train=True)
        return generator_loss(logits, loss), (state, {})

    d_update = make_step(d_loss_fn, d_optimizer)
    g_update = make_step(g_loss_fn, g_optimizer)

    def step(state: GANState, real: Any, key: jax.Array) -> tuple[GANState, dict[str, jax.Array]]:
        real = jnp.asarray(real)
        if real.ndim < 2 or real.shape[0] != n_critic:
            raise ValueError(
                f"`real` must hold one batch per discriminator step, shape (n_critic, B, *data_shape) "
                f"with n_critic={n_critic}, got shape {real.shape}"
            )
        batch = real.shape[1]
        keys = jax.random.split(key, n_critic + 1)
        g = state.generator

        def critic_step(carry: Any, inputs: Any) -> Any:
            d, g_layer_state = carry
            real_k, key_k = inputs
            latent_key, g_key, d_key = jax.random.split(key_k, 3)
            z = jax.random.normal(latent_key, (batch, latent_dim))  # (B, latent_dim)
            fake, g_layer_state = generator.apply(g.params, g_layer_state, z, key=g_key, train=True)
            fake = jax.lax.stop_gradient(fake)
            if fake.shape[1:] != real_k.shape[1:]:
                raise ValueError(
                    f"the generator's output shape {tuple(fake.shape[1:])} (one example) is not the "
                    f"shape of the real examples in `real`, {tuple(real_k.shape[1:])}: the "
                    "discriminator reads both, so the real data must be shaped like the data_shape "
                    "given to init"
                )
            d, metrics, _ = d_update(d, (real_k, fake), d_key)
            return (d, g_layer_state), metrics

        (d, g_layer_state), d_metrics = jax.lax.scan(
            critic_step, (state.discriminator, g.layer_state), (real, keys[:n_critic])
        )
        latent_key, g_key = jax.random.split(keys[n_critic])
        z = jax.random.normal(latent_key, (batch, latent_dim))  # (B, latent_dim)
        g = g._replace(layer_state=g_layer_state)
        g, g_metrics, _ = g_update(g, (z, d.params, d.layer_state), g_key)
        metrics = {name: jnp.mean(value) for name, value in d_metrics.items() if name != "loss"}
        metrics.update(d_loss=jnp.mean(d_metrics["loss"]), g_loss=g_metrics["loss"])
        return GANState(g, d), metrics

    compiled = jax.jit(step, donate_argnums=(0,) if donate else ())

    def checked_step(state: GANState, real: Any, key: jax.Array) -> tuple[GANState, dict[str, jax.Array]]:
        try:
            return compiled(state, real, key)
        except (ValueError, RuntimeError) as error:
            if not donate or (
                "deleted or donated" not in str(error) and "has been deleted" not in str(error)
            ):
                raise
            raise RuntimeError(
                "the GAN step was given a state whose arrays were donated to an earlier call: "
                "pass the state that the last call returned, or build it with donate=False"
            ) from error

    def sample(state: GANState, key: jax.Array, num: int, train: bool = False) -> jax.Array:
        check_prng_key("key", key)
        num = check_positive_int("num", num)
        latent_key, g_key = jax.random.split(key)
        z = jax.random.normal(latent_key, (num, latent_dim))  # (num, latent_dim)
        g = state.generator
        return generator.apply(g.params, g.layer_state, z, key=g_key, train=train)[0]

    checked_step.pure = step  # type: ignore[attr-defined]  # unjitted: to vmap over seeds, or scan
    return GAN(init, checked_step, sample)
