"""What-if: candidate positions, batched search, edit outcomes, and ``foveal whatif`` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal import Engine
from foveal.cli import main
from foveal.errors import InputError
from foveal.saliency_map import SaliencyMap
from foveal.scoring.edits import Move, Swap, apply_edits
from foveal.scoring.elements import Element, load_elements
from foveal.scoring.whatif import candidate_offsets, parse_grid, run_edits, search_position, whatif_search

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "creative.png"
EXAMPLE_ELEMENTS = ROOT / "examples" / "creative.json"

SMALL = (Element("cta", "cta", (10, 70, 30, 14)), Element("logo", "logo", (90, 4, 30, 12)),
         Element("headline", "headline", (8, 6, 60, 16)))


def _small_creative() -> np.ndarray:
    """A 96x128 creative: a dark CTA, a blue logo and a grey headline bar on a light gradient."""
    image = np.empty((96, 128, 3), np.uint8)
    image[...] = (np.linspace(200, 240, 128)[None, :, None]).astype(np.uint8)
    image[70:84, 10:40] = (30, 30, 160)
    image[4:16, 90:120] = (20, 90, 200)
    image[6:22, 8:68] = (90, 90, 90)
    return image


class Spy:
    """Wraps an engine and records the size of every predict_batch call."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.calls: list[int] = []

    def predict_batch(self, images, batch_size=16):
        images = list(images)
        self.calls.append(len(images))
        return self.engine.predict_batch(images, batch_size=batch_size)


class Spotlight:
    """A stand-in model whose map ignores the pixels: most mass on one fixed box."""

    def __init__(self, box: tuple[int, int, int, int]) -> None:
        self.box = box

    def predict_batch(self, images, batch_size=16):
        out = []
        for image in images:
            prob = np.ones(np.asarray(image).shape[:2])
            x, y, w, h = self.box
            prob[y:y + h, x:x + w] = 1000.0
            out.append(SaliencyMap((prob / prob.sum()).astype(np.float32)))
        return out


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


# --- candidate positions --------------------------------------------------------------------------------------

def test_grid_spans_the_valid_range_inside_the_edge_margins():
    positions = candidate_offsets((96, 128), SMALL[:1], "cta", grid=(3, 2), max_overlap=0.0)
    boxes = sorted((10 + dx, 70 + dy) for dx, dy in positions.offsets)
    assert positions.rejected_overlap == 0
    # 3% of 128 = 4 px and 3% of 96 = 3 px clear of each edge: never flush against it (it used to be 0 and 98).
    assert boxes == sorted((x, y) for x in (4, 49, 94) for y in (3, 79))


def test_positions_over_unboxed_content_are_refused():
    image = np.full((96, 128, 3), 230, np.uint8)
    image[0:40, 60:128] = np.random.default_rng(0).integers(0, 255, (40, 68, 3))  # a photo no element describes
    positions = candidate_offsets((96, 128), SMALL[:1], "cta", grid=(5, 5), image=image)
    assert positions.rejected_content > 0
    for dx, dy in positions.offsets:
        x, y = 10 + dx, 70 + dy
        assert x + 30 <= 60 or y >= 40 or (min(x + 30, 128) - max(x, 60)) * (min(y + 14, 40) - y) <= 0.15 * 30 * 14
    # Boxed, the same photo is the overlap rule's business, and a full-bleed photo still leaves positions.
    noisy = np.random.default_rng(1).integers(0, 255, (96, 128, 3)).astype(np.uint8)
    assert candidate_offsets((96, 128), SMALL[:1], "cta", grid=(5, 5), image=noisy).rejected_content == 0


def test_step_walks_whole_steps_from_the_current_position():
    offsets = candidate_offsets((96, 128), SMALL[:1], "cta", step=40).offsets
    assert all(dx % 40 == 0 and dy % 40 == 0 for dx, dy in offsets)
    assert (0, 0) not in offsets
    assert {dx for dx, _ in offsets} == {0, 40, 80} and {dy for _, dy in offsets} == {-40, 0}


