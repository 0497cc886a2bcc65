"""What every benchmark here shares: one timing method, the statistics, the machine, the files.

**The timing method.** Candidates are compiled functions, compared in one process:

* each is compiled and warmed up first, so no timing includes tracing or compilation;
* a *round* times every candidate once: ``calls`` calls, then one block on the last result
  (``runner(calls)``), in an order that alternates between rounds, so no candidate always runs
  first (on a cold cache) or last;
* a round that another process disturbed is measured and dropped: the CPU time that the whole
  machine spent during the round (``/proc/stat``) minus this process's own CPU time (all its
  threads) is the time taken by *others*; a round where others took more than
  ``max_others`` of one core (and more than ``/proc/stat``'s resolution, two clock ticks per
  core) is run again, up to ``3 * rounds`` rounds in all;
* at least 11 kept rounds; every figure is reported as its median and interquartile range
  (``q1``-``q3``), and every ratio as the ratio of the medians with the interquartile range
  of the per-round ratios as its spread (a round's ratio compares candidates measured seconds
  apart, so it cancels slow drifts of the machine);
* the whole measurement runs in ``--processes`` fresh processes, one after the other (3 by
  default), and their rounds are pooled: what differs from one process to the next (where the
  allocator put the buffers, which core a thread landed on) then shows in the spread instead of
  moving the median between two runs of the same command. Only the last process writes the
  results; the others hand it their rounds (``--worker-out``, a JSON file).

Two runs of a benchmark agree when each headline ratio of one lies within the spread that the
other reports.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jax
import optax

RESULTS = Path(__file__).resolve().parent / "results"
MIN_ROUNDS = 11

# Process pooling (see the module docstring): every `interleaved` call of this process is
# recorded in order; a worker hands the record to the parent, which pools call i of every
# worker into its own call i.
_RECORDED: list[Timings] = []
_POOLED: list[list[dict]] = []  # per worker, its recorded timings in call order
_WORKER_OUT: list[Path] = []  # set in a worker: where its record goes


def machine() -> dict:
    """The device, the CPU count and the versions that the numbers were measured with."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _version("jaxlib"),
        "optax": optax.__version__,
        "machine": platform.machine(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


# ------------------------------------------------------------------------------- disturbance


def _machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all cores), or ``None`` where
    ``/proc/stat`` does not exist."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """The CPU time *other* processes took between :meth:`start` and :meth:`stop`, in seconds:
    the machine's busy time minus this process's own (``time.process_time``, all threads).
    ``/proc/stat`` samples each core's state once per clock tick (10 ms) and charges it the
    whole tick, so the machine's busy time is exact only to about two ticks *per core* (one at
    each end of the interval); this process's own time is exact."""

    def start(self) -> None:
        self._busy, self._own, self._wall = _machine_busy_seconds(), time.process_time(), time.perf_counter()

    def stop(self) -> tuple[float, float | None]:
        """``(wall seconds, others' CPU seconds or None when not measurable)``."""
        wall = time.perf_counter() - self._wall
        busy = _machine_busy_seconds()
        if busy is None or self._busy is None:
            return wall, None
        return wall, max(0.0, (busy - self._busy) - (time.process_time() - self._own))


# ------------------------------------------------------------------------------------ timing


@dataclass
class Timings:
    """Seconds per call of each candidate, one entry per kept round, and what was dropped."""

    times: dict[str, list[float]]
    calls: int
    attempted: int = 0
    dropped: int = 0
    others: list[float] = field(default_factory=list)  # others' CPU, in cores, per kept round
    measured: bool = True  # False where /proc/stat does not exist (nothing dropped)
    processes: int = 1

    def record(self) -> dict:
        return {
            "calls_per_round": self.calls,
            "processes": self.processes,
            "rounds_kept": len(next(iter(self.times.values()))),
            "rounds_attempted": self.attempted,
            "rounds_dropped_as_disturbed": self.dropped,
            "disturbance_measured": self.measured,
            "others_cpu_cores_per_kept_round": summary(self.others) if self.others else None,
            "seconds_per_call": {name: summary(v) for name, v in self.times.items()},
        }

    def describe(self) -> str:
        kept = len(next(iter(self.times.values())))
        where = f" in {self.processes} processes" if self.processes > 1 else ""
        if not self.measured:
            return f"{kept} rounds of {self.calls} calls{where} (disturbance not measurable here)"
        return (
            f"{kept} rounds of {self.calls} calls{where} kept, {self.dropped} dropped as "
            "disturbed by other processes"
        )

    def to_json(self) -> dict:
        return {
            "times": self.times,
            "calls": self.calls,
            "attempted": self.attempted,
            "dropped": self.dropped,
            "others": self.others,
            "measured": self.measured,
            "processes": self.processes,
        }

    def pooled(self, other: dict) -> Timings:
        """These rounds and another process's (a :meth:`to_json` record of the same call)."""
        if set(other["times"]) != set(self.times) or other["calls"] != self.calls:
            raise RuntimeError("a worker process measured different candidates: rerun the benchmark")
        return Timings(
            {name: v + other["times"][name] for name, v in self.times.items()},
            self.calls,
            self.attempted + other["attempted"],
            self.dropped + other["dropped"],
            self.others + other["others"],
            self.measured and other["measured"],
            self.processes + other["processes"],
        )


