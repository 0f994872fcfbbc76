"""Creative scoring: element boxes on a saliency map → shares, percentiles against norms, recommendations, reports.

Stable API for other scoring modules (compare, edits, what-if):

- :mod:`.elements`: :class:`Element`, :class:`ElementSpec`, :func:`load_elements`, :func:`parse_elements`,
  :func:`make_element`, :func:`check_elements`, :data:`ELEMENT_KINDS`, :data:`CONVERSION_KINDS`.
- :mod:`.scores`: :func:`score_creative`, :func:`score_elements`, :class:`CreativeScores`, :class:`ElementScore`,
  :data:`DEFINITIONS`.
"""
from .elements import (CONVERSION_KINDS, ELEMENT_KINDS, Element, ElementSpec, check_elements, find_element_file,
                       format_of, load_elements, make_element, parse_elements, parse_elements_csv)
from .norms import Norms, build_norms, load_norms
from .scores import DEFINITIONS, CreativeScores, ElementScore, score_creative, score_elements

__all__ = [
    "CONVERSION_KINDS", "ELEMENT_KINDS", "Element", "ElementSpec", "check_elements", "find_element_file", "format_of",
    "load_elements", "make_element", "parse_elements", "parse_elements_csv",
    "Norms", "build_norms", "load_norms",
    "DEFINITIONS", "CreativeScores", "ElementScore", "score_creative", "score_elements",
]
