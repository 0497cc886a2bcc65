"""The collectives a checkpoint needs when several processes save it (a kernel module)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from fdl.checkpoint.errors import CheckpointError

MESSAGE_BYTES = 1024


def on_process_0(action: Callable[[], str], what: str) -> str:
    """Run ``action`` on process 0 alone and return its result (a short string) on every
    process; in a single process, just run it.

    Process 0 broadcasts its outcome, which is also the barrier: no process returns before
    ``action`` has finished. If it failed, process 0 raises its own error and the others a
    :class:`CheckpointError`: "process 0 failed to ``what``: ``error``".
    """
    if jax.process_count() == 1:
        return action()
    error: BaseException | None = None
    result = ""
    if jax.process_index() == 0:
        try:
            result = action()
        except BaseException as err:  # re-raised below, after telling the other processes
            error = err
    outcome = broadcast_from_process_0(
        "ok:" + result if error is None else f"{type(error).__name__}: {error}"
    )
    if error is not None:
        raise error
    if not outcome.startswith("ok:"):
        raise CheckpointError(f"process 0 failed to {what}: {outcome}")
    return outcome[len("ok:") :]


def broadcast_from_process_0(message: str) -> str:
    """Process 0's ``message`` on every process (at most 1 KiB of it), through a collective:
    no process returns before process 0 has called this too."""
    from jax.experimental import multihost_utils

    raw = message.encode("utf-8", "replace")[:MESSAGE_BYTES].ljust(MESSAGE_BYTES, b"\0")
    received = multihost_utils.broadcast_one_to_all(np.frombuffer(raw, np.uint8))
    return np.asarray(received, np.uint8).tobytes().rstrip(b"\0").decode("utf-8", "replace")


def fetch(array: jax.Array) -> np.ndarray:
    """The host value of ``array``. One split over several processes is gathered from all of
    them: a collective, so every process must save the same tree."""
    if array.is_fully_addressable or array.is_fully_replicated:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
