"""Element files: JSON and CSV forms, the units rule, and one clear error per kind of mistake."""
from __future__ import annotations

import json
import os

import pytest

from foveal.errors import ElementSpecError, InputError
from foveal.scoring.elements import (MAX_ELEMENTS, MAX_NAME_CHARS, Element, check_elements, find_element_file, format_of,
                                     load_elements, make_element, parse_elements, parse_elements_csv,
                                     parse_elements_json)

HW = (200, 400)  # height, width


def el(name="cta", kind="cta", box=(10, 20, 30, 40), **extra):
    return {"name": name, "kind": kind, "box": list(box), **extra}


def test_bare_list_in_pixels():
    spec = parse_elements([el(), el("logo", "logo", (0, 0, 400, 200))], HW)
    assert [e.name for e in spec] == ["cta", "logo"]
    assert spec.elements[0] == Element("cta", "cta", (10, 20, 30, 40))
    assert spec.elements[0].xyxy == (10, 20, 40, 60) and spec.elements[0].area == 1200
    assert spec.format is None


def test_object_form_carries_format_and_relative_units():
    spec = parse_elements({"format": "feed", "units": "relative",
                           "elements": [el(box=(0.25, 0.5, 0.5, 0.25))]}, HW)
    assert spec.format == "feed"
    assert spec.elements[0].box == (100, 100, 200, 50)


def test_element_units_override_file_units():
    spec = parse_elements({"units": "relative", "elements": [el(box=(0.0, 0.0, 0.5, 0.5)),
                                                              el("px", "logo", (1, 1, 1, 1), units="px")]}, HW)
    assert spec.elements[0].box == (0, 0, 200, 100)
    assert spec.elements[1].box == (1, 1, 1, 1)


@pytest.mark.parametrize("box", [(0.05, 0.05, 0.9, 0.9), (0.5, 0.5, 0.25, 0.1), (0, 0, 0.5, 1)])
def test_relative_looking_pixel_boxes_are_refused_with_the_units_hint(box):
    # Never guessed: a box whose edges all lie in [0, 1] read as pixels is at most one pixel, so it is refused with
    # the fix (it used to score ~1e-8 as a 1x1 box).
    with pytest.raises(ElementSpecError, match='declare units "relative"'):
        parse_elements([el(box=box)], HW)
    # Whole numbers are pixels: [0, 0, 1, 1] is a 1x1 box, never the whole image.
    assert parse_elements([el(box=(0, 0, 1, 1))], HW).elements[0].box == (0, 0, 1, 1)


def test_fractional_pixels_round_edges_to_nearest():
    assert make_element("a", "cta", [10.4, 10.6, 20.2, 5.0], HW).box == (10, 11, 21, 5)


def test_element_to_dict_round_trips():
    e = Element("cta", "cta", (1, 2, 3, 4))
    assert parse_elements([e.to_dict()], HW).elements[0] == e


def test_csv_with_and_without_units():
    text = "name,kind,x,y,w,h\ncta,cta,10,20,30,40\nlogo,logo,0,0,50,50\n"
    spec = parse_elements_csv(text, HW)
    assert [e.box for e in spec] == [(10, 20, 30, 40), (0, 0, 50, 50)]
    spec = parse_elements_csv("name,kind,x,y,w,h,units\nhero,product,0.5,0,0.5,1,relative\n", HW)
    assert spec.elements[0].box == (200, 0, 200, 200)


@pytest.mark.parametrize("item, field", [
    (el(kind="button"), "'kind'"),
    (el(name=""), "'name'"),
    (el(name=3), "'name'"),
    (el(box=(1, 2, 3)), "'box'"),
    (el(box=(1, 2, "3", 4)), "value w"),
    (el(box=(1, 2, True, 4)), "value w"),
    (el(box=(1, float("nan"), 3, 4)), "finite"),
    (el(box=(1, 2, 0, 4)), "zero or negative width or height"),
    (el(box=(1, 2, 3, -4)), "zero or negative width or height"),
    (el(box=(390, 0, 20, 10)), "outside"),
    (el(box=(-1, 0, 20, 10)), "outside"),
    (el(box=(5.1, 5.1, 0.2, 0.2)), "empty pixel box"),
    (el(units="percent"), "'units'"),
    ({"name": "cta", "kind": "cta"}, "missing field 'box'"),
    ("cta", "must be an object"),
])
def test_bad_element_names_the_element_and_field(item, field):
    with pytest.raises(ElementSpecError, match="element 0") as info:
        parse_elements([item], HW, source="ad.json")
    assert field in str(info.value)
    assert str(info.value).startswith("ad.json")
    assert "\n" not in str(info.value)


