"""Dynamic batching: concurrent requests' images coalesced into ``Engine.predict_batch`` calls, or streamed to
the CPU lanes.

One worker task takes what is queued (up to ``max_batch`` images), waiting at most ``max_wait_ms`` for a batch
to fill, but only while other requests are known to be on their way (announced with :meth:`Batcher.expect`, still
being read), so a lone request never waits for company that is not coming.  It runs the batch on a single
dedicated thread, so the event loop never blocks and the engine is only ever called from one thread at a time (the
concurrency contract in docs/SERVING.md); encoded images are decoded there by the engine itself, as in-process
``predict_batch`` does.  While a batch runs, new requests queue up and form the next one, so batches grow with
load even with no wait at all.

On the CPU the engine does not batch the network: ``predict_batch`` runs its images side by side, one per core, on
single-threaded lanes.  There the batcher feeds the lanes a stream instead (``Engine.predict_stream``): each lane
takes the next queued image as soon as it is free, so no lane idles at a batch's end waiting for the other's last
image, and each result goes back the moment it is ready.  The engine is still called from the one worker thread.

Each image gets exactly its own result.  An image that fails (a :class:`FovealError` from the engine) fails alone:
an image that failed in a batch of several is re-run by itself, so the good ones still get their maps.

Overload is bounded: more than ``max_queue`` waiting images → :class:`ServiceError` 503 with a retry hint; an image
whose deadline passes while it waits is dropped before it reaches the model (504).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np

from ..errors import FovealError, InputError, ServiceError
from ..imageio import ImageLike
from ..saliency_map import SaliencyMap
from .metrics import ServiceMetrics

log = logging.getLogger("foveal.serve")


class Predictor(Protocol):
    """What the batcher calls.  An engine that also has ``lanes`` (> 0) and ``predict_stream``, as
    :class:`foveal.Engine` on the CPU does, is fed a stream instead of batches."""

    def predict_batch(self, images: Iterable[Any], batch_size: int = 16, *, errors: str = "raise") -> list[Any]: ...


def whole(name: str, value: Any) -> None:
    """InputError unless ``value`` is a whole number >= 1 (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a whole number >= 1, got {value!r}")


def finite(name: str, value: Any, *, zero: bool) -> None:
    """InputError unless ``value`` is a finite real number, > 0 (or >= 0 with ``zero``).  Written so that NaN,
    which fails every comparison, fails it too: a NaN wait passed "< 0" checks and stalled the batcher."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not real or not (0 <= value if zero else 0 < value) or not value < math.inf:
        raise InputError(f"{name} must be a finite number {'>=' if zero else '>'} 0, got {value!r}")


def queue_full(waiting: str, limit: int) -> ServiceError:
    """503 with a retry hint: ``waiting`` says what is already waiting (e.g. ``"12 images queued"``)."""
    return ServiceError(f"the service is overloaded ({waiting}, limit {limit}); retry after a moment", status=503,
                        code="queue_full", retry_after=1.0)


def shutting_down() -> ServiceError:
    """503 for a request that arrived, or was still in progress, when the service stopped."""
    return ServiceError("the service is shutting down; retry on another instance", status=503, code="shutting_down",
                        retry_after=1.0)


def client_disconnected() -> ServiceError:
    return ServiceError("the client disconnected; the rest of its work was dropped", status=499, code="client_gone")


def deadline_exceeded() -> ServiceError:
    return ServiceError("the request's deadline passed before its result was ready; raise X-Deadline-Ms or retry "
                        "when the service is less loaded", status=504, code="deadline_exceeded")


@dataclass
class _Item:
    image: ImageLike  # decoded, or bytes the engine thread decodes
    deadline: float | None  # time.monotonic() value, or None
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)
    queued: bool = True  # counted in the queue's depth: not yet taken to run, nor answered without running

    def expired(self, now: float) -> bool:
        """Whether its deadline passed (it is answered 504 instead of running)."""
        return self.deadline is not None and now >= self.deadline


class Batcher:
    """Coalesce concurrent single-image requests into batched engine calls.

    Args:
        engine: anything with ``predict_batch(images, batch_size)`` (an :class:`foveal.Engine`).
        max_batch: most images per engine call.
        max_wait_ms: how long a batch that is not full may wait for more images (0: take what is queued).
        max_queue: most images waiting; beyond it :meth:`submit` refuses with 503.
    """

    def __init__(self, engine: Predictor, *, max_batch: int = 16, max_wait_ms: float = 2.0, max_queue: int = 256,
                 metrics: ServiceMetrics | None = None) -> None:
        whole("max_batch", max_batch)
        whole("max_queue", max_queue)
        finite("max_wait_ms", max_wait_ms, zero=True)
        self.engine = engine
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.metrics = metrics or ServiceMetrics()
        self._pending: collections.deque[_Item] = collections.deque()
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="foveal-engine")
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._closing = False
        self._arriving = 0
        # An engine that runs images side by side on CPU lanes takes them one per free lane from a queue it reads
        # itself (Engine.predict_stream): no lane waits at a batch's end for the other's last image.
        self._inbox: queue.SimpleQueue[_Item | None] | None = (
            queue.SimpleQueue() if getattr(engine, "lanes", 0) > 0 and hasattr(engine, "predict_stream") else None)
        self._running: dict[int, tuple[_Item, float]] = {}
        # Images waiting whose requests still wait for them: an image answered 504 or left by its client stays in
        # the queue until a lane or batch reaches it, and counted there it turned new requests away (503) while
        # nothing live was queued. The lanes take images on the engine thread, hence the lock.
        self._queued = 0
        self._queued_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker task on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._wakeup, self._changed = asyncio.Event(), asyncio.Event()
        work = self._work() if self._inbox is None else self._work_stream()
        self._task = self._loop.create_task(work, name="foveal-batcher")

    async def stop(self) -> None:
        """Finish every queued image, then stop the worker and its thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._inbox is not None:
            self._inbox.put(None)  # after every queued image: submit refuses from now on
        if self._task is not None:
            await self._task
        self._thread.shutdown(wait=True)

    @property
    def streaming(self) -> bool:
        """Images go to the engine's lanes one at a time as each lane frees up, rather than in batches."""
        return self._inbox is not None

    @property
    def depth(self) -> int:
        """Images queued whose requests still wait for them."""
        return self._queued

    def _dequeue(self, item: _Item) -> None:
        """``item`` no longer counts as queued: taken to run, or answered (deadline, client gone) before that."""
        with self._queued_lock:
            if item.queued:
                item.queued = False
                self._queued -= 1

    def _abandon(self, items: list[_Item]) -> None:
        """Cancel the futures of a request answered without them, out of the depth now (their done callbacks run
        only on the loop's next turn, after the next request may have been counted against the queue)."""
        for item in items:
            item.future.cancel()
            self._dequeue(item)
        self.metrics.queue_depth.set(self.depth)

    def _answered(self, item: _Item) -> None:
        """On the event loop, once ``item``'s future is done: out of the depth, and the gauge told."""
        self._dequeue(item)
        self.metrics.queue_depth.set(self.depth)

    async def warm_up(self, images: Sequence[ImageLike]) -> None:
        """Run ``images`` through the path requests take, every lane included, without counting them in the
        metrics (call before the service takes requests)."""
        counted, self.metrics = self.metrics, ServiceMetrics()
        try:
            await self.submit_many(images)
        finally:
            self.metrics = counted

    # -- submitting --------------------------------------------------------------------------------------------
    def expect(self, n: int = 1) -> None:
        """Announce ``n`` images on their way (being received or decoded); a partial batch may wait for them."""
        self._arriving += n

    def arrived(self, n: int = 1) -> None:
        """The announced images were submitted or will never be (call once per :meth:`expect`, in a finally)."""
        self._arriving -= n
        if self._changed is not None:
            self._changed.set()

    async def submit(self, image: ImageLike, deadline: float | None = None) -> SaliencyMap:
        """The map of one image (decoded, or encoded bytes that the engine thread decodes), computed in some
        batch; raises the image's own error."""
        return (await self.submit_many([image], deadline))[0]

    async def submit_many(self, images: Sequence[ImageLike], deadline: float | None = None) -> list[SaliencyMap]:
        """Maps of several images (queued together, refused together when the queue has no room for all)."""
        if self._closing or self._loop is None:
            raise shutting_down()
        depth = self.depth
        if depth + len(images) > self.max_queue:
            self.metrics.rejected.inc(reason="queue_full")
            raise queue_full(f"{depth} images queued", self.max_queue)
        items = [_Item(image, deadline, self._loop.create_future()) for image in images]
        with self._queued_lock:
            self._queued += len(items)
        for item in items:
            item.future.add_done_callback(lambda _, item=item: self._answered(item))
        if self._inbox is not None:
            for item in items:
                self._inbox.put(item)
        else:
            self._pending.extend(items)
            assert self._wakeup is not None and self._changed is not None
            self._wakeup.set()
            self._changed.set()
        self.metrics.queue_depth.set(self.depth)
        futures = [item.future for item in items]
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait(futures, timeout=timeout)
        except asyncio.CancelledError:  # the client went away: its images need no computing
            self._abandon(items)
            raise
        if len(done) < len(futures):
            self._abandon(items)
            self.metrics.rejected.inc(reason="deadline")
            raise deadline_exceeded()
        errors = [f.exception() for f in futures]  # retrieve every one, so none is logged as unretrieved
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

    # -- the worker --------------------------------------------------------------------------------------------
    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._fill()
            batch = self._take()
            self.metrics.queue_depth.set(self.depth)
            if not batch:
                continue
            started = time.monotonic()
            for item in batch:
                self.metrics.queue_wait.observe(started - item.queued_at)
            try:
                results = await self._loop.run_in_executor(  # type: ignore[union-attr]
                    self._thread, self._run, [item.image for item in batch])
            except asyncio.CancelledError:  # the server stops at once: so does the worker (the batch runs out unseen)
                for item in batch:
                    item.future.cancel()
                raise
            except BaseException as exc:  # noqa: BLE001 - never let the worker die with futures pending
                log.exception("batch of %d failed", len(batch))
                results = [exc] * len(batch)
            self.metrics.compute.observe(time.monotonic() - started)
            self.metrics.batch_size.observe(len(batch))
            for item, result in zip(batch, results):
                self._answer(item, result)

    async def _fill(self) -> None:
        """Wait up to ``max_wait`` for a partial batch to fill, while announced images are still arriving."""
        assert self._changed is not None
        until = time.monotonic() + self.max_wait
        while len(self._pending) < self.max_batch and self._arriving > 0 and not self._closing:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Item]:
        """Up to ``max_batch`` live items; expired ones are failed with 504 without running."""
        batch: list[_Item] = []
        now = time.monotonic()
        while self._pending and len(batch) < self.max_batch:
            item = self._pending.popleft()
            self._dequeue(item)
            if item.future.done():
                continue
            if item.expired(now):
                self._expire(item)
                continue
            batch.append(item)
        return batch

    # -- the streaming worker (CPU lanes) ------------------------------------------------------------------------
    async def _work_stream(self) -> None:
        assert self._loop is not None and self._inbox is not None
        try:
            await self._loop.run_in_executor(self._thread, self._stream)
        except asyncio.CancelledError:  # the server stops at once: queued images are dropped, running ones finish
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item.future.cancel()
            self._inbox.put(None)
            raise

    def _stream(self) -> None:
        """On the engine thread: feed the engine's lanes until :meth:`stop`, each lane handing its result to the
        event loop itself.  An unexpected failure fails the images on the lanes and starts the stream again."""
        assert self._loop is not None
        loop = self._loop

        def deliver(index: int, result: Any) -> None:
            item, started = self._running.pop(index)
            loop.call_soon_threadsafe(self._settle, item, result, started, time.monotonic())

        while True:
            try:
                self.engine.predict_stream(_Feed(self), deliver)  # type: ignore[attr-defined]
                return
            except Exception as exc:  # noqa: BLE001 - never let the worker die with futures pending
                if loop.is_closed():
                    return  # the server stopped at once and closed its loop while the lanes finished: nobody waits
                log.exception("the engine's lanes failed")
                now = time.monotonic()
                for item, started in self._running.values():
                    loop.call_soon_threadsafe(self._settle, item, exc, started, now)
                self._running.clear()

    def _expire(self, item: _Item) -> None:
        """On the event loop: 504 for an image whose deadline passed before it ran (counted once: the request's own
        wait may have timed out and counted it first)."""
        if not item.future.done():
            self.metrics.rejected.inc(reason="deadline")
            item.future.set_exception(deadline_exceeded())
        self._note_depth()

    def _note_depth(self) -> None:
        """On the event loop: the queue-depth gauge, after the lanes skipped an image that will not run."""
        self.metrics.queue_depth.set(self.depth)

    def _answer(self, item: _Item, result: Any) -> None:
        """On the event loop: an image's map or error to its request (unless it was cancelled while it ran: its
        deadline passed or its client left), counted by outcome."""
        ok = not isinstance(result, BaseException)
        self.metrics.images.inc(outcome="ok" if ok else "error")
        if item.future.done():
            return
        if ok:
            item.future.set_result(result)
        else:
            item.future.set_exception(result)

    def _settle(self, item: _Item, result: Any, started: float, ended: float) -> None:
        """On the event loop: one streamed image's result to its request, and its metrics."""
        self.metrics.queue_wait.observe(started - item.queued_at)
        self.metrics.compute.observe(ended - started)
        self.metrics.batch_size.observe(1)
        self.metrics.queue_depth.set(self.depth)
        self._answer(item, result)

    def _run(self, images: list[Any]) -> list[Any]:
        """On the engine thread: one batched call (the engine decodes image *i + 1* while the network runs on image
        *i*, as in-process ``predict_batch`` does); an image that failed in a call with others is re-run alone, so
        an image that breaks its network batch costs the other images nothing."""
        try:
            results = list(self.engine.predict_batch(images, batch_size=len(images), errors="return"))
        except FovealError as exc:
            results = [exc] * len(images)
        if len(images) > 1:
            for i, result in enumerate(results):
                if isinstance(result, FovealError):
                    try:
                        results[i] = self.engine.predict_batch([images[i]], batch_size=1, errors="return")[0]
                    except FovealError as exc:
                        results[i] = exc
        return results


