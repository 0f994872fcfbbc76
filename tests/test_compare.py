"""A/B comparison: the common-grid difference map, per-element deltas and the verdict, on constructed maps;
then ``foveal compare`` end to end on the example creatives."""
from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal import DEFAULT_MODEL, Engine, load_card
from foveal.cli import main
from foveal.engine import _graphs
from foveal.errors import FormatMismatchError, InputError
from foveal.saliency_map import SaliencyMap
from foveal.scoring.compare import (MATERIAL_CHANGE, compare_scores, difference_map, diverging_colors, same_format,
                                    moved_mass, render_difference, resample_mass, verdict_of)
from foveal.scoring.elements import Element
from foveal.scoring.scores import score_creative

# --- resampling and the difference map ------------------------------------------------------------------------


def test_resample_same_size_is_identity():
    p = np.random.default_rng(0).random((7, 9))
    np.testing.assert_array_equal(resample_mass(p, (7, 9)), p)


def test_resample_up_by_two_splits_each_pixel_in_four():
    p = np.random.default_rng(1).random((5, 6))
    q = resample_mass(p, (10, 12))
    np.testing.assert_allclose(q, np.kron(p, np.ones((2, 2))) / 4, rtol=1e-12, atol=1e-15)


def test_resample_down_by_two_sums_blocks():
    p = np.random.default_rng(2).random((8, 6))
    np.testing.assert_allclose(resample_mass(p, (4, 3)), p.reshape(4, 2, 3, 2).sum(axis=(1, 3)), rtol=1e-12)


def test_resample_odd_ratio_keeps_mass_and_its_place():
    p = np.zeros((30, 20))
    p[:15, :10] = 1.0  # all mass in the top-left quarter of the unit square
    q = resample_mass(p, (7, 11))
    assert q.sum() == pytest.approx(p.sum(), rel=1e-12)
    # 7 rows: the quarter ends at 3.5 rows; 11 columns: at 5.5 columns.  Mass beyond the next cell is zero.
    assert q[4:, :].sum() == pytest.approx(0, abs=1e-12) and q[:, 6:].sum() == pytest.approx(0, abs=1e-12)
    assert q[:3, :5].sum() == pytest.approx(p.sum() * (3 * 5) / (3.5 * 5.5), rel=1e-12)


@pytest.mark.parametrize("shape,out", [((0, 3), (2, 2)), ((3,), (2, 2)), ((3, 3), (0, 2))])
def test_resample_rejects_bad_shapes(shape, out):
    with pytest.raises(InputError):
        resample_mass(np.ones(shape), out)


def test_difference_of_identical_maps_is_zero():
    p = np.random.default_rng(3).random((12, 16)).astype(np.float32)
    d = difference_map(p, p * 4)  # totals do not matter: both are renormalised
    assert np.abs(d).max() < 1e-12 and moved_mass(d) < 1e-12


def test_difference_on_b_grid_when_sizes_differ():
    a = np.zeros((10, 10))
    a[:, :5] = 1  # left half
    b = np.zeros((20, 40))
    b[:, 20:] = 1  # right half
    d = difference_map(a, b)
    assert d.shape == (20, 40)
    assert d.sum() == pytest.approx(0, abs=1e-12)
    assert moved_mass(d) == pytest.approx(1.0)  # disjoint
    assert (d[:, :20] < 0).all() and (d[:, 20:] > 0).all()


def test_difference_refuses_an_empty_map():
    with pytest.raises(InputError, match="prob_a"):
        difference_map(np.zeros((4, 4)), np.ones((4, 4)))


def test_diverging_colours_are_symmetric_about_white():
    colours = diverging_colors(np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]]))[0]
    np.testing.assert_array_equal(colours[2], (255, 255, 255))
    np.testing.assert_array_equal(colours[4], (255, 0, 0))
    np.testing.assert_array_equal(colours[0], (0, 0, 255))
    np.testing.assert_array_equal(colours[3], colours[1][::-1])
    assert (diverging_colors(np.zeros((2, 3))) == 255).all()


