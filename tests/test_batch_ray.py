"""foveal.batch on a real local Ray cluster (loopback): the same rows as one process, failures, kills, resume.

One cluster runs in this process (``ray.init`` with 2 CPUs, a small object store and its own temp folder) for most
tests; one test starts ``ray start --head`` on 127.0.0.1 with its own temp folder and ports and has the CLI join it
by address. Each test stops only the processes of its own cluster, found by that temp folder or by descent from this
process, never by name (``ray stop``) or title: a cluster someone else runs on this host stays up. Every wait is
bounded.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

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
# Without RAY_ADDRESS: a test names the cluster it means, and a user's variable must not lead it to theirs.
ENV = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
       "PYTHONPATH": os.pathsep.join(filter(None, [FOVEAL_PATH, os.environ.get("PYTHONPATH")])),
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


def assert_no_ray_data_lines(err: str) -> None:
    """Ray Data's own console lines (each run's start, plan and end; "Progress bars disabled") are kept off the
    command's stderr; they stay in the session's log."""
    assert "streaming_executor" not in err and "Progress bars disabled" not in err, err[-2000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*argv: object, env: dict[str, str] = ENV, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "foveal", "-q", "score", *map(str, argv)], env=env,
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


def short_temp_dir() -> str:
    """A Ray temp folder of this test's own; short, as Ray's socket paths under it must fit in 107 bytes."""
    return tempfile.mkdtemp(prefix="fvray-", dir="/tmp")


@pytest.mark.slow
def test_cli_joins_a_ray_start_head_cluster_by_address(creatives, single, tmp_path):
    temp_dir = short_temp_dir()
    port = free_port()
    # Every port with a fixed default gets a free one, so that a cluster already on this host is no obstacle.
    names = ["dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
             "metrics-export-port", "node-manager-port", "object-manager-port"]
    from ray._private.utils import get_ray_client_dependency_error

    if get_ray_client_dependency_error() is None:  # a client server (default port 10001) runs only with ray[client]
        names.append("ray-client-server-port")
    ports = [f"--{name}={free_port()}" for name in names]
    try:
        start = subprocess.run(  # started in its own folder: its workers read relative paths from there
            [RAY_CLI, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), *ports,
             "--temp-dir", temp_dir, "--num-cpus", "2", "--object-store-memory", str(80 * 2**20),
             "--include-dashboard", "false", "--disable-usage-stats"],
            env=ENV, capture_output=True, text=True, timeout=120, cwd=temp_dir)
        assert start.returncode == 0, start.stderr[-2000:]
        # Relative OUT and store, from the driver's folder: the actors wrote maps and recorded creatives relative to
        # the folder 'ray start' ran in (and read norms and element folders from there), with exit 0.
        proc = cli(creatives, "-o", "out", "--ray", f"127.0.0.1:{port}", "--actors", "2", "--no-report", "--maps",
                   "--db", "sqlite:///store.db", cwd=tmp_path)
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == 1 and "c007" in err and err.count("foveal: error:") == 1, err[-2000:]
        assert_no_ray_data_lines(err)
        assert_same_tables(tmp_path / "out", single)
        assert len(list((tmp_path / "out" / "maps").glob("*.npy"))) == N - 1
        assert not (Path(temp_dir) / "out").exists() and not (Path(temp_dir) / "store.db").exists()
        from foveal.store import Store

        with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
            assert store.counts()["predictions"] == N - 1
    finally:
        stop_processes(processes_of_cluster(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:  # gone, or another user's
        return b""


def processes_of_cluster(temp_dir: str) -> set[int]:
    """The processes of the cluster whose Ray temp folder is ``temp_dir``: those whose command line names it
    (GCS, raylet...) and Ray processes (``ray::`` agents, workers) holding one of its files (their logs) open."""
    def holds_open(pid: str) -> bool:
        try:
            return any(os.readlink(fd).startswith(temp_dir) for fd in Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            return False

    return {int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
            if temp_dir.encode() in (cmdline := _read(f"/proc/{pid}/cmdline"))
            or cmdline.startswith(b"ray::") and holds_open(pid)}


def stop_processes(pids: set[int], grace_s: float = 10) -> None:
    """SIGTERM ``pids``, then SIGKILL those still there after ``grace_s``."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, signum)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (pids := {p for p in pids if alive(p)}):
            time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rpartition(b")")[2].split()[0] != b"Z"