class _Feed:
    """The queued images, read by the engine's lanes (one lane reads at a time) until the :meth:`Batcher.stop`
    marker; an image whose request is gone or whose deadline passed is skipped unrun.  Its length hint is the
    queue's depth: a lone image with idle lanes gets every core."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher, self._index = batcher, 0

    def __iter__(self) -> "_Feed":
        return self

    def __length_hint__(self) -> int:
        return self._batcher.depth

    def __next__(self) -> ImageLike:
        batcher = self._batcher
        assert batcher._loop is not None and batcher._inbox is not None
        while True:
            item = batcher._inbox.get()
            if item is None:
                batcher._inbox.put(None)  # for the next read, and a stream started again after a failure
                raise StopIteration
            batcher._dequeue(item)
            now = time.monotonic()
            if item.future.done():  # its request is gone
                batcher._loop.call_soon_threadsafe(batcher._note_depth)
                continue
            if item.expired(now):
                batcher._loop.call_soon_threadsafe(batcher._expire, item)
                continue
            batcher._running[self._index] = (item, now)
            self._index += 1
            return item.image


class ThreadPredictor:
    """``predict_batch`` for library code running on a worker thread (compare, what-if): its images go through
    the batcher like any request's, sharing batches with them and respecting the queue limit and deadline.

    ``gone``, once set (the client disconnected), fails the call in progress and every later one with 499, and
    takes that call's images still queued out of the queue: an abandoned search stops within one batch.
    """

    def __init__(self, batcher: Batcher, deadline: float | None, gone: threading.Event | None = None) -> None:
        self._batcher, self._deadline, self._gone = batcher, deadline, gone

    def predict_batch(self, images: Iterable[Any], batch_size: int = 16) -> list[SaliencyMap]:
        """Maps of ``images``, queued at most ``max_queue`` at a time (a what-if search may try more positions
        than the queue holds; it waits for each part's maps before queueing the next)."""
        loop, items = self._batcher._loop, list(images)
        assert loop is not None
        step = self._batcher.max_queue
        maps: list[SaliencyMap] = []
        for start in range(0, len(items), step):
            part = items[start:start + step]
            if not loop.is_running():  # a forced stop: a coroutine made now would never run (nor be awaited)
                raise shutting_down()
            work = self._batcher.submit_many(part, self._deadline)
            try:
                future = asyncio.run_coroutine_threadsafe(work, loop)
            except RuntimeError:  # the loop closed meanwhile
                work.close()
                raise shutting_down() from None
            maps += self._wait(future)
        return maps

    def checked(self, items: Iterable[Any], total: int) -> Iterator[Any]:
        """``items`` (a ``progress`` wrapper for library loops, what-if's edits): stops with the 504 or the 499 a
        prediction would end with once the deadline passes or the client leaves, instead of working on unasked."""
        for item in items:
            if self._gone is not None and self._gone.is_set():
                raise client_disconnected()
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise deadline_exceeded()
            yield item

    def _wait(self, future: concurrent.futures.Future) -> list[SaliencyMap]:
        while True:
            if self._gone is not None and self._gone.is_set():
                future.cancel()  # cancels submit_many, which cancels its images' futures: the batcher skips them
                raise client_disconnected()
            try:
                return future.result(timeout=None if self._gone is None else 0.05)
            except concurrent.futures.TimeoutError:
                continue
