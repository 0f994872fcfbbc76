"""The resize/pad plan that ties an image's size to the network's input and output grids."""
from __future__ import annotations

from dataclasses import dataclass

from .models import ModelCard


@dataclass(frozen=True)
class Plan:
    """Sizes and offsets are (height, width).

    The resized image sits ``offset_hw`` pixels from the padded input's top-left corner, with the padding split
    between the two sides of each axis so that the image's centre is the input's (the network's centre prior is
    laid out on the padded grid).  ``valid_hw`` and ``origin_hw`` are the image's extent and offset measured in
    output-grid cells.
    """

    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    offset_hw: tuple[int, int]
    valid_hw: tuple[float, float]
    origin_hw: tuple[float, float]


def plan(height: int, width: int, card: ModelCard) -> Plan:
    """The plan for an image of ``height`` × ``width`` under ``card``'s input contract."""
    return layout(height, width, card.input.working_size, card.input.pad_multiple, card.stride)


def layout(height: int, width: int, working_size: int, pad_multiple: int, stride: int) -> Plan:
    """Longest side to ``working_size``, short side in proportion; each side edge-padded to a multiple of
    ``pad_multiple``, half the padding before the image (the smaller half when it is odd) and half after."""
    longest = max(height, width)
    resized = tuple(max(1, round(side * working_size / longest)) for side in (height, width))
    padded = tuple(-(-side // pad_multiple) * pad_multiple for side in resized)
    offset = tuple((p - r) // 2 for p, r in zip(padded, resized))
    return Plan((height, width), resized, padded, offset,  # type: ignore[arg-type]
                tuple(side / stride for side in resized), tuple(o / stride for o in offset))  # type: ignore[arg-type]
