r"""Normalization layers: layer norm, batch norm and group norm.

All three standardize activations and then apply a learned per-channel affine map,

.. math::

    \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y = \gamma \odot \hat x + \beta,

and differ only in *which* entries share the statistics :math:`\mu, \sigma^2` (channels last,
``C`` is the last axis):

* :func:`LayerNorm`: each position's ``C`` channels (the last axis);
* :func:`BatchNorm`: each channel over every other axis of the call (batch and spatial axes),
  with running averages kept in the layer state for evaluation;
* :func:`GroupNorm`: per example, each group of ``C / G`` channels together with the example's
  spatial axes.

Parameters are ``{"scale": (C,), "bias": (C,)}`` (:math:`\gamma`, :math:`\beta`). Statistics are
computed in at least float32 (a bfloat16 input is upcast for the mean and variance), and the
output is cast back to the compute dtype.

References
----------
* Ba, Kiros & Hinton (2016). Layer Normalization. arXiv:1607.06450.
* Ioffe & Szegedy (2015). Batch Normalization: Accelerating Deep Network Training by Reducing
  Internal Covariate Shift. ICML.
* Wu & He (2018). Group Normalization. ECCV.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fdl import initializers
from fdl._checks import check_positive_int, check_shape
from fdl.nn.dense import _promote
from fdl.nn.layer import Layer, Shape

__all__ = ["BatchNorm", "GroupNorm", "LayerNorm"]


# --------------------------------------------------------------------------------------------
# Shared helpers.


def _check_epsilon(value: Any) -> float:
    """Return ``epsilon`` as a float if it is a finite number >= 0, else raise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"`epsilon` must be a non-negative finite number, got {value!r}")
    return float(value)


def _affine_init(
    key: jax.Array,
    channels: int,
    *,
    use_scale: bool,
    use_bias: bool,
    scale_init: initializers.Initializer,
    bias_init: initializers.Initializer,
    param_dtype: Any,
) -> dict:
    """The parameters ``{"scale": (C,), "bias": (C,)}``, each present only if enabled."""
    scale_key, bias_key = jax.random.split(key)
    params = {}
    if use_scale:
        params["scale"] = scale_init(scale_key, (channels,), param_dtype)
    if use_bias:
        params["bias"] = bias_init(bias_key, (channels,), param_dtype)
    return params


def _dtypes(x: jax.Array, params: dict, dtype: Any) -> tuple[Any, Any]:
    """``(compute, stats)``: the output dtype and the (at least float32) statistics dtype.

    ``compute`` is ``dtype`` if given, else the input's and the parameters' dtypes promoted on
    the standard lattice (a float type: an int input with no parameters computes in float32).
    """
    if dtype is not None:
        compute = jnp.dtype(dtype)
    else:
        compute = x.dtype
        for leaf in params.values():
            compute = _promote(compute, leaf.dtype)
        if not jnp.issubdtype(compute, jnp.inexact):
            compute = _promote(compute, jnp.float32)
    return compute, _promote(compute, jnp.float32)


def _check_channels(kind: str, name: str, x: jax.Array, channels: int | None) -> None:
    """Raise unless ``x`` has at least one axis and, if known, ``channels`` on the last one."""
    if x.ndim < 1 or (channels is not None and x.shape[-1] != channels):
        expected = "(..., C)" if channels is None else f"(..., {channels})"
        raise ValueError(
            f"{kind} layer {name!r} expects inputs of shape {expected} (channels last), "
            f"got shape {x.shape}"
        )


def _param_channels(params: dict) -> int | None:
    """The channel count ``C`` read from the parameters (``None`` when there are none)."""
    for leaf in params.values():
        return leaf.shape[0]
    return None


def _affine(x_hat: jax.Array, params: dict, stats: Any) -> jax.Array:
    r""":math:`\gamma \odot \hat x + \beta` along the last axis, in the statistics dtype."""
    if "scale" in params:
        x_hat = x_hat * jnp.broadcast_to(params["scale"].astype(stats), x_hat.shape)
    if "bias" in params:
        x_hat = x_hat + jnp.broadcast_to(params["bias"].astype(stats), x_hat.shape)
    return x_hat


# --------------------------------------------------------------------------------------------
# Layer norm.


