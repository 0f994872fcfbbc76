"""``workers > 1``: worker processes sharing the listening sockets, each running the app on its own uvicorn server.

foveal supervises them itself rather than through uvicorn's ``Multiprocess`` so that a drain closes the port at
once: uvicorn's parent kept its copy of the socket open until the last worker ended, so the kernel went on
accepting connections that no worker would take and reset them at the end. Here the parent closes its copy when
the drain starts and each worker closes its own as it starts draining, so new connections are refused at once (a
balancer or client tries elsewhere) while those already accepted are answered. A second Ctrl-C reaches the
workers as it reaches one server: what they hold is answered 503 ``shutting_down``.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from typing import Any, Callable

from ..errors import FovealError
from .app import ServeConfig, create_app

logger = logging.getLogger("uvicorn.error")

_PR_SET_PDEATHSIG = 1
#: A worker's exit status when its server never started (uvicorn's own code for a startup failure).
STARTUP_FAILURE = 3
#: Replacement workers in a row that may end before they are ready before the service stops.
MAX_FAILED_STARTS = 5
#: How long past the graceful timeout the parent waits for a draining worker before killing it: the worker
#: answers what it still holds with 503 at the timeout, then finishes its queued images and its lifespan.
_EXIT_GRACE_S = 15.0


def run_workers(config: ServeConfig, options: dict[str, Any], workers: int,
                on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``config`` on ``workers`` processes until SIGINT/SIGTERM, then drain them and return; raise
    KeyboardInterrupt when a SIGINT during the drain cut it short, and :class:`FovealError` when a worker could not
    start. ``options``: uvicorn ``Config`` keywords (host, port, graceful timeout...). Main thread only: it
    handles the signals. ``on_ready(url)``: called once, when the first worker is ready."""
    from .server import bound, service_url

    socks = bound(options["host"], options["port"])  # not uvicorn's bind_socket: it exits the process on failure
    logger.info("Listening on %s:%d", options["host"], socks[0].getsockname()[1])
    url = service_url(socks[0].getsockname())
    supervisor = _Supervisor(config, options, socks, workers, None if on_ready is None else lambda: on_ready(url))
    previous = {s: signal.signal(s, supervisor.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        supervisor.stop(signal.SIGKILL)  # only if run() itself failed: workers must not outlive their parent
        supervisor.close()
        for sock in socks:
            sock.close()
    if supervisor.failed is not None:
        raise FovealError(supervisor.failed)
    if supervisor.forced:
        raise KeyboardInterrupt


class _Supervisor:
    def __init__(self, config: ServeConfig, options: dict[str, Any], socks: list[socket.socket], workers: int,
                 on_ready: Callable[[], None] | None = None) -> None:
        self._context = multiprocessing.get_context("spawn")  # a fork would copy the parent's threads' locks
        self._config, self._options, self._socks = config, options, socks
        self._workers: dict[int, tuple[multiprocessing.Process, Any]] = {}
        self._wanted = workers
        self._drain_deadline: float | None = None
        self._signals: list[int] = []
        self._wake, self._waker = socket.socketpair()  # a signal wakes run() from its wait at once
        self._waker.setblocking(False)
        self._starts = 0  # workers started so far
        self._starting: dict[int, int] = {}  # workers not yet seen ready: which start each was
        self._served = False  # some worker has been ready: the settings work
        self._on_ready = on_ready
        self._failed_starts = 0  # replacements in a row that ended before they were ready...
        self._failed_start = 0  # ...the last of them being this start
        self.forced = False
        self.failed: str | None = None

    def run(self) -> None:
        for _ in range(self._wanted):
            self._start()
        while self._workers:
            if self._drain_deadline is not None and time.monotonic() > self._drain_deadline:
                logger.error("workers still running %.0f s after the drain began; killing them",
                             self._options["timeout_graceful_shutdown"] + _EXIT_GRACE_S)
                self.stop(signal.SIGKILL)
            self._note_ready()
            sentinels = {process.sentinel: pid for pid, (process, _) in self._workers.items()}
            for ready in multiprocessing.connection.wait([self._wake, *sentinels], timeout=1.0):
                if ready is self._wake:
                    self._wake.recv(64)
                else:
                    self._ended(sentinels[ready])
            while self._signals:
                self._on_signal(self._signals.pop(0))

    def on_signal(self, signum: int, frame: object) -> None:
        """Signal handler: noted and acted on by :meth:`run`, which may be busy starting a worker just now."""
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")

    def stop(self, signum: int) -> None:
        for process, _ in self._workers.values():
            if process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def close(self) -> None:
        self._wake.close()
        self._waker.close()

    def _on_signal(self, signum: int) -> None:
        """The first SIGINT/SIGTERM drains every worker; a SIGINT (a second Ctrl-C) while draining stops them at
        once, as it stops one server (a repeated SIGTERM does not)."""
        if self._drain_deadline is None:
            self._drain("Shutting down: draining the workers")
        elif signum == signal.SIGINT:
            self.forced = True
            self.stop(signal.SIGINT)  # uvicorn's forced exit: a second SIGINT while it drains

    def _drain(self, message: str) -> None:
        logger.info(message)
        self._drain_deadline = time.monotonic() + self._options["timeout_graceful_shutdown"] + _EXIT_GRACE_S
        for sock in self._socks:  # the workers close theirs as they begin to drain: then the port refuses
            sock.close()
        self.stop(signal.SIGTERM)

    def _start(self) -> None:
        ready = self._context.Event()
        process = self._context.Process(target=_worker, name="foveal-worker", daemon=False,
                                        args=(self._config, self._options, self._socks, ready, os.getpid()))
        # Started with SIGINT blocked (the mask is kept across exec): a terminal's Ctrl-C reaches the workers too, and
        # one still importing died with a traceback. The worker unblocks it once it notes signals itself, and a
        # Ctrl-C for this process meanwhile waits until the mask is back instead of being lost.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._workers[process.pid] = (process, ready)
        self._starts += 1
        self._starting[process.pid] = self._starts
        logger.info("Started worker process [%d]", process.pid)

    def _note_ready(self) -> None:
        """Workers ready since the last look: the service has served, and one started after the last failed start
        ends that run of failures."""
        for pid in [pid for pid in self._starting if self._workers[pid][1].is_set()]:
            if not self._served and self._on_ready is not None:
                self._on_ready()
            self._served = True
            if self._starting.pop(pid) > self._failed_start:
                self._failed_starts = 0

    def _ended(self, pid: int) -> None:
        self._note_ready()  # the ended worker included: it may have been ready before the loop last looked
        process, ready = self._workers.pop(pid)
        start = self._starting.pop(pid, 0)
        process.join()
        if self._drain_deadline is not None:
            return
        code = process.exitcode
        how = f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
        if not ready.is_set():
            # Before the service ever served, the settings are at fault: stop. After, a replacement may die by
            # accident (the OOM killer) and is replaced again, up to MAX_FAILED_STARTS in a row.
            self._failed_starts, self._failed_start = self._failed_starts + 1, start
            if not self._served or self._failed_starts >= MAX_FAILED_STARTS:
                told = "; its error is in the log above" if code == STARTUP_FAILURE else ""
                tries = f" ({self._failed_starts} times in a row)" if self._served else ""
                self.failed = f"a worker process could not start{tries} ({how}){told}"
                self._drain("A worker could not start: stopping the others")
                return
        logger.warning("Worker process [%d] ended (%s); starting another", pid, how)
        self._start()


def _worker(config: ServeConfig, options: dict[str, Any], socks: list[socket.socket], ready: Any,
            parent: int) -> None:
    """A worker process: the app on a uvicorn server over the parent's sockets until it is told to drain."""
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    # SIGINT and SIGTERM are noted until uvicorn takes them over (just before its startup): one that came earlier
    # (the parent draining, or gone) was lost, and the worker went on to serve, orphaned or holding up the drain.
    # uvicorn re-raises the signal it drained on once done: noted again here, it lets the worker exit 0.
    told: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: told.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent until now (_start)
    _end_with_parent(parent)
    # A spawned process starts with logging unconfigured: foveal's own lines (ready, a non-reading client cut off)
    # reached only Python's last-resort handler, warnings and above, where one server logs them at its level.
    level = options["log_level"]
    logging.basicConfig(level=LOG_LEVELS.get(level, level) if isinstance(level, str) else level, format="%(message)s")

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            if told:  # told to stop before uvicorn listened for it: never start serving
                self.should_exit = True
                return
            await super().startup(sockets)
            if self.started:
                ready.set()

    try:
        server = Server(uvicorn.Config(create_app(config), **options))
    except FovealError as exc:  # a key file gone since the service started...: one line, not a traceback
        logging.getLogger("foveal.serve").error("worker %d: %s", os.getpid(), exc)
        sys.exit(STARTUP_FAILURE)
    server.run(sockets=socks)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _end_with_parent(parent: int) -> None:
    """Linux: this worker is sent SIGTERM (and drains) when ``parent`` dies, even killed: else its workers went on
    serving, orphaned, on a port a restarted service then finds taken."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request above was made
        raise SystemExit("foveal serve: the parent process is gone")
