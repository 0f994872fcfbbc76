"""Norms: building from scored creatives, the file format, validation and the model check."""
from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest

from foveal import SaliencyMap
from foveal.errors import InputError
from foveal.fileio import write_json
from foveal.scoring.elements import Element
from foveal.scoring.norms import Norms, build_norms, load_norms, norms_from_dict
from foveal.scoring.scores import score_creative

MODEL = {"name": "itti-koch", "sha256": "ab" * 32, "graph_sha256": "ab" * 32, "precision": "fp32"}


def uniform(h: int, w: int) -> SaliencyMap:
    return SaliencyMap(np.full((h, w), 1.0 / (h * w), np.float32))


def scored(h: int, w: int, cta_w: int, fmt: str | None = None):
    elements = [Element("cta", "cta", (0, 0, cta_w, h)), Element("logo", "logo", (w - 1, 0, 1, 1))]
    return score_creative(uniform(h, w), elements, format=fmt)


def test_build_groups_by_format_and_kind_sorted():
    norms = build_norms([scored(10, 100, 30), scored(10, 100, 10), scored(20, 20, 5), scored(10, 100, 20, "feed")],
                        MODEL)
    assert sorted(norms.formats) == ["100x10", "20x20", "feed"]
    assert norms.creatives == {"100x10": 2, "20x20": 1, "feed": 1}
    assert norms.formats["100x10"]["cta"].tolist() == pytest.approx([0.1, 0.3])
    assert norms.formats["20x20"]["cta"].tolist() == pytest.approx([0.25])
    values, note = norms.lookup("100x10", "cta")
    assert note is None and len(values) == 2
    assert norms.lookup("100x10", "face") == (None, "norms for format '100x10' have no 'face' elements")
    assert norms.lookup("1x1", "cta")[0] is None


def test_round_trip_through_json(tmp_path):
    norms = build_norms([scored(10, 100, 30), scored(10, 100, 10)], MODEL)
    write_json(tmp_path / "n.json", norms.to_dict())
    back = load_norms(tmp_path / "n.json")
    assert back.model == MODEL and back.creatives == norms.creatives
    assert back.formats["100x10"]["cta"].tolist() == norms.formats["100x10"]["cta"].tolist()
    # == raised "The truth value of an array with more than one element is ambiguous" (the dataclass's own __eq__).
    assert back == norms and back == pickle.loads(pickle.dumps(back))
    with pytest.raises(TypeError, match="unhashable type: 'Norms'"):  # was "unhashable type: 'dict'"
        hash(norms)
    assert back != build_norms([scored(10, 100, 30)], MODEL)
    # The percentile of a reference share against its own norms is exact after the round trip.
    cs = score_creative(uniform(10, 100), [Element("cta", "cta", (0, 0, 30, 10))], norms=back)
    assert cs.elements[0].percentile == 100.0


def test_model_mismatch_refused_or_warned():
    norms = build_norms([scored(10, 100, 30)], MODEL)
    assert norms.check_graph(MODEL) is None
    other = {"name": "deepgaze", "sha256": "cd" * 32, "graph_sha256": "cd" * 32, "precision": "fp32"}
    with pytest.raises(InputError, match="or set allow_model_mismatch to compare anyway$"):
        norms.check_graph(other)
    assert "not comparable" in norms.check_graph(other, allow_mismatch=True)


def test_norms_record_the_graph_and_refuse_another_precision():
    # The int8 and fp32 graphs of one model share name and card sha256 but not shares: norms must tell them apart.
    int8 = dict(MODEL, graph_sha256="ef" * 32, precision="int8")
    norms = build_norms([scored(10, 100, 30)], int8)
    assert norms.model == int8
    with pytest.raises(InputError, match="int8 graph.*fp32 graph"):
        norms.check_graph(MODEL)
    # score_creative checks the map's provenance itself, so the Python API cannot mix them either.
    smap = SaliencyMap(uniform(10, 100).prob, {"model": "itti-koch", "model_sha256": "ab" * 32,
                                               "graph_sha256": "ab" * 32, "precision": "fp32"})
    cta = [Element("cta", "cta", (0, 0, 30, 10))]
    with pytest.raises(InputError, match="not comparable"):
        score_creative(smap, cta, norms=norms)
    assert score_creative(smap, cta, norms=norms, allow_model_mismatch=True).elements[0].percentile == 100.0
    with pytest.raises(InputError, match="graph_sha256"):
        build_norms([scored(10, 100, 30)], {"name": "itti-koch", "sha256": "ab" * 32})


def test_version_1_norms_are_read_but_match_no_graph():
    old = {"foveal_norms": 1, "quantity": "share", "model": {"name": "itti-koch", "sha256": "ab" * 32},
           "formats": {"feed": {"creatives": 2, "kinds": {"cta": [0.3, 0.1]}}}}
    norms = norms_from_dict(old)
    with pytest.raises(InputError, match="does not record which graph"):
        norms.check_graph(MODEL)


