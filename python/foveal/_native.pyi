"""Type stub for foveal._native (C++ kernels; call them through foveal.cpu)."""
import numpy as np
from numpy.typing import NDArray

__version__: str
num_threads: int

def preprocess(
    image: NDArray[np.uint8],
    resized_hw: tuple[int, int],
    padded_hw: tuple[int, int],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> NDArray[np.float32]: ...
def postprocess(
    log_density: NDArray[np.float32],
    out_hw: tuple[int, int],
    valid_hw: tuple[float, float],
    blur_sigma: float = 0.0,
) -> NDArray[np.float32]: ...
def postprocess_sat(
    log_density: NDArray[np.float32], out_hw: tuple[int, int], valid_hw: tuple[float, float], blur_sigma: float = ...
) -> tuple[NDArray[np.float32], NDArray[np.float64]]: ...
def summed_area_table(prob: NDArray[np.float32] | NDArray[np.float64]) -> NDArray[np.float64]: ...
def box_sums(sat: NDArray[np.float64], boxes: NDArray[np.int64]) -> NDArray[np.float64]: ...
def quantize(prob: NDArray[np.float32], bits: int = 8) -> tuple[NDArray[np.uint8] | NDArray[np.uint16], float]: ...
def colorize(values: NDArray[np.float32], cmap: str = "turbo") -> NDArray[np.uint8]: ...
def overlay(
    image: NDArray[np.uint8], prob: NDArray[np.float32], alpha: float = 0.6, cmap: str = "turbo"
) -> NDArray[np.uint8]: ...
