r"""Backpropagation by hand: an MLP's forward and backward pass, written out with the chain rule.

``jax.grad`` hides the backward pass; this module spells it out for the network a course draws
first, a multilayer perceptron trained with softmax cross-entropy. With
:math:`h_0 = x` of shape ``(B, D)`` and :math:`L` dense layers,

.. math::

    z_k = h_{k-1} W_k + \mathbf{1} b_k^\top, \qquad h_k = \sigma(z_k) \;\; (k < L), \qquad
    \text{logits} = z_L, \qquad
    \mathcal{L} = \frac{1}{B} \sum_{n=1}^{B} -\log \operatorname{softmax}(z_{L,n})_{y_n}.

The backward pass runs the same layers in reverse, carrying :math:`\delta_k = \partial
\mathcal{L} / \partial z_k` (the *error* at layer :math:`k`, shape ``(B, out_k)``):

.. math::

    \delta_L &= \tfrac{1}{B}\big(\operatorname{softmax}(z_L) - \operatorname{onehot}(y)\big)
    \\
    \frac{\partial \mathcal{L}}{\partial W_k} &= h_{k-1}^\top \delta_k, \qquad
    \frac{\partial \mathcal{L}}{\partial b_k} = \textstyle\sum_n \delta_{k,n}, \qquad
    \frac{\partial \mathcal{L}}{\partial h_{k-1}} = \delta_k W_k^\top
    \\
    \delta_{k-1} &= \frac{\partial \mathcal{L}}{\partial h_{k-1}} \odot \sigma'(z_{k-1})

The activation's Jacobian is diagonal (it acts entry by entry), so multiplying by it is the
elementwise product with :math:`\sigma'`. Each layer's backward step takes two matrix
products (:math:`\delta_k W_k^\top` and :math:`h_{k-1}^\top \delta_k`) where its forward step took
one, so the gradient costs about three forward passes, whatever the number of parameters.

Parameters use the layout of :func:`fdl.nn.MLP` (``{"dense_0": {"w", "b"}, "dense_1": ...}``,
``w`` of shape ``(in, out)``), so :func:`mlp_backward` can be checked leaf by leaf against
``jax.grad`` of the same fdl model's loss (``tests/toolkit/test_backprop.py`` does, to float64
precision).

References:
    D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning representations by
    back-propagating errors", Nature 323:533-536, 1986.
    Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 6.5.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fdl._checks import check_choice, check_labels

__all__ = [
    "ACTIVATIONS",
    "MLPCache",
    "activation_derivative",
    "dense_backward",
    "dense_forward",
    "mlp_backward",
    "mlp_forward",
    "mlp_loss",
    "softmax_cross_entropy_grad",
]

#: The activations whose derivatives the hand-written backward pass knows.
ACTIVATIONS = ("relu", "tanh", "sigmoid")


class MLPCache(NamedTuple):
    r"""What the forward pass keeps for the backward pass (arrays only: a pytree, jit-friendly).

    Attributes:
      inputs: the input of every dense layer, :math:`(h_0, \dots, h_{L-1})`, each ``(B, in_k)``.
      slopes: :math:`(\sigma'(z_1), \dots, \sigma'(z_{L-1}))`, the diagonal of each activation's
        Jacobian, each ``(B, out_k)``.
      logits: :math:`z_L`, ``(B, C)``.
    """

    inputs: tuple[jax.Array, ...]
    slopes: tuple[jax.Array, ...]
    logits: jax.Array


def _activate(name: str, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sigma(z), sigma'(z))`` for a validated activation name."""
    if name == "relu":
        positive = z > 0
        return jnp.where(positive, z, jnp.zeros_like(z)), positive.astype(z.dtype)
    if name == "tanh":
        a = jnp.tanh(z)
        return a, 1.0 - a * a
    a = jax.nn.sigmoid(z)
    return a, a * (1.0 - a)


