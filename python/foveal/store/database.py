"""Opening a store URL: an SQLite file (WAL, foreign keys, writers queue instead of failing) or PostgreSQL."""
from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

from ..errors import FovealError, InputError
from . import NEEDS_SQLALCHEMY

try:  # also imported directly (a batch's --db), past foveal.store's own check
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
except ImportError:
    raise FovealError(NEEDS_SQLALCHEMY) from None

#: How long a writer waits for another process's transaction before giving up (SQLite busy timeout).
BUSY_TIMEOUT_S = 60.0
#: How long connecting to a PostgreSQL server may take: libpq would wait forever on a port that accepts the
#: connection and never answers (a firewall, a proxy, another service).
CONNECT_TIMEOUT_S = 30
#: How long one call to a PostgreSQL server (a statement, a commit) that records a creative may wait for its answer.
#: A server, or a proxy before it, that stops answering mid-batch would otherwise hold the process forever: its
#: kernel still acknowledges the connection, so no TCP timeout ever ends the wait.
RESPONSE_TIMEOUT_S = 60.0
#: The same limit for the other calls (reading a whole store to calibrate, importing outcomes): on a store of
#: millions of predictions an aggregate may rightly keep the server silent for minutes before its first row.
QUERY_TIMEOUT_S = 1800.0
#: How long a store's calls fail at once after one failed for want of its PostgreSQL server (refused, no answer,
#: connection lost), before one call tries the server again: a batch would otherwise wait the connect limit per
#: creative while the server is down.
COOL_DOWN_S = 60.0
#: How long the one call that tries a server known down again (after :data:`COOL_DOWN_S`) may take to connect: a
#: server that accepts connections and never answers would otherwise hold that call, and the batch behind it, for
#: the whole connect limit at every try.  A store whose server was seen to connect slowly waits
#: :data:`PROBE_MARGIN` times its slowest connect instead, so that a slow server that is up is not taken for down;
#: never more than the connect limit.
PROBE_CONNECT_S = 5.0
PROBE_MARGIN = 4.0


#: A password given in a URL's query (libpq's connection URIs take every keyword there: ``?password=...``).
_QUERY_SECRET = re.compile(r"([?&](?:ssl)?password=)[^&]*")


def describe(url: sa.URL) -> str:
    """The URL as it may be printed: never with its password, in its user part or in its query."""
    return _QUERY_SECRET.sub(r"\1***", url.render_as_string(hide_password=True))


def parse_url(text: str) -> sa.URL:
    """``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``, or a bare file path (an SQLite file)."""
    if isinstance(text, os.PathLike):
        text = os.fspath(text)
    if not isinstance(text, str):
        raise InputError(f"expected a database URL or a file path, got {type(text).__name__}")
    if "://" not in text:
        if not Path(text).name.strip():  # "" or " " would open the folder, or make a file named " "
            raise InputError(f"database {text!r}: name a file, e.g. foveal.db, or a URL such as sqlite:///foveal.db")
        text = f"sqlite:///{Path(text).expanduser()}"
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        shown = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", text)  # unparsed, so describe() cannot hide it
        shown = _QUERY_SECRET.sub(r"\1***", shown)
        raise InputError(f"{shown!r} is not a database URL; use sqlite:///FILE.db or "
                         "postgresql+psycopg://USER@HOST/DB") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise InputError(f"database {describe(url)}: foveal stores live in SQLite or PostgreSQL, not "
                         f"{url.get_backend_name()!r}; use sqlite:///FILE.db or postgresql+psycopg://USER@HOST/DB")
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise InputError("an in-memory SQLite database would vanish on exit; name a file, "
                         "e.g. sqlite:///foveal.db")
    if url.get_backend_name() == "sqlite" and url.query:  # the driver would warn and ignore them
        raise InputError(f"database {describe(url)}: an SQLite URL takes no query parameters (got "
                         f"{', '.join(sorted(url.query))}); name the file alone, e.g. sqlite:///foveal.db (commands "
                         "that only read open it read-only themselves)")
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver foveal depends on
    if "connect_timeout" in url.query:
        given = url.query["connect_timeout"]
        try:
            seconds = float(given[-1] if isinstance(given, tuple) else given)
        except ValueError:
            seconds = math.nan
        if not 0 < seconds < math.inf:  # libpq waits for ever on 0 or less
            raise InputError(f"database {describe(url)}: connect_timeout must be a number of seconds > 0, got "
                             f"{given!r}; leave it out for foveal's {CONNECT_TIMEOUT_S:g} s")
    return url