def LayerNorm(
    *,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: initializers.Initializer | None = None,
    bias_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str = "layer_norm",
) -> Layer:
    r"""Layer normalization over the last axis (Ba et al., 2016).

    For each position (every index of the leading axes) the ``C`` entries of the last axis are
    standardized with their own mean and biased variance, then scaled and shifted:

    .. math::

        \mu = \frac{1}{C} \sum_{c=1}^{C} x_{\ldots c}, \qquad
        \sigma^2 = \frac{1}{C} \sum_{c=1}^{C} (x_{\ldots c} - \mu)^2, \qquad
        y_{\ldots c} = \gamma_c \, \frac{x_{\ldots c} - \mu}{\sqrt{\sigma^2 + \epsilon}}
            + \beta_c

    Shapes: ``x`` and ``y`` are ``(*batch, *rest, C)``; ``scale`` (:math:`\gamma`) and ``bias``
    (:math:`\beta`) are ``(C,)``. No statistic crosses examples, so the layer is stateless,
    behaves the same in training and evaluation, and ``jax.vmap`` equals the batched call.

    Args:
      epsilon: :math:`\epsilon \ge 0`, added to the variance inside the square root.
      use_scale: learn :math:`\gamma` (else :math:`\gamma = 1` and ``params`` has no ``scale``).
      use_bias: learn :math:`\beta` (else :math:`\beta = 0` and ``params`` has no ``bias``).
      scale_init: initializer of ``scale``; default ones.
      bias_init: initializer of ``bias``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the output; ``None`` promotes the input's and the parameters' dtypes.
        The mean and variance are computed in at least float32 whatever ``dtype`` is.
      name: the name shown in error messages.

    Returns:
      A stateless :class:`~fdl.nn.Layer` with ``params = {"scale": (C,), "bias": (C,)}``.

    Raises:
      ValueError: negative ``epsilon`` (at construction); an input with no axis (at ``init``);
        an input whose last axis is not the ``C`` of ``init`` (at ``apply``, naming the layer and
        the shape).

    Differs from PyTorch: ``torch.nn.LayerNorm(normalized_shape)`` can normalize over several
    trailing axes and its affine parameters then have that whole shape; fdl normalizes the last
    axis only (the transformer case). Same :math:`\epsilon` placement (inside the root) and
    default ``1e-5``; Flax's ``LayerNorm`` defaults to ``epsilon=1e-6``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.normalization import LayerNorm
    >>> layer = LayerNorm(epsilon=0.0)
    >>> params, state, shape = layer.init(jax.random.key(0), (4,))
    >>> y, _ = layer.apply(params, state, jnp.array([1.0, 2.0, 3.0, 4.0]))
    >>> [round(v, 4) for v in y.tolist()]
    [-1.3416, -0.4472, 0.4472, 1.3416]
    """
    epsilon = _check_epsilon(epsilon)
    scale_init = initializers.ones() if scale_init is None else scale_init
    bias_init = initializers.zeros() if bias_init is None else bias_init

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = check_shape("input_shape", input_shape)
        if len(shape) < 1:
            raise ValueError(
                f"LayerNorm layer {name!r} needs inputs with at least one axis (..., C), "
                f"got input_shape {shape}"
            )
        params = _affine_init(
            key, shape[-1], use_scale=use_scale, use_bias=use_bias, scale_init=scale_init,
            bias_init=bias_init, param_dtype=param_dtype,
        )
        return params, {}, shape

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False):
        del key, train  # deterministic, same in training and evaluation
        x = jnp.asarray(x)
        _check_channels("LayerNorm", name, x, _param_channels(params))
        compute, stats = _dtypes(x, params, dtype)
        xs = x.astype(stats)  # (*batch, C)
        mean = jnp.mean(xs, axis=-1, keepdims=True)  # (*batch, 1)
        centred = xs - jnp.broadcast_to(mean, xs.shape)  # (*batch, C)
        var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)  # (*batch, 1)
        x_hat = centred * jnp.broadcast_to(jax.lax.rsqrt(var + epsilon), xs.shape)
        return _affine(x_hat, params, stats).astype(compute), state

    return Layer(init, apply, name)


# --------------------------------------------------------------------------------------------
# Batch norm.