def interleaved(
    runners: Mapping[str, Callable[[int], None]],
    rounds: int,
    calls: int,
    *,
    max_others: float = 0.1,
) -> Timings:
    """Time ``runners`` by the method of the module docstring.

    Args:
      runners: ``runners[name](n)`` makes ``n`` calls of a compiled function, already warm,
        and blocks on the last result.
      rounds: rounds to keep (at least :data:`MIN_ROUNDS`).
      calls: calls per candidate per round.
      max_others: a round is dropped when other processes took more than this many cores of
        CPU time over it (0.1: a tenth of one core), and at least the resolution of
        ``/proc/stat``, two clock ticks per core (below that, "others" is rounding: on an idle
        2-core machine a round of 0.2 s reads anywhere from 0 to 0.16 cores of others).
    """
    if rounds < MIN_ROUNDS:
        raise ValueError(f"rounds must be at least {MIN_ROUNDS}, got {rounds}")
    names = list(runners)
    out = Timings({name: [] for name in names}, calls)
    meter = CpuMeter()
    resolution = 2 * (os.cpu_count() or 1) / os.sysconf("SC_CLK_TCK")  # seconds
    while len(out.times[names[0]]) < rounds and out.attempted < 3 * rounds:
        order = names if out.attempted % 2 == 0 else names[::-1]
        out.attempted += 1
        this_round = {}
        meter.start()
        for name in order:
            start = time.perf_counter()
            runners[name](calls)
            this_round[name] = (time.perf_counter() - start) / calls
        wall, others = meter.stop()
        if others is None:
            out.measured = False
        elif others > max(max_others * wall, resolution):
            out.dropped += 1
            continue
        for name, seconds in this_round.items():
            out.times[name].append(seconds)
        if others is not None:
            out.others.append(others / wall)
    if len(out.times[names[0]]) < MIN_ROUNDS:
        raise RuntimeError(
            f"only {len(out.times[names[0]])} of {out.attempted} rounds were undisturbed by other "
            "processes: run the benchmark on an idle machine"
        )
    _RECORDED.append(out)
    for worker in _POOLED:
        out = out.pooled(worker[len(_RECORDED) - 1])
    return out


# -------------------------------------------------------------------------------- processes


def add_process_options(parser, default: int = 3) -> None:
    """``--processes`` (how many fresh processes measure, pooled) and the workers' hidden
    ``--worker-out``."""
    parser.add_argument(
        "--processes", type=int, default=default, help="fresh processes to pool rounds from (>= 1)"
    )
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)


def run_processes(args) -> None:
    """In the parent: run ``args.processes - 1`` workers (this same command), one after the
    other, and keep their rounds for :func:`interleaved` to pool. In a worker: remember where
    its rounds go (:func:`save` writes them there instead of the results)."""
    if args.processes < 1:
        raise SystemExit(f"--processes must be at least 1, got {args.processes}")
    if args.worker_out is not None:
        _WORKER_OUT.append(args.worker_out)
        return
    for i in range(args.processes - 1):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rounds.json"
            print(f"worker process {i + 1} of {args.processes - 1} ...", file=sys.stderr, flush=True)
            subprocess.run(
                [sys.executable, *sys.argv, "--worker-out", str(out)], check=True, stdout=subprocess.DEVNULL
            )
            _POOLED.append(json.loads(out.read_text()))


# -------------------------------------------------------------------------------- statistics


def summary(values: list[float]) -> dict:
    """Median and interquartile range (``q1``, ``q3``) of ``values``."""
    if len(values) == 1:
        return {"median": values[0], "q1": values[0], "q3": values[0], "n": 1}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": median, "q1": q1, "q3": q3, "n": len(values)}


def ratios(timings: Timings, numerator: str, denominator: str) -> dict:
    """``numerator`` over ``denominator``: both medians with their spread, the ratio of the
    medians and the spread (median, q1, q3) of the per-round ratios."""
    times = timings.times
    med = {name: statistics.median(times[name]) for name in (numerator, denominator)}
    per_round = [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]
    return {
        "seconds_per_call": {name: summary(times[name]) for name in (numerator, denominator)},
        "median_s_per_call": med,
        "ratio": med[numerator] / med[denominator],
        "round_ratios": summary(per_round),
    }


def fmt_ratio(r: dict, digits: int = 3) -> str:
    """``ratio [q1-q3]``: the ratio of medians and the interquartile range of the round ratios."""
    s = r["round_ratios"]
    return f"{r['ratio']:.{digits}f} [{s['q1']:.{digits}f}–{s['q3']:.{digits}f}]"


def fmt_time(s: dict, scale: float, digits: int = 1) -> str:
    """A :func:`summary` of seconds, scaled (1e6 for µs), as ``median [q1-q3]``."""
    return f"{s['median'] * scale:.{digits}f} [{s['q1'] * scale:.{digits}f}–{s['q3'] * scale:.{digits}f}]"


# ---------------------------------------------------------------------------------- the files


def settings(args: object) -> dict:
    """The command that ran and its parsed arguments, for the results file."""
    return {
        "command": " ".join(["python", *sys.argv]),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def header(info: dict, run: dict) -> str:
    """The first lines of every results table: the command, the machine, the method."""
    return (
        f"`{run['command']}` ({run['when']}). Device: {info['device']} ({info['platform']}), "
        f"{info['cpu_count']} CPUs ({info['cpu_model']}), jax {info['jax']}, optax {info['optax']}. "
        "Medians with their interquartile range in brackets; a ratio is the ratio of medians, "
        "in brackets the interquartile range of the per-round ratios; rounds are pooled over "
        "fresh processes run one after the other (`benchmarks/_common.py`)."
    )


def save(name: str, info: dict, run: dict, results: object, table: str, out: Path = RESULTS) -> None:
    """Write ``<out>/<name>-<platform>.json`` and ``.md`` and print the table; in a worker
    process, write its rounds for the parent instead."""
    if _WORKER_OUT:
        _WORKER_OUT[0].write_text(json.dumps([t.to_json() for t in _RECORDED]))
        return
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}-{info['platform']}"
    record = {"machine": info, "settings": run, "results": results}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
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
