r"""Per-example normalization layers: layer norm, RMS norm and group norm.

Each standardizes a block of entries of one example with that block's own statistics, then
applies a learned elementwise affine map,

.. math::

    \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y = \gamma \odot \hat x + \beta

(RMS norm divides by the root mean square instead and has no :math:`\mu` and no
:math:`\beta`). They differ in *which* entries share the statistics:

* :func:`LayerNorm`: the last ``ndim`` axes of each position (``ndim=1``: its ``C``
  channels, the transformer case);
* :func:`RMSNorm`: the same blocks, by the root mean square;
* :func:`GroupNorm`: per example, each group of ``C / G`` channels together with the example's
  spatial axes.

No statistic crosses examples, so all three are stateless, behave the same in training and
evaluation, and ``jax.vmap`` equals the batched call. :func:`fdl.nn.BatchNorm`
(:mod:`fdl.nn.batch_norm`) shares statistics across the batch instead. Statistics are computed
in at least float32 (a bfloat16 input is upcast for the mean and variance), and the output is
cast back to the compute dtype.

References:
    Ba, Kiros & Hinton (2016). Layer Normalization. arXiv:1607.06450.
    Zhang & Sennrich (2019). Root Mean Square Layer Normalization. NeurIPS.
    Wu & He (2018). Group Normalization. ECCV.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes, initializers
from fdl._checks import check_non_negative_finite, check_positive_int, check_shape
from fdl.nn import _norm
from fdl.nn.layer import Layer, Shape, layer_factory

__all__ = ["GroupNorm", "LayerNorm", "RMSNorm"]


# --------------------------------------------------------------------------------------------
# Layer norm and RMS norm: statistics over the last `ndim` axes.


def _expected(ndim: int, shape: Shape | None) -> str:
    """``"(..., C)"``, ``"(..., d1, d2)"``, or with the normalized shape known ``"(..., 3, 4)"``."""
    if shape is None:
        dims = "C" if ndim == 1 else ", ".join(f"d{i}" for i in range(1, ndim + 1))
    else:
        dims = ", ".join(str(d) for d in shape)
    return f"(..., {dims})"


def _trailing_norm(
    kind: str,
    ndim: int,
    epsilon: float | None,
    center: bool,
    use_scale: bool,
    use_bias: bool,
    scale_init: initializers.Initializer,
    bias_init: initializers.Initializer,
    param_dtype: Any,
    dtype: Any,
) -> Layer:
    """Layer norm (``center=True``) or RMS norm over the last ``ndim`` axes; ``epsilon=None`` is
    the machine epsilon of the compute dtype."""

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = check_shape("input_shape", input_shape)
        if len(shape) < ndim:
            raise ValueError(
                f"{kind} with ndim={ndim} needs inputs of shape {_expected(ndim, None)}, "
                f"got input_shape {shape}"
            )
        params = _norm.affine_init(
            key,
            shape[len(shape) - ndim :],
            use_scale=use_scale,
            use_bias=use_bias,
            scale_init=scale_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
        )
        return params, {}, shape

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, train, mask  # deterministic, the same in training and evaluation
        x = jnp.asarray(x)
        normalized = _norm.param_shape(params)
        if x.ndim < ndim or (normalized is not None and x.shape[x.ndim - ndim :] != normalized):
            raise ValueError(
                f"{kind} with ndim={ndim} expects inputs of shape {_expected(ndim, normalized)}, "
                f"got shape {x.shape}"
            )
        compute, stats = _dtypes.compute_and_stats(x, params, dtype)
        eps = float(jnp.finfo(compute).eps) if epsilon is None else epsilon
        axes = tuple(range(x.ndim - ndim, x.ndim))  # the normalized axes
        xs = x.astype(stats)  # (*batch, *normalized)
        if center:
            mean = jnp.mean(xs, axis=axes, keepdims=True)  # (*batch, 1, ..., 1)
            xs = xs - jnp.broadcast_to(mean, xs.shape)  # (*batch, *normalized)
        second = jnp.mean(jnp.square(xs), axis=axes, keepdims=True)  # variance or mean square
        x_hat = xs * jnp.broadcast_to(jax.lax.rsqrt(second + eps), xs.shape)
        return _norm.affine(x_hat, params, stats).astype(compute), state

    return Layer(init, apply)


@layer_factory
def LayerNorm(
    *,
    ndim: int = 1,
    epsilon: float = 1e-5,
    use_scale: bool = True,
    use_bias: bool = True,
    scale_init: initializers.Initializer | None = None,
    bias_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""Layer normalization over the last ``ndim`` axes (Ba et al., 2016).

    For each index of the leading axes, the :math:`N` entries of the last ``ndim`` axes (index
    :math:`a`, ranging over a block of shape ``input_shape[-ndim:]``) are standardized with
    their own mean and biased variance, then scaled and shifted entry by entry:

    .. math::

        \mu = \frac{1}{N} \sum_{a} x_{\ldots a}, \qquad
        \sigma^2 = \frac{1}{N} \sum_{a} (x_{\ldots a} - \mu)^2, \qquad
        y_{\ldots a} = \gamma_a \, \frac{x_{\ldots a} - \mu}{\sqrt{\sigma^2 + \epsilon}}
            + \beta_a

    With ``ndim=1`` (the default, the transformer case) the block is one position's ``C``
    channels, :math:`N = C`. With ``ndim=2`` on ``(T, C)`` or ``ndim=3`` on ``(H, W, C)`` the
    block is the whole example (:math:`N = T C` or :math:`H W C`), and ``scale``/``bias`` have
    the block's shape, one :math:`\gamma_a, \beta_a` per entry.

    Shapes: ``x`` and ``y`` are ``(*batch, *rest, *normalized)`` with ``normalized`` the last
    ``ndim`` axes of ``input_shape``; ``scale`` (:math:`\gamma`) and ``bias`` (:math:`\beta`)
    are ``normalized``. No statistic crosses examples: the layer is stateless, the same in
    training and evaluation, and ``jax.vmap`` equals the batched call. It ignores a padding
    ``mask``: with ``ndim >= 2`` over a padded ``(T, C)`` sequence the statistics include the
    padded steps (``ndim=1`` acts on each position alone and is unaffected).

    Args:
      ndim: the number of trailing axes normalized together (and the rank of ``scale`` and
        ``bias``), as :func:`fdl.nn.Flatten`'s ``ndim`` counts trailing axes.
      epsilon: :math:`\epsilon \ge 0`, added to the variance inside the square root.
      use_scale: learn :math:`\gamma` (else :math:`\gamma = 1` and ``params`` has no ``scale``).
      use_bias: learn :math:`\beta` (else :math:`\beta = 0` and ``params`` has no ``bias``).
      scale_init: initializer of ``scale``; default ones.
      bias_init: initializer of ``bias``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the output; ``None`` promotes the input's and the parameters' dtypes.
        The mean and variance are computed in at least float32 whatever ``dtype`` is.
      name: its name in a parent's paths (automatic ``layer_norm_<i>`` if ``None``).

    Returns:
      A stateless :class:`~fdl.nn.Layer` with ``params = {"scale": normalized,
      "bias": normalized}``.

    Raises:
      ValueError: ``ndim`` not a positive int or a negative ``epsilon`` (at construction); an
        input with fewer than ``ndim`` axes (at ``init``); an input whose last ``ndim`` axes
        differ from ``init``'s (at ``apply``, naming both shapes).

    Differs from PyTorch: ``torch.nn.LayerNorm(normalized_shape)`` names the normalized shape,
    fdl counts its axes (the sizes come from ``init``): PyTorch's
    ``LayerNorm((T, C))`` is fdl's ``LayerNorm(ndim=2)``, with the same parameter shape
    (``weight`` is ``scale``), :math:`\epsilon` placement (inside the root) and default
    ``1e-5`` (tested against PyTorch). Differs from Flax: ``nn.LayerNorm(reduction_axes=(-2,
    -1))`` keeps ``feature_axes=-1``, so its parameters stay ``(C,)``; fdl's ``ndim=2`` is Flax's
    ``reduction_axes=(-2, -1), feature_axes=(-2, -1)``. Flax defaults to ``epsilon=1e-6``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.LayerNorm(epsilon=0.0)
    >>> params, state, shape = layer.init(jax.random.key(0), (4,))
    >>> y, _ = layer.apply(params, state, jnp.array([1.0, 2.0, 3.0, 4.0]))
    >>> [round(v, 4) for v in y.tolist()]
    [-1.3416, -0.4472, 0.4472, 1.3416]
    >>> fdl.nn.LayerNorm(ndim=2).init(jax.random.key(0), (5, 3, 4))[0]["scale"].shape
    (3, 4)
    """
    ndim = check_positive_int("ndim", ndim)
    epsilon = check_non_negative_finite("epsilon", epsilon)
    scale_init = initializers.ones() if scale_init is None else scale_init
    bias_init = initializers.zeros() if bias_init is None else bias_init
    return _trailing_norm(
        "LayerNorm",
        ndim,
        epsilon,
        True,
        use_scale,
        use_bias,
        scale_init,
        bias_init,
        param_dtype,
        dtype,
    )


