"""The dense (fully connected) layer: an affine map of the last axis."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes, initializers
from fdl._checks import check_positive_int, check_shape
from fdl.nn.layer import Layer, Shape, layer_factory

__all__ = ["Dense"]


@layer_factory
def Dense(
    features: int,
    *,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""A dense layer :math:`z = x W + b`, applied to the last axis.

    .. math::

        z_{\ldots j} = \sum_i x_{\ldots i} \, W_{ij} + b_j,
        \qquad \frac{\partial z_{\ldots j}}{\partial W_{ij}} = x_{\ldots i},
        \qquad \frac{\partial z_{\ldots j}}{\partial x_{\ldots i}} = W_{ij}

    Shapes: ``x`` is ``(*batch, *rest, in)``, ``w`` is ``(in, features)``, ``b`` is
    ``(features,)`` and ``z`` is ``(*batch, *rest, features)``: any leading axes are carried
    through, so the batched call equals ``jax.vmap`` over single examples.

    Args:
      features: the output width (``out``).
      use_bias: add the bias ``b`` (else ``params`` holds ``w`` alone).
      w_init: initializer of ``w``; default LeCun normal, :math:`\mathrm{Var}[W] = 1/\text{in}`.
      b_init: initializer of ``b``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the computation; ``None`` promotes the input's and the parameters' dtypes.
      name: its name in a parent's paths (automatic ``dense_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"w": (in, features), "b": (features,)}``.

    Raises:
      ValueError: ``features`` is not a positive int (at construction); the input's last axis
        does not match ``in`` (at ``init`` or ``apply``, naming the layer and both shapes).

    Differs from PyTorch: ``torch.nn.Linear`` stores ``weight`` as ``(out, in)`` and computes
    :math:`x W^\top + b`; fdl stores ``(in, out)`` so the formula reads as written. PyTorch's
    default init is uniform with :math:`\mathrm{Var}[W] = 1/(3\,\text{in})`.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Dense(2, w_init=fdl.initializers.ones())
    >>> params, state, shape = layer.init(jax.random.key(0), (3,))
    >>> y, _ = layer.apply(params, state, jnp.array([1.0, 2.0, 3.0]))
    >>> y.tolist()
    [6.0, 6.0]
    """
    features = check_positive_int("features", features)
    w_init = initializers.lecun_normal() if w_init is None else w_init
    b_init = initializers.zeros() if b_init is None else b_init

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = check_shape("input_shape", input_shape)
        if len(shape) < 1:
            raise ValueError(f"Dense needs inputs with at least one axis, got input_shape {shape}")
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (shape[-1], features), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (features,), param_dtype)
        return params, {}, shape[:-1] + (features,)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, train, mask  # deterministic, position by position
        w = params["w"]
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != w.shape[0]:
            raise ValueError(
                f"Dense expects inputs of shape (..., {w.shape[0]}), got shape {x.shape} "
                f"(its `w` is (in, out) = {tuple(w.shape)})"
            )
        compute = dtype if dtype is not None else _dtypes.promote_types(x.dtype, w.dtype)
        z = jnp.matmul(x.astype(compute), w.astype(compute))  # (*batch, features)
        if use_bias:
            z = z + jnp.broadcast_to(params["b"].astype(compute), z.shape)
        return z, state

    return Layer(init, apply)
