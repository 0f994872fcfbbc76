"""Run the app on uvicorn: one process, or ``workers`` processes each with its own engine (and one shared
``/metrics``)."""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from typing import Any, Callable

from ..cpu import usable_cpus
from ..errors import InputError
from .app import ServeConfig, create_app
from .auth import load_keys
from .batcher import finite

_BIND_HINTS = {errno.EADDRINUSE: "choose another port, or stop the process that listens on it",
               errno.EADDRNOTAVAIL: "give an address of this machine",
               errno.EACCES: "ports below 1024 need privileges; choose a higher one"}


def max_workers() -> int:
    """The most worker processes :func:`serve` starts here: one per CPU the process may use (affinity and cgroup
    quota; each worker loads its own model, and more only share the same cores), or two on a single CPU, where a
    second worker still isolates failures."""
    return max(2, usable_cpus())


def check_workers(workers: Any) -> int:
    """``workers`` if a whole number from 1 to :func:`max_workers`, else InputError (a typo's 1e20 started
    processes, each loading a model, until the machine gave out)."""
    limit = max_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= limit:
        raise InputError(f"workers must be from 1 to {limit} on this machine (one per CPU, or 2), got {workers!r}")
    return workers


def check_listen(host: str, port: int) -> None:
    """InputError, saying what to do, unless the service can listen on ``host``:``port``: uvicorn reports a port
    in use or a name that does not resolve only as a log line and exit status 3, and takes a port above 65535
    (announcing it, while the socket listens on another)."""
    for sock in bound(host, port):
        sock.close()


def bound(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to ``port`` on every address ``host`` names, as uvicorn binds (``localhost``: ``::1`` and
    ``127.0.0.1`` where both are configured, else IPv4 clients are refused; ``SO_REUSEADDR``: a port in TIME_WAIT
    is free), inheritable by worker processes; InputError saying what to do when they cannot be."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port {port!r}: must be a whole number from 0 to 65535 (0: any free port)")
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = (getattr(exc, "strerror", None) or str(exc)).lower()
        raise InputError(f"cannot listen on {host!r}: {reason}; give an address of this machine (127.0.0.1: this "
                         "machine only, 0.0.0.0: every network interface)") from None
    addresses = list(dict.fromkeys(found))
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in addresses:
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and len(addresses) > 1:  # "::" would also take the IPv4 wildcard's port
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # Port 0: every address on the port the first one drew, so the one URL announced reaches them all.
            sock.bind((address[0], socks[0].getsockname()[1] if len(socks) > 1 else port, *address[2:]))
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in socks:
            sock.close()
        hint = _BIND_HINTS.get(exc.errno, "choose another address or port")
        raise InputError(f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}; {hint}") from None
    return socks


