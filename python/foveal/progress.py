"""A dependency-free progress bar on stderr for long CLI runs."""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
LOG_EVERY_SECONDS = 60.0
# Width of the bar drawn on the terminal's current line (0: none there), so that note() can clear it: a message
# written after it joined the bar's line.
_on_line = 0


def progress(items: Iterable[T], total: int | None = None, label: str = "", enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####.....] i/total rate`` on stderr.

    Redraws at most ~10 times a second; on a non-terminal stderr (logs, CI) it prints a line per 10% instead, and
    one a minute at least, so that the log of an hours-long batch shows it is alive.  With a total, the line ends
    with the time left at the rate so far.
    """
    global _on_line
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    stream = sys.stderr
    if not enabled or stream is None:  # None: started with stderr closed (2>&-)
        yield from items
        return
    try:
        tty = stream.isatty()
    except (OSError, ValueError):
        tty = False
    # A terminal that takes no escape codes (TERM=dumb: an editor's shell, some CI consoles) shows "\033[K" as text:
    # a longer line's rest is blanked with spaces there instead.
    dumb = os.environ.get("TERM") == "dumb"
    drawn = 0
    start = last = time.monotonic()
    next_pct = 10
    done = 0
    drawing = True  # until a write fails: a full or closed stderr must not stop the work it reports on
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        rate = done / max(now - start, 1e-9)
        if drawing and tty and (now - last > 0.1 or done == total):
            last = now
            bar = _bar(label, done, total, rate)
            drawing = _write(stream, "\r" + bar + (" " * max(0, drawn - len(bar)) if dumb else "\033[K"))
            drawn = _on_line = len(bar)
        elif drawing and not tty and (total and done * 100 >= next_pct * total or now - last >= LOG_EVERY_SECONDS):
            last = now
            while total and done * 100 >= next_pct * total:
                next_pct += 10
            drawing = _write(stream, _bar(label, done, total, rate) + "\n")
    if drawing and tty and done and _on_line:
        _write(stream, "\n")
    _on_line = 0


def note(text: str) -> None:
    """Write ``text`` as a line of its own on stderr: a progress bar on the terminal's line is cleared first (and
    drawn again at the next item)."""
    global _on_line
    if sys.stderr is None:
        return
    clear = ("\r" + " " * _on_line + "\r" if os.environ.get("TERM") == "dumb" else "\r\033[K") if _on_line else ""
    _on_line = 0
    _write(sys.stderr, clear + text + "\n")


def _write(stream, text: str) -> bool:
    """Write and flush ``text``; False when the stream cannot take it (a full disk, a closed pipe)."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        return False
    return True


def _bar(label: str, done: int, total: int | None, rate: float) -> str:
    if not total:
        return f"{label} {done} ({rate:.1f}/s)"
    width = 30
    filled = int(width * done / total)
    left = f", {_duration((total - done) / rate)} left" if 0 < done < total else ""
    return f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({rate:.1f}/s{left})"


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