def activation_derivative(name: str, z: ArrayLike) -> jax.Array:
    r"""The elementwise derivative :math:`\sigma'(z)` of an activation: its Jacobian's diagonal.

    .. math::

        \operatorname{relu}'(z) = \mathbb{1}[z > 0], \qquad
        \tanh'(z) = 1 - \tanh^2 z, \qquad
        \sigma'(z) = \sigma(z)\,(1 - \sigma(z))

    The Jacobian of an elementwise map is :math:`\operatorname{diag}(\sigma'(z))`, so the
    backward pass multiplies by ``activation_derivative(name, z)`` entry by entry. At
    :math:`z = 0` ReLU takes the subgradient 0, as ``jax.grad(jax.nn.relu)(0.0)`` does.

    Args:
      name: ``"relu"``, ``"tanh"`` or ``"sigmoid"``.
      z: pre-activations, any shape.

    Returns:
      :math:`\sigma'(z)`, the shape and dtype of ``z``.

    Raises:
      ValueError: an unknown ``name``.

    >>> import jax.numpy as jnp
    >>> activation_derivative("tanh", jnp.array([0.0])).tolist()
    [1.0]
    >>> activation_derivative("relu", jnp.array([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 1.0]
    """
    check_choice("activation", name, ACTIVATIONS)
    return _activate(name, jnp.asarray(z))[1]


def dense_forward(x: ArrayLike, w: ArrayLike, b: ArrayLike) -> jax.Array:
    r"""One dense layer on a batch: :math:`y = x W + \mathbf{1} b^\top`.

    Shapes: ``x`` is ``(B, in)``, ``w`` is ``(in, out)``, ``b`` is ``(out,)``, ``y`` is
    ``(B, out)``.

    >>> import jax.numpy as jnp
    >>> dense_forward(jnp.ones((1, 2)), jnp.ones((2, 3)), jnp.arange(3.0)).tolist()
    [[2.0, 3.0, 4.0]]
    """
    x, w, b = jnp.asarray(x), jnp.asarray(w), jnp.asarray(b)
    return x @ w + b[None, :]  # (B, out)