@layer_factory
def RMSNorm(
    *,
    ndim: int = 1,
    epsilon: float | None = 1e-6,
    use_scale: bool = True,
    scale_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""Root-mean-square normalization over the last ``ndim`` axes (Zhang & Sennrich, 2019).

    Layer norm without the centring and the shift: each block of the last ``ndim`` axes
    (:math:`N` entries, index :math:`a`) is divided by its root mean square, then scaled entry
    by entry:

    .. math::

        \mathrm{ms} = \frac{1}{N} \sum_{a} x_{\ldots a}^2, \qquad
        y_{\ldots a} = \gamma_a \, \frac{x_{\ldots a}}{\sqrt{\mathrm{ms} + \epsilon}}

    so :math:`y` is invariant to rescaling :math:`x` (up to :math:`\epsilon`) but not to
    shifting it. Cheaper than :func:`LayerNorm` (one statistic), and the norm of LLaMA, T5 and
    Gemma. Shapes, ``ndim``, the float32 statistics and the ignored ``mask`` are as in
    :func:`LayerNorm`.

    Args:
      ndim: the number of trailing axes normalized together (and the rank of ``scale``).
      epsilon: :math:`\epsilon \ge 0`, added to the mean square inside the square root; default
        ``1e-6`` (Flax's and LLaMA's). ``None`` means the machine epsilon of the compute dtype
        (``jnp.finfo(dtype).eps``, :math:`2^{-23} \approx 1.19 \times 10^{-7}` in float32),
        which is PyTorch's default.
      use_scale: learn :math:`\gamma` (else :math:`\gamma = 1` and ``params`` is empty).
      scale_init: initializer of ``scale``; default ones.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the output; ``None`` promotes the input's and the parameters' dtypes.
        The mean square is computed in at least float32 whatever ``dtype`` is.
      name: its name in a parent's paths (automatic ``rms_norm_<i>`` if ``None``).

    Returns:
      A stateless :class:`~fdl.nn.Layer` with ``params = {"scale": normalized}``, the shape of
      the last ``ndim`` axes of ``input_shape``.

    Raises:
      ValueError: ``ndim`` not a positive int, or ``epsilon`` neither ``None`` nor a
        non-negative finite number (at construction); an input with fewer than ``ndim`` axes (at
        ``init``); an input whose last ``ndim`` axes differ from ``init``'s (at ``apply``).

    Differs from PyTorch: ``torch.nn.RMSNorm(normalized_shape, eps=None)`` computes the same
    formula (``weight`` is ``scale``; ``normalized_shape`` of length ``ndim``), but its default
    ``eps=None`` is ``torch.finfo(x.dtype).eps``: pass ``epsilon=None`` for that (tested
    against PyTorch), while fdl defaults to ``1e-6``. Same as Flax's ``nn.RMSNorm`` (formula,
    ``epsilon=1e-6``, float32 statistics) for ``ndim=1``; Flax's ``reduction_axes`` with the
    default ``feature_axes=-1`` keeps ``(C,)`` parameters where fdl's have the block's shape.
    Neither has a bias (Equinox's ``RMSNorm`` can; it defaults to ``eps=1e-5``). Gemma's
    variant multiplies by :math:`1 + \gamma` with :math:`\gamma` initialized to 0: the same
    function at initialization, a different parametrization.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.RMSNorm(epsilon=0.0)
    >>> params, state, shape = layer.init(jax.random.key(0), (2,))
    >>> y, _ = layer.apply(params, state, jnp.array([3.0, -4.0]))  # rms = sqrt(12.5)
    >>> [round(v, 4) for v in y.tolist()]
    [0.8485, -1.1314]
    """
    ndim = check_positive_int("ndim", ndim)
    epsilon = check_non_negative_finite(
        "epsilon", epsilon, none_means="the machine epsilon of the compute dtype, PyTorch's default"
    )
    scale_init = initializers.ones() if scale_init is None else scale_init
    return _trailing_norm(
        "RMSNorm",
        ndim,
        epsilon,
        False,
        use_scale,
        False,
        scale_init,
        initializers.zeros(),
        param_dtype,
        dtype,
    )


# --------------------------------------------------------------------------------------------
# Group norm.


@layer_factory
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
    name: str | None = None,
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
    It ignores a padding ``mask``: with ``ndim >= 2`` over a padded ``(T, C)`` sequence the
    statistics include the padded steps.

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
      name: its name in a parent's paths (automatic ``group_norm_<i>`` if ``None``).

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
    >>> layer = fdl.nn.GroupNorm(2, ndim=1, epsilon=0.0)
    >>> params, state, shape = layer.init(jax.random.key(0), (4,))
    >>> y, _ = layer.apply(params, state, jnp.array([1.0, 3.0, 10.0, 20.0]))
    >>> y.tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    num_groups = check_positive_int("num_groups", num_groups)
    ndim = check_positive_int("ndim", ndim)
    epsilon = check_non_negative_finite("epsilon", epsilon)
    scale_init = initializers.ones() if scale_init is None else scale_init
    bias_init = initializers.zeros() if bias_init is None else bias_init

    def check_groups(channels: int) -> None:
        if channels % num_groups:
            raise ValueError(
                f"GroupNorm: `num_groups` ({num_groups}) must divide the channel count C ({channels})"
            )

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = check_shape("input_shape", input_shape)
        if len(shape) != ndim:
            raise ValueError(
                f"GroupNorm with ndim={ndim} expects per-example input_shape "
                f"with {ndim} axes (*spatial, C), got input_shape {shape}; pass "
                f"ndim={len(shape)} for examples of that shape"
            )
        check_groups(shape[-1])
        params = _norm.affine_init(
            key,
            shape[-1:],
            use_scale=use_scale,
            use_bias=use_bias,
            scale_init=scale_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
        )
        return params, {}, shape

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, train, mask  # deterministic, the same in training and evaluation
        x = jnp.asarray(x)
        normalized = _norm.param_shape(params)
        channels = None if normalized is None else normalized[0]
        if x.ndim < ndim or (channels is not None and x.shape[-1] != channels):
            expected = "C" if channels is None else str(channels)
            raise ValueError(
                f"GroupNorm with ndim={ndim} expects inputs of shape "
                f"(*batch, {', '.join(['...'] * (ndim - 1) + [expected])}), got shape {x.shape}"
            )
        channels = x.shape[-1]
        check_groups(channels)
        compute, stats = _dtypes.compute_and_stats(x, params, dtype)
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
        return _norm.affine(x_hat, params, stats).astype(compute), state

    return Layer(init, apply)
