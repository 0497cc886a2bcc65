r"""Signal propagation: how the size of activations and gradients changes with depth and time.

At initialization a deep network either keeps the scale of its signals, or multiplies it by
roughly the same factor at every layer, so that after :math:`L` layers it has grown or shrunk
geometrically. The tools here *measure* that: :func:`signal_propagation` runs a model layer by
layer on a batch and reports, per layer, the second moment and the variance of the activations
and of the gradient of a loss with respect to them; :func:`gradient_through_time` does the same
along the time axis of a recurrent cell (vanishing gradients through time).

**The mean-field recursion (ReLU).** Take a ReLU MLP with zero biases,
:math:`z^{l+1} = \mathrm{relu}(z^l) W^{l+1}`, weights i.i.d. :math:`\mathcal{N}(0, \sigma_w^2)`
and :math:`n` inputs per unit (``fan_in``). Given the layer below, each pre-activation
:math:`z^{l+1}_j` is a zero-mean Gaussian of variance :math:`\sigma_w^2 \lVert
\mathrm{relu}(z^l)\rVert^2`, and :math:`z^l` is symmetric about 0, so half of its second moment
survives the ReLU. The quantity with a clean recursion is the **mean square of the
pre-activations**, :math:`q^l = \mathbb{E}[(z^l_j)^2]`:

.. math::

    q^{l+1} = \sigma_w^2 \, n \, \mathbb{E}[\mathrm{relu}(z^l_j)^2] + \sigma_b^2
            = \frac{c}{2} \, q^l + \sigma_b^2, \qquad c = \sigma_w^2 n,

(Poole et al., 2016; Schoenholz et al., 2017). He initialization (:math:`c = 2`) is the fixed
point :math:`q^{l+1} = q^l`; Glorot/LeCun on square layers (:math:`c = 1`) halves it per layer;
:math:`\mathcal{N}(0, 0.01^2)` with :math:`n = 256` (:math:`c = 0.0256`) collapses it and
:math:`\mathcal{N}(0, 1)` (:math:`c = 256`) explodes it. The *variance* across units and examples
is not the clean quantity: after a ReLU the mean is not zero
(:math:`\mathbb{E}[\mathrm{relu}(z)] = \sqrt{q / 2\pi}`), and at depth the examples of a batch
become correlated. The backward pass obeys the same recursion with ``fan_out`` in place of
``fan_in``, from the output down.

At finite width :math:`n` the recursion holds in expectation only: each layer multiplies
:math:`q` by :math:`\tfrac{c}{2}(1 + \varepsilon_l)` with :math:`\operatorname{Var}[\varepsilon_l]
\le 5/n` (2/n from the matmul, 3/n from the ReLU, for one example), so
:math:`\log q^L` spreads by about :math:`\sqrt{5 L / n}` (Hanin & Rolnick, 2018).

References:
* Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (2016). Exponential expressivity in deep neural
  networks through transient chaos. NeurIPS.
* Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017). Deep information propagation. ICLR.
* He, Zhang, Ren & Sun (2015). Delving deep into rectifiers. ICCV.
* Hanin & Rolnick (2018). How to start training: the effect of initialization and architecture.
  NeurIPS.
* Bengio, Simard & Frasconi (1994). Learning long-term dependencies with gradient descent is
  difficult. IEEE Transactions on Neural Networks 5(2).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fdl import activations, initializers
from fdl._checks import check_finite, check_positive_int
from fdl.nn.cells import Cell
from fdl.nn.combinators import Serial
from fdl.nn.layer import Layer
from fdl.nn.mlp import MLP

__all__ = [
    "SignalStats",
    "TimeGradients",
    "signal_propagation",
    "mlp_signal_propagation",
    "relu_mean_field",
    "gradient_through_time",
]

PyTree = Any


class SignalStats(NamedTuple):
    """Per-layer statistics from :func:`signal_propagation`; entry 0 is the model's input.

    Attributes:
      names: ``("input", <child 0>, <child 1>, ...)``, the children's names in the model's paths.
      activation_mean_square: :math:`\\mathbb{E}[h^2]` over all entries of each output,
        ``(L + 1,)``.
      activation_variance: :math:`\\mathbb{E}[h^2] - \\mathbb{E}[h]^2`, pooled over all entries.
      gradient_mean_square: :math:`\\mathbb{E}[(\\partial \\mathcal{L} / \\partial h)^2]`.
      gradient_variance: the pooled variance of :math:`\\partial \\mathcal{L} / \\partial h`.
    """

    names: tuple[str, ...]
    activation_mean_square: jax.Array
    activation_variance: jax.Array
    gradient_mean_square: jax.Array
    gradient_variance: jax.Array


class TimeGradients(NamedTuple):
    """Per-time-step gradient norms from :func:`gradient_through_time`, indexed by step ``t``.

    Attributes:
      steps_back: ``T - 1 - t``, how many steps before the last one step ``t`` is, ``(T,)``.
      carry_grad_norm: mean over the batch of :math:`\\lVert \\partial \\mathcal{L} / \\partial
        \\mathrm{carry}_t \\rVert` (all leaves of the carry, e.g. :math:`h_t` and :math:`c_t`).
      input_grad_norm: mean over the batch of :math:`\\lVert \\partial \\mathcal{L} / \\partial
        x_t \\rVert`.
    """

    steps_back: jax.Array
    carry_grad_norm: jax.Array
    input_grad_norm: jax.Array


def _steps(model: Any) -> tuple[Layer, tuple[tuple[str, Layer], ...], bool]:
    """``(model, ((name, layer), ...), keyed)``; ``keyed``: params are a dict by child name."""
    if isinstance(model, Layer):
        if model.kind == "Serial" and model.children:
            return model, model.children, True
        return model, ((model.name or model.auto_name, model),), False
    if isinstance(model, (list, tuple)) and model and all(isinstance(m, Layer) for m in model):
        serial = Serial(*model)
        return serial, serial.children, True
    raise TypeError(
        f"`model` must be a fdl.nn.Layer (a Serial is traced child by child) or a non-empty list "
        f"of layers, got {model!r}"
    )


@functools.lru_cache(maxsize=32)
def _param_shapes(model: Layer, input_shape: tuple[int, ...]) -> list[tuple[Any, Any]]:
    """``[(path, ShapeDtypeStruct), ...]`` of the params ``model.init`` makes for ``input_shape``
    (traced, not computed; cached, as tracing a deep model's init takes a while)."""
    expected = jax.eval_shape(lambda k: model.init(k, input_shape)[0], jax.random.key(0))
    return jax.tree_util.tree_flatten_with_path(expected)[0]


def _check_fits(model: Layer, params: PyTree, x: jax.Array) -> None:
    """Raise unless ``x`` is ``(batch, *input_shape)`` for the shapes ``params`` were made for."""
    if x.ndim < 2:
        raise ValueError(f"`x` must be a batch of shape (batch, *input_shape), got shape {x.shape}")
    try:
        want = _param_shapes(model, tuple(x.shape[1:]))
    except (ValueError, TypeError) as err:
        raise ValueError(f"`x` of shape {x.shape} does not fit the model: {err}") from err
    got = jax.tree_util.tree_flatten_with_path(params)[0]
    if [p for p, _ in want] != [p for p, _ in got]:
        raise ValueError(
            f"`params` do not have the structure the model's init gives: expected paths "
            f"{[jax.tree_util.keystr(p, simple=True, separator='/') for p, _ in want]}, got "
            f"{[jax.tree_util.keystr(p, simple=True, separator='/') for p, _ in got]}"
        )
    for (path, w), (_, g) in zip(want, got, strict=True):
        if tuple(w.shape) != tuple(jnp.shape(g)):
            where = jax.tree_util.keystr(path, simple=True, separator="/")
            raise ValueError(
                f"`x` of shape {x.shape} does not match the model's input shape: an example of "
                f"shape {tuple(x.shape[1:])} needs parameter {where!r} of shape {tuple(w.shape)}, "
                f"but `params` has {tuple(jnp.shape(g))} (x must be (batch, *input_shape))"
            )


def _moments(tree: PyTree) -> tuple[jax.Array, jax.Array]:
    """``(E[h^2], Var[h])`` pooled over every entry of every leaf of ``tree``."""
    leaves = [jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)]
    flat = jnp.concatenate(leaves) if len(leaves) > 1 else leaves[0]  # (all entries,)
    mean_square = jnp.mean(flat * flat)
    return mean_square, jnp.var(flat)


