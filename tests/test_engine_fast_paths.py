"""The Engine's fast CPU paths give the maps of the plain ones: the SAT built with the map, JPEGs decoded at the
size the network needs (within a stated tolerance), and streaming predict_batch."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal import Engine, SaliencyMap, cpu
from foveal.errors import FovealError, InputError
from foveal.imageio import decode, load_image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Tolerance of a map from Engine(reduced_decode=True) against the default full decode on these images: the network
# sees the same image resized to 384 px from a DCT-downscaled source instead of the full one.
MIN_CC = 0.99
MAX_SHARE_DIFF = 0.03  # per box, as an absolute share of attention (int8 graph; measured up to 0.021)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def reduced() -> Engine:
    return Engine(reduced_decode=True)


def _jpeg(image: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def _enlarged_example(name: str) -> tuple[bytes, np.ndarray]:
    """An example creative at 1200×1200 as JPEG (so the reduced decode applies) and its element boxes, scaled."""
    image = Image.open(EXAMPLES / f"{name}.png").convert("RGB")
    image = image.resize((image.width * 2, image.height * 2), Image.BICUBIC)
    boxes = np.array([e["box"] for e in json.loads((EXAMPLES / f"{name}.json").read_text())["elements"]]) * 2
    return _jpeg(image), boxes


def test_engine_map_carries_the_sat_of_its_prob(engine: Engine) -> None:
    image = load_image(EXAMPLES / "creative.png")
    smap = engine.predict(image)
    assert "sat" in smap.__dict__  # seeded by the engine, not built on the first query
    plain = SaliencyMap(smap.prob.copy(), smap.provenance)
    assert np.array_equal(smap.sat, cpu.summed_area_table(smap.prob))
    boxes = [[20, 20, 120, 44], [34, 94, 410, 52], [0, 0, 600, 600], [599, 599, 1, 1]]
    for key, values in smap.box_stats(boxes).items():
        assert np.array_equal(values, plain.box_stats(boxes)[key]), key
    assert smap.total == plain.total


def test_precomputed_sat_is_checked() -> None:
    prob = np.full((4, 5), 1 / 20, np.float32)
    good = cpu.summed_area_table(prob)
    assert np.array_equal(SaliencyMap(prob, sat=good).box_sum([0, 0, 5, 4]), [good[-1, -1]])
    with pytest.raises(InputError, match="sat: expected a float64 \\(5, 6\\)"):
        SaliencyMap(prob, sat=good[:-1])
    with pytest.raises(InputError, match="sat: expected a float64"):
        SaliencyMap(prob, sat=good.astype(np.float32))
    with pytest.raises(InputError, match="not a distribution"):
        SaliencyMap(prob, sat=np.zeros_like(good))


def test_reduced_decode_keeps_the_full_size_and_the_file_hash(tmp_path: Path) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), np.uint8))
    path = tmp_path / "wide.jpg"
    path.write_bytes(_jpeg(image))
    reduced = decode(path, min_side=384)
    assert reduced.image_hw == (1080, 1920) and reduced.pixels.shape == (270, 480, 3)  # 1/4: 480 >= 384 > 240
    assert reduced.reduced and reduced.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_image(path).shape == (1080, 1920, 3)
    assert decode(path, min_side=2000).pixels.shape == (1080, 1920, 3)  # no reduction keeps 2000 px
    # EXIF orientation 6 (turned 90 degrees): the full size is reported upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = decode(_jpeg(image, exif=exif.tobytes()), min_side=384)
    assert turned.image_hw == (1920, 1080) and turned.pixels.shape == (480, 270, 3)
    png = io.BytesIO()
    image.save(png, "PNG")
    assert not decode(png.getvalue(), min_side=384).reduced  # only JPEG has a DCT-domain reduction


def test_a_jpeg_has_one_map_whichever_way_it_comes_in(engine: Engine, reduced: Engine, tmp_path: Path) -> None:
    """predict(path or bytes) decoded JPEGs reduced while foveal score, /v1/score and predict(pixels) decoded them in
    full, so the page's live shares (from /v1/predict) and the downloaded scores.json differed by up to 1.5 pp."""
    data, boxes = _enlarged_example("creative")
    path = tmp_path / "creative.jpg"
    path.write_bytes(data)
    want = engine.predict(decode(path)).prob
    for source in (path, data, load_image(path)):
        assert np.array_equal(engine.predict(source).prob, want)
    assert np.array_equal(engine.predict_batch([path, data])[1].prob, want)
    assert engine.decode_mode == "in full" and reduced.decode_mode == "reduced"
    assert not np.array_equal(reduced.predict(path).prob, want)  # the opt-in reduced decode is another map
    with pytest.raises(InputError, match="reduced_decode must be True or False"):
        Engine(reduced_decode="yes")


