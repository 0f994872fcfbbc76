"""Calibration of foveal's predicted scores against in-market outcomes (rank correlations, drift flags, pass
thresholds); see docs/CALIBRATION.md."""
from .analysis import Settings
from .calibrate import Calibration, calibrate, write_calibration

__all__ = ["Settings", "Calibration", "calibrate", "write_calibration"]
