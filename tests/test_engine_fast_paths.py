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
# Tolerance of a map from a reduced JPEG decode against the full decode: the network sees the same image resized
# to 384 px from a DCT-downscaled source instead of the full one.
MIN_CC = 0.99
MAX_SHARE_DIFF = 0.03  # per box, as an absolute share of attention (int8 graph; measured up to 0.021)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


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


@pytest.mark.parametrize("name", ["creative", "creative_b"])
def test_reduced_decode_map_matches_full_decode_on_examples(engine: Engine, name: str) -> None:
    data, boxes = _enlarged_example(name)
    full = engine.predict(decode(data))  # a DecodedImage is used as given: full pixels
    fast = engine.predict(data)
    assert fast.shape == full.shape == (1200, 1200)
    assert np.corrcoef(full.prob.ravel(), fast.prob.ravel())[0, 1] >= MIN_CC
    diff = np.abs(full.box_stats(boxes)["share"] - fast.box_stats(boxes)["share"])
    assert diff.max() <= MAX_SHARE_DIFF, diff
    assert fast.provenance["image_sha256"] == hashlib.sha256(data).hexdigest()


def test_reduced_decode_map_matches_full_decode_on_osie(engine: Engine, data_dir: Path) -> None:
    paths = sorted((data_dir / "osie" / "stimuli").glob("*.jpg"))[:4]
    boxes = [[0, 0, 400, 300], [400, 0, 400, 300], [0, 300, 400, 300], [200, 150, 400, 300]]
    for path in paths:
        full = engine.predict(load_image(path))
        fast = engine.predict(path)
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