def _check_momentum(value: Any) -> float:
    """Return ``momentum`` as a float if it is a number in [0, 1], else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"`momentum` must be in [0, 1] (the weight of the new batch, PyTorch's convention), "
            f"got {value!r}"
        )
    return float(value)


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
    name: str = "batch_norm",
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
      name: the name shown in error messages.

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"scale": (C,), "bias": (C,)}`` and
      ``state = {"mean": (C,), "var": (C,)}`` (:math:`\hat\mu`, :math:`\hat\sigma^2`).

    Raises:
      ValueError: ``momentum`` outside ``[0, 1]`` or negative ``epsilon`` (at construction); an
        input with no axis (at ``init``); an input whose last axis differs from the ``C`` of
        ``init``, a missing state, or training with a single entry per channel (:math:`n = 1`,
        where the unbiased variance is undefined) (at ``apply``).

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
    >>> from fdl.nn.normalization import BatchNorm
    >>> layer = BatchNorm(momentum=0.5, epsilon=0.0)
    >>> params, state, shape = layer.init(jax.random.key(0), (1,))
    >>> x = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    >>> y, state = layer.apply(params, state, x, train=True)
    >>> [round(v, 4) for v in y[:, 0].tolist()]
    [-1.3416, -0.4472, 0.4472, 1.3416]
    >>> state["mean"].tolist(), [round(v, 4) for v in state["var"].tolist()]
    ([1.25], [1.3333])
    """
    momentum = _check_momentum(momentum)
    epsilon = _check_epsilon(epsilon)
    scale_init = initializers.ones() if scale_init is None else scale_init
    bias_init = initializers.zeros() if bias_init is None else bias_init
    state_dtype = _promote(param_dtype, jnp.float32)

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = check_shape("input_shape", input_shape)
        if len(shape) < 1:
            raise ValueError(
                f"BatchNorm layer {name!r} needs inputs with at least one axis (..., C), "
                f"got input_shape {shape}"
            )
        channels = shape[-1]
        params = _affine_init(
            key, channels, use_scale=use_scale, use_bias=use_bias, scale_init=scale_init,
            bias_init=bias_init, param_dtype=param_dtype,
        )
        state = {
            "mean": jnp.zeros((channels,), state_dtype),
            "var": jnp.ones((channels,), state_dtype),
        }
        return params, state, shape

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False):
        del key  # deterministic
        if not isinstance(state, dict) or set(state) != {"mean", "var"}:
            raise ValueError(
                f"BatchNorm layer {name!r} needs the state {{'mean', 'var'}} returned by init, "
                f"got {state!r}"
            )
        x = jnp.asarray(x)
        _check_channels("BatchNorm", name, x, state["mean"].shape[0])
        compute, stats = _dtypes(x, params, dtype)
        stats = _promote(stats, state["mean"].dtype)
        xs = x.astype(stats)  # (*batch, *spatial, C)
        axes = tuple(range(x.ndim - 1))  # every axis but the channels
        if train:
            n = math.prod(x.shape[:-1])
            if n < 2:
                raise ValueError(
                    f"BatchNorm layer {name!r} needs more than one value per channel in "
                    f"training (the unbiased variance divides by n - 1), got input shape "
                    f"{x.shape}; train on a batch, or call with train=False"
                )
            mean = jnp.mean(xs, axis=axes)  # (C,)
            var = jnp.mean(jnp.square(xs - jnp.broadcast_to(mean, xs.shape)), axis=axes)  # (C,)
            batch_mean, batch_var = jax.lax.stop_gradient((mean, var * (n / (n - 1))))
            new_state = {
                k: ((1.0 - momentum) * state[k].astype(stats) + momentum * v).astype(
                    state[k].dtype
                )
                for k, v in (("mean", batch_mean), ("var", batch_var))
            }
        else:
            mean = state["mean"].astype(stats)  # (C,)
            var = state["var"].astype(stats)  # (C,)
            new_state = state
        inv = jax.lax.rsqrt(var + epsilon)  # (C,)
        x_hat = (xs - jnp.broadcast_to(mean, xs.shape)) * jnp.broadcast_to(inv, xs.shape)
        return _affine(x_hat, params, stats).astype(compute), new_state

    return Layer(init, apply, name)


# --------------------------------------------------------------------------------------------
# Group norm.


