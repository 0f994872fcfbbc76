"""The calibration store: creatives, foveal's predictions for them and their outcomes in market, in SQLite or
PostgreSQL through SQLAlchemy (see docs/CALIBRATION.md for the schema).

SQLAlchemy is an optional dependency (``foveal[store]``): the store's classes load it on first use, so the CLI and
``foveal.store.outcomes`` (file validation, no database) import without it.
"""
from __future__ import annotations

from typing import Any

from ..errors import FovealError

__all__ = ["Store", "ImportSummary", "SCHEMA_VERSION", "CREATIVE_SCORES", "check_label"]

#: What a user without the store extra is told.
NEEDS_SQLALCHEMY = "the calibration store needs SQLAlchemy: pip install 'foveal[store]'"


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:  # say how to get it instead of a traceback
        raise FovealError(NEEDS_SQLALCHEMY) from None
    from . import schema, store

    return getattr(schema if name == "SCHEMA_VERSION" else store, name)