def test_render_difference_shows_the_image_where_nothing_changed():
    image = np.random.default_rng(4).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    diff = np.zeros((6, 8))
    diff[0, 0] = 1e-3
    out = render_difference(image, diff)
    grey = image.astype(np.float64) @ [0.299, 0.587, 0.114]
    np.testing.assert_allclose(out[1:, :, 0], np.rint(96 + grey[1:] * 159 / 255), atol=1)
    assert out[0, 0, 1] == 0 and out[0, 0, 2] == 0 and out[0, 0, 0] > 0  # full red
    with pytest.raises(InputError, match="must match"):
        render_difference(image, np.zeros((5, 8)))


# --- verdict ------------------------------------------------------------------------------------------------

M = MATERIAL_CHANGE


@pytest.mark.parametrize("d_conv,d_dist,verdict", [
    (2 * M, 0, "better"), (2 * M, -2 * M, "better"), (0, -2 * M, "better"),
    (-2 * M, 0, "worse"), (-2 * M, 2 * M, "worse"), (0, 2 * M, "worse"),
    (2 * M, 2 * M, "mixed"), (-2 * M, -2 * M, "mixed"),
    (0, 0, "no material change"), (0.9 * M, -0.9 * M, "no material change"), (M, 0, "better"),
])
def test_verdict_table(d_conv, d_dist, verdict):
    assert verdict_of(d_conv, d_dist) == verdict


ELEMENTS = (Element("cta", "cta", (60, 60, 20, 20)), Element("badge", "other", (0, 0, 20, 20)),
            Element("logo", "logo", (60, 0, 20, 10)))


def _map(hot: tuple[int, int, int, int], mass: float, size: int = 80) -> SaliencyMap:
    """A map with ``mass`` spread evenly over box ``hot`` (x, y, w, h) and the rest uniform."""
    x, y, w, h = hot
    prob = np.full((size, size), (1 - mass) / (size * size - w * h))
    prob[y:y + h, x:x + w] = mass / (w * h)
    return SaliencyMap(prob.astype(np.float32))


def test_mass_moving_from_a_distractor_to_the_cta_is_better():
    a = score_creative(_map((0, 0, 20, 20), 0.5), ELEMENTS)    # attention on the badge
    b = score_creative(_map((60, 60, 20, 20), 0.5), ELEMENTS)  # the same attention on the CTA
    c = compare_scores(a, b)
    assert c.verdict == "better"
    cta, badge, logo = c.element("cta"), c.element("badge"), c.element("logo")
    assert cta.delta_share > 0.4 and cta.change == "gained" and cta.effect == "helps"
    assert badge.delta_share < -0.4 and badge.change == "lost" and badge.effect == "helps"
    assert logo.change == "no material change" and logo.effect == "neutral"
    assert cta.share_b - cta.share_a == pytest.approx(cta.delta_share)
    assert cta.delta_lift == pytest.approx(cta.lift_b - cta.lift_a)
    assert c.delta_conversion == pytest.approx(cta.delta_share)
    assert c.summary.startswith("better: conversion elements")
    assert compare_scores(b, a).verdict == "worse"


def test_compare_scores_refuses_what_is_not_scores():
    """compare_scores(a, None) was an AttributeError traceback."""
    a = score_creative(_map((0, 0, 20, 20), 0.5), ELEMENTS)
    with pytest.raises(InputError, match="compare_scores: b must be CreativeScores .* got NoneType"):
        compare_scores(a, None)
    with pytest.raises(InputError, match="compare_scores: a must be CreativeScores .* got dict"):
        compare_scores({}, a)


def test_unmatched_elements_are_listed_and_kind_changes_noted():
    a_elems = ELEMENTS[:2]
    b_elems = (Element("cta", "headline", (60, 60, 20, 20)), Element("logo", "logo", (60, 0, 20, 10)))
    smap = _map((0, 0, 10, 10), 0.1)
    c = compare_scores(score_creative(smap, a_elems), score_creative(smap, b_elems))
    assert [e.name for e in c.elements] == ["cta"]
    assert c.only_in_a == ("badge",) and c.only_in_b == ("logo",)
    assert any("'cta' is a cta in A and a headline in B" in n for n in c.notes)
    doc = c.to_dict()
    assert json.loads(json.dumps(doc)) == doc


