"""foveal.batch on a real local Ray cluster (loopback): the same rows as one process, failures, kills, resume.

One cluster runs in this process (``ray.init`` with 2 CPUs and a small object store) for most tests; one test
starts ``ray start --head`` on 127.0.0.1 and has the CLI join it by address (``ray stop`` in its teardown).
Every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import foveal
from foveal import Engine
from foveal.batch import BatchOptions, read_inputs, run_batch

from test_batch import csv_rows, make_creatives, tables

ray = pytest.importorskip("ray", reason='needs Ray: pip install "foveal[ray]"')
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
from foveal.batch.on_ray import run_batch_on_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# where foveal is imported from: the installed package in CI, python/ in a checkout
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [FOVEAL_PATH, os.environ.get("PYTHONPATH")])),
       # Loopback-only test clusters: no memory monitor killing workers on this shared VM, no token files.
       "RAY_memory_monitor_refresh_ms": "0", "RAY_AUTH_MODE": "disabled", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
N = 48
RAY_CLI = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"


def rows_by_key(out: Path) -> dict[tuple[str, str], dict]:
    return {(r["creative_id"], r["element"]): r for r in tables(out)[0].to_pylist()}


def assert_same_tables(got: Path, want: Path) -> None:
    """Same element and creative rows (shares to 1e-6), same CSV rows, each creative exactly once."""
    a, b = rows_by_key(got), rows_by_key(want)
    assert sorted(a) == sorted(b) and len(a) == tables(got)[0].num_rows
    for key, row in a.items():
        for column, value in row.items():
            if isinstance(value, float):
                assert value == pytest.approx(b[key][column], abs=1e-6), (key, column)
            else:
                assert value == b[key][column], (key, column)
    creatives = tables(got)[1].column("creative_id").to_pylist()
    assert sorted(creatives) == sorted(tables(want)[1].column("creative_id").to_pylist())
    assert len(creatives) == len(set(creatives))
    assert sorted((r["creative_id"], r["element"]) for r in csv_rows(got)) == sorted(b)
    assert (got / "scores.journal").read_text().count("\n") == len(creatives)
    assert not list(got.rglob("*.part"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*argv: object, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "foveal", "-q", "score", *map(str, argv)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def creatives(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray") / "in"
    make_creatives(folder, N, size=64)
    (folder / "c007.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # one failed image
    return folder


@pytest.fixture(scope="module")
def single(creatives, tmp_path_factory) -> Path:
    """The reference: the library batch in this process."""
    out = tmp_path_factory.mktemp("single") / "out"
    summary = run_batch(read_inputs(creatives), out, Engine(), BatchOptions(maps=True))
    assert (summary.scored, summary.failed) == (N - 1, 1)
    return out


@pytest.mark.slow
def test_cli_joins_a_ray_start_head_cluster_by_address(creatives, single, tmp_path):
    port = free_port()
    start = subprocess.run(
        [RAY_CLI, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--object-store-memory", str(80 * 2**20), "--include-dashboard", "false", "--disable-usage-stats"],
        env=ENV, capture_output=True, text=True, timeout=120)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        out = tmp_path / "out"
        proc = cli(creatives, "-o", out, "--ray", f"127.0.0.1:{port}", "--actors", "2", "--no-report")
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == 1 and "c007" in err and err.count("foveal: error:") == 1, err[-2000:]
        assert_same_tables(out, single)
    finally:
        subprocess.run([RAY_CLI, "stop", "--force"], env=ENV, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def cluster() -> str:
    """A Ray cluster in this process: 2 CPUs, 80 MiB object store, no dashboard; its GCS address."""
    keys = ("PYTHONPATH", "RAY_memory_monitor_refresh_ms", "RAY_AUTH_MODE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: ENV[k] for k in keys})  # the cluster's workers inherit them
    try:
        ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _wait_for_commits(proc, journal: Path, lines: int = 4, timeout_s: float = 240) -> None:
    """Until the batch ``proc`` has committed ``lines`` journal lines; it must still be running then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= lines:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"finished before it could be stopped: {proc.communicate()[1][-2000:]}"


