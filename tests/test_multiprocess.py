"""Multi-process data parallelism on this machine: ``fit`` over 2 processes × 2 CPU devices.

Each run starts real processes (``tests/multiprocess_worker.py``) that join through
``jax.distributed.initialize`` on 127.0.0.1 and sum gradients with JAX's CPU collectives (gloo),
exactly as N hosts would (docs/design.md section 19). The module's runs, in order:

1. one process with 4 devices: ``fit`` on one device, and on a 4-device mesh checkpointing
   every 10 steps (the references);
2. two processes with 2 devices each: the same ``fit`` on the 4-device mesh they span, then a
   resume from the one-process run's step-10 checkpoint, and the multi-process checkpoint and
   ``replicate`` checks;
3. here, in this one-device process: a resume from the two-process run's step-10 checkpoint;
4. two processes again, one of them killed with SIGKILL mid-run.

Tolerance: ``PARAM_ATOL = 1e-6``, the one ``tests/test_parallel.py`` records for 4 devices against
one (design.md section 19), with SGD with momentum as there. Two processes run the same
partitioned program as one process with 4 devices; only the all-reduce's transport differs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import fdl
from fdl import checkpoint

WORKER_PATH = Path(__file__).with_name("multiprocess_worker.py")
PARAM_ATOL = 1e-6
RUN_TIMEOUT_S = 240  # a run that takes longer has hung: the test fails and kills it
# After a SIGKILL the survivor must be gone within JAX's heartbeat timeout plus this margin.
EXIT_MARGIN_S = 30

pytestmark = pytest.mark.slow  # each run starts and compiles in fresh processes: 20-60 s


def _load_worker():
    spec = importlib.util.spec_from_file_location("multiprocess_worker", WORKER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(mode: str, out: Path, num_processes: int, devices: int) -> list[subprocess.Popen]:
    """``num_processes`` workers of ``devices`` CPU devices each, logging to ``out/log-I.txt``."""
    env = dict(os.environ)
    flag = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    port = _free_port()
    processes = []
    for i in range(num_processes):
        with open(out / f"log-{i}.txt", "w") as log:
            args = [sys.executable, str(WORKER_PATH), mode, str(out), str(i)]
            processes.append(
                subprocess.Popen(
                    [*args, str(num_processes), str(port)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes


def _log(out: Path, i: int) -> str:
    return (out / f"log-{i}.txt").read_text(errors="replace")


def _kill_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _run(mode: str, out: Path, num_processes: int, devices: int) -> list[dict]:
    """Run the workers to completion (bounded) and return each one's result."""
    processes = _start(mode, out, num_processes, devices)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{mode} run did not finish in {RUN_TIMEOUT_S} s:\n" + _log(out, 0)[-4000:])
    finally:
        _kill_all(processes)
    for i, process in enumerate(processes):
        assert process.returncode == 0, f"process {i} of the {mode} run failed:\n" + _log(out, i)
    return [json.loads((out / f"result-{i}.json").read_text()) for i in range(num_processes)]