def descendants(root: int) -> set[int]:
    """The processes below ``root`` (children, their children...)."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            parents[int(pid)] = int(stat.rpartition(b")")[2].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(scope="module")
def cluster() -> str:
    """A Ray cluster in this process: 2 CPUs, 80 MiB object store, no dashboard, its own temp folder; its GCS
    address. ``address="local"``: without it ray.init joins RAY_ADDRESS or the last 'ray start' on this host."""
    keys = ("PYTHONPATH", "RAY_memory_monitor_refresh_ms", "RAY_AUTH_MODE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: ENV[k] for k in keys})  # the cluster's workers inherit them
    temp_dir = short_temp_dir()
    try:
        ray.init(address="local", num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False,
                 log_to_driver=False, _temp_dir=temp_dir)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
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
    assert_no_ray_data_lines(err)
    written = journal.read_text().count("\n")
    summary = run_batch(read_inputs(creatives), out, Engine(), BatchOptions(maps=True))
    assert summary.skipped == written and summary.scored + summary.skipped == N - 1 and summary.failed == 1
    assert_same_tables(out, single)


@pytest.mark.slow
def test_cli_sigkilled_on_its_own_cluster_leaves_no_ray_process(cluster, creatives, tmp_path):
    """SIGKILL to ``foveal score --ray`` alone (not its group): Ray kills its head processes with it, but the
    raylet's agents stayed up a minute or more; foveal's reaper stops every process of that cluster in seconds.
    RAY_ADDRESS names another cluster (this process's): ``--ray`` still starts its own (ray.init without an
    address would join that one)."""
    out = tmp_path / "out"
    proc = cli(creatives, "-o", out, "--ray", "--actors", "1", "--no-report", "--batch-size", "2", "--commit-every",
               "2", env={**ENV, "RAY_ADDRESS": cluster})
    try:
        _wait_for_commits(proc, out / "scores.journal", lines=2)
        ours = descendants(proc.pid)
        assert any(_read(f"/proc/{pid}/cmdline").startswith(b"ray::") for pid in ours), "it started no cluster"
        proc.kill()
    finally:
        _, err = proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (left := {pid for pid in ours if alive(pid)}):
        time.sleep(0.2)
    try:
        assert not left, ([_read(f"/proc/{pid}/cmdline")[:30] for pid in left], err[-3000:])
    finally:
        stop_processes(left)


def _agents_started(proc: subprocess.Popen) -> bool:
    """The raylet has started its agents: ray.init is waiting for the node, its core worker not made yet."""
    agents = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")
    return any(_read(f"/proc/{pid}/cmdline").startswith(agents) for pid in descendants(proc.pid))


def _core_worker_started(proc: subprocess.Popen) -> bool:
    """The driver has opened its core worker's log (the worker's first act): ray.init is making it, and with it
    installs Ray's C++ crash handler, until ray.init returns."""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{proc.pid}/fd").iterdir()]
    except OSError:  # gone, or a descriptor closed meanwhile: look again
        return False
    return any("/python-core-driver-" in link for link in links)