def test_driver_killed_midway_then_rerun_equals_single_process(cluster, creatives, single, tmp_path):
    """The CLI joins the cluster, is SIGKILLed after a few commits; the library reruns on the same cluster: the
    tables equal the single-process batch (shares to 1e-6, same rows), each creative once, the bad image in the
    errors table."""
    out = tmp_path / "out"
    proc = cli(creatives, "-o", out, "--ray", cluster, "--actors", "2", "--no-report", "--maps", "--batch-size", "2",
               "--commit-every", "2", start_new_session=True)
    journal = out / "scores.journal"
    try:
        _wait_for_commits(proc, journal)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and anything it started, as a power cut would
    finally:
        proc.communicate(timeout=30)
    written = journal.read_text().count("\n")
    assert 4 <= written < N - 1

    summary = run_batch_on_ray(read_inputs(creatives), out, options=BatchOptions(maps=True), address=None,
                               actors=2, batch_size=8)
    assert summary.skipped >= written and summary.scored + summary.skipped == N - 1 and summary.failed == 1
    assert set(summary.seconds) >= {"decode", "predict", "score", "commit", "wall"}
    assert_same_tables(out, single)
    errors = pq.read_table(out / "errors.parquet").to_pylist()
    assert [e["creative_id"] for e in errors] == ["c007"] and errors[0]["graph_sha256"]
    for name in ("c000", "c031", "c047"):
        np.testing.assert_allclose(np.load(out / "maps" / f"{name}.npy"), np.load(single / "maps" / f"{name}.npy"),
                                   atol=1e-9)


@pytest.mark.slow
def test_cli_terminated_on_its_own_cluster_then_resumed_without_ray(creatives, single, tmp_path):
    """SIGTERM (a scheduler's stop) to ``foveal score --ray``, which started its own cluster: one last line and exit
    143, as without Ray (ray.init had made SIGTERM a bare exit 15); the single-process batch then finishes the folder
    with the reference's rows."""
    out = tmp_path / "out"
    proc = cli(creatives, "-o", out, "--ray", "--actors", "1", "--no-report", "--maps", "--batch-size", "2",
               "--commit-every", "2")
    journal = out / "scores.journal"
    try:
        _wait_for_commits(proc, journal)
        proc.send_signal(signal.SIGTERM)
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == "foveal: terminated", err[-2000:]
    written = journal.read_text().count("\n")
    summary = run_batch(read_inputs(creatives), out, Engine(), BatchOptions(maps=True))
    assert summary.skipped == written and summary.scored + summary.skipped == N - 1 and summary.failed == 1
    assert_same_tables(out, single)


def test_gpu_device_on_a_cluster_without_gpus_is_refused(cluster, creatives, tmp_path):
    from foveal import InputError
    from foveal.batch.on_ray import EngineSpec

    with pytest.raises(InputError, match="needs GPUs but the Ray cluster has none"):
        run_batch_on_ray(read_inputs(creatives), tmp_path / "out", EngineSpec(device="cuda"), address=None)
    assert not (tmp_path / "out").exists()


def test_an_address_nobody_listens_on_is_refused_at_once(creatives, tmp_path):
    """ray.init retried such an address for minutes; the CLI answers in seconds with one line."""
    with socket.socket() as s:  # a loopback port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "foveal", "score", str(creatives), "-o", str(tmp_path / "out"),
                           "--ray", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": FOVEAL_PATH})
    assert proc.returncode == 1 and time.monotonic() - started < 60
    assert proc.stderr.strip().splitlines() == [f"foveal: error: cannot reach a Ray cluster at 127.0.0.1:{port} "
                                                "(Connection refused); start one there with 'ray start --head' or "
                                                "give the address it printed"]


@pytest.mark.slow
def test_worker_killed_midway_each_creative_once(cluster, creatives, single, tmp_path):
    """SIGKILL one actor process while it scores: Ray restarts it and retries its batch; nothing is doubled."""
    killed: list[int] = []

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for pid in _actor_pids("_ScoreActor"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor, daemon=True)
    killer.start()
    out = tmp_path / "out"
    summary = run_batch_on_ray(read_inputs(creatives), out, address=None, actors=2, batch_size=2, commit_every=4)
    killer.join(timeout=5)
    assert killed, "no actor process was found to kill"
    assert (summary.scored, summary.failed) == (N - 1, 1)
    assert_same_tables(out, single)


def _actor_pids(name: str) -> list[int]:
    """Processes of this cluster's actors whose title names ``name`` (Ray sets ``ray::MapWorker(...)``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::") and name in title and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids
