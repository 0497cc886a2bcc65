r"""Gradient noise: add annealed Gaussian noise to every update.

Neelakantan et al. (2015) found that adding Gaussian noise to the gradient helps very deep
networks leave poor regions early in training. The noise's variance decays with the step
:math:`t = 1, 2, \ldots` as a power law,

.. math:: \sigma_t^2 = \frac{\eta}{t^{\gamma}},

so it explores at first and fades away later. The randomness is explicit: the PRNG key lives in
the optimizer state and is split at every step, exactly as optax splits it, so fdl's and
optax's noise are the same numbers for the same key.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fdl import _dtypes
from fdl._checks import check_non_negative, check_real, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.tree import floats

__all__ = ["AddNoiseState", "add_noise", "noisy_sgd"]

PyTree = Any
Scalar = float | jax.Array
Key = jax.Array | int
"""A PRNG key (``jax.random.key(0)``) or an integer seed, as optax accepts for its keys."""


class AddNoiseState(NamedTuple):
    """The step count (int32) that anneals the noise, and the PRNG key of the next draw."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    rng_key: jax.Array


def check_key(name: str, key: Any) -> jax.Array:
    """``key`` as a typed PRNG key: a typed key array of shape ``()`` as it is, an integer seed
    (a Python or NumPy integer, or an integer array of shape ``()``, traced or not) through
    ``jax.random.key``, as optax canonicalizes its keys.

    Raises:
      TypeError: anything else (``None``, a bool, a float, a string, a legacy ``uint32[2]``
        key, a batch of keys), naming ``name`` and the value.
    """
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and jnp.shape(key) == ():
        return key
    is_int = isinstance(key, (int, np.integer)) or (
        dtype is not None and jnp.issubdtype(dtype, jnp.integer) and jnp.shape(key) == ()
    )
    if is_int and not isinstance(key, (bool, np.bool_)):
        return jax.random.key(key)
    if dtype is not None and hasattr(key, "shape"):
        shown = f"an array of dtype {dtype} and shape {tuple(jnp.shape(key))}"
    else:
        shown = f"{key!r} ({type(key).__name__})"
    raise TypeError(
        f"`{name}` must be a PRNG key of shape () (e.g. jax.random.key(0)) or an integer seed, "
        f"got {shown}; a legacy uint32 key can be wrapped with jax.random.wrap_key_data"
    )


def noise_like(key: jax.Array, tree: PyTree) -> PyTree:
    """Standard normal noise shaped like ``tree``, one key per leaf from ``split(key, leaves)``
    in tree order, each leaf drawn in its own dtype (optax's ``tree.random_like``)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noise = [
        jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, noise)


@names_errors("add_noise")
def add_noise(eta: Scalar, gamma: Scalar, key: Key | None = None) -> GradientTransformation:
    r"""Add Gaussian noise whose variance decays with the step.

    .. math::

        \sigma_t = \sqrt{\frac{\text{eta}}{t^{\text{gamma}}}}, \qquad
        u_t = g_t + \sigma_t\, \xi_t, \quad \xi_t \sim \mathcal N(0, I), \qquad t = 1, 2, \ldots

    At every step the state's key is split in two, ``(next_key, draw_key) =
    jax.random.split(rng_key)``; ``draw_key`` is split into one key per leaf of the updates (in
    tree order), and each leaf's noise is drawn in the leaf's dtype: optax's exact use of the
    key, so the noise equals optax's bit for bit.

    Args:
      eta: :math:`\eta \ge 0`, the variance of the noise at the first step.
      gamma: the annealing exponent :math:`\gamma` (optax's default in :func:`noisy_sgd` is
        0.55); any real number (a negative one makes the noise grow).
      key: a PRNG key (``jax.random.key(0)``) or an integer seed; ``None`` means the seed 0.

    Returns:
      A transformation with state :class:`AddNoiseState` ``(count, rng_key)``.

    Raises:
      TypeError: a ``key`` that is neither a PRNG key nor an integer seed.
      ValueError: a negative ``eta``.

    >>> import jax, jax.numpy as jnp
    >>> opt = add_noise(eta=0.0, gamma=0.55, key=jax.random.key(0))  # no variance: no noise
    >>> u, state = opt.update(jnp.asarray([1.0, -2.0]), opt.init(jnp.zeros(2)))
    >>> u.tolist(), int(state.count)
    ([1.0, -2.0], 1)

    References:
      Neelakantan et al., *Adding Gradient Noise Improves Learning for Very Deep Networks*,
      2015.

    Differs from optax:
      optax warns when ``key`` is ``None`` (it will be required) and still accepts a deprecated
      ``seed``; here ``None`` is the seed 0, silently, and there is no ``seed``. The updates
      keep their dtype (optax's become float32 for bfloat16 gradients: its float32 noise scale
      promotes them); the sum is taken in float32 from the bfloat16 draw and rounded once.
    """
    check_non_negative("eta", eta)
    check_real("gamma", gamma)
    rng_key = check_key("key", 0 if key is None else key)

    def init(params: PyTree) -> AddNoiseState:
        del params
        return AddNoiseState(count=jnp.zeros([], jnp.int32), rng_key=rng_key)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = floats(updates)  # integer / Python-number updates as floats
        count = safe_increment(state.count)
        dtype = _dtypes.with_default_float(eta, gamma)
        std = jnp.sqrt(jnp.asarray(eta, dtype) / count.astype(dtype) ** jnp.asarray(gamma, dtype))
        next_key, draw_key = jax.random.split(state.rng_key)
        noise = noise_like(draw_key, updates)

        def add(g, n):
            total = _dtypes.result_type(g, std)
            if total != n.dtype:  # keep the draw rounded to its dtype, as optax's (XLA on CPU
                # otherwise fuses the sampler's wider arithmetic through the cast to `total`)
                info = jnp.finfo(n.dtype)
                n = jax.lax.reduce_precision(n, exponent_bits=info.nexp, mantissa_bits=info.nmant)
            return (g.astype(total) + std.astype(total) * n.astype(total)).astype(g.dtype)

        return jax.tree.map(add, updates, noise), AddNoiseState(count=count, rng_key=next_key)

    return GradientTransformation(init, update)


@names_errors("noisy_sgd")
def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: Scalar = 0.01,
    gamma: Scalar = 0.55,
    key: Key | None = None,
) -> GradientTransformation:
    r"""SGD on gradients with annealed Gaussian noise (:func:`add_noise`).

    .. math::

        \theta_{t+1} = \theta_t - \text{learning\_rate}_t\,\bigl(g_t + \sigma_t \xi_t\bigr),
        \qquad \sigma_t^2 = \frac{\text{eta}}{t^{\text{gamma}}},\ t = 1, 2, \ldots

    ``chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))``, as optax
    composes it.

    Args:
      learning_rate: :math:`\eta_t \ge 0`, a number or a schedule.
      eta, gamma, key: as in :func:`add_noise`.

    Returns:
      The optimizer (state ``(AddNoiseState, step-size state)``).

    Raises:
      TypeError: a ``key`` that is neither a PRNG key nor an integer seed.
      ValueError: a negative learning rate or ``eta``.

    >>> import jax, jax.numpy as jnp
    >>> opt = noisy_sgd(learning_rate=0.5, eta=0.0, key=jax.random.key(1))
    >>> opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))[0].tolist()
    [-1.0]

    References:
      Neelakantan et al., *Adding Gradient Noise Improves Learning for Very Deep Networks*,
      2015.
    """
    return chain(add_noise(eta, gamma, key), scale_by_required_learning_rate(learning_rate))