def dense_backward(x: ArrayLike, w: ArrayLike, grad_y: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""The three gradients of a dense layer, given :math:`\partial \mathcal{L}/\partial y`.

    .. math::

        \frac{\partial \mathcal{L}}{\partial x} = \frac{\partial \mathcal{L}}{\partial y} W^\top,
        \qquad
        \frac{\partial \mathcal{L}}{\partial W} = x^\top \frac{\partial \mathcal{L}}{\partial y},
        \qquad
        \frac{\partial \mathcal{L}}{\partial b} = \sum_{n=1}^{B}
        \frac{\partial \mathcal{L}}{\partial y_n}

    Each follows from :math:`y_{nj} = \sum_i x_{ni} W_{ij} + b_j`: :math:`W_{ij}` touches every
    example's output :math:`j` (so its gradient sums over the batch, :math:`x^\top g`), and
    :math:`b_j` is added to all of them.

    Args:
      x: the layer's input, ``(B, in)``.
      w: its weights, ``(in, out)``.
      grad_y: :math:`\partial \mathcal{L}/\partial y`, ``(B, out)``.

    Returns:
      ``(grad_x (B, in), grad_w (in, out), grad_b (out,))``.

    >>> import jax.numpy as jnp
    >>> gx, gw, gb = dense_backward(jnp.ones((2, 3)), jnp.ones((3, 1)), jnp.ones((2, 1)))
    >>> gx.shape, gw.tolist(), gb.tolist()
    ((2, 3), [[2.0], [2.0], [2.0]], [2.0])
    """
    x, w, grad_y = jnp.asarray(x), jnp.asarray(w), jnp.asarray(grad_y)
    return grad_y @ w.T, x.T @ grad_y, jnp.sum(grad_y, axis=0)


def softmax_cross_entropy_grad(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Gradient of the mean softmax cross-entropy with respect to the logits.

    .. math::

        \mathcal{L} = \frac{1}{B} \sum_n \Big(\log \sum_c e^{z_{nc}} - z_{n y_n}\Big),
        \qquad
        \frac{\partial \mathcal{L}}{\partial z_{nc}} =
        \frac{\operatorname{softmax}(z_n)_c - \mathbb{1}[c = y_n]}{B}

    Args:
      logits: ``(B, C)``.
      labels: integer classes, ``(B,)``.

    Returns:
      ``(B, C)``, in the dtype of ``logits``; each row sums to 0.

    Raises:
      ValueError: mismatched shapes, or (concrete) labels outside ``[0, C)``.
      TypeError: non-integer labels.

    >>> import jax.numpy as jnp
    >>> softmax_cross_entropy_grad(jnp.zeros((1, 2)), jnp.array([1])).tolist()
    [[0.5, -0.5]]
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"`logits` must be (B, C) and `labels` (B,), got shapes {logits.shape} and {labels.shape}"
        )
    classes = logits.shape[-1]
    check_labels("`labels`", labels, classes, where=f"(`logits` has {classes} classes)")
    onehot = jax.nn.one_hot(labels, classes, dtype=logits.dtype)  # (B, C)
    return (jax.nn.softmax(logits, axis=-1) - onehot) / logits.shape[0]


def _layers(params: Any) -> list[tuple[str, jax.Array, jax.Array]]:
    """``[(name, w, b), ...]`` in order, after checking names and shapes (naming the layer)."""
    if not isinstance(params, dict) or not params:
        raise ValueError(
            "`params` must be a non-empty dict {'dense_0': {'w', 'b'}, ...} as fdl.nn.MLP makes, "
            f"got {type(params).__name__}"
        )
    names = [f"dense_{i}" for i in range(len(params))]
    if sorted(params) != sorted(names):
        raise ValueError(f"`params` must hold the layers {names} (fdl.nn.MLP's names), got {sorted(params)}")
    layers: list[tuple[str, jax.Array, jax.Array]] = []
    for i, name in enumerate(names):
        layer = params[name]
        if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"layer {name!r} must hold 'w' and 'b', got {got}")
        w, b = jnp.asarray(layer["w"]), jnp.asarray(layer["b"])
        if w.ndim != 2 or b.shape != (w.shape[-1],):
            raise ValueError(
                f"layer {name!r}: `w` must be (in, out) and `b` (out,), got w {w.shape} and b {b.shape}"
            )
        if i > 0 and w.shape[0] != layers[-1][1].shape[1]:
            raise ValueError(
                f"layer {name!r} takes {w.shape[0]} inputs but {names[i - 1]!r} gives "
                f"{layers[-1][1].shape[1]} outputs"
            )
        layers.append((name, w, b))
    return layers


def mlp_forward(params: dict, x: ArrayLike, activation: str = "relu") -> tuple[jax.Array, MLPCache]:
    r"""The MLP's forward pass, keeping what the backward pass needs.

    .. math::

        h_0 = x, \qquad z_k = h_{k-1} W_k + \mathbf{1} b_k^\top, \qquad
        h_k = \sigma(z_k) \;\; (k < L), \qquad \text{logits} = z_L

    The same function as ``fdl.nn.MLP(widths, activation=...)`` without dropout.

    Args:
      params: ``{"dense_0": {"w": (D, H_1), "b": (H_1,)}, ..., "dense_{L-1}": {...}}``.
      x: a batch of inputs, ``(B, D)``.
      activation: ``"relu"``, ``"tanh"`` or ``"sigmoid"``, between layers (not after the last).

    Returns:
      ``(logits (B, C), cache)``, the cache an :class:`MLPCache`.

    Raises:
      ValueError: ``params`` not in fdl.nn.MLP's layout, a layer whose shapes do not chain (the
        message names the layer), ``x`` not ``(B, D)`` with ``D`` the first layer's input width,
        or an unknown ``activation``.

    >>> import jax, jax.numpy as jnp
    >>> params = {"dense_0": {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)},
    ...           "dense_1": {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)}}
    >>> logits, cache = mlp_forward(params, jnp.ones((5, 3)), "relu")
    >>> logits.shape, [h.shape for h in cache.inputs]
    ((5, 2), [(5, 3), (5, 4)])
    """
    check_choice("activation", activation, ACTIVATIONS)
    layers = _layers(params)
    h = jnp.asarray(x)
    if h.ndim != 2 or h.shape[1] != layers[0][1].shape[0]:
        raise ValueError(
            f"`x` must be (batch, {layers[0][1].shape[0]}) for layer 'dense_0', got shape {h.shape}"
        )
    inputs, slopes = [], []
    for k, (_, w, b) in enumerate(layers):
        inputs.append(h)
        z = dense_forward(h, w, b)  # (B, out_k)
        if k < len(layers) - 1:
            h, slope = _activate(activation, z)
            slopes.append(slope)
        else:
            h = z
    return h, MLPCache(tuple(inputs), tuple(slopes), h)


def mlp_backward(params: dict, cache: MLPCache, labels: ArrayLike) -> dict:
    r"""Gradients of the mean softmax cross-entropy, by the chain rule, layer by layer in reverse.

    .. math::

        \delta_L = \tfrac{1}{B}(\operatorname{softmax}(z_L) - \operatorname{onehot}(y)),
        \quad
        \nabla_{W_k} = h_{k-1}^\top \delta_k, \quad
        \nabla_{b_k} = \textstyle\sum_n \delta_{k,n}, \quad
        \delta_{k-1} = (\delta_k W_k^\top) \odot \sigma'(z_{k-1})

    Args:
      params: the parameters given to :func:`mlp_forward`.
      cache: the :class:`MLPCache` it returned.
      labels: integer classes, ``(B,)``.

    Returns:
      A dict with the structure, shapes and dtypes of ``params``: the gradient of
      :func:`mlp_loss`.

    Raises:
      ValueError: ``labels`` is not ``(B,)`` for the cached batch, or the cache does not come
        from these ``params`` (naming the layer).

    >>> import jax, jax.numpy as jnp
    >>> params = {"dense_0": {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}}
    >>> logits, cache = mlp_forward(params, jnp.ones((4, 3)))
    >>> grads = mlp_backward(params, cache, jnp.array([0, 1, 0, 1]))
    >>> grads["dense_0"]["b"].tolist()  # softmax is (1/2, 1/2): mean of (1/2 - onehot) is 0
    [0.0, 0.0]
    """
    layers = _layers(params)
    labels = jnp.asarray(labels)
    batch = cache.logits.shape[0]
    if labels.shape != (batch,):
        raise ValueError(
            f"`labels` must be (batch,) = ({batch},) for the cached batch, got shape {labels.shape}"
        )
    if len(cache.inputs) != len(layers) or len(cache.slopes) != len(layers) - 1:
        raise ValueError(f"`cache` holds {len(cache.inputs)} layers but `params` has {len(layers)}")
    delta = softmax_cross_entropy_grad(cache.logits, labels)  # (B, C) = dL/dz_L
    grads = {}
    for k in range(len(layers) - 1, -1, -1):
        name, w, _ = layers[k]
        h = cache.inputs[k]
        if h.shape[1] != w.shape[0] or delta.shape[1] != w.shape[1]:
            raise ValueError(
                f"layer {name!r}: the cache holds inputs {h.shape} and errors {delta.shape}, "
                f"which do not fit w {w.shape}"
            )
        grad_h, grad_w, grad_b = dense_backward(h, w, delta)
        grads[name] = {"w": grad_w.astype(w.dtype), "b": grad_b.astype(w.dtype)}
        if k > 0:
            delta = grad_h * cache.slopes[k - 1]  # (B, in_k): through the diagonal Jacobian
    return {name: grads[name] for name, _, _ in layers}


def mlp_loss(params: dict, x: ArrayLike, labels: ArrayLike, activation: str = "relu") -> jax.Array:
    r"""The mean softmax cross-entropy of :func:`mlp_forward`'s logits (what :func:`mlp_backward`
    differentiates).

    .. math::

        \mathcal{L} = \frac{1}{B} \sum_n \Big(\log \sum_c e^{z_{L,nc}} - z_{L,n y_n}\Big)

    >>> import jax.numpy as jnp
    >>> params = {"dense_0": {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}}
    >>> round(float(mlp_loss(params, jnp.ones((4, 3)), jnp.array([0, 1, 0, 1]))), 4)  # log 2
    0.6931
    """
    logits, _ = mlp_forward(params, x, activation)
    log_probs = jax.nn.log_softmax(logits, axis=-1)  # (B, C)
    picked = jnp.take_along_axis(log_probs, jnp.asarray(labels)[:, None], axis=-1)  # (B, 1)
    return -jnp.mean(picked)
