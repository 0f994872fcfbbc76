"""A bounded lane for heavy per-request work that is not the engine's (detection): its own worker threads, at most
``max_queue`` jobs waiting or running, and each job dropped unrun when its request's deadline passed first.

Without it such work runs on the event loop's shared thread pool (tens of threads), so a burst of requests runs
all at once: every one slower, and memory growing with the burst instead of with the lane's width.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Callable

from .batcher import deadline_exceeded, queue_full
from .metrics import ServiceMetrics


class Lane:
    """``workers`` threads; :meth:`run` refuses with 503 beyond ``max_queue`` unfinished jobs and with 504 when the
    deadline passes before the result is ready, and a job whose caller was cancelled (its client left) before it
    started never runs (a job already running finishes, unseen)."""

    def __init__(self, name: str, *, workers: int, max_queue: int, metrics: ServiceMetrics) -> None:
        self.name, self.max_queue, self.metrics = name, max_queue, metrics
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"foveal-{name}")
        self._unfinished = 0  # jobs that will run or are running; changed on the event loop only
        self._lock = threading.Lock()  # a job's start (a worker thread) against its drop (the event loop)

    async def run(self, fn: Callable[[], Any], deadline: float) -> Any:
        if self._unfinished >= self.max_queue:
            self.metrics.rejected.inc(reason="queue_full")
            raise queue_full(f"{self._unfinished} {self.name} requests in progress", self.max_queue)

        state = _Job()

        def job() -> Any:
            with self._lock:
                if state.dropped or time.monotonic() >= deadline:  # its request has been answered already
                    return None
                state.started = True
            return fn()

        self._unfinished += 1
        future = asyncio.get_running_loop().run_in_executor(self._pool, job)
        future.add_done_callback(lambda f: self._finished(f, state))
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            self.metrics.rejected.inc(reason="deadline")
            self._drop(state)
            raise deadline_exceeded() from None
        except asyncio.CancelledError:
            self._drop(state)
            raise

    def _drop(self, state: "_Job") -> None:
        """A job answered before it ran never will: it stops counting at once, not when a worker reaches it (a
        burst of timed-out jobs turned new requests away while nothing live was queued)."""
        with self._lock:
            state.dropped = True
            started = state.started
        if not started:
            self._release(state)

    def _release(self, state: "_Job") -> None:
        if not state.released:
            state.released = True
            self._unfinished -= 1

    def _finished(self, future: asyncio.Future, state: "_Job") -> None:
        self._release(state)
        if not future.cancelled():
            future.exception()  # retrieved, so an abandoned job's error is not logged as never retrieved

    def shutdown(self) -> None:
        """Finish the jobs in progress and stop the threads."""
        self._pool.shutdown(wait=True)


class _Job:
    """Where one job of a lane stands."""

    __slots__ = ("started", "dropped", "released")

    def __init__(self) -> None:
        self.started = self.dropped = self.released = False
