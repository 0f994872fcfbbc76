"""Calibration of foveal's predicted scores against in-market outcomes (rank correlations, drift flags, pass
thresholds); see docs/CALIBRATION.md."""
from ..errors import FovealError

try:
    import scipy  # noqa: F401
except ImportError:  # an optional dependency: say how to get it instead of a traceback
    raise FovealError("the calibration store needs SciPy: pip install 'foveal[store]'") from None

from .analysis import Settings
from .calibrate import Calibration, calibrate, write_calibration

__all__ = ["Settings", "Calibration", "calibrate", "write_calibration"]
