"""Engine: one model on one backend, turning images into SaliencyMaps."""
from __future__ import annotations

import functools
import operator
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence, overload

import numpy as np

from . import backends, cpu
from ._version import __version__
from .errors import FovealError, InputError, ModelError, checked_count, checked_flag, prefixed
from .forking import keep_for_good
from .geometry import Plan, plan
from .imageio import DEFAULT_MAX_PIXELS, DecodedImage, ImageLike, checked_max_pixels, decode
from .models import AUTO_PRECISIONS, COARSE_FOR_DECISIONS, PRECISIONS, ModelCard, load_card
from .saliency_map import SaliencyMap


class Engine:
    """Predict fixation probability maps with a saliency model.

    Args:
        model: ``"default"``, a shipped model's name (see :func:`foveal.available_models`) or a path to an ONNX file
            obeying docs/MODEL_CONTRACT.md.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (TensorRT → torch → ONNX Runtime) or a list of backend names.
        precision: ``"auto"``: each backend's fastest graph: the model's int8 graph on ONNX Runtime, its fp16
            graph on TensorRT, fp16 in torch (from the fp32 weights); ``"fp32"``: the float graph everywhere;
            ``"fp16"``: the fp16 graph (torch: its own fp16); ``"int8"``: the int8 graph, which only ONNX Runtime
            runs (GPU backends refuse it).
        for_decisions: the engine decides at compare's 0.5 pp threshold (compare verdicts, what-if searches):
            ``"auto"`` then skips graphs too coarse for that (:data:`foveal.models.COARSE_FOR_DECISIONS`), so ONNX
            Runtime runs the fp32 graph (about 1.4x the int8 graph's network time) and TensorRT keeps fp16.  An
            explicit ``precision`` is run as asked.
        max_pixels: images larger than this are refused before decoding (also past Pillow's own, lower, limit).
        blur_sigma: Gaussian blur (output pixels, 0 to ``MAX_BLUR_SIGMA``) applied to the upsampled log-density;
            defaults to the card's.
        strict: fail instead of falling back when the first backend cannot run.
        reduced_decode: decode JPEG paths and bytes at the largest DCT-domain reduction (Pillow's ``draft``) that
            keeps the working size, for a faster decode (1.4-1.8x on a 1920x1080 photo). The network then sees a
            differently filtered image: on OSIE photos shares of a 4x4 grid's cells moved by up to 3 pp (median
            1.3), against compare's 0.5 pp materiality, and the map is no longer the one ``foveal score`` or the
            service's ``/v1/score`` give for the same file. Off by default, so a file has one map whichever way it
            comes in.
        **backend_options: options of particular backends (see :func:`foveal.backends.backend_options`), e.g.
            ``threads=`` (onnxruntime) or ``fp16=``, ``cuda_graph=`` (tensorrt, torch). Each backend gets only the
            options it takes; one that no backend tried takes is an :class:`InputError` naming the backends.

    Thread safety: one Engine may be shared by any number of threads. ``predict``, ``predict_batch`` and
    ``predict_stream`` keep no per-call state on the Engine (each call that runs lanes has its own worker threads,
    joined before it returns, but for a lane a stopped stream leaves blocked on its input, which ends once that
    yields; the CPU's single-threaded twin sessions they use are made once, under a lock), and
    concurrent calls return exactly what the same calls made one after another return (tested bit for bit on ONNX
    Runtime and on the torch backend's CPU mode). On a GPU backend the network runs on one stream with one set of
    TensorRT contexts and CUDA-graph buffers, so calls on one Engine are serialised by a lock (held until the
    batch's maps are complete on the device); batch the work (``predict_batch``) rather than threading it. On a GPU
    backend the maps are :class:`DeviceSaliencyMap`: they, their SATs and box queries stay on the device (see
    :mod:`foveal.device_map`). A returned map, host or device, is safe to read from many threads.

    Errors: a bad image is an :class:`ImageError`; a model that breaks the contract (wrong output grid for its
    stride, NaN, inf, empty or integer output) is a :class:`ModelError` that names the model.

    Lifetime: :meth:`close` (or leaving ``with Engine(...) as engine:``) frees the sessions, the CPU lanes' twins
    and a GPU backend's engines, graphs and buffers now rather than at garbage collection (maps already returned
    stay valid); calls already running finish first, and later ones are an :class:`InputError`.
    """

    def __init__(self, model: str | os.PathLike[str] = "default", device: str | Sequence[str] = "cpu", *,
                 precision: str = "auto", for_decisions: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                 blur_sigma: float | None = None, strict: bool = False, reduced_decode: bool = False,
                 **backend_options: Any) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.max_pixels = checked_max_pixels(max_pixels)
        self.reduced_decode = checked_flag(reduced_decode, "reduced_decode")
        for_decisions, strict = checked_flag(for_decisions, "for_decisions"), checked_flag(strict, "strict")
        self.model: ModelCard = load_card(model)
        self.blur_sigma = cpu.checked_blur_sigma(self.model.blur_sigma if blur_sigma is None else blur_sigma)
        graphs = _graphs(self.model, precision, for_decisions=for_decisions)
        if precision == "fp32" and any("fp16" in backends.backend_options(name) for name in backends.resolve(device)):
            # TensorRT 10 and torch pick fp16 kernels unless told not to: fp32 asked for is fp32 run.
            fp16 = backend_options.get("fp16")
            if fp16 is not None and checked_flag(fp16, "fp16"):
                raise InputError(f"precision='fp32' with fp16={fp16!r}: the two contradict; drop one")
            backend_options = {**backend_options, "fp16": False}
        self._make_backend = functools.partial(backends.select, self.model, device, strict=strict, graphs=graphs,
                                               **backend_options)
        self._backend = self._make_backend()
        self.graph: ModelCard = graphs.get(self._backend.name, self.model)
        self._gpu_lock = threading.Lock()
        self._lanes: list[Any] | None = None  # single-threaded twin sessions, made by the first batch that uses them
        self._lanes_lock = threading.Lock()
        self._closed, self._calls = False, 0  # closed by close(); predicting calls running now
        self._calls_lock = threading.Lock()
        self._after_fork: str | None = None  # what a forked child must do before its first call: "rebuild", "refuse"
        _ENGINES.add(self)

    def _forked(self) -> None:
        """In a forked child, before any other thread exists there. The parent's threads are gone: a lock one of
        them held stays held (the child's first batch waited for ever), and ONNX Runtime's sessions wait for their
        pool's threads, running (a session forked mid-run) or freed (:mod:`foveal.forking`). So: fresh locks, and
        the inherited sessions kept, never freed nor run, for new ones made at the child's first call (tens of
        milliseconds); a GPU's state a child cannot use at all."""
        self._gpu_lock, self._lanes_lock, self._calls_lock = threading.Lock(), threading.Lock(), threading.Lock()
        self._calls = 0
        keep_for_good(self._backend)
        keep_for_good(self._lanes)
        self._lanes = None if not self._closed else []
        if self._backend.on_gpu:
            self._after_fork = "refuse"
        elif not self._closed:
            self._after_fork = "rebuild"

    def __reduce__(self) -> Any:
        raise InputError("an Engine holds native sessions and cannot be pickled or sent to another process; make one "
                         "in each worker (e.g. in a process pool's initializer)")

    def __repr__(self) -> str:
        return (f"Engine(model={self.model.name!r}, backend={self.backend!r}, device={self._backend.device!r}, "
                f"precision={self.precision!r}{', closed' if self._closed else ''})")

    def close(self) -> None:
        """Free what the engine holds (sessions, lanes, a GPU backend's engines and buffers) once the calls running
        now have finished, and refuse later ones; closing again does nothing. Returns at once: a call still running
        frees them as it ends."""
        with self._calls_lock:
            if self._closed:
                return
            self._closed = True
            idle = self._calls == 0
        if idle:
            self._release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _open(self) -> Iterator[None]:
        """One predicting call: refused once the engine is closed; the last one to end after :meth:`close` frees
        the engine's resources (none is freed under a running call, so it finishes as if close came after it)."""
        with self._calls_lock:
            if self._closed:
                raise InputError(f"this Engine (model {self.model.name!r}) is closed; make a new Engine to predict")
            if self._after_fork == "refuse":
                raise InputError(f"this Engine runs on {self._backend.device}, whose state a forked process cannot "
                                 "use; make an Engine in each worker (multiprocessing's 'spawn' start method)")
            if self._after_fork == "rebuild":
                self.graph.check_unchanged()  # the fresh session reads the file again
                self._backend, self._after_fork = self._make_backend(), None
            self._calls += 1
        try:
            yield
        finally:
            with self._calls_lock:
                self._calls -= 1
                last = self._closed and self._calls == 0
            if last:
                self._release()

    def _release(self) -> None:
        """Drop the backend and the lanes, which frees their sessions (ONNX Runtime), or TensorRT contexts, CUDA
        graphs and device buffers (returned to CuPy's and torch's memory pools): nothing else refers to them. What
        the engine ran on stays readable (repr, :attr:`backend`, :attr:`precision`)."""
        backend = self._backend
        self._backend = _Released(backend.name, backend.device, backend.on_gpu, backend.precision)
        self._lanes = []

    @property
    def backend(self) -> str:
        """Name of the backend that actually runs the network."""
        return self._backend.name

    @property
    def decode_mode(self) -> str:
        """How encoded JPEGs are decoded for the network: ``"in full"`` or ``"reduced"`` (``reduced_decode``)."""
        return "reduced" if self.reduced_decode else "in full"

    @property
    def precision(self) -> str:
        """Arithmetic the network runs in: ``"fp32"``, ``"fp16"`` or ``"int8"``."""
        return self._backend.precision

    @property
    def graph_sha256(self) -> str:
        """sha256 of the graph file the backend runs: the fp32, fp16 or int8 ONNX, which give different maps."""
        return self.graph.sha256

    def predict(self, image: ImageLike) -> SaliencyMap:
        """Saliency map of one image (path, bytes, PIL image or uint8 array); its error if it has none."""
        with self._open():
            result: SaliencyMap | FovealError = self._predict_batch([image], 16, "return")[0]
        if isinstance(result, FovealError):
            raise result
        return result

    @overload
    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16, *,
                      errors: Literal["raise"] = "raise") -> list[SaliencyMap]: ...
    @overload
    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16, *,
                      errors: Literal["return"]) -> list[SaliencyMap | FovealError]: ...
    @overload
    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16, *, errors: str = "raise"
                      ) -> list[Any]: ...

    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16, *,
                      errors: str = "raise") -> list[Any]:
        """Saliency maps of many images, in order.

        ``images`` is a list (or any iterable, an N×H×W×3 array, or a 1-D array of paths) of images, never a single
        image. On the CPU (ONNX Runtime) the images run side by side, one per core, each on a single-threaded twin
        of the session from decode to map (batching the network does not pay on CPUs; overlapping whole images
        does), one at a time with the next one decoding meanwhile when the engine has one thread, and
        ``batch_size`` is not used. On other backends images sharing a padded input size run as batches of up to
        ``batch_size``; the list streams (one thread decodes the next image while the network runs), and at most
        ``batch_size`` decoded images wait for a batch. Either way memory grows with the returned maps, not with
        the inputs' pixels. ``errors="raise"``: return ``list[SaliencyMap]``, or raise the failing image's error
        (the first in order among those met; its index in the message). ``errors="return"``: return one entry per
        image, its :class:`SaliencyMap` or the :class:`FovealError` that stopped it (an image that cannot be
        decoded, or a network batch that failed), so one bad image costs no other image its map.
        """
        with self._open():
            return self._predict_batch(images, batch_size, errors)

    def _predict_batch(self, images: Iterable[ImageLike], batch_size: int, errors: str) -> list[Any]:
        if errors not in ("raise", "return"):
            raise InputError(f"errors must be 'raise' or 'return', got {errors!r}")
        batch_size = checked_count(batch_size, "batch_size")
        items = image_list(images)
        lanes = self._cpu_lanes() if len(items) > 1 else []
        if lanes:
            return self._predict_lanes(items, lanes, errors)
        if not self._backend.on_gpu:
            batch_size = 1  # one CPU thread: a network batch is slower than its images one by one (0.8x at 16)
        results: list[SaliencyMap | FovealError | None] = [None] * len(items)
        waiting: dict[tuple[int, int], list[tuple[int, DecodedImage, Plan]]] = defaultdict(list)

        def settle(i: int, outcome: SaliencyMap | FovealError) -> None:
            if isinstance(outcome, FovealError) and errors == "raise":
                raise indexed_error(outcome, i, len(items)) from None
            results[i] = outcome

        def flush(key: tuple[int, int]) -> None:
            chunk = waiting.pop(key)
            try:
                outcomes = self._run([d for _, d, _ in chunk], [p for _, _, p in chunk])
            except FovealError as exc:
                if errors == "raise":
                    raise
                outcomes = [exc] * len(chunk)
            for (i, decoded, _), outcome in zip(chunk, outcomes):
                settle(i, outcome if isinstance(outcome, FovealError) else self._map(outcome, decoded))

        with closing(self._decoded(items)) as stream:  # closing: an error raised here stops the decode thread
            for i, decoded in enumerate(stream):
                if isinstance(decoded, FovealError):
                    settle(i, decoded)
                    continue
                p = plan(*decoded.image_hw, self.model)
                waiting[p.padded_hw].append((i, decoded, p))
                if len(waiting[p.padded_hw]) == batch_size:
                    flush(p.padded_hw)
                elif sum(map(len, waiting.values())) >= batch_size:  # many sizes: run the largest group
                    flush(max(waiting, key=lambda k: len(waiting[k])))
        while waiting:
            flush(next(iter(waiting)))
        return results

    def _cpu_lanes(self) -> list[Any]:
        """The backend's single-threaded twins (one per thread it would use), if it has them: ONNX Runtime on CPU."""
        if self._lanes is None:
            with self._lanes_lock:
                if self._lanes is None:
                    make = getattr(self._backend, "lanes", None)
                    self._lanes = make() if make is not None else []
        return self._lanes

    def predict_stream(self, images: Iterable[ImageLike],
                       on_result: Callable[[int, SaliencyMap | Exception], None]) -> None:
        """Predict ``images`` as they come: ``on_result(index, map)`` for each the moment it is done, ``index``
        counting from 0 in ``images``; an image that fails gives its :class:`FovealError` in place of the map (on
        the CPU lanes, an unexpected exception too: a bug fails its image at once, not the stream).
        Returns once ``images`` is exhausted and every result delivered.

        ``images`` is read lazily, one image whenever a lane is free, so it may block, fed from a queue (a service
        does that).  On the CPU (ONNX Runtime) each image runs on one of the engine's single-threaded twins, one per
        thread, so results come in the order they finish, and ``on_result`` is called on the lane's thread (the
        calling thread is one of them); an image taken while the other lanes are idle and nothing else is waiting
        (``operator.length_hint(images)`` is 0) gets all the engine's threads, as :meth:`predict` does.  On other
        backends, or with one thread, the images run one by one, in order, on the calling thread.  An exception
        from ``images`` or ``on_result`` stops the lanes once their current images are done and is raised here.
        """
        if not callable(on_result):
            raise InputError(f"on_result: expected a function called as on_result(index, map), got "
                             f"{type(on_result).__name__}")
        source = image_iter(images)
        with self._open():
            lanes = self._cpu_lanes()
            if not lanes:
                for i, image in enumerate(source):
                    on_result(i, self._predict_batch([image], 16, "return")[0])
                return
            self._run_lanes(source, lanes, on_result, threading.Event())

    @property
    def lanes(self) -> int:
        """Images :meth:`predict_batch` and :meth:`predict_stream` run side by side: on the CPU one per thread (each
        on a single-threaded twin of the session, made on first use), else 0 (images batch through the network)."""
        with self._open():
            return len(self._cpu_lanes())

    def _predict_lanes(self, items: list[Any], lanes: list[Any], errors: str) -> list[Any]:
        """``predict_batch`` on CPU: each lane takes the next image and carries it through decode, network and
        postprocess on its own core, so images overlap stage for stage and no core waits on another's share of
        one image; at most one image per lane is in flight besides the returned maps."""
        results: list[Any] = [None] * len(items)
        stop = threading.Event()

        def keep(i: int, result: Any) -> None:
            if isinstance(result, Exception) and not isinstance(result, FovealError):
                raise result  # a bug, not a bad image: raised once the lanes stop, as before there were lanes
            results[i] = result
            if errors == "raise" and isinstance(result, FovealError):
                stop.set()  # the lanes finish what they hold; the first failure in order among those met is raised

        self._run_lanes(iter(items), lanes, keep, stop)
        if errors == "raise":
            raise_first_error(results)
        return results

    def _run_lanes(self, source: Iterator[Any], lanes: list[Any], on_result: Callable[[int, Any], None],
                   stop: threading.Event) -> None:
        """Every image of ``source`` through the lanes, the calling thread running the first one: one lane at a
        time reads ``source`` (it may block, or be a generator), then works on the image and hands ``on_result``
        its outcome; no lane takes another once ``stop`` is set.  An exception from ``source`` or ``on_result``
        sets it and is raised once every lane has stopped.

        An image read while every lane is idle and nothing else waits (``operator.length_hint(source)`` is 0) runs
        on the engine's own session, every thread, and no other lane reads meanwhile: a lone image keeps the path
        and the thread of :meth:`predict`, and wakes no other thread.  Otherwise the reader passes reading on and
        runs the image on its single-threaded twin.

        Once stopped by a failure (or Ctrl-C on the calling thread), the call returns without waiting for a lane
        blocked in ``next(source)``: that lane drops what it reads next and ends (its thread is a daemon)."""
        state = threading.Condition()
        reading: list[Any] = [None]  # the lane reading ``source``, if any
        taken, busy, exhausted = [0], [0], [False]
        done = [False] * len(lanes)
        failures: list[BaseException] = []
        end = object()

        def work(k: int) -> None:
            lane = lanes[k]
            try:
                while True:
                    with state:
                        while reading[0] is not None and not (stop.is_set() or exhausted[0]):
                            state.wait()
                        if stop.is_set() or exhausted[0]:
                            return
                        reading[0] = lane
                    image = next(source, end)  # outside the lock: it may wait for input
                    with state:
                        reading[0] = None
                        if image is end:
                            exhausted[0] = True
                            return
                        if stop.is_set():  # stopped while this lane waited for input: nobody takes a result
                            return
                        index = taken[0]
                        taken[0] += 1
                        alone = busy[0] == 0 and operator.length_hint(source) == 0
                        busy[0] += 1
                        if not alone:
                            state.notify()  # another free lane reads the next image meanwhile
                    try:
                        result = self._on_lane(image, None if alone else lane)
                    finally:
                        with state:
                            busy[0] -= 1
                    on_result(index, result)
            except BaseException as exc:  # noqa: BLE001 - raised on the calling thread once the lanes stop
                failures.append(exc)
                stop.set()
            finally:
                with state:
                    if reading[0] is lane:
                        reading[0] = None
                    done[k] = True
                    state.notify_all()  # the others see ``stop`` or the end, or take over reading

        threads = [threading.Thread(target=work, args=(k,), name=f"foveal-lane-{k}", daemon=True)
                   for k in range(1, len(lanes))]

        def stopped() -> bool:  # every lane done, or (stopped) blocked reading the source, where none can be woken
            return all(done[k] or (stop.is_set() and reading[0] is lanes[k]) for k in range(1, len(lanes)))

        try:
            try:
                for thread in threads:
                    thread.start()
            except BaseException:
                # Ctrl-C inside Thread.start() (it waits for the thread): the lanes already running must see the
                # stop, or one works through the whole job after this call has raised; those never started (or
                # not yet running, which then take nothing) are done.
                stop.set()
                with state:
                    for k, thread in enumerate(threads, 1):
                        done[k] = done[k] or not thread.is_alive()
                raise
            work(0)
        finally:
            try:
                with state:
                    state.wait_for(stopped)
            except BaseException:  # Ctrl-C while waiting: the lanes take no further image ...
                stop.set()
                with state:  # ... and one mid-image finishes it: a daemon thread left in native code aborts the
                    state.wait_for(stopped)  # interpreter at exit ("terminate called without an active exception")
                raise
        if failures:
            raise failures[0]

    def _on_lane(self, image: Any, backend: Any) -> SaliencyMap | Exception:
        """One image from decode to map on ``backend`` (a single-threaded twin session, or None: the engine's own);
        what stopped it in place of the map, a FovealError or, for a bug, any other exception."""
        try:
            decoded = self._decode(image)
            outcome = self._run_cpu([decoded], [plan(*decoded.image_hw, self.model)], backend)[0]
            return outcome if isinstance(outcome, ModelError) else self._map(outcome, decoded)
        except Exception as exc:  # noqa: BLE001 - handed to on_result at once, so its caller hears of it now
            return exc

    def _decode(self, image: Any) -> DecodedImage:
        """``image`` decoded for the network: in full, or with ``reduced_decode`` reduced to its working size where
        the format allows (JPEG ``draft``), the full size kept in ``image_hw`` for the map."""
        return decode(image, self.max_pixels, min_side=self.model.input.working_size if self.reduced_decode else None)

    def _decoded(self, items: list[Any]) -> Iterator[DecodedImage | FovealError]:
        """Each item decoded (:meth:`_decode`), the next one decoding on a helper thread while the caller works on
        this one."""
        def one(image: Any) -> DecodedImage | FovealError:
            try:
                return self._decode(image)
            except FovealError as exc:
                return exc

        if len(items) < 2:
            yield from map(one, items)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="foveal-decode") as pool:
            pending = pool.submit(one, items[0])
            for nxt in items[1:]:
                current = pending.result()
                pending = pool.submit(one, nxt)
                yield current
            yield pending.result()

    def _map(self, outcome: tuple[Any, Any], image: DecodedImage) -> SaliencyMap:
        """The map of one image from ``(prob, sat or None)``: a :class:`DeviceSaliencyMap` for a device array (the
        GPU path), else a host map."""
        prob, sat = outcome
        if self._backend.on_gpu:
            from . import gpu
            from .device_map import DeviceSaliencyMap

            if gpu.is_device_array(prob):
                return DeviceSaliencyMap(prob, self._provenance(image))
        return SaliencyMap(prob, self._provenance(image), sat=sat)

    def _run(self, decoded: list[DecodedImage], plans: list[Plan]) -> list[tuple[Any, Any] | ModelError]:
        """One network batch: images sharing ``plans[i].padded_hw`` → (probability map, its summed-area table or
        None) per image: host arrays on the CPU path, a device array (its SAT built on the device when asked) on the
        GPU path; or the ModelError of a network output that breaks the contract."""
        if self._backend.on_gpu:
            with self._gpu_lock:  # one stream, one set of TensorRT contexts and CUDA-graph buffers (see class doc)
                return [(prob, None) for prob in self._run_gpu(decoded, plans)]
        return self._run_cpu(decoded, plans)

    def _run_cpu(self, decoded: list[DecodedImage], plans: list[Plan], backend: Any = None
                 ) -> list[tuple[np.ndarray, Any] | ModelError]:
        spec = self.model.input
        inputs = [cpu.preprocess(d.pixels, p.resized_hw, p.padded_hw, spec.mean, spec.std, p.offset_hw)
                  for d, p in zip(decoded, plans)]
        log_density = (backend or self._backend).run(inputs[0] if len(inputs) == 1 else np.concatenate(inputs))
        self._check_grid(log_density, len(plans), plans[0].padded_hw)
        out: list[tuple[np.ndarray, Any] | ModelError] = []
        for i, p in enumerate(plans):
            grid = log_density[i, 0]
            if not np.isfinite(grid).all():
                out.append(ModelError(f"model {self.model.name!r} ({self._backend.name}) returned NaN or infinite "
                                      "log-density for this image; the model is broken, not the image"))
                continue
            # The map's summed-area table comes out of the same pass, so the first box query costs no extra pass.
            out.append(cpu.postprocess_sat(grid, p.image_hw, p.valid_hw, self.blur_sigma, p.origin_hw))
        return out

    def _run_gpu(self, decoded: list[DecodedImage], plans: list[Plan]) -> list[Any]:
        # Upload, network and postprocess are queued on the backend's stream; the maps stay on the device. The
        # stream is synchronised before the lock is released, so a map is complete before any other thread or
        # stream can read it, and the next call cannot overwrite what this one's postprocess still reads.
        from . import gpu

        spec = self.model.input
        with self._backend.stream:
            batch = gpu.preprocess_batch([d.pixels for d in decoded], [p.resized_hw for p in plans],
                                         plans[0].padded_hw, spec.mean, spec.std, [p.offset_hw for p in plans])
            log_density = self._backend.run(batch)
            self._check_grid(log_density, len(plans), plans[0].padded_hw)
            try:
                probs = gpu.postprocess_batch(log_density, [p.image_hw for p in plans],
                                              [p.valid_hw for p in plans], self.blur_sigma,
                                              [p.origin_hw for p in plans])
            except InputError as exc:  # the grid is not finite: the model's fault, for the whole batch
                raise ModelError(f"model {self.model.name!r} ({self._backend.name}) broke its contract: {exc}") \
                    from None
            gpu.synchronize()
            return probs

    def _check_grid(self, log_density: Any, n: int, padded_hw: tuple[int, int]) -> None:
        """ModelError unless the output is float N×1×(H/stride)×(W/stride) for an N×3×H×W input (a wrong stride
        would otherwise stretch a plausible map over the wrong pixels)."""
        name, stride = self.model.name, self.model.stride
        expected = (n, 1, padded_hw[0] // stride, padded_hw[1] // stride)
        card = (f"its card {self.model.card_path.name}" if self.model.card_path else
                f"the defaults for a bare ONNX file (no {self.model.onnx_path.with_suffix('.json').name} beside it)")
        if np.dtype(log_density.dtype).kind != "f":
            raise ModelError(f"model {name!r} returned {log_density.dtype} values; the contract is float32 "
                             "log-density (docs/MODEL_CONTRACT.md)")
        if tuple(log_density.shape) != expected:
            raise ModelError(f"model {name!r}: output shape {tuple(log_density.shape)} for a {padded_hw[0]}x"
                             f"{padded_hw[1]} input, but stride {stride} from {card} means {expected}; fix the "
                             "card's output.stride or the model (docs/MODEL_CONTRACT.md)")

    def _provenance(self, image: DecodedImage) -> dict[str, Any]:
        return {"model": self.model.name, "model_version": self.model.version, "model_sha256": self.model.sha256,
                "graph_sha256": self.graph_sha256, "backend": self.backend, "device": self._backend.device,
                "precision": self.precision, "foveal_version": __version__, "image_sha256": image.sha256}


class _Released:
    """What a closed Engine keeps of its backend: what it ran on, nothing that runs."""

    def __init__(self, name: str, device: str, on_gpu: bool, precision: str) -> None:
        self.name, self.device, self.on_gpu, self.precision = name, device, on_gpu, precision

    def run(self, batch: Any) -> Any:
        raise InputError("this Engine is closed; make a new Engine to predict")


def image_list(images: Any) -> list[Any]:
    """``images`` as a list of single images; a single image (which may itself be iterable) is refused."""
    return list(image_iter(images))


#: Every live Engine, for the fork handler below.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _engines_after_fork() -> None:
    for engine in list(_ENGINES):
        engine._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_engines_after_fork)