def test_a_search_with_nowhere_else_to_go_says_so():
    """A step wider than the free space left only the current position, refused as 'no valid position: 0 overlap
    and 0 cover unboxed content', which named no cause."""
    with pytest.raises(InputError, match="no position to try but the current one: the step finds no other place for "
                                         "the 30x14 box.*use a smaller step"):
        candidate_offsets((96, 128), SMALL[:1], "cta", step=200)
    # A box that nearly fills the image is centred whatever the step: a smaller one would not help either
    with pytest.raises(InputError, match="the 120x90 box nearly fills the image .* search a smaller element"):
        candidate_offsets((96, 128), (Element("cta", "cta", (4, 3, 120, 90)),), "cta", step=1)


def test_positions_overlapping_another_element_are_rejected():
    positions = candidate_offsets((96, 128), SMALL, "cta", grid=(5, 5), max_overlap=0.1)
    offsets = positions.offsets
    assert positions.rejected_overlap > 0
    for dx, dy in offsets:
        moved = (10 + dx, 70 + dy, 30, 14)
        for other in SMALL[1:]:
            ox, oy, ow, oh = other.box
            iw = min(moved[0] + 30, ox + ow) - max(moved[0], ox)
            ih = min(moved[1] + 14, oy + oh) - max(moved[1], oy)
            assert max(iw, 0) * max(ih, 0) <= 0.1 * min(30 * 14, ow * oh)


@pytest.mark.parametrize("kwargs,text", [
    ({"name": "button"}, "no element named 'button'"),
    ({"grid": (2, 2), "step": 10}, "either grid or step"),
    ({"step": 0}, "^step must be a positive"),
    ({"max_overlap": 1.5}, r"^max_overlap must be a fraction in \[0, 1\], got 1.5$"),
    ({"max_overlap": "0.1"}, r"^max_overlap must be a fraction in \[0, 1\], got '0.1'$"),
    ({"step": 1.5}, "^step must be a positive whole number of pixels, got 1.5"),
    ({"step": "10"}, "^step must be a positive whole number of pixels, got '10'"),
    ({"grid": 5}, r"^grid: columns and rows must be 1..100, a \(columns, rows\) pair of whole numbers; got 5$"),
    ({"grid": (2.5, 2)}, r"^grid: columns and rows must be 1..100, .*; got \(2.5, 2\)$"),
    ({"grid": "5x5"}, r"^grid: columns and rows must be 1..100, .*; got '5x5'; parse_grid reads"),
])
def test_candidate_errors(kwargs, text):
    kwargs.setdefault("name", "cta")
    with pytest.raises(InputError, match=text):
        candidate_offsets((96, 128), SMALL, **kwargs)


def test_numpy_whole_numbers_are_whole_numbers():
    grid = candidate_offsets((96, 128), SMALL[:1], "cta", grid=(3, 2), max_overlap=0.0)
    assert candidate_offsets((96, 128), SMALL[:1], "cta", grid=np.array([3, 2]), max_overlap=np.float32(0)) == grid
    assert candidate_offsets((96, 128), SMALL[:1], "cta", step=np.int64(40)).offsets == \
        candidate_offsets((96, 128), SMALL[:1], "cta", step=40).offsets


