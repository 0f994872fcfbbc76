"""The batch on a Ray cluster: Ray Data feeds the creatives to an actor pool, one Engine per actor.

Each actor runs :class:`~foveal.batch.Scorer` (decode + predict + score, reports and maps when asked) on batches
of creatives; the results stream back to this process, the only writer of the tables, which commits them to the
same :class:`~foveal.batch.BatchStore` as the single-process batch.  So the tables, resume and exactly-once rules
are the same: Ray restarts a killed actor and retries its batch, and a creative that arrives twice is committed
once.  Actors read the images themselves: on a multi-node cluster the inputs (and ``OUT``, when reports or maps
are asked) must be on storage every node mounts at the same path.  Needs ``pip install "foveal[ray]"``.
"""
from __future__ import annotations

import contextlib
import numbers
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..backends import resolve
from ..errors import FovealError, InputError, checked_count
from ..fileio import checked_path
from ..imageio import DEFAULT_MAX_PIXELS
from .inputs import BatchItem
from .run import COMMIT_EVERY, BatchSummary, check_items, commit_all
from .scorer import BatchOptions, CreativeResult, Scorer, absolute_options, open_options
from .store import BatchStore, batch_settings, engine_identity

STAGES = ("decode", "predict", "score")
CPU_DEVICES = ("cpu", "onnxruntime")
#: The client connection preface and an empty SETTINGS frame; the type byte of the frame a server answers with.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
HTTP2_SETTINGS = 0x04
#: Times a batch is retried after the actor scoring it died.
ACTOR_DEATHS = 3
#: Signals held while ray.init runs (see _signals_held), and for how long at most.
HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HOLD_SECONDS = 30.0
#: The signal mask from before holding, while signals are held (read in forked children).
_mask_before: set[signal.Signals] | None = None


@dataclass(frozen=True)
class EngineSpec:
    """How each actor builds its :class:`~foveal.Engine` (an engine itself cannot travel between processes)."""

    model: str = "default"
    device: str = "cpu"
    precision: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: ONNX Runtime and foveal kernel threads on the CPU (None: every CPU the process may use).
    threads: int | None = None

    def build(self):
        from ..engine import Engine

        if self.threads is None:
            return Engine(self.model, device=self.device, precision=self.precision, max_pixels=self.max_pixels)
        return Engine(self.model, device=self.device, precision=self.precision, max_pixels=self.max_pixels,
                      threads=self.threads)


