"""DeviceSaliencyMap: a SaliencyMap that stays on the GPU, with its summed-area table and box queries there too.

``Engine(device="cuda")`` returns these. The probability map, its float64 SAT and every box query live in device
memory; the host sees only what it asks for: ``.prob`` (and ``.sat``) copy to the host lazily, once, and a box query
brings back only its (N,) sums. :func:`box_stats_batch` scores many maps × many boxes with one SAT launch per map
size and one box-sum launch in all.

Concurrency: a map is handed out only after the stream that computed it has been synchronised, so any thread, on any
stream, may read it. Its lazy state (the host copy, the SAT) is built once under a lock, and every build ends in a
synchronisation of the stream that ran it (the SAT's total and minimum must reach the host anyway, to refuse a map
that is not a distribution), so a SAT built by one thread is complete before another thread's kernels read it.
Box-sum launches write only their own fresh output, so concurrent queries on one map need no lock.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from . import gpu
from .boxes import resolve_boxes
from .errors import InputError, is_list_like
from .saliency_map import SaliencyMap, box_stats_from_sums, clipped_sums

_SAT_BUILD = threading.Lock()  # one lock for every lazy SAT: batch builds cover many maps, so no per-map lock order


class DeviceSaliencyMap(SaliencyMap):
    """A :class:`SaliencyMap` whose ``prob`` is a float32 (H, W) CuPy array on the device.

    Same API and results as the host map (within the CPU/GPU twins' tolerances: the SATs sum in float64 in another
    order); ``device_prob`` and ``device_sat`` give the device arrays without copies. A map keeps alive the batch
    buffer it was computed in (the Engine's postprocess writes a batch into one allocation).
    """

    def __init__(self, prob: Any, provenance: dict[str, Any] | None = None) -> None:
        # Not SaliencyMap.__init__: it would coerce prob to a host array.
        xp = gpu._cupy()
        if not isinstance(prob, xp.ndarray):
            raise InputError(f"prob: expected a device (CuPy) array, got {type(prob).__name__}; for host arrays use "
                             "SaliencyMap")
        if prob.ndim != 2 or prob.size == 0:
            raise InputError(f"prob: expected a non-empty (H, W) array, got shape {prob.shape}")
        if prob.dtype != np.float32:
            raise InputError(f"prob: expected a float32 device array, got {prob.dtype}")
        self.device_prob = xp.ascontiguousarray(prob)
        self.provenance: dict[str, Any] = dict(provenance or {})
        self._lock = threading.Lock()
        self._host: np.ndarray | None = None
        self._device_sat: Any = None
        self._host_sat: np.ndarray | None = None
        self._total: float | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (Ray, multiprocessing, deepcopy) as a host SaliencyMap: device memory does not cross processes.
        return SaliencyMap, (self.prob, self.provenance)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.device_prob.shape)  # type: ignore[return-value]

    @property  # type: ignore[override]
    def prob(self) -> np.ndarray:
        """The map on the host: copied from the device on first use, then kept (read-only)."""
        if self._host is None:
            with self._lock:
                if self._host is None:
                    host = np.ascontiguousarray(self.device_prob.get(), dtype=np.float32)
                    host.flags.writeable = False  # the device copy is the truth; a host edit would split them
                    self._host = host
        return self._host

    @property
    def device_sat(self) -> Any:
        """(H+1, W+1) float64 summed-area table on the device, built by the CUDA SAT kernels on first use."""
        if self._device_sat is None:
            _build_sats([self])
        return self._device_sat

    @property  # type: ignore[override]
    def sat(self) -> np.ndarray:
        """The device SAT copied to the host on first use (box queries do not need it)."""
        if self._host_sat is None:
            table = self.device_sat
            with self._lock:
                if self._host_sat is None:
                    host = table.get()
                    host.flags.writeable = False  # as the host map's own table
                    self._host_sat = host
        return self._host_sat

    @property
    def total(self) -> float:
        """Total mass (1 up to rounding for a model's output)."""
        if self._total is None:
            _build_sats([self])
        return self._total  # type: ignore[return-value]

    def box_sum(self, boxes: Any, *, box_format: str = "xywh", units: str = "px") -> np.ndarray:
        """Mass inside each box: (N,) float64, summed on the device."""
        xyxy = resolve_boxes(boxes, self.shape, box_format=box_format, units=units)
        return clipped_sums(_sums([self.device_sat], xyxy, np.zeros(len(xyxy), np.int64)), self.total)

    def box_stats(self, boxes: Any, *, box_format: str = "xywh", units: str = "px") -> dict[str, np.ndarray]:
        """As :meth:`SaliencyMap.box_stats`; the sums come from the device SAT, only they cross to the host."""
        return box_stats_batch([self], [boxes], box_format=box_format, units=units)[0]


def _build_sats(maps: Sequence[DeviceSaliencyMap]) -> None:
    """Give every map without one its SAT: one batched launch sequence per map size, one synchronisation."""
    xp = gpu._cupy()
    with _SAT_BUILD:
        todo: dict[tuple[int, int], list[DeviceSaliencyMap]] = {}
        for m in maps:
            if m._device_sat is None and all(m is not other for other in todo.get(m.shape, ())):
                todo.setdefault(m.shape, []).append(m)
        built = []
        for group in todo.values():
            probs = group[0].device_prob[None] if len(group) == 1 else xp.stack([m.device_prob for m in group])
            tables = gpu.summed_area_table_batch(probs)
            built += [(m, tables[i], probs[i].min()) for i, m in enumerate(group)]
        if not built:
            return
        # One copy to the host (which synchronises the stream) for every total and minimum.
        totals = xp.stack([t[-1, -1] for _, t, _ in built])
        lows = xp.stack([low for _, _, low in built]).astype(np.float64)
        checks = xp.stack([totals, lows], axis=1).get()
        for (m, table, _), (total, low) in zip(built, checks):
            if not (np.isfinite(total) and total > 0) or low < 0:
                raise InputError(f"this map is not a distribution (total {total:g}, min {low:g}): box queries need "
                                 "finite, non-negative values with a positive total")
        for (m, table, _), (total, _low) in zip(built, checks):
            m._device_sat, m._total = table, float(total)


def _sums(tables: list[Any], xyxy: np.ndarray, index: np.ndarray) -> np.ndarray:
    if len(xyxy) == 0:
        return np.zeros(0, np.float64)
    return gpu.box_sums_batch(tables, xyxy, index).get()


def box_stats_batch(maps: Sequence[SaliencyMap], boxes: Sequence[Any], *, box_format: str = "xywh",
                    units: str = "px") -> list[dict[str, np.ndarray]]:
    """``maps[i].box_stats(boxes[i])`` for every i, with one box-sum launch for all the boxes of all the device maps.

    SATs a device map lacks are built first (one launch sequence per map size); only the sums come back to the host.
    Host maps (an engine that fell back to the CPU) are answered by their own ``box_stats``, so the same code runs
    on either.
    """
    if any(isinstance(x, SaliencyMap) or not is_list_like(x) for x in (maps, boxes)):
        raise InputError("box_stats_batch: expected a list of maps and a list of box lists, one per map (for one "
                         "map, call its box_stats)")
    maps, boxes = list(maps), list(boxes)
    if len(maps) != len(boxes):
        raise InputError(f"box_stats_batch: one box list per map, got {len(maps)} maps and {len(boxes)} box lists")
    bad = [m for m in maps if not isinstance(m, SaliencyMap)]  # None itself may be the bad one
    if bad:
        raise InputError(f"box_stats_batch: maps must be SaliencyMaps (what Engine.predict returns), got "
                         f"{type(bad[0]).__name__}")
    # Every list resolved first, each box named by its map's index and its own: boxes[1][2], not boxes[2].
    resolved = [resolve_boxes(b, m.shape, box_format=box_format, units=units, name=f"boxes[{i}]",
                              label=lambda j, i=i: f"boxes[{i}][{j}]")
                for i, (m, b) in enumerate(zip(maps, boxes))]
    out: list[Any] = [None if isinstance(m, DeviceSaliencyMap) else m.box_stats(r, box_format="xyxy")
                      for m, r in zip(maps, resolved)]
    on_device = [i for i, m in enumerate(maps) if isinstance(m, DeviceSaliencyMap)]
    if not on_device:
        return out
    maps, resolved = [maps[i] for i in on_device], [resolved[i] for i in on_device]
    _build_sats(maps)
    counts = [len(r) for r in resolved]
    xyxy = np.concatenate(resolved)
    index = np.repeat(np.arange(len(maps), dtype=np.int64), counts)
    sums = _sums([m._device_sat for m in maps], xyxy, index)
    ends = np.cumsum(counts)
    for i, m, r, n, end in zip(on_device, maps, resolved, counts, ends):
        out[i] = box_stats_from_sums(sums[end - n:end], r, m._total, m.shape)
    return out
