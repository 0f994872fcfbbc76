"""The calibration store: creatives, foveal's predictions for them and their outcomes in market, in SQLite or
PostgreSQL through SQLAlchemy (see docs/CALIBRATION.md for the schema)."""
from ..errors import FovealError

try:
    import sqlalchemy  # noqa: F401
except ImportError:  # an optional dependency: say how to get it instead of a traceback
    raise FovealError("the calibration store needs SQLAlchemy: pip install 'foveal[store]'") from None

from .schema import SCHEMA_VERSION
from .store import CREATIVE_SCORES, ImportSummary, Store

__all__ = ["Store", "ImportSummary", "SCHEMA_VERSION", "CREATIVE_SCORES"]