#: glibc malloc arenas for the service's processes. The default allows eight per core, each thread may take one,
#: and memory freed in one arena stays with it: a 10-minute soak (serve_load.py) grew 8.6 % after its warm-up with
#: the default, where two arenas kept the rest of the heap flat.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def cap_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas at :data:`MALLOC_ARENAS` for this process, unless ``MALLOC_ARENA_MAX`` is set
    (the user's own choice, which glibc has already read). False where there is no glibc ``mallopt`` to ask."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_ARENA_MAX, MALLOC_ARENAS) == 1


def serve(config: ServeConfig, *, engine=None, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          log_level: str = "info", graceful_timeout_s: float = 30.0, header_timeout_s: float = 10.0,
          keep_alive_s: float = 5.0, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then stop accepting, let in-flight requests finish (up to
    ``graceful_timeout_s``; those still unanswered then get 503 ``shutting_down``) and return.  A second SIGINT
    while draining stops at once: what is in flight gets that 503, queued images are dropped, and
    KeyboardInterrupt is raised. With ``workers > 1`` (main thread only) the port closes as the drain begins.
    ``engine``: an engine already built from ``config`` (one worker only).
    A connection whose request headers have not all arrived ``header_timeout_s`` after it opened (or after the
    request's first byte) is answered 408 and closed, and one whose client reads none of its answer for
    ``config.request_timeout_s`` is cut off (:mod:`foveal.serve.connection`). glibc's malloc arenas are capped
    (:func:`cap_malloc_arenas`; workers are started with ``MALLOC_ARENA_MAX``) unless ``MALLOC_ARENA_MAX`` is
    set. A kept-alive connection idle for ``keep_alive_s`` is closed: a proxy's or client's pool must drop idle
    connections sooner. ``on_ready(url)`` is called once, with the address it listens on (the port that ``port=0``
    drew), when the service first answers requests (with ``workers > 1``: when the first worker does)."""
    import uvicorn

    from .connection import connection_factory
    from .workers import run_workers

    check_listen(host, port)
    check_workers(workers)
    if config.api_keys_file:  # read here too: a worker that cannot read it would die and be restarted for ever
        load_keys(config.api_keys_file)
    finite("header_timeout_s", header_timeout_s, zero=False)
    finite("graceful_timeout_s", graceful_timeout_s, zero=False)
    finite("keep_alive_s", keep_alive_s, zero=False)
    if on_ready is not None and not callable(on_ready):
        raise InputError(f"on_ready must be a function taking the service's URL, got {type(on_ready).__name__}")
    options = dict(host=host, port=port, log_level=log_level, timeout_graceful_shutdown=graceful_timeout_s,
                   timeout_keep_alive=keep_alive_s, proxy_headers=False, server_header=False,
                   http=connection_factory(header_timeout_s, send_timeout_s=config.request_timeout_s))
    # uvicorn handles SIGINT/SIGTERM itself (drain, then shut down) and re-raises the signal to the handler it
    # found when done; a no-op handler there makes a drained shutdown exit 0 instead of dying by the signal.
    cleanup = contextlib.ExitStack()
    main = threading.current_thread() is threading.main_thread()
    if workers > 1 and not main:
        raise InputError("workers > 1 handles SIGINT and SIGTERM itself, so serve() must run in the main thread")
    previous = {s: signal.signal(s, _drained) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        if workers > 1:
            if config.metrics_dir is None:  # the workers' shared /metrics, removed when the service stops
                try:
                    shared = tempfile.mkdtemp(prefix="foveal-metrics-")
                except OSError as exc:  # a container's read-only root file system, /tmp included
                    raise InputError(f"cannot make the workers' shared /metrics folder in {tempfile.gettempdir()}: "
                                     f"{(exc.strerror or str(exc)).lower()}; set TMPDIR to a writable folder") from None
                cleanup.callback(shutil.rmtree, shared, ignore_errors=True)
                config = dataclasses.replace(config, metrics_dir=shared)
            if "MALLOC_ARENA_MAX" not in os.environ:  # glibc reads it as each worker process starts
                os.environ["MALLOC_ARENA_MAX"] = str(MALLOC_ARENAS)
                cleanup.callback(os.environ.pop, "MALLOC_ARENA_MAX", None)
            run_workers(config, options, workers, on_ready)
        else:
            cap_malloc_arenas()  # before the app's threads start: each would otherwise get an arena of its own
            server = _server(uvicorn.Config(create_app(config, engine=engine), **options), on_ready)
            server.run()
            if server.force_exit:  # a second Ctrl-C cut the drain short: interrupted, not drained
                raise KeyboardInterrupt
    finally:
        cleanup.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def service_url(address: tuple) -> str:
    """The base URL of a listening socket's address (``getsockname()``), IPv6 in brackets."""
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(config: Any, on_ready: Callable[[str], None] | None) -> Any:
    """A uvicorn server that calls ``on_ready(url)`` once its app has started and its socket listens."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if on_ready is not None and not self.should_exit and self.servers:
                on_ready(service_url(self.servers[0].sockets[0].getsockname()))

    return Server(config)


def _drained(signum: int, frame: object) -> None:
    """Runs once uvicorn has finished its graceful shutdown: nothing left to do."""
