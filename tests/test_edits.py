"""Pixel edits: hole filling, move, scale, swap, and the parsing of their command-line forms."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from foveal.errors import ElementSpecError, InputError
from foveal.scoring.edits import (BORDER_RADIUS, GHOST_MARGIN, HOLE_MARGIN, Move, Scale, Swap, apply_edits, fill_holes, move_variants,
                                  parse_move, parse_scale, parse_swap)
from foveal.scoring.elements import Element, make_element


READ_RADIUS = HOLE_MARGIN + BORDER_RADIUS + 1  # how far from the hole the fill may read


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _band(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels outside ``mask`` within Chebyshev distance ``radius`` of it."""
    ys, xs = np.nonzero(mask)
    near = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            yy, xx = np.clip(ys + dy, 0, mask.shape[0] - 1), np.clip(xs + dx, 0, mask.shape[1] - 1)
            near[yy, xx] = True
    return near & ~mask


def _assert_fill_in_border_range(image: np.ndarray, mask: np.ndarray, out: np.ndarray) -> None:
    np.testing.assert_array_equal(out[~mask], image[~mask])
    band = image[_band(mask, READ_RADIUS)]
    lo, hi = band.min(axis=0), band.max(axis=0)
    filled = out[mask]
    assert (filled >= lo).all() and (filled <= hi).all(), (lo, hi, filled.min(axis=0), filled.max(axis=0))


# --- fill_holes -----------------------------------------------------------------------------------------------

def test_a_progress_wrapper_sees_every_edit_and_can_stop_them():
    """The service passes one that raises once the request's deadline has passed: 400 edits on a large creative
    each read and write the whole image, and ran on for seconds after the client's deadline."""
    image = np.full((60, 80, 3), 120, np.uint8)
    elements = [Element("cta", "cta", (10, 10, 20, 10))]
    edits = [Move("cta", 1, 0), Move("cta", -1, 0), Move("cta", 0, 2)]
    seen = []

    def watched(items, total):
        assert total == len(edits)
        for item in items:
            seen.append(item)
            yield item

    watched_result, plain = apply_edits(image, elements, edits, progress=watched), apply_edits(image, elements, edits)
    assert np.array_equal(watched_result.image, plain.image) and watched_result.elements == plain.elements
    assert seen == edits

    class Stop(Exception):
        pass

    def stopping(items, total):
        for i, item in enumerate(items):
            if i == 1:
                raise Stop
            yield item

    with pytest.raises(Stop):
        apply_edits(image, elements, edits, progress=stopping)


def test_fill_keeps_outside_and_stays_in_border_range():
    image = _noise(60, 80)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 25:60] = True
    _assert_fill_in_border_range(image, mask, fill_holes(image, mask))


def test_fill_of_a_flat_surround_is_flat():
    image = np.full((40, 50, 3), (10, 120, 250), np.uint8)
    image[15:25, 20:30] = 0  # the content that is cut out
    mask = np.zeros((40, 50), bool)
    mask[15:25, 20:30] = True
    out = fill_holes(image, mask)
    assert (out[mask] == (10, 120, 250)).all()


def test_fill_ignores_an_outline_just_outside_the_hole():
    image = np.full((40, 50, 3), 200, np.uint8)
    image[14:26, 19:31] = 0  # a dark frame one pixel wider than the box: the tight-box case
    mask = np.zeros((40, 50), bool)
    mask[15:25, 20:30] = True
    out = fill_holes(image, mask)
    assert (out[mask] == 200).all()
    np.testing.assert_array_equal(out[~mask], image[~mask])


def test_fill_follows_a_horizontal_gradient():
    image = np.zeros((40, 60, 3), np.uint8)
    image[..., 1] = (np.arange(60) * 4)[None, :]
    mask = np.zeros((40, 60), bool)
    mask[10:30, 15:45] = True
    row = fill_holes(image, mask)[20, 15:45, 1].astype(int)
    assert (np.diff(row) > 0).all()
    assert abs(row[0] - 15 * 4) <= 8 and abs(row[-1] - 44 * 4) <= 8


