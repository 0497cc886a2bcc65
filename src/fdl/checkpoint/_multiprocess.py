"""The collectives a checkpoint needs when several processes save it (a kernel module)."""

from __future__ import annotations

import jax
import numpy as np

MESSAGE_BYTES = 1024


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