@functools.lru_cache(maxsize=32)
def _runner(steps: tuple[tuple[str, Layer], ...], keyed: bool, loss_fn: Any, train: bool) -> Callable:
    """The jitted measurement for one model, cached so that new ``params`` (another init) and new
    batches of the same shapes reuse the compiled code."""

    def child(tree: PyTree, name: str) -> PyTree:
        return tree.get(name, {}) if keyed and isinstance(tree, dict) else tree

    def forward(params, state, x, probes, key):  # -> (y, [h_0, ..., h_L])
        split = jax.random.split(key, len(steps)) if key is not None else [None] * len(steps)
        add = lambda h, i: h if probes is None else jax.tree.map(jnp.add, h, probes[i])
        h = add(x, 0)
        outs = [h]
        for i, ((name, layer), k) in enumerate(zip(steps, split, strict=True), start=1):
            h, _ = layer.apply(child(params, name), child(state, name), h, key=k, train=train)
            h = add(h, i)
            outs.append(h)
        return h, outs

    def run(params, state, x, key):  # the arrays are arguments, not constants baked into the jit
        layer_key, proj_key = jax.random.split(key) if key is not None else (None, None)
        shapes = jax.eval_shape(lambda: forward(params, state, x, None, layer_key)[1])
        probes = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # one per layer
        (y, outs), pull = jax.vjp(lambda ps: forward(params, state, x, ps, layer_key), probes)
        if loss_fn is None:
            r = jax.tree.map(lambda leaf: jax.random.normal(proj_key, leaf.shape, leaf.dtype), y)
        else:
            r = jax.grad(lambda y: jnp.sum(jnp.asarray(loss_fn(y))))(y)
        (grads,) = pull((r, jax.tree.map(jnp.zeros_like, outs)))
        return [_moments(h) for h in outs], [_moments(g) for g in grads]

    return jax.jit(run)