def test_fill_hole_at_the_image_edge():
    image = _noise(30, 30, seed=1)
    mask = np.zeros((30, 30), bool)
    mask[0:12, 0:30] = True  # whole top band: no pixel above, none left or right
    _assert_fill_in_border_range(image, mask, fill_holes(image, mask))


def test_fill_crossing_bands_needs_a_second_pass():
    image = _noise(40, 50, seed=2)
    mask = np.zeros((40, 50), bool)
    mask[10:20, :] = True   # full-width rows
    mask[:, 30:35] = True   # full-height columns: their crossing has no known pixel in row or column
    out = fill_holes(image, mask)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert out[mask].min() >= image[~mask].min() and out[mask].max() <= image[~mask].max()


def test_fill_of_a_large_hole_holds_a_bounded_memory_and_chunks_change_nothing(monkeypatch):
    """The fill held about 260 bytes per pixel of the hole's surroundings (a box sum by four index grids, every
    hole pixel's temporaries at once): a 100-MP what-if needed some 25 GB."""
    import tracemalloc

    from foveal.scoring import edits

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1200, 1200, 3), np.uint8)
    mask = np.zeros((1200, 1200), bool)
    mask[60:1130, 60:1130] = True
    tracemalloc.start()
    try:
        filled = fill_holes(image, mask)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 140 * mask.size, peak / mask.size
    small = rng.integers(0, 255, (40, 50, 3), np.uint8)
    hole = np.zeros((40, 50), bool)
    hole[5:30, 8:44] = True
    whole = fill_holes(small, hole)
    monkeypatch.setattr(edits, "FILL_CHUNK", 7)
    np.testing.assert_array_equal(fill_holes(small, hole), whole)
    assert filled.shape == image.shape


def test_fill_refuses_a_whole_image_hole():
    with pytest.raises(InputError, match="whole image"):
        fill_holes(_noise(5, 5), np.ones((5, 5), bool))


def test_fill_checks_shapes():
    with pytest.raises(InputError, match="mask shape"):
        fill_holes(_noise(5, 5), np.ones((4, 5), bool))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.integers(2, 40), st.data())
def test_fill_property(h, w, data):
    image = _noise(h, w, seed=h * 100 + w)
    y0 = data.draw(st.integers(0, h - 1))
    x0 = data.draw(st.integers(0, w - 1))
    y1 = data.draw(st.integers(y0 + 1, h))
    x1 = data.draw(st.integers(x0 + 1, w))
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    if mask.all():
        return
    _assert_fill_in_border_range(image, mask, fill_holes(image, mask))


# --- move / scale / swap --------------------------------------------------------------------------------------

ELEMENTS = (Element("cta", "cta", (10, 50, 20, 10)), Element("logo", "logo", (60, 5, 30, 12)),
            Element("headline", "headline", (5, 5, 40, 20)))


def test_an_edited_creative_compares_and_hashes_without_looking_at_its_pixels():
    """Comparing two (a what-if outcome with its pickled copy, say) raised "The truth value of an array with more
    than one element is ambiguous"; hashing one raised "unhashable type: 'numpy.ndarray'"."""
    import copy

    edited = apply_edits(_noise(80, 100), ELEMENTS, [Move("cta", 30, -10)])
    clone = copy.deepcopy(edited)
    assert edited == edited and edited != clone and (edited.elements, 1) == (clone.elements, 1)
    np.testing.assert_array_equal(clone.image, edited.image)
    assert len({edited, clone}) == 2


