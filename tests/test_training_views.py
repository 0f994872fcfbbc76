"""Extra training views: banner-shaped strips and letterboxed photos (engine/layouts.py) and photometric renderings
(engine/augment.py) keep the fixations, pixels and viewing scale they are owed; balanced sampling
(engine/train.py) gives each dataset an equal share of an epoch; the text channel (engine/text_channel.py) lies
where its image lies on the network's input."""
from __future__ import annotations

import numpy as np
from PIL import Image

from engine.augment import Photometric, render
from engine.layouts import (ASPECTS, BANNER_ASPECT, CANVAS_ASPECTS, MIN_FIXATIONS, PHOTO_SPAN, banner_strips,
                            letterboxed, letterboxed_views, strips)
from engine.text_channel import text_cells
from engine.train import balanced
from foveal.datasets import load_folder


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    rows = ["image,x,y,subject"]
    for k, (h, w) in enumerate([(300, 400), (400, 300), (240, 960)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{k}.png")
        rows += [f"{k}.png,{x:.2f},{y:.2f},{s % 3}" for s, (x, y) in
                 enumerate(zip(rng.uniform(0, w, 200), rng.uniform(0, h, 200)))]
    (tmp_path / "fixations.csv").write_text("\n".join(rows) + "\n")
    return load_folder(tmp_path)


def test_strips_crop_pixels_fixations_and_keep_the_photos_sigma(tmp_path) -> None:
    ds = _folder(tmp_path)
    cut = strips(ds, 6, seed=1)
    assert 10 <= len(cut) <= 18 and cut.name == f"{ds.name}-strips6s1"
    for i in range(len(cut)):
        k, y, x, h, w = cut.boxes[i]
        assert cut.shape(i) == (h, w) and cut.image(i).shape == (h, w, 3)
        np.testing.assert_array_equal(cut.image(i), ds.image(k)[y:y + h, x:x + w])
        assert any(abs(max(h, w) / min(h, w) - a) < 0.1 * a for a in ASPECTS)
        assert min(h, w) in ds.shape(k) or max(h, w) in ds.shape(k)  # a band across the whole photo
        f, parent = cut.fixations(i), ds.fixations(k)
        inside = (parent.x >= x) & (parent.x < x + w) & (parent.y >= y) & (parent.y < y + h)
        assert len(f) == inside.sum() >= MIN_FIXATIONS
        np.testing.assert_array_equal(f.x, parent.x[inside] - x)
        np.testing.assert_array_equal(f.y, parent.y[inside] - y)
        assert ((f.x >= 0) & (f.x < w) & (f.y >= 0) & (f.y < h)).all()
        assert cut.sigma(i) == ds.sigma(k)
        assert abs(cut.density(i).sum() - 1) < 1e-9
    assert strips(ds, 6, seed=1).boxes == cut.boxes  # deterministic


def test_photometric_renderings_change_colours_not_fixations(tmp_path) -> None:
    ds = _folder(tmp_path)
    variants = [Photometric(ds, k, seed=3) for k in range(2)]
    for i in range(len(ds)):
        original = ds.image(i)
        renders = [v.image(i) for v in variants]
        for v, r in zip(variants, renders):
            assert r.shape == original.shape and r.dtype == np.uint8 and not np.array_equal(r, original)
            np.testing.assert_array_equal(r, v.image(i))  # deterministic
            assert v.shape(i) == ds.shape(i) and v.sigma(i) == ds.sigma(i)
            np.testing.assert_array_equal(v.fixations(i).x, ds.fixations(i).x)
            np.testing.assert_array_equal(v.fixations(i).y, ds.fixations(i).y)
        assert not np.array_equal(renders[0], renders[1])
    flat = np.full((4, 4, 3), 128, np.uint8)
    for seed in range(20):  # a flat grey stays flat grey under every rendering
        out = render(flat, np.random.default_rng(seed))
        assert (out == out[0, 0]).all() and out[0, 0, 0] == out[0, 0, 1] == out[0, 0, 2]


def test_banner_strips_are_full_width_bands_with_their_fixations(tmp_path) -> None:
    ds = _folder(tmp_path)
    got = list(banner_strips(ds))
    assert len(got) == 3 * len(ds)  # 200 fixations per image: every band holds at least 5
    for k, (strip, xs, ys) in enumerate(got):
        image, fix = ds.image(k // 3), ds.fixations(k // 3)
        h, w = strip.shape[:2]
        assert w == image.shape[1] and h == max(8, round(w * BANNER_ASPECT))
        top = (0, (image.shape[0] - h) // 2, image.shape[0] - h)[k % 3]
        np.testing.assert_array_equal(strip, image[top:top + h])
        inside = (fix.y >= top) & (fix.y < top + h)
        np.testing.assert_array_equal(xs, fix.x[inside])
        np.testing.assert_array_equal(ys, fix.y[inside] - top)


def test_letterboxed_views_put_the_photo_and_its_fixations_on_an_ad_canvas(tmp_path) -> None:
    ds = _folder(tmp_path)
    boxed = letterboxed(ds, 8, seed=2)
    assert len(boxed) == 8 * len(ds) and boxed.name == f"{ds.name}-letterbox8s2"
    colours = set()
    for i in range(len(boxed)):
        k, ch, cw, top, left, colour = boxed.layouts[i]
        photo, canvas = ds.image(k), boxed.image(i)
        h, w = photo.shape[:2]
        assert boxed.shape(i) == (ch, cw) and canvas.shape == (ch, cw, 3)
        assert any(abs(cw / ch - a) < 0.02 * a for a in CANVAS_ASPECTS)
        span = max(w / cw, h / ch)  # the constraining side's share
        assert PHOTO_SPAN[0] - 0.01 <= span <= PHOTO_SPAN[1] + 0.01 and h <= ch - top and w <= cw - left
        np.testing.assert_array_equal(canvas[top:top + h, left:left + w], photo)
        margin = np.ones((ch, cw), bool)
        margin[top:top + h, left:left + w] = False
        expected = np.rint(photo.reshape(-1, 3).mean(0)) if colour is None else colour
        assert margin.any() and (canvas[margin] == np.asarray(expected, np.uint8)).all()
        colours.add("mean" if colour is None else tuple(colour))
        f, parent = boxed.fixations(i), ds.fixations(k)
        np.testing.assert_array_equal(f.x, parent.x + left)
        np.testing.assert_array_equal(f.y, parent.y + top)
        np.testing.assert_array_equal(f.subject, parent.subject)
        assert boxed.sigma(i) == ds.sigma(k) and abs(boxed.density(i).sum() - 1) < 1e-9
    assert {(255, 255, 255), (0, 0, 0), "mean"} <= colours and len(colours) > 3  # and random colours
    assert letterboxed(ds, 8, seed=2).layouts == boxed.layouts  # deterministic


def test_letterboxed_val_views_are_three_canvases_per_photo(tmp_path) -> None:
    ds = _folder(tmp_path)
    got = list(letterboxed_views(ds))
    assert len(got) == 3 * len(ds)
    for k, (canvas, xs, ys) in enumerate(got):
        photo, fix = ds.image(k // 3), ds.fixations(k // 3)
        (h, w), (ch, cw) = photo.shape[:2], canvas.shape[:2]
        aspect = (1.0, 1200 / 628, 9 / 16)[k % 3]
        assert abs(cw / ch - aspect) < 0.02 * aspect and abs(max(w / cw, h / ch) - 0.7) < 0.01
        top, left = round(ys[0] - fix.y[0]), round(xs[0] - fix.x[0])
        assert (top, left) == [((ch - h) // 2, (cw - w) // 2), ((ch - h) // 2, 0), (0, (cw - w) // 2)][k % 3]
        np.testing.assert_array_equal(canvas[top:top + h, left:left + w], photo)
        np.testing.assert_allclose(xs - left, fix.x)
        np.testing.assert_allclose(ys - top, fix.y)


def test_balanced_tops_up_the_smaller_datasets_evenly() -> None:
    big, small, tiny = [f"a{i}" for i in range(10)], [f"b{i}" for i in range(4)], ["c0", "c1", "c2"]
    out = balanced([big, small, tiny], np.random.default_rng(0))
    assert len(out) == 30 and out[:10] == big
    for items in (small, tiny):
        counts = [out.count(x) for x in items]
        assert sum(counts) == 10 and max(counts) - min(counts) <= 1  # each item at most once more than another
    assert balanced([big, small, tiny], np.random.default_rng(0)) == out  # seeded
    assert balanced([big, big[:]], np.random.default_rng(0)) == big + big  # equal datasets: unchanged


def test_text_channel_cells_follow_the_image_onto_the_padded_grid() -> None:
    """A text block in the top-left quarter of a 60x80 detection map, for an image resized to 30x40 and placed
    at (row 8, column 4) of a 6x6-cell grid of 8-pixel cells, covers exactly the cells it overlaps."""
    prob = np.zeros((60, 80), np.float32)
    prob[:30, :40] = 1.0  # 15x20 once resized
    cells = text_cells(prob, (30, 40), (8, 4), (6, 6), 8)
    assert cells.shape == (6, 6)
    canvas = np.zeros((48, 48), np.float32)
    canvas[8:23, 4:24] = 1.0
    np.testing.assert_allclose(cells, canvas.reshape(6, 8, 6, 8).mean((1, 3)), atol=1e-6)
    assert cells[0, 0] == 0.0 and cells[1, 0] == 0.5 and cells[1, 1] == 1.0 and cells[4, 4] == 0.0