def signal_propagation(
    model: Layer | Sequence[Layer],
    params: PyTree,
    x: Any,
    *,
    state: PyTree = None,
    key: jax.Array | None = None,
    loss_fn: Callable[[Any], jax.Array] | None = None,
    train: bool = False,
) -> SignalStats:
    r"""Run ``model`` on the batch ``x`` and report each layer's activation and gradient size.

    For a :func:`~fdl.nn.Serial` with children :math:`f_1, \ldots, f_L` (or a list of layers,
    composed by a ``Serial`` whose ``init`` made ``params``), it records
    :math:`h_0 = x,\ h_l = f_l(h_{l-1})` and the gradients :math:`g_l = \partial \mathcal{L} /
    \partial h_l`, and returns for each :math:`l`

    .. math::

        \overline{h_l^2} = \frac{1}{N} \sum_{\text{entries}} h_l^2, \qquad
        \operatorname{Var}[h_l] = \overline{h_l^2} - \overline{h_l}^{\,2}

    and the same for :math:`g_l`, pooled over the batch and every unit. The gradients come from
    one ``jax.vjp`` with a zero probe added to each :math:`h_l` (a Serial does not expose its
    intermediate outputs, so the tool applies its children in order, splitting ``key`` as the
    Serial does: the output equals ``model.apply``). The loss is ``loss_fn(y)`` if given, else the
    random projection :math:`\mathcal{L} = \sum_{b, j} r_{bj}\, y_{bj}`,
    :math:`r \sim \mathcal{N}(0, 1)` drawn from ``key``, so that
    :math:`\partial \mathcal{L} / \partial y = r` has mean square 1 for every example.

    Args:
      model: a Serial (or any layer, traced as a single step), or a list of layers.
      params, state: the model's trees from ``init`` (``state=None`` for stateless models).
      x: the batch, ``(B, *input_shape)``.
      key: PRNG key for the projection (needed without ``loss_fn``) and for dropout in training.
      loss_fn: ``loss_fn(y) -> scalar``; default the random projection above.
      train: run the layers in training mode.

    Returns:
      :class:`SignalStats`, each array of shape ``(L + 1,)`` (entry 0 is the input).

    Raises:
      ValueError: ``x`` not ``(batch, *input_shape)`` for the input shape ``params`` were made
        for; no ``key`` without ``loss_fn``. TypeError: ``model`` not a layer or list of layers.

    >>> import jax, fdl
    >>> model = fdl.nn.MLP((64, 64, 64), w_init=fdl.initializers.he_normal())
    >>> params, _, _ = model.init(jax.random.key(0), (64,))
    >>> x = jax.random.normal(jax.random.key(1), (128, 64))
    >>> stats = signal_propagation(model, params, x, key=jax.random.key(2))
    >>> stats.names
    ('input', 'dense_0', 'relu_0', 'dense_1', 'relu_1', 'dense_2')
    >>> [round(float(q)) for q in stats.activation_mean_square]  # He: q stays near 2 E[x^2]
    [1, 2, 1, 2, 1, 2]
    """
    model, steps, keyed = _steps(model)
    x = jnp.asarray(x)
    _check_fits(model, params, x)
    if loss_fn is None and key is None:
        raise ValueError(
            "`key` is needed for the random projection of the output when no `loss_fn` is given: "
            "pass key=jax.random.key(0) or a loss_fn(y) -> scalar"
        )
    state = {} if state is None else state
    names = ("input", *(name for name, _ in steps))
    acts, grads = _runner(steps, keyed, loss_fn, train)(params, state, x, key)
    widest = max((a.dtype for pair in acts + grads for a in pair), key=lambda d: jnp.dtype(d).itemsize)
    stack = lambda pairs, i: jnp.stack([pair[i].astype(widest) for pair in pairs])  # (L + 1,)
    return SignalStats(names, stack(acts, 0), stack(acts, 1), stack(grads, 0), stack(grads, 1))


def mlp_signal_propagation(
    key: jax.Array,
    *,
    depth: int,
    width: int,
    num_samples: int,
    w_init: initializers.Initializer,
    activation: Callable[[Any], Any] = activations.relu,
    input_variance: float = 1.0,
    dtype: Any = jnp.float32,
) -> SignalStats:
    r"""Build a ``depth``-layer MLP of constant ``width`` and run :func:`signal_propagation`.

    The model is :func:`~fdl.nn.MLP` with ``depth`` dense layers of ``width`` units (zero biases,
    weights from ``w_init``, ``activation`` between them); the input is a Gaussian batch
    :math:`x \sim \mathcal{N}(0, \mathrm{input\_variance})` of shape ``(num_samples, width)``.
    Under the ReLU recursion (see the module docstring) the dense outputs have mean square
    :math:`q^l = c\,(c/2)^l\, \mathrm{input\_variance}`, :math:`c = \sigma_w^2 \cdot \mathrm{width}`.

    Args:
      key: PRNG key (split for the weights, the input and the projection).
      depth, width, num_samples: positive ints.
      w_init: the weight initializer (e.g. ``fdl.initializers.he_normal()``).
      activation: the nonlinearity between dense layers.
      input_variance: the variance of the Gaussian input, > 0.
      dtype: parameter and input dtype (``jnp.float64`` needs ``jax.enable_x64``).

    Returns:
      :class:`SignalStats` with names ``input, dense_0, relu_0, ..., dense_{depth-1}``.

    Raises:
      ValueError: ``depth``, ``width`` or ``num_samples`` below 1, ``input_variance`` not > 0.

    >>> import jax, fdl
    >>> stats = mlp_signal_propagation(jax.random.key(0), depth=3, width=32, num_samples=64,
    ...                                w_init=fdl.initializers.normal(0.01))
    >>> bool(stats.activation_mean_square[-1] < 1e-6)  # c = 0.0032: the signal collapses
    True
    """
    depth = check_positive_int("depth", depth)
    width = check_positive_int("width", width)
    num_samples = check_positive_int("num_samples", num_samples)
    if check_finite("input_variance", input_variance) <= 0:
        raise ValueError(f"`input_variance` must be > 0, got {input_variance!r}")
    init_key, x_key, run_key = jax.random.split(key, 3)
    params, _, _ = MLP((width,) * depth, activation=activation, w_init=w_init, param_dtype=dtype).init(
        init_key, (width,)
    )
    x = jnp.sqrt(jnp.asarray(input_variance, dtype)) * jax.random.normal(x_key, (num_samples, width), dtype)
    return signal_propagation(_mlp(depth, width, activation), params, x, key=run_key)


