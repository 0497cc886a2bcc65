"""Data parallelism: a sharded step equals the single-device step; batches split, params replicated.

JAX fixes the number of devices when it starts, and this process has one CPU device, so every
multi-device check runs in ONE subprocess (``tests/parallel_worker.py``) started with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``; it prints its measurements as JSON and
the tests below assert on them. Errors that one device can trigger are tested in-process.

Tolerance. Single-device and 4-device training run the same float32 operations except the
gradient's batch reduction: one device sums 64 per-example terms in one order, the mesh adds 4
partial sums of 16 in the all-reduce. That changes only the rounding, by about an ulp per step
(float32 ulp = 6e-8 for |θ| in [0.5, 1)), and 20 steps carry it into the parameters. Measured
over 14 seeds (Adam 1e-2, SGD 0.1 with momentum 0.9, and the on-device scan): max |Δθ| = 1.5e-7
(2.5 ulp; every |θ| < 0.92) and max |Δloss| = 4.8e-7 (2 ulp at a loss of about 2.3). The
tolerances keep a margin of about 7 over that: ``PARAM_ATOL = 1e-6``, ``LOSS_ATOL = 4e-6``. A
wrong parallel step lands far outside them; measured on this problem, a step that used only one
shard's gradient moves the final parameters by 0.17 (Adam) and 0.21 (SGD), and summing the
shards' mean gradients instead of averaging them (4 times the SGD step) by 0.35.
"""

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh

from fdl import parallel

WORKER = Path(__file__).with_name("parallel_worker.py")
NUM_DEVICES = 4
PARAM_ATOL = 1e-6
LOSS_ATOL = 4e-6


@pytest.fixture(scope="module")
def worker():
    """The worker's measurements: one subprocess with 4 CPU devices for the whole module."""
    env = dict(os.environ)
    flag = f"--xla_force_host_platform_device_count={NUM_DEVICES}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    # The seed is derived from this module's name, as conftest.py derives each test's keys.
    seed = zlib.crc32(b"tests/test_parallel.py")
    result = subprocess.run(
        [sys.executable, str(WORKER), str(seed)],
        env=env,
        check=False,  # the returncode is asserted below, with the worker's output
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"worker failed:\n{result.stdout}\n{result.stderr[-6000:]}"
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["device_count"] == NUM_DEVICES, out
    return out


# ------------------------------------------------------------------ multi-device (subprocess)


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_sharded_adam_steps_equal_single_device_steps(worker):
    assert worker["params_moved"] > 1e-2  # training moved the parameters: equality means something
    assert worker["max_abs_diff_sharded"] <= PARAM_ATOL
    assert worker["max_abs_diff_loss"] <= LOSS_ATOL


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_sharded_sgd_steps_equal_single_device_steps(worker):
    # SGD's update is proportional to the gradient (Adam's is not), so this also checks that the
    # all-reduce averages the shards' gradients rather than summing them.
    assert worker["max_abs_diff_sgd"] <= PARAM_ATOL
    assert worker["max_abs_param_sgd"] > 0.1


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_scan_fused_steps_with_on_device_gather_equal_single_device_steps(worker):
    assert worker["max_abs_diff_scan"] <= PARAM_ATOL


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_fit_on_the_mesh_equals_fit_on_one_device(worker):
    """``fdl.fit.fit(..., mesh=mesh)``: the same run, data parallel, within the same tolerance."""
    assert worker["fit_params_moved"] > 1e-2
    assert worker["fit_max_abs_diff"] <= PARAM_ATOL
    report = worker["fit_replicated"]
    assert report["fully_replicated"] == report["on_all_devices"] == report["leaves"] == 6


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_batch_is_split_over_four_devices(worker):
    shards = worker["batch_shards"]
    assert sorted(s["device"] for s in shards) == [0, 1, 2, 3]
    assert sorted(s["rows"] for s in shards) == [[0, 16], [16, 32], [32, 48], [48, 64]]
    assert all(s["shape"] == [16, 16] for s in shards)
    assert worker["batch_spec"] == [["data", None], ["data"]]  # x (B, F) and labels (B,)
    assert worker["batch_values_kept"]
    assert worker["per_device_batch"] == 16


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_shard_local_batch_equals_shard_batch_in_one_process(worker):
    assert worker["local_batch_matches"]


@pytest.mark.parametrize("run", ["outputs_replicated", "scan_outputs_replicated"])
@pytest.mark.slow  # the 4-device worker is a fresh process
def test_step_outputs_stay_replicated(worker, run):
    report = worker[run]  # params and Adam state after 20 sharded steps (step by step, or scan)
    assert report["leaves"] == 19  # 3 layers × (w, b) params; Adam's count, mu and nu
    assert report["fully_replicated"] == report["leaves"]
    assert report["on_all_devices"] == report["leaves"]


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_xla_inserts_the_gradient_all_reduce(worker):
    assert worker["single_all_reduces"] == 0
    assert worker["sharded_all_reduces"] >= 1


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_constrain_batch_shards_a_gather_inside_a_jitted_scan(worker):
    (spec,) = worker["scan_batch_sharding"]  # the scan body is traced once
    assert spec[0] == "data" and all(axis is None for axis in spec[1:])
    assert worker["scan_batch_devices"] == [NUM_DEVICES]
    assert worker["unconstrained_gather_replicated"] == [True]  # without it: replicated


@pytest.mark.slow  # the 4-device worker is a fresh process
def test_four_device_error_messages_were_checked(worker):
    # The worker asserts each message with pytest.raises(match=...) and exits non-zero otherwise:
    # indivisible batches (shard_batch, constrain_batch, check_batch_size, shard_local_batch)
    # and make_mesh(5) on 4 devices.
    assert worker["errors_checked"] == 5


# ------------------------------------------------------------------------- one device (here)


def test_make_mesh_with_more_devices_than_exist_names_both_numbers_and_xla_flags():
    have = len(jax.devices())
    want = have + 3
    platform = jax.devices()[0].platform
    with pytest.raises(
        ValueError,
        match=rf"`num_devices` is {want} but only {have} {platform} device\(s\) are available\. "
        rf"To test with {want} devices on CPU, set the environment variable "
        rf"XLA_FLAGS=--xla_force_host_platform_device_count={want} before jax is imported",
    ):
        parallel.make_mesh(want)


@pytest.mark.parametrize("bad", [0, -2, 1.0, True, "2"])
def test_make_mesh_rejects_a_bad_device_count(bad):
    message = rf"`num_devices` must be a positive integer or None, got {re.escape(repr(bad))}"
    with pytest.raises(ValueError, match=message):
        parallel.make_mesh(bad)


@pytest.mark.parametrize("bad", [3, None, ("data",)])
def test_make_mesh_rejects_a_non_string_axis_name(bad):
    message = rf"`axis_name` must be a string, got {re.escape(repr(bad))}"
    with pytest.raises(TypeError, match=message):
        parallel.make_mesh(1, axis_name=bad)


def test_make_mesh_rejects_an_empty_axis_name():
    with pytest.raises(ValueError, match=r"`axis_name` must be a non-empty string, got ''"):
        parallel.make_mesh(1, axis_name="")


def test_make_mesh_rejects_empty_devices():
    with pytest.raises(ValueError, match=r"`devices` must list at least one device"):
        parallel.make_mesh(devices=[])


def test_make_mesh_defaults_to_all_devices_on_one_auto_axis():
    mesh = parallel.make_mesh()
    assert isinstance(mesh, Mesh)
    assert dict(mesh.shape) == {"data": len(jax.devices())}
    assert mesh.axis_types == (AxisType.Auto,)
    assert list(mesh.devices.flat) == jax.devices()
    named = parallel.make_mesh(1, axis_name="batch", devices=jax.devices()[:1])
    assert named.axis_names == ("batch",)


def test_replicate_keeps_structure_values_and_dtypes():
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "count": np.int32(7)}
    out = parallel.replicate(tree, parallel.make_mesh(1))
    assert jax.tree.structure(out) == jax.tree.structure(tree)
    for leaf, ref in zip(jax.tree.leaves(out), jax.tree.leaves(tree), strict=True):
        assert leaf.sharding.is_fully_replicated
        assert leaf.dtype == ref.dtype
        np.testing.assert_array_equal(np.asarray(leaf), ref)


