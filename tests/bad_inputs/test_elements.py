"""Bad-input campaign, element files: any bytes in a .json or .csv element file give a validated ElementSpec or an
ElementSpecError with a one-line message, never a raw exception (the CLI used to print "internal error")."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foveal.errors import ElementSpecError
from foveal.scoring.elements import ELEMENT_KINDS, MAX_ELEMENTS, ElementSpec, load_elements, parse_elements

HW = (200, 300)
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=30)
box_values = st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=3) | st.none() | st.booleans()
elements = st.fixed_dictionaries(
    {"name": st.text(max_size=6) | st.integers(), "kind": st.sampled_from([*ELEMENT_KINDS, "CTA", "Body-Text", "ctaa"]),
     "box": st.lists(box_values, min_size=3, max_size=5) | st.lists(st.floats(-50, 400), min_size=4, max_size=4)},
    optional={"units": st.sampled_from(["px", "relative", "pct", 3]),
              "box_format": st.sampled_from(["xywh", "xyxy", "ltrb"])})


def _outcome(call):
    try:
        return call()
    except ElementSpecError as exc:
        assert str(exc) and "\n" not in str(exc) and len(str(exc)) < 800
        return None


@FAST
@given(json_values)
def test_any_json_value_is_a_spec_or_element_spec_error(obj):
    _outcome(lambda: parse_elements(obj, HW))


@FAST
@given(st.lists(elements, max_size=6), st.sampled_from([None, "px", "relative", "bad"]))
def test_element_lists_are_validated_whole(items, units):
    obj = items if units is None else {"units": units, "elements": items}
    spec = _outcome(lambda: parse_elements(obj, HW))
    if spec is not None:
        assert isinstance(spec, ElementSpec)
        for e in spec:
            x, y, w, h = e.box
            assert e.kind in ELEMENT_KINDS and w >= 1 and h >= 1 and x >= 0 and y >= 0
            assert x + w <= HW[1] and y + h <= HW[0]


@FAST
@given(st.binary(max_size=300), st.sampled_from([".json", ".csv"]))
def test_any_bytes_in_an_element_file(tmp_path, data, suffix):
    path = tmp_path / f"e{suffix}"
    path.write_bytes(data)
    _outcome(lambda: load_elements(path, HW))


@FAST
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_any_csv_text(tmp_path, text):
    path = tmp_path / "e.csv"
    path.write_text("name,kind,x,y,w,h\n" + text, encoding="utf-8")
    _outcome(lambda: load_elements(path, HW))


HOSTILE = {
    "5000-digit integer": '[{"name": "a", "kind": "cta", "box": [' + "9" * 5000 + ", 0, 10, 10]}]",
    "100,000-deep nesting": "[" * 100_000 + "]" * 100_000,
    "400-digit box value": '[{"name": "a", "kind": "cta", "box": [' + "9" * 400 + ", 0, 10, 10]}]",
    "400-digit float box value": '[{"name": "a", "kind": "cta", "box": [' + "9" * 400 + ".5, 0, 10, 10]}]",
    "NUL in JSON": '[{"name": "a\x00", "kind": "cta", "box": [0, 0, 10, 10]}]',
}


@pytest.mark.parametrize("what", HOSTILE)
def test_hostile_json_files(tmp_path, what):
    path = tmp_path / "e.json"
    path.write_text(HOSTILE[what], encoding="utf-8")
    _outcome(lambda: load_elements(path, HW))


def test_a_field_over_pythons_csv_limit_is_read(tmp_path):
    path = tmp_path / "e.csv"  # 200,000 characters: over csv's default 131,072 limit (a raw _csv.Error before)
    path.write_text("name,kind,x,y,w,h\n" + "a" * 200_000 + ",cta,0,0,10,10\n", encoding="utf-8")
    with pytest.raises(ElementSpecError, match="'name' is 200,000 characters long"):  # read, then judged as a name
        load_elements(path, HW)


@pytest.mark.parametrize("text, match", [
    ("name,kind,x,y,w,h\n" + '"' + "a" * (2 << 20) + '",cta,0,0,10,10\n', "malformed CSV"),  # over foveal's 1 MiB
    ("name,kind,x,y,w,h\na,cta," + "9" * 400 + ",0,10,10\n", "finite"),  # float('999...') is inf
    ("name,kind,x,y,w,h\na,cta,1e400,0,10,10\n", "finite"),
])
def test_hostile_csv_files(tmp_path, text, match):
    path = tmp_path / "e.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ElementSpecError, match=match):
        load_elements(path, HW)


def test_a_fifo_or_folder_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "e.json"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(ElementSpecError, match="not a regular file"):
        load_elements(fifo, HW)
    (tmp_path / "d.json").mkdir()
    with pytest.raises(ElementSpecError, match="got a directory"):
        load_elements(tmp_path / "d.json", HW)


def test_kinds_are_case_insensitive_with_did_you_mean():
    spec = parse_elements([{"name": "a", "kind": "CTA", "box": [0, 0, 10, 10]},
                           {"name": "b", "kind": "Body text", "box": [0, 20, 10, 10]}], HW)
    assert [e.kind for e in spec] == ["cta", "body_text"]
    with pytest.raises(ElementSpecError, match="did you mean 'headline'"):
        parse_elements([{"name": "a", "kind": "headlin", "box": [0, 0, 10, 10]}], HW)


def test_an_element_file_at_the_limit_parses(tmp_path):
    # All boxes distinct; one element more is refused (test_scoring_elements.py).
    items = [{"name": f"e{i}", "kind": "other", "box": [i % 290, (i // 290) % 190, 10, 10]}
             for i in range(MAX_ELEMENTS)]
    path = tmp_path / "e.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    assert len(load_elements(path, HW)) == MAX_ELEMENTS


@pytest.mark.parametrize("parse, text", [
    ("move", "cta:" + "9" * 5000 + ",0"), ("move", "cta:1e3,0"), ("scale", "logo:" + "9" * 400),
    ("scale", "logo:nan"), ("scale", "logo:1e308"), ("swap", "a,a"), ("grid", "999999999x2"), ("grid", "1" * 5000 + "x2"),
])
def test_edit_and_search_arguments(parse, text):
    from foveal.errors import InputError
    from foveal.scoring.edits import parse_move, parse_scale, parse_swap
    from foveal.scoring.whatif import parse_grid

    with pytest.raises(InputError):
        {"move": parse_move, "scale": parse_scale, "swap": parse_swap, "grid": parse_grid}[parse](text)


def test_search_sizes_are_bounded():
    from foveal.errors import InputError
    from foveal.scoring.elements import Element
    from foveal.scoring.whatif import candidate_offsets

    elements = (Element("cta", "cta", (10, 10, 20, 20)),)
    with pytest.raises(InputError, match="larger step or a smaller grid"):
        candidate_offsets((1000, 1000), elements, "cta", step=1)
    with pytest.raises(InputError, match="^grid: columns and rows must be 1..100"):
        candidate_offsets((100, 100), elements, "cta", grid=(10**9, 2))
    with pytest.raises(InputError, match="no position to try but the current one: the step finds no other place"):
        candidate_offsets((100, 100), elements, "cta", step=10**30)


@pytest.mark.parametrize("text", [
    '{"foveal_norms": 2, "formats": {"f": {"creatives": 1, "kinds": {"cta": [' + "9" * 5000 + "]}}}}",
    '{"foveal_norms": 2, "quantity": "share", "model": {"name": "m", "sha256": "a", "graph_sha256": "a", '
    '"precision": "fp32"}, "formats": {"f": {"creatives": 1, "kinds": {"cta": [' + "9" * 400 + "]}}}}",
    "[" * 100_000 + "]" * 100_000,
    "\xff\xfe",
])
def test_hostile_norms_files(tmp_path, text):
    from foveal.errors import InputError
    from foveal.scoring.norms import load_norms

    path = tmp_path / "norms.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError):
        load_norms(path)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_norms(fifo)
