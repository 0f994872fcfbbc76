"""Prometheus text exposition of the service's counters, gauges and histograms.

Names follow Prometheus practice: prefix ``foveal_``, base units (``_seconds``), counters end in ``_total``, and
labels take only bounded values (route templates, status codes, rejection reasons).  Every method is thread-safe:
the batcher's worker thread and the event loop both record.  Metrics are per process; with ``--workers N`` each
worker answers ``/metrics`` for itself (docs/SERVING.md).
"""
from __future__ import annotations

import bisect
import math
import threading
from typing import Iterable, Sequence

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

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(k)} {_number(v)}" for k, v in items]


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

    def render(self) -> list[str]:
        return self.header() + [f"{self.name} {_number(self.value)}"]


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

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
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
        self.ready = Gauge("foveal_ready", "1 when the model is loaded and warmed and the service is not draining.")

    def all(self) -> Iterable[_Metric]:
        return (self.requests, self.latency, self.receive, self.send, self.in_flight, self.queue_depth,
                self.queue_wait, self.compute, self.batch_size, self.images, self.rejected, self.ready)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines += metric.render()
        return "\n".join(lines) + "\n"