def test_shard_batch_keeps_values_and_shards_the_leading_axis():
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    out = parallel.shard_batch({"x": x, "y": x[:, 0]}, parallel.make_mesh(1))
    assert tuple(out["x"].sharding.spec) == ("data", None)
    assert tuple(out["y"].sharding.spec) == ("data",)
    np.testing.assert_array_equal(np.asarray(out["x"]), x)


def test_constrain_batch_under_jit_keeps_values():
    mesh = parallel.make_mesh(1)
    data = jnp.arange(30.0).reshape(10, 3)
    rows = jnp.array([3, 1, 4, 1])
    out = jax.jit(lambda d, i: parallel.constrain_batch(d[i], mesh))(data, rows)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(data)[np.asarray(rows)])


def test_mesh_argument_must_be_a_mesh():
    with pytest.raises(TypeError, match=r"`mesh` must be a jax.sharding.Mesh .*got 'cpu'"):
        parallel.replicate({"w": np.zeros(2)}, "cpu")
    with pytest.raises(TypeError, match=r"`mesh` must be a jax.sharding.Mesh"):
        parallel.shard_batch(np.zeros(2), jax.devices()[0])


def test_axis_name_must_be_an_axis_of_the_mesh():
    mesh = parallel.make_mesh(1, axis_name="batch")
    with pytest.raises(
        ValueError,
        match=r"`axis_name` 'data' is not an axis of the mesh, whose axes are \('batch',\)",
    ):
        parallel.shard_batch(np.zeros((4, 2)), mesh)
    assert parallel.shard_batch(np.zeros((4, 2)), mesh, axis_name="batch").shape == (4, 2)


def test_scalar_batch_leaves_are_rejected():
    mesh = parallel.make_mesh(1)
    batch = {"x": np.zeros((4, 2)), "n": np.float32(1.0)}
    with pytest.raises(
        ValueError,
        match=r"shard_batch: `batch` leaf n is a scalar \(shape \(\)\); every batch leaf "
        r"needs a leading batch axis",
    ):
        parallel.shard_batch(batch, mesh)
    with pytest.raises(ValueError, match=r"constrain_batch: `batch` leaf n is a scalar"):
        jax.jit(lambda b: parallel.constrain_batch(b, mesh))(batch)
    with pytest.raises(ValueError, match=r"shard_local_batch: `local_batch` leaf \(root\) is a scalar"):
        parallel.shard_local_batch(np.float32(1.0), mesh)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_batch_sharding_needs_a_batch_axis(bad):
    message = rf"`ndim` must be a positive integer .*got {re.escape(repr(bad))}"
    with pytest.raises(ValueError, match=message):
        parallel.batch_sharding(parallel.make_mesh(1), bad)


@pytest.mark.parametrize("bad", [0, -8, 8.0, False])
def test_check_batch_size_rejects_non_positive_integers(bad):
    message = rf"`batch_size` must be a positive integer, got {re.escape(repr(bad))}"
    with pytest.raises(ValueError, match=message):
        parallel.check_batch_size(bad, parallel.make_mesh(1))
