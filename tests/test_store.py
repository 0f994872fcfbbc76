"""The calibration store on a real SQLite file and a real PostgreSQL server: schema, recording, outcome imports."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import foveal
from foveal.cli import main
from foveal.errors import FovealError, InputError
from foveal.store import SCHEMA_VERSION, Store
from foveal.store import schema as s
from foveal.store.outcomes import read_outcomes

from tests.store_fixtures import scored, without_root_override

ROOT = Path(__file__).resolve().parents[1]
# where foveal is imported from: the installed package in CI, python/ in a checkout
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))
ENV = {**os.environ, "PYTHONPATH": f"{FOVEAL_PATH}{os.pathsep}{ROOT}"}
FOVEAL = [sys.executable, "-m", "foveal"]


def _store_with(url: str, ids=("a", "b", "c")) -> Store:
    store = Store(url)
    for i, cid in enumerate(ids):
        scores, provenance = scored(i)
        store.record(cid, scores, provenance, vertical="retail")
    return store


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_schema_is_created_versioned_and_reopened(store_url):
    with Store(store_url) as store:
        assert store.schema_version() == SCHEMA_VERSION
    with Store(store_url) as store:  # a second open migrates nothing
        assert store.schema_version() == SCHEMA_VERSION
        with store.engine.begin() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(s.schema_versions)).scalar() == SCHEMA_VERSION


def test_sqlite_store_uses_wal(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'w.db'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_store_sent_to_another_process_is_one_clear_error(tmp_path):
    """Pickling a Store (a process pool's argument) failed with "Can't pickle local object
    'create_engine.<locals>.connect'"."""
    import copy
    import pickle

    with Store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        for send in (pickle.dumps, copy.deepcopy):
            with pytest.raises(InputError, match=r"cannot be pickled .*open one in each worker: Store\(url\)"):
                send(store)


def test_a_closed_store_refuses_every_call_instead_of_reconnecting(store_url, tmp_path):
    """SQLAlchemy's dispose() let a closed Store connect again, unlike a closed Client; now each call is one line
    saying so, and closing again does nothing."""
    outcomes = _write(tmp_path / "o.csv", "creative_id,date,impressions,clicks\na,2024-03-01,10,1\n")
    scores, provenance = scored(0)
    with _store_with(store_url) as store:
        pass
    store.close()
    assert repr(store).endswith(", closed)")
    for call in (store.schema_version, store.counts, store.check_writable, store.latest_predictions,
                 store.outcome_rows, lambda: store.import_outcomes(outcomes),
                 lambda: store.record("z", scores, provenance)):
        with pytest.raises(InputError, match=r"^database .*: this Store is closed; open a new one: Store\(url\)$"):
            call()
    with Store(store_url) as again:  # what it held was kept
        assert again.counts()["creatives"] == 3


def test_newer_schema_is_refused(store_url):
    Store(store_url).close()
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(s.schema_versions.insert().values(version=SCHEMA_VERSION + 1, applied_at=sa.func.now()))
    engine.dispose()
    with pytest.raises(FovealError, match="newer foveal"):
        Store(store_url)


def test_foreign_database_is_refused(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE creatives (x INTEGER)")
    engine.dispose()
    with pytest.raises(FovealError, match="not a foveal store"):
        Store(f"sqlite:///{tmp_path / 'other.db'}")


@pytest.mark.parametrize("url, message", [
    ("mysql://u@h/db", "^database mysql://u@h/db: foveal stores live in SQLite or PostgreSQL"),
    ("postgres://u:pw@h/db", r"^database postgres://u:\*\*\*@h/db: foveal stores live in SQLite or PostgreSQL, not "
                             r"'postgres'; use sqlite:///FILE.db or postgresql\+psycopg://USER@HOST/DB$"),
    ("sqlite://", "^an in-memory SQLite database"), ("sqlite:////no/such/folder/x.db", "does not exist"),
    ("", "^database '': name a file, e.g. foveal.db"), (" ", "^database ' ': name a file"),
    ("stores/ ", "^database 'stores/ ': name a file"),
    ("a b://x", "^'a b://x' is not a database URL; use sqlite:///FILE.db"),
    ("postgresql://u@h:54x2/db", "is not a database URL"),
    ("postgresql://u:s3cret@h:54x2/db", r"^'postgresql://u:\*\*\*@h:54x2/db' is not a database URL"),
    ("postgresql://u@h:54x2/db?sslpassword=s3cret&x=1", r"^'postgresql://u@h:54x2/db\?sslpassword=\*\*\*&x=1' is not"),
    ("mysql://u@h/db?password=s3cret", r"^database mysql://u@h/db\?password=\*\*\*: foveal stores live in"),
    # SQLAlchemy's warning leaked and the parameter was ignored (mode=ro: written anyway)
    ("sqlite:///x.db?mode=ro", r"^database sqlite:///x.db\?mode=ro: an SQLite URL takes no query parameters \(got "
                               r"mode\); name the file alone"),
    # libpq waits for ever on 0 or less
    ("postgresql+psycopg://u@127.0.0.1:1/db?connect_timeout=0", "connect_timeout must be a number of seconds > 0, got "
                                                              "'0'; leave it out for foveal's 30 s"),
    ("postgresql+psycopg://u@127.0.0.1:1/db?connect_timeout=-5", "connect_timeout must be a number of seconds > 0"),
    ("postgresql+psycopg://u@127.0.0.1:1/db?connect_timeout=abc", "connect_timeout must be a number of seconds > 0")])
def test_bad_urls(url, message):
    with pytest.raises(InputError, match=message):
        Store(url)


def test_a_password_in_the_query_is_not_printed(capsys):
    """libpq takes ``?password=`` in a URL as it takes ``user:password@``: neither reaches a message."""
    url = "postgresql+psycopg://bob@127.0.0.1:1/db?password=s3cret&connect_timeout=5"
    assert main(["outcomes", "import", os.devnull, "--db", url]) == 1
    err = capsys.readouterr().err
    assert "s3cret" not in err and "db?connect_timeout=5&password=***: cannot open the database" in err


def test_a_file_that_is_not_a_database_or_a_folder_is_one_clear_error(tmp_path, capsys):
    image = tmp_path / "creative.png"
    image.write_bytes((ROOT / "examples" / "creative_b.png").read_bytes())
    before = image.read_bytes()
    with pytest.raises(FovealError, match="creative.png is not an SQLite database"):
        Store(str(image))
    assert image.read_bytes() == before
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="is a folder, not a database file"):
        Store(f"sqlite:///{tmp_path / 'folder'}")
    for command in (["calibrate", "-o", str(tmp_path / "o")], ["outcomes", "import", str(image)]):
        assert main([*command, "--db", str(image)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("foveal: error:") and "not an SQLite database" in err and err.count("\n") == 1


def test_opening_an_existing_store_refuses_a_missing_or_foreign_database(tmp_path, capsys):
    missing = tmp_path / "typo.db"
    with pytest.raises(InputError, match="no store at"):
        Store(f"sqlite:///{missing}", create=False)
    outcomes = _write(tmp_path / "o.csv", "creative_id,date,impressions,clicks\na,2024-03-01,10,1\n")
    assert main(["outcomes", "import", str(outcomes), "--db", f"sqlite:///{missing}"]) == 1
    assert main(["calibrate", "--db", f"sqlite:///{missing}", "-o", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.count("no store at") == 2
    assert not list(tmp_path.glob("typo.db*"))  # nothing created
    other = tmp_path / "other.db"
    engine = sa.create_engine(f"sqlite:///{other}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (x INTEGER)")
    engine.dispose()
    with pytest.raises(FovealError, match="holds no foveal store"):
        Store(f"sqlite:///{other}", create=False)
    assert sa.inspect(sa.create_engine(f"sqlite:///{other}")).get_table_names() == ["notes"]
    _store_with(f"sqlite:///{tmp_path / 'real.db'}").close()
    with Store(f"sqlite:///{tmp_path / 'real.db'}", create=False) as store:
        assert store.counts()["creatives"] == 3


def test_opening_an_existing_store_refuses_an_empty_database_on_both_backends(store_url):
    with pytest.raises(FovealError, match="no store at|holds no foveal store"):
        Store(store_url, create=False)
    Store(store_url).close()  # nothing was half-created: the store is made as usual
    with Store(store_url, create=False) as store:
        assert store.schema_version() == SCHEMA_VERSION


def test_a_store_opened_read_only_is_read_and_its_schema_checked_not_upgraded(store_url, monkeypatch):
    with pytest.raises(FovealError, match="no store at|holds no foveal store"):  # no file; an empty database
        Store(store_url, read_only=True).close()
    _store_with(store_url).close()
    with Store(store_url, read_only=True) as store:
        assert store.counts()["creatives"] == 3 and len(store.latest_predictions()) == 3
    monkeypatch.setattr(s, "SCHEMA_VERSION", s.SCHEMA_VERSION + 1)
    with pytest.raises(FovealError, match=r"schema is version 1, older than this foveal's 2; upgrade it by writing"):
        Store(store_url, read_only=True)
    monkeypatch.undo()
    with Store(store_url) as store:
        assert store.schema_version() == 1


def _read_only_store(tmp_path: Path, file_mode: int, folder_mode: int) -> Path:
    """A store with three creatives at ``tmp_path/ro/s.db``, the file and its folder then given these modes."""
    db = tmp_path / "ro" / "s.db"
    db.parent.mkdir()
    _store_with(f"sqlite:///{db}").close()
    db.chmod(file_mode)
    db.parent.chmod(folder_mode)
    return db


@pytest.mark.parametrize("file_mode, folder_mode", [(0o444, 0o755), (0o444, 0o555)])
def test_a_store_nobody_may_write_is_read_and_left_as_it_was(file_mode, folder_mode, tmp_path):
    db = _read_only_store(tmp_path, file_mode, folder_mode)
    code = f"from foveal.store import Store\nwith Store({str(db)!r}, read_only=True) as s: print(s.counts())"
    try:
        reader = subprocess.run(without_root_override([sys.executable, "-c", code]), env=ENV, capture_output=True,
                                text=True, timeout=120)
        assert reader.returncode == 0, reader.stderr
        assert "'creatives': 3" in reader.stdout
        # no -shm or -wal left behind: a read-only -shm would refuse writers once the file is writable again
        assert sorted(p.name for p in db.parent.iterdir()) == ["s.db"]
    finally:
        db.parent.chmod(0o755)


@pytest.mark.parametrize("open_elsewhere", [False, True])
def test_a_store_in_a_folder_you_may_not_write_says_what_to_do(open_elsewhere, tmp_path):
    # WAL mode: reading needs s.db-shm beside the file; while the file may be written, it cannot be read without,
    # nor while a connection has it open (its s.db-wal is there): a writer opened before the chmod may still write
    db = _read_only_store(tmp_path, 0o444 if open_elsewhere else 0o644, 0o755)
    if open_elsewhere:
        (db.parent / "s.db-wal").touch()
    db.parent.chmod(0o555)
    code = ("import sys\nfrom foveal.errors import FovealError\nfrom foveal.store import Store\n"
            f"try:\n    Store({str(db)!r}, read_only=True)\nexcept FovealError as exc:\n    sys.exit(str(exc))")
    try:
        reader = subprocess.run(without_root_override([sys.executable, "-c", code]), env=ENV, capture_output=True,
                                text=True, timeout=120)
    finally:
        db.parent.chmod(0o755)
    assert reader.returncode == 1
    chmod = "" if open_elsewhere else f", or if nothing writes the store any more, remove its write permission " \
                                      f"(chmod a-w {db})"
    assert reader.stderr == (f"database sqlite:///{db}: cannot read it without creating s.db-shm beside it (the "
                             f"store is in WAL mode) in {db.parent}, which you may not write; make that folder "
                             f"writable{chmod}\n")


@pytest.mark.parametrize("batch", [False, True])
def test_without_the_store_extra_db_says_how_to_get_it(batch, tmp_path):
    """A batch's --db read the store's database module directly, past the check that names the extra: "internal
    error: ModuleNotFoundError: No module named 'sqlalchemy'"."""
    image = ROOT / "examples" / "creative.png"
    if batch:
        (tmp_path / "in").mkdir()
        for name in ("creative.png", "creative.json"):
            (tmp_path / "in" / name).write_bytes((ROOT / "examples" / name).read_bytes())
        image = tmp_path / "in"
    code = ("import sys; sys.modules['sqlalchemy'] = None; from foveal.cli import main; "
            f"sys.exit(main(['score', {str(image)!r}, '-o', {str(tmp_path / 'out')!r}, '--db', 'sqlite:///s.db']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV,
                          cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == "foveal: error: the calibration store needs SQLAlchemy: pip install 'foveal[store]'\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.db").exists()


def test_unreachable_postgres_is_one_clear_error():
    with pytest.raises(FovealError, match="cannot open the database"):
        Store("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")


def test_a_postgres_port_that_never_answers_is_an_error_not_a_hang(monkeypatch):
    # a firewall, proxy or other service that accepts the connection and says nothing: libpq waits forever
    # unless told otherwise
    import socket

    from foveal.store import database

    monkeypatch.setattr(database, "CONNECT_TIMEOUT_S", 2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.monotonic()
        with pytest.raises(FovealError, match="cannot open the database .*timeout"):
            Store(f"postgresql+psycopg://nobody@127.0.0.1:{silent.getsockname()[1]}/none")
        monkeypatch.setattr(database, "CONNECT_TIMEOUT_S", 3600)  # the URL's own limit wins
        with pytest.raises(FovealError, match="cannot open the database .*timeout"):
            Store(f"postgresql+psycopg://nobody@127.0.0.1:{silent.getsockname()[1]}/none?connect_timeout=2")
        assert time.monotonic() - start < 30


def _database(postgres_server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name


def test_a_stopped_server_is_not_asked_again_until_its_cool_down_ends_then_used_again(postgres_server, monkeypatch):
    """A batch asked a stopped (or frozen) server again for every creative, each waiting out the connect limit."""
    import psycopg

    from foveal.store import database
    from tests.store_fixtures import FreezingProxy

    name = _database(postgres_server, "stopped_then_back")
    monkeypatch.setattr(database, "COOL_DOWN_S", 1.0, raising=False)
    with FreezingProxy(int(postgres_server.rsplit(":", 1)[1])) as proxy:  # the server, as far as the store knows
        store = Store(f"postgresql+psycopg://foveal@127.0.0.1:{proxy.port}/{name}")
        store.record("a", *scored(0))
    connects, connect = [], psycopg.Connection.connect.__func__
    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(
        lambda cls, *args, **kwargs: connects.append(1) or connect(cls, *args, **kwargs)))
    with pytest.raises(FovealError, match=r"store failed \(.*refused"):  # stopped: its port refuses connections
        store.record("b", *scored(1))
    assert connects
    tried = len(connects)
    start = time.monotonic()
    for _ in range(3):
        with pytest.raises(FovealError, match=r"^database \S+: the store is down \(.*refused.*, 0 s ago; next try in "
                                              r"1 s\); nothing of this step was kept: check that the server is up, "
                                              r"then rerun$"):
            store.record("b", *scored(1))
    assert len(connects) == tried and time.monotonic() - start < 0.5
    with FreezingProxy(int(postgres_server.rsplit(":", 1)[1]), listen_port=proxy.port):  # the server is back
        time.sleep(1.1)
        store.record("b", *scored(1))
        store.record("c", *scored(2))
        assert store.counts()["predictions"] == 3
        store.close()


def test_a_slow_read_is_not_cut_at_the_limit_of_a_creatives_write(postgres_server, monkeypatch):
    """Every call had the 60 s limit meant for recording one creative, so an aggregate over a store of millions of
    predictions, rightly silent for minutes, would have been cut and the store called down."""
    from foveal.store import database

    name = _database(postgres_server, "slow_read")
    monkeypatch.setattr(database, "RESPONSE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(database, "QUERY_TIMEOUT_S", 5.0, raising=False)
    with Store(f"{postgres_server}/{name}") as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_sleep(1.5), 7")).one()[1] == 7
        start = time.monotonic()
        with pytest.raises(sa.exc.OperationalError, match="did not answer within 0.5 s"):
            with database.recording(), store.engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_sleep(3)"))
        assert time.monotonic() - start < 2.5


def test_while_one_call_tries_a_down_server_again_the_others_fail_at_once(postgres_server, monkeypatch):
    import threading

    from foveal.store import database
    from tests.store_fixtures import FreezingProxy

    name = _database(postgres_server, "frozen_retried")
    monkeypatch.setattr(database, "RESPONSE_TIMEOUT_S", 1)
    monkeypatch.setattr(database, "COOL_DOWN_S", 0.5, raising=False)
    with FreezingProxy(int(postgres_server.rsplit(":", 1)[1])) as proxy, \
            Store(f"postgresql+psycopg://foveal@127.0.0.1:{proxy.port}/{name}?connect_timeout=2") as store:
        store.record("a", *scored(0))
        proxy.freeze()
        with pytest.raises(FovealError, match="the store failed"):  # the pool's ping unanswered, then connecting
            store.record("b", *scored(1))
        time.sleep(0.6)
        retry: list[BaseException] = []

        def record_b() -> None:
            try:
                store.record("b", *scored(1))
            except FovealError as exc:
                retry.append(exc)

        trying = threading.Thread(target=record_b)
        trying.start()
        time.sleep(0.3)  # the retry now waits on the frozen server
        start = time.monotonic()
        with pytest.raises(FovealError, match=r"the store is down \(.*; another call is trying it again now\)"):
            store.record("c", *scored(2))
        assert time.monotonic() - start < 0.5
        trying.join(timeout=20)
        assert not trying.is_alive() and "the store failed" in str(retry[0])
        with pytest.raises(FovealError, match="the store is down"):  # failed again: cooling down again
            store.record("c", *scored(2))


def test_a_try_of_a_frozen_server_waits_the_probe_limit_not_the_connect_limit(postgres_server, monkeypatch):
    """Each try of a server that stopped answering, once its cool-down was over, waited the whole connect limit: 30 s
    of every 90 s of a batch against a frozen store went to tries that were bound to fail."""
    from foveal.store import database
    from tests.store_fixtures import FreezingProxy

    name = _database(postgres_server, "frozen_probed")
    monkeypatch.setattr(database, "RESPONSE_TIMEOUT_S", 1)
    monkeypatch.setattr(database, "CONNECT_TIMEOUT_S", 6)
    monkeypatch.setattr(database, "COOL_DOWN_S", 0.5, raising=False)
    monkeypatch.setattr(database, "PROBE_CONNECT_S", 2, raising=False)
    with FreezingProxy(int(postgres_server.rsplit(":", 1)[1])) as proxy, \
            Store(f"postgresql+psycopg://foveal@127.0.0.1:{proxy.port}/{name}") as store:
        store.record("a", *scored(0))
        proxy.freeze()
        start = time.monotonic()
        with pytest.raises(FovealError, match="the store failed"):  # the pool's ping, then connecting: the long limits
            store.record("b", *scored(1))
        assert time.monotonic() - start > 6
        for _ in range(2):
            time.sleep(0.6)  # the cool-down is over: this call tries the server again
            start = time.monotonic()
            with pytest.raises(FovealError, match=r"the store failed \(connection timeout expired\)"):
                store.record("b", *scored(1))
            assert time.monotonic() - start < 4
        with pytest.raises(FovealError, match="the store is down"):
            store.record("b", *scored(1))


def test_a_try_of_a_server_slow_to_connect_waits_for_it(postgres_server, monkeypatch):
    """The probe's short connect limit is no false verdict on a server that is back but slow to connect: a try waits
    four times the slowest connect the store has seen, and the calls before and after it the connect limit."""
    from foveal.store import database
    from tests.store_fixtures import FreezingProxy

    name = _database(postgres_server, "slow_probed")
    port = int(postgres_server.rsplit(":", 1)[1])
    monkeypatch.setattr(database, "COOL_DOWN_S", 0.5, raising=False)
    monkeypatch.setattr(database, "PROBE_CONNECT_S", 2, raising=False)
    with FreezingProxy(port, connect_delay_s=1.0) as proxy:  # a store seen connecting in 1 s: a try may wait 4 s
        store = Store(f"postgresql+psycopg://foveal@127.0.0.1:{proxy.port}/{name}")
        store.record("a", *scored(0))
    with pytest.raises(FovealError, match=r"store failed \(.*refused"):  # stopped
        store.record("b", *scored(1))
    with FreezingProxy(port, listen_port=proxy.port, connect_delay_s=3.0):  # back, slower than PROBE_CONNECT_S
        time.sleep(0.6)
        start = time.monotonic()
        store.record("b", *scored(1))
        assert time.monotonic() - start > 3
        store.engine.dispose()  # a new connection for the next call, which is no try: it waits the connect limit
        store.record("c", *scored(2))
        assert store.counts()["predictions"] == 3
        store.close()


def test_a_write_the_server_refuses_does_not_make_the_store_pass_for_down(postgres_server):
    """Only the want of a server cools a store down: a refusal (here a read-only database) is the server's answer."""
    import psycopg

    name = _database(postgres_server, "read_only_for_a_while")
    admin = postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres"
    with Store(f"{postgres_server}/{name}") as store:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        store.engine.dispose()  # new sessions take the setting
        for _ in range(2):
            with pytest.raises(FovealError, match="read-only transaction"):
                store.record("a", *scored(0))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = off")
        store.engine.dispose()
        store.record("a", *scored(0))


def test_an_sqlite_store_another_process_holds_is_waited_for_then_named_in_one_line(tmp_path, monkeypatch):
    """A write transaction another process kept open was waited for (the busy timeout), then told as "cannot open
    the SQLite file ... check that it is a foveal store", or to check "that the server is up"."""
    from foveal.store import database

    monkeypatch.setattr(database, "BUSY_TIMEOUT_S", 1)
    path = tmp_path / "held.db"
    opened = Store(str(path))
    code = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(30)")
    expected = (f"database sqlite:///{path}: another process held the store's write lock for over 1 s (database is "
                "locked); nothing of this step was kept: let it finish (or stop it), then rerun")
    with subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline() == "held\n"
            for step in (lambda: Store(str(path)), opened.check_writable, lambda: opened.record("a", *scored(1))):
                start = time.monotonic()
                with pytest.raises(FovealError) as caught:
                    step()
                assert 1 <= time.monotonic() - start < 10 and str(caught.value) == expected
        finally:
            holder.kill()
    opened.record("a", *scored(1))
    opened.close()


def test_record_stores_provenance_elements_and_creative_scores(store_url):
    scores, provenance = scored(1)
    with Store(store_url) as store:
        pid = store.record("spring-a", scores, provenance, vertical="retail", tags=["spring", "sale"])
        store.record("spring-a", scores, provenance, tags=["q2"])
        assert store.counts() == {"creatives": 1, "predictions": 2, "prediction_elements": 6,
                                  "prediction_scores": 10, "outcomes": 0}
        with store.engine.begin() as conn:
            row = conn.execute(sa.select(s.predictions).where(s.predictions.c.prediction_id == pid)).one()
            elements = conn.execute(sa.select(s.prediction_elements).where(
                s.prediction_elements.c.prediction_id == pid).order_by(s.prediction_elements.c.position)).all()
        assert (row.model, row.graph_sha256, row.precision, row.foveal_version) == (
            "test-model", provenance["graph_sha256"], "fp32", "0.1.0")
        assert [e.name for e in elements] == ["cta", "title", "logo"]
        assert elements[0].share == pytest.approx(scores.elements[0].share)
        assert elements[1].lift == pytest.approx(scores.elements[1].lift)
        latest = store.latest_predictions()
        assert len(latest) == 1 and latest[0]["vertical"] == "retail"
        assert sorted(latest[0]["tags"]) == ["q2", "sale", "spring"]
        assert latest[0]["scores"]["focus"] == pytest.approx(scores.focus)
        assert latest[0]["scores"]["cta_share"] == pytest.approx(scores.elements[0].share)


def test_record_refuses_another_image_under_the_same_id(store_url):
    with Store(store_url) as store:
        store.record("a", *scored(1))
        with pytest.raises(InputError, match="another image"):
            store.record("a", *scored(2))
        assert store.counts()["predictions"] == 1


OUTCOMES = ("creative_id,date,impressions,clicks,conversions,spend,source\n"
            "a,2024-03-01,1000,12,1,3.5,meta\n"
            "a,2024-03-02,900,8,,2.0,meta\n"
            "b,2024-03-01,500,5,0,,google\n"
            "a,2024-03-01,100,1,0,,google\n")


def test_import_is_idempotent_and_keyed_by_creative_date_source(store_url, tmp_path):
    path = _write(tmp_path / "o.csv", OUTCOMES)
    with _store_with(store_url) as store:
        first = store.import_outcomes(path)
        assert (first.inserted, first.updated, first.unchanged) == (4, 0, 0)
        again = store.import_outcomes(path)
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
        assert store.counts()["outcomes"] == 4
        fixed = _write(tmp_path / "fixed.csv", OUTCOMES.replace("900,8", "950,9"))
        assert store.import_outcomes(fixed).updated == 1
        rows = store.outcome_rows()
    assert ("a", date(2024, 3, 1), 1100, 13, 1) in rows  # two sources on one day add up
    assert ("a", date(2024, 3, 2), 950, 9, None) in rows


def test_a_day_with_a_source_of_unknown_conversions_has_unknown_conversions(store_url, tmp_path):
    # SQL's sum() skips NULLs: meta's 1 conversion alone would pass for the day's total over both sources' clicks
    path = _write(tmp_path / "o.csv", "creative_id,date,impressions,clicks,conversions,source\n"
                  "a,2024-03-01,1000,12,1,meta\na,2024-03-01,800,10,,google\na,2024-03-02,500,5,2,meta\n")
    with _store_with(store_url) as store:
        store.import_outcomes(path)
        assert store.outcome_rows() == [("a", date(2024, 3, 1), 1800, 22, None), ("a", date(2024, 3, 2), 500, 5, 2)]


def test_import_parquet_with_column_mapping(store_url, tmp_path):
    table = pa.table({"Ad": ["a", "b"], "Day": [date(2024, 3, 1), date(2024, 3, 2)], "Impr": [100, 200],
                      "Clicks": [3, 4]})
    pq.write_table(table, tmp_path / "o.parquet")
    with _store_with(store_url) as store:
        summary = store.import_outcomes(tmp_path / "o.parquet", {"Ad": "creative_id", "Day": "date",
                                                                   "Impr": "impressions", "Clicks": "clicks"})
        assert summary.inserted == 2
        assert ("b", date(2024, 3, 2), 200, 4, None) in store.outcome_rows()


BAD_FILES = {
    "negative": ("creative_id,date,impressions,clicks\na,2024-03-01,100,1\nb,2024-03-01,-5,0\n",
                 r"line 3: impressions '-5' is negative"),
    "clicks_over_impressions": ("creative_id,date,impressions,clicks\na,2024-03-01,10,11\n",
                                r"line 2: clicks 11 > impressions 10"),
    "unknown_creative": ("creative_id,date,impressions,clicks\na,2024-03-01,10,1\nzz,2024-03-01,10,1\n",
                         r"line 3: unknown creative_id 'zz'"),
    "bad_date": ("creative_id,date,impressions,clicks\na,2024-02-30,10,1\n",
                 r"line 2: date '2024-02-30' is not a date"),
    "not_whole": ("creative_id,date,impressions,clicks\na,2024-03-01,10.5,1\n", r"line 2: impressions '10.5' is not "
                  "a whole number"),
    "not_number": ("creative_id,date,impressions,clicks\na,2024-03-01,ten,1\n", r"line 2: impressions 'ten' is not "
                   "a number"),
    # date.fromisoformat takes these too (Python 3.11); the docs promise YYYY-MM-DD
    "compact_date": ("creative_id,date,impressions,clicks\na,20240301,10,1\n",
                     r"line 2: date '20240301' is not a date \(YYYY-MM-DD\)"),
    "week_date": ("creative_id,date,impressions,clicks\na,2024-W09-5,10,1\n",
                  r"line 2: date '2024-W09-5' is not a date \(YYYY-MM-DD\)"),
    # int() and float() take Python literals and any script's digits; no ad server writes these
    "python_number_forms": ("creative_id,date,impressions,clicks,conversions,spend\na,2024-03-01,1_000,1,,\n"
                            "a,2024-03-02,\u0661\u0662,1,,\na,2024-03-03,12\u00a0,1,,\na,2024-03-04,12,1,\uff11,\n"
                            "a,2024-03-05,12,1,,1_0.5\na,2024-03-06,12,1,,\u0661.5\n",
                            r"line 2: impressions '1_000' is not a number.*line 3: impressions '\u0661\u0662' is "
                            r"not a number.*line 4: impressions '12\\xa0' is not a number.*line 5: conversions "
                            r"'\uff11' is not a number.*line 6: spend '1_0.5' is not a number.*line 7: spend "
                            r"'\u0661.5' is not a number"),
    "missing_column": ("creative_id,date,clicks\na,2024-03-01,1\n", r"no column for impressions"),
    "duplicate_key": ("creative_id,date,impressions,clicks\na,2024-03-01,10,1\na,2024-03-01,12,1\n",
                      r"line 3: repeats line 2"),
    "ragged": ("creative_id,date,impressions,clicks\na,2024-03-01,10\n", r"line 2: 3 cells, the header has 4"),
    "empty": ("", r"empty file"),
    "semicolons": ("creative_id;date;impressions;clicks\na;2024-03-01;10;1\n",
                   r"looks separated by semicolons; foveal reads comma-separated CSV: export the file with commas"),
    "tabs": ("creative_id\tdate\timpressions\tclicks\na\t2024-03-01\t10\t1\n",
             r"looks separated by tabs; foveal reads comma-separated CSV: export the file with commas"),
    "header_only": ("creative_id,date,impressions,clicks\n", r"no data rows"),
    "negative_spend": ("creative_id,date,impressions,clicks,spend\na,2024-03-01,10,1,-2\n",
                       r"line 2: spend '-2' must be"),
    "conversions_over_clicks": ("creative_id,date,impressions,clicks,conversions\na,2024-03-01,10,1,50\n",
                                r"line 2: conversions 50 > clicks 1"),
    "over_64_bits": ("creative_id,date,impressions,clicks\na,2024-03-01,1e30,10\na,2024-03-02,99999999999999999999,1\n"
                     "a,2024-03-03,9223372036854775808,1\n",
                     r"line 2: impressions '1e30' is above 9223372036854775807 \(2\^63-1\).*line 3: impressions "
                     r"'99999999999999999999' is above.*line 4: impressions '9223372036854775808' is above"),
    "nearly_whole": ("creative_id,date,impressions,clicks\na,2024-03-01,10,1.0000000000000001\na,2024-03-02,10,1e-400\n"
                     "a,2024-03-03,12345678901234567891e-1,0\na,2024-03-04,1e99999999999999999999,0\n"
                     "a,2024-03-05,10,1e-99999999999999999999\n",  # a float read the first three as whole; the
                     # last two are beyond Decimal's exponents
                     r"line 2: clicks '1.0000000000000001' is not a whole number.*line 3: clicks '1e-400' is not a "
                     r"whole number.*line 4: impressions '12345678901234567891e-1' is not a whole number.*line 5: "
                     r"impressions '1e99999999999999999999' is above .*line 6: clicks '1e-99999999999999999999' "
                     r"is not"),
    "unstorable_labels": ("creative_id,date,impressions,clicks,source\na,2024-03-01,10,1," + "S" * 201 + "\n"
                          "a,2024-03-02,10,1,a\x01b\na\x00,2024-03-03,10,1,\n"  # PostgreSQL: a store error, no line
                          "a,2024-03-04,10,1,a\x9b2Jb\na\x7f,2024-03-05,10,1,\n",  # C1 CSI and DEL were stored
                          r"line 2: source 'S{40}' is not 1-200 printable characters.*line 3: source 'a\\x01b' is "
                          r"not 1-200.*line 4: creative_id 'a\\x00' is not 1-200 printable characters.*line 5: source "
                          r"'a\\x9b2Jb' is not 1-200.*line 6: creative_id 'a\\x7f' is not 1-200"),
    "future_date": ("creative_id,date,impressions,clicks\na,2024-03-01,10,1\na,2204-02-29,10,1\n",
                    r"line 3: date 2204-02-29 is in the future; outcomes are of days already run"),
    "field_too_long": ("creative_id,date,impressions,clicks\na,2024-03-01,10," + "1" * 140_000 + "\n",
                       r"line 2: not a valid CSV row \(field larger than field limit.*check that every quoted field "
                       r"is closed"),
    "open_quote": ('creative_id,date,impressions,clicks\nb,2024-03-01,10,1\na,2024-03-01,10,"1\n'
                   + "b,2024-03-02,10,1\n" * 20_000, r"line 3: not a valid CSV row"),  # where the quote opens
    "quoted_line_breaks": ('creative_id,date,impressions,clicks\n"a\nb",2024-03-01,10,1\n"a",2024-03-01,"1\n0",1\n'
                           "a,2024-03-01,5,6\n", r"line 2: creative_id 'a\\nb' is not 1-200 printable characters; line "
                           r"4: impressions '1\\n0' is not a number; line 6: clicks 6 > impressions 5"),  # a row's
    # line is its first
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_outcome_files_are_rejected_whole_with_line_numbers(name, tmp_path):
    text, message = BAD_FILES[name]
    path = _write(tmp_path / f"{name}.csv", text)
    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store:
        with pytest.raises(InputError, match=message):
            store.import_outcomes(path)
        assert store.counts()["outcomes"] == 0  # nothing from a bad file, not even its good rows


def test_a_wide_header_is_named_in_a_bounded_message(tmp_path):
    """An outcomes file without the required columns was refused with every column name it had: 50,000 columns
    made a 5.5 MB line on stderr (and counting repeated names took 20 s)."""
    wide = _write(tmp_path / "wide.csv", ",".join(f"c{i}" for i in range(5000)) + "\n")
    with pytest.raises(InputError) as info:
        read_outcomes(wide, {})
    assert str(info.value).count("c4") < 20 and "c11 and 4,988 more" in str(info.value), str(info.value)[:300]
    mapped = _write(tmp_path / "mapped.csv", ",".join("x" * 60 + str(i) for i in range(100)) + "\n")
    with pytest.raises(InputError, match=r"\(it has: x{40}…, x{40}…, .* and 88 more\)$"):
        read_outcomes(mapped, {"Ad ID": "creative_id"})


def test_counts_and_dates_in_the_documented_forms_are_read(tmp_path):
    path = _write(tmp_path / "forms.csv", "creative_id,date,impressions,clicks,spend\n"
                  "a,2024-03-01,1200,3,1.5\na, 2024-03-02 , 1200 ,3, 2 \na,2024-03-03,1200.0,3,1e1\n"
                  "a,2024-03-04,1.2e3,3,.5\na,2024-03-05,9007199254740993.0,3,\n"
                  "a,2024-03-06,10,0e21,\na,2024-03-07,10,0e99999999999999999999,\n")  # zeros, whatever exponent
    rows, errors = read_outcomes(path, {})
    assert not errors
    assert [(r["date"], r["impressions"], r["spend"]) for r in rows] == [
        (date(2024, 3, 1), 1200, 1.5), (date(2024, 3, 2), 1200, 2.0), (date(2024, 3, 3), 1200, 10.0),
        (date(2024, 3, 4), 1200, 0.5), (date(2024, 3, 5), 9007199254740993, None),  # exact: not through a float
        (date(2024, 3, 6), 10, None), (date(2024, 3, 7), 10, None)]
    assert [r["clicks"] for r in rows[-2:]] == [0, 0]


def test_bad_file_rolls_back_on_postgres_too(store_url, tmp_path):
    path = _write(tmp_path / "mixed.csv", "creative_id,date,impressions,clicks\na,2024-03-01,10,1\n"
                  "b,2024-03-01,10,1\nzz,2024-03-02,5,1\n")
    with _store_with(store_url) as store:
        with pytest.raises(InputError, match="line 4: unknown creative_id 'zz'"):
            store.import_outcomes(path)
        assert store.counts()["outcomes"] == 0


def test_all_errors_are_listed_in_line_order(tmp_path):
    path = _write(tmp_path / "many.csv", "creative_id,date,impressions,clicks\n"
                  + "".join(f"a,2024-03-{d:02d},10,20\n" for d in range(1, 13)))
    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store, pytest.raises(InputError) as info:
        store.import_outcomes(path)
    message = str(info.value)
    assert "12 invalid row(s)" in message and "line 2:" in message and "and 4 more" in message
    assert "\n" not in message


def test_a_parquet_file_that_repeats_a_column_name_is_refused_by_name(tmp_path):
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array([date(2024, 3, 1)]), pa.array([100]), pa.array([1]),
                                  pa.array([50])], names=["creative_id", "date", "impressions", "clicks", "clicks"])
    pq.write_table(table, tmp_path / "twice.parquet")
    with pytest.raises(InputError, match=r"twice.parquet: the file repeats a column name \(clicks\); give each "
                                         r"column its own name$"):
        read_outcomes(tmp_path / "twice.parquet", {})


def test_bad_parquet_row_numbers_and_damaged_file(tmp_path):
    pq.write_table(pa.table({"creative_id": ["a", "a"], "date": ["2024-03-01", "x"], "impressions": [1, 2],
                             "clicks": [0, 1]}), tmp_path / "o.parquet")
    _write(tmp_path / "broken.parquet", "not parquet")
    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store:
        with pytest.raises(InputError, match="row 2: date 'x'"):
            store.import_outcomes(tmp_path / "o.parquet")
        with pytest.raises(InputError, match="not a readable Parquet file"):
            store.import_outcomes(tmp_path / "broken.parquet")
        with pytest.raises(InputError, match="must be a .csv or .parquet"):
            store.import_outcomes(_write(tmp_path / "o.txt", "x"))


@pytest.mark.parametrize("dates, message", [
    (pa.array([3_000_000], pa.int32()).cast(pa.date32()), r"row 1: date cannot be read as a Python value \(date32"),
    (pa.array([2**62], pa.int64()).cast(pa.timestamp("us")), r"row 1: date cannot be read as a Python value"),
    (pa.array([1_772_582_400_000_000], pa.int64()).cast(pa.timestamp("us", tz="Mars/Olympus")),
     r"row 1: date cannot be read as a Python value \(timestamp\[us, tz=Mars/Olympus\]"),
    # a Berlin midnight stored as its UTC instant, 23:00 the day before: it was taken as that day
    (pa.array([1_772_578_800_000_000], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
     r"row 1: date 2026-03-03 23:00:00\+00:00 has a time of day; outcomes are daily"),
    (pa.array([1_772_667_000_000_000], pa.int64()).cast(pa.timestamp("us")), r"row 1: date 2026-03-04 23:30:00 has"),
])
def test_parquet_dates_python_cannot_hold_or_with_a_time_of_day_are_refused_by_row(tmp_path, dates, message):
    """A day past 9999, an unknown time zone: 'internal error: OverflowError'. A time of day was dropped without a
    word, so a local day stored as a UTC instant fell on the day before."""
    table = pa.table({"creative_id": ["a"], "date": dates, "impressions": [1000], "clicks": [10]})
    pq.write_table(table, tmp_path / "o.parquet")
    rows, errors = read_outcomes(tmp_path / "o.parquet", {})
    assert rows == [] and len(errors) == 1 and re.search(message, errors[0]), errors


def test_parquet_timestamps_at_midnight_are_their_day_in_their_own_zone(tmp_path):
    days = [pa.array([date(2026, 3, 4)], pa.date32()).cast(pa.timestamp("us")),
            pa.array([1_772_578_800_000_000], pa.int64()).cast(pa.timestamp("us", tz="Europe/Berlin")),
            pa.array([1_772_600_400_000_000], pa.int64()).cast(pa.timestamp("us", tz="America/New_York"))]
    for i, day in enumerate(days):
        pq.write_table(pa.table({"creative_id": ["a"], "date": day, "impressions": [1000], "clicks": [10]}),
                       tmp_path / f"o{i}.parquet")
        rows, errors = read_outcomes(tmp_path / f"o{i}.parquet", {})
        assert errors == [] and [r["date"] for r in rows] == [date(2026, 3, 4)], (day, errors)


def test_a_store_whose_file_name_is_not_utf8_opens_read_only(tmp_path):
    """calibrate's read-only open quoted the path as text: 'internal error: UnicodeEncodeError' for x\\xff.db."""
    path = os.fsdecode(os.fsencode(str(tmp_path)) + b"/x\xff.db")
    _store_with(f"sqlite:///{path}").close()
    with Store(f"sqlite:///{path}", read_only=True) as store:
        assert len(store.latest_predictions()) == 3


def test_a_scored_at_without_a_time_zone_is_refused_and_aware_ones_are_stored_as_the_same_instant(tmp_path):
    """SQLite kept the wall time alone: 01:00+02:00 and 01:00-05:30, 7.5 hours apart, were stored alike; a naive
    time was read by PostgreSQL in its session's zone and by SQLite as it stood."""
    from datetime import datetime, timedelta, timezone

    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store:
        with pytest.raises(InputError, match="has no time zone"):
            store.record("c0", *scored(0), scored_at=datetime(2026, 3, 4, 1, 0))
        store.record("c0", *scored(0), scored_at=datetime(2026, 3, 4, 1, 0, tzinfo=timezone(timedelta(hours=2))))
        with store.engine.begin() as conn:
            stored = conn.execute(sa.select(s.predictions.c.scored_at)
                                  .order_by(s.predictions.c.prediction_id.desc()).limit(1)).scalar_one()
    assert stored.replace(tzinfo=stored.tzinfo or timezone.utc) == datetime(2026, 3, 3, 23, 0, tzinfo=timezone.utc)


def test_counts_up_to_64_bits_are_imported_exactly_and_summed_across_sources(tmp_path):
    biggest = 2**63 - 1
    path = _write(tmp_path / "big.csv", "creative_id,date,impressions,clicks,source\n"
                  f"a,2024-03-01,{biggest},9007199254740993,meta\na,2024-03-01,{biggest},1,google\n")
    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store:
        assert store.import_outcomes(path).inserted == 2
        with store.engine.begin() as conn:
            stored = conn.execute(sa.select(s.outcomes.c.impressions, s.outcomes.c.clicks)
                                  .order_by(s.outcomes.c.source)).all()
        assert [tuple(r) for r in stored] == [(biggest, 1), (biggest, 9007199254740993)]  # not rounded via float
        # the day's sum passes 64 bits: SQLite's integer sum() would fail
        assert store.outcome_rows() == [("a", date(2024, 3, 1), pytest.approx(2.0 * biggest), pytest.approx(
            9007199254740994), None)]


def test_parquet_counts_over_64_bits_and_boolean_counts_are_rejected(tmp_path):
    pq.write_table(pa.table({"creative_id": ["a", "b"], "date": [date(2024, 3, 1)] * 2,
                             "impressions": pa.array([2**64 - 1, 10], pa.uint64()), "clicks": [1, 1],
                             "conversions": [None, True]}), tmp_path / "o.parquet")
    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store:
        with pytest.raises(InputError, match=r"row 1: impressions 18446744073709551615 is above 9223372036854775807"
                                             r".*row 2: conversions True is a boolean, not a count"):
            store.import_outcomes(tmp_path / "o.parquet")
        assert store.counts()["outcomes"] == 0


def test_unnamed_columns_of_a_spreadsheet_export_are_ignored_like_other_extra_columns(tmp_path):
    # Excel and Sheets export the empty columns right of the data as ",,": several columns named ""
    path = _write(tmp_path / "export.csv", "creative_id,date,impressions,clicks,,,notes\n"
                  "a,2024-03-01,10,1,,,x\nb,2024-03-01,20,2,,,\n")
    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store:
        assert store.import_outcomes(path).inserted == 2
    with pytest.raises(InputError, match=r"the file repeats a column name \(clicks\)"):
        read_outcomes(_write(tmp_path / "twice.csv", "creative_id,date,impressions,clicks,clicks\n"), {})


def test_an_outcomes_file_not_in_utf8_says_to_save_it_as_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("creative_id,date,impressions,clicks\ncafé,2024-03-01,10,1\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.csv: line 2 is not UTF-8 text \(byte 0xe9\); save the file as "
                                         r"CSV UTF-8 and import again$"):
        read_outcomes(path, {})
    path.write_bytes("creative_id,date,impressions,clicks\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"line 1 is not UTF-8 text \(byte 0xff\)"):
        read_outcomes(path, {})
    path.write_bytes(b"\xef\xbb\xbfcreative_id,date,impressions,clicks\na,2024-03-01,10,1\n\x93b\x94,2024-03-01,1,1\n")
    with pytest.raises(InputError, match=r"line 3 is not UTF-8 text \(byte 0x93\)"):  # a BOM, then Windows-1252
        read_outcomes(path, {})


def test_a_mapped_column_is_read_instead_of_one_that_bears_the_fields_name(tmp_path):
    # the export has both; --map says which one is meant, whatever their order
    for header, row in (("creative_id,date,impressions,Clicks,clicks", "a,2024-03-01,100,7,1"),
                        ("clicks,creative_id,date,impressions,Clicks", "1,a,2024-03-01,100,7")):
        rows, errors = read_outcomes(_write(tmp_path / "both.csv", f"{header}\n{row}\n"), {"Clicks": "clicks"})
        assert not errors and rows[0]["clicks"] == 7
    rows, errors = read_outcomes(_write(tmp_path / "ids.csv", "Ad,creative_id,date,impressions,clicks\n"
                                        "a,internal-9,2024-03-01,100,7\n"), {"Ad": "creative_id"})
    assert not errors and rows[0]["creative_id"] == "a"


def test_outcomes_file_that_is_a_pipe_or_folder_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "folder.csv").mkdir()
    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store:
        for name in ("pipe.csv", "folder.csv"):
            with pytest.raises(InputError, match="not a regular file"):
                store.import_outcomes(tmp_path / name)  # must not block reading the pipe
        with pytest.raises(InputError, match="file not found"):
            store.import_outcomes(tmp_path / "missing.csv")


def test_outcomes_cli(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    _store_with(url).close()
    good = _write(tmp_path / "o.csv", "Ad,date,impressions,clicks\na,2024-03-01,10,1\n")
    assert main(["outcomes", "import", str(good), "--db", url, "--map", "Ad=creative_id"]) == 0
    assert "1 new" in capsys.readouterr().err
    assert main(["outcomes", "import", str(good), "--db", url, "--map", "Ad=creative_id"]) == 0
    assert "1 unchanged" in capsys.readouterr().err
    bad = _write(tmp_path / "bad.csv", "creative_id,date,impressions,clicks\na,2024-03-05,1,2\n")
    assert main(["outcomes", "import", str(bad), "--db", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("foveal: error:") and "line 2: clicks 2 > impressions 1" in err
    assert err.count("\n") == 1
    # a bad file stops the import: the files after it are named, else a rerun of the bad one alone would miss them
    later = _write(tmp_path / "later.csv", "creative_id,date,impressions,clicks\na,2024-03-06,10,1\n")
    assert main(["outcomes", "import", str(bad), str(later), "--db", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith(f"the files after it were not imported either: {later}")
    with pytest.raises(SystemExit) as stop:  # wrong on its face: a usage error
        main(["outcomes", "import", str(good), "--db", url, "--map", "Ad=nonsense"])
    assert stop.value.code == 2 and "argument --map: 'Ad=nonsense': expected COLUMN=FIELD" in \
        capsys.readouterr().err
    assert main(["outcomes", "import", str(good), "--db", url, "--map", "Ad=creative_id", "--map", "Ad=date"]) == 1
    assert "column 'Ad' is mapped twice (to 'creative_id' and 'date')" in capsys.readouterr().err


def test_score_cli_records_one_creative_and_a_folder(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'score.db'}"
    examples = ROOT / "examples"
    assert main(["score", str(examples / "creative.png"), "--elements", str(examples / "creative.json"), "-o",
                 str(tmp_path / "one"), "--no-report", "-q", "--db", url, "--creative-id", "hero", "--vertical",
                 "travel", "--tag", "summer", "--tag", "v2"]) == 0
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("creative", "creative_b"):
        for suffix in (".png", ".json"):
            (folder / f"{name}{suffix}").write_bytes((examples / f"{name}{suffix}").read_bytes())
    assert main(["score", str(folder), "-o", str(tmp_path / "many"), "-q", "--no-report", "--db", url,
                 "--vertical", "retail"]) == 0
    with Store(url) as store:
        latest = {p["creative_id"]: p for p in store.latest_predictions()}
    assert set(latest) == {"hero", "creative", "creative_b"}
    assert latest["hero"]["vertical"] == "travel" and sorted(latest["hero"]["tags"]) == ["summer", "v2"]
    assert latest["creative"]["vertical"] == "retail"
    assert len(latest["hero"]["graph_sha256"]) == 64 and latest["hero"]["precision"] in ("int8", "fp32", "fp16")
    # another image under a used id is refused; store options without --db too
    capsys.readouterr()
    assert main(["score", str(examples / "creative_b.png"), "--elements", str(examples / "creative_b.json"), "-o",
                 str(tmp_path / "two"), "-q", "--db", url, "--creative-id", "hero"]) == 1
    assert "another image" in capsys.readouterr().err
    assert not (tmp_path / "two").exists()  # refused by the store: no report that looks like a success
    (folder / "hero.png").write_bytes((examples / "creative_b.png").read_bytes())  # not the image 'hero' has
    (folder / "hero.json").write_bytes((examples / "creative_b.json").read_bytes())
    assert main(["score", str(folder), "-o", str(tmp_path / "many2"), "-q", "--db", url]) == 1
    assert sorted(p.name for p in (tmp_path / "many2" / "reports").iterdir()) == ["creative", "creative_b"]
    # a vertical or tag the store cannot hold: a usage error, before anything is scored
    capsys.readouterr()
    for flags in (["--vertical", "x" * 201], ["--tag", " "], ["--tag", "a\x9b2J"]):
        with pytest.raises(SystemExit) as stop:
            main(["score", str(folder), "-o", str(tmp_path / "many3"), "-q", "--db", url, *flags])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and "must be 1-200 printable characters" in err, err
        assert not (tmp_path / "many3").exists()
    assert main(["score", str(examples / "creative.png"), "-o", str(tmp_path / "three"), "--vertical", "x"]) == 1
    assert "add --db URL" in capsys.readouterr().err


def test_two_processes_importing_and_scoring_at_once_lose_no_row(store_url, tmp_path):
    """An importer (the CLI, 4 files) and a recorder (one transaction per creative, until the import is over) race
    on one store; every row of both must be there, and their transactions must have interleaved."""
    ids = [f"c{i}" for i in range(30)]
    _store_with(store_url, ids).close()
    files = []
    for f in range(4):
        lines = [f"{cid},2024-{1 + f:02d}-{d:02d},{1000 + d},{d}" for cid in ids for d in range(1, 11)]
        files.append(str(_write(tmp_path / f"o{f}.csv", "creative_id,date,impressions,clicks\n" + "\n".join(lines))))
    stop, started = tmp_path / "stop", tmp_path / "started"
    recorder = subprocess.Popen(
        [sys.executable, "-c", "from tests.store_fixtures import record_until; "
         f"record_until({store_url!r}, {str(stop)!r}, at_least=10, at_most=2000, limit_s=120, "
         f"started_file={str(started)!r})"],
        env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The import starts once the recorder is writing (its interpreter start-up can outlast a whole import), and
    # the recorder goes on until the import is over: their transactions interleave by construction.
    deadline = time.monotonic() + 120
    while not started.exists() and recorder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the recorder never committed a creative: " + (recorder.stderr.read() if
                                                                            recorder.poll() is not None else "")
    importer = subprocess.run([*FOVEAL, "outcomes", "import", *files, "--db", store_url, "-q"], env=ENV,
                              capture_output=True, text=True, timeout=180)
    stop.touch()
    out, err = recorder.communicate(timeout=180)
    assert importer.returncode == 0, importer.stderr
    assert recorder.returncode == 0, err
    recorded = int(out)
    with Store(store_url) as store:
        counts = store.counts()
        with store.engine.begin() as conn:
            imported = conn.execute(sa.select(sa.func.min(s.outcomes.c.imported_at),
                                              sa.func.max(s.outcomes.c.imported_at))).one()
            scored_at = conn.execute(sa.select(sa.func.min(s.predictions.c.scored_at),
                                               sa.func.max(s.predictions.c.scored_at)).where(
                s.predictions.c.creative_id.startswith("n"))).one()
    assert scored_at[0] < imported[1] and imported[0] < scored_at[1], "the two processes did not overlap"
    assert counts["outcomes"] == 4 * 30 * 10
    assert counts["creatives"] == 30 + recorded and counts["predictions"] == 30 + recorded
    assert counts["prediction_elements"] == 3 * (30 + recorded)
    assert counts["prediction_scores"] == 5 * (30 + recorded)


def test_two_imports_of_the_same_rows_in_opposite_orders_both_land(store_url, tmp_path):
    """Rows were written in file order, so two imports of the same keys in opposite orders locked them in opposite
    orders and PostgreSQL ended one as a deadlock (4 rounds of 4 in the report)."""
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"c{i:02d}" for i in range(20)]
    _store_with(store_url, ids).close()
    keys = [(cid, f"2024-{1 + d // 28:02d}-{1 + d % 28:02d}") for cid in ids for d in range(150)]
    for round_ in range(2):  # new keys, then the same keys changed: inserts, then updates
        forward = [f"{c},{d},{1000 + round_},{round_}" for c, d in keys]
        backward = [f"{c},{d},{2000 + round_},{round_}" for c, d in reversed(keys)]
        files = [_write(tmp_path / f"{name}{round_}.csv", "creative_id,date,impressions,clicks\n" + "\n".join(rows))
                 for name, rows in (("fwd", forward), ("rev", backward))]

        def load(path: Path):
            with Store(store_url) as store:
                return store.import_outcomes(path)

        with ThreadPoolExecutor(2) as pool:
            summaries = list(pool.map(load, files))  # both land: neither raises
        assert all(x.inserted + x.updated + x.unchanged == len(keys) for x in summaries)
        with Store(store_url) as store:
            assert store.counts()["outcomes"] == len(keys)


def test_migration_steps_run_in_order_once(store_url, monkeypatch):
    """A store at version 1 opened by a foveal that knows a version 2 gets step 2, once."""
    Store(store_url).close()
    calls = []

    def v2(conn):
        calls.append(1)
        conn.execute(sa.text("CREATE INDEX ix_outcomes_date ON outcomes (date)"))

    monkeypatch.setattr(s, "MIGRATIONS", (*s.MIGRATIONS, v2))
    monkeypatch.setattr(s, "SCHEMA_VERSION", 2)
    with Store(store_url) as store:
        assert store.schema_version() == 2
    Store(store_url).close()
    assert calls == [1]


def test_concurrent_first_opens_create_the_schema_once(store_url):
    """Four processes' worth of first opens at once (threads, separate engines) on a new database."""
    from concurrent.futures import ThreadPoolExecutor

    def open_one(_):
        with Store(store_url) as store:
            return store.schema_version()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_one, range(4))) == [SCHEMA_VERSION] * 4
    with Store(store_url) as store, store.engine.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.schema_versions)).scalar() == SCHEMA_VERSION


def test_connections_racing_to_switch_a_new_sqlite_file_to_wal_all_succeed(tmp_path):
    """SQLite answers "database is locked" at once, without its busy wait, to one of two connections switching a
    new file to WAL together (separate processes opening a new store); on the bare driver, eight connections on
    each of 30 new files hit that several times."""
    import sqlite3
    import threading

    from foveal.store.database import BUSY_TIMEOUT_S, _sqlite_connect

    failures = []
    for k in range(30):
        path = tmp_path / f"new{k}.db"
        barrier = threading.Barrier(8)

        def first_connect():
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
            try:
                barrier.wait(timeout=30)
                _sqlite_connect(conn, None, create=True)  # what every new store connection runs first
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            except sqlite3.OperationalError as exc:
                failures.append(str(exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=first_connect) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert failures == []


def test_the_same_new_creative_recorded_by_two_writers_at_once(store_url):
    from concurrent.futures import ThreadPoolExecutor

    Store(store_url).close()
    scores, provenance = scored(7)

    def record(i):
        with Store(store_url) as store:
            return store.record("shared", scores, provenance, vertical="retail", tags=["a", f"t{i}"])

    with ThreadPoolExecutor(4) as pool:
        assert len(set(pool.map(record, range(4)))) == 4
    with Store(store_url) as store:
        assert store.counts()["creatives"] == 1 and store.counts()["predictions"] == 4
        assert sorted(store.latest_predictions()[0]["tags"]) == ["a", "t0", "t1", "t2", "t3"]


def test_a_write_the_database_refuses_is_one_line_and_keeps_nothing(tmp_path):
    """A read-only store file, a lost server or a role without rights failed as 'internal error' with
    SQLAlchemy's statement and parameters dumped over several lines; it is one line, and the step is rolled back.
    (The store file is read-only to `foveal outcomes import`: as root, without root's override of permissions.)"""
    db = _read_only_store(tmp_path, 0o444, 0o755)
    outcomes = _write(tmp_path / "o.csv", OUTCOMES)
    try:
        run = subprocess.run(without_root_override([*FOVEAL, "outcomes", "import", str(outcomes), "--db",
                                                    f"sqlite:///{db}"]),
                             env=ENV, capture_output=True, text=True, timeout=120)
    finally:
        db.parent.chmod(0o755)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "the store failed (attempt to write a readonly database); nothing of this step was kept" in run.stderr
    with Store(f"sqlite:///{db}", read_only=True) as store:
        assert store.counts()["outcomes"] == 0


def test_a_foveal_schema_table_foveal_did_not_write_is_refused(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'v.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE foveal_schema (version TEXT)")
        conn.exec_driver_sql("INSERT INTO foveal_schema VALUES ('abc')")
    engine.dispose()
    with pytest.raises(FovealError, match="^the database's foveal_schema table holds 'abc', not a version number"):
        Store(f"sqlite:///{tmp_path / 'v.db'}")


def test_a_tag_given_as_one_string_or_an_id_that_is_no_text_is_refused(tmp_path):
    """tags="spring" was stored as six one-letter tags; record(5, ...) stored the creative id "5"."""
    import numpy as np

    from foveal import SaliencyMap
    from foveal.scoring import make_element, score_creative
    from foveal.store import Store

    prov = {"model": "m", "graph_sha256": "b" * 64, "image_sha256": "c" * 64, "precision": "fp32"}
    scores = score_creative(SaliencyMap(np.full((100, 200), 5e-5, np.float32), prov),
                            [make_element("cta", "cta", [0, 0, 20, 50], (100, 200))])
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    with pytest.raises(InputError, match=r"tags: expected a list of tags, got 'spring'; pass \['spring'\]"):
        store.record("c1", scores, prov, tags="spring")
    with pytest.raises(InputError, match="creative id 5: must be text"):
        store.record(5, scores, prov)
    store.record("c1", scores, prov, tags=["spring"])
    assert store.latest_predictions()[0]["tags"] == ["spring"]


def test_a_store_opens_from_a_path_object(tmp_path):
    """Store(Path("x.db")) died with "argument of type 'PosixPath' is not iterable", though Store("x.db") works."""
    from foveal.store import Store

    Store(tmp_path / "p.db")
    assert (tmp_path / "p.db").is_file()
    with pytest.raises(InputError, match="expected a database URL or a file path, got NoneType"):
        Store(None)


def test_a_refused_import_leaves_another_applications_database_as_it_was(tmp_path, capsys):
    """Opening switched the file to WAL (a lasting change, with -wal and -shm files beside it) before the check
    that refused it; a 0-byte file became a 4 KiB database."""
    import hashlib
    import sqlite3

    other, empty = tmp_path / "other.db", tmp_path / "empty.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x INTEGER)")
    empty.touch()
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    outcomes = _write(tmp_path / "o.csv", "creative_id,date,impressions,clicks\na,2024-03-01,10,1\n")
    for db in (other, empty):
        assert main(["outcomes", "import", str(outcomes), "--db", str(db)]) == 1
        assert "holds no foveal store" in capsys.readouterr().err
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before and empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "o.csv", "other.db"]
    with sqlite3.connect(other) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_a_store_refused_on_its_tables_leaves_the_file_as_it_was(tmp_path):
    """Store(create=True), as `foveal score --db` opens it, switched a database holding a table named like foveal's
    to WAL before refusing it: another application's file, changed (and -wal/-shm left beside it)."""
    import hashlib
    import sqlite3

    like = tmp_path / "like.db"
    with sqlite3.connect(like) as conn:
        conn.execute("CREATE TABLE creatives (creative_id TEXT PRIMARY KEY)")
    before = hashlib.sha256(like.read_bytes()).hexdigest()
    with pytest.raises(FovealError, match="tables named like foveal's but no foveal_schema table"):
        Store(str(like))
    assert hashlib.sha256(like.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["like.db"]


def test_a_mapping_dict_is_checked_as_the_cli_checks_its_map(tmp_path):
    """Two columns mapped to creative_id credited the row to the last one, silently."""
    path = _write(tmp_path / "two.csv", "A,B,date,impressions,clicks\na,b,2024-03-01,100,5\n")
    with _store_with(f"sqlite:///{tmp_path / 'f.db'}") as store:
        for mapping, message in [({"A": "creative_id", "B": "creative_id"}, "two columns map to 'creative_id'"),
                                 ({"A": "bogus"}, "each field one of creative_id"),
                                 ("A=creative_id", r"expected \{column: field\}")]:
            with pytest.raises(InputError, match=message):
                store.import_outcomes(path, mapping)
        assert store.counts()["outcomes"] == 0


@pytest.mark.parametrize("fmt", ["f" * 65, "a\x00b", "a\nb"])
def test_a_format_no_store_can_keep_is_refused_before_it_is_written(store_url, fmt):
    """A format over the column's 64 characters, or holding NUL, was stored by SQLite and refused by PostgreSQL
    as a failed store ("check that the server is up, then rerun")."""
    from dataclasses import replace

    scores, provenance = scored(1)
    with Store(store_url) as store:
        with pytest.raises(InputError, match="a store keeps format names of at most 64 printable characters"):
            store.record("a", replace(scores, format=fmt), provenance)
        assert store.counts()["predictions"] == 0


def test_a_long_format_name_is_scored_without_a_store_and_refused_with_one(tmp_path):
    """The store's column width is the store's rule, not scoring's: only a batch that records is held to it."""
    from foveal.batch.scorer import BatchOptions

    assert BatchOptions(format="f" * 80).format == "f" * 80
    with pytest.raises(InputError, match="a store keeps format names of at most 64"):
        BatchOptions(format="f" * 80, db=str(tmp_path / "s.db"))


def test_latest_predictions_refuses_a_graph_that_is_not_text(tmp_path):
    """latest_predictions(5) raised SQLAlchemy's bare TypeError from its autoescape."""
    from foveal.store import Store

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        for graph in (5, ["b"]):
            with pytest.raises(InputError, match="graph_sha256: expected the start of a graph's sha256"):
                store.latest_predictions(graph)
        assert store.latest_predictions("ab") == [] and store.latest_predictions() == []
    finally:
        store.close()


def test_provenance_values_that_are_not_text_are_the_callers_fault(tmp_path):
    """A list as graph_sha256 failed in SQLite's driver and was told as the store's failure ("check that the
    database may be written and the server is up"); a number was stored as the graph."""
    scores, provenance = scored(0)
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        for key, value in (("graph_sha256", ["x"]), ("graph_sha256", 5), ("image_sha256", b"ab")):
            with pytest.raises(InputError, match=f"^record: provenance {key} must be text, got"):
                store.record("a", scores, {**provenance, key: value})
        assert store.counts()["predictions"] == 0