def test_relative_box_past_the_edge_is_outside():
    with pytest.raises(ElementSpecError, match="outside"):
        parse_elements({"units": "relative", "elements": [el(box=(0.6, 0.0, 0.5, 0.5))]}, HW)


def test_duplicate_names_refused():
    with pytest.raises(ElementSpecError, match="elements 0 and 1 are both named 'cta'"):
        parse_elements([el(), el(box=(50, 50, 10, 10))], HW)


def test_identical_box_under_two_names_refused():
    with pytest.raises(ElementSpecError, match="identical box .*'cta'.*'button'|'cta'.*'button'.*identical box"):
        parse_elements([el(), el("button", "cta")], HW)


def test_empty_and_wrongly_typed_files_refused():
    with pytest.raises(ElementSpecError, match="no elements"):
        parse_elements([], HW)
    with pytest.raises(ElementSpecError, match="'elements' list"):
        parse_elements({"items": []}, HW)
    with pytest.raises(ElementSpecError, match="must be a JSON list"):
        parse_elements({"elements": {"cta": [1, 2, 3, 4]}}, HW)
    # The text of a file was told "'elements' must be a JSON list", naming a field it never had.
    with pytest.raises(ElementSpecError, match="expected decoded JSON .* got str; .* use parse_elements_json"):
        parse_elements('[{"name": "a", "kind": "cta", "box": [0, 0, 2, 2]}]', HW)
    with pytest.raises(ElementSpecError, match="'format'"):
        parse_elements({"format": 1080, "elements": [el()]}, HW)
    with pytest.raises(ElementSpecError, match="'format' holds a lone UTF-16 surrogate"):
        parse_elements({"format": "1080x1080\ud800", "elements": [el()]}, HW)  # report.html could not hold it