def image_iter(images: Any) -> Iterator[Any]:
    """``images`` as an iterator of single images, read lazily; a single image (which may itself be iterable) is
    refused."""
    single = (str, bytes, bytearray, memoryview, os.PathLike, DecodedImage)
    if isinstance(images, np.ndarray):
        if images.ndim == 1 and images.dtype.kind in "OU":  # a column of paths or images: df["path"].to_numpy()
            return iter(images.tolist())
        if images.ndim != 4:
            raise InputError(f"images: an array of images must be N×H×W×C (4-D), got shape {images.shape}; for one "
                             "image use predict()")
        return iter(images)
    if isinstance(images, single) or type(images).__module__.startswith("PIL."):
        raise InputError(f"images: expected a list of images, got one {type(images).__name__}; for one image use "
                         "predict() or pass [image]")
    if isinstance(images, Mapping):  # iterating one yields its keys, each "image file not found"
        raise InputError(f"images: expected a list of images, got a {type(images).__name__}; pass its images, e.g. "
                         "list(d.values())")
    if type(images).__name__ == "DataFrame":  # iterating one yields its column names, each "image file not found"
        raise InputError("images: expected a list of images, got a DataFrame; pass its column of images, e.g. "
                         "df[\"path\"]")
    try:
        return iter(images)
    except TypeError:
        raise InputError(f"images: expected a list of images, got {type(images).__name__}") from None