def test_move_pastes_the_content_and_fills_the_hole():
    image = _noise(80, 100)
    edited = apply_edits(image, ELEMENTS, [Move("cta", 30, -10)])
    assert edited.elements[0] == Element("cta", "cta", (40, 40, 20, 10))
    assert edited.elements[1:] == ELEMENTS[1:]
    np.testing.assert_array_equal(edited.image[40:50, 40:60], image[50:60, 10:30])
    touched = np.zeros((80, 100), bool)
    g = GHOST_MARGIN
    touched[50 - g:60 + g, 10 - g:30 + g] = True  # hole, grown by the ghost margin
    touched[40:50, 40:60] = True  # paste
    np.testing.assert_array_equal(edited.image[~touched], image[~touched])
    hole = np.zeros((80, 100), bool)
    hole[50 - g:60 + g, 10 - g:30 + g] = True
    band = image[_band(hole, READ_RADIUS)]  # the fill reads the image before the paste
    filled = edited.image[hole & ~touched_by_paste(40, 40, 20, 10)]
    assert (filled >= band.min(axis=0)).all() and (filled <= band.max(axis=0)).all()


def touched_by_paste(x: int, y: int, w: int, h: int) -> np.ndarray:
    m = np.zeros((80, 100), bool)
    m[y:y + h, x:x + w] = True
    return m


def test_move_does_not_modify_its_input():
    image = _noise(80, 100)
    before = image.copy()
    apply_edits(image, ELEMENTS, [Move("cta", 1, 1)])
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("dx,dy", [(-11, 0), (71, 0), (0, -51), (0, 21)])
def test_move_out_of_the_image_is_refused_with_the_allowed_range(dx, dy):
    with pytest.raises(InputError, match=r"outside the 100x80 image; dx must be in \[-10, 70\] and dy in \[-50, 20\]"):
        apply_edits(_noise(80, 100), ELEMENTS, [Move("cta", dx, dy)])


def test_move_to_the_edge_is_allowed():
    edited = apply_edits(_noise(80, 100), ELEMENTS, [Move("cta", 70, 20)])
    assert edited.elements[0].box == (80, 70, 20, 10)


