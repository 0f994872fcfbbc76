"""Stops what is left of the Ray cluster a foveal driver started, once that driver is gone, however it died.

``python _ray_reaper.py DRIVER_PID`` is started by :mod:`foveal.batch.on_ray` just before ``ray.init`` starts a
local cluster, with a pipe from the driver on its stdin; once ``ray.init`` has returned, the driver writes the
cluster's session folder into it.  The kernel closes that pipe when the driver exits, even by SIGKILL, and the
reaper then stops the cluster's processes.  Ray makes its head processes (GCS, raylet...) die with the driver, but
not the agents the raylet started: after a SIGKILL, or a Ctrl-C while ``ray.init`` was still starting them, they
stayed up for a minute or more, retrying the dead GCS.

Only that cluster's processes are touched: those whose command line names its session folder (GCS, raylet, log
monitor...), and Ray processes (titled ``ray::``: agents, workers) that hold a file of that folder open (their
logs), so neither another cluster on this host nor someone reading the logs is hit.  When the driver died before
it could name the folder, the folder is the one Ray named after the driver, ``session_<date>_<DRIVER_PID>``, dated
since the reaper started (an older cluster started by a process that had the same pid is not ours).
(``RAY_RAYLET_PID`` in a process's environment would name its raylet, but setting the ``ray::`` title may
overwrite it in /proc.)  Linux only (it reads ``/proc``); elsewhere it does nothing.  It imports nothing from
foveal or Ray, so that it starts fast and from any folder.
"""
from __future__ import annotations

import datetime
import os
import re
import signal
import sys
import time

GRACE_SECONDS = 3.0
#: How much earlier than the reaper's start a session folder named after the driver may be dated (clock steps).
SLACK_SECONDS = 60.0


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:  # gone, or another user's
        return b""


class Cluster:
    """Recognises paths inside one cluster's session folder: ``folder`` when known, else (see the module) the
    folder Ray names after ``driver``, dated at or after ``since``."""

    def __init__(self, driver: int, folder: str = "", since: datetime.datetime | None = None) -> None:
        self.folder = folder.rstrip("/").encode()
        self.since = since or datetime.datetime.min
        self.named = re.compile(rb"/session_(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+)_%d(?![0-9])" % driver)

    def names(self, text: bytes) -> bool:
        if self.folder:
            return self.folder + b"/" in text + b"/"
        for match in self.named.finditer(text):
            try:  # Ray dates it in local time, as datetime.today()
                if datetime.datetime.strptime(match.group(1).decode(), "%Y-%m-%d_%H-%M-%S_%f") >= self.since:
                    return True
            except ValueError:
                continue
        return False


def _holds_open(pid: str, cluster: Cluster) -> bool:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if cluster.names(os.fsencode(os.readlink(f"/proc/{pid}/fd/{name}"))):
                return True
        except OSError:
            continue
    return False


def cluster_pids(cluster: Cluster) -> set[int]:
    """The live processes of ``cluster``."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        cmdline = _read(f"/proc/{pid}/cmdline")
        if int(pid) != os.getpid() and (cluster.names(cmdline)
                                        or cmdline.startswith(b"ray::") and _holds_open(pid, cluster)):
            found.add(int(pid))
    return found


def _signal(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:  # already gone
            pass


def main(driver: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the driver's to handle; the pipe tells us the rest
    since = datetime.datetime.now() - datetime.timedelta(seconds=SLACK_SECONDS)
    if not os.path.isdir("/proc"):
        return 0
    said = b""
    while chunk := sys.stdin.buffer.read(4096):  # returns b"" once the driver has exited
        said += chunk
    cluster = Cluster(driver, os.fsdecode(said.strip()), since)
    pids = cluster_pids(cluster)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = cluster_pids(cluster)
    _signal(pids, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