@pytest.mark.parametrize("name", ["creative", "creative_b"])
def test_reduced_decode_map_matches_full_decode_on_examples(engine: Engine, reduced: Engine, name: str) -> None:
    data, boxes = _enlarged_example(name)
    full = engine.predict(decode(data))  # a DecodedImage is used as given: full pixels
    fast = reduced.predict(data)
    assert fast.shape == full.shape == (1200, 1200)
    assert np.corrcoef(full.prob.ravel(), fast.prob.ravel())[0, 1] >= MIN_CC
    diff = np.abs(full.box_stats(boxes)["share"] - fast.box_stats(boxes)["share"])
    assert diff.max() <= MAX_SHARE_DIFF, diff
    assert fast.provenance["image_sha256"] == hashlib.sha256(data).hexdigest()


def test_reduced_decode_map_matches_full_decode_on_osie(engine: Engine, reduced: Engine, data_dir: Path) -> None:
    paths = sorted((data_dir / "osie" / "stimuli").glob("*.jpg"))[:4]
    boxes = [[0, 0, 400, 300], [400, 0, 400, 300], [0, 300, 400, 300], [200, 150, 400, 300]]
    for path in paths:
        full = engine.predict(load_image(path))
        fast = reduced.predict(path)
        assert fast.shape == full.shape
        assert np.corrcoef(full.prob.ravel(), fast.prob.ravel())[0, 1] >= MIN_CC, path.name
        diff = np.abs(full.box_stats(boxes)["share"] - fast.box_stats(boxes)["share"])
        assert diff.max() <= MAX_SHARE_DIFF, (path.name, diff)


def test_streaming_batch_matches_one_by_one_with_errors_in_place(engine: Engine, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images: list[object] = []
    for i, (h, w) in enumerate([(300, 400), (400, 300), (300, 400), (500, 500), (300, 400), (400, 300)]):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(_jpeg(Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8))))
        images.append(path)
    images.insert(3, b"not an image")
    one_by_one = [engine.predict_batch([image], errors="return")[0] for image in images]
    for batch_size in (1, 2, 16):
        streamed = engine.predict_batch(images, batch_size=batch_size, errors="return")
        assert len(streamed) == len(images)
        for got, want in zip(streamed, one_by_one):
            if isinstance(want, FovealError):
                assert type(got) is type(want) and str(got) == str(want)
            else:
                assert np.allclose(got.prob, want.prob, rtol=1e-4, atol=1e-9)
    with pytest.raises(FovealError, match=r"images\[3\]"):
        engine.predict_batch(images, batch_size=2)



def test_predict_stream_answers_each_image_before_its_input_ends(engine: Engine) -> None:
    """Fed from a queue, as the service feeds it: each image's map (or error) is handed over while the input is
    still open, equal to predict's; the call returns when its input ends."""
    import queue
    import threading

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()

    def source():
        while (image := inbox.get()) is not None:
            yield image

    rgb = np.asarray(Image.open(EXAMPLES / "creative.png").convert("RGB"))
    runner = threading.Thread(target=engine.predict_stream, args=(source(), lambda i, r: results.put((i, r))))
    runner.start()
    try:
        inbox.put(rgb)
        index, smap = results.get(timeout=60)
        assert index == 0 and np.array_equal(smap.prob, engine.predict(rgb).prob)
        inbox.put(b"not an image")
        index, error = results.get(timeout=60)
        assert index == 1 and isinstance(error, FovealError) and "image" in str(error)
    finally:
        inbox.put(None)
        runner.join(60)
    assert not runner.is_alive()


class _Backlog:
    """An iterator over ``images`` that says how many are left (as the service's queue does) and records, for each
    image taken, whether a map had been handed over before."""

    def __init__(self, images: list, first_done) -> None:
        self.images, self.first_done, self.pulled = list(images), first_done, []

    def __iter__(self):
        return self

    def __length_hint__(self) -> int:
        return len(self.images)

    def __next__(self):
        if not self.images:
            raise StopIteration
        self.pulled.append(self.first_done.is_set())
        return self.images.pop(0)


def test_predict_stream_runs_a_backlog_side_by_side_and_stops_on_a_failing_callback(engine: Engine) -> None:
    """With images waiting, the second is taken while the first still runs (one by one, it would only be taken
    after the first map); an exception from ``on_result`` stops the lanes without running the rest and is raised
    to the caller."""
    import threading

    if engine.lanes < 2:
        pytest.skip("one usable CPU: the engine runs images one by one")
    big = np.random.default_rng(2).integers(0, 255, (3000, 3000, 3), np.uint8)
    first_done = threading.Event()
    backlog = _Backlog([big] + [np.full((64, 64, 3), 90, np.uint8)] * 40, first_done)

    def on_result(index: int, smap: object) -> None:
        assert isinstance(smap, SaliencyMap)
        first_done.set()
        raise KeyError("enough")

    with pytest.raises(KeyError, match="enough"):
        engine.predict_stream(backlog, on_result)
    assert backlog.pulled[:2] == [False, False], "the second image waited for the first one's map"
    assert len(backlog.pulled) < 41


