""":class:`Store`: creatives, the predictions foveal made for them, and the outcomes they had in market."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from .._version import __version__
from ..errors import InputError, checked_flag, is_list_like
from ..fileio import checked_path, note_input
from ..scoring.elements import checked_format
from ..scoring.scores import CreativeScores
from . import schema as s
from .database import Breaker, connect_error, create_engine, describe, parse_url, recording, write_error
from .outcomes import NO_LABEL, STORED_NO_LABEL, check, is_label, read_outcomes

#: The creative-level numbers stored as ``prediction_scores`` rows.
CREATIVE_SCORES = ("conversion_share", "other_elements_share", "background_share", "focus", "top10_share")


@dataclass(frozen=True)
class ImportSummary:
    """What one outcomes import did: rows inserted, changed and already present unchanged."""

    path: str
    inserted: int
    updated: int
    unchanged: int

    @property
    def rows(self) -> int:
        return self.inserted + self.updated + self.unchanged


class Store:
    """A calibration store at a database URL; the schema is created or upgraded on open.

    >>> store = Store("sqlite:///foveal.db")
    >>> store.record("spring-a", scores, smap.provenance, vertical="retail", tags=["spring"])
    """

    def __init__(self, url: str, *, create: bool = True, read_only: bool = False) -> None:
        """``create=False`` opens only an existing store (for commands that read one or add outcomes to its
        creatives): a mistyped URL is refused instead of leaving an empty database behind.  ``read_only`` (which
        implies it) is for reading only: an SQLite file is opened read-only, so a file or folder that may not be
        written is read too, and the schema is checked, not upgraded."""
        create, read_only = checked_flag(create, "create"), checked_flag(read_only, "read_only")
        self.url = parse_url(url)
        self.engine = create_engine(self.url, create=create, read_only=read_only)
        self._breaker = Breaker(self.url)
        self._closed = False
        try:
            if read_only:
                s.check_current(self.engine)
            else:
                s.migrate(self.engine, create=create)
        except DBAPIError as exc:  # unreachable server, or a file that is not an SQLite database
            self.engine.dispose()
            raise connect_error(self.url, exc) from None
        except BaseException:
            self.engine.dispose()
            raise
        if self.url.get_backend_name() == "sqlite":  # no output of the running command may replace the store
            note_input(Path(self.url.database).expanduser())

    def __reduce__(self) -> Any:
        raise InputError("a Store holds database connections and cannot be pickled or sent to another process; open "
                         "one in each worker: Store(url)")

    def __repr__(self) -> str:
        return f"Store({describe(self.url)!r}{', closed' if self._closed else ''})"

    def _check_open(self) -> None:
        # SQLAlchemy's dispose() leaves the engine able to connect again: a closed store would quietly reopen.
        if self._closed:
            raise InputError(f"database {describe(self.url)}: this Store is closed; open a new one: Store(url)")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """One transaction; what the database refuses or loses on the way (a read-only file, a server gone, a
        role without rights) is a one-line FovealError, not SQLAlchemy's statement dump.  While a PostgreSQL server
        that just failed for want of an answer is cooling down (:class:`~foveal.store.database.Breaker`), that error
        comes at once, without waiting on the server."""
        self._check_open()
        try:
            with self._breaker.guard(), self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise write_error(self.url, exc) from None

    def check_writable(self) -> None:
        """Raise the one-line FovealError :meth:`record` would if the store may not be written (a read-only file, a
        standby or read-only database, a role that may only read), writing nothing: for a batch, which would
        otherwise score every creative before each is refused."""
        self._check_open()
        try:
            with recording(), self.engine.connect() as conn, conn.begin() as transaction:
                conn.execute(_insert(conn)(s.creatives).on_conflict_do_nothing(), {
                    "creative_id": "foveal-write-check", "created_at": datetime.now(timezone.utc)})
                transaction.rollback()
        except DBAPIError as exc:
            raise write_error(self.url, exc) from None

    def close(self) -> None:
        """Close the store's connections; later calls are refused (closing again does nothing)."""
        if not self._closed:
            self._closed = True
            self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, creative_id: str, scores: CreativeScores, provenance: Mapping[str, Any], *,
               vertical: str | None = None, tags: Iterable[str] = (), scored_at: datetime | None = None) -> int:
        """Store one scored creative (``provenance`` is its SaliencyMap's) and return the prediction id.

        The creative is created on first sight; ``vertical`` and ``tags`` are set when given (tags add up).  A
        creative id already recorded with another image is refused: its outcomes would be credited to the wrong
        picture.  ``scored_at`` (default: now) must carry its time zone; it is stored in UTC.
        """
        creative_id = check_label(creative_id, "creative id")
        vertical = None if vertical is None else check_label(vertical, "vertical")
        if not is_list_like(tags):  # "spring" was stored as six one-letter tags
            raise InputError(f"tags: expected a list of tags, got {tags!r}; pass [{tags!r}] for one tag")
        tags = sorted({check_label(t, "tag") for t in tags})
        if not isinstance(scores, CreativeScores):
            raise InputError(f"record: scores must be the CreativeScores of score_creative, got "
                             f"{type(scores).__name__}")
        checked_format(scores.format, "record: the scores' format", stored=True)
        if not isinstance(provenance, Mapping):
            raise InputError(f"record: provenance must be the SaliencyMap.provenance dict, got "
                             f"{type(provenance).__name__}")
        if not (scored_at is None or isinstance(scored_at, datetime)):
            raise InputError(f"record: scored_at must be a datetime or None, got {scored_at!r}")
        if scored_at is not None and scored_at.utcoffset() is None:  # PostgreSQL reads it in its session's zone
            raise InputError(f"record: scored_at {scored_at.isoformat()} has no time zone, so it is no instant; give "
                             "an aware one (datetime.now(timezone.utc), or .replace(tzinfo=...))")
        graph = provenance.get("graph_sha256")
        if not graph:
            raise InputError("record: provenance has no graph_sha256; pass the SaliencyMap.provenance of the map "
                             "that was scored")
        for key in ("graph_sha256", "model_version", "model_sha256", "backend", "image_sha256"):
            # a list failed in the database's driver and was told as the store's failure; a number was stored
            if not (provenance.get(key) is None or isinstance(provenance.get(key), str)):
                raise InputError(f"record: provenance {key} must be text, got {provenance.get(key)!r:.60}; pass the "
                                 "SaliencyMap.provenance of the map that was scored")
        image_sha = provenance.get("image_sha256")
        # in UTC: SQLite keeps the wall time alone, so an offset would be lost and instants hours apart look alike
        now = (scored_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        with recording(), self._transaction() as conn:
            self._upsert_creative(conn, creative_id, image_sha, scores.format, vertical, tags, now)
            pid = conn.execute(s.predictions.insert().values(
                creative_id=creative_id, model=str(provenance.get("model")),
                model_version=provenance.get("model_version"), model_sha256=provenance.get("model_sha256"),
                graph_sha256=graph, precision=str(provenance.get("precision")), backend=provenance.get("backend"),
                foveal_version=str(provenance.get("foveal_version") or __version__), image_sha256=image_sha,
                format=scores.format, pass_percentile=scores.pass_percentile, scored_at=now,
            ).returning(s.predictions.c.prediction_id)).scalar_one()
            if scores.elements:
                conn.execute(s.prediction_elements.insert(), [
                    {"prediction_id": pid, "position": i, "name": e.name, "kind": e.kind, "x": e.box[0],
                     "y": e.box[1], "w": e.box[2], "h": e.box[3], "area_fraction": e.area_fraction,
                     "share": e.share, "density": e.density, "lift": e.lift, "rank": e.rank,
                     "percentile": e.percentile, "score": e.score, "passed": e.passed}
                    for i, e in enumerate(scores.elements)])
            conn.execute(s.prediction_scores.insert(), [
                {"prediction_id": pid, "name": name, "value": float(getattr(scores, name))}
                for name in CREATIVE_SCORES])
        return int(pid)

    def _upsert_creative(self, conn: sa.Connection, creative_id: str, image_sha: str | None, fmt: str,
                         vertical: str | None, tags: Sequence[str], now: datetime) -> None:
        # INSERT ... ON CONFLICT DO NOTHING, then lock the row: two processes recording the same new creative at
        # once (PostgreSQL runs them concurrently) both succeed instead of one hitting a unique violation.
        insert = _insert(conn)
        conn.execute(insert(s.creatives).values(creative_id=creative_id, image_sha256=image_sha, format=fmt,
                                                vertical=vertical, created_at=now).on_conflict_do_nothing())
        row = conn.execute(sa.select(s.creatives).where(s.creatives.c.creative_id == creative_id)
                           .with_for_update()).one()
        if row.image_sha256 and image_sha and row.image_sha256 != image_sha:
            raise InputError(f"creative {creative_id!r} is recorded with another image (sha256 "
                             f"{row.image_sha256[:12]}…, this one {image_sha[:12]}…); give this image its own "
                             "creative_id")
        changes = {"format": fmt, "image_sha256": row.image_sha256 or image_sha}
        if vertical is not None:
            changes["vertical"] = vertical
        conn.execute(s.creatives.update().where(s.creatives.c.creative_id == creative_id).values(**changes))
        if tags:
            conn.execute(insert(s.creative_tags).on_conflict_do_nothing(),
                         [{"creative_id": creative_id, "tag": tag} for tag in tags])

    def import_outcomes(self, path: str | Path, mapping: Mapping[str, str] | None = None) -> ImportSummary:
        """Validate an outcomes CSV/Parquet file and upsert its rows in one transaction (all or nothing).

        Rows are keyed by (creative, date, source): importing the same file again changes nothing.
        """
        path = Path(checked_path(path, "outcomes file"))
        rows, errors = read_outcomes(path, {} if mapping is None else mapping)
        now = datetime.now(timezone.utc)
        with self._transaction() as conn:
            ids = sorted({r["creative_id"] for r in rows})
            known = set()
            for start in range(0, len(ids), 500):
                known |= set(conn.execute(sa.select(s.creatives.c.creative_id).where(
                    s.creatives.c.creative_id.in_(ids[start:start + 500]))).scalars())
            check(path, rows, errors, known)
            existing = {}
            o = s.outcomes.c
            for start in range(0, len(ids), 500):
                for r in conn.execute(sa.select(o.creative_id, o.date, o.source, o.impressions, o.clicks,
                                                o.conversions, o.spend).where(
                        o.creative_id.in_(ids[start:start + 500]))):
                    existing[(r.creative_id, r.date, r.source)] = tuple(r[3:])
            inserts, updates, unchanged = [], [], 0
            for r in rows:
                key = (r["creative_id"], r["date"], r["source"])
                values = (r["impressions"], r["clicks"], r["conversions"], r["spend"])
                if key not in existing:
                    inserts.append({**_strip_line(r), "imported_at": now})
                elif existing[key] != values:
                    updates.append({**_strip_line(r), "imported_at": now})
                else:
                    unchanged += 1
            # In key order: two imports of the same keys in different file orders otherwise lock rows in opposite
            # orders, and PostgreSQL ends one of them as a deadlock.
            changed = sorted(inserts + updates, key=lambda r: (r["creative_id"], r["date"], r["source"]))
            for start in range(0, len(changed), 1000):
                _upsert_outcomes(conn, changed[start:start + 1000])
        return ImportSummary(str(path), len(inserts), len(updates), unchanged)

    def latest_predictions(self, graph_sha256: str | None = None) -> list[dict[str, Any]]:
        """Each creative's latest prediction (of the graph whose sha256 starts with ``graph_sha256``, if given):
        ``creative_id, vertical, format, tags, model, graph_sha256, precision, scored_at`` and ``scores``, the
        creative-level scores plus ``<kind>_share``, the largest share of each element kind on the creative."""
        if graph_sha256 is not None and not isinstance(graph_sha256, str):
            raise InputError(f"graph_sha256: expected the start of a graph's sha256 (text), got "
                             f"{type(graph_sha256).__name__}")
        p, c = s.predictions.c, s.creatives.c
        latest = sa.select(p.creative_id, sa.func.max(p.prediction_id).label("pid"))
        if graph_sha256:
            latest = latest.where(p.graph_sha256.startswith(graph_sha256, autoescape=True))
        latest = latest.group_by(p.creative_id).subquery()
        with self._transaction() as conn:
            rows = conn.execute(
                sa.select(latest.c.pid, c.creative_id, c.vertical, p.format, p.model, p.graph_sha256, p.precision,
                          p.scored_at).join(s.predictions, p.prediction_id == latest.c.pid)
                .join(s.creatives, c.creative_id == latest.c.creative_id).order_by(c.creative_id)).all()
            out = {r.pid: {"creative_id": r.creative_id, "vertical": r.vertical, "format": r.format,
                           "model": r.model, "graph_sha256": r.graph_sha256, "precision": r.precision,
                           "scored_at": r.scored_at, "tags": [], "scores": {}} for r in rows}
            by_creative = {v["creative_id"]: v for v in out.values()}
            for cid, tag in conn.execute(sa.select(s.creative_tags.c.creative_id, s.creative_tags.c.tag)):
                if cid in by_creative:
                    by_creative[cid]["tags"].append(tag)
            sc, el = s.prediction_scores.c, s.prediction_elements.c
            for pid, name, value in conn.execute(
                    sa.select(sc.prediction_id, sc.name, sc.value).where(sc.prediction_id.in_(
                        sa.select(latest.c.pid)))):
                out[pid]["scores"][name] = value
            for pid, kind, share in conn.execute(
                    sa.select(el.prediction_id, el.kind, sa.func.max(el.share)).where(el.prediction_id.in_(
                        sa.select(latest.c.pid))).group_by(el.prediction_id, el.kind)):
                out[pid]["scores"][f"{kind}_share"] = share
        return list(out.values())

    def outcome_rows(self) -> list[tuple[str, Any, float, float, float | None]]:
        """Every outcome as ``(creative_id, date, impressions, clicks, conversions)``, sources summed per day;
        conversions are None (unknown) on a day where any source left them unknown.

        The sums are floating point: each count fits 64 bits, but several sources' counts of a day may add up past
        them, where SQLite's integer sum() fails.
        """
        o = s.outcomes.c

        def total(column: sa.Column) -> sa.ColumnElement:
            return sa.func.sum(sa.cast(column, sa.Float))
        # sum() skips NULLs: one source's conversions would pass for the day's, over every source's clicks
        conversions = sa.case((sa.func.count(o.conversions) == sa.func.count(), total(o.conversions)))
        with self._transaction() as conn:
            return [tuple(r) for r in conn.execute(
                sa.select(o.creative_id, o.date, total(o.impressions), total(o.clicks), conversions)
                .group_by(o.creative_id, o.date).order_by(o.creative_id, o.date))]

    def counts(self) -> dict[str, int]:
        """Rows per table (creatives, predictions, prediction_elements, prediction_scores, outcomes)."""
        with self._transaction() as conn:
            return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                    for t in (s.creatives, s.predictions, s.prediction_elements, s.prediction_scores, s.outcomes)}

    def schema_version(self) -> int:
        with self._transaction() as conn:
            return s.schema_version(conn) or 0


