"""Stops what is left of the Ray cluster a foveal driver started, once that driver is gone, however it died.

``python _ray_reaper.py SESSION_DIR`` is started by :mod:`foveal.batch.on_ray` right after ``ray.init`` started a
local cluster, with a pipe from the driver on its stdin.  The kernel closes that pipe when the driver exits, even by
SIGKILL, and the reaper then stops the cluster's processes.  Ray makes its head processes (GCS, raylet...) die with
the driver, but not the agents the raylet started: after a SIGKILL they stayed up for a minute or more, retrying
the dead GCS.

Only that cluster's processes are touched: those whose command line names its session folder (GCS, raylet, log
monitor...), and Ray processes (titled ``ray::``: agents, workers) that hold a file of that folder open (their
logs), so neither another cluster on this host nor someone reading the logs is hit.  (``RAY_RAYLET_PID`` in a
process's environment would name its raylet, but setting the ``ray::`` title may overwrite it in /proc.)  Linux only
(it reads ``/proc``); elsewhere it does nothing.  It imports nothing from foveal or Ray, so that it starts fast and
from any folder.
"""
from __future__ import annotations

import os
import signal
import sys
import time

GRACE_SECONDS = 3.0


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:  # gone, or another user's
        return b""


def _holds_open(pid: str, folder: str) -> bool:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith(folder):
                return True
        except OSError:
            continue
    return False


def cluster_pids(session_dir: str) -> set[int]:
    """The live processes of the cluster whose session folder is ``session_dir``."""
    folder = session_dir.rstrip("/") + "/"
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        cmdline = _read(f"/proc/{pid}/cmdline")
        if int(pid) != os.getpid() and (folder[:-1].encode() in cmdline
                                        or cmdline.startswith(b"ray::") and _holds_open(pid, folder)):
            found.add(int(pid))
    return found


def _signal(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:  # already gone
            pass


def main(session_dir: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the driver's to handle; the pipe tells us the rest
    if not os.path.isdir("/proc"):
        return 0
    while sys.stdin.buffer.read(4096):  # the driver never writes: this returns b"" when it has exited
        pass
    pids = cluster_pids(session_dir)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = cluster_pids(session_dir)
    _signal(pids, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