@pytest.mark.parametrize("call, text", [
    (lambda e: run_edits(e, str(EXAMPLE), SMALL, [Move("cta", 1, 1)]),
     "image: expected the creative's pixels.*load_image"),
    (lambda e: run_edits(e, _small_creative()[..., 0], SMALL, [Move("cta", 1, 1)]),
     r"image: expected .*got uint8 \(96, 128\)"),
    (lambda e: run_edits(e, _small_creative(), SMALL, [{"op": "move", "element": "cta", "dx": 1, "dy": 1}]),
     "edits: expected Move, Scale or Swap.*edit_from_dict"),
    (lambda e: run_edits(e, _small_creative(), SMALL, ["cta:1,1"]), "edits: expected Move, Scale or Swap.*parse_move"),
    (lambda e: whatif_search(e, _small_creative(), SMALL, "cta", grid=(2, 2), top="3"),
     "^top must be a whole number >= 1"),
    (lambda e: whatif_search(e, _small_creative(), SMALL, "cta", grid=(2, 2), top=None), "^top must be a whole number"),
    (lambda e: whatif_search(e, str(EXAMPLE), SMALL, "cta"), "image: expected the creative's pixels"),
])
def test_whatif_arguments_are_input_errors(call, text):
    with pytest.raises(InputError, match=text):
        call(Spotlight((0, 0, 10, 10)))


def test_no_valid_position_says_what_to_change():
    big = (Element("cta", "cta", (0, 0, 60, 40)), Element("panel", "other", (60, 0, 68, 96)),
           Element("strip", "other", (0, 40, 60, 56)))
    with pytest.raises(InputError, match="raise max_overlap, use a finer grid or step"):
        candidate_offsets((96, 128), big, "cta", grid=(3, 3), max_overlap=0.05)


@pytest.mark.parametrize("text,ok", [("5x5", (5, 5)), ("3X2", (3, 2)), ("5", None), ("0x3", None), ("ax2", None),
                                     ("²x2", None), ("５x5", None), ("5x٥", None)])
def test_parse_grid(text, ok):
    """Only ASCII digits: '²' passes str.isdigit() but int() refuses it (an internal error, before), and full-width
    or Arabic-Indic digits are refused alike."""
    if ok:
        assert parse_grid(text) == ok
    else:
        with pytest.raises(InputError, match=r"^grid: expected COLSxROWS with whole numbers 1\.\.100"):
            parse_grid(text)


# --- search -----------------------------------------------------------------------------------------------------

def test_search_finds_the_spotlight():
    image = _small_creative()
    offsets = candidate_offsets(image.shape[:2], SMALL, "cta", grid=(5, 5)).offsets
    result = search_position(Spotlight((98, 80, 10, 10)), image, SMALL, "cta", offsets, batch_size=7)
    best = result.candidates[0]
    x, y, w, h = best.box
    assert x <= 98 and y <= 80 and x + w >= 108 and y + h >= 90  # the best box holds the whole spotlight
    shares = [c.share_of("cta") for c in result.candidates]
    assert shares == sorted(shares, reverse=True)
    assert result.best.after.element("cta").share == pytest.approx(best.share_of("cta"))
    assert result.best.comparison.element("cta").delta_share > 0.5
    rec = result.whatif_results(2)
    assert len(rec) == 2 and rec[0].share_after == best.share_of("cta") and rec[0].delta_share > 0


def test_search_is_batched_and_its_shares_match_direct_scoring(engine):
    image = _small_creative()
    offsets = candidate_offsets(image.shape[:2], SMALL, "cta", grid=(3, 3)).offsets
    spy = Spy(engine)
    result = search_position(spy, image, SMALL, "cta", offsets, batch_size=4)
    n = len(offsets) + 1  # the baseline rides in the first batch
    assert spy.calls == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    base = engine.predict(image).share(SMALL[0].box)
    assert result.baseline.element("cta").share == pytest.approx(base, rel=1e-5)
    for c in result.candidates:
        edited = apply_edits(image, SMALL, [Move("cta", c.dx, c.dy)])
        direct = engine.predict(edited.image).share(list(edited.elements[0].box))
        assert c.share_of("cta") == pytest.approx(direct, rel=1e-5, abs=1e-9)


