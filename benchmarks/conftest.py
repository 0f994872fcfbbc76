"""Benchmark helpers: each benchmark records its median; the run ends with a table of ratios to its baseline.

Run: ``python -m pytest benchmarks/test_bench_kernels.py`` (``FOVEAL_NUM_THREADS=1`` for one thread).
"""
from __future__ import annotations

import pytest

# (group, name) -> median seconds, filled by the `record` fixture.
MEDIANS: dict[tuple[str, str], float] = {}
# group -> name of the baseline the others are compared with
BASELINES: dict[str, str] = {}


@pytest.fixture
def record(benchmark):
    """Run ``benchmark(fn, *args)`` in ``group`` under ``name``; ``baseline=True`` marks the group's reference."""

    def run(group: str, name: str, fn, *args, baseline: bool = False):
        benchmark.group = group
        benchmark.name = name
        result = benchmark(fn, *args)
        MEDIANS[(group, name)] = benchmark.stats.stats.median
        if baseline:
            BASELINES[group] = name
        return result

    return run


def pytest_terminal_summary(terminalreporter):
    if not MEDIANS:
        return
    tr = terminalreporter
    from foveal import _native

    tr.section(f"median times and speed-up over each group's baseline ({_native.num_threads} threads)")
    tr.write_line(f"{'group':<34} {'implementation':<30} {'median ms':>10} {'speed-up':>9}")
    for group in dict.fromkeys(g for g, _ in MEDIANS):
        base = MEDIANS.get((group, BASELINES.get(group, "")))
        for (g, name), median in MEDIANS.items():
            if g == group:
                ratio = f"{base / median:8.2f}x" if base else "       -"
                tr.write_line(f"{group:<34} {name:<30} {median * 1e3:10.3f} {ratio:>9}")
