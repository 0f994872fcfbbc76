"""Prometheus text exposition of the service's counters, gauges and histograms.

Names follow Prometheus practice: prefix ``foveal_``, base units (``_seconds``), counters end in ``_total``, and
labels take only bounded values (route templates, status codes, rejection reasons).  Every method is thread-safe:
the batcher's worker thread and the event loop both record.  With ``--workers N`` the worker processes share
their series through :class:`MetricsExchange`, so whichever worker answers ``/metrics`` reports the whole service.
"""
from __future__ import annotations

import bisect
import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

#: Web latencies, from a fast predict on a small image to a what-if search.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(tuple(sorted(labels.items())), 0.0)

    def snapshot(self) -> list:
        with self._lock:
            return [[list(map(list, k)), v] for k, v in self._values.items()]

    def render(self, others: Sequence[list] = ()) -> list[str]:
        with self._lock:
            values = dict(self._values)
        for snapshot in others:
            for key, v in snapshot:
                key = tuple(map(tuple, key))
                values[key] = values.get(key, 0.0) + v
        return self.header() + [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(values.items())]


class Gauge(_Metric):
    """A value that goes up and down (no labels)."""

    kind = "gauge"

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help)
        self._value = 0.0

    def set(self, value: float) -> None:
        with self._lock:
            self._value = float(value)

    def add(self, amount: float) -> None:
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        with self._lock:
            return self._value

    def snapshot(self) -> float:
        return self.value

    def render(self, others: Sequence[float] = ()) -> list[str]:
        return self.header() + [f"{self.name} {_number(self.value + sum(others))}"]


