r"""Data parallelism over a ``jax.sharding`` mesh: shard the batch, replicate the rest.

A 1-D device mesh with one axis (``"data"``) holds :math:`D` devices. The global batch of
:math:`B` examples is split along its leading axis into :math:`D` equal shards of
:math:`B / D` examples, one per device; the parameters and the optimizer state are replicated
(a full copy on every device). A train step written for one device (e.g.
:func:`fdl.train.make_train_step`) then runs unchanged: ``jax.jit`` sees sharded inputs, and
XLA's SPMD partitioner (GSPMD) compiles one program per device that computes the local part of
the loss and gradient and inserts the all-reduce that sums the partial gradients. Nothing here
writes a collective by hand; the model and the loss name no mesh axis and need no ``pmap``.
The loss the step reports is the global batch's mean, the same on every device.

**Why the result equals single-device training.** With per-example loss :math:`\ell_i` and the
batch split into shards :math:`S_1, \dots, S_D` of equal size :math:`B / D`,

.. math::

    \nabla_\theta \frac{1}{B} \sum_{i=1}^{B} \ell_i(\theta)
    = \frac{1}{D} \sum_{d=1}^{D} g_d, \qquad
    g_d = \frac{D}{B} \sum_{i \in S_d} \nabla_\theta \ell_i(\theta),

the mean gradient over the global batch is the mean of the per-device mean gradients
:math:`g_d`. Every device then holds the same gradient and applies the same optimizer update to
the same replicated parameters, so data-parallel SGD (or Adam, or any optimizer) computes the
same iterates as single-device training on the global batch. They agree up to floating-point
rounding only: the all-reduce adds the partial sums in a different order than one device's
reduction does. The identity needs equal shards (with unequal ones the mean of the per-device
means weights the examples unequally), and so does the batch sharding: :math:`B` must be
divisible by :math:`D`, which :func:`shard_batch` checks.

**Inside jitted code.** A training loop that gathers shuffled batches on device inside a jitted,
``lax.scan``-fused epoch computes each batch from replicated data, so nothing tells XLA to split
it: :func:`constrain_batch` (``jax.lax.with_sharding_constraint``) pins it to the batch sharding.

**Multi-host runs** use JAX's own runtime, nothing home-made. Start the same program once per
host (process) and, before any other JAX call, connect them:

.. code-block:: python

    jax.distributed.initialize(coordinator_address="10.0.0.1:1234",
                               num_processes=2, process_id=rank)   # rank 0 or 1
    mesh = fdl.parallel.make_mesh()   # every device of every process (jax.devices())
    params = fdl.parallel.replicate(params, mesh)   # same values (same seed) on every process
    batch = fdl.parallel.shard_local_batch(local_batch, mesh)

``jax.devices()`` then lists the devices of all processes, so the mesh spans the cluster; each
process loads only its own part of the global batch (its ``B / num_processes`` examples) and
:func:`shard_local_batch` assembles the global array with
``jax.make_array_from_process_local_data``. The jitted step is the same program as on one host.
On TPU pods, Slurm and Open MPI, ``jax.distributed.initialize()`` finds its arguments itself.

The mesh axes are ``jax.sharding.AxisType.Auto`` (GSPMD propagates shardings through the
program), not the ``Explicit`` axes that ``jax.make_mesh`` defaults to in recent JAX, under which
sharding is part of every array's type and some single-device code must be rewritten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from fdl._checks import is_integer_number
from fdl._paths import path_label

__all__ = [
    "make_mesh",
    "replicated_sharding",
    "batch_sharding",
    "replicate",
    "shard_batch",
    "shard_local_batch",
    "constrain_batch",
    "check_batch_size",
]

PyTree = Any


def make_mesh(
    num_devices: int | None = None,
    *,
    axis_name: str = "data",
    devices: Sequence[Any] | None = None,
) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices, with one axis named ``axis_name``.

    The devices keep the order of ``devices`` (default ``jax.devices()``: every device of every
    process, so under ``jax.distributed.initialize`` the mesh spans all hosts). The axis is of
    type ``AxisType.Auto``, so XLA propagates shardings and inserts collectives itself.

    Args:
      num_devices: how many devices to use; ``None`` takes all of ``devices``.
      axis_name: the name of the mesh axis that the batch is split along.
      devices: the devices to choose from; default ``jax.devices()``.

    Returns:
      A ``jax.sharding.Mesh`` of shape ``{axis_name: num_devices}``.

    Raises:
      ValueError: ``num_devices`` is not a positive integer or exceeds the devices available,
        ``devices`` is empty, or ``axis_name`` is ``""``.
      TypeError: ``axis_name`` is not a string.

    >>> import fdl.parallel
    >>> mesh = fdl.parallel.make_mesh(1)
    >>> dict(mesh.shape)
    {'data': 1}
    """
    if not isinstance(axis_name, str):
        raise TypeError(f"`axis_name` must be a string, got {axis_name!r}")
    if not axis_name:
        raise ValueError("`axis_name` must be a non-empty string, got ''")
    available = list(jax.devices() if devices is None else devices)
    if not available:
        raise ValueError("`devices` must list at least one device, got an empty sequence")
    if num_devices is None:
        num_devices = len(available)
    if not is_integer_number(num_devices) or num_devices < 1:
        raise ValueError(f"`num_devices` must be a positive integer or None, got {num_devices!r}")
    if num_devices > len(available):
        platform = available[0].platform
        raise ValueError(
            f"`num_devices` is {num_devices} but only {len(available)} {platform} device(s) are "
            f"available. To test with {num_devices} devices on CPU, set the environment variable "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices} before jax is "
            "imported."
        )
    mesh_devices = np.empty((num_devices,), dtype=object)  # (D,)
    mesh_devices[:] = available[:num_devices]
    return Mesh(mesh_devices, (axis_name,), axis_types=(AxisType.Auto,))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding that puts a full copy of an array on every device of ``mesh``.

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.

    >>> import fdl.parallel
    >>> fdl.parallel.replicated_sharding(fdl.parallel.make_mesh(1)).spec
    P()
    """
    _check_mesh(mesh)
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int, axis_name: str = "data") -> NamedSharding:
    """The sharding that splits axis 0 of an ``ndim``-D array over the mesh axis ``axis_name``.

    Every other axis (and every other mesh axis) is replicated: the spec is
    ``PartitionSpec(axis_name, None, ..., None)`` with ``ndim`` entries.

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.
      ValueError: ``ndim < 1`` (a scalar has no batch axis), or ``axis_name`` is not an axis
        of ``mesh``.

    >>> import fdl.parallel
    >>> fdl.parallel.batch_sharding(fdl.parallel.make_mesh(1), 2).spec
    P('data', None)
    """
    _axis_size(mesh, axis_name)
    if not is_integer_number(ndim) or ndim < 1:
        raise ValueError(
            f"`ndim` must be a positive integer (a batch array has a leading batch axis), got {ndim!r}"
        )
    return NamedSharding(mesh, PartitionSpec(axis_name, *([None] * (ndim - 1))))


def check_batch_size(batch_size: int, mesh: Mesh, *, axis_name: str = "data") -> int:
    """Return the per-device batch size ``batch_size / D`` (``D`` the size of ``axis_name``).

    For validating a configuration before any data is touched (a training loop's batch size).

    Raises:
      ValueError: ``batch_size`` is not a positive integer divisible by ``D``, or
        ``axis_name`` is not an axis of ``mesh``.
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.

    >>> import fdl.parallel
    >>> fdl.parallel.check_batch_size(32, fdl.parallel.make_mesh(1))
    32
    """
    size = _axis_size(mesh, axis_name)
    if not is_integer_number(batch_size) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if batch_size % size:
        raise ValueError(_indivisible_message("`batch_size`", batch_size, size, axis_name))
    return batch_size // size


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Put a full copy of every leaf of ``tree`` on every device of ``mesh``.

    For parameters, layer state and optimizer state. Each leaf becomes a ``jax.Array`` with
    ``NamedSharding(mesh, PartitionSpec())``; the tree structure is unchanged.

    When ``mesh`` spans several processes (``jax.distributed``), every process calls this with
    the same tree; each builds its devices' copies from its own values (NumPy, or jax arrays on
    its own devices, e.g. restored from a checkpoint), so nothing is sent between processes but
    one SHA-256 digest per leaf, gathered once to check that every process holds the same
    values. Leaves that already span the mesh's processes are resharded by ``jax.device_put``.

    Raises:
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.
      ValueError: across processes, a leaf's values differ between processes (the message names
        its path and the processes).

    >>> import jax.numpy as jnp, fdl.parallel
    >>> params = fdl.parallel.replicate({"w": jnp.ones((2, 3))}, fdl.parallel.make_mesh(1))
    >>> params["w"].sharding.is_fully_replicated
    True
    """
    sharding = replicated_sharding(mesh)
    if sharding.is_fully_addressable:  # every device of the mesh belongs to this process
        return jax.device_put(tree, sharding)
    return _replicate_across_processes(tree, sharding)


def shard_batch(batch: PyTree, mesh: Mesh, *, axis_name: str = "data") -> PyTree:
    """Split every leaf of the global ``batch`` along its leading axis over the mesh axis.

    With ``D`` devices on ``axis_name`` and batch size ``B``, device ``d`` receives examples
    ``[d·B/D, (d+1)·B/D)`` of every leaf (:func:`batch_sharding`). ``batch`` is the *global*
    batch (NumPy or JAX arrays, any pytree, e.g. ``(x, y)``). In a multi-process run it must be
    the same global batch on every process (``jax.device_put`` checks that); where each process
    holds only its own examples, use :func:`shard_local_batch`.

    Raises:
      ValueError: a leaf is a scalar (no batch axis), or its batch size is not divisible by
        ``D`` (the message names the leaf's path, its batch size and ``D``).
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.

    >>> import numpy as np, fdl.parallel
    >>> mesh = fdl.parallel.make_mesh(1)
    >>> x, y = fdl.parallel.shard_batch((np.zeros((8, 3)), np.zeros(8)), mesh)
    >>> x.sharding.spec, y.sharding.spec
    (P('data', None), P('data',))
    """
    shardings = _batch_shardings(batch, mesh, axis_name, "shard_batch")
    return jax.device_put(batch, shardings)


def shard_local_batch(local_batch: PyTree, mesh: Mesh, *, axis_name: str = "data") -> PyTree:
    """Assemble the global sharded batch from each process's own examples (multi-host feeding).

    Every process calls this with its part of the global batch, ``local_batch``, whose leading
    axis holds ``B_local`` examples; the global batch has ``B_local · P`` examples for ``P``
    processes, in process order, sharded as :func:`shard_batch` shards it
    (``jax.make_array_from_process_local_data``). In a single process it equals
    :func:`shard_batch`.

    Raises:
      ValueError: a leaf is a scalar, or ``B_local`` is not divisible by the number of batch
        shards this process's devices hold.
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.

    >>> import numpy as np, fdl.parallel
    >>> x = fdl.parallel.shard_local_batch(np.zeros((8, 3)), fdl.parallel.make_mesh(1))
    >>> x.shape, x.sharding.spec
    ((8, 3), P('data', None))
    """
    _axis_size(mesh, axis_name)
    local_shards = _local_shard_count(mesh, axis_name)

    def check(path: Any, leaf: Any) -> NamedSharding:
        shape = np.shape(leaf)
        name = _leaf_name("local_batch", path)
        if not shape:
            raise ValueError(_scalar_message("shard_local_batch", name))
        if shape[0] % local_shards:
            raise ValueError(
                f"shard_local_batch: {name} has local batch size {shape[0]}, which is not "
                f"divisible by the {local_shards} batch shard(s) held by this process's devices "
                f"on mesh axis {axis_name!r}; use a local batch size that is a multiple of "
                f"{local_shards}"
            )
        return batch_sharding(mesh, len(shape), axis_name)

    shardings = jax.tree_util.tree_map_with_path(check, local_batch)
    return jax.tree.map(jax.make_array_from_process_local_data, shardings, local_batch)


def constrain_batch(batch: PyTree, mesh: Mesh, *, axis_name: str = "data") -> PyTree:
    """Inside jitted code: require every leaf of ``batch`` to be split along its leading axis.

    ``jax.lax.with_sharding_constraint`` with :func:`batch_sharding`. Use it on a batch that a
    jitted (e.g. ``lax.scan``-fused) loop computes from replicated data, such as a gather of
    shuffled rows, which XLA would otherwise keep replicated and compute in full on every
    device. The shapes are static under ``jit``, so the checks run at trace time.

    Raises:
      ValueError: a leaf is a scalar, or its batch size is not divisible by the size of
        ``axis_name``.
      TypeError: ``mesh`` is not a ``jax.sharding.Mesh``.

    >>> import jax, jax.numpy as jnp, fdl.parallel
    >>> mesh = fdl.parallel.make_mesh(1)
    >>> rows = jax.jit(lambda x, i: fdl.parallel.constrain_batch(x[i], mesh))
    >>> rows(jnp.zeros((10, 3)), jnp.arange(4)).shape  # with D devices, each holds 4 / D rows
    (4, 3)
    """
    shardings = _batch_shardings(batch, mesh, axis_name, "constrain_batch")
    return jax.lax.with_sharding_constraint(batch, shardings)


# ------------------------------------------------------------------------------------- helpers


def _check_mesh(mesh: Any) -> None:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh (e.g. fdl.parallel.make_mesh()), got {mesh!r}")


def _axis_size(mesh: Any, axis_name: str) -> int:
    _check_mesh(mesh)
    if axis_name not in mesh.axis_names:
        raise ValueError(
            f"`axis_name` {axis_name!r} is not an axis of the mesh, whose axes are {tuple(mesh.axis_names)}"
        )
    return int(mesh.shape[axis_name])


def _leaf_name(argument: str, path: Any) -> str:
    return f"`{argument}` leaf {path_label(path)}"


def _scalar_message(caller: str, name: str) -> str:
    return f"{caller}: {name} is a scalar (shape ()); every batch leaf needs a leading batch axis"


def _indivisible_message(name: str, size: int, devices: int, axis_name: str) -> str:
    return (
        f"{name} has batch size {size}, which is not divisible by the {devices} devices of mesh "
        f"axis {axis_name!r}; use a batch size that is a multiple of {devices} (e.g. drop the "
        "last, smaller batch)"
    )


def _batch_shardings(batch: PyTree, mesh: Mesh, axis_name: str, caller: str) -> PyTree:
    """One :func:`batch_sharding` per leaf, after checking each leaf's batch size."""
    size = _axis_size(mesh, axis_name)

    def leaf_sharding(path: Any, leaf: Any) -> NamedSharding:
        shape = np.shape(leaf)
        name = _leaf_name("batch", path)
        if not shape:
            raise ValueError(_scalar_message(caller, name))
        if shape[0] % size:
            raise ValueError(f"{caller}: " + _indivisible_message(name, shape[0], size, axis_name))
        return batch_sharding(mesh, len(shape), axis_name)

    return jax.tree_util.tree_map_with_path(leaf_sharding, batch)


def _local_shard_count(mesh: Mesh, axis_name: str) -> int:
    """How many distinct batch shards (positions along ``axis_name``) this process's devices
    hold."""
    axis = mesh.axis_names.index(axis_name)
    process = jax.process_index()
    positions = {
        index[axis] for index, device in np.ndenumerate(mesh.devices) if device.process_index == process
    }
    return len(positions)


def _replicate_across_processes(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """:func:`replicate` onto a mesh that spans several processes (see its docstring)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out: list[Any] = [None] * len(leaves)
    local: list[tuple[int, np.ndarray, Any]] = []  # (position, host value, PRNG impl or None)
    for i, (_, leaf) in enumerate(leaves):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            out[i] = jax.device_put(leaf, sharding)  # already global: reshard
        elif isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            local.append((i, np.asarray(jax.random.key_data(leaf)), jax.random.key_impl(leaf)))
        else:
            value = np.asarray(leaf)  # Python scalars in JAX's default dtypes, as device_put
            value = value.astype(jax.dtypes.canonicalize_dtype(value.dtype), copy=False)
            local.append((i, value, None))
    _check_same_on_every_process([(leaves[i][0], value) for i, value, _ in local])
    for i, value, impl in local:
        array = jax.make_array_from_callback(value.shape, sharding, value.__getitem__)
        out[i] = array if impl is None else jax.random.wrap_key_data(array, impl=impl)
    return jax.tree_util.tree_unflatten(treedef, out)


def _check_same_on_every_process(named: list[tuple[Any, np.ndarray]]) -> None:
    """Raise unless every process holds the same leaves: one gather of per-leaf digests."""
    if not named:
        return
    from jax.experimental import multihost_utils

    digests = np.stack([_digest(value) for _, value in named])  # (L, 32)
    gathered = np.asarray(multihost_utils.process_allgather(digests))  # (P, L, 32)
    for (path, _), column in zip(named, np.moveaxis(gathered, 1, 0), strict=True):  # (P, 32)
        differ = [p for p in range(len(column)) if not np.array_equal(column[p], column[0])]
        if differ:
            raise ValueError(
                f"replicate: {_leaf_name('tree', path)} differs between processes (process 0 "
                f"and process(es) {differ} hold different values); every process must pass the "
                "same values, e.g. parameters initialized from the same key"
            )


def _digest(value: np.ndarray) -> np.ndarray:
    """SHA-256 of an array's dtype, shape and bytes, as 32 uint8."""
    hasher = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
    # numpy declares ndarray.__buffer__ only for Python >= 3.12
    hasher.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    return np.frombuffer(hasher.digest(), np.uint8)