class _ScoreActor:
    """One actor of the pool: an engine, and a Scorer run on each batch Ray Data hands it."""

    def __init__(self, engine: dict[str, Any], options: dict[str, Any], out: str, batch_size: int) -> None:
        self.scorer = Scorer(EngineSpec(**engine).build(), BatchOptions(**options), out, batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [BatchItem(str(c), str(i), str(e) if e else None)
                 for c, i, e in zip(batch["creative_id"], batch["image"], batch["elements"])]
        before = dict(self.scorer.seconds)
        try:
            results = self.scorer.score(items)
        except FovealError as exc:
            # What stops the whole run (a full disk under OUT): Ray would hand the driver only its traceback's text,
            # so it travels as data and the driver raises it, one line as without Ray.
            return {"creative_id": np.array([""], dtype=object), "result": np.array([""], dtype=object),
                    "stop": np.array([str(exc)], dtype=object), **{f"{s}_seconds": np.zeros(1) for s in STAGES}}
        columns = {"creative_id": np.array([r.creative_id for r in results], dtype=object),
                   "result": np.array([r.to_json() for r in results], dtype=object),
                   "stop": np.full(len(results), "", dtype=object)}
        for stage in STAGES:  # spread the batch's stage times over its rows so the driver can sum them
            columns[f"{stage}_seconds"] = np.full(len(results), (self.scorer.seconds[stage] - before[stage])
                                                  / max(len(results), 1))
        return columns


def _identity(engine: dict[str, Any]) -> dict[str, Any]:
    with EngineSpec(**engine).build() as built:  # on a GPU worker: its device memory back before the actors start
        return engine_identity(built)


def _engine_identity(ray, engine: EngineSpec, per_actor: dict[str, Any]) -> dict[str, Any]:
    """The graph the actors will run: built here for the CPU, on a GPU worker otherwise (this host may have none)."""
    if engine.device in CPU_DEVICES:
        return _identity(asdict(replace(engine, threads=None)))
    return ray.get(ray.remote(_identity).options(**per_actor).remote(asdict(engine)))


def run_batch_on_ray(items: Sequence[BatchItem], out: str | Path, engine: EngineSpec = EngineSpec(),
                     options: BatchOptions = BatchOptions(), *, address: str | None = "local",
                     actors: int | None = None, cpus_per_actor: int = 1, gpus_per_actor: float = 1.0,
                     batch_size: int = 16,
                     commit_every: int = COMMIT_EVERY, show_progress: bool = False,
                     init_options: dict[str, Any] | None = None) -> BatchSummary:
    """:func:`~foveal.batch.run_batch` on Ray: the same tables and rules, scored by a pool of actors.

    Args:
        address: ``"local"`` starts a Ray cluster inside this process (stopped at the end); an address
            (``"host:6379"``, ``"auto"``) joins a running one; None uses the Ray this process already initialised.
        actors: size of the actor pool (default: the cluster's GPUs // ``gpus_per_actor`` for a GPU
            ``engine.device`` on a cluster with GPUs, else its CPUs // ``cpus_per_actor``).
        cpus_per_actor: CPUs reserved by each actor (on CPU actors also their ONNX Runtime and kernel threads).
        gpus_per_actor: GPU share of each GPU actor; below 1 packs several actors on a GPU, so that their
            CPU-side decoding and scoring run in parallel.
        init_options: extra ``ray.init`` keywords for ``"local"`` (e.g. ``num_cpus``, ``object_store_memory``).
    """
    ray = _import_ray()
    if not isinstance(engine, EngineSpec):
        raise InputError(f"engine: expected an EngineSpec (each actor builds its Engine), got {type(engine).__name__}")
    resolve(engine.device)  # a misspelt device is refused here, not taken for a GPU one once a cluster is up
    if not isinstance(options, BatchOptions):
        raise InputError(f"options: expected a BatchOptions, got {type(options).__name__}")
    out, options = Path(checked_path(out, "out")).absolute(), absolute_options(options)
    check_items(items, out, options.elements_dir)
    batch_size, commit_every = checked_count(batch_size, "batch_size"), checked_count(commit_every, "commit_every")
    cpus_per_actor = checked_count(cpus_per_actor, "cpus_per_actor")
    if actors is not None:
        actors = checked_count(actors, "actors")
    if isinstance(gpus_per_actor, bool) or not isinstance(gpus_per_actor, numbers.Real) or not 0 < gpus_per_actor <= 1:
        raise InputError(f"gpus_per_actor must be a share of a GPU in (0, 1], got {gpus_per_actor!r}")
    # Checked here, once, before a cluster starts: in the actors a bad store or format is a traceback in each.
    norms, db = open_options(options)
    if db is not None:
        db.close()
    start = time.perf_counter()
    # Before ray.init: a Ctrl-C or a kill while it starts the cluster must not leave its agents running either.
    started, reaper = False, _start_reaper() if address == "local" else None
    try:
        with _signals_held():
            started = _connect(ray, address, init_options or {})
        _name_session(ray, reaper)
        resources = ray.cluster_resources()
        gpu = engine.device not in CPU_DEVICES and resources.get("GPU", 0) >= 1
        if engine.device not in CPU_DEVICES + ("auto",) and not gpu:
            raise InputError(f"device {engine.device!r} needs GPUs but the Ray cluster has none; use device 'cpu' "
                             "(or 'auto'), or add GPU nodes")
        per_actor = {"num_gpus": gpus_per_actor, "num_cpus": cpus_per_actor} if gpu else {"num_cpus": cpus_per_actor}
        _check_fits(ray, per_actor)
        pool = actors or max(1, int(resources["GPU"] / gpus_per_actor if gpu else
                                    resources.get("CPU", 1) // cpus_per_actor))
        if not gpu and engine.threads is None:
            engine = replace(engine, threads=cpus_per_actor)
        if not gpu:
            per_actor.update(thread_env(engine.threads))
        identity = _engine_identity(ray, engine, per_actor)
        warning = None
        if norms is not None:
            warning = norms.check_graph(identity, options.allow_model_mismatch)
        with BatchStore(out, batch_settings(identity, options, items)) as store:
            todo = store.todo(items)
            summary = BatchSummary(out, skipped=len(items) - len(todo), norms_warning=warning)
            seconds = dict.fromkeys(STAGES, 0.0)
            commit = 0.0
            if todo:
                pool = min(pool, -(-len(todo) // batch_size))  # no more actors than blocks to give them
                with warnings.catch_warnings():
                    # Ray Data takes max_task_retries only among its "ray_remote_args", which it calls deprecated
                    # but names no replacement for; without it, it retries a batch whose actor dies without end.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    dataset = _dataset(ray, todo, batch_size).map_batches(
                        _ScoreActor, fn_constructor_kwargs={"engine": asdict(engine), "options": asdict(options),
                                                            "out": str(out), "batch_size": batch_size},
                        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=pool),
                        max_task_retries=ACTOR_DEATHS, **per_actor)
                commit = commit_all(store, _results(dataset, seconds, start), len(todo), commit_every,
                                    show_progress)
            summary.scored = len(store.committed)
        summary.errors = store.errors
        summary.seconds = {**seconds, "commit": commit, "wall": time.perf_counter() - start}
        return summary
    finally:
        if started:
            ray.shutdown()
        _stop_reaper(reaper)


def thread_env(threads: int) -> dict[str, Any]:
    """Ray options that give an actor's process ``threads`` kernel threads: the native pool is sized when foveal is
    imported, which the process does to unpickle its actor class, before any engine is built; setting
    ``FOVEAL_NUM_THREADS`` then (as the engine did) left the pool at every CPU of the node."""
    return {"runtime_env": {"env_vars": {"FOVEAL_NUM_THREADS": str(threads)}}}


def _check_fits(ray, per_actor: dict[str, Any]) -> None:
    """Refuse an actor no node can hold: Ray Data would wait for it to start without end."""
    need = {"CPU": per_actor["num_cpus"], "GPU": per_actor.get("num_gpus", 0)}
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(res.get(k, 0) >= v for k, v in need.items()) for res in nodes):
        return
    largest = max(nodes, key=lambda res: (res.get("GPU", 0) >= need["GPU"], res.get("CPU", 0)), default={})
    wanted = f"{need['CPU']:g} CPUs" + (f" and {need['GPU']:g} GPU" if need["GPU"] else "")
    has = f"{largest.get('CPU', 0):g} CPUs" + (f" and {largest.get('GPU', 0):g} GPUs" if need["GPU"] else "")
    raise InputError(f"an actor needs {wanted} on one node, but no node of the Ray cluster has that many (the largest "
                     f"has {has}); lower cpus_per_actor, or add larger nodes")


def _results(dataset, seconds: dict[str, float], start: float) -> Iterator[CreativeResult]:
    from ray.exceptions import RayError

    batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    while True:
        try:
            batch = next(batches, None)
        except RayError as exc:
            if getattr(exc, "actor_init_failed", False):  # no creative's fault: the actors cannot be made
                raise FovealError(f"the Ray batch's actors could not start ({_last_line(str(exc))}); every node needs "
                                  "foveal and its dependencies installed as on this machine (docs/SCALING.md); "
                                  "nothing was scored") from None
            # Ray restarts a dead actor without end; its batch is retried ACTOR_DEATHS times, so a creative that
            # kills every actor it reaches (a crash, the node out of memory) ends the run instead of looping.
            raise FovealError(f"the Ray batch stopped ({type(exc).__name__}): the actor scoring a batch of creatives "
                              f"died {ACTOR_DEATHS + 1} times (a creative that crashes the engine or exhausts memory?) "
                              "or Ray failed; what was committed is kept: rerun to resume (a smaller batch size "
                              "narrows a culprit down), and see Ray's logs for the cause") from None
        if batch is None:
            return
        stop = next((str(text) for text in batch["stop"] if text), None)
        if stop is not None:
            batches.close()  # now, while Ray is up: collected after its shutdown, it logs errors of its own
            raise FovealError(stop)
        seconds.setdefault("startup", time.perf_counter() - start)
        for stage in STAGES:
            seconds[stage] += float(np.sum(batch[f"{stage}_seconds"]))
        for text in batch["result"]:
            yield CreativeResult.from_json(str(text))


def _dataset(ray, todo: Sequence[BatchItem], batch_size: int):
    """The creatives as Ray Data blocks of ``batch_size`` rows, so every actor gets work from the start."""
    import pyarrow as pa

    blocks = [pa.table({"creative_id": [i.creative_id for i in chunk], "image": [i.image for i in chunk],
                        "elements": [i.elements or "" for i in chunk]})
              for chunk in (todo[s:s + batch_size] for s in range(0, len(todo), batch_size))]
    return ray.data.from_arrow(blocks)


def _last_line(text: str) -> str:
    """The last line of a remote traceback (the error itself), without the terminal colours Ray adds."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"


def _connect(ray, address: str | None, init_options: dict[str, Any]) -> bool:
    """Start or join a cluster; True when this call started Ray (and so must stop it)."""
    if address is None:
        if not ray.is_initialized():
            raise InputError("address=None uses an initialised Ray, but ray.init() was not called")
        return False
    if ray.is_initialized():
        raise InputError("Ray is already initialised in this process; pass address=None to use it")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": "ERROR", "configure_logging": True}
    # "auto" joins the cluster RAY_ADDRESS names when it is set: the same checks apply to it.
    named = os.environ.get("RAY_ADDRESS", "") if address == "auto" else ""
    shown = f"{named} (RAY_ADDRESS)" if named else address
    if address != "local":
        _check_reachable(named or address, shown)
    try:
        if address == "local":
            # "local" explicitly: without an address, ray.init joins the cluster named by RAY_ADDRESS or the last
            # 'ray start' on this host, and would score on (and leave running) a cluster that is not ours.
            ray.init(address="local", **kwargs, **init_options)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if address == "local":
            raise InputError(f"cannot start a Ray cluster: {str(exc).splitlines()[0]}") from None
        hint = ""
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":  # the refusal itself is only in Ray's log lines
            hint = ("; if that cluster uses Ray's token authentication ('ray start' turns it on since Ray 2.59), "
                    "run with RAY_AUTH_MODE=token")
        raise InputError(f"cannot join a Ray cluster at {shown}: {str(exc).splitlines()[0]}{hint}") from None
    return True


@contextlib.contextmanager
def _signals_held(hold_s: float = HOLD_SECONDS) -> Iterator[None]:
    """Hold a SIGTERM or Ctrl-C (SIGINT) that comes while the block runs ``ray.init`` until it has returned, then
    hand it to the handler the caller set (the CLI's: one line, exit 143 or 130, the cluster stopped).

    Let through at once, it hit Ray half-way: ray.init puts in its own SIGTERM handler (a bare ``sys.exit(15)``),
    and the core worker it makes installs Ray's C++ crash handler for SIGTERM, so a SIGTERM while that worker was
    being made printed a stack dump and then, the exit raised inside the half-made worker, ended the process in
    Ray's abort (status -6); a Ctrl-C there ended it in a segfault (-11). Held, the signal is blocked in this thread
    and in the threads ray.init starts (they inherit its mask), and unblocked in the cluster's processes
    (:func:`_unblock_in_child`); at the end the caller's handlers are put back (over Ray's, in C as in Python),
    then the mask, and a held signal arrives. One held for ``hold_s`` (ray.init stuck: a cluster that never
    answers) is let through as before, rather than leave the command deaf to it. A signal without a Python
    handler (a library user's SIGTERM, as a rule) is not held, nor any outside the main thread: Ray's handling stays.
    A thread started earlier that leaves the signals unblocked would still take one (in the CLI none did when
    measured: every thread of the process blocked SIGTERM while the core worker was being made).
    """
    global _mask_before
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {s: h for s in HELD_SIGNALS if callable(h := signal.getsignal(s))} if main_thread else {}
    if not handlers or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    _mask_before = signal.pthread_sigmask(signal.SIG_BLOCK, handlers)
    returned = threading.Event()
    watch = threading.Thread(target=_let_through_after, args=(set(handlers), hold_s, returned),
                             name="foveal-held-signals", daemon=True)
    watch.start()
    try:
        yield
    except SystemExit as exc:
        # let through late: Ray's handler made it a bare exit, the caller's is what it was meant for
        if exc.code == signal.SIGTERM and signal.SIGTERM in handlers:
            handlers[signal.SIGTERM](signal.SIGTERM, None)
        raise
    finally:
        returned.set()
        watch.join()
        _mask_before, mask = None, _mask_before
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a signal held meanwhile arrives here


def _let_through_after(held: set[int], hold_s: float, returned: threading.Event) -> None:
    """Unblock the ``held`` signals in this thread once one has waited ``hold_s``: it is delivered here, and its
    handler (Python's, run by the main thread) interrupts ray.init as without holding."""
    since = None
    while not returned.wait(0.05):
        if not signal.sigpending() & held:
            continue
        since = since or time.monotonic()
        if time.monotonic() - since >= hold_s:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
            return


def _unblock_in_child() -> None:
    """In a process forked while signals are held (the cluster's GCS, raylet...), the mask from before holding:
    else they would inherit the block, and a SIGTERM (Ray's own shutdown, the reaper) would not stop them."""
    if _mask_before is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before)


if hasattr(os, "register_at_fork"):  # POSIX; Ray starts its processes with a preexec_fn, which runs the hook
    os.register_at_fork(after_in_child=_unblock_in_child)


def _start_reaper() -> subprocess.Popen:
    """A process that stops the local cluster this process starts once this process is gone, even after a SIGKILL
    (see :mod:`foveal.batch._ray_reaper`)."""
    # Its own session: a signal to this process's group (a terminal's Ctrl-C, a killpg) must not take it along.
    return subprocess.Popen([sys.executable, "-u", str(Path(__file__).with_name("_ray_reaper.py")), str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)


def _name_session(ray, reaper: subprocess.Popen | None) -> None:
    """Tell the reaper the session folder of the cluster ray.init started (until then it goes by this pid)."""
    if reaper is None:
        return
    try:
        folder = ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:  # another Ray: the reaper keeps to the folder named after this process
        return
    with contextlib.suppress(OSError):  # a reaper gone already has nothing to stop
        reaper.stdin.write(os.fsencode(folder) + b"\n")
        reaper.stdin.flush()


def _stop_reaper(reaper: subprocess.Popen | None) -> None:
    """Close the reaper's pipe (as this process's exit would) and give it time to stop leftovers."""
    if reaper is None:
        return
    reaper.stdin.close()
    try:
        reaper.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass  # it goes on by itself; this run's results are committed already


def _check_reachable(address: str, name: str | None = None, timeout_s: float = 5.0) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) that takes no TCP connection, or takes one but does not speak gRPC
    as Ray's GCS (and client server) do, is refused at once: ``ray.init`` would retry it for minutes (20 tries of
    about 40 s at a port that is not Ray), printing a log line every few seconds. ``name``: the address in messages."""
    name = name or address
    if address == "auto":
        return  # Ray resolves it itself
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host.strip("[]") or not port.isdigit():  # ray.init's "Invalid address format" came with a token hint
        raise InputError(f"{name!r} is not a Ray cluster's address; give HOST:PORT as 'ray start --head' printed it "
                         "(or ray://HOST:PORT), 'local' to start one, or 'auto'")
    try:
        conn = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)
    except OSError as exc:
        raise InputError(f"cannot reach a Ray cluster at {name} ({exc.strerror or exc}); start one there with "
                         "'ray start --head' or give the address it printed") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", ""):  # the probe speaks plain HTTP/2
            _check_grpc(conn, name)


def _check_grpc(conn: socket.socket, address: str) -> None:
    """An HTTP/2 server (gRPC) answers a client's connection preface with a SETTINGS frame (RFC 9113, 3.4)."""
    try:
        conn.sendall(HTTP2_PREFACE)
        header = b""
        while len(header) < 9:
            chunk = conn.recv(9 - len(header))
            if not chunk:
                break
            header += chunk
    except OSError:
        header = b""
    if len(header) < 9 or header[3] != HTTP2_SETTINGS:
        raise InputError(f"{address} is not a Ray cluster (it does not answer as a Ray GCS does); give the address "
                         "'ray start --head' printed (port 6379 unless --port said otherwise)")


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the batch needs Ray Data, not just Ray core
    except ImportError:
        raise FovealError('Ray is not installed: pip install "foveal[ray]"') from None
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray
