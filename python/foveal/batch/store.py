"""The batch's output folder: tables written exactly once per creative, resumable after any crash.

Layout of ``OUT``::

    scores.csv             one row per element (ELEMENT_COLUMNS), appended per commit
    elements/part-*.parquet  the same rows as Parquet
    creatives/part-*.parquet one row per creative (CREATIVE_COLUMNS)
    errors.parquet, errors.csv  creatives that failed in the last run (retried by the next one)
    scores.journal         ids of committed creatives, one JSON string a line
    scores.settings.json   model, graph, precision and scoring settings every row shares
    reports/<id>/, maps/<id>.npy  when asked

A commit writes the chunk's Parquet parts (each atomically), appends its CSV rows (fsynced), then appends its ids
to the journal (fsynced): the journal is the truth.  Opening the folder again drops whatever a crash left beyond
it (rows and parts of creatives not journaled, ``*.part`` temporaries, a cut journal line or CSV row), and every
journaled creative that is not whole and once in every table (a part or CSV line deleted or copied since), so every
creative ends up in every table exactly once.  A journal or part file foveal cannot have written, a full disk or a
read-only folder is an :class:`InputError` saying what to do.  One process at a time: a lock file refuses a second
writer.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import fnmatch
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

from ..errors import InputError
from ..fileio import (DISK_FULL, atomic_write, cannot_write, is_unicode, spreadsheet_cell, spreadsheet_text,
                      write_json, write_text)
from ..models import file_sha256
from .inputs import BatchItem
from .scorer import AUTO, BatchOptions, CreativeResult

CSV_NAME, JOURNAL_NAME, SETTINGS_NAME, LOCK_NAME = "scores.csv", "scores.journal", "scores.settings.json", ".lock"
ELEMENTS_DIR, CREATIVES_DIR, ERRORS_NAME = "elements", "creatives", "errors"
IDENTITY = ("model", "model_sha256", "graph_sha256", "precision")
ELEMENT_COLUMNS = ("creative_id", "image", "image_sha256", "format", "element", "kind", "x", "y", "w", "h",
                   "area_fraction", "share", "density", "lift", "rank", "percentile", "score", "passed",
                   "conversion_share", "background_share", "focus", "top10_share", *IDENTITY)
CREATIVE_COLUMNS = ("creative_id", "image", "image_sha256", "format", "height", "width", "elements",
                    "conversion_share", "other_elements_share", "background_share", "focus", "top10_share",
                    *IDENTITY)
ERROR_COLUMNS = ("creative_id", "image", "error", *IDENTITY)
CSV_HEADER = ELEMENT_COLUMNS
#: What to do about a damaged commit record: without it the tables are rebuilt by rescoring.
JOURNAL_REMEDY = "delete it to rescore this folder's creatives, or use a new output folder"


def _schemas():
    import pyarrow as pa

    s, f, i, b = pa.string(), pa.float64(), pa.int64(), pa.bool_()
    types = {"creative_id": s, "image": s, "image_sha256": s, "format": s, "element": s, "kind": s, "x": i, "y": i,
             "w": i, "h": i, "area_fraction": f, "share": f, "density": f, "lift": f, "rank": i, "percentile": f,
             "score": i, "passed": b, "conversion_share": f, "background_share": f, "focus": f, "top10_share": f,
             "height": i, "width": i, "elements": i, "other_elements_share": f, "error": s, "model": s,
             "model_sha256": s, "graph_sha256": s, "precision": s}
    return {name: pa.schema([(c, types[c]) for c in cols]) for name, cols in
            ((ELEMENTS_DIR, ELEMENT_COLUMNS), (CREATIVES_DIR, CREATIVE_COLUMNS), (ERRORS_NAME, ERROR_COLUMNS))}


def batch_settings(engine_identity: dict[str, Any], options: BatchOptions,
                   items: Sequence[BatchItem]) -> dict[str, Any]:
    """What every row of one output folder must share: a resumed run with other settings would mix numbers."""
    # Detected elements are other boxes than an element file's, and no row says which it holds. Recorded only when
    # detected, so that a folder written before this key existed still resumes.
    detected = {"elements": AUTO} if any(item.elements == AUTO for item in items) else {}
    # A resume records only the creatives left, so another store (or none) would hold a run with a gap, and other
    # tags would split one run's creatives. Recorded only with a store, so that a folder written without one (or
    # before this key existed) still resumes without one. The store is named by its database (an SQLite file's
    # full path, a PostgreSQL database's name), not by its URL: a rerun may reach one server another way (directly
    # instead of through a proxy that failed), and a URL may hold a password.
    recorded: dict[str, Any] = {}
    if options.db:
        from ..store.database import parse_url  # the store extra, needed by --db anyway

        url = parse_url(options.db)
        database = url.database or ""
        if url.get_backend_name() == "sqlite" and database and database != ":memory:":
            database = os.path.realpath(Path(database).expanduser())  # Path.resolve() raises on a loop of links
        recorded["store"] = {"database": f"{url.get_backend_name()}:{database}", "vertical": options.vertical,
                             "tags": list(options.tags)}
    return {**{k: engine_identity[k] for k in IDENTITY},
            "norms_sha256": None if options.norms is None else file_sha256(options.norms),
            "format": options.format, "pass_percentile": options.pass_percentile,
            # what each creative writes besides the tables: a resume skips done creatives, so it cannot add them
            "reports": options.reports, "html": options.html and options.reports, "maps": options.maps, **detected,
            **recorded}


def engine_identity(engine) -> dict[str, Any]:
    """model, model_sha256, graph_sha256 and precision of an :class:`~foveal.Engine`."""
    return {"model": engine.model.name, "model_sha256": engine.model.sha256, "graph_sha256": engine.graph_sha256,
            "precision": engine.precision}


class BatchStore:
    """Open (or resume) a batch output folder; :meth:`commit` chunks of results; :meth:`close` at the end.

    ``done`` holds the creative ids already committed by earlier runs.  Raises :class:`InputError` when the folder
    holds a run with other settings, foreign files, or is being written by another process.
    """

    def __init__(self, out: str | Path, settings: dict[str, Any]) -> None:
        self.out = Path(out)
        self.settings = settings
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder {self.out}: {exc.strerror or exc}") from None
        if not self.out.is_dir():
            raise InputError(f"{self.out}: not a folder")
        self._lock = _lock(self.out / LOCK_NAME)
        # by creative id: a batch where most images fail must not cost a scan of the failures per failure
        self._errors: dict[str, dict[str, Any]] = {}
        self.committed: set[str] = set()
        try:
            self._check_settings()
            _remove_temporaries(self.out)
            self.done = self._recover()
            self._next_part = 1 + max((_part_number(p) for d in (ELEMENTS_DIR, CREATIVES_DIR)
                                       for p in _part_files(self.out / d)), default=0)
            self._csv = (self.out / CSV_NAME).open("a", encoding="utf-8", newline="")
            self._journal = (self.out / JOURNAL_NAME).open("a", encoding="utf-8")
        except BaseException as exc:
            self._lock.close()
            if isinstance(exc, OSError):  # a read-only folder, a table replaced by a folder...
                raise _unusable(exc, self.out) from None
            raise

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Rows of the errors table: the creatives that failed in this run and were not committed since."""
        return list(self._errors.values())

    def __enter__(self) -> BatchStore:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            self.close()
        except InputError:
            if exc is None:
                raise
            # what stopped the batch is the error to report; closing failed after it, mostly for the same reason
            # (a full disk)

    def todo(self, items: Sequence[BatchItem]) -> list[BatchItem]:
        """The ``items`` this run is to score: those not committed yet.  Those of them that failed in the last run
        stay in :attr:`errors` until retried, so that a run stopped early (Ctrl-C, SIGTERM) still lists every
        failure it did not get to."""
        todo = [item for item in items if item.creative_id not in self.done]
        try:
            last = _read_part(self.out / f"{ERRORS_NAME}.parquet", ERRORS_NAME).to_pylist()
        except InputError:
            return todo  # none, or damaged: it only reported the last run, and is rewritten on closing
        last_by_id = {row["creative_id"]: row for row in last}
        for item in todo:
            if item.creative_id in last_by_id and item.creative_id not in self._errors:
                self._errors[item.creative_id] = last_by_id[item.creative_id]
        return todo

    def commit(self, results: Iterable[CreativeResult]) -> None:
        """Make ``results`` durable: successes into the tables and journal, failures into :attr:`errors`."""
        ok = []
        for r in results:
            if r.creative_id in self.done or r.creative_id in self.committed:
                continue  # a chunk retried by Ray after its first result arrived: keep the first
            if r.error is not None:
                self._errors.pop(r.creative_id, None)  # the latest failure, in the order failures came
                self._errors[r.creative_id] = {"creative_id": r.creative_id, "image": r.image, "error": r.error,
                                               **{k: self.settings[k] for k in IDENTITY}}
            else:
                ok.append(r)
        if not ok:
            return
        for r in ok:
            mixed = [k for k in IDENTITY if r.creative[k] != self.settings[k]]
            if mixed:
                raise InputError(f"{r.creative_id} was scored with another {', '.join(mixed)} than this batch's "
                                 f"({', '.join(f'{k}={self.settings[k]}' for k in mixed)}); refusing to mix graphs")
        elements = [row for r in ok for row in r.elements]
        part = f"part-{self._next_part:06d}.parquet"
        self._next_part += 1
        _write_parquet(self.out / ELEMENTS_DIR / part, ELEMENTS_DIR, elements)
        _write_parquet(self.out / CREATIVES_DIR / part, CREATIVES_DIR, [r.creative for r in ok])
        _append_durably(self._csv, _csv_text([_csv_cells(row) for row in elements]))
        _append_durably(self._journal, "".join(json.dumps(r.creative_id) + "\n" for r in ok))
        self.committed.update(r.creative_id for r in ok)
        for r in ok:
            self._errors.pop(r.creative_id, None)

    def close(self) -> None:
        """Write the errors table (``errors.parquet`` and ``errors.csv``) and release the folder."""
        if self._lock.closed:
            return
        try:
            # Closing flushes what a failed append (a full disk) left buffered: safe, since rows beyond the journal
            # are dropped on reopening and journal lines only ever follow their whole rows.
            failed = [exc for exc in (_close(self._csv), _close(self._journal)) if exc is not None]
            if failed:
                raise _unusable(failed[0], self.out)
            _write_parquet(self.out / f"{ERRORS_NAME}.parquet", ERRORS_NAME, self.errors)
            rows = ([spreadsheet_cell(e[c]) for c in ERROR_COLUMNS] for e in self.errors)
            write_text(self.out / f"{ERRORS_NAME}.csv", _csv_text([ERROR_COLUMNS, *rows]))
        finally:
            self._lock.close()

    def _check_settings(self) -> None:
        saved = self.out / SETTINGS_NAME
        if not saved.exists():
            if (self.out / JOURNAL_NAME).exists() or (self.out / CSV_NAME).exists():
                raise InputError(f"{self.out} holds batch files but no {SETTINGS_NAME}; use a new output folder")
            write_json(saved, self.settings)
            return
        try:
            before = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{saved}: unreadable ({exc}); use a new output folder") from None
        if not isinstance(before, dict):
            raise InputError(f"{saved}: not a settings object; use a new output folder")
        changed = sorted(k for k in self.settings.keys() | before.keys() if before.get(k) != self.settings.get(k))
        if changed and not _read_journal(self.out / JOURNAL_NAME)[1]:
            # nothing committed (stopped before its first commit, or every creative failed): no rows to mix, and
            # what that run left beyond the journal is dropped by the recovery
            write_json(saved, self.settings)
        elif changed:
            raise InputError(f"{self.out} holds a run with other settings ({', '.join(changed)} differ): resuming "
                             "would mix incomparable rows; use a new output folder, or the same settings")

    def _recover(self) -> set[str]:
        """Committed ids: journaled, and whole and once in every table; everything else is dropped from every
        table."""
        for d in (ELEMENTS_DIR, CREATIVES_DIR):  # read as empty tables, they would drop every committed row
            if (self.out / d).exists() and not (self.out / d).is_dir():
                raise InputError(f"cannot use {self.out / d}: not a folder; {self.out} must be a batch output "
                                 "folder: move that file away, or use another output folder")
        journal = self.out / JOURNAL_NAME
        text, ids = _read_journal(journal)
        rows, whole = self._read_csv()
        in_csv = Counter(spreadsheet_text(row[0]) for row in rows)
        parts = {d: _part_ids(self.out / d) for d in (ELEMENTS_DIR, CREATIVES_DIR)}
        elements, creatives = (Counter(i for in_part in parts[d].values() for i in in_part) for d in parts)
        # Whole and once in every table: one creative row, and as many CSV rows as element rows (a commit writes a
        # creative's element rows into one part, and scoring needs at least one). A row lost or doubled by damage
        # makes its creative not done, so it is dropped everywhere and rescored.
        done = {i for i in ids if creatives[i] == 1 and 0 < elements[i] == in_csv[i]}
        for d in (ELEMENTS_DIR, CREATIVES_DIR):
            _filter_parts(parts[d], d, done)
        keep = [row for row in rows if spreadsheet_text(row[0]) in done]
        if len(keep) != len(rows) or not whole:
            with atomic_write(self.out / CSV_NAME, "w") as fh:
                fh.write(_csv_text([CSV_HEADER, *keep]))
        kept = "".join(json.dumps(i) + "\n" for i in dict.fromkeys(ids) if i in done)
        if text != kept and (done or text):
            write_text(journal, kept)
        return done

    def _read_csv(self) -> tuple[list[list[str]], bool]:
        """The CSV's whole rows (without the header), and whether it holds nothing else (such as a row a crash cut,
        maybe inside a multi-byte character) and ends with a newline."""
        table = self.out / CSV_NAME
        if not table.exists():
            write_text(table, _csv_text([CSV_HEADER]))
            return [], True
        # surrogateescape: bytes a cut left are kept apart (as lone surrogates) instead of failing the whole read
        text = table.read_text(encoding="utf-8", errors="surrogateescape")
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows or tuple(rows[0]) != CSV_HEADER:
            raise InputError(f"{table}: header differs from this foveal version's ({','.join(CSV_HEADER[:4])}"
                             ",...); use a new output folder")
        keep = [r for r in rows[1:] if len(r) == len(CSV_HEADER)]
        if not is_unicode(text):
            keep = [r for r in keep if all(map(is_unicode, r))]
        return keep, len(keep) == len(rows) - 1 and text.endswith("\n")


def _lock(path: Path) -> IO[str]:
    try:
        fh = path.open("a")
    except OSError as exc:
        raise _unusable(exc, path.parent) from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise InputError(f"{path.parent}: another foveal batch is writing there; wait for it to end, or use "
                         "another output folder") from None
    return fh


def _unusable(exc: OSError, out: Path) -> InputError:
    """A one-line error for an output folder that cannot be read or written as a batch folder needs."""
    where = exc.filename or out
    if exc.errno in DISK_FULL:
        return cannot_write(where, exc)
    return InputError(f"cannot use {where}: {exc.strerror or exc}; {out} must be a writable batch output folder: "
                      "fix that, or use another output folder")


def _close(fh: IO[str]) -> OSError | None:
    try:
        fh.close()
    except OSError as exc:
        exc.filename = exc.filename or fh.name
        return exc
    return None


def _read_journal(journal: Path) -> tuple[str, list[str]]:
    """The journal's text and its ids in order; a last line without its newline was cut by a crash: that chunk is
    not committed."""
    if not journal.exists():
        return "", []
    try:
        text = journal.read_text(encoding="utf-8")  # foveal writes JSON strings (ASCII): other bytes are damage
        ids = [json.loads(line) for line in text.split("\n")[:-1] if line]
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{journal}: corrupt (not foveal's journal lines); {JOURNAL_REMEDY}") from None
    if not all(isinstance(i, str) for i in ids):
        raise InputError(f"{journal}: corrupt (a line is not a creative id); {JOURNAL_REMEDY}")
    return text, ids


def _remove_temporaries(out: Path) -> None:
    """Delete the ``.NAME.XXXX.part`` files atomic writes leave when a process is killed mid-write."""
    for root, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".part"):
                os.unlink(os.path.join(root, name))


def _part_number(path: Path) -> int:
    try:
        return int(path.stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _read_part(part: Path, name: str, columns: Sequence[str] | None = None):
    """One part file of the table ``name`` (its ``columns``), or InputError if it is not one foveal wrote: parts
    are written whole (atomically), so a damaged one was damaged afterwards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schemas()[name]
    try:
        if not part.is_file():
            raise OSError("not a file")
        # The whole schema from the footer, whichever columns are read: the creatives table's parts share the
        # elements table's creative_id, and one copied among the other's was taken for its own.
        if pq.read_schema(part).remove_metadata() != schema:
            raise pa.ArrowInvalid(f"its columns are not the {name} table's")
        table = pq.read_table(part, columns=columns)
    except PermissionError:  # unreadable is not damaged: no advice to delete it (Arrow's error names no file)
        denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(part))
        raise _unusable(denied, part.parent.parent) from None
    except (OSError, pa.ArrowException) as exc:
        # Arrow's first sentence, without the path it repeats ("Could not open ... '<path>': ...")
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split("': ", 1)[-1].split(". ", 1)[0]
        raise InputError(f"{part}: not a part of this batch's {name} table ({reason}); delete it to rescore "
                         "its creatives, or use a new output folder") from None
    return table


def _part_files(folder: Path) -> list[Path]:
    """The part files of ``folder``'s table, sorted; OSError if it cannot be listed (``Path.glob`` answered an
    unreadable folder with no parts, and recovery then dropped every committed creative as having no rows)."""
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except FileNotFoundError:
        return []
    return sorted(folder / name for name in names if fnmatch.fnmatchcase(name, "part-*.parquet"))


def _part_ids(folder: Path) -> dict[Path, list[str]]:
    """Each part file of ``folder``'s table and the creative ids of its rows, in row order."""
    return {part: _read_part(part, folder.name, ["creative_id"]).column("creative_id").to_pylist()
            for part in _part_files(folder)}


def _filter_parts(parts: dict[Path, list[str]], name: str, done: set[str]) -> None:
    """Rewrite (or delete) the part files holding creatives not in ``done``; ``parts``: :func:`_part_ids`. A part
    whose creatives are all done is not read again: a resumed batch of a million creatives reads each part once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for part, ids in parts.items():
        keep = [i in done for i in ids]
        if all(keep):
            continue
        if not any(keep):
            part.unlink()
            continue
        table = _read_part(part, name).filter(pa.array(keep))
        with atomic_write(part, "wb") as fh:
            pq.write_table(table, fh)


def _write_parquet(path: Path, name: str, rows: Sequence[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schemas()[name]
    table = pa.Table.from_pylist([{c: row[c] for c in schema.names} for row in rows], schema=schema)
    with atomic_write(path, "wb") as fh:
        pq.write_table(table, fh)


def _csv_cells(row: dict[str, Any]) -> list[Any]:
    return ["" if row[c] is None else spreadsheet_cell(row[c]) for c in CSV_HEADER]


def _csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _append_durably(fh: IO[str], text: str) -> None:
    """Append and fsync: the rows (or journal lines) survive a crash before the next step starts."""
    try:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    except OSError as exc:  # a full disk: what was written is beyond the journal, dropped when the folder reopens
        exc.filename = exc.filename or fh.name
        raise _unusable(exc, Path(fh.name).parent) from None
