"""The multi-device half of ``tests/test_parallel.py``, run as a subprocess (not a test module).

JAX fixes its device count when it starts, so ``tests/test_parallel.py`` runs this script with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` in its environment:
``python tests/parallel_worker.py SEED``. It trains the same MLP with Adam for ``STEPS`` steps on
one device, on a 4-device mesh (parameters replicated, batch sharded), and on the mesh with the
batches gathered on device inside one jitted ``lax.scan``; checks the error messages that need
four devices with ``pytest.raises``; and prints its measurements as one JSON line for the parent
to assert on. Everything runs under ``main()`` so that pytest's doctest collection can import
this file without side effects.
"""

from __future__ import annotations

import json
import sys

NUM_DEVICES = 4
STEPS = 20
BATCH = 64
FEATURES = 16
CLASSES = 10


def main(seed: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import pytest

    jax.config.update("jax_numpy_dtype_promotion", "strict")  # as tests/conftest.py
    jax.config.update("jax_numpy_rank_promotion", "raise")

    import fdl
    from fdl import parallel

    out: dict = {"device_count": jax.device_count()}
    if jax.device_count() != NUM_DEVICES:
        return out  # the parent reports the count it got

    # ---------------------------------------------------------------------- one problem, 3 runs
    k_init, k_x, k_y, k_perm = jax.random.split(jax.random.key(seed), 4)
    model = fdl.nn.MLP((32, 32, CLASSES))
    params0, _, _ = model.init(k_init, (FEATURES,))
    params0 = jax.tree.map(np.asarray, params0)  # host copy: every run starts from it afresh
    data_x = np.asarray(jax.random.normal(k_x, (STEPS * BATCH, FEATURES)))
    data_y = np.asarray(jax.random.randint(k_y, (STEPS * BATCH,), 0, CLASSES))
    perm = np.asarray(jax.random.permutation(k_perm, STEPS * BATCH)).reshape(STEPS, BATCH)
    batches = [(data_x[rows], data_y[rows]) for rows in perm]  # batch t = the rows perm[t]

    def loss_fn(params, batch, key):
        x, y = batch
        logits, _ = model.apply(params, None, x)
        return fdl.losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean")

    mesh = parallel.make_mesh(NUM_DEVICES)

    def train_both(optimizer):
        """STEPS steps on one device and on the mesh from params0; both steps' final trees."""
        step = fdl.train.make_train_step(fdl.train.simple_loss(loss_fn), optimizer)
        state1 = fdl.train.init_state(params0, optimizer)
        state4 = parallel.replicate(fdl.train.init_state(params0, optimizer), mesh)
        losses1, losses4 = [], []
        for batch in batches:
            state1, metrics = step(state1, batch, None)
            losses1.append(float(metrics["loss"]))
            sharded = parallel.shard_batch(batch, mesh)
            state4, metrics = step(state4, sharded, None)
            losses4.append(float(metrics["loss"]))
        loss_diff = float(np.max(np.abs(np.asarray(losses4) - np.asarray(losses1))))
        return step, state1, state4, losses1, loss_diff

    # SGD with momentum: unlike Adam, its update scales with the gradient, so a wrongly scaled
    # all-reduce (a sum where the mean belongs) would show here.
    _, sgd1, sgd4, _, _ = train_both(fdl.optim.sgd(0.1, momentum=0.9))
    out["max_abs_diff_sgd"] = _max_abs_diff(jax, sgd1.params, sgd4.params)
    out["max_abs_param_sgd"] = _max_abs(jax, sgd1.params)

    optimizer = fdl.optim.adam(1e-2)
    step, state1, state4, losses1, out["max_abs_diff_loss"] = train_both(optimizer)
    params1, params4 = state1.params, state4.params
    first = parallel.shard_batch(batches[0], mesh)
    out["batch_shards"] = [
        {
            "device": shard.device.id,
            "rows": [shard.index[0].start, shard.index[0].stop],
            "shape": list(shard.data.shape),
        }
        for shard in first[0].addressable_shards
    ]
    out["batch_spec"] = [list(first[0].sharding.spec), list(first[1].sharding.spec)]
    out["batch_values_kept"] = bool(
        np.array_equal(np.asarray(first[0]), batches[0][0])
        and np.array_equal(np.asarray(first[1]), batches[0][1])
    )
    local = parallel.shard_local_batch(batches[0], mesh)  # one process: the same global batch
    out["local_batch_matches"] = bool(
        local[0].sharding == first[0].sharding and np.array_equal(np.asarray(local[0]), batches[0][0])
    )
    out["single_all_reduces"] = _count_all_reduces(step, state1, batches[0])
    out["sharded_all_reduces"] = _count_all_reduces(step, state4, first)
    out["outputs_replicated"] = _replication_report(jax, state4[:3], NUM_DEVICES)

    # 3. four devices, all steps in one jitted scan; batches gathered on device and constrained
    seen = []

    pure_step = fdl.train.make_step(fdl.train.simple_loss(loss_fn), optimizer)

    def epoch(state, data, perm):
        def body(state, rows):
            batch = jax.tree.map(lambda a: jnp.take(a, rows, axis=0), data)
            batch = parallel.constrain_batch(batch, mesh)
            jax.debug.inspect_array_sharding(batch[0], callback=seen.append)
            state, metrics, _ = pure_step(state, batch, None)
            return state, metrics["loss"]

        return jax.lax.scan(body, state, perm)

    data = parallel.replicate((data_x, data_y), mesh)
    scanned, losses_s = jax.jit(epoch)(
        parallel.replicate(fdl.train.init_state(params0, optimizer), mesh),
        data,
        parallel.replicate(perm, mesh),
    )
    params_s = scanned.params
    out["scan_outputs_replicated"] = _replication_report(jax, scanned[:3], NUM_DEVICES)
    out["scan_batch_sharding"] = [list(s.spec) for s in seen]
    out["scan_batch_devices"] = [len(s.device_set) for s in seen]
    # Control: the same gather without the constraint stays replicated on every device.
    unconstrained = []

    def gather(data, rows):
        x = jnp.take(data[0], rows, axis=0)
        jax.debug.inspect_array_sharding(x, callback=unconstrained.append)
        return x

    jax.jit(gather)(data, parallel.replicate(perm[0], mesh))
    out["unconstrained_gather_replicated"] = [s.is_fully_replicated for s in unconstrained]

    out["max_abs_diff_sharded"] = _max_abs_diff(jax, params1, params4)
    out["max_abs_diff_scan"] = _max_abs_diff(jax, params1, params_s)
    out["max_abs_param"] = _max_abs(jax, params1)
    out["max_abs_diff_loss"] = max(
        out["max_abs_diff_loss"], float(np.max(np.abs(np.asarray(losses_s) - np.asarray(losses1))))
    )
    out["params_moved"] = _max_abs_diff(jax, params0, params1)

    # ------------------------------------------ fdl.fit on the mesh against fdl.fit on one device
    # SGD with momentum, not Adam: Adam divides by sqrt(nu), so a coordinate whose gradient is a
    # near-cancelling sum (|g| ~ eps) turns the all-reduce's last-bit rounding into a visible
    # step difference (measured: up to 1.7e-5 after 20 fit steps, seed-dependent). SGD's update
    # is linear in the gradient and keeps the comparison at rounding level.
    def fit_run(with_mesh):
        result = fdl.fit.fit(
            fdl.train.simple_loss(loss_fn),
            fdl.optim.sgd(0.1, momentum=0.9),
            params0,
            (data_x, data_y),
            key=jax.random.key(seed),
            batch_size=BATCH,
            steps=STEPS,
            execution=fdl.fit.Execution(steps_per_call=5),
            logging=fdl.fit.Logging(progress=False),
            mesh=mesh if with_mesh else None,
        )
        return result

    fit1, fit4 = fit_run(False), fit_run(True)
    out["fit_max_abs_diff"] = _max_abs_diff(jax, fit1.params, fit4.params)
    out["fit_params_moved"] = _max_abs_diff(jax, params0, fit1.params)
    out["fit_replicated"] = _replication_report(jax, fit4.params, NUM_DEVICES)

    # ------------------------------------------------------- errors that need a 4-device mesh
    with pytest.raises(
        ValueError,
        match=r"shard_batch: `batch` leaf 0 has batch size 6, which is not divisible by "
        r"the 4 devices of mesh axis 'data'; use a batch size that is a multiple of 4",
    ):
        parallel.shard_batch((np.zeros((6, 3)), np.zeros(8)), mesh)
    with pytest.raises(
        ValueError,
        match=r"constrain_batch: `batch` leaf y has batch size 10, which is not "
        r"divisible by the 4 devices",
    ):
        jax.jit(lambda b: parallel.constrain_batch(b, mesh))({"x": jnp.zeros((8, 2)), "y": jnp.zeros((10,))})
    with pytest.raises(
        ValueError,
        match=r"`batch_size` has batch size 30, which is not divisible by the 4 devices",
    ):
        parallel.check_batch_size(30, mesh)
    with pytest.raises(
        ValueError,
        match=r"shard_local_batch: `local_batch` leaf \(root\) has local batch size 6, which is "
        r"not divisible by the 4 batch shard\(s\) held by this process's devices",
    ):
        parallel.shard_local_batch(np.zeros((6, 3)), mesh)
    with pytest.raises(
        ValueError,
        match=r"`num_devices` is 5 but only 4 cpu device\(s\) are available.*"
        r"XLA_FLAGS=--xla_force_host_platform_device_count=5",
    ):
        parallel.make_mesh(5)
    out["per_device_batch"] = parallel.check_batch_size(BATCH, mesh)
    out["errors_checked"] = 5
    return out


def _count_all_reduces(step, state, batch) -> int:
    """All-reduce instructions in the compiled step (lowering donates nothing)."""
    hlo = step.lower(state, batch, None).compile().as_text()
    return sum(" all-reduce(" in line or " all-reduce-start(" in line for line in hlo.splitlines())


def _replication_report(jax, tree, num_devices: int) -> dict:
    leaves = jax.tree.leaves(tree)
    return {
        "leaves": len(leaves),
        "fully_replicated": sum(leaf.sharding.is_fully_replicated for leaf in leaves),
        "on_all_devices": sum(len(leaf.sharding.device_set) == num_devices for leaf in leaves),
    }


def _max_abs(jax, tree) -> float:
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(leaf)))) for leaf in jax.tree.leaves(tree))


def _max_abs_diff(jax, a, b) -> float:
    import numpy as np

    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
