"""Latency and throughput of an Engine on this machine: per-stage percentiles and images/s at batch sizes.

What a user runs (``foveal bench``) before sizing a deployment, like ``trtexec`` or ``onnxruntime_perf_test`` for a
bare model, but for the whole path an image takes: decode → preprocess → network → postprocess → box queries.
Every loop is bounded by a repeat count and a time budget.
"""
from __future__ import annotations

import io
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import cpu
from ._version import __version__
from .engine import Engine
from .errors import FovealError, ImageError, InputError, checked_count, is_list_like, real_number
from .geometry import plan
from .imageio import ImageLike

#: Boxes per box-query call: a creative's elements many times over, as a what-if search asks.
BOX_QUERIES = 1000
# The stage whose time per image sizes the throughput loop's calls before they run.
_END_TO_END = "predict (end to end)"


@dataclass(frozen=True)
class StageTiming:
    """Milliseconds per call of one stage, over ``n`` calls."""

    stage: str
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Throughput:
    """``images_per_s`` is None when the batch size did not fit the time budget; ``skipped`` says so."""

    batch_size: int
    images: int
    images_per_s: float | None
    skipped: str = ""


@dataclass
class BenchReport:
    engine: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str]
    images: list[str]
    settings: dict[str, Any] = field(default_factory=dict)  # repeats, max_seconds, batch_sizes
    stages: list[StageTiming] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"image", "error"}: images that could not be read
    not_read: int = 0  # images left out unread: the decode pass ran out of max_seconds before them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The report as plain-text tables."""
        width = max([22] + [len(s.stage) for s in self.stages])  # a GPU run's "preprocess+network+postprocess": 30
        lines = [f"engine   {self.engine['model']} {self.engine['precision']} on {self.engine['backend']} "
                 f"({self.engine['device']}), JPEGs decoded {self.engine['decode']}",
                 f"machine  {self.machine['cpu']}, {self.machine['cpus_usable']} usable CPUs, "
                 f"{self.machine['native_threads']} kernel threads, {self.machine['platform']}",
                 "versions " + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
                 f"images   {len(self.images)}: {', '.join(self.images[:3])}{' ...' if len(self.images) > 3 else ''}",
                 *([f"skipped  {len(self.skipped)} unreadable: {', '.join(s['image'] for s in self.skipped[:3])}"
                    f"{' ...' if len(self.skipped) > 3 else ''}"] if self.skipped else []),
                 *([f"not read {self.not_read} image(s): the time budget to read them ran out"] if self.not_read
                   else []),
                 "", f"{'stage':<{width}} {'calls':>6} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}"]
        lines += [f"{s.stage:<{width}} {s.n:>6} {s.p50_ms:>9.3f} {s.p90_ms:>9.3f} {s.p99_ms:>9.3f}"
                  for s in self.stages]
        lines += ["", f"{'batch size':<22} {'images':>6} {'images/s':>9}"]
        lines += [f"{t.batch_size:<22} {t.images:>6} {t.images_per_s:>9.1f}" if t.images_per_s is not None else
                  f"{t.batch_size:<22} {t.images:>6} {'-':>9}  {t.skipped}" for t in self.throughput]
        return "\n".join(lines)