def test_predict_stream_runs_a_lone_image_on_the_engines_own_session(engine: Engine) -> None:
    """An image that arrives with every lane idle and nothing else waiting runs as predict() runs it, on every
    thread of the engine's own session; a backlog runs on the single-threaded lanes."""
    import queue
    import threading
    import time

    if engine.lanes < 2:
        pytest.skip("one usable CPU: there are no lanes")
    engine = Engine()
    own: list[int] = []
    run = engine._backend.run
    engine._backend.run = lambda batch: own.append(threading.get_ident()) or run(batch)
    rgb = np.asarray(Image.open(EXAMPLES / "creative.png").convert("RGB"))

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()

    class Feed:
        def __iter__(self):
            return self

        def __length_hint__(self) -> int:
            return inbox.qsize()

        def __next__(self):
            image = inbox.get()
            if image is None:
                raise StopIteration
            return image

    runner = threading.Thread(target=engine.predict_stream, args=(Feed(), lambda i, r: results.put(r)))
    runner.start()
    try:
        for i in range(4):  # one at a time: each waits for the previous map
            inbox.put(rgb)
            assert isinstance(results.get(timeout=60), SaliencyMap)
            if i == 0:  # the first may go to whichever lane was reading; let every lane start before going on
                time.sleep(0.05)
    finally:
        inbox.put(None)
        runner.join(60)
    # Once the lanes run, the lane that ran the last image reads the next, so no other thread is woken.
    assert len(own) == 4 and len(set(own[1:])) == 1, "a lone image left the engine's own session or moved threads"
    own.clear()
    engine.predict_stream(_Backlog([rgb] * 6, threading.Event()), lambda i, r: None)
    assert len(own) < 6, "a backlog ran image by image on the engine's own session"


def test_predict_stream_refuses_one_image_at_once_and_passes_on_its_input_failing(engine: Engine) -> None:
    seen: list[int] = []
    with pytest.raises(InputError, match="predict"):
        engine.predict_stream("creative.png", lambda i, r: seen.append(i))

    def source():
        yield np.full((64, 64, 3), 90, np.uint8)
        raise ValueError("the feed broke")

    with pytest.raises(ValueError, match="the feed broke"):
        engine.predict_stream(source(), lambda i, r: seen.append(i))
    assert seen == [0]
    with pytest.raises(InputError, match="on_result: expected a function"):
        engine.predict_stream([np.full((64, 64, 3), 90, np.uint8)], None)


def test_a_stopped_stream_does_not_wait_for_a_lane_blocked_on_its_input(engine: Engine) -> None:
    """A failure on the calling thread (or Ctrl-C) stops the stream while another lane waits in ``next(images)``
    on an input that has nothing more yet (a service's queue): the call raises at once instead of waiting for the
    next input, and the waiting lane drops what it reads then."""
    import threading
    import time

    if engine.lanes < 2:
        pytest.skip("one usable CPU: there are no lanes")
    caller, release = threading.get_ident(), threading.Event()
    small = np.full((64, 64, 3), 90, np.uint8)

    big = np.random.default_rng(3).integers(0, 255, (1500, 1500, 3), np.uint8)

    class Waiting:
        """Two images (said to be waiting, so both lanes take one: the calling thread a big one, so the other lane
        is the one left waiting), then nothing until ``release``."""

        def __init__(self) -> None:
            self.left = 2

        def __iter__(self):
            return self

        def __length_hint__(self) -> int:
            return self.left

        def __next__(self):
            if self.left:
                self.left -= 1
                return big if threading.get_ident() == caller else small
            release.wait(10)
            return small

    delivered: list[int] = []

    def on_result(index: int, smap: object) -> None:
        delivered.append(index)
        if threading.get_ident() == caller:
            raise KeyError("stop here")

    started = time.monotonic()
    with pytest.raises(KeyError, match="stop here"):
        engine.predict_stream(Waiting(), on_result)
    assert time.monotonic() - started < 5, "the call waited for the input to yield again"
    before = len(delivered)
    release.set()
    time.sleep(0.3)
    assert len(delivered) == before <= 2, "a lane ran an image read after the stream had stopped"


def test_errors_and_engines_across_processes(engine: Engine) -> None:
    """A TooManyPixelsError could not be unpickled (required keyword arguments), so a process pool's worker that
    raised one hung Pool.map; pickling an Engine raised ONNX Runtime's TypeError."""
    import pickle

    from foveal.errors import TooManyPixelsError

    with pytest.raises(TooManyPixelsError) as raised:
        Engine("itti-koch", max_pixels=100).predict(np.zeros((40, 40, 3), np.uint8))
    back = pickle.loads(pickle.dumps(raised.value))
    assert str(back) == str(raised.value) and (back.detail, back.limit) == (raised.value.detail, 100)
    with pytest.raises(InputError, match="cannot be pickled or sent to another process; make one in each worker"):
        pickle.dumps(engine)