def test_scale_resizes_about_the_centre_with_lanczos():
    image = _noise(80, 100)
    edited = apply_edits(image, ELEMENTS, [Scale("logo", 0.5)])
    assert edited.elements[1].box == (67, 8, 15, 6)  # centre (75, 11), rounded down
    expected = np.asarray(Image.fromarray(image[5:17, 60:90]).resize((15, 6), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(edited.image[8:14, 67:82], expected)
    touched = np.zeros((80, 100), bool)
    touched[5 - GHOST_MARGIN:17 + GHOST_MARGIN, 60 - GHOST_MARGIN:90 + GHOST_MARGIN] = True
    np.testing.assert_array_equal(edited.image[~touched], image[~touched])


@pytest.mark.parametrize("variants", [False, True])
def test_a_moved_element_leaves_no_ghost_outline(variants):
    # A tight box: the element's anti-aliased 1-px outline lies just outside it and used to stay behind.
    image = np.full((80, 100, 3), 200, np.uint8)
    image[49:61, 9:31] = 120    # outline ring, one pixel outside the box
    image[50:60, 10:30] = 20    # the element itself: box (10, 50, 20, 10)
    image[70:78, 10:30] = 90    # another element, away from it
    elements = (Element("cta", "cta", (10, 50, 20, 10)), Element("far", "other", (10, 70, 20, 8)))
    move = (lambda e: next(move_variants(image, e, "cta", [(50, -30)]))) if variants else \
        (lambda e: apply_edits(image, e, [Move("cta", 50, -30)]))
    old = move(elements).image[47:63, 7:33]
    assert np.abs(old.astype(int) - 200).max() <= 2, "outline left behind"
    # An element right beside the box keeps its pixels: the ghost margin never cuts into another element.
    image[48:62, 32:40] = 90
    beside = (elements[0], Element("side", "other", (32, 48, 8, 14)))
    np.testing.assert_array_equal(move(beside).image[48:62, 32:40], image[48:62, 32:40])


def test_scale_up_past_the_edge_is_refused():
    with pytest.raises(InputError, match="smaller factor"):
        apply_edits(_noise(80, 100), ELEMENTS, [Scale("logo", 3)])


def test_swap_exchanges_contents_at_each_others_centre():
    image = _noise(80, 100)
    edited = apply_edits(image, ELEMENTS, [Swap("cta", "logo")])
    cta, logo = edited.elements[0], edited.elements[1]
    # cta (20x10) centred on logo's centre (75, 11); logo (30x12) centred on cta's centre (20, 55)
    assert cta.box == (65, 6, 20, 10) and logo.box == (5, 49, 30, 12)
    np.testing.assert_array_equal(edited.image[6:16, 65:85], image[50:60, 10:30])
    np.testing.assert_array_equal(edited.image[49:61, 5:35], image[5:17, 60:90])


def test_edits_apply_in_order():
    image = _noise(80, 100)
    there_and_back = apply_edits(image, ELEMENTS, [Move("cta", 30, 0), Move("cta", -30, 0)])
    assert there_and_back.elements == ELEMENTS
    np.testing.assert_array_equal(there_and_back.image[50:60, 10:30], image[50:60, 10:30])


def test_unknown_element_names_the_known_ones():
    with pytest.raises(InputError, match=r"no element named 'button'; the elements are cta, headline, logo"):
        apply_edits(_noise(80, 100), ELEMENTS, [Move("button", 0, 1)])


def test_an_unknown_element_is_refused_in_a_bounded_message():
    """Every element's name was listed, and the unknown name in full: /v1/whatif on 10,000 elements answered a 4 MB
    message."""
    many = [make_element(f"e{i:03}", "other", [i % 10 * 10, i // 10 * 8, 5, 5], (80, 100)) for i in range(100)]
    with pytest.raises(InputError, match=r"no element named 'xxxxx[^,]*…; the elements are e000, .*, e019 and 80 "
                                         r"more$") as info:
        apply_edits(_noise(80, 100), many, [Move("x" * 10_000, 0, 1)])
    assert len(str(info.value)) < 300


def test_move_variants_equal_apply_edits():
    image = _noise(80, 100)
    offsets = [(0, -10), (30, 5), (-10, 20)]
    for (dx, dy), variant in zip(offsets, move_variants(image, ELEMENTS, "cta", offsets)):
        direct = apply_edits(image, ELEMENTS, [Move("cta", dx, dy)])
        np.testing.assert_array_equal(variant.image, direct.image)
        assert variant.elements == direct.elements


def test_move_variants_check_every_offset_first():
    with pytest.raises(InputError, match="outside"):
        next(move_variants(_noise(80, 100), ELEMENTS, "cta", [(0, 0), (0, 100)]))


OFF_EDGE = (Element("cta", "cta", (95, 50, 10, 10)), Element("logo", "logo", (60, 5, 30, 12)))


@pytest.mark.parametrize("edit", [Move("cta", -50, 0), Scale("cta", 0.5), Swap("cta", "logo")])
def test_an_element_off_the_image_is_refused_not_edited(edit):
    # cta's box runs 5 px off a 100 px wide image: moved, its 5 px slice would not fill its 10 px box (a numpy
    # error), and scaled by 0.5 the slice would be squashed into a 5x5 box at x=97 without a word.
    with pytest.raises(ElementSpecError, match=r"'cta'.*outside"):
        apply_edits(_noise(80, 100), OFF_EDGE, [edit])


def test_move_variants_refuse_an_element_off_the_image():
    with pytest.raises(ElementSpecError, match=r"'cta'.*outside"):
        next(move_variants(_noise(80, 100), OFF_EDGE, "cta", [(-50, 0)]))


# --- parsing --------------------------------------------------------------------------------------------------

def test_parse_good_forms():
    assert parse_move("cta:0,-60") == Move("cta", 0, -60)
    assert parse_move("hero:image: +5 , 7") == Move("hero:image", 5, 7)
    assert parse_scale("logo:0.8") == Scale("logo", 0.8)
    assert parse_scale("logo:2") == Scale("logo", 2.0)
    assert parse_swap("cta, headline") == Swap("cta", "headline")


@pytest.mark.parametrize("parse,text", [
    (parse_move, "cta"), (parse_move, "cta:0"), (parse_move, "cta:1.5,2"), (parse_move, ":0,1"),
    (parse_move, "cta:a,b"), (parse_scale, "logo"), (parse_scale, "logo:0"), (parse_scale, "logo:-1"),
    (parse_scale, "logo:inf"), (parse_scale, "logo:x"), (parse_swap, "cta"), (parse_swap, "cta,"),
    (parse_swap, "cta,cta"), (parse_swap, "a,b,c"),
])
def test_parse_malformed(parse, text):
    with pytest.raises(InputError, match=r"^(move|scale|swap): "):
        parse(text)


@pytest.mark.parametrize("edit, match", [
    (lambda: Scale("cta", 0), "factor must be a number"), (lambda: Scale("cta", float("nan")), "factor"),
    (lambda: Scale("cta", 1e300), "factor"), (lambda: Move("cta", 0.5, 0), "whole pixels"),
    (lambda: Swap("cta", "cta"), "cannot swap with itself"),
])
def test_edits_check_themselves(edit, match):
    """Built in Python (not parsed from the CLI), an edit still refuses what parse_* refuses."""
    with pytest.raises(InputError, match=match):
        edit()


def test_an_edit_that_changes_no_box_changes_no_pixel():
    """A zero move or a scale by 1 puts the patch back where it was: no hole is cut and filled around it (the fill
    used to repaint the element's ghost margin, and failed outright on an element covering the image)."""
    image = _noise(60, 80, seed=4)
    elements = [Element("cta", "cta", (20, 20, 30, 15)), Element("all", "product", (0, 0, 80, 60))]
    for edit in (Move("cta", 0, 0), Scale("cta", 1.0), Move("all", 0, 0)):
        edited = apply_edits(image, elements, [edit])
        np.testing.assert_array_equal(edited.image, image)
        assert edited.image is not image and edited.elements == tuple(elements)


def test_an_element_covering_the_image_cannot_leave_a_hole():
    image = _noise(40, 40, seed=5)
    with pytest.raises(InputError, match=r"^scaling 'all': the element covers the whole image, so nothing is left "
                                         r"to fill the space it leaves; give it a box smaller than the image$"):
        apply_edits(image, [Element("all", "product", (0, 0, 40, 40))], [Scale("all", 0.5)])


def test_numpy_numbers_in_edits_are_taken_as_python_numbers():
    """Move("logo", np.uint8(250), 0) moved a box at x=20 to 14: 20 + 250 wrapped round in uint8, without a word."""
    image = np.full((100, 400, 3), 120, np.uint8)
    elements = [Element("logo", "logo", (20, 20, 60, 30))]
    moved = apply_edits(image, elements, [Move("logo", np.uint8(250), np.int8(10))]).elements[0]
    assert moved.box == (270, 30, 60, 30) and all(type(v) is int for v in moved.box)
    assert type(Scale("logo", np.float32(0.5)).factor) is float
    with pytest.raises(InputError, match="the factor must be a number"):
        Scale("logo", np.complex64(0.5))


@pytest.mark.parametrize("parse, form", [(parse_move, "NAME:DX,DY"), (parse_scale, "NAME:FACTOR"),
                                         (parse_swap, "NAME,NAME")])
def test_edit_parsers_refuse_what_is_not_text(parse, form):
    """parse_move(None) raised AttributeError, parse_move(b"cta:1,2") TypeError."""
    for value in (None, b"cta:1,2", 5):
        with pytest.raises(InputError, match=f"expected text {form}, got {type(value).__name__}"):
            parse(value)
