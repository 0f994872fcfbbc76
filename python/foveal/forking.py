"""What a forked child does with the native sessions it inherited: it never frees them.

A fork copies only the thread that called it. ONNX Runtime's sessions keep a pool of threads, and freeing one waits
for them: in the child they do not exist, so a child that dropped an inherited Engine or Detector (or exited
normally, which frees what modules hold) hung. The fork handlers of :mod:`foveal.engine` and :mod:`foveal.detect`
keep them here instead, and make fresh ones for the child where it uses them. Sessions the parent had already let
go of, but whose reference cycles its garbage collector had not yet broken, are kept too: the child freezes what it
inherited out of its collector's reach (``gc.freeze``), so that garbage is never collected there (it costs the
child nothing: the pages are the parent's until written).
"""
from __future__ import annotations

import ctypes
import gc
import os
from typing import Any


def keep_for_good(obj: Any) -> None:
    """One reference to ``obj`` that nothing releases, not even the interpreter's shutdown."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=gc.freeze)
