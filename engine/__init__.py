"""foveal's networks: definitions, tuning/training and export to ONNX + model card (the only code importing torch).

Run from the repository root, e.g. ``python -m engine.export itti-koch --out python/foveal/models/``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from foveal.errors import FovealError


def run_main(main: Callable[[], int | None]) -> None:
    """Exit with ``main()``'s status; a FovealError or a missing/unreadable file is one line on stderr and status 1,
    as in foveal's own CLI (these recipes are run by hand, often with a path mistyped)."""
    try:
        status = main()
    except FovealError as exc:
        sys.exit(f"error: {exc}")
    except OSError as exc:
        sys.exit(f"error: {f'{exc.filename}: ' if exc.filename else ''}{exc.strerror or exc}")
    sys.exit(status or 0)


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated whole numbers >= 0, e.g. ``4,10,15``."""
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 4,10,15, got {text!r}") from None
    if min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 0, got {text!r}")
    return values
