"""The resize/pad plan that ties an image's size to the network's input and output grids."""
from __future__ import annotations

from dataclasses import dataclass

from .models import ModelCard


@dataclass(frozen=True)
class Plan:
    """Sizes are (height, width). ``valid_hw`` is the resized image measured in output-grid cells."""

    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    valid_hw: tuple[float, float]


def plan(height: int, width: int, card: ModelCard) -> Plan:
    """Longest side to the working size, short side in proportion, both edge-padded to ``pad_multiple``."""
    size, multiple = card.input.working_size, card.input.pad_multiple
    longest = max(height, width)
    resized = tuple(max(1, round(side * size / longest)) for side in (height, width))
    padded = tuple(-(-side // multiple) * multiple for side in resized)
    valid = tuple(side / card.stride for side in resized)
    return Plan((height, width), resized, padded, valid)  # type: ignore[arg-type]
