r"""Batch normalization (Ioffe & Szegedy, 2015): each channel standardized over the batch, with
running statistics in the layer state for evaluation.

.. math::

    \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y = \gamma \odot \hat x + \beta

as the other normalization layers (:mod:`fdl.nn.normalization`), with :math:`\mu, \sigma^2`
taken per channel (the last axis) over every other axis of the call.

References:
    Ioffe & Szegedy (2015). Batch Normalization: Accelerating Deep Network Training by Reducing
    Internal Covariate Shift. ICML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes, initializers
from fdl._checks import check_fraction, check_non_negative_finite, check_shape
from fdl.nn import _norm
from fdl.nn.layer import Layer, Shape, layer_factory

__all__ = ["BatchNorm"]


@layer_factory
def BatchNorm(
    *,
    momentum: float = 0.1,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: initializers.Initializer | None = None,
    bias_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""Batch normalization of each channel (the last axis) over all other axes (Ioffe &
    Szegedy, 2015).

    The statistics of channel ``c`` are taken over every axis of the call except the last: the
    leading batch axes and, for images ``(H, W, C)`` or sequences ``(T, C)``, the spatial axes.
    With ``x`` of shape ``(*batch, *spatial, C)`` let :math:`n` be the number of entries per
    channel (the product of all axes but the last). In training (``train=True``)

    .. math::

        \mu_c = \frac{1}{n} \sum_{i} x_{i c}, \qquad
        \sigma^2_c = \frac{1}{n} \sum_{i} (x_{i c} - \mu_c)^2, \qquad
        y_{i c} = \gamma_c \, \frac{x_{i c} - \mu_c}{\sqrt{\sigma^2_c + \epsilon}} + \beta_c,

    the output uses the *biased* batch variance :math:`\sigma^2_c`, gradients flow through
    :math:`\mu_c` and :math:`\sigma^2_c`, and the returned state holds the running averages with
    momentum :math:`m`, the running variance using the *unbiased* batch variance:

    .. math::

        \hat\mu_c \leftarrow (1 - m)\, \hat\mu_c + m\, \mu_c, \qquad
        \hat\sigma^2_c \leftarrow (1 - m)\, \hat\sigma^2_c + m\, \frac{n}{n - 1}\, \sigma^2_c.

    In evaluation (``train=False``, the default) the running statistics replace the batch ones,
    :math:`y_{i c} = \gamma_c (x_{i c} - \hat\mu_c) / \sqrt{\hat\sigma^2_c + \epsilon} + \beta_c`,
    and the state is returned unchanged. The state starts at :math:`\hat\mu = 0`,
    :math:`\hat\sigma^2 = 1` (evaluation before any training step is then nearly the identity).

    The running-average update is a value in the returned state (computed under
    ``jax.lax.stop_gradient``: it carries no gradient), so a training step is
    ``y, state = apply(params, state, x, train=True)``; it works under ``jax.jit``, ``jax.grad``
    and ``jax.lax.scan`` (carry ``(params, state)``) with no ``axis_name`` and no mutation. The
    batch is whatever ``x`` holds: under ``jax.vmap`` over single examples in training each
    example is its own batch, so vmap equals the batched call in evaluation mode only (under
    ``pmap``/sharding, statistics are per device shard unless the caller gathers the batch).
    A padding ``mask`` handed down by a composite is ignored: padded steps of ``(T, C)``
    sequences count in the batch statistics.

    Args:
      momentum: :math:`m \in [0, 1]`, the weight of the *new* batch in the running averages.
      epsilon: :math:`\epsilon \ge 0`, added to the variance inside the square root.
      use_scale: learn :math:`\gamma` (else :math:`\gamma = 1` and ``params`` has no ``scale``).
      use_bias: learn :math:`\beta` (else :math:`\beta = 0` and ``params`` has no ``bias``).
      scale_init: initializer of ``scale``; default ones.
      bias_init: initializer of ``bias``; default zeros.
      param_dtype: dtype of the stored parameters. The running statistics are stored in at least
        float32 (``param_dtype`` promoted with float32).
      dtype: dtype of the output; ``None`` promotes the input's and the parameters' dtypes.
        Statistics are computed in at least float32 whatever ``dtype`` is.
      name: its name in a parent's paths (automatic ``batch_norm_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"scale": (C,), "bias": (C,)}`` and
      ``state = {"mean": (C,), "var": (C,)}`` (:math:`\hat\mu`, :math:`\hat\sigma^2`).

    Raises:
      ValueError: ``momentum`` outside ``[0, 1]`` or negative ``epsilon`` (at construction); an
        input with no axis (at ``init``); a missing ``state`` (``{}`` or ``None``: batch norm
        needs the running statistics ``init`` returned, even in training, where it updates
        them), an input whose last axis differs from the ``C`` of ``init``, or training with a
        single entry per channel (:math:`n = 1`, where the unbiased variance is undefined) (at
        ``apply``).

    Differs from PyTorch: same formulas and defaults as ``torch.nn.BatchNorm1d/2d`` (momentum
    0.1 weighting the new batch, unbiased running variance, biased variance to normalize,
    :math:`\epsilon = 10^{-5}`), so a trained PyTorch model's ``running_mean``/``running_var``
    port unchanged; fdl keeps no ``num_batches_tracked`` (PyTorch uses it only for
    ``momentum=None``). Channels are last (PyTorch: axis 1).

    Differs from Flax: ``flax.linen.BatchNorm`` writes
    :math:`\hat\mu \leftarrow m_{\text{flax}} \hat\mu + (1 - m_{\text{flax}}) \mu` with
    :math:`m_{\text{flax}} = 0.99` and the *biased* variance in the running average; fdl's
    ``momentum=m`` matches Flax's ``momentum=1 - m`` up to the factor :math:`n / (n - 1)` on the
    variance. Flax's ``use_running_average`` is fdl's ``not train``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.BatchNorm(momentum=0.5, epsilon=0.0)
    >>> params, state, shape = layer.init(jax.random.key(0), (1,))
    >>> x = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    >>> y, state = layer.apply(params, state, x, train=True)
    >>> [round(v, 4) for v in y[:, 0].tolist()]
    [-1.3416, -0.4472, 0.4472, 1.3416]
    >>> state["mean"].tolist(), [round(v, 4) for v in state["var"].tolist()]
    ([1.25], [1.3333])
    """
    momentum = check_fraction("momentum", momentum, "the weight of the new batch, PyTorch's convention")
    epsilon = check_non_negative_finite("epsilon", epsilon)
    scale_init = initializers.ones() if scale_init is None else scale_init
    bias_init = initializers.zeros() if bias_init is None else bias_init
    state_dtype = _dtypes.promote_types(param_dtype, jnp.float32)

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = check_shape("input_shape", input_shape)
        if len(shape) < 1:
            raise ValueError(
                f"BatchNorm needs inputs with at least one axis (..., C), got input_shape {shape}"
            )
        channels = shape[-1]
        params = _norm.affine_init(
            key,
            (channels,),
            use_scale=use_scale,
            use_bias=use_bias,
            scale_init=scale_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
        )
        state = {
            "mean": jnp.zeros((channels,), state_dtype),
            "var": jnp.ones((channels,), state_dtype),
        }
        return params, state, shape

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, mask  # deterministic; padded time steps count in the batch statistics too
        if not isinstance(state, Mapping) or set(state) != {"mean", "var"}:
            got = "{}" if isinstance(state, Mapping) and not state else repr(state)
            raise ValueError(
                f"BatchNorm needs its running statistics in `state`, the dict "
                f"{{'mean': (C,), 'var': (C,)}} that `init` returns (params, state, shape = "
                f"layer.init(key, input_shape)), got state={got}"
            )
        x = jnp.asarray(x)
        _norm.check_channels("BatchNorm", x, state["mean"].shape[0])
        compute, stats = _dtypes.compute_and_stats(x, params, dtype)
        stats = _dtypes.promote_types(stats, state["mean"].dtype)
        xs = x.astype(stats)  # (*batch, *spatial, C)
        axes = tuple(range(x.ndim - 1))  # every axis but the channels
        if train:
            n = math.prod(x.shape[:-1])
            if n < 2:
                raise ValueError(
                    f"BatchNorm needs more than one value per channel in "
                    f"training (the unbiased variance divides by n - 1), got input shape "
                    f"{x.shape}; train on a batch, or call with train=False"
                )
            mean = jnp.mean(xs, axis=axes)  # (C,)
            var = jnp.mean(jnp.square(xs - jnp.broadcast_to(mean, xs.shape)), axis=axes)  # (C,)
            batch_mean, batch_var = jax.lax.stop_gradient((mean, var * (n / (n - 1))))
            new_state: Mapping[str, Any] = {
                k: ((1.0 - momentum) * state[k].astype(stats) + momentum * v).astype(state[k].dtype)
                for k, v in (("mean", batch_mean), ("var", batch_var))
            }
        else:
            mean = state["mean"].astype(stats)  # (C,)
            var = state["var"].astype(stats)  # (C,)
            new_state = state
        inv = jax.lax.rsqrt(var + epsilon)  # (C,)
        x_hat = (xs - jnp.broadcast_to(mean, xs.shape)) * jnp.broadcast_to(inv, xs.shape)
        return _norm.affine(x_hat, params, stats).astype(compute), new_state

    return Layer(init, apply)
