"""The calibration store: creatives, foveal's predictions for them and their outcomes in market, in SQLite or
PostgreSQL through SQLAlchemy (see docs/CALIBRATION.md for the schema)."""
from .schema import SCHEMA_VERSION
from .store import CREATIVE_SCORES, ImportSummary, Store

__all__ = ["Store", "ImportSummary", "SCHEMA_VERSION", "CREATIVE_SCORES"]
