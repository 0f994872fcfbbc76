"""Interleaved timing: implementations take turns, round after round, so a noisy shared machine slows each alike.

pytest-benchmark runs one implementation to the end before the next starts; on a VM whose neighbours come and go
that measures the neighbours as much as the code. Here every round runs each case once, in a rotated order, and a
case's median and range come from the same stretch of time as its baseline's.

    from interleaved import compare, competing_load
    with competing_load(1):                     # one CPU-bound process beside the measurement
        table = compare({"cv2": f, "foveal": g}, baseline="cv2", rounds=40)
"""
from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class Timing:
    name: str
    median_ms: float
    low_ms: float
    high_ms: float
    speedup: float  # baseline median / this median
    rounds: int  # timed calls behind the median

    def row(self) -> str:
        return (f"{self.name:<34} {self.median_ms:>9.3f} {self.low_ms:>9.3f} {self.high_ms:>9.3f} "
                f"{self.speedup:>7.2f}x {self.rounds:>6}")


def compare(cases: dict[str, Callable[[], Any]], baseline: str, rounds: int = 30, warmup: int = 2,
            max_seconds: float = 60.0) -> list[Timing]:
    """Median, fastest and slowest of ``rounds`` interleaved calls per case; the warm-up calls and then the rounds
    stop early once ``max_seconds`` have passed since the start (one round is always timed)."""
    names = list(cases)
    deadline = time.monotonic() + max_seconds
    for _ in range(warmup):
        for name in names:
            cases[name]()
        if time.monotonic() > deadline:
            break
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
        if time.monotonic() > deadline:
            break
    base = statistics.median(times[baseline])
    return [Timing(name, statistics.median(t) * 1e3, min(t) * 1e3, max(t) * 1e3, base / statistics.median(t), len(t))
            for name, t in times.items()]


def table(title: str, timings: list[Timing]) -> str:
    head = f"{title}\n{'implementation':<34} {'median ms':>9} {'min ms':>9} {'max ms':>9} {'speed-up':>8} {'rounds':>6}"
    return "\n".join([head, *(t.row() for t in timings)])


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0 (nan would never end a loop)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def _spin(stop: Any, seconds: float, parent: int) -> None:
    end = time.monotonic() + seconds
    x = 0
    # The parent's pid too: a parent killed by SIGTERM runs no finally, and its load would spin on for minutes.
    while not stop.is_set() and time.monotonic() < end and os.getppid() == parent:
        for i in range(100_000):
            x += i * i


@contextlib.contextmanager
def competing_load(processes: int = 1, max_seconds: float = 600.0) -> Iterator[None]:
    """``processes`` CPU-bound processes run while the block does; each stops by itself after ``max_seconds``."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    workers = [ctx.Process(target=_spin, args=(stop, max_seconds, os.getpid()), daemon=True) for _ in range(processes)]
    for w in workers:
        w.start()
    try:
        yield
    finally:
        stop.set()
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.kill()