def absolute_url(text: str) -> str:
    """``text`` (as :func:`parse_url` reads it) with an SQLite file's path made absolute, for processes that run in
    another folder (a Ray cluster's workers); other databases unchanged."""
    url = parse_url(text)
    if url.get_backend_name() != "sqlite":
        return text
    return url.set(database=str(Path(url.database).expanduser().absolute())).render_as_string(hide_password=False)


def create_engine(url: sa.URL, *, create: bool = True, read_only: bool = False) -> sa.Engine:
    """An engine whose transactions are safe for several writing processes at once.

    With ``create=False`` a missing SQLite file is refused here, before connecting would create it empty.  With
    ``read_only`` (which implies it) an SQLite file is opened read-only: it is read even where it may not be written.
    """
    if url.get_backend_name() == "sqlite":
        path = Path(url.database).expanduser()
        url = url.set(database=str(path))  # "~" for SQLite as for the checks (every command reads one file)
        try:
            # realpath: Path.resolve() raises RuntimeError on a loop of links (Python 3.11)
            folder = Path(os.path.realpath(path)).parent
            if not folder.is_dir():
                raise InputError(f"database {describe(url)}: folder {folder} does not exist")
            if path.is_dir():
                raise InputError(f"database {describe(url)}: {path} is a folder, not a database file; name a file in "
                                 f"it, e.g. {path / 'foveal.db'}")
            if (read_only or not create) and not path.exists():
                raise InputError(f"database {describe(url)}: no store at {path}; record predictions in it first with "
                                 "`foveal score ... --db URL`")
        except OSError as exc:  # a name too long, a loop of links
            raise InputError(f"database {describe(url)}: {exc.strerror or exc}; name a valid SQLite file") from None
        if read_only:
            uri = _read_only_uri(url, path)
            engine = sa.create_engine(url, creator=lambda: sqlite3.connect(
                uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False))
            event.listen(engine, "connect", _sqlite_connect_read_only)
            event.listen(engine, "begin", _sqlite_begin_read)
            return engine
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        event.listen(engine, "connect", functools.partial(_sqlite_connect, create=create))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        timeout = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}  # the URL's wins
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=timeout)
    except NoSuchModuleError as exc:
        raise FovealError(f"database {describe(url)}: {exc}; install psycopg (pip install 'psycopg[binary]')") from None
    event.listen(engine, "do_connect", functools.partial(_bounded_connect, _Connects()))
    return engine


def _bounded_connect(connects: _Connects, _dialect: object, _record: object, cargs: tuple, cparams: dict) -> object:
    """A psycopg connection whose every wait on the server (statements, the pool's ping, commit, rollback) ends
    after its limit (:func:`_answer_within`); while a :class:`Breaker` tries a server known down again, connecting
    ends after the probe's limit (:data:`PROBE_CONNECT_S`)."""
    connection, cursor = _bounded_classes()
    if _PROBING.get():
        cparams = {**cparams, "connect_timeout": connects.probe_timeout(cparams.get("connect_timeout"))}
    start = time.monotonic()
    conn = connection.connect(*cargs, cursor_factory=cursor, **cparams)
    connects.took(time.monotonic() - start)
    return conn