def test_a_search_on_large_creatives_holds_fewer_of_them_at_once(monkeypatch):
    """16 edited creatives of 100 MP per model call, each with its map and table, asked for 24 GB and were killed
    for memory: a call holds at most SEARCH_BATCH_PIXELS pixels of creatives (here scaled down with the image)."""
    from foveal.scoring import whatif

    image = _small_creative()
    offsets = candidate_offsets(image.shape[:2], SMALL, "cta", grid=(3, 3)).offsets
    pixels = image.shape[0] * image.shape[1]
    monkeypatch.setattr(whatif, "SEARCH_BATCH_PIXELS", 3 * pixels + 1)
    spy = Spy(Spotlight((98, 80, 10, 10)))
    search_position(spy, image, SMALL, "cta", offsets, batch_size=16)
    assert max(spy.calls) == 3 and sum(spy.calls) == len(offsets) + 1
    monkeypatch.setattr(whatif, "SEARCH_BATCH_PIXELS", pixels // 2)  # one at a time even when one is over it
    spy = Spy(Spotlight((98, 80, 10, 10)))
    search_position(spy, image, SMALL, "cta", offsets, batch_size=16)
    assert set(spy.calls) == {1}


def test_run_edits_scores_both_images_in_one_call(engine):
    image = _small_creative()
    spy = Spy(engine)
    outcome = run_edits(spy, image, SMALL, [Move("cta", 60, -20)])
    assert spy.calls == [2]
    assert outcome.after.element("cta").box == (70, 50, 30, 14)
    direct = engine.predict(outcome.edited.image).share([70, 50, 30, 14])
    assert outcome.comparison.element("cta").share_b == pytest.approx(direct, rel=1e-5)
    with pytest.raises(InputError, match="no edit"):
        run_edits(spy, image, SMALL, [])


def test_an_edit_that_pastes_one_element_over_another_says_so():
    """Moving the CTA onto the logo hid the logo under it and read as 'better' (the logo's attention now counted
    as conversion), without a word that the edit covered another element."""
    from foveal.scoring.whatif import whatif_edits

    image, spotlight = _small_creative(), Spotlight((98, 80, 10, 10))
    body, _, _ = whatif_edits(spotlight, image, SMALL, [Move("cta", 80, -66)])
    assert body["notes"] == ["after the edits 'cta' and 'logo' overlap on 100% of the smaller box (over max_overlap, "
                             "0.1): the element pasted there hides the other, so part of this change is a hidden "
                             "element, not attention that moved"]
    assert whatif_edits(spotlight, image, SMALL, [Move("cta", 60, -20)])[0]["notes"] == []
    # A search asked to allow overlaps does not note what it was allowed
    searched, _, _ = whatif_search(spotlight, image, SMALL, "cta", grid=(5, 5), max_overlap=1.0)
    assert searched["best_edit"]["notes"] == []


def test_an_element_pasted_over_and_then_uncovered_again_is_noted_as_erased():
    """Moving the CTA onto the logo and back read "no element box changed" and "better" with no note, though the
    second move filled the logo's pixels in from around them."""
    from foveal.scoring.whatif import whatif_edits

    image, spotlight = _small_creative(), Spotlight((98, 80, 10, 10))
    there_and_back = [Move("cta", 80, -66), Move("cta", -80, 66)]
    body, outcome, _ = whatif_edits(spotlight, image, SMALL, there_and_back)
    assert body["statement"].endswith(": no element box changed")
    assert body["notes"] == ["edit 1 (move 'cta' by (+80, -66) px) pasted 'cta' over 100% of 'logo'; a later edit "
                             "moved it off, but what it covered is filled in from around it, not restored: 'logo' "
                             "stays partly erased in the edited creative, and part of this change is that, not "
                             "attention that moved"]
    assert not np.array_equal(outcome.edited.image[4:16, 90:120], image[4:16, 90:120])  # what the note says
    assert [tuple(e.box for e in step) for step in outcome.edited.steps] == [
        ((90, 4, 30, 14), (90, 4, 30, 12), (8, 6, 60, 16)), tuple(e.box for e in SMALL)]
    # A move that never lands on another element, there and back, has nothing to note
    assert whatif_edits(spotlight, image, SMALL, [Move("cta", 60, -20), Move("cta", -60, 20)])[0]["notes"] == []


def test_edit_and_search_names_are_read_as_element_files_read_them():
    """" cta " and a decomposed "café" named their elements in --move and --scale but not in --search, and a swap
    of the two spellings of one name swapped the element with itself."""
    from foveal.scoring.edits import Scale, parse_swap

    elements = (*SMALL[:2], Element("caf\u00e9", "headline", (8, 6, 60, 16)))
    offsets = candidate_offsets((96, 128), elements, " cafe\u0301 ", grid=(2, 2)).offsets
    assert offsets == candidate_offsets((96, 128), elements, "caf\u00e9", grid=(2, 2)).offsets
    for swap in (lambda: Swap("caf\u00e9", "cafe\u0301"), lambda: parse_swap("caf\u00e9, cafe\u0301")):
        with pytest.raises(InputError, match="must differ|cannot swap with itself"):
            swap()
    assert Scale(" cafe\u0301", 0.9).name == "caf\u00e9" and Swap("cta ", " logo").first == "cta"  # as recorded


# --- CLI --------------------------------------------------------------------------------------------------------

def _example(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped example creative, or a small synthetic one when the examples are absent."""
    if EXAMPLE.is_file() and EXAMPLE_ELEMENTS.is_file():
        return EXAMPLE, EXAMPLE_ELEMENTS
    image, elements = tmp_path / "creative.png", tmp_path / "creative.json"
    Image.fromarray(_small_creative()).save(image)
    elements.write_text(json.dumps([e.to_dict() for e in SMALL]))
    return image, elements


def test_cli_edits_write_json_and_previews(tmp_path):
    image, elements = _example(tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "whatif", str(image), "--elements", str(elements), "--move", "cta:0,-20", "--swap",
                 "logo,cta", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["edited.png", "whatif.json", "whatif.png"]
    doc = json.loads((out / "whatif.json").read_text())
    assert doc["mode"] == "edits"
    assert [e["op"] for e in doc["edits"]] == ["move", "swap"]  # command-line order
    assert doc["statement"].startswith("move 'cta' by (+0, -20) px; swap 'logo' and 'cta': ")
    assert "'cta' " in doc["statement"] and "'logo' " in doc["statement"]
    assert doc["verdict"] in ("better", "worse", "mixed", "no material change")
    spec = load_elements(elements, np.asarray(Image.open(image)).shape[:2])
    edited = np.asarray(Image.open(out / "edited.png"))
    expected = apply_edits(np.asarray(Image.open(image).convert("RGB")), spec.elements,
                           [Move("cta", 0, -20), Swap("logo", "cta")])
    np.testing.assert_array_equal(edited, expected.image)
    assert doc["elements_after"] == [e.to_dict() for e in expected.elements]
    by_name = {e["name"]: e for e in doc["elements"]}
    assert set(by_name) == {e.name for e in spec.elements}
    for e in doc["elements"]:
        assert e["delta_share"] == pytest.approx(e["share_b"] - e["share_a"])


def test_cli_prints_the_notes_that_qualify_its_verdict(tmp_path, capsys):
    image, elements = tmp_path / "small.png", tmp_path / "small.json"
    Image.fromarray(_small_creative()).save(image)
    elements.write_text(json.dumps([e.to_dict() for e in SMALL]))
    assert main(["whatif", str(image), "--elements", str(elements), "--move", "cta:80,-66", "--move", "cta:-80,66",
                 "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    note = json.loads((tmp_path / "out" / "whatif.json").read_text())["notes"][-1]
    assert "stays partly erased" in note and f"foveal: note: {note}\n" in err


def test_cli_search_reports_best_positions_batched(tmp_path, monkeypatch):
    image, elements = _example(tmp_path)
    calls = []
    original = Engine.predict_batch

    def spy(self, images, batch_size=16):
        images = list(images)
        calls.append(len(images))
        return original(self, images, batch_size=batch_size)

    monkeypatch.setattr(Engine, "predict_batch", spy)
    out = tmp_path / "out"
    assert main(["-q", "whatif", str(image), "--elements", str(elements), "--search", "cta", "--grid", "3x3",
                 "--top", "2", "--batch-size", "4", "-o", str(out)]) == 0
    doc = json.loads((out / "whatif.json").read_text())
    search = doc["search"]
    assert sum(calls) == search["positions"]["tried"] + 1 and max(calls) <= 4
    assert len(search["best"]) == min(2, search["positions"]["tried"])
    shares = [c["share"] for c in search["candidates"]]
    assert shares == sorted(shares, reverse=True)
    assert search["best"][0]["share"] == shares[0]
    assert doc["best_edit"]["edits"] == [{"op": "move", "element": "cta", "dx": search["best"][0]["dx"],
                                          "dy": search["best"][0]["dy"]}]


def test_a_search_records_the_default_grid_it_used():
    """whatif.json said "grid": null, "step": null for a search without either, hiding the 5x5 grid it ran."""
    image = _small_creative()
    for kwargs, recorded in (({}, ([5, 5], None)), ({"step": 20}, (None, 20)), ({"grid": (2, 3)}, ([2, 3], None))):
        body, _, _ = whatif_search(Spotlight((98, 80, 10, 10)), image, SMALL, "cta", **kwargs)
        positions = body["search"]["positions"]
        assert (positions["grid"], positions["step"]) == recorded, kwargs


@pytest.mark.parametrize("mode", [["--move", "cta:0,-20"], ["--search", "cta", "--grid", "2x2"]])
def test_cli_decides_on_the_fp32_graph_and_an_int8_decision_says_so(tmp_path, mode):
    """A search ranks and recommends at compare's 0.5 pp threshold, where the int8 graph's rounding changes calls:
    "auto" runs fp32 on the CPU; int8, asked for explicitly, runs and carries the caveat."""
    image, elements = _example(tmp_path)
    docs = {}
    for precision in ("auto", "int8"):
        out = tmp_path / precision
        assert main(["-q", "whatif", str(image), "--elements", str(elements), *mode, "--precision", precision,
                     "-o", str(out)]) == 0
        docs[precision] = json.loads((out / "whatif.json").read_text())
    assert docs["auto"]["model"]["precision"] == "fp32"
    assert not any("int8 graph" in note for note in docs["auto"].get("notes", []))
    assert docs["int8"]["model"]["precision"] == "int8"
    assert any("int8 graph" in note and "precision fp32" in note for note in docs["int8"]["notes"])


@pytest.mark.parametrize("args,text", [
    (["--move", "button:0,10"], "no element named 'button'"),
    (["--move", "cta:0,-100000"], "outside the"),
    (["--search", "nope"], "no element named 'nope'"),
])
def test_cli_bad_input_is_one_line_exit_1_and_writes_nothing(tmp_path, capsys, args, text):
    image, elements = _example(tmp_path)
    out = tmp_path / "out"
    assert main(["-q", "whatif", str(image), "--elements", str(elements), *args, "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foveal: error:") and text in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("args,text", [
    (["--move", "cta:0"], "error: argument --move: expected NAME:DX,DY"),
    (["--scale", "cta:0"], "error: argument --scale: the factor must be a positive number"),
    (["--search", "cta", "--grid", "2"], "error: argument --grid: expected COLSxROWS"),
    (["--search", "cta", "--grid", "²x2"], "error: argument --grid: expected COLSxROWS"),
    # a conflict of two options: it was exit 1, "give either grid or step, not both", naming neither flag
    (["--search", "cta", "--step", "50", "--grid", "3x3"], "error: argument --grid: not allowed with argument --step"),
])
def test_cli_a_malformed_edit_or_grid_is_a_usage_error(tmp_path, capsys, args, text):
    """Wrong on its face, like --step 0: exit status 2 naming the flag, before the image is read."""
    with pytest.raises(SystemExit) as stop:
        main(["-q", "whatif", str(EXAMPLE), "--elements", str(tmp_path / "missing.json"), *args,
              "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and text in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [[], ["--move", "cta:0,1", "--search", "cta"], ["--move", "cta:0,1", "--step", "5"],
                                  # a search's settings with edits were ignored without a word
                                  ["--move", "cta:0,1", "--top", "5"], ["--move", "cta:0,1", "--max-overlap", "0.5"]])
def test_cli_mode_errors_are_usage_errors(tmp_path, args):
    image, elements = _example(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["-q", "whatif", str(image), "--elements", str(elements), *args, "-o", str(tmp_path / "out")])
    assert exc.value.code == 2


def test_search_may_land_on_another_elements_box():
    # With --max-overlap 1 the element may take a same-sized element's exact box: scoring must not refuse that.
    image = _small_creative()
    twins = (Element("cta", "cta", (10, 70, 30, 14)), Element("badge", "other", (90, 70, 30, 14)))
    offsets = candidate_offsets(image.shape[:2], twins, "cta", step=80, max_overlap=1.0).offsets
    assert (80, 0) in offsets
    result = search_position(Spotlight((90, 70, 30, 14)), image, twins, "cta", [(80, 0)])
    assert result.candidates[0].box == (90, 70, 30, 14)


def _map_with_share(share: float, y: int) -> SaliencyMap:
    """A 100x100 map putting ``share`` of the attention, evenly, on the 10x10 box at (0, y)."""
    prob = np.full((100, 100), (1 - share) / 9900)
    prob[y:y + 10, :10] = share / 100
    return SaliencyMap(prob)


def test_statements_never_round_an_immaterial_change_up_to_the_threshold():
    # +0.496 pp is "no material change" for compare (and for the whatif recommendations); printed "+0.5 pp" the
    # statement would read as a material gain.
    from foveal.scoring.compare import compare_scores
    from foveal.scoring.edits import EditedCreative
    from foveal.scoring.scores import score_creative
    from foveal.scoring.whatif import EditOutcome, change_statement, outcome_document

    before_map, after_map = _map_with_share(0.030, 0), _map_with_share(0.03496, 1)
    elements = (Element("cta", "cta", (0, 0, 10, 10)),)
    moved = (Element("cta", "cta", (0, 1, 10, 10)),)
    before, after = score_creative(before_map, elements), score_creative(after_map, moved)
    outcome = EditOutcome(edits=(Move("cta", 0, 1),), edited=EditedCreative(np.zeros((100, 100, 3), np.uint8), moved),
                          map_before=before_map, map_after=after_map, before=before, after=after,
                          comparison=compare_scores(before, after))
    assert outcome.comparison.element("cta").change == "no material change"
    for text in (outcome_document(outcome)["statement"], change_statement("cta", "move 'cta'", 0.030, 0.03496)):
        points = float(text.rsplit("(", 1)[1].split(" pp")[0])
        assert 0.49 < points < 0.5, text


def test_cli_refusing_one_output_writes_none(tmp_path, capsys):
    # Whatif again on the edited.png of a run, into the same folder: that input would be replaced, which is refused,
    # and nothing else may be written either (a new whatif.png beside the old whatif.json would mismatch it).
    image, elements = _example(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    edited = out / "edited.png"
    edited.write_bytes(image.read_bytes())
    assert main(["-q", "whatif", str(edited), "--elements", str(elements), "--move", "cta:0,-20", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one of this run's inputs" in err[0], err
    assert [p.name for p in out.iterdir()] == ["edited.png"] and edited.read_bytes() == image.read_bytes()


def test_edits_given_as_an_iterator_are_applied_and_recorded():
    """An iterator was read by the edit and then found empty: the image changed but whatif.json listed no edit,
    and an empty iterator passed the "no edit given" check."""
    engine, image = Engine("itti-koch"), _small_creative()
    outcome = run_edits(engine, image, SMALL, (e for e in [Move("cta", 1, 0)]))
    assert outcome.edits == (Move("cta", 1, 0),)
    with pytest.raises(InputError, match="no edit given"):
        run_edits(engine, image, SMALL, iter([]))


def test_search_arguments_of_the_wrong_shape_are_refused_in_one_line():
    """candidate_offsets(None, ...) raised TypeError, elements as tuples AttributeError; offsets of three values
    ValueError, of a float a TypeError from slicing."""
    image = _small_creative()
    with pytest.raises(InputError, match=r"^image_hw: expected the image's \(height, width\)"):
        candidate_offsets(None, SMALL, "cta")
    with pytest.raises(InputError, match=r"^elements: expected a list of Element"):
        candidate_offsets(image.shape[:2], None, "cta")
    with pytest.raises(InputError, match=r"^elements: expected Element objects .*got tuple"):
        candidate_offsets(image.shape[:2], [("cta", "cta", (1, 1, 5, 5))], "cta")
    for offsets in ([(1, 2, 3)], [(1.5, 0)], ["ab"]):
        with pytest.raises(InputError, match=r"^search_position: offsets are \(dx, dy\) pairs of whole pixels"):
            search_position(Spotlight((0, 0, 5, 5)), image, SMALL, "cta", offsets)
    result = search_position(Spotlight((0, 0, 5, 5)), image, SMALL, "cta", [(np.int64(2), np.uint8(1))])
    assert all(type(v) is int for c in result.candidates for v in (c.dx, c.dy))


def test_library_calls_refuse_bad_arguments_as_foveal_errors(engine):
    """Each raised a plain Python error (an ndarray grid once the model had run, None elements, 4,300+ digit numbers'
    messages) or, for a box off the image, returned moves to a box outside it."""
    from foveal.scoring.edits import Scale
    from foveal.scoring.whatif import edit_from_dict

    image = np.zeros((40, 60, 3), np.uint8)
    els = [Element("cta", "cta", (10, 10, 10, 10)), Element("logo", "logo", (40, 20, 10, 10))]
    doc = whatif_search(engine, image, els, "cta", grid=np.array([2, 2]))
    assert json.loads(json.dumps(doc[0]))["search"]["positions"]["grid"] == [2, 2]
    with pytest.raises(InputError, match="elements: expected a list of Element objects"):
        search_position(engine, image, None, "cta", [(1, 0)])
    with pytest.raises(InputError, match=r"box \[10, 10, 20, 20\] is empty or outside the 10x10 image"):
        candidate_offsets((10, 10), [Element("a", "cta", (10, 10, 20, 20))], "a")
    for make, match in [(lambda: Scale("a", 10**5000), "got a int too long to print"),
                        (lambda: Move("a", 10**5000, 0), "dx and dy must be under 1,000,000,000 pixels"),
                        (lambda: edit_from_dict({"op": "scale", "element": "a", "factor": 10**400}),
                         r"the factor must be a number in \(0, 1000\]"),
                        (lambda: edit_from_dict({"op": "x", "k": "y" * 100000}), "^edit: expected an object")]:
        with pytest.raises(InputError, match=match) as info:
            make()
        assert len(str(info.value)) < 300


def test_a_swap_of_two_elements_that_fill_the_image_says_so():
    with pytest.raises(InputError, match="the elements cover the whole image between them"):
        apply_edits(np.zeros((100, 100, 3), np.uint8),
                    [Element("a", "cta", (0, 0, 50, 100)), Element("b", "logo", (50, 0, 50, 100))], [Swap("a", "b")])
