"""Processes for ``test_checkpoint_faults.py`` to run against one checkpoint directory.

    python tests/checkpoint_worker.py hold DIR NAME     # stop inside atomic_write(DIR/NAME)
    python tests/checkpoint_worker.py write DIR STOP    # save with keep=1 until STOP exists
    python tests/checkpoint_worker.py read DIR SECONDS  # restore_latest_valid in a loop

``hold`` writes 1 MiB of a file through ``fdl._io.atomic_write``, prints ``writing`` and
sleeps: its temporary file stays in ``DIR`` until the process is killed. ``write`` saves
checkpoints of increasing steps, each a tree ``{"w": full(256, step)}``, pruning to the newest
(``keep=1``). ``read`` restores the directory's newest checkpoint over and over for ``SECONDS``
and prints a JSON summary: reads, errors (by type and message), whether every tree read matched
its step, and the distinct steps seen. Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def hold(directory: Path, name: str) -> None:
    from fdl._io import atomic_write

    def write_then_stall(file) -> None:
        file.write(b"\0" * (1 << 20))
        file.flush()
        print("writing", flush=True)
        time.sleep(600)

    atomic_write(directory / name, write_then_stall)


def write(directory: Path, stop: Path) -> None:
    import numpy as np

    from fdl import checkpoint

    step = 0
    while not stop.exists():
        step += 1
        checkpoint.save(directory, step, {"w": np.full(256, step, np.float32)}, keep=1)
    print(json.dumps({"saved": step}), flush=True)


def read(directory: Path, seconds: float) -> None:
    import numpy as np

    from fdl import checkpoint

    template = {"w": np.zeros(256, np.float32)}
    reads, errors, consistent, steps = 0, [], True, set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            tree, _, step = checkpoint.restore_latest_valid(directory, template)
        except Exception as error:  # every error is a defect here: recorded for the test
            errors.append(f"{type(error).__name__}: {error}")
            continue
        reads += 1
        steps.add(step)
        consistent &= bool(np.all(tree["w"] == step))
    summary = {"reads": reads, "errors": errors[:5], "error_count": len(errors)}
    print(json.dumps({**summary, "consistent": consistent, "steps": len(steps)}), flush=True)


def main(argv: list[str]) -> None:
    mode, directory = argv[0], Path(argv[1])
    if mode == "hold":
        hold(directory, argv[2])
    elif mode == "write":
        write(directory, Path(argv[2]))
    elif mode == "read":
        read(directory, float(argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}; expected hold, write or read")


if __name__ == "__main__":
    main(sys.argv[1:])
