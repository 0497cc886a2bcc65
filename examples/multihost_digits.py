"""Data-parallel training across processes: the launch for N hosts, tried on one machine.

On each of N hosts, the same command with its own rank r = 0 .. N-1 (host 0 at 10.0.0.1, the
checkpoint folder on a file system every host sees):

    python examples/multihost_digits.py --coordinator 10.0.0.1:1234 --num-processes N \\
        --process-id r --checkpoint-dir /shared/run1

On one machine, N processes with 2 CPU devices each, joined over localhost (what the test runs):

    python examples/multihost_digits.py --local 2

Each process calls ``jax.distributed.initialize`` before any other JAX work; then
``fdl.parallel.make_mesh()`` spans every device of every process, and ``fdl.fit.fit(...,
mesh=)`` runs one program in which each device takes a slice of every batch and the gradients
are averaged across all of them. Process 0 alone writes the checkpoints (atomically) and prints
the test accuracy; every process prints a digest of its final parameters, which agree.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

DEVICES_PER_LOCAL_PROCESS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="host:port of process 0, reachable from every host")
    parser.add_argument("--num-processes", type=int, default=1, help="processes in all (one per host)")
    parser.add_argument("--process-id", type=int, default=0, help="this process's rank, 0 .. N-1")
    parser.add_argument("--local", type=int, metavar="N", help="start N processes on this machine instead")
    parser.add_argument("--checkpoint-dir", type=Path, help="checkpoints, on a file system all hosts see")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64, help="global: split over every device")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for --local processes")
    args = parser.parse_args(argv)
    if args.local is None and args.num_processes > 1 and not args.coordinator:
        parser.error("--coordinator host:port is needed with --num-processes > 1")
    if args.local is not None and args.local < 1:
        parser.error(f"--local must be a number of processes >= 1, got {args.local}")
    if not 0 <= args.process_id < args.num_processes:
        parser.error(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
    return args


def launch_local(args: argparse.Namespace) -> list[str]:
    """Start ``args.local`` copies of this script on localhost and return their outputs."""
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES_PER_LOCAL_PROCESS}"}
    common = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(args.local)]
    common += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    if args.checkpoint_dir is not None:
        common += ["--checkpoint-dir", str(args.checkpoint_dir)]
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, *common, "--process-id", str(rank)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(args.local)
    ]
    outputs = []
    try:
        for rank, process in enumerate(processes):
            out, _ = process.communicate(timeout=args.timeout)
            outputs.append(out)
            if process.returncode != 0:
                raise SystemExit(f"process {rank} failed (exit {process.returncode}):\n{out}")
    finally:
        for process in processes:
            process.kill()
    for rank, out in enumerate(outputs):
        print(f"--- process {rank} ---\n{out.rstrip()}")
    return outputs


def train(args: argparse.Namespace) -> dict[str, float]:
    import jax

    if args.num_processes > 1:
        jax.distributed.initialize(  # before any other JAX call
            args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            heartbeat_timeout_seconds=30,  # a dead process stops the others within this
        )
    import numpy as np

    import fdl

    data = fdl.data.load_digits(seed=0)  # every process holds the whole (small) data set
    model = fdl.nn.MLP((128, 10), w_init=fdl.initializers.he_normal())
    params, state, _ = model.init(jax.random.key(0), data.x_train.shape[1:])  # the same everywhere
    mesh = fdl.parallel.make_mesh()  # every device of every process
    if args.batch_size % jax.device_count():
        raise SystemExit(f"--batch-size {args.batch_size} must split over {jax.device_count()} devices")
    result = fdl.fit.fit(
        fdl.fit.classification_loss(model),
        fdl.optim.adam(1e-3),
        params,
        (data.x_train, data.y_train),
        layer_state=state,
        key=jax.random.key(1),
        batch_size=args.batch_size,
        steps=args.steps,
        mesh=mesh,
        checkpoint=None
        if args.checkpoint_dir is None
        else fdl.fit.Checkpoint(args.checkpoint_dir, resume=True),
        logging=fdl.fit.Logging(progress=False),
    )
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(result.params)]
    digest = hashlib.sha256(b"".join(leaf.tobytes() for leaf in leaves)).hexdigest()[:16]
    logits, _ = model.apply(result.params, result.layer_state, data.x_test)
    accuracy = float(fdl.metrics.accuracy(logits, data.y_test))
    print(f"process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} local devices")
    print(f"parameters digest: {digest}")
    if jax.process_index() == 0:
        print(f"{jax.device_count()} devices, {args.steps} steps: test accuracy {accuracy:.4f}")
    return {"test_accuracy": accuracy}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.local is not None:
        launch_local(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