def _params(path: Path) -> list[np.ndarray]:
    with np.load(path) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def _max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The one-process reference run, then the two-process run; their output folder and results."""
    out = tmp_path_factory.mktemp("multiprocess")
    (reference,) = _run("reference", out, num_processes=1, devices=4)
    assert reference["device_count"] == 4 and reference["step"] == worker.STEPS
    (out / "from-1p").mkdir()
    shutil.copy(out / "ckpt-1p" / "ckpt-00000010.npz", out / "from-1p")
    return out, _run("train", out, num_processes=2, devices=2)


def test_two_processes_of_two_cpu_devices_form_one_four_device_mesh(runs):
    _, results = runs
    for i, result in enumerate(results):
        assert result["process_index"] == i
        assert result["process_count"] == 2
        assert (result["device_count"], result["local_device_count"]) == (4, 2)
        assert result["step"] == worker.STEPS
        assert result["params_replicated"]  # on all 4 devices of both processes


def test_two_process_fit_equals_one_process_fit(runs):
    out, _ = runs
    p0, p1 = _params(out / "params-0.npz"), _params(out / "params-1.npz")
    assert _max_abs_diff(p0, p1) == 0.0  # both processes hold the one replicated result
    _, initial, _ = worker.problem()
    assert _max_abs_diff(p0, [np.asarray(leaf) for leaf in jax.tree.leaves(initial)]) > 1e-2
    assert _max_abs_diff(p0, _params(out / "mesh.npz")) <= PARAM_ATOL  # 1 process, 4 devices
    assert _max_abs_diff(p0, _params(out / "single.npz")) <= PARAM_ATOL  # 1 device


def test_only_process_0_writes_checkpoints_and_only_through_a_renamed_temp_file(runs):
    out, results = runs
    assert results[1]["writes"] == []  # process 1 opened, renamed and removed nothing there
    events = results[0]["writes"]
    temp = re.compile(
        r"(ckpt-2p|from-1p)/\.(ckpt-\d{8}\.npz|run\.json)\.[A-Za-z0-9-]+\.\d+\.[0-9a-f]{8}\.tmp"
    )
    finals = []
    for opened, renamed in zip(events[::2], events[1::2], strict=True):
        kind, path, mode = opened
        match = temp.fullmatch(path)
        assert kind == "open" and match and mode in ("x", "xb"), opened  # exclusive temp file
        assert renamed == ["rename", path, f"{match[1]}/{match[2]}"]  # then renamed to its name
        finals.append(renamed[2])
    assert finals == [
        "ckpt-2p/run.json",  # the fresh run's marker, first
        "ckpt-2p/ckpt-00000010.npz",
        "ckpt-2p/ckpt-00000020.npz",
        "from-1p/ckpt-00000020.npz",  # the resumed run's final checkpoint, then its marker
        "from-1p/run.json",
    ]
    for directory in ("ckpt-2p", "from-1p"):  # nothing else left behind
        assert sorted(p.name for p in (out / directory).iterdir()) == [
            "ckpt-00000010.npz",
            "ckpt-00000020.npz",
            "run.json",
        ]


def test_two_process_checkpoint_restores_in_one_process(runs, tmp_path):
    out, _ = runs
    _, initial, _ = worker.problem()
    initial = jax.tree.map(np.asarray, initial)
    template = {  # fit's checkpoint: its state and the run's key
        "params": initial,
        "layer_state": {},
        "opt_state": fdl.optim.sgd(0.1, momentum=0.9).init(initial),
        "key": jax.random.key(0),
    }
    tree, metadata = checkpoint.restore(out / "ckpt-2p" / "ckpt-00000020.npz", template)
    assert metadata["step"] == worker.STEPS
    restored = [np.asarray(leaf) for leaf in jax.tree.leaves(tree["params"])]
    assert _max_abs_diff(restored, _params(out / "params-0.npz")) == 0.0
    # Resume the two-process run from its step-10 checkpoint here, on one device.
    shutil.copy(out / "ckpt-2p" / "ckpt-00000010.npz", tmp_path)
    resumed = worker._fit(tmp_path, mesh=None, resume=True)
    assert resumed.step == worker.STEPS
    params = [np.asarray(leaf) for leaf in jax.tree.leaves(resumed.params)]
    assert _max_abs_diff(params, _params(out / "single.npz")) <= PARAM_ATOL
    assert _max_abs_diff(params, _params(out / "params-0.npz")) <= PARAM_ATOL


def test_one_process_checkpoint_restores_in_two_processes(runs):
    out, _ = runs
    r0, r1 = _params(out / "resumed-0.npz"), _params(out / "resumed-1.npz")
    assert _max_abs_diff(r0, r1) == 0.0
    assert _max_abs_diff(r0, _params(out / "mesh.npz")) <= PARAM_ATOL
    assert _max_abs_diff(r0, _params(out / "single.npz")) <= PARAM_ATOL


def test_save_gathers_a_leaf_split_over_both_processes(runs):
    out, results = runs
    assert all(result["split_is_global"] for result in results)
    tree, _ = checkpoint.restore(out / "split", {"rows": np.zeros((8, 3), np.float32)})
    np.testing.assert_array_equal(tree["rows"], np.arange(24, dtype=np.float32).reshape(8, 3))


def test_a_failed_save_on_process_0_raises_on_every_process(runs):
    _, results = runs
    kind, message = results[0]["save_error"]
    assert kind == "FileExistsError"
    assert re.fullmatch(r"a checkpoint of step 20 already exists at .*ckpt-00000020\.npz; "
                        r"pass overwrite=True to replace it", message)  # fmt: skip
    kind, message = results[1]["save_error"]
    assert kind == "CheckpointError"
    assert re.fullmatch(
        r"process 0 failed to write the checkpoint of step 20 to .*ckpt-00000020\.npz: "
        r"FileExistsError: a checkpoint of step 20 already exists at .*",
        message,
    )


def test_replicate_across_processes_checks_that_every_process_holds_the_same_values(runs):
    _, results = runs
    for result in results:
        assert result["replicate_ok"]  # a committed local array and a PRNG key, replicated
        assert result["replicate_error"] == (
            "replicate: `tree` leaf differs differs between processes (process 0 and "
            "process(es) [1] hold different values); every process must pass the same values, "
            "e.g. parameters initialized from the same key"
        )


@pytest.mark.parametrize("victim", [1, 0], ids=["worker-killed", "coordinator-killed"])
def test_a_killed_process_stops_the_other_with_a_clear_error(tmp_path, victim):
    processes = _start("forever", tmp_path, num_processes=2, devices=2)
    survivor = processes[1 - victim]
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not list((tmp_path / "ckpt-kill").glob("ckpt-*.npz")):  # training is under way
            assert all(p.poll() is None for p in processes), _log(tmp_path, 0)[-4000:]
            assert time.monotonic() < deadline, "no checkpoint in time:\n" + _log(tmp_path, 0)
            time.sleep(0.2)
        processes[victim].kill()
        try:
            returncode = survivor.wait(timeout=worker.HEARTBEAT_TIMEOUT_S + EXIT_MARGIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process {1 - victim} still runs (hangs) after process {victim} died")
    finally:
        _kill_all(processes)
    assert returncode != 0
    log = _log(tmp_path, 1 - victim)
    # Two aborts can stop the survivor, both in C++: JAX's coordination service (missed
    # heartbeats, or the coordinator gone), or, when the kill cuts an all-reduce mid-message,
    # gloo's own check of what arrived on the TCP pair, which fires first (seen once in about
    # thirty CI runs: "Received data size doesn't match expected size").
    jax_abort = (
        "Terminating process because the JAX distributed service detected fatal errors. "
        "This most likely indicates that another task died"
    )
    gloo_abort = re.search(r"gloo::\w+.*\n.*enforce fail at \S*gloo/transport/tcp/", log)
    assert jax_abort in log or gloo_abort, log[-4000:]
