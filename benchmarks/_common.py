"""What every benchmark here shares: the machine description, interleaved timing, the output files.

A benchmark compares candidates in one process. Each *round* times every candidate once, for
``calls`` calls and one block at the end, in an order that alternates between rounds (so no
candidate always runs first, on a cold cache, or last). We report the median seconds per call
over the rounds, the ratio of the medians, and the median of the per-round ratios (robust to a
slow round that hits both).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import optax

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """The device, the CPU count and the versions that the numbers were measured with."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "machine": platform.machine(),
    }


def interleaved(
    runners: Mapping[str, Callable[[int], None]], rounds: int, calls: int
) -> dict[str, list[float]]:
    """Seconds per call of each runner, one entry per round.

    ``runners[name](n)`` makes ``n`` calls and blocks on the last result. The order of the
    runners is reversed every other round.
    """
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runners[name](calls)
            times[name].append((time.perf_counter() - start) / calls)
    return times


def ratios(times: Mapping[str, list[float]], numerator: str, denominator: str) -> dict:
    """Medians per call of both, the ratio of the medians and the median of the round ratios."""
    med = {name: statistics.median(times[name]) for name in (numerator, denominator)}
    per_round = [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]
    return {
        "median_s_per_call": med,
        "ratio": med[numerator] / med[denominator],
        "median_of_round_ratios": statistics.median(per_round),
    }


def save(name: str, info: dict, results: object, table: str, out: Path = RESULTS) -> None:
    """Write ``<out>/<name>-<platform>.json`` and ``.md`` and print the table."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}-{info['platform']}"
    stem.with_suffix(".json").write_text(json.dumps({"machine": info, "results": results}, indent=2))
    stem.with_suffix(".md").write_text(table)
    print(table)


def compiled_cost(compiled) -> dict:
    """What XLA's cost model says of a compiled step: flops, bytes moved, fused kernels.

    Timings of two equal programs still differ by noise; equal costs show the programs are the
    same work (these steps are memory-bound, so bytes moved set their time).
    """
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "flops": cost.get("flops"),
        "bytes_accessed": cost.get("bytes accessed"),
        "fusions": compiled.as_text().count(" fusion("),
    }