def _once_ray_starts(creatives, out: Path, stop: Callable[[subprocess.Popen], None],
                     when: Callable[[subprocess.Popen], bool] = _agents_started,
                     after_s: float = 0.0) -> tuple[int, str]:
    """Run the CLI on its own cluster, ``stop`` it ``after_s`` after ``when`` it holds, while ray.init is still
    starting that cluster (by default: its agents up, the call not yet returned), check that no process of the
    cluster is left; its exit status and stderr."""
    from foveal.batch._ray_reaper import Cluster, cluster_pids

    proc = cli(creatives, "-o", out, "--ray", "--actors", "1", "--no-report")
    deadline = time.monotonic() + 60
    try:
        while not when(proc):
            assert proc.poll() is None and time.monotonic() < deadline, f"{when.__name__} never held"
            time.sleep(0.002)
        time.sleep(after_s)
        ours = descendants(proc.pid)
        stop(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (left := cluster_pids(Cluster(proc.pid)) | {p for p in ours if alive(p)}):
        time.sleep(0.2)
    try:
        assert not left, [_read(f"/proc/{pid}/cmdline")[:40] for pid in left]
    finally:
        stop_processes(left)
    return proc.returncode, err


@pytest.mark.slow
def test_cli_killed_while_ray_starts_its_cluster_leaves_no_ray_process(creatives, tmp_path):
    """Killed while ray.init was still starting the cluster: the reaper started only after ray.init returned, so
    the agents stayed up a minute or more."""
    _once_ray_starts(creatives, tmp_path / "out", subprocess.Popen.kill)


@pytest.mark.slow
def test_cli_terminated_while_ray_starts_its_cluster_says_so_and_stops_it(creatives, tmp_path):
    """ray.init put in its own SIGTERM handler (a bare sys.exit(15)) until it returned: a SIGTERM meanwhile ended the
    run with status 15 and no message, once with a C++ stack dump."""
    status, err = _once_ray_starts(creatives, tmp_path / "out", subprocess.Popen.terminate)
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert status == 143 and last == "foveal: terminated", (status, err[-2000:])


@pytest.mark.slow
@pytest.mark.parametrize("signum, after_s", [(signal.SIGTERM, 0.0), (signal.SIGTERM, 0.05), (signal.SIGTERM, 0.2),
                                             (signal.SIGINT, 0.0), (signal.SIGINT, 0.1)])
def test_cli_stopped_while_ray_makes_its_core_worker_ends_cleanly(creatives, tmp_path, signum, after_s):
    """A SIGTERM while ray.init made the driver's core worker met Ray's C++ crash handler: a stack dump, then Ray's
    abort (status -6) with the cluster half up; a Ctrl-C there a segfault (-11) after its line. Both are held until
    ray.init returns, then end the run as anywhere else: its one line, 143 or 130, no process of the cluster left."""
    status, said = (143, "foveal: terminated") if signum == signal.SIGTERM else (130, "foveal: interrupted")
    got, err = _once_ray_starts(creatives, tmp_path / "out", lambda proc: proc.send_signal(signum),
                                when=_core_worker_started, after_s=after_s)
    assert got == status and err.strip() == said, (got, err[-2000:])


HOLD_SCRIPT = """
import os, signal, subprocess, sys, time
from foveal.batch.on_ray import _signals_held
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(time.monotonic()))
with _signals_held(hold_s=float(sys.argv[1])):
    os.kill(os.getpid(), signal.SIGTERM)
    child = subprocess.run(["grep", "^SigBlk", "/proc/self/status"], preexec_fn=lambda: None, capture_output=True,
                           text=True).stdout
    start = time.monotonic()
    while time.monotonic() - start < 1.5:  # ray.init, still starting
        time.sleep(0.01)
    inside = list(got)
print(len(inside), len(got), round(inside[0] - start, 2) if inside else None, int(child.split()[1], 16) >> 14 & 1)
"""


@pytest.mark.parametrize("hold_s", [30.0, 0.3])
def test_a_signal_is_held_while_ray_starts_and_let_through_when_it_is_stuck(hold_s):
    """_signals_held (around ray.init): a SIGTERM waits for the block's end, but no more than hold_s; a process
    started meanwhile (Ray's GCS, raylet) has it unblocked."""
    # One thread: a BLAS pool started at import, with the signals unblocked, would take the signal instead.
    out = subprocess.run([sys.executable, "-c", HOLD_SCRIPT, str(hold_s)], env={**ENV, "OPENBLAS_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=60)
    held_inside, handled, after_s, child_blocks = out.stdout.split()
    assert child_blocks == "0" and handled == "1", out
    if hold_s > 1.5:
        assert held_inside == "0", out
    else:
        assert held_inside == "1" and float(after_s) < 1.0, out


def test_a_misspelt_device_is_refused_before_a_cluster_starts(creatives, tmp_path):
    """It was taken for a GPU device, and refused as "needs GPUs" only once a cluster had started."""
    from foveal import InputError
    from foveal.batch.on_ray import EngineSpec

    with pytest.raises(InputError, match="unknown device/backend 'bogus'"):
        run_batch_on_ray(read_inputs(creatives), tmp_path / "out", EngineSpec(device="bogus"))
    assert not (tmp_path / "out").exists()


def test_actors_that_cannot_start_are_named_as_the_cause():
    """Actors that died in their constructor (foveal not importable on the workers) ended the run with "the actor
    died 4 times (a creative that crashes the engine?)", blaming the creatives."""
    import traceback

    from ray.exceptions import ActorDiedError, RayTaskError

    from foveal.batch.on_ray import _results

    try:
        raise ModuleNotFoundError("No module named 'foveal'")
    except ModuleNotFoundError as exc:
        died = ActorDiedError(RayTaskError("MapWorker.__init__", traceback.format_exc(), exc))

    class Dataset:  # hands out what Ray Data's iterator raised
        def iter_batches(self, **_):
            raise died
            yield

    with pytest.raises(foveal.FovealError) as info:
        next(_results(Dataset(), {}, 0.0))
    message = str(info.value)
    assert message.startswith("the Ray batch's actors could not start (ModuleNotFoundError: No module named "
                              "'foveal'); every node needs foveal") and "\n" not in message, message


def test_gpu_device_on_a_cluster_without_gpus_is_refused(cluster, creatives, tmp_path):
    from foveal import InputError
    from foveal.batch.on_ray import EngineSpec

    with pytest.raises(InputError, match="needs GPUs but the Ray cluster has none"):
        run_batch_on_ray(read_inputs(creatives), tmp_path / "out", EngineSpec(device="cuda"), address=None)
    assert not (tmp_path / "out").exists()


def test_an_actor_larger_than_every_node_is_refused(cluster, creatives, tmp_path):
    """An actor reserving more CPUs than any node has never starts: Ray Data waited for it without end."""
    from foveal import InputError

    raised: list[BaseException] = []

    def run() -> None:
        try:
            run_batch_on_ray(read_inputs(creatives), tmp_path / "out", address=None, cpus_per_actor=3)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)  # bounded: the old code never returned
    thread.start()
    thread.join(timeout=60)
    assert raised and isinstance(raised[0], InputError), raised
    assert str(raised[0]) == ("an actor needs 3 CPUs on one node, but no node of the Ray cluster has that many "
                              "(the largest has 2 CPUs); lower cpus_per_actor, or add larger nodes")
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


@pytest.mark.parametrize("address", ["127.0.0.1", "", "ray://:6379", "host:port"])
def test_an_address_without_host_and_port_is_refused_in_one_line(creatives, tmp_path, address):
    """ray.init refused it as 'Invalid address format' and the CLI added a hint about token authentication."""
    proc = subprocess.run([sys.executable, "-m", "foveal", "score", str(creatives), "-o", str(tmp_path / "out"),
                           "--ray", address], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": FOVEAL_PATH})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"foveal: error: {address!r} is not a Ray cluster's address; give "
                                                "HOST:PORT as 'ray start --head' printed it (or ray://HOST:PORT), "
                                                "'local' to start one, or 'auto'"]


def test_auto_with_a_ray_address_nobody_listens_on_is_refused_at_once(creatives, tmp_path):
    """--ray auto joins the cluster RAY_ADDRESS names: a dead one is refused in seconds, as a named address is."""
    port = free_port()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "foveal", "score", str(creatives), "-o", str(tmp_path / "out"),
                           "--ray", "auto"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": FOVEAL_PATH, "RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert proc.returncode == 1 and time.monotonic() - started < 30
    assert proc.stderr.strip().splitlines() == [f"foveal: error: cannot reach a Ray cluster at 127.0.0.1:{port} "
                                                "(RAY_ADDRESS) (Connection refused); start one there with 'ray start "
                                                "--head' or give the address it printed"]


@pytest.mark.parametrize("reply", [b"HTTP/1.0 400 Bad request\r\n\r\n", None])
def test_an_address_that_is_not_ray_is_refused_at_once(creatives, tmp_path, reply):
    """A port that takes connections but is no Ray GCS (a web server; a service that never answers): ray.init
    retried it 20 times at about 40 s each; the CLI answers in seconds with one line."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(60)
        for _ in range(5):  # bounded: the probe, and ray.init's first tries on the old code
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            if reply is not None:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "foveal", "score", str(creatives), "-o", str(tmp_path / "out"),
                               "--ray", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=90,
                              env={**os.environ, "PYTHONPATH": FOVEAL_PATH})
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    assert proc.returncode == 1 and time.monotonic() - started < 30
    assert proc.stderr.strip().splitlines() == [f"foveal: error: 127.0.0.1:{port} is not a Ray cluster (it does not "
                                                "answer as a Ray GCS does); give the address 'ray start --head' "
                                                "printed (port 6379 unless --port said otherwise)"]
    assert not (tmp_path / "out").exists()


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


def test_ray_data_errors_stay_off_the_console_unless_verbose():
    """Ray Data logs a failed run's traceback at ERROR before the command says what happened in one line (a batch
    whose actor kept dying): its console lines are off, its log file keeps them, and --verbose shows them."""
    import io

    from foveal.cli.score import quiet_ray_data

    pytest.importorskip("ray.data")
    # A console handler of our own: the one Ray Data installs writes to whatever stderr was when it was made, which
    # in a long test session is an earlier test's capture.
    console = io.StringIO()
    handler = logging.StreamHandler(console)
    logger = logging.getLogger("ray.data")
    handlers = logger.handlers
    levels = [h.level for h in handlers]
    logger.addHandler(handler)
    log = logging.getLogger("ray.data._internal.execution.streaming_executor_state")
    try:
        quiet_ray_data(verbose=False)
        log.error("An exception was raised from a task\nTraceback (most recent call last):")
        assert "Traceback" not in console.getvalue()
        quiet_ray_data(verbose=True)
        log.error("An exception was raised from a task\nTraceback (most recent call last):")
        assert "Traceback" in console.getvalue()
    finally:
        logger.removeHandler(handler)
        for h, level in zip(handlers, levels):
            h.setLevel(level)


@pytest.mark.slow
def test_an_actor_that_dies_on_every_try_ends_the_run_then_it_resumes(cluster, creatives, single, tmp_path):
    """A creative that kills every actor it reaches (a crash, out of memory), made here by killing each actor as it
    scores: Ray restarted actors and retried the batch without end; the run now stops with one FovealError after a
    few tries, keeps what it committed, and a rerun completes it."""
    from foveal.batch.on_ray import ACTOR_DEATHS

    killed: list[int] = []
    stop = threading.Event()

    def kill_every_actor() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline and len(killed) < 3 * (ACTOR_DEATHS + 1):
            for pid in _actor_pids("_ScoreActor)).submit"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_every_actor, daemon=True)
    killer.start()
    out = tmp_path / "out"
    try:
        with pytest.raises(foveal.FovealError, match="died 4 times") as info:
            run_batch_on_ray(read_inputs(creatives), out, address=None, actors=1, batch_size=4)
    finally:
        stop.set()
        killer.join(timeout=5)
    assert "\n" not in str(info.value)
    assert len(killed) < 3 * (ACTOR_DEATHS + 1), "the run went on after every try of its batch had failed"
    summary = run_batch_on_ray(read_inputs(creatives), out, address=None, actors=2, batch_size=4)
    assert summary.scored + summary.skipped == N - 1
    assert_same_tables(out, single)


def test_a_refusal_that_stops_the_run_in_an_actor_is_one_line_as_without_ray(cluster, creatives, tmp_path):
    """A report that cannot be written (a full disk; here a file where OUT/reports should be) was 'the actor died 4
    times ... a creative that crashes the engine?': Ray hands the driver only a traceback's text."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "reports").write_text("a file where the reports go")
    with pytest.raises(foveal.FovealError) as info:
        run_batch_on_ray(read_inputs(creatives), out, options=BatchOptions(reports=True), address=None, actors=1,
                         batch_size=4)
    assert str(info.value).startswith(f"cannot write {out / 'reports'}/") and "\n" not in str(info.value), info.value


def test_a_bad_store_or_norms_format_is_refused_before_a_cluster_starts(creatives, tmp_path):
    """Checked only in each actor's constructor: ~190 lines of worker tracebacks, 'the actor died 4 times', and a
    half-made OUT; without Ray, one line and no OUT."""
    (tmp_path / "notdb.db").write_text("garbage")
    started = time.monotonic()
    proc = cli(creatives, "-o", tmp_path / "out", "--ray", "--no-report", "--db", f"sqlite:///{tmp_path / 'notdb.db'}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.count("\n") == 1 and err.startswith("foveal: error: "), err[-2000:]
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    assert time.monotonic() - started < 30  # no cluster was started for it


def _actor_pids(name: str) -> list[int]:
    """Processes of this process's cluster (started below it: raylet, then workers) whose title names ``name``
    (Ray sets ``ray::MapWorker(...)``); an actor of another cluster on this host has the same title."""
    return [pid for pid in descendants(os.getpid())
            if _read(f"/proc/{pid}/cmdline").startswith(b"ray::") and name.encode() in _read(f"/proc/{pid}/cmdline")]


def test_a_cpu_actor_gets_as_many_kernel_threads_as_its_cpus(cluster):
    """The native pool is sized at import, which an actor's process does to unpickle its class: setting
    FOVEAL_NUM_THREADS when the engine was built left every actor the node's every CPU in kernel threads."""
    from foveal import cpu
    from foveal.batch.on_ray import thread_env

    probe = ray.remote(cpu.thread_count)  # the pool's size, as the actor's process has it
    assert ray.get(probe.options(num_cpus=1, **thread_env(1)).remote(), timeout=120) == 1
