"""The calibration store's tables and the ordered migration steps that create them.

The schema version lives in ``foveal_schema`` (one row per applied step).  :func:`migrate` applies every step newer
than the database's version, each in its own transaction, and refuses a database whose version this foveal does
not know (written by a newer foveal) or that holds tables but no version (not a foveal store).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import FovealError

# Constraint names that are the same on SQLite and PostgreSQL, so later migrations can name what they alter.
NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}
metadata = sa.MetaData(naming_convention=NAMING)

ID = sa.String(200)
SHA = sa.String(64)
WHEN = sa.DateTime(timezone=True)

schema_versions = sa.Table(
    "foveal_schema", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", WHEN, nullable=False))

creatives = sa.Table(
    "creatives", metadata,
    sa.Column("creative_id", ID, primary_key=True),
    sa.Column("image_sha256", SHA),
    sa.Column("format", sa.String(64)),
    sa.Column("vertical", ID),
    sa.Column("created_at", WHEN, nullable=False))

creative_tags = sa.Table(
    "creative_tags", metadata,
    sa.Column("creative_id", ID, sa.ForeignKey("creatives.creative_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", ID, primary_key=True))

predictions = sa.Table(
    "predictions", metadata,
    sa.Column("prediction_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("creative_id", ID, sa.ForeignKey("creatives.creative_id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(64)),
    sa.Column("model_sha256", SHA),
    sa.Column("graph_sha256", SHA, nullable=False),
    sa.Column("precision", sa.String(16), nullable=False),
    sa.Column("backend", sa.String(64)),
    sa.Column("foveal_version", sa.String(64), nullable=False),
    sa.Column("image_sha256", SHA),
    sa.Column("format", sa.String(64), nullable=False),
    sa.Column("pass_percentile", sa.Float, nullable=False),
    sa.Column("scored_at", WHEN, nullable=False, index=True))

# One row per scored element.
prediction_elements = sa.Table(
    "prediction_elements", metadata,
    sa.Column("prediction_id", sa.Integer, sa.ForeignKey("predictions.prediction_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", ID, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("x", sa.Integer, nullable=False), sa.Column("y", sa.Integer, nullable=False),
    sa.Column("w", sa.Integer, nullable=False), sa.Column("h", sa.Integer, nullable=False),
    sa.Column("area_fraction", sa.Float, nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("density", sa.Float, nullable=False),
    sa.Column("lift", sa.Float, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("percentile", sa.Float),
    sa.Column("score", sa.Integer),
    sa.Column("passed", sa.Boolean))

# One row per creative-level score (conversion_share, focus...), so a new score needs no migration.
prediction_scores = sa.Table(
    "prediction_scores", metadata,
    sa.Column("prediction_id", sa.Integer, sa.ForeignKey("predictions.prediction_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float, nullable=False))

outcomes = sa.Table(
    "outcomes", metadata,
    sa.Column("creative_id", ID, sa.ForeignKey("creatives.creative_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("source", ID, primary_key=True),  # "" when the file has no source column
    sa.Column("impressions", sa.BigInteger, nullable=False),
    sa.Column("clicks", sa.BigInteger, nullable=False),
    sa.Column("conversions", sa.BigInteger),
    sa.Column("spend", sa.Float),
    sa.Column("imported_at", WHEN, nullable=False),
    sa.CheckConstraint("impressions >= 0 AND clicks >= 0 AND clicks <= impressions", name="counts"))

VERSION_1_TABLES = (creatives, creative_tags, predictions, prediction_elements, prediction_scores, outcomes)


def _v1(conn: Connection) -> None:
    for table in VERSION_1_TABLES:
        table.create(conn)


#: Ordered migration steps: step ``i`` takes a database from version ``i`` to ``i + 1``.  Append, never edit.
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_v1,)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: Connection) -> int | None:
    """The database's schema version; None when it has no foveal tables at all."""
    names = set(sa.inspect(conn).get_table_names())
    if schema_versions.name not in names:
        if names & {t.name for t in VERSION_1_TABLES}:
            raise FovealError("the database has tables named like foveal's but no foveal_schema table: it is not a "
                              "foveal store (or was damaged); use a new database")
        return None
    version = conn.execute(sa.select(sa.func.max(schema_versions.c.version))).scalar()
    try:
        return int(version or 0)
    except (TypeError, ValueError):  # a table of that name that foveal did not write
        raise FovealError(f"the database's foveal_schema table holds {str(version)[:40]!r}, not a version number: it "
                          "is not a foveal store (or was damaged); use a new database") from None


def _lock(conn: Connection) -> None:
    """Serialise concurrent migrations: PostgreSQL by an advisory lock (SQLite's BEGIN IMMEDIATE already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x66_6F_76_65})


def _known_version(conn: Connection, create: bool) -> int:
    """The database's schema version (0: none), refused when this foveal does not know it, or when it is 0 and a
    store is not to be created."""
    version = schema_version(conn)
    if version is None and not create:
        raise FovealError("the database holds no foveal store; record predictions in it first with "
                          "`foveal score ... --db URL`")
    version = version or 0
    if version > SCHEMA_VERSION:
        raise FovealError(f"the database's schema is version {version} but this foveal knows versions up to "
                          f"{SCHEMA_VERSION}: it was written by a newer foveal; upgrade foveal to use it")
    return version


def check_current(engine: sa.Engine) -> None:
    """Refuse a database whose schema is not :data:`SCHEMA_VERSION`, without changing it (for a store only read)."""
    with engine.begin() as conn:
        version = _known_version(conn, create=False)
    if version < SCHEMA_VERSION:
        raise FovealError(f"the database's schema is version {version}, older than this foveal's "
                          f"{SCHEMA_VERSION}; upgrade it by writing to it once (e.g. `foveal outcomes import ... "
                          "--db URL`)")


def migrate(engine: sa.Engine, *, create: bool = True) -> int:
    """Bring the database up to :data:`SCHEMA_VERSION`; return the version it had before (0 for a new one).

    With ``create=False`` a database without foveal's tables is refused rather than given them.
    """
    with engine.begin() as conn:
        _lock(conn)
        before = _known_version(conn, create)
        if before == 0:
            schema_versions.create(conn, checkfirst=True)
    for version in range(before + 1, SCHEMA_VERSION + 1):
        with engine.begin() as conn:
            _lock(conn)
            if (schema_version(conn) or 0) >= version:  # another process applied it meanwhile
                continue
            MIGRATIONS[version - 1](conn)
            conn.execute(schema_versions.insert().values(version=version, applied_at=datetime.now(timezone.utc)))
    return before
