"""One process of ``tests/test_multiprocess.py``'s runs (a script, not a test module).

    python tests/multiprocess_worker.py MODE OUT_DIR PROCESS_ID NUM_PROCESSES PORT

The parent sets ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (D CPU devices in this
process) and starts ``NUM_PROCESSES`` copies; with more than one, each joins the others through
``jax.distributed.initialize`` on ``127.0.0.1:PORT`` and JAX's CPU collectives (gloo). Modes:

* ``reference`` (one process, 4 devices): ``fit`` on one device and on a 4-device mesh; the
  mesh run checkpoints to ``OUT_DIR/ckpt-1p``.
* ``train`` (every process): ``fit`` on the mesh of all processes' devices, checkpointing to
  ``OUT_DIR/ckpt-2p`` while an audit hook records every file this process opens for writing,
  renames or removes there; then resumes ``fit`` from the one-process checkpoint the parent
  copied to ``OUT_DIR/from-1p``; then saves a leaf split over both processes, makes process 0's
  save fail, and replicates values that agree and values that differ.
* ``forever``: ``fit`` for a million steps with a checkpoint every 10, for the parent to kill.

Each process writes its results to ``OUT_DIR/result-{PROCESS_ID}.json`` and its final parameters
to ``OUT_DIR/*-{PROCESS_ID}.npz``. Everything runs under ``main()``, so pytest's doctest
collection can import this file without side effects.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STEPS = 20
BATCH = 32
EXAMPLES = 256
FEATURES = 16
CLASSES = 10
CHECKPOINT_EVERY = 10
# Survivors of a killed process stop after this long without its heartbeats (JAX's default: 100).
HEARTBEAT_TIMEOUT_S = 5


def main(argv: list[str]) -> None:
    mode, out = argv[0], Path(argv[1])
    process_id, num_processes, port = int(argv[2]), int(argv[3]), int(argv[4])

    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # JAX's default on CPU
    if num_processes > 1:
        jax.distributed.initialize(
            f"127.0.0.1:{port}",
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=60,
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
            shutdown_timeout_seconds=60,
        )
    jax.config.update("jax_numpy_dtype_promotion", "strict")  # as tests/conftest.py
    jax.config.update("jax_numpy_rank_promotion", "raise")

    result = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
    }
    if mode == "reference":
        result.update(_reference(out))
    elif mode == "train":
        result.update(_train(out, process_id))
    elif mode == "forever":
        _fit(out / "ckpt-kill", steps=10**6, mesh=_mesh())
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    (out / f"result-{process_id}.json").write_text(json.dumps(result))


def problem() -> tuple:
    """The model, initial parameters and data set, identical in every process."""
    import jax
    import numpy as np

    import fdl

    rng = np.random.default_rng(20240601)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, EXAMPLES).astype(np.int32)
    model = fdl.nn.MLP((32, CLASSES))
    params, _, _ = model.init(jax.random.key(0), (FEATURES,))
    return model, params, (x, y)


def _fit(checkpoint_dir, *, steps=STEPS, mesh=None, resume=False):
    """The one ``fit`` call every run makes (SGD with momentum, as design.md section 19 says)."""
    import jax

    import fdl

    model, params, data = problem()
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = fdl.fit.Checkpoint(checkpoint_dir, every=CHECKPOINT_EVERY, resume=resume)
    return fdl.fit.fit(
        fdl.fit.classification_loss(model), fdl.optim.sgd(0.1, momentum=0.9), params, data,
        key=jax.random.key(1), batch_size=BATCH, steps=steps, mesh=mesh, checkpoint=checkpoint,
        execution=fdl.fit.Execution(steps_per_call=5), logging=fdl.fit.Logging(progress=False),
    )  # fmt: skip


def _mesh():
    from fdl import parallel

    return parallel.make_mesh()  # every device of every process


def _save_params(path: Path, params) -> None:
    import jax
    import numpy as np

    np.savez(path, *[np.asarray(leaf) for leaf in jax.tree.leaves(params)])


def _reference(out: Path) -> dict:
    single = _fit(None, mesh=None)
    _save_params(out / "single.npz", single.params)
    mesh = _fit(out / "ckpt-1p", mesh=_mesh())
    _save_params(out / "mesh.npz", mesh.params)
    return {"step": mesh.step}


def _train(out: Path, process_id: int) -> dict:
    import jax
    import numpy as np

    from fdl import checkpoint, parallel

    result = {}
    written = _audit_writes([out / "ckpt-2p", out / "from-1p"])
    run = _fit(out / "ckpt-2p", mesh=_mesh())
    result["step"] = run.step
    result["params_replicated"] = all(
        leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == jax.device_count()
        for leaf in jax.tree.leaves(run.params)
    )
    _save_params(out / f"params-{process_id}.npz", run.params)
    resumed = _fit(out / "from-1p", mesh=_mesh(), resume=True)
    _save_params(out / f"resumed-{process_id}.npz", resumed.params)
    result["writes"] = list(written)

    # A leaf split over both processes: save gathers it, process 0 writes it.
    mesh = _mesh()
    rows = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    split = parallel.shard_batch(rows, mesh)
    result["split_is_global"] = not split.is_fully_addressable
    checkpoint.save(out / "split", 0, {"rows": split})

    # Process 0 cannot write (the step exists): it raises its error, the others a CheckpointError.
    try:
        checkpoint.save(out / "ckpt-2p", STEPS, {"rows": rows})
    except Exception as err:  # recorded for the parent to assert on
        result["save_error"] = [type(err).__name__, str(err)]

    # replicate: a jax array committed to this process's first device, then values that differ.
    local = jax.device_put(rows, jax.local_devices()[0])
    replicated = parallel.replicate({"rows": local, "key": jax.random.key(3)}, mesh)
    result["replicate_ok"] = bool(
        replicated["rows"].sharding.is_fully_replicated
        and np.array_equal(np.asarray(replicated["rows"]), rows)
        and np.array_equal(
            np.asarray(jax.random.key_data(replicated["key"])),
            np.asarray(jax.random.key_data(jax.random.key(3))),
        )
    )
    try:
        parallel.replicate({"same": rows, "differs": rows + process_id}, mesh)
    except ValueError as err:
        result["replicate_error"] = str(err)
    return result


def _audit_writes(directories: list[Path]) -> list:
    """A list that fills with ``[event, path...]`` for every file opened for writing, renamed or
    removed in ``directories`` by this process (a ``sys.addaudithook`` hook)."""
    watched = [str(d.resolve()) for d in directories]
    events: list = []
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def inside(path) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        return str(Path(os.fsdecode(path)).resolve().parent) in watched

    def name(path) -> str:  # "ckpt-2p/ckpt-00000010.npz"
        path = Path(os.fsdecode(path))
        return f"{path.parent.name}/{path.name}"

    def hook(event: str, args: tuple) -> None:
        if event == "open" and inside(args[0]):
            mode, flags = args[1], args[2]
            if (mode and any(c in mode for c in "wxa+")) or (mode is None and flags & write_flags):
                events.append(["open", name(args[0]), mode])
        elif event == "os.rename" and inside(args[0]):  # os.rename and os.replace
            events.append(["rename", name(args[0]), name(args[1])])
        elif event == "os.remove" and inside(args[0]):  # os.remove and os.unlink
            events.append(["remove", name(args[0])])

    sys.addaudithook(hook)
    return events


if __name__ == "__main__":
    main(sys.argv[1:])