def raise_first_error(results: list[Any]) -> None:
    """Raise the first :class:`FovealError` in ``results`` (``errors="raise"``), with its index, if any."""
    for i, result in enumerate(results):
        if isinstance(result, FovealError):
            raise indexed_error(result, i, len(results)) from None


def indexed_error(exc: FovealError, index: int, count: int) -> FovealError:
    """``exc`` with the failing image's position in front of its message (when there is more than one image), its
    attributes (a ServiceError's status, a TooManyPixelsError's limit) kept."""
    return exc if count == 1 else prefixed(exc, f"images[{index}]")


def _graphs(card: ModelCard, precision: str, *, for_decisions: bool = False) -> dict[str, ModelCard]:
    """Which backend runs which variant of ``card`` for ``precision`` (absent: the fp32 graph); with
    ``for_decisions``, ``"auto"`` leaves out the graphs too coarse for decisions."""
    if precision == "int8":
        int8 = card.variant("int8")  # GPU backends refuse it, so device="auto" lands on ONNX Runtime
        return {"onnxruntime": int8, "tensorrt": int8, "torch": int8}
    if precision == "fp16":
        fp16 = card.variant("fp16")  # torch is absent: it halves the fp32 weights itself
        return {"onnxruntime": fp16, "tensorrt": fp16}
    if precision == "auto":
        return {name: card.variant(p) for name, p in AUTO_PRECISIONS.items()
                if p in card.precisions and not (for_decisions and p in COARSE_FOR_DECISIONS)}
    return {}