@functools.lru_cache(maxsize=8)
def _mlp(depth: int, width: int, activation: Callable[[Any], Any]) -> Layer:
    """One MLP per architecture (``apply`` does not depend on ``w_init``), so that every
    initializer reuses one compiled measurement."""
    return MLP((width,) * depth, activation=activation)


def relu_mean_field(
    q0: Any, weight_variance: Any, fan_in: int, depth: int, bias_variance: Any = 0.0
) -> jax.Array:
    r"""The mean-field second moments :math:`q^0, \ldots, q^{\mathrm{depth}-1}` of a ReLU MLP.

    .. math::

        q^{l+1} = \frac{\sigma_w^2 \, \mathrm{fan\_in}}{2} \, q^l + \sigma_b^2

    with :math:`\sigma_w^2` = ``weight_variance``, :math:`\sigma_b^2` = ``bias_variance`` and
    :math:`q^0` = ``q0`` the mean square of the first layer's pre-activations
    (:math:`\sigma_w^2 \, d_{in} \, \mathbb{E}[x^2] + \sigma_b^2`). ``q0``, ``weight_variance``
    and ``bias_variance`` may carry matching leading batch axes (one recursion per entry).

    Returns:
      ``(*batch, depth)``.

    >>> relu_mean_field(2.0, 2.0 / 256, 256, 3).tolist()  # He: the fixed point
    [2.0, 2.0, 2.0]
    >>> relu_mean_field(1.0, 1.0 / 256, 256, 3).tolist()  # LeCun/Glorot: halves per layer
    [1.0, 0.5, 0.25]
    """
    fan_in = check_positive_int("fan_in", fan_in)
    depth = check_positive_int("depth", depth)
    q0 = jnp.asarray(q0)
    dtype = q0.dtype if jnp.issubdtype(q0.dtype, jnp.floating) else jnp.dtype(jnp.float32)
    q0, sw2, sb2 = (jnp.asarray(v).astype(dtype) for v in (q0, weight_variance, bias_variance))

    def step(q: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        return 0.5 * sw2 * fan_in * q + sb2, q

    _, qs = jax.lax.scan(step, q0, None, length=depth)  # (depth, *batch)
    return jnp.moveaxis(qs, 0, -1)  # (*batch, depth)


def gradient_through_time(
    cell: Cell,
    params: PyTree,
    xs: Any,
    *,
    key: jax.Array,
    readout: Callable[[Any], jax.Array] | None = None,
) -> TimeGradients:
    r"""Norms of the gradient of a loss at the last step with respect to every earlier step.

    The cell runs from the zero carry over :math:`x_0, \ldots, x_{T-1}`; the loss is the random
    projection :math:`\mathcal{L} = \sum_b r_b \cdot \mathrm{readout}(\mathrm{carry}_{T-1})_b`,
    :math:`r \sim \mathcal{N}(0, I)`. By the chain rule, for the Elman cell
    :math:`h_t = \tanh(x_t W_x + h_{t-1} W_h + b)`,

    .. math::

        \frac{\partial \mathcal{L}}{\partial h_{t-1}} = \Big(\frac{\partial \mathcal{L}}
        {\partial h_t} \odot (1 - h_t^2)\Big) W_h^\top, \qquad
        \Big\lVert \frac{\partial \mathcal{L}}{\partial h_{T-1-k}} \Big\rVert \le
        \lVert W_h \rVert_2^{\,k} \, \lVert r \rVert,

    so with :math:`\lVert W_h \rVert_2 < 1` the gradient vanishes geometrically going back in
    time (Bengio et al., 1994). The LSTM's cell state has the additive path
    :math:`\partial c_t / \partial c_{t-1} = f_t` (the forget gate), which decays only as fast as
    :math:`f_t` is below 1. The carry gradients come from zero probes added to the carry after
    each step, the input gradients from differentiating with respect to ``xs``.

    Args:
      cell: a :class:`~fdl.nn.Cell` (``fdl.nn.RNNCell``, ``LSTMCell``, ``GRUCell``, ...).
      params: the cell's parameters.
      xs: the inputs, ``(B, T, F)``.
      key: PRNG key for the projection :math:`r`.
      readout: ``carry -> (B, H)``, the state the loss reads; default the carry itself, or its
        first entry for a tuple carry (:math:`h` of the LSTM's ``(h, c)``).

    Returns:
      :class:`TimeGradients` of arrays ``(T,)`` indexed by step ``t``.

    Raises:
      ValueError: ``xs`` not of shape ``(B, T, F)`` with ``B, T >= 1``. TypeError: ``cell`` not
        a :class:`~fdl.nn.Cell`.

    >>> import jax, fdl
    >>> cell = fdl.nn.RNNCell(16, recurrent_init=fdl.initializers.orthogonal(0.5))
    >>> params = cell.init(jax.random.key(0), 4)
    >>> xs = jax.random.normal(jax.random.key(1), (8, 10, 4))
    >>> g = gradient_through_time(cell, params, xs, key=jax.random.key(2))
    >>> bool(g.carry_grad_norm[0] < 1e-3 * g.carry_grad_norm[-1])  # <= 0.5**9 by the bound
    True
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"`cell` must be a fdl.nn.Cell (e.g. fdl.nn.LSTMCell(32)), got {cell!r}")
    xs = jnp.asarray(xs)
    if xs.ndim != 3 or xs.shape[0] < 1 or xs.shape[1] < 1:
        raise ValueError(
            f"`xs` must have shape (batch, T, features) with batch >= 1 and T >= 1, got shape {xs.shape}"
        )
    batch, steps = xs.shape[0], xs.shape[1]
    if readout is None:
        readout = lambda carry: carry[0] if isinstance(carry, (tuple, list)) else carry
    carry0 = cell.initial_carry((batch,), xs.dtype)
    carry_type = jax.eval_shape(lambda c, x: cell.step(params, c, x)[0], carry0, xs[:, 0])
    probes = jax.tree.map(lambda s: jnp.zeros((steps, *s.shape), s.dtype), carry_type)  # (T, B, ...)

    def loss(xs: jax.Array, probes: PyTree, params: PyTree, key: jax.Array) -> jax.Array:
        carry = jax.tree.map(lambda c, s: c.astype(s.dtype), carry0, carry_type)

        def body(carry: Any, inputs: tuple[jax.Array, Any]) -> tuple[Any, None]:
            x_t, p_t = inputs
            carry, _ = cell.step(params, carry, x_t)
            return jax.tree.map(jnp.add, carry, p_t), None

        carry, _ = jax.lax.scan(body, carry, (jnp.swapaxes(xs, 0, 1), probes))  # xs: (T, B, F)
        out = readout(carry)  # (B, H)
        r = jax.random.normal(key, out.shape, out.dtype)
        return jnp.sum(r * out)

    def norms(grad_x: jax.Array, grad_p: PyTree) -> tuple[jax.Array, jax.Array]:
        squares = [jnp.sum(g.reshape(steps, batch, -1) ** 2, axis=-1) for g in jax.tree.leaves(grad_p)]
        carry_norm = jnp.mean(jnp.sqrt(sum(squares[1:], squares[0])), axis=1)  # (T,)
        input_norm = jnp.mean(jnp.sqrt(jnp.sum(grad_x**2, axis=-1)), axis=0)  # (B, T) -> (T,)
        return carry_norm, input_norm

    grad_x, grad_p = jax.jit(jax.grad(loss, argnums=(0, 1)))(xs, probes, params, key)
    carry_norm, input_norm = norms(grad_x, grad_p)
    return TimeGradients(jnp.asarray(np.arange(steps)[::-1].copy()), carry_norm, input_norm)