def synthetic_jpeg(height: int = 1080, width: int = 1920, seed: int = 0) -> bytes:
    """A photographic-looking JPEG (smooth gradients, noise and a few bright blobs) for runs without images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 180, (xx + yy) / (width + height) * 160], axis=2)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(40, 200)
        base += (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)[..., None] * rng.uniform(-80, 80, 3)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def run_bench(engine: Engine, images: Sequence[ImageLike] = (), *, repeats: int = 20,
              batch_sizes: Sequence[int] = (1, 8, 16), max_seconds: float = 30.0) -> BenchReport:
    """Time each stage ``repeats`` times per image (cycling the images) and ``predict_batch`` at each batch size.

    ``images`` are paths or encoded bytes (decode is a stage); none: one synthetic 1920×1080 JPEG. Each image is
    decoded once, untimed, first: one that cannot be (corrupt, not an image, over the engine's max_pixels) is left
    out and listed in the report's ``skipped``, and an ImageError says so when none can; images that first pass has
    not reached after ``max_seconds`` are left out unread (counted in ``not_read``). Each of the stage loop and the
    throughput loop stops early after ``max_seconds`` too; a batch size whose first calls would not end within the
    throughput loop's budget is skipped, and its row says so.
    """
    if not isinstance(engine, Engine):
        raise InputError(f"engine: expected a foveal.Engine, got {type(engine).__name__}")
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)):
        raise InputError("images: expected a list of paths or encoded images, got a single one; pass [image]")
    if not is_list_like(images):
        raise InputError(f"images: expected a list of paths or encoded images, got {type(images).__name__}")
    repeats = checked_count(repeats, "repeats")
    seconds = real_number(max_seconds)
    if seconds is None or not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
    if not is_list_like(batch_sizes):
        raise InputError(f"batch_sizes: expected a list of whole numbers >= 1, got {batch_sizes!r}")
    # A list first: a generator checked by iterating it would then run no batch size at all. A size given twice is
    # measured once, not again on a share of the budget.
    batch_sizes = list(dict.fromkeys(checked_count(b, "batch size") for b in list(batch_sizes)))
    given = list(images)
    if not given and engine.max_pixels < 1920 * 1080:
        raise InputError(f"the synthetic 1920x1080 JPEG measured without images is over the engine's limit of "
                         f"{engine.max_pixels:,} pixels; raise max_pixels or give images")
    sources, skipped, pixels = _readable(engine, given, seconds) if given else ([synthetic_jpeg()], [], 1920 * 1080)
    not_read = len(given) - len(sources) - len(skipped)
    if not sources:
        more = f" (and {len(skipped) - 1} more unreadable)" if len(skipped) > 1 else ""
        raise ImageError(f"no image to benchmark: {skipped[0]['error']}{more}")
    names = [_name(s) for s in sources]
    settings = {"repeats": repeats, "max_seconds": seconds, "batch_sizes": batch_sizes}
    report = BenchReport(_engine_info(engine), machine_info(), versions(), names, settings, skipped=skipped,
                         not_read=not_read)
    with engine._open():  # some stages run on its backend directly: an engine closed meanwhile keeps it till the end
        report.stages = _stages(engine, sources, repeats, seconds)
        image_seconds = next(s.p50_ms for s in report.stages if s.stage == _END_TO_END) / 1e3
        lanes = engine.lanes  # made now, as the engine's own session was, not inside the first timed call
        deadline = time.perf_counter() + seconds
        report.throughput = [_throughput(engine, sources, b, seconds / max(1, len(batch_sizes)),
                                         image_seconds, deadline, lanes, pixels) for b in batch_sizes]
    return report


#: A map's bytes per pixel as predict_batch returns it: the float32 map and its float64 summed-area table.
MAP_BYTES_PER_PIXEL = 12
#: Most bytes of maps one timed predict_batch call may hold.
MAX_HELD_BYTES = 2 << 30


def _readable(engine: Engine, images: list[ImageLike],
              max_seconds: float) -> tuple[list[ImageLike], list[dict[str, str]], int]:
    """The images the engine decodes, ``{"image", "error"}`` for each it cannot (one bad file in a folder costs that
    file, not the run, as in ``foveal predict``) and the largest one's pixels. Only those read within
    ``max_seconds``: the rest are left unread (a folder of 200 large photos took 14 s at 1 s)."""
    readable: list[ImageLike] = []
    skipped: list[dict[str, str]] = []
    largest = 0
    deadline = time.perf_counter() + max_seconds
    for image in images:
        if readable and time.perf_counter() > deadline:
            break
        try:
            decoded = engine._decode(image)
        except ImageError as exc:
            skipped.append({"image": _name(image), "error": str(exc)})
        else:
            readable.append(image)
            largest = max(largest, decoded.image_hw[0] * decoded.image_hw[1])
    return readable, skipped, largest


def _stages(engine: Engine, sources: list[ImageLike], repeats: int, max_seconds: float) -> list[StageTiming]:
    # The stages the Engine's CPU path runs, called one by one (on a GPU backend the three device stages run as one
    # queued call, timed together, as splitting them would add synchronisations the engine never makes).
    spec, card = engine.model.input, engine.model
    times: dict[str, list[float]] = {}

    warm = [False]  # one image goes through once untimed first: p99 is latency, not start-up

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        if warm[0]:
            times.setdefault(stage, []).append(time.perf_counter() - t0)
        return out

    rng = np.random.default_rng(0)
    deadline = time.monotonic() + max_seconds
    for i in range(-1, repeats * len(sources)):
        warm[0] = i >= 0
        source = sources[max(i, 0) % len(sources)]
        # First, whole: predict checks the network's output against the model contract (a NaN is the model's
        # fault, said as such), which the stages called one by one below do not.
        timed(_END_TO_END, lambda: engine.predict(source))
        decoded = timed("decode", lambda: engine._decode(source))
        p = plan(*decoded.image_hw, card)
        if engine._backend.on_gpu:  # the map stays on the device: a DeviceSaliencyMap
            outcome = timed("preprocess+network+postprocess", lambda: engine._run([decoded], [p])[0])
            if isinstance(outcome, FovealError):  # a network output that breaks the model contract
                raise outcome
        else:
            x = timed("preprocess", lambda: cpu.preprocess(decoded.pixels, p.resized_hw, p.padded_hw, spec.mean,
                                                           spec.std, p.offset_hw))
            grid = timed("network", lambda: engine._backend.run(x))[0, 0]
            outcome = timed("postprocess", lambda: cpu.postprocess_sat(grid, p.image_hw, p.valid_hw,
                                                                       engine.blur_sigma, p.origin_hw))
        smap = engine._map(outcome, decoded)
        h, w = smap.shape
        x0, y0 = rng.integers(0, w, BOX_QUERIES), rng.integers(0, h, BOX_QUERIES)
        boxes = np.stack([x0, y0, rng.integers(1, w - x0 + 1), rng.integers(1, h - y0 + 1)], axis=1)
        timed(f"box queries ({BOX_QUERIES})", lambda: smap.box_stats(boxes))
        if time.monotonic() > deadline and times:
            break
    order = sorted(times, key=lambda stage: stage == _END_TO_END)  # the stages, then the whole
    return [StageTiming(stage, len(times[stage]), *(float(np.percentile(times[stage], q)) * 1e3 for q in (50, 90, 99)))
            for stage in order]


def _throughput(engine: Engine, sources: list[ImageLike], batch_size: int, max_seconds: float,
                image_seconds: float, deadline: float, lanes: int, pixels: int) -> Throughput:
    """Images/s of ``predict_batch`` over two batches' worth of images (at least 8, and two per CPU lane), repeated
    within the budget.

    The warm-up is the very call timed next: a smaller one leaves the first timed call cold (each CPU lane's session
    runs once, every map it returns is allocated for the first time). A call cannot stop midway, so none starts
    that would end past ``deadline``: the warm-up and first timed call are estimated at ``image_seconds`` an image
    (the stage loop's end to end), later calls at the last one's time.
    """
    count = max(2 * batch_size, 8, 2 * lanes)
    held = count * pixels * MAP_BYTES_PER_PIXEL
    if held > MAX_HELD_BYTES and not engine._backend.on_gpu:  # a call holds every map it returns till it ends:
        # --batch 96 took 4.9 GB at 1080p (a GPU backend's maps stay on the device)
        return Throughput(batch_size, 0, None, f"skipped: a call of {count} images would hold {held / 2**30:.1f} GiB "
                          f"of maps (over {MAX_HELD_BYTES / 2**30:g} GiB); use a smaller batch or smaller images")
    needed = 2 * count * image_seconds
    if time.perf_counter() + needed > deadline:
        return Throughput(batch_size, 0, None, f"skipped: its warm-up and first call ({2 * count} images) "
                          f"would take about {needed:.1f} s at {image_seconds * 1e3:.1f} ms an image, past the time "
                          "budget; use a smaller batch or a larger max_seconds")
    work = [sources[i % len(sources)] for i in range(count)]
    engine.predict_batch(work, batch_size=batch_size)
    done, t0 = 0, time.perf_counter()
    while True:
        start = time.perf_counter()
        engine.predict_batch(work, batch_size=batch_size)
        done += len(work)
        end = time.perf_counter()
        if end - t0 > max_seconds / 2 or done >= 4 * len(work) or end + (end - start) > deadline:
            break
    return Throughput(batch_size, done, done / (end - t0))


def _engine_info(engine: Engine) -> dict[str, Any]:
    return {"model": engine.model.name, "backend": engine.backend, "device": engine._backend.device,
            "precision": engine.precision, "graph_sha256": engine.graph_sha256, "decode": engine.decode_mode}


def _name(image: Any) -> str:
    """How the report names an image: its path, else what it is (an unreadable one is refused when decoded)."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    return f"<{type(image).__name__}>"


def machine_info() -> dict[str, Any]:
    """CPU model, CPUs this process may use, the native kernels' thread count, OS."""
    from . import _native

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    usable = cpu.usable_cpus()  # the cgroup quota too, as the kernels' pool counts them
    return {"cpu": model, "cpus_usable": usable, "native_threads": int(_native.num_threads),
            "platform": platform.platform(), "python": platform.python_version()}


def versions() -> dict[str, str]:
    """foveal and the libraries on the measured path."""
    import PIL

    out = {"foveal": __version__, "numpy": np.__version__, "pillow": PIL.__version__}
    import simplejpeg  # noqa: F401 - the JPEG decoder: imported by the first decode, which may not have run yet

    for module in ("simplejpeg", "onnxruntime", "torch", "tensorrt", "cupy"):  # the JPEG decoder, the backend's
        if module in sys.modules:
            out[module] = str(getattr(sys.modules[module], "__version__", "?"))
    return out
