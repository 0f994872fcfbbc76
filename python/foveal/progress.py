"""A dependency-free progress bar on stderr for long CLI runs."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, label: str = "", enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####.....] i/total rate`` on stderr.

    Redraws at most ~10 times a second; on a non-terminal stderr (logs, CI) it prints a line per 10% instead.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled:
        yield from items
        return
    stream = sys.stderr
    tty = stream.isatty()
    start = last = time.monotonic()
    next_pct = 10
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        rate = done / max(now - start, 1e-9)
        if tty and (now - last > 0.1 or done == total):
            last = now
            stream.write("\r" + _bar(label, done, total, rate))
            stream.flush()
        elif not tty and total and done * 100 >= next_pct * total:
            next_pct += 10
            stream.write(_bar(label, done, total, rate) + "\n")
    if tty and done:
        stream.write("\n")


def _bar(label: str, done: int, total: int | None, rate: float) -> str:
    if not total:
        return f"{label} {done} ({rate:.1f}/s)"
    width = 30
    filled = int(width * done / total)
    return f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({rate:.1f}/s)"
