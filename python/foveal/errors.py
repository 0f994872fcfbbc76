"""The one place foveal's exceptions live.

Every error a user can cause is a :class:`FovealError`; the CLI prints its message on one line and exits 1
(2 for usage errors).  Messages name the argument, what was expected and what was found, and say what to do.
"""
from __future__ import annotations

import math
import numbers
import operator
from collections import Counter
from collections.abc import Mapping
from typing import Any, Iterable

import numpy as np


#: Control characters (C0, DEL, C1) and Unicode's line and paragraph separators, as a message shows them.
_ESCAPES = {**{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
            ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """``text`` with every control character and line separator escaped (``\\n``, ``\\x1b``): a name from the
    caller (a file name may hold line breaks, or a terminal's escape sequences) must neither break a message into
    lines nor drive the terminal or log viewer that shows it."""
    return text.translate(_ESCAPES)


def repeated(values: Iterable[Any]) -> list[Any]:
    """The values that occur more than once, sorted: counted in one pass, as a count per value is n² (minutes for
    a header of 50,000 column names)."""
    return sorted(value for value, n in Counter(values).items() if n > 1)


class FovealError(Exception):
    """Base class of every error foveal raises on purpose; its message is one line."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class InputError(FovealError, ValueError):
    """A value handed to foveal is malformed (bad image, box, array, JSON...)."""


class DtypeError(InputError, TypeError):
    """An array of a dtype a kernel does not take: an InputError, and a TypeError as NumPy raises for one."""


class DiskFullError(InputError):
    """A write failed for want of space (or quota): the user's to fix, and no later write of the run can succeed."""


class ImageError(InputError):
    """An image cannot be decoded, is truncated, too large, or of an unsupported kind."""


class TooManyPixelsError(ImageError):
    """An image over the pixel limit, known from its header before any decoding.

    ``detail`` says what was found (``"12000x12000 = 144.0 MP"``, or that Pillow refused the header as a bomb) and
    ``limit`` is the limit it broke, ``limit_text`` the same in the detail's units (``"100.0 MP"``), so a caller
    (the service) can phrase its own refusal. A refusal relayed by :class:`foveal.Client` has the service's message
    as its detail and no limit (the service's is its operator's, not the client's).
    """

    # Defaults: pickle rebuilds an exception from its message alone (a process pool hands errors back that way).
    def __init__(self, message: str, *, detail: str = "", limit: int | None = None,
                 limit_text: str | None = None) -> None:
        super().__init__(message)
        self.detail, self.limit, self.limit_text = detail, limit, limit_text


class FormatMismatchError(InputError):
    """Two creatives of different formats were compared without allowing it; ``mismatch`` says how they differ, so a
    caller (the CLI, the service's page) can phrase its own way to allow it."""

    def __init__(self, message: str, *, mismatch: str | None = None) -> None:
        super().__init__(message)
        self.mismatch = mismatch if mismatch is not None else message


class ElementSpecError(InputError):
    """An element specification (boxes to score) is invalid."""


class UnknownElementError(InputError, KeyError):
    """No element of that name: an InputError, and the KeyError a lookup by name raises."""

    __str__ = Exception.__str__  # KeyError's would print the message in quotes


class ModelError(FovealError):
    """A model file or model card is missing, corrupt, or breaks the model contract."""


class BackendUnavailableError(FovealError, RuntimeError):
    """A requested network backend (tensorrt, torch, onnxruntime) cannot run on this machine."""


class ServiceError(FovealError):
    """The foveal service refused or could not answer a request (overload, deadline, auth, unreachable...).

    ``status`` is the HTTP status code (0 when no answer came back) and ``code`` a stable machine-readable name.
    """

    def __init__(self, message: str, *, status: int = 0, code: str = "service_error",
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after


class DetectorUnavailableError(FovealError, RuntimeError):
    """Automatic element detection needs the optional ``foveal[detect]`` dependencies, which are missing."""


def prefixed(exc: FovealError, prefix: str) -> FovealError:
    """``exc`` with ``prefix: `` in front of its message, of its own class and with its attributes (a ServiceError's
    status, a TooManyPixelsError's limit) kept."""
    out = type(exc).__new__(type(exc), f"{prefix}: {exc}")  # not __init__: its keywords vary by class
    out.__dict__.update(exc.__dict__)
    return out


def is_list_like(value: object) -> bool:
    """Whether ``value`` can stand for a list: iterable, and not text, bytes, a mapping (its keys) or a 0-d array
    (iterable by type, refused by ``iter``)."""
    if isinstance(value, (str, bytes, bytearray, Mapping)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return False
    return isinstance(value, Iterable)


def real_number(value: object) -> float | None:
    """``value`` as a float when it is a real number (a NumPy scalar or 0-d array too), else None: a bool, text or
    None is not one, though ``float()`` would take some of them."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # an int past float's range: infinite, so that a caller's range check refuses it
        return math.inf if value > 0 else -math.inf


def checked_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as a whole number >= ``minimum``, else InputError (a float, None or True is refused, not cast)."""
    if isinstance(value, (bool, np.bool_)):  # operator.index takes True as 1
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if count < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {count}")
    return count


def checked_flag(value: object, name: str) -> bool:
    """``value`` as a yes/no setting, else InputError: a string such as ``"no"`` would otherwise count as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)