@pytest.mark.parametrize("scored_list, model, match", [
    ("one", None, "build_norms: model must be a dict naming the graph.*engine_identity"),
    ("one", "itti-koch", "build_norms: model must be a dict naming the graph"),
    (None, MODEL, "build_norms: scored must be a list of CreativeScores"),
    ("scores.json", MODEL, "build_norms: scored must be a list of CreativeScores"),
    ([{"format": "10x10"}], MODEL, r"build_norms: scored\[0\] is a dict, not CreativeScores.*score_creative"),
])
def test_build_arguments_are_checked(scored_list, model, match):
    scored_list = [scored(10, 100, 30)] if scored_list == "one" else scored_list
    with pytest.raises(InputError, match=match):
        build_norms(scored_list, model)


def test_empty_build_refused():
    with pytest.raises(InputError, match="at least one"):
        build_norms([], MODEL)


def good() -> dict:
    return {"foveal_norms": 2, "quantity": "share", "model": dict(MODEL),
            "formats": {"feed": {"creatives": 2, "kinds": {"cta": [0.3, 0.1]}}}}


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(foveal_norms=3), "not a foveal norms file"),
    (lambda d: d.update(quantity="lift"), "'quantity'"),
    (lambda d: d.update(model={"name": "x"}), "'model'"),
    (lambda d: d.update(formats={}), "'formats'"),
    (lambda d: d["formats"]["feed"].update(creatives=0), "'creatives'"),
    (lambda d: d["formats"]["feed"]["kinds"].update(cta=[]), "kind 'cta'"),
    (lambda d: d["formats"]["feed"]["kinds"].update(cta=[0.1, 1.5]), "kind 'cta'"),
    (lambda d: d["formats"]["feed"]["kinds"].update(cta=["0.1"]), "kind 'cta'"),
    (lambda d: d["formats"]["feed"]["kinds"].update(ctaa=[0.1]), "kinds: field 'kind' must be one of .*'ctaa'; "
                                                                  "did you mean 'cta'"),
    (lambda d: d["formats"]["feed"]["kinds"].update(CTA=[0.1]), "kind 'CTA' is given twice"),
    (lambda d: d["formats"]["feed"].update(pass_percentiles={"logo": 50}), "'pass_percentiles'"),
])
def test_bad_norms_refused(mutate, match):
    d = good()
    mutate(d)
    with pytest.raises(InputError, match=match):
        norms_from_dict(d, "n.json")


def test_kinds_are_read_in_any_case_as_element_files_read_them():
    """A hand-edited norms file with "CTA" used to load and then never match a cta element ("no 'cta' elements")."""
    d = good()
    d["formats"]["feed"]["kinds"] = {"CTA": [0.3, 0.1], "Body text": [0.2]}
    d["formats"]["feed"]["pass_percentiles"] = {"Cta": 80}
    norms = norms_from_dict(d)
    assert norms.lookup("feed", "cta")[0].tolist() == [0.1, 0.3] and norms.lookup("feed", "body_text")[1] is None
    assert norms.pass_percentile_for("feed", "cta", 70) == 80.0


def test_loaded_values_are_sorted():
    assert norms_from_dict(good()).formats["feed"]["cta"].tolist() == [0.1, 0.3]


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_norms(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="malformed JSON"):
        load_norms(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text(json.dumps([1]))
    with pytest.raises(InputError, match="not a foveal norms file"):
        load_norms(tmp_path / "list.json")


def test_a_version_1_norms_file_written_again_stays_version_1():
    """A calibration proposal built on version 1 norms must stay loadable: it cannot claim a graph it never knew."""
    v1 = {"foveal_norms": 1, "quantity": "share", "model": {"name": "m", "sha256": "ab" * 32},
          "formats": {"80x60": {"creatives": 2, "kinds": {"cta": [0.1, 0.2]}}}}
    again = norms_from_dict(norms_from_dict(v1).to_dict())
    assert again.to_dict()["foveal_norms"] == 1 and again.model["graph_sha256"] is None


@pytest.mark.parametrize("kwargs, says", [
    (dict(model=None), "model must be a dict"),
    (dict(formats={"300x250": {"cta": [0.1, 2.0]}}), "shares in [0, 1]"),
    (dict(formats={"300x250": {"cta": []}}), "non-empty"),
    (dict(formats={"300x250": {"cta": [0.1], "CTA": [0.2]}}), "one non-empty list"),
    (dict(formats={"300x250": {"widget": [0.1]}}), "must be one of"),
    (dict(creatives={}), "positive count for format '300x250'"),
    (dict(creatives={"300x250": 0}), "positive count"),
    (dict(pass_percentiles={"300x250": {"cta": 500}}), "(0, 100]"),
    (dict(pass_percentiles={"300x250": {"logo": 80}}), "present in formats"),
])
def test_norms_built_by_hand_are_checked_as_a_file_is(kwargs, says):
    # A norms object made in code used to take shares over 1, an unknown kind or no creative count, and failed
    # later (a KeyError on writing, percentiles against impossible shares).
    base = dict(model={"name": "m"}, formats={"300x250": {"cta": [0.1]}}, creatives={"300x250": 2})
    with pytest.raises(InputError, match=re.escape(says)):
        Norms(**{**base, **kwargs})


def test_norms_built_by_hand_read_kinds_in_any_case():
    norms = Norms(model={"name": "m"}, formats={"300x250": {"CTA": [0.3, 0.1]}}, creatives={"300x250": 2})
    assert list(norms.formats["300x250"]) == ["cta"] and norms.formats["300x250"]["cta"].tolist() == [0.1, 0.3]