def test_element_count_is_bounded():
    many = [el(f"e{i}", box=(i % 190, i // 190, 1, 1)) for i in range(MAX_ELEMENTS + 1)]
    parse_elements(many[:MAX_ELEMENTS], (200, 200))
    with pytest.raises(ElementSpecError, match="more than the 10,000 a creative may have"):
        parse_elements(many, (200, 200))
    with pytest.raises(ElementSpecError, match="surrogate"):
        parse_elements([el("bad\ud800")], HW)


def test_an_element_file_past_the_cap_is_refused_before_its_elements_are_read():
    """A million elements were each checked and put in pixels before the count was: 13 s and 1.4 GB to refuse."""
    import time

    many = [{"name": "e", "kind": "nope", "box": "not a box"}] * 1_000_000  # each one bad: none may be read
    started = time.perf_counter()
    with pytest.raises(ElementSpecError, match=r"^elements: 1,000,000 elements, more than the 10,000"):
        parse_elements(many, (200, 200))
    rows = "name,kind,x,y,w,h\n" + "".join(f"e{i},cta,{i % 190},{i // 190},1,1\n" for i in range(10_001))
    with pytest.raises(ElementSpecError, match=r"^elements: more than 10,000 elements, more than the 10,000"):
        parse_elements_csv(rows, (200, 200))
    assert time.perf_counter() - started < 5


def test_names_are_read_without_surrounding_spaces_and_in_nfc():
    """' cta' and 'cta' looked alike in a report yet were two elements (a CSV stripped them, JSON did not), and
    'café' as e + combining accent could not be named by what-if as typed."""
    spec = parse_elements([el(" cta "), el("cafe\u0301", box=(50, 50, 10, 10))], HW)
    assert [e.name for e in spec.elements] == ["cta", "caf\u00e9"]
    with pytest.raises(ElementSpecError, match="named 'caf\u00e9'|'caf\u00e9'"):
        parse_elements([el("caf\u00e9"), el("cafe\u0301", box=(50, 50, 10, 10))], HW)  # one name twice
    from foveal.scoring.edits import Move, apply_edits
    import numpy as np

    moved = apply_edits(np.zeros((200, 400, 3), np.uint8), list(spec.elements), [Move("cafe\u0301 ", 5, 0)])
    assert [e.box for e in moved.elements if e.name == "caf\u00e9"] == [(55, 50, 10, 10)]


def test_element_spec_error_is_an_input_error():
    assert issubclass(ElementSpecError, InputError) and issubclass(ElementSpecError, ValueError)


@pytest.mark.parametrize("text, match", [
    ("name,kind,x,y,w\ncta,cta,1,2,3\n", "missing h"),
    ("name,kind,x,y,w,h\ncta,cta,1,2,three,4\n", "line 2 .*column 'w' must be a number"),
    # float() reads Python's 1_0 as 10, and other scripts' digits: as for outcome files, not numbers a table holds
    ("name,kind,x,y,w,h\ncta,cta,1_0,2,3,4\n", "line 2 .*column 'x' must be a number, got '1_0'"),
    ("name,kind,x,y,w,h\ncta,cta,1,\u0662,3,4\n", "line 2 .*column 'y' must be a number"),
    ("name,kind,x,y,w,h\ncta,cta,1,2,nan,4\n", "line 2 .*column 'w' must be a number"),
    ("name,kind,x,y,w,h\ncta,cta,1,2,3\n", "line 2: expected 6"),
    ("name,kind,x,y,w,h\ncta,cta,1,2,3,4,5\n", "line 2: expected 6"),
    ("name,kind,x,y,w,h\n", "no elements"),
    ("", "header must contain"),
    ("name;kind;x;y;w;h\ncta;cta;1;2;3;4\n", "separate columns with commas, not semicolons$"),  # Excel in Europe
    ("name,kind,x,y,w,h,x\ncta,cta,1,2,3,4,5\n", "column 'x' more than once"),
    (b"name,kind,x,y,w,h\ncta,cta,1,2,3,4\n", "expected CSV text, got bytes; decode it first"),
    (None, "expected CSV text, got NoneType"),
])
def test_bad_csv(text, match):
    with pytest.raises(ElementSpecError, match=match):
        parse_elements_csv(text, HW)


def test_csv_text_with_a_byte_order_mark():
    """Spreadsheets save UTF-8 CSV with a BOM; read as text (open(path).read()) it stays on the first column's name."""
    assert parse_elements_csv("\ufeffname,kind,x,y,w,h\ncta,cta,1,2,3,4\n", HW).elements[0].box == (1, 2, 3, 4)


def test_load_elements_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([el()]))
    (tmp_path / "a.csv").write_text("name,kind,x,y,w,h\ncta,cta,10,20,30,40\n")
    (tmp_path / "bad.json").write_text('[{"name": "cta",')
    (tmp_path / "a.txt").write_text("")
    assert load_elements(tmp_path / "a.json", HW).elements == load_elements(tmp_path / "a.csv", HW).elements
    with pytest.raises(ElementSpecError, match=r"bad.json: malformed JSON at line 1"):
        load_elements(tmp_path / "bad.json", HW)
    with pytest.raises(ElementSpecError, match="not found"):
        load_elements(tmp_path / "missing.json", HW)
    with pytest.raises(ElementSpecError, match=r"\.json or \.csv"):
        load_elements(tmp_path / "a.txt", HW)


def test_find_element_file_prefers_json(tmp_path):
    (tmp_path / "ad.csv").write_text("")
    assert find_element_file(tmp_path / "imgs" / "ad.png", tmp_path) == tmp_path / "ad.csv"
    (tmp_path / "ad.json").write_text("")
    assert find_element_file("ad.jpg", tmp_path) == tmp_path / "ad.json"
    with pytest.raises(ElementSpecError, match="other.json or other.csv"):
        find_element_file("other.png", tmp_path)
    # a FIFO or a folder under the name was reported as no element file at all, "expected pipe.json"
    os.mkfifo(tmp_path / "pipe.json")
    (tmp_path / "dir.csv").mkdir()
    for stem in ("pipe", "dir"):
        with pytest.raises(ElementSpecError, match=rf"{stem}\.(json|csv): not a regular file .* must be a file$"):
            find_element_file(f"{stem}.png", tmp_path)


def test_check_elements_catches_edited_boxes_leaving_the_image():
    with pytest.raises(ElementSpecError, match="outside"):
        check_elements([Element("cta", "cta", (390, 0, 20, 10))], HW)


def test_format_is_width_by_height():
    assert format_of((1920, 1080)) == "1080x1920"


@pytest.mark.parametrize("image_hw", [None, (600,), ("a", "b"), (float("nan"), 600), (-5, 5), (0, 10), (True, 5)])
def test_image_size_is_checked(image_hw):
    with pytest.raises(InputError, match="image_hw: expected the image's"):
        parse_elements([el()], image_hw)


def test_check_elements_wants_elements():
    with pytest.raises(InputError, match="expected Element objects"):
        check_elements([{"name": "a"}], HW)


@pytest.mark.parametrize("element, match", [
    (Element("cta", "cta", (0, 0, 5)), r"element 0 \('cta'\): box \(0, 0, 5\) must be 4 whole pixels"),
    (Element("cta", "cta", "0055"), "box '0055' must be 4 whole pixels"),
    (Element("cta", "cta", (0.5, 0, 5, 5)), r"box \(0.5, 0, 5, 5\) must be 4 whole pixels.*make_element"),
    (Element("cta", "cta", (True, 0, 5, 5)), "must be 4 whole pixels"),
    (Element(None, "cta", (0, 0, 5, 5)), "element 0: field 'name' must be a non-empty string, got None"),
    (Element("", "cta", (0, 0, 5, 5)), "field 'name' must be a non-empty string"),
])
def test_check_elements_checks_elements_built_directly(element, match):
    with pytest.raises(ElementSpecError, match=match):
        check_elements([element], HW)


def test_a_box_given_as_a_list_is_scored_and_edited():
    """A list box passed the check and then failed as a dict key with a bare TypeError."""
    import numpy as np

    from foveal import SaliencyMap
    from foveal.scoring.edits import Move, apply_edits
    from foveal.scoring.scores import score_creative

    with pytest.raises(ElementSpecError, match="identical box"):
        check_elements([Element("a", "cta", [1, 1, 5, 5]), Element("b", "logo", (1, 1, 5, 5))], HW)
    smap = SaliencyMap(np.full((60, 60), 1 / 3600, np.float32))
    scores = score_creative(smap, [Element("a", "cta", [1, 1, 5, 5])])
    assert scores.elements[0].share == pytest.approx(25 / 3600)
    edited = apply_edits(np.zeros((50, 50, 3), np.uint8), [Element("a", "cta", [1, 1, 5, 5])], [Move("a", 2, 2)])
    assert edited.elements[0].box == (3, 3, 5, 5)


def test_check_elements_takes_numpy_whole_pixels():
    import numpy as np

    check_elements([Element("cta", "cta", tuple(np.array([0, 0, 5, 5])))], HW)


def test_make_element_takes_numpy_numbers():
    import numpy as np

    expected = make_element("cta", "cta", [1, 2, 10, 10], HW)
    for box in ([np.int64(1), np.int32(2), 10, 10], [np.float32(1), np.float64(2), 10, 10], np.array([1, 2, 10, 10]),
                np.array([1.0, 2.0, 10.0, 10.0], np.float32)):
        assert make_element("cta", "cta", box, HW) == expected
    for box, match in ((np.array([True, False, True, True]), "value x must be a number"),
                       (np.zeros((2, 4)), "must be a list of 4 numbers"),
                       ([np.float32("nan"), 0, 5, 5], "value x must be finite")):
        with pytest.raises(ElementSpecError, match=match):
            make_element("cta", "cta", box, HW)


def test_element_name_length_is_bounded():
    """A name is repeated in every table, chart and error line: 200 characters is plenty, 100,000 is a mistake."""
    parse_elements([el("n" * MAX_NAME_CHARS)], HW)
    with pytest.raises(ElementSpecError, match=r"'name' is 100,000 characters long \('nnn.*…\); use at most 200$"):
        parse_elements([el("n" * 100_000)], HW)


@pytest.mark.parametrize("name", ["a\x00b", "line\nbreak", "\x1b[31mred", "tab\there", "\ufdd0x", "x\U0001fffe"])
def test_a_name_with_a_control_character_or_noncharacter_is_refused(name):
    """Reports are HTML with SVG inside: NUL, ESC, form feeds and noncharacters made them invalid documents."""
    with pytest.raises(ElementSpecError, match="holds a control character or a Unicode noncharacter, got .*; use "
                                               "printable text$"):
        parse_elements([el(name)], HW)
    parse_elements([el("\u202ebidi \u00e9t\u00e9 \u4e2d")], HW)  # format characters and any script are fine


@pytest.mark.parametrize("header", ["name,kind,x,y,w,h", "kind,name,x0,y0,x1,y1", "x,y,w,h,Name,Kind"])
def test_csv_sent_as_json_is_named_csv_whatever_its_column_order(header):
    """A CSV read as JSON is told to be JSON; the check took only a header starting name,kind, though the CSV
    reader takes its columns in any order, and 'kind,name,...' was 'malformed JSON at line 1 column 1'."""
    with pytest.raises(ElementSpecError, match=r"^elements: this is CSV \(header "):
        parse_elements_json(f"{header}\ncta,cta,1,2,3,4\n", HW)


@pytest.mark.parametrize("text", ["auto", '"auto"', "auto\n", "\ufeffauto"])
def test_auto_sent_as_element_json_says_where_detection_is(text):
    """'auto' (foveal score --elements auto) sent to the service's /v1/score was "malformed JSON at line 1 column 1"
    (or "must be a JSON list of objects, got str" when quoted): neither says that detection is a route of its own."""
    with pytest.raises(ElementSpecError, match=r"^elements: 'auto' is not element JSON; .*POST /v1/detect"):
        parse_elements_json(text, HW)


def test_csv_sent_as_json_names_the_client_s_way_in():
    """The refusal said foveal.Client sends a CSV element file as JSON; the Client refuses a .csv path, and sends
    as JSON what load_elements reads from it."""
    with pytest.raises(ElementSpecError) as refused:
        parse_elements_json("name,kind,x,y,w,h\ncta,cta,1,2,3,4\n", HW)
    assert str(refused.value).endswith("(foveal.Client refuses a .csv path: pass it what "
                                       "foveal.scoring.load_elements reads)")


@pytest.mark.parametrize("fmt", ["ban\x00ner", "\x1b[31mred\x07", "line\nbreak", "\ufdd0x", "f" * 201])
def test_a_format_name_that_is_no_label_is_refused(fmt):
    """A format goes where element names go (every table row, report.html) but was only checked for lone
    surrogates: NUL, ESC and BEL reached report.html raw, and a 1 MB format was copied into every row."""
    with pytest.raises(ElementSpecError, match=r"'format' .*: a format name is at most 200 characters of printable "
                                               r"text, such as \"1080x1080\"$"):
        parse_elements({"format": fmt, "elements": [el()]}, HW)
    parse_elements({"format": "\u202ebanner \u00e9t\u00e9 " + "f" * 188, "elements": [el()]}, HW)


def test_a_key_given_twice_in_element_json_is_refused():
    """JSON keeps the last of two "box" keys without a word: the box the user wrote first was scored as another."""
    text = '{"elements": [{"name": "cta", "kind": "cta", "box": [1, 2, 3, 4], "box": [0, 0, 1, 1]}]}'
    with pytest.raises(ElementSpecError, match=r"^elements: the key 'box' is given twice in one JSON object"):
        parse_elements_json(text, HW, source="elements")
    assert parse_elements_json(text.replace('"box": [0, 0, 1, 1]', '"note": 1'), HW, source="elements")
