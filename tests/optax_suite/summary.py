"""The closing summary of optax's own suite: per optax test file, how its cases counted."""

from collections import Counter

KEY = "optax_suite"  # the user property each case's report carries: its category


def _case(nodeid: str) -> str:
    return nodeid.split("::", 1)[1]


def write(terminalreporter) -> None:
    """The per-file counts of optax's suite, from the reports the run collected."""
    counts: dict[str, Counter] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            props = dict(getattr(report, "user_properties", ()))
            if KEY in props:
                test_file = _case(report.nodeid).split("__", 1)[0]
                counts.setdefault(test_file, Counter())[props[KEY]] += 1
    if not counts:
        return
    terminalreporter.section("optax's own suite against fdl.optim")
    total: Counter = Counter()
    for test_file in sorted(counts):
        total.update(counts[test_file])
        terminalreporter.write_line(f"{test_file}: {_describe(counts[test_file])}")
    terminalreporter.write_line(
        f"all: {_describe(total)}; {total['not twinned']} optax cases not yet twinned"
    )


def _describe(c: Counter) -> str:
    order = (
        "passed",
        "deliberate",
        "not twinned",
        "no fdl name",
        "skipped by optax",
        "failed",
        "listed but passed",
    )
    return ", ".join(f"{c[k]} {k}" for k in order if c[k])