def _strip_line(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "line"}


def _insert(conn: sa.Connection):
    """The dialect's ``insert`` (both SQLite and PostgreSQL have ON CONFLICT)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _upsert_outcomes(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT (creative, date, source) DO UPDATE: safe when another import races this one."""
    if not rows:
        return
    stmt = _insert(conn)(s.outcomes)
    stmt = stmt.on_conflict_do_update(
        index_elements=[s.outcomes.c.creative_id, s.outcomes.c.date, s.outcomes.c.source],
        set_={c: stmt.excluded[c] for c in ("impressions", "clicks", "conversions", "spend", "imported_at")})
    conn.execute(stmt, rows)


def check_label(value: Any, what: str) -> str:
    """``value`` stripped, as a creative id, vertical or tag may be stored (:func:`is_label`); else InputError."""
    if not isinstance(value, str):  # str() of a list or a number would be stored as if it were the label
        raise InputError(f"{what} {value!r}: must be text (1-200 printable characters), got {type(value).__name__}")
    text = value.strip()
    if not text or not is_label(text):
        raise InputError(f"{what} {value!r}: must be 1-200 printable characters")
    if text in (NO_LABEL, STORED_NO_LABEL) and what in ("vertical", "tag"):  # calibration's own segment names
        raise InputError(f"{what} {value!r}: is what a calibration calls creatives without one; name it otherwise")
    return text