def test_different_formats_are_refused_or_qualified():
    a = score_creative(_map((0, 0, 20, 20), 0.5), ELEMENTS, format="leaderboard")
    b = score_creative(_map((60, 60, 20, 20), 0.5), ELEMENTS, format="rectangle")
    with pytest.raises(FormatMismatchError, match="different formats are not comparable.*or set allow_format_") as info:
        compare_scores(a, b)
    assert isinstance(info.value, InputError)
    assert info.value.mismatch == ("A is format leaderboard and B is rectangle: shares of different formats are not "
                                   "comparable (the layout sets them)")
    c = compare_scores(a, b, allow_format_mismatch=True)
    assert c.verdict == "better" and not c.same_format and "indicative" in c.summary and c.notes
    assert same_format("1080x1080", "600x600") and same_format("feed", "feed") and not same_format("feed", "story")
    assert not same_format("1080x1920", "1080x1080")


def test_same_map_is_no_material_change():
    smap = _map((10, 10, 30, 30), 0.3)
    c = compare_scores(score_creative(smap, ELEMENTS), score_creative(smap, ELEMENTS))
    assert c.verdict == "no material change"
    assert all(e.change == "no material change" and e.delta_share == 0 for e in c.elements)


# --- foveal compare end to end ----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _creative(size: tuple[int, int], cta_xy: tuple[float, float]) -> np.ndarray:
    """A light creative with a dark CTA at relative position ``cta_xy`` (fractions of width and height)."""
    h, w = size
    image = np.full((h, w, 3), 225, np.uint8)
    x, y = int(cta_xy[0] * w), int(cta_xy[1] * h)
    image[y:y + h // 8, x:x + w // 4] = (20, 30, 150)
    image[h // 16:h // 16 + h // 10, w // 16:w // 2] = 60  # headline bar
    return image


def _examples(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    images = [ROOT / "examples" / "creative.png", ROOT / "examples" / "creative_b.png"]
    elements = [p.with_suffix(".json") for p in images]
    if all(p.is_file() for p in images + elements):
        return images, elements
    spec = {"units": "relative", "elements": [
        {"name": "cta", "kind": "cta", "box": [0.6, 0.7, 0.25, 0.125]},
        {"name": "headline", "kind": "headline", "box": [0.0625, 0.0625, 0.4375, 0.1]}]}
    images, elements = [tmp_path / "a.png", tmp_path / "b.png"], [tmp_path / "a.json", tmp_path / "b.json"]
    for path, el in zip(images, elements):
        Image.fromarray(_creative((120, 160), (0.6, 0.7))).save(path)
        el.write_text(json.dumps(spec))
    return images, elements


def test_a_compare_that_cannot_write_its_json_leaves_the_earlier_set_whole(tmp_path, monkeypatch, capsys):
    """A full disk at compare.json left this run's compare.png beside the earlier run's page and document."""
    from foveal.cli import compare as cli_compare
    from foveal.fileio import cannot_write

    (a, b), (ea, eb) = _examples(tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "compare", str(a), str(a), "--elements", str(ea), "-o", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"compare.png", "compare.html", "compare.json"}

    def full(path, obj, **kw):  # the last of the set: compare.png and compare.html were written for real by now
        raise cannot_write(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(cli_compare, "write_json", full)
    assert main(["-q", "compare", str(a), str(b), "--elements", str(ea), str(eb), "-o", str(out)]) == 1
    assert "free some space" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_compare_writes_json_png_html(tmp_path, capsys):
    (a, b), (ea, eb) = _examples(tmp_path)
    out = tmp_path / "out"
    assert main(["compare", str(a), str(b), "--elements", str(ea), str(eb), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.json", "compare.png"]
    assert "attention moved" in capsys.readouterr().err
    doc = json.loads((out / "compare.json").read_text())
    hb, wb = np.asarray(Image.open(b)).shape[:2]
    assert doc["common_grid"] == {"height": hb, "width": wb, "of": "b"}
    assert 0.0 <= doc["moved_mass"] <= 1.0
    assert doc["verdict"] in ("better", "worse", "mixed", "no material change")
    assert doc["verdict"] == verdict_of(doc["conversion"]["delta"], doc["distractors"]["delta"])
    a_shares = {e["name"]: e["share"] for e in doc["a"]["elements"]}
    b_shares = {e["name"]: e["share"] for e in doc["b"]["elements"]}
    for e in doc["elements"]:
        assert e["share_a"] == a_shares[e["name"]] and e["share_b"] == b_shares[e["name"]]
        assert e["delta_share"] == pytest.approx(e["share_b"] - e["share_a"])
    assert doc["conversion"]["a"] == doc["a"]["creative"]["conversion_share"]
    page = (out / "compare.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page and doc["verdict"] in page
    figure = np.asarray(Image.open(out / "compare.png"))
    assert figure.shape[0] > hb and figure.shape[1] > 3 * wb  # three panels at B's height, plus labels


def test_decisions_leave_out_only_the_graphs_too_coarse_for_them():
    """compare and what-if decide at 0.5 pp, where int8 rounding changed 20 of 340 verdicts (docs/MODEL.md)."""
    card = load_card(DEFAULT_MODEL)
    assert Engine().precision == "int8"  # predict and score: the fastest graph
    assert Engine(for_decisions=True).precision == "fp32"
    assert Engine(precision="int8", for_decisions=True).precision == "int8"  # asked for: run as asked
    assert Engine(precision="fp16", for_decisions=True).precision == "fp16"
    graphs = _graphs(card, "auto", for_decisions=True)
    assert "onnxruntime" not in graphs and graphs["tensorrt"].precision == "fp16"  # fp16 stays on GPUs
    assert _graphs(card, "auto")["onnxruntime"].precision == "int8"


def test_cli_compare_decides_on_the_fp32_graph_and_an_int8_decision_says_so(tmp_path):
    """int8 rounding changed 20 of 340 measured verdicts (docs/MODEL.md), so compare's "auto" runs fp32 on the CPU;
    asked for int8 explicitly, it runs int8 and the document carries the caveat."""
    (a, b), (ea, eb) = _examples(tmp_path)
    docs = {}
    for precision in ("auto", "int8"):
        out = tmp_path / precision
        assert main(["-q", "compare", str(a), str(b), "--elements", str(ea), str(eb), "--precision", precision,
                     "--no-html", "-o", str(out)]) == 0
        docs[precision] = json.loads((out / "compare.json").read_text())
    assert docs["auto"]["model"]["precision"] == "fp32"
    assert not any("int8 graph" in note for note in docs["auto"]["notes"])
    assert docs["int8"]["model"]["precision"] == "int8"
    assert any("int8 graph" in note and "precision fp32" in note for note in docs["int8"]["notes"])


def test_cli_compare_takes_the_element_files_from_two_options_in_order(tmp_path):
    """--elements A.json --elements B.json kept only B's file: A was scored with B's boxes, without a word."""
    (a, b), (ea, eb) = _examples(tmp_path)
    docs = []
    for elements in (["--elements", str(ea), str(eb)], ["--elements", str(ea), "--elements", str(eb)]):
        out = tmp_path / str(len(docs))
        assert main(["-q", "compare", str(a), str(b), *elements, "--no-html", "-o", str(out)]) == 0
        docs.append(json.loads((out / "compare.json").read_text()))
    assert docs[1]["a"]["elements"] == docs[0]["a"]["elements"] and docs[1]["verdict"] == docs[0]["verdict"]


def test_figure_labels_wrap_to_their_panels_width():
    """The difference panel's label ran past its 600-pixel panel and lost "blue = less" at the canvas edge."""
    from foveal.scoring.compare import side_by_side

    panels = [np.full((220, 250, 3), 128, np.uint8) for _ in range(3)]  # portrait enough to stand side by side
    label = "after - before: red = more attention, blue = less"
    figure = side_by_side(panels, ["a", label, label])
    band = figure[:figure.shape[0] - 220]  # everything above the panels: their labels
    assert band.shape[0] > 2 * 14  # two lines or more at 14 px
    inked = np.nonzero((band < 128).any(axis=(0, 2)))[0]
    for i in (1, 2):  # each label's ink stays over its own panel
        left = i * (250 + 8)
        mine = inked[(inked >= left - 4) & (inked < left + 258)]
        assert mine.min() >= left and mine.max() < left + 250


def test_a_format_of_superscript_digits_is_a_name_not_a_size():
    """"²x²" passed str.isdigit, then int() raised: compare stopped with an internal error."""
    from foveal.scoring.compare import _size

    assert _size("\u00b2x\u00b2") is None and _size("\u0663x4") is None and _size("300x250") == (300, 250)


def test_cli_compare_without_html_removes_the_earlier_page(tmp_path):
    """compare --no-html left the previous run's compare.html, whose verdict contradicted the new compare.json."""
    (a, b), (ea, eb) = _examples(tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "compare", str(a), str(b), "--elements", str(ea), str(eb), "-o", str(out)]) == 0
    assert (out / "compare.html").is_file()
    assert main(["-q", "compare", str(a), str(a), "--elements", str(ea), "--no-html", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.png"]


def test_cli_compare_different_sizes_one_element_file(tmp_path, capsys):
    spec = {"units": "relative", "elements": [
        {"name": "cta", "kind": "cta", "box": [0.6, 0.7, 0.25, 0.125]},
        {"name": "headline", "kind": "headline", "box": [0.0625, 0.0625, 0.4375, 0.1]}]}
    (tmp_path / "e.json").write_text(json.dumps(spec))
    Image.fromarray(_creative((120, 160), (0.6, 0.7))).save(tmp_path / "a.png")
    Image.fromarray(_creative((240, 200), (0.1, 0.4))).save(tmp_path / "b.png")  # CTA moved off its box
    out = tmp_path / "out"
    argv = ["-q", "compare", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--elements", str(tmp_path / "e.json"),
            "-o", str(out), "--no-html"]
    # 160x120 against 200x240 are two formats: no confident verdict (it used to give one), unless asked.
    assert main(argv) == 1 and not out.exists()
    err = capsys.readouterr().err  # the CLI's advice is its flag, not the library's argument
    assert "or pass --allow-format-mismatch to see" in err and "allow_format_mismatch" not in err
    assert main([*argv, "--allow-format-mismatch"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.png"]
    doc = json.loads((out / "compare.json").read_text())
    assert doc["formats"] == {"a": "160x120", "b": "200x240", "same": False}
    assert doc["summary"].startswith("formats differ (160x120 vs 200x240), indicative only: ")
    assert doc["common_grid"] == {"height": 240, "width": 200, "of": "b"}
    assert doc["elements"][0]["name"] == "cta"
    assert doc["elements"][0]["delta_share"] < 0  # the CTA box lost its button


@pytest.mark.parametrize("extra,code,text", [
    (["--elements", "missing.json"], 1, "element file not found"),
    (["--elements", "e.json", "e.json", "e.json"], 2, "one or two files"),
])
def test_cli_compare_bad_input(tmp_path, monkeypatch, capsys, extra, code, text):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(_creative((60, 80), (0.5, 0.5))).save("a.png")
    (tmp_path / "e.json").write_text(json.dumps([{"name": "cta", "kind": "cta", "box": [1, 1, 10, 10]}]))
    if code == 2:
        with pytest.raises(SystemExit) as exc:
            main(["compare", "a.png", "a.png", *extra, "-o", "out"])
        assert exc.value.code == 2 and text in capsys.readouterr().err
    else:
        assert main(["compare", "a.png", "a.png", *extra, "-o", "out"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0]
    assert not (tmp_path / "out").exists()


def test_landscape_panels_stack_and_carry_a_legend():
    from foveal.scoring.compare import compare_figure

    image = np.full((90, 728, 3), 200, np.uint8)
    prob = np.full((90, 728), 1.0, np.float32)
    smap = SaliencyMap(prob / prob.sum())
    elements = (Element("cta", "cta", (560, 25, 130, 40)),)
    scores = score_creative(smap, elements)
    figure = compare_figure(image, smap, scores, image, smap, scores, np.zeros((90, 728)))
    # Side by side, three 728x90 banners shrank to a third of the page; stacked, each keeps the full width.
    assert figure.shape[1] == 728 and figure.shape[0] > 3 * 90
    square = np.full((100, 100, 3), 200, np.uint8)
    sq_map = SaliencyMap(np.full((100, 100), 1e-4, np.float32))
    sq_scores = score_creative(sq_map, (Element("cta", "cta", (10, 10, 20, 20)),))
    assert compare_figure(square, sq_map, sq_scores, square, sq_map, sq_scores, np.zeros((100, 100))).shape[1] > 300


def test_a_figure_of_opposite_shapes_holds_no_more_pixels_than_its_panels():
    """A 5000x1 banner beside a 1x5000 strip: scaled to the strip's height the banner was 25,000,000 pixels wide,
    and the service answering /v1/compare?format=png was killed for memory (24 GB)."""
    from foveal.scoring.compare import compare_figure

    def creative(h, w):
        smap = SaliencyMap(np.full((h, w), 1.0 / (h * w), np.float32))
        return np.full((h, w, 3), 90, np.uint8), smap, score_creative(smap, (Element("cta", "cta", (0, 0, 1, 1)),))

    (wide, wide_map, wide_scores), (tall, tall_map, tall_scores) = creative(1, 5000), creative(5000, 1)
    for a, b in (((wide, wide_map, wide_scores), (tall, tall_map, tall_scores)),
                 ((tall, tall_map, tall_scores), (wide, wide_map, wide_scores))):
        figure = compare_figure(*a, *b, np.zeros(b[0].shape[:2]))
        # 3 x 5000 pixels, labels (wrapped to two lines), the legend: not 25,000,000
        assert figure.shape[0] * figure.shape[1] < 500_000, figure.shape


def test_a_creative_over_the_display_size_is_shown_reduced_with_its_boxes_in_place(monkeypatch):
    """Two 25-MP creatives made an 83-MB compare.png and a 111-MB page in 30 s: the figure shows them reduced to
    DISPLAY_PIXELS (here scaled down with the creatives), boxes drawn where the reduced elements lie."""
    from foveal.scoring import compare, report

    monkeypatch.setattr(report, "DISPLAY_PIXELS", 100 * 100)
    image = np.full((400, 400, 3), 200, np.uint8)
    prob = np.ones((400, 400), np.float32)
    prob[200:250, 200:300] = 50.0
    smap = SaliencyMap(prob / prob.sum())
    scores = score_creative(smap, (Element("cta", "cta", (200, 200, 100, 50)),))
    figure = compare.compare_figure(image, smap, scores, image, smap, scores, np.zeros((400, 400)))
    assert figure.shape[1] == 3 * 100 + 2 * 8  # three 100x100 panels and their gaps
    third = 2 * (100 + 8)  # where the difference panel starts, under its labels (wrapped to their width)
    label_h = next(y for y in range(figure.shape[0]) if (figure[y, third:third + 100] != 255).all())
    outline = figure[label_h:label_h + 100, third:third + 100]
    assert (outline[50, 50:75] == 40).all() and (outline[50:62, 50] == 40).all()  # the box at a quarter of its place
    assert (outline[20, 20] != 40).any()


def test_compare_page_titles_use_file_names(tmp_path):
    (a, b), (ea, eb) = _examples(tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "compare", str(a.resolve()), str(b.resolve()), "--elements", str(ea), str(eb), "-o",
                 str(out)]) == 0
    title = re.search(r"<title>(.*?)</title>", (out / "compare.html").read_text()).group(1)
    assert title == f"foveal compare: \u2068{a.name}\u2069 vs \u2068{b.name}\u2069"  # each name isolated


def test_compare_page_keeps_hostile_names_as_text_under_a_no_script_policy(tmp_path):
    """Element names come from files agencies send: compare.html shows them as text, and its policy forbids any
    script a missed escape would let in."""
    from tests.html_audit import PAYLOADS, assert_only_text

    (tmp_path / "given").mkdir()
    (a, b), (ea, _) = _examples(tmp_path / "given")  # the repository's examples when present: only read here
    spec = json.loads(ea.read_text())
    spec["elements"][1]["name"] = PAYLOADS[0]
    spec["elements"].append({"name": PAYLOADS[1], "kind": "logo", "box": [0, 0, 4, 4], "units": "px"})
    elements = tmp_path / "hostile.json"
    elements.write_text(json.dumps(spec))
    hostile = tmp_path / "\u202eb\x1b[2J.png"  # a right-to-left override, and ESC, which HTML cannot hold raw
    hostile.write_bytes(b.read_bytes())
    out = tmp_path / "out"
    assert main(["-q", "compare", str(a), str(hostile), "--elements", str(elements), "-o", str(out)]) == 0
    page = (out / "compare.html").read_text()
    assert_only_text(page, PAYLOADS[:2], images=1)
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'' in page
    assert f"<h1><bdi>{a.name}</bdi> vs <bdi>\u202eb\\x1b[2J.png</bdi></h1>" in page and "\x1b" not in page
    shown = "\u202eb\\x1b[2J.png"
    assert f"<title>foveal compare: \u2068{a.name}\u2069 vs \u2068{shown}\u2069</title>" in page  # the tab too


def test_a_change_just_under_the_threshold_is_not_printed_as_one_on_it():
    """0.496 pp is "no material change"; printed with one decimal it read "+0.5 pp", the threshold itself."""
    from foveal.scoring.compare import _pp, change_of

    assert change_of(0.00496) == "no material change" and _pp(0.00496) == "+0.496 pp"
    assert _pp(-0.0049999) == "-0.49999 pp"
    assert _pp(0.004999999999999991) == "+0.5 pp" and change_of(0.004999999999999991) == "gained"
    assert _pp(0.012) == "+1.2 pp" and _pp(0.0) == "+0.0 pp"


def test_cli_compare_refusing_one_output_writes_none(tmp_path, capsys):
    # The element file sits in the output folder under the name of an output: refused, and no compare.png either.
    (a, b), (ea, _) = _examples(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    elements = out / "compare.json"
    elements.write_bytes(ea.read_bytes())
    assert main(["-q", "compare", str(a), str(b), "--elements", str(elements), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one of this run's inputs" in err[0], err
    assert [p.name for p in out.iterdir()] == ["compare.json"] and elements.read_bytes() == ea.read_bytes()


def test_names_listed_in_a_sentence_are_isolated_from_each_other():
    # "Only in A: NAME, NAME" is running text: a right-to-left override in one name would run on and reverse the
    # names after it, so each name is isolated as the heading's file names are. (Notes quote names with repr,
    # which writes an override as \u202e.)
    from foveal.scoring.compare import build_document, render_html

    smap = SaliencyMap(np.full((40, 60), 1 / 2400))
    a = score_creative(smap, (Element("cta", "cta", (0, 0, 10, 10)), Element("\u202eold", "logo", (20, 0, 10, 10)),
                              Element("gone", "other", (40, 0, 10, 10))))
    b = score_creative(smap, (Element("cta", "headline", (0, 0, 10, 10)),))
    inputs = {k: {"image": f"{k}.png", "elements": f"{k}.json", "image_sha256": None} for k in "ab"}
    doc = build_document(compare_scores(a, b), a, b, np.zeros((40, 60)), {}, inputs)
    page = render_html(doc, np.zeros((8, 8, 3), np.uint8))
    assert "Only in A: <bdi>\u202eold</bdi>, <bdi>gone</bdi>" in page
    assert "element &#x27;cta&#x27; is a cta in A and a headline in B" in page


def test_allow_format_mismatch_takes_only_true_or_false():
    """allow_format_mismatch="no" is a true string: it allowed the mismatch it was meant to refuse."""
    square = SaliencyMap(np.full((100, 100), 1e-4, np.float32))
    a = score_creative(square, (Element("cta", "cta", (10, 10, 20, 20)),), format="600x600")
    b = score_creative(square, (Element("cta", "cta", (10, 10, 20, 20)),), format="300x250")
    for value in ("no", 0, None):
        with pytest.raises(InputError, match="allow_format_mismatch must be True or False"):
            compare_scores(a, b, allow_format_mismatch=value)
    with pytest.raises(FormatMismatchError):
        compare_scores(a, b, allow_format_mismatch=False)


def test_resample_mass_refuses_a_size_no_map_has():
    """out_hw of 10**5 squared raised a bare MemoryError (75 GiB), 10**9 squared was killed for memory, None a
    TypeError."""
    from foveal.scoring.compare import resample_mass

    prob = np.full((4, 4), 1 / 16)
    for out_hw, match in (((10**5, 10**5), "is over 1,073,741,824 pixels"), (None, "must be a \\(height, width\\)"),
                          ((2.5, 3), "must be a \\(height, width\\)")):
        with pytest.raises(InputError, match=f"^resample_mass: out_hw .*{match}"):
            resample_mass(prob, out_hw)
    assert resample_mass(prob, (np.int64(2), 2)).sum() == pytest.approx(1.0)


def test_a_native_kernel_argument_cpp_cannot_hold_is_a_one_line_input_error():
    """cpu.preprocess with a size of 2**64 raised pybind11's many-line TypeError."""
    from foveal import cpu

    with pytest.raises(InputError, match="an argument is of a type or size the kernel cannot take") as refused:
        cpu.preprocess(np.zeros((4, 4, 3), np.uint8), (2**64, 4), (2**64, 4), (0, 0, 0), (1, 1, 1))
    assert "\n" not in str(refused.value)


def test_same_format_is_the_same_either_way_round():
    """A's ratio over B's was tested against 2 %, so 1000x1020 vs 1000x1000 was one format and the reverse two."""
    for a, b in [("1000x1020", "1000x1000"), ("100x100", "102x100"), ("300x250", "306x250")]:
        assert same_format(a, b) and same_format(b, a), (a, b)
    assert not same_format("100x100", "103x100") and not same_format("103x100", "100x100")


def test_a_declared_format_of_another_shape_does_not_make_two_formats_one():
    """A 728x90 and a 300x250 creative were compared (verdict, "same": true) when their element file declared
    "format": "728x90": the declared name stood for B's own size."""
    rng = np.random.default_rng(0)
    banner, rect = (SaliencyMap(p / p.sum()) for p in (rng.random((90, 728)), rng.random((250, 300))))
    els = [Element("cta", "cta", (10, 10, 40, 20)), Element("logo", "logo", (60, 40, 20, 20))]
    a, b = score_creative(banner, els, format="728x90"), score_creative(rect, els, format="728x90")
    with pytest.raises(FormatMismatchError, match=r"^B's elements declare format 728x90, but B is 300x250: .*use the "
                                                  "element file made for this creative"):
        compare_scores(a, b)
    qualified = compare_scores(a, b, allow_format_mismatch=True)
    assert not qualified.same_format and (qualified.format_a, qualified.format_b) == ("728x90", "728x90")
    assert any(n.startswith("B's elements declare format 728x90, but B is 300x250") for n in qualified.notes)
    assert qualified.summary.startswith("formats differ (728x90 vs 728x90 declared on 300x250), indicative only: ")
