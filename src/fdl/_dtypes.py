"""dtype rules, shared by :mod:`fdl.nn` and :mod:`fdl.optim` (a kernel module).

fdl computes on JAX's *standard* promotion lattice (bfloat16 and float32 make float32, an int32
image times float32 weights computes in float32) and then casts explicitly, so every layer and
optimizer also runs under ``jax_numpy_dtype_promotion="strict"``. Each rule is written here once:

* :func:`promote_types`: the compute dtype of operands of the given dtypes (layers);
* :func:`result_type`: the same for values, where a Python number is weak and takes the other
  operand's dtype (optimizer updates);
* :func:`with_default_float`: values promoted with the default float type (schedules, bias
  correction);
* :func:`canonical`: a dtype as JAX stores it (float64 is float32 unless x64 is on);
* :func:`compute_and_stats`: the output and (at least float32) statistics dtypes of a
  normalization layer.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST
"""The precision of the toolkit's matrix products (distances, k-means, PCA, Lanczos): full
float32 on GPU and TPU too, where the default may round the operands to bfloat16 or TF32."""


def promote_types(*dtypes: Any) -> jnp.dtype:
    """The dtype of computing with operands of ``dtypes``, on JAX's standard lattice.

    >>> import jax.numpy as jnp
    >>> promote_types(jnp.bfloat16, jnp.float32), promote_types(jnp.int32, jnp.float32)
    (dtype('float32'), dtype('float32'))
    """
    if not dtypes:
        raise TypeError("promote_types needs at least one dtype, got none")
    with jax.numpy_dtype_promotion("standard"):
        return functools.reduce(jnp.promote_types, dtypes[1:], jnp.dtype(dtypes[0]))


def result_type(*values: Any) -> jnp.dtype:
    """The dtype JAX's standard lattice gives ``values`` together (arrays, dtypes or Python
    numbers; a Python number is weakly typed and takes the other operands' dtype).

    >>> import jax.numpy as jnp
    >>> result_type(jnp.ones(1, jnp.bfloat16), 0.5), result_type(jnp.bfloat16, jnp.float32)
    (dtype(bfloat16), dtype('float32'))
    """
    with jax.numpy_dtype_promotion("standard"):
        return jnp.result_type(*values)


def default_float() -> jnp.dtype:
    """JAX's default float type: float32, or float64 when x64 is on."""
    return jnp.dtype(jnp.result_type(float))


def lowest_float(tree: Any) -> jnp.dtype:
    """The dtype of ``tree``'s leaves that every other leaf's dtype promotes from (bfloat16
    among bfloat16 and float32), as optax's ``tree.dtype(tree, 'lowest')``; an integer leaf
    counts as the default float, and an empty tree gives the default float.

    >>> import jax.numpy as jnp
    >>> lowest_float({"a": jnp.ones(2), "b": jnp.ones(2, jnp.bfloat16), "n": jnp.ones(2, jnp.int32)})
    dtype(bfloat16)
    """
    lowest = None
    for leaf in jax.tree.leaves(tree):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            dtype = default_float()
        lowest = dtype if lowest is None or promote_types(lowest, dtype) == lowest else lowest
    return default_float() if lowest is None else jnp.dtype(lowest)


def with_default_float(*values: Any) -> jnp.dtype:
    """The dtypes of ``values`` (``None`` skipped) promoted with the default float type.

    A bfloat16 value and the float32 default meet at float32 (which strict promotion would
    refuse to decide); a Python number adds nothing.

    >>> import jax.numpy as jnp
    >>> with_default_float(jnp.asarray(1.0, jnp.bfloat16), None, 2.0)
    dtype('float32')
    """
    present = [v for v in values if v is not None]
    with jax.numpy_dtype_promotion("standard"):
        return jnp.dtype(jnp.result_type(default_float(), *present))


def canonical(dtype: Any) -> Any:
    """``dtype`` as JAX would store it (float64 becomes float32 unless x64 is on); None stays.

    >>> import jax.numpy as jnp
    >>> canonical(jnp.float32)
    dtype('float32')
    >>> canonical(None) is None
    True
    """
    return None if dtype is None else jax.dtypes.canonicalize_dtype(dtype)


def compute_and_stats(x: jax.Array, params: dict, dtype: Any) -> tuple[jnp.dtype, jnp.dtype]:
    """``(compute, stats)`` of a normalization layer: the output dtype and the (at least
    float32) dtype its statistics are computed in.

    ``compute`` is ``dtype`` if given, else the input's and the parameters' dtypes promoted on
    the standard lattice (a float type: an int input with no parameters computes in float32).

    >>> import jax.numpy as jnp
    >>> compute_and_stats(jnp.ones(2, jnp.bfloat16), {}, None)
    (dtype(bfloat16), dtype('float32'))
    """
    if dtype is not None:
        compute = jnp.dtype(dtype)
    else:
        compute = promote_types(x.dtype, *(leaf.dtype for leaf in params.values()))
        if not jnp.issubdtype(compute, jnp.inexact):
            compute = promote_types(compute, jnp.float32)
    return compute, promote_types(compute, jnp.float32)
