"""Benchmark helpers: each benchmark records its times; the run ends with a table of ratios to its baseline.

Run: ``python -m pytest benchmarks/test_bench_kernels.py`` (``FOVEAL_NUM_THREADS=1`` for one thread).
"""
from __future__ import annotations

import pytest

# (group, name) -> (median, min) seconds, filled by the `record` fixture.
TIMES: dict[tuple[str, str], tuple[float, float]] = {}
# group -> name of the baseline the others are compared with
BASELINES: dict[str, str] = {}


@pytest.fixture
def record(benchmark):
    """Run ``benchmark(fn, *args)`` in ``group`` under ``name``; ``baseline=True`` marks the group's reference."""

    def run(group: str, name: str, fn, *args, baseline: bool = False):
        benchmark.group = group
        benchmark.name = name
        result = benchmark(fn, *args)
        TIMES[(group, name)] = (benchmark.stats.stats.median, benchmark.stats.stats.min)
        if baseline:
            BASELINES[group] = name
        return result

    return run


def pytest_terminal_summary(terminalreporter):
    if not TIMES:
        return
    from foveal import _native

    tr = terminalreporter
    tr.section(f"speed-up over each group's baseline, by median and by min ({_native.num_threads} threads)")
    tr.write_line(f"{'group':<34} {'implementation':<22} {'median ms':>10} {'x':>7} {'min ms':>9} {'x':>7}")
    for group in dict.fromkeys(g for g, _ in TIMES):
        base = TIMES.get((group, BASELINES.get(group, "")))
        for (g, name), (median, fastest) in TIMES.items():
            if g != group:
                continue
            ratios = (f"{base[0] / median:6.2f}x", f"{base[1] / fastest:6.2f}x") if base else ("      -",) * 2
            tr.write_line(f"{g:<34} {name:<22} {median * 1e3:10.3f} {ratios[0]:>7} {fastest * 1e3:9.3f} {ratios[1]:>7}")