class Histogram(_Metric):
    """Cumulative buckets, sum and count per label set."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, list[float]] = {}  # per bucket counts (not cumulative), then sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.buckets) + 3)
            series[i] += 1  # index len(buckets) is the +Inf bucket
            series[-2] += value
            series[-1] += 1

    def count(self, **labels: str) -> float:
        with self._lock:
            series = self._series.get(tuple(sorted(labels.items())))
            return 0.0 if series is None else series[-1]

    def snapshot(self) -> list:
        with self._lock:
            return [[list(map(list, k)), list(v)] for k, v in self._series.items()]

    def render(self, others: Sequence[list] = ()) -> list[str]:
        with self._lock:
            series_of = {k: list(v) for k, v in self._series.items()}
        for snapshot in others:
            for key, v in snapshot:
                key = tuple(map(tuple, key))
                mine = series_of.setdefault(key, [0.0] * len(v))
                series_of[key] = [a + b for a, b in zip(mine, v)]
        items = sorted(series_of.items())
        lines = self.header()
        for key, series in items:
            running = 0.0
            for bound, n in zip((*self.buckets, math.inf), series):
                running += n
                lines.append(f"{self.name}_bucket{_labels(key + (('le', _number(bound)),))} {_number(running)}")
            lines.append(f"{self.name}_sum{_labels(key)} {_number(series[-2])}")
            lines.append(f"{self.name}_count{_labels(key)} {_number(series[-1])}")
        return lines


class ServiceMetrics:
    """Every metric the service exports (docs/SERVING.md lists them)."""

    def __init__(self) -> None:
        self.requests = Counter("foveal_requests_total", "HTTP requests answered, by route and status code.")
        self.latency = Histogram("foveal_request_duration_seconds",
                                 "Time from receiving a request's headers to sending its last byte, by route.")
        self.receive = Histogram("foveal_request_receive_seconds",
                                 "Network time reading request bodies (first to last body chunk), by route.")
        self.send = Histogram("foveal_response_send_seconds",
                              "Network time writing responses (headers to last body chunk), by route.")
        self.in_flight = Gauge("foveal_requests_in_flight", "Requests being handled now.")
        self.queue_depth = Gauge("foveal_queue_depth", "Images waiting for the batcher.")
        self.queue_wait = Histogram("foveal_queue_wait_seconds", "Time an image waited in the queue before its "
                                    "batch started.")
        self.compute = Histogram("foveal_batch_compute_seconds", "Time of one predict_batch call (network, pre- "
                                 "and postprocessing).")
        self.batch_size = Histogram("foveal_batch_size", "Images per predict_batch call.", BATCH_BUCKETS)
        self.images = Counter("foveal_images_total", "Images predicted, by outcome (ok or error).")
        self.rejected = Counter("foveal_rejected_total", "Requests refused before the model ran, by reason.")
        self.ready = Gauge("foveal_ready", "Workers whose model is loaded and warmed and that are not draining (1 "
                           "with one worker).")

    def all(self) -> Iterable[_Metric]:
        return (self.requests, self.latency, self.receive, self.send, self.in_flight, self.queue_depth,
                self.queue_wait, self.compute, self.batch_size, self.images, self.rejected, self.ready)

    def snapshot(self) -> dict[str, Any]:
        """Every series, JSON-able, for :class:`MetricsExchange`."""
        return {m.name: m.snapshot() for m in self.all()}

    def render(self, others: Sequence[dict[str, Any]] = ()) -> str:
        """The exposition text: this process's series plus ``others`` (other workers' snapshots), summed."""
        lines: list[str] = []
        for metric in self.all():
            lines += metric.render([o[metric.name] for o in others if metric.name in o])
        return "\n".join(lines) + "\n"


class MetricsExchange:
    """Worker processes of one service publish snapshots into a shared ``directory`` (one file per process, written
    atomically), and read each other's, so that any worker's ``/metrics`` answers for all of them.

    Snapshots of other workers are at most ``period_s`` old.  A worker that has exited keeps its counters and
    histograms in the sum (so totals never go backwards when a worker is replaced), but not its gauges.
    """

    def __init__(self, directory: str | os.PathLike, metrics: ServiceMetrics, period_s: float = 1.0) -> None:
        self.directory, self.metrics, self.period_s = Path(directory), metrics, period_s
        # Named by pid and start time: a pid alone is reused, and an unrelated process would bring a dead worker's
        # gauges back.
        self._own = self.directory / f"{os.getpid()}-{_start_time(os.getpid())}.json"
        # The publishing task's thread and a scrape on the event loop both publish: one at a time, or an older
        # snapshot could be written over a newer one.
        self._publishing = threading.Lock()

    def publish(self) -> dict[str, Any]:
        """Write this worker's snapshot (atomically) for the others to read, and return it."""
        with self._publishing:
            snapshot = self.metrics.snapshot()
            tmp = self._own.with_suffix(".tmp")
            tmp.write_text(json.dumps(snapshot))
            os.replace(tmp, self._own)
        return snapshot

    def others(self) -> list[dict[str, Any]]:
        """The other workers' latest snapshots; an exited worker's without its gauges."""
        gauges = {m.name for m in self.metrics.all() if isinstance(m, Gauge)}
        found = []
        for path in sorted(self.directory.glob("*.json")):
            if path == self._own:
                continue
            try:
                snapshot = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a worker's file being replaced or removed right now
            pid, _, started = path.stem.partition("-")
            if not _alive(int(pid), started):
                snapshot = {k: v for k, v in snapshot.items() if k not in gauges}
            found.append(snapshot)
        return found

    def render(self) -> str:
        """Every worker's series, summed. This worker's are published first and reported as published: else one
        killed (SIGKILL, out of memory) just after answering a scrape took back what it had counted since its last
        publication, and Prometheus reads a total that goes down as a counter reset, its whole value an increase."""
        try:
            mine = self.publish()
        except OSError:  # a full disk, the folder removed: the scrape is still answered, with what is in memory
            mine = self.metrics.snapshot()
        return ServiceMetrics().render([mine, *self.others()])


def _alive(pid: int, started: str) -> bool:
    """Whether the process ``pid`` that started at ``started`` (:func:`_start_time`) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return _start_time(pid) == started


def _start_time(pid: int) -> str:
    """When process ``pid`` started, in clock ticks since boot (/proc/PID/stat, field 22); "" without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # after the command name, which may hold spaces and ")"