class _Connects:
    """How long connecting to one engine's server has taken at most: what a try of it after it was down may wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slowest = 0.0

    def took(self, seconds: float) -> None:
        with self._lock:
            self._slowest = max(self._slowest, seconds)

    def probe_timeout(self, given: Any) -> Any:
        """``connect_timeout`` for a try of the server: the given one (the URL's, else :data:`CONNECT_TIMEOUT_S`)
        where it is shorter than the probe's limit, else that limit in whole seconds (as libpq reads it)."""
        with self._lock:
            limit = math.ceil(max(PROBE_CONNECT_S, PROBE_MARGIN * self._slowest))
        try:
            normal = float(CONNECT_TIMEOUT_S if given is None else given)
        except (TypeError, ValueError):
            return given  # psycopg names the bad value itself
        return given if 0 < normal <= limit else limit  # 0 or less: no limit of the user's


@functools.cache
def _bounded_classes() -> tuple[type, type]:
    """psycopg's connection and cursor, each call that waits on the server under :func:`_answer_within` (psycopg
    is imported only for a PostgreSQL store)."""
    import psycopg

    class BoundedCursor(psycopg.Cursor):
        def execute(self, *args: Any, **kwargs: Any) -> BoundedCursor:
            with _answer_within(self.connection):
                return super().execute(*args, **kwargs)

        def executemany(self, *args: Any, **kwargs: Any) -> None:
            with _answer_within(self.connection):
                return super().executemany(*args, **kwargs)

    class BoundedConnection(psycopg.Connection):
        def commit(self) -> None:
            with _answer_within(self):
                super().commit()

        def rollback(self) -> None:
            with _answer_within(self):
                super().rollback()

    return BoundedConnection, BoundedCursor


_RECORDING: contextvars.ContextVar[bool] = contextvars.ContextVar("foveal_store_recording", default=False)
#: Set while a :class:`Breaker` tries a server known down again: its connect waits the probe's limit.
_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("foveal_store_probing", default=False)


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Calls made inside are small writes of one creative: bound them by :data:`RESPONSE_TIMEOUT_S`, not by
    :data:`QUERY_TIMEOUT_S`."""
    token = _RECORDING.set(True)
    try:
        yield
    finally:
        _RECORDING.reset(token)


def _answer_within(conn: Any) -> contextlib.AbstractContextManager[None]:
    """Run one call on the psycopg connection ``conn``; if it outlasts its limit (:data:`RESPONSE_TIMEOUT_S` while
    :func:`recording`, else :data:`QUERY_TIMEOUT_S`), its socket is shut down, so that psycopg's wait ends and the
    call fails as a lost connection (which the pool then replaces)."""
    return _WATCHDOG.bound(conn, RESPONSE_TIMEOUT_S if _RECORDING.get() else QUERY_TIMEOUT_S)


class _Watchdog:
    """One thread for the process's PostgreSQL calls that shuts down the socket of each call past its deadline (a
    timer thread per call costs several times the call); it runs only while calls do."""

    TICK_S = 0.25

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[float, Any]] = {}
        self._cut: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def bound(self, conn: Any, limit: float) -> Iterator[None]:
        import psycopg

        with self._lock:
            key = next(self._ids)
            self._calls[key] = (time.monotonic() + limit, conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="foveal-store-watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        except psycopg.Error as exc:
            if self._finish(key):
                raise psycopg.OperationalError(f"the server did not answer within {limit:g} s") from exc
            raise
        finally:
            self._finish(key)

    def _finish(self, key: int) -> bool:
        """Forget the call ``key``; whether its socket was shut down."""
        with self._lock:
            self._calls.pop(key, None)
            cut = key in self._cut
            self._cut.discard(key)
        return cut

    def _watch(self) -> None:
        while True:
            time.sleep(self.TICK_S)
            with self._lock:  # held while cutting: a call that just finished is never cut afterwards
                if not self._calls:
                    self._thread = None
                    return
                now = time.monotonic()
                for key, (deadline, conn) in self._calls.items():
                    if now >= deadline and key not in self._cut:
                        self._cut.add(key)
                        _shut_down(conn)


def _shut_down(conn: Any) -> None:
    import psycopg

    with contextlib.suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=conn.pgconn.socket)  # a socket handle on Windows, where os.dup cannot copy it
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()  # the descriptor stays psycopg's to close


_WATCHDOG = _Watchdog()


class Breaker:
    """A store's memory that its PostgreSQL server is down: after a call fails for want of the server, the calls of
    the next :data:`COOL_DOWN_S` seconds fail at once, then one call tries the server again (the others still fail
    at once meanwhile), waiting at most :data:`PROBE_CONNECT_S` to connect; a call the server answers, even with an
    error, ends the cool-down.  Thread-safe."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._down: tuple[float, str] | None = None  # (monotonic time of the last failure, its reason)
        self._trying = False

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run one call on the store; raise the one-line FovealError at once while the server is known down."""
        trying = self._admit()
        probing = _PROBING.set(trying)
        try:
            yield
        except DBAPIError as exc:
            self._answered(_first_line(exc) if _unreachable(self.url, exc) else None)
            raise
        except Exception:  # raised by the caller within the transaction: the server answered
            self._answered(None)
            raise
        else:
            self._answered(None)
        finally:
            _PROBING.reset(probing)
            if trying:
                with self._lock:
                    self._trying = False

    def _admit(self) -> bool:
        """Whether this call is the one that tries a server known down again; the FovealError while it may not."""
        with self._lock:
            if self._down is None:
                return False
            since, reason = self._down
            now = time.monotonic()
            if self._trying:
                when = "another call is trying it again now"
            elif now < since + COOL_DOWN_S:
                when = f"next try in {math.ceil(since + COOL_DOWN_S - now)} s"
            else:
                self._trying = True
                return True
        raise FovealError(f"database {describe(self.url)}: the store is down ({reason}, {int(now - since)} s ago; "
                          f"{when}); nothing of this step was kept: check that the server is up, then rerun")

    def _answered(self, unreachable: str | None) -> None:
        """Record a call's end: ``unreachable`` is the reason it failed for want of the server, else None."""
        with self._lock:
            self._down = None if unreachable is None else (time.monotonic(), unreachable)


def _unreachable(url: sa.URL, exc: DBAPIError) -> bool:
    """Whether a PostgreSQL call failed for want of the server (refused, no answer in time, connection lost or shut
    down), not for what it asked (a constraint, a lock, a right it lacks)."""
    if url.get_backend_name() != "postgresql":
        return False
    import psycopg

    if exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None)
    # no SQLSTATE: libpq's own failure (connecting, the socket); class 08: connection exception; 57P01-03: the
    # server is shutting down or starting
    return isinstance(exc.orig, psycopg.OperationalError) and (
        state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03"))


def _sqlite_connect(dbapi_conn: sqlite3.Connection, _record: object, *, create: bool) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it and upgrade locks mid-transaction,
    # which fails under concurrency instead of waiting).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL is a lasting property of the file: another application's database, which the store may be about to
    # refuse (tables named like foveal's, or create=False), must be left exactly as it was. A new (empty) file is
    # switched at once, an existing one only once it holds a store (the next connection after its schema is made).
    tables = {name for (name,) in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "foveal_schema" in tables or (create and not tables):
        _wal(cur)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cur.close()


def _sqlite_connect_read_only(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    dbapi_conn.isolation_level = None  # BEGIN is the "begin" event's, as for writers
    dbapi_conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


def _sqlite_begin_read(conn: sa.Connection) -> None:
    # A deferred transaction: one snapshot for all its reads, without the write lock that would queue writers.
    conn.exec_driver_sql("BEGIN")


def _read_only_uri(url: sa.URL, path: Path) -> str:
    """The URI that opens ``path`` read-only.

    A WAL-mode file is read through its ``-shm`` index, which SQLite creates beside it where it is missing: in a
    folder that may not be written that fails.  A file that nobody may write (no write permission bit) and that no
    connection has open (no ``-wal`` or ``-journal`` beside it) cannot change while it is read, so it is opened
    ``immutable``: without locks or ``-shm``, and nothing is left beside it.  Otherwise the error says what to do.
    """
    uri = f"file:{quote(os.fsencode(path.resolve()))}?mode=ro"  # the name's own bytes, UTF-8 or not
    wal, journal = (path.with_name(path.name + suffix) for suffix in ("-wal", "-journal"))
    if not path.stat().st_mode & 0o222 and not journal.exists() and not wal.exists():
        return uri + "&immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        # "attempt to write a readonly database", or "unable to open" beside an -wal: any other problem (a file
        # that may not be read...) is the store's open to report
        if not os.access(path, os.R_OK) or os.access(path.parent, os.W_OK):
            return uri
        chmod = "" if wal.exists() or journal.exists() else (
            f", or if nothing writes the store any more, remove its write permission (chmod a-w {path})")
        raise FovealError(f"database {describe(url)}: cannot read it without creating {path.name}-shm beside it (the "
                          f"store is in WAL mode) in {path.parent}, which you may not write; make that folder "
                          f"writable{chmod}") from None
    except sqlite3.Error:  # not a database...: reported by the store's open
        pass
    return uri


def _wal(cur: sqlite3.Cursor) -> None:
    """Switch the file to WAL (readers never block the writer, nor the writer readers), retried while locked.

    Switching needs an exclusive lock; when two connections open a new file at once, SQLite answers one of them
    "database is locked" at once instead of calling the busy handler (it would otherwise deadlock), so the wait is
    ours.  WAL is a property of the file: after the first switch this returns at once.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_begin(conn: sa.Connection) -> None:
    # Take the write lock up front: two writers queue on the busy timeout instead of one failing with
    # "database is locked" when both try to upgrade a read lock.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _first_line(exc: DBAPIError) -> str:
    """The driver's own reason, without SQLAlchemy's statement, parameters and link."""
    return (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()[0]


def write_error(url: sa.URL, exc: DBAPIError) -> FovealError:
    """A one-line FovealError for a read or write the database refused or lost mid-way (nothing of it was kept:
    each store call is one transaction)."""
    reason = _first_line(exc)
    if _locked(url, reason):
        return _locked_error(url, reason)
    return FovealError(f"database {describe(url)}: the store failed ({reason}); nothing of this step was kept: check "
                       "that the database may be written and the server is up, then rerun")


def connect_error(url: sa.URL, exc: DBAPIError) -> FovealError:
    """A one-line FovealError for a database that cannot be reached or opened."""
    reason = _first_line(exc)
    if url.get_backend_name() == "postgresql":
        return FovealError(f"database {describe(url)}: cannot open the database ({reason}); check the URL and that the "
                           "server is running")
    if _locked(url, reason):  # opening upgrades the schema, in a write transaction
        return _locked_error(url, reason)
    if "not a database" in reason:  # SQLite's "file is not a database"
        return FovealError(f"database {describe(url)}: {url.database} is not an SQLite database, so not a foveal "
                           "store; use a foveal store or a new file")
    return FovealError(f"database {describe(url)}: cannot open the SQLite file ({reason}); check that it is a foveal "
                       "store you may read and write")


def _locked(url: sa.URL, reason: str) -> bool:
    """Whether SQLite gave up waiting for another connection's write lock (its busy timeout)."""
    return url.get_backend_name() == "sqlite" and reason == "database is locked"


def _locked_error(url: sa.URL, reason: str) -> FovealError:
    return FovealError(f"database {describe(url)}: another process held the store's write lock for over "
                       f"{BUSY_TIMEOUT_S:g} s ({reason}); nothing of this step was kept: let it finish (or stop it), "
                       "then rerun")