def GroupNorm(
    num_groups: int,
    *,
    ndim: int = 3,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: initializers.Initializer | None = None,
    bias_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str = "group_norm",
) -> Layer:
    r"""Group normalization (Wu & He, 2018): per example, groups of channels are standardized
    together with the example's spatial axes.

    An example has ``ndim`` axes ``(*spatial, C)`` (``ndim=3`` for NHWC images ``(H, W, C)``,
    2 for sequences ``(T, C)``, 1 for vectors ``(C,)``). The ``C`` channels are split into
    :math:`G` = ``num_groups`` contiguous groups of :math:`C / G`; for group :math:`g` with
    channel set :math:`S_g = \{g C/G, \ldots, (g + 1) C/G - 1\}` and :math:`P` spatial positions
    :math:`p`,

    .. math::

        \mu_g = \frac{G}{P\,C} \sum_{p} \sum_{c \in S_g} x_{p c}, \qquad
        \sigma^2_g = \frac{G}{P\,C} \sum_{p} \sum_{c \in S_g} (x_{p c} - \mu_g)^2, \qquad
        y_{p c} = \gamma_c \, \frac{x_{p c} - \mu_g}{\sqrt{\sigma^2_g + \epsilon}} + \beta_c
        \quad (c \in S_g).

    :math:`G = 1` normalizes each example over all its entries (LayerNorm over the whole
    example); :math:`G = C` is instance normalization. No statistic crosses examples: the layer
    is stateless, the same in training and evaluation, and ``jax.vmap`` equals the batched call.

    Args:
      num_groups: :math:`G`, a positive divisor of the channel count ``C``.
      ndim: the number of axes of one example, channels included (the axes left of them are
        batch axes); ``init`` checks ``len(input_shape) == ndim``.
      epsilon: :math:`\epsilon \ge 0`, added to the variance inside the square root.
      use_scale: learn :math:`\gamma` (else :math:`\gamma = 1` and ``params`` has no ``scale``).
      use_bias: learn :math:`\beta` (else :math:`\beta = 0` and ``params`` has no ``bias``).
      scale_init: initializer of ``scale``; default ones.
      bias_init: initializer of ``bias``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the output; ``None`` promotes the input's and the parameters' dtypes.
        Statistics are computed in at least float32.
      name: the name shown in error messages.

    Returns:
      A stateless :class:`~fdl.nn.Layer` with ``params = {"scale": (C,), "bias": (C,)}``.

    Raises:
      ValueError: ``num_groups`` or ``ndim`` not a positive int, or negative ``epsilon`` (at
        construction); ``input_shape`` without ``ndim`` axes or ``num_groups`` not dividing
        ``C`` (at ``init``); an input with fewer than ``ndim`` axes or another ``C`` (at
        ``apply``).

    Differs from PyTorch: ``torch.nn.GroupNorm(num_groups, num_channels)`` takes channels at
    axis 1 and exactly one batch axis; fdl is channels-last, takes ``C`` from ``init`` and needs
    ``ndim`` to tell batch axes from spatial ones (as ``Flatten`` does). Same grouping (contiguous
    channels), biased variance and :math:`\epsilon = 10^{-5}`. Flax's ``GroupNorm`` defaults to
    ``num_groups=32`` and ``epsilon=1e-6``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.normalization import GroupNorm
    >>> layer = GroupNorm(2, ndim=1, epsilon=0.0)
    >>> params, state, shape = layer.init(jax.random.key(0), (4,))
    >>> y, _ = layer.apply(params, state, jnp.array([1.0, 3.0, 10.0, 20.0]))
    >>> y.tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    check_positive_int("num_groups", num_groups)
    check_positive_int("ndim", ndim)
    epsilon = _check_epsilon(epsilon)
    scale_init = initializers.ones() if scale_init is None else scale_init
    bias_init = initializers.zeros() if bias_init is None else bias_init

    def check_groups(channels: int) -> None:
        if channels % num_groups:
            raise ValueError(
                f"GroupNorm layer {name!r}: `num_groups` ({num_groups}) must divide the channel "
                f"count C ({channels})"
            )

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = check_shape("input_shape", input_shape)
        if len(shape) != ndim:
            raise ValueError(
                f"GroupNorm layer {name!r} with ndim={ndim} expects per-example input_shape "
                f"with {ndim} axes (*spatial, C), got input_shape {shape}; pass "
                f"ndim={len(shape)} for examples of that shape"
            )
        check_groups(shape[-1])
        params = _affine_init(
            key, shape[-1], use_scale=use_scale, use_bias=use_bias, scale_init=scale_init,
            bias_init=bias_init, param_dtype=param_dtype,
        )
        return params, {}, shape

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False):
        del key, train  # deterministic, same in training and evaluation
        x = jnp.asarray(x)
        channels = _param_channels(params)
        if x.ndim < ndim or (channels is not None and x.shape[-1] != channels):
            expected = "C" if channels is None else str(channels)
            raise ValueError(
                f"GroupNorm layer {name!r} with ndim={ndim} expects inputs of shape "
                f"(*batch, {', '.join(['...'] * (ndim - 1) + [expected])}), got shape {x.shape}"
            )
        channels = x.shape[-1]
        check_groups(channels)
        compute, stats = _dtypes(x, params, dtype)
        grouped = x.astype(stats).reshape(
            x.shape[:-1] + (num_groups, channels // num_groups)
        )  # (*batch, *spatial, G, C/G)
        first = x.ndim - ndim  # the first spatial axis (or the group axis when ndim == 1)
        axes = tuple(range(first, x.ndim - 1)) + (x.ndim,)  # spatial axes and C/G
        mean = jnp.mean(grouped, axis=axes, keepdims=True)  # (*batch, 1.., G, 1)
        centred = grouped - jnp.broadcast_to(mean, grouped.shape)
        var = jnp.mean(jnp.square(centred), axis=axes, keepdims=True)  # (*batch, 1.., G, 1)
        x_hat = centred * jnp.broadcast_to(jax.lax.rsqrt(var + epsilon), grouped.shape)
        x_hat = x_hat.reshape(x.shape)  # (*batch, *spatial, C)
        return _affine(x_hat, params, stats).astype(compute), state

    return Layer(init, apply, name)
