"""Report rendering: the labelled overlay, the self-contained HTML page and the scores.json document."""
from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal import SaliencyMap
from foveal.errors import InputError
from foveal.scoring.elements import Element
from foveal.scoring.norms import Norms
from foveal.scoring.recommend import recommend
from foveal.scoring.report import (KIND_COLOURS, LEGEND_TEXT, _bar_chart, build_document, draw_boxes, legend_strip,
                                   render_html, write_report)
from foveal.scoring.scores import score_creative

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
H, W = 120, 160
PROV = {"model": "itti-koch", "model_version": "1.0.0", "model_sha256": "ab" * 32, "backend": "onnxruntime",
        "precision": "fp32", "graph_sha256": "ef" * 32, "image_sha256": "cd" * 32}


def scored(name: str = "cta", norms: Norms | None = None):
    prob = np.full((H, W), 1.0, np.float32)
    prob[10:30, 100:150] = 50.0
    smap = SaliencyMap(prob / prob.sum())
    elements = [Element(name, "cta", (100, 10, 50, 20)), Element("logo", "logo", (5, 80, 40, 30))]
    return smap, score_creative(smap, elements, norms=norms)


def document(name: str = "cta", norms: Norms | None = None, norms_info=None):
    smap, scores = scored(name, norms)
    return build_document(scores, recommend(scores), PROV, image="ad.png", elements="ad.json", norms=norms_info)


def test_boxes_drawn_in_kind_colours_without_touching_the_input():
    image = np.full((H, W, 3), 255, np.uint8)
    out = draw_boxes(image, scored()[1])
    assert (image == 255).all() and out.shape == image.shape
    assert tuple(out[29, 125]) == KIND_COLOURS["cta"]       # bottom edge of the cta box
    assert tuple(out[95, 5]) == KIND_COLOURS["logo"]        # left edge of the logo box
    assert (out[40:55, 60:90] == 255).all()                 # inside no box or label


def test_document_has_provenance_scores_and_definitions():
    doc = document()
    assert doc["model"] == {"name": "itti-koch", "version": "1.0.0", "sha256": "ab" * 32,
                            "graph_sha256": PROV["graph_sha256"], "precision": "fp32"}
    assert doc["input"] == {"image": "ad.png", "image_sha256": "cd" * 32, "elements": "ad.json"}
    assert doc["image_size"] == {"height": H, "width": W} and doc["format"] == "160x120"
    assert [e["name"] for e in doc["elements"]] == ["cta", "logo"]
    assert "percentile" in doc["definitions"] and doc["norms"] is None
    json.dumps(doc, allow_nan=False)


def test_report_of_a_map_without_provenance_says_so():
    """A map made by hand (no Engine) read "model None , fp32 graph (sha256 None…) on None" in its report."""
    smap, scores = scored()
    doc = build_document(scores, recommend(scores), smap.provenance, image="ad.png", elements="ad.json",
                         norms=None)
    image = np.zeros((H, W, 3), np.uint8)
    page = render_html(doc, image, image)
    assert "None" not in page and "a map without provenance (no model recorded)" in page
    assert "model itti-koch 1.0.0, fp32 graph (sha256 efefefefefef…) on onnxruntime" in render_html(
        document(), image, image)


def test_html_is_self_contained_and_escapes_names():
    doc = document(name="<script>alert(1)</script>")
    image = np.zeros((H, W, 3), np.uint8)
    page = render_html(doc, image, image)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert not re.search(r'(src|href)="(?!data:)', page)
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(uris) == 2
    with Image.open(io.BytesIO(base64.b64decode(uris[0]))) as im:
        assert im.size == (W, H)
    assert page.count("<rect") == 2 and "No norms were given" in page


def test_a_file_name_with_control_characters_is_shown_escaped():
    """A file's name may hold ESC, BEL or a form feed (an uploader's, or an upload's filename): they went into the
    report's title and heading raw, which an HTML page cannot hold; they are shown as escapes, as in messages."""
    doc = document()
    doc["input"]["image"] = "dir/ad\x1b[31m\x07\x0c.png"
    image = np.zeros((H, W, 3), np.uint8)
    page = render_html(doc, image, image)
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", page)
    assert "<h1>ad\\x1b[31m\\x07\\x0c.png</h1>" in page


def test_html_states_norms_and_verdicts():
    fmt = f"{W}x{H}"
    norms = Norms(model={"name": "itti-koch", "sha256": "ab" * 32}, creatives={fmt: 4},
                  formats={fmt: {"cta": np.array([0.01, 0.02, 0.03, 0.04])}})
    doc = document(norms=norms, norms_info={"source": "n.json", "model": norms.model, "creatives": 4,
                                            "warning": None})
    page = render_html(doc, np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8))
    assert "4 reference creatives" in page and 'class="pass">pass' in page
    assert "norms for format &#x27;160x120&#x27; have no &#x27;logo&#x27; elements" in page
    assert "green = passes its norm" in page


def test_html_states_a_kinds_own_pass_percentile():
    # The norms pass the CTA only from the 90th percentile: "pass = percentile >= 70" alone would contradict a CTA
    # at the 80th percentile marked "fail".
    fmt = f"{W}x{H}"
    norms = Norms(model={"name": "itti-koch", "sha256": "ab" * 32}, creatives={fmt: 10},
                  formats={fmt: {"cta": np.arange(1, 11) / 100, "logo": np.arange(1, 11) / 100}},
                  pass_percentiles={fmt: {"cta": 90.0}})
    doc = document(norms=norms, norms_info={"source": "n.json", "model": norms.model, "creatives": 10,
                                            "warning": None})
    cta = doc["elements"][0]
    assert cta["pass_percentile"] == 90.0 and doc["elements"][1]["pass_percentile"] == 70.0
    page = render_html(doc, np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8))
    assert "pass = percentile ≥ 70; cta: ≥ 90 (set by the norms)." in page
    assert document()["elements"][0]["pass_percentile"] is None  # no norms, no pass mark


def test_a_failing_percentile_is_not_printed_as_the_pass_mark():
    # 2,100 of 3,001 references lie below the CTA: the 69.977th percentile fails 70, and "70.0" beside "fail" reads
    # as a contradiction.
    fmt = f"{W}x{H}"
    share = scored()[1].element("cta").share
    refs = np.r_[np.full(2100, share / 2), np.full(901, (1 + share) / 2)]  # above the CTA, and a share: <= 1
    norms = Norms(model={"name": "itti-koch", "sha256": "ab" * 32}, creatives={fmt: 3001}, formats={fmt: {"cta": refs}})
    doc = document(norms=norms, norms_info={"source": "n.json", "model": norms.model, "creatives": 3001,
                                            "warning": None})
    assert doc["elements"][0]["percentile"] == pytest.approx(100 * 2100 / 3001) and not doc["elements"][0]["passed"]
    page = render_html(doc, np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8))
    row = re.search(r"<tr><td>cta</td>.*?</tr>", page)[0]
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert float(cells[6]) < 70 and "fail" in cells[8], cells


def test_write_report_files_and_scores_only_mode(tmp_path):
    doc = document()
    image = np.zeros((H, W, 3), np.uint8)
    write_report(tmp_path / "a", doc, image, image)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["overlay.png", "report.html", "scores.json"]
    write_report(tmp_path / "b", doc, image, image, html_report=False)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["scores.json"]
    assert json.loads((tmp_path / "b" / "scores.json").read_text()) == json.loads(json.dumps(doc))


def test_scores_only_run_removes_the_earlier_report_it_would_contradict(tmp_path):
    """A --no-report run left the previous run's report.html and overlay.png beside the new scores.json."""
    image = np.zeros((H, W, 3), np.uint8)
    write_report(tmp_path / "a", document("cta"), image, image)
    write_report(tmp_path / "a", document("button"), image, image, html_report=False)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["scores.json"]
    # Files of the user's under those names are not foveal's to remove.
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "report.html").write_text("<html>my notes</html>")
    Image.fromarray(image).save(tmp_path / "b" / "overlay.png")
    write_report(tmp_path / "b", document(), image, image, html_report=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["overlay.png", "report.html", "scores.json"]


def test_nothing_written_when_rendering_fails(tmp_path):
    doc = document()
    with pytest.raises(InputError, match=r"write_report: image must be \(H, W, 3\) uint8 pixels, got float64"):
        write_report(tmp_path / "c", doc, np.zeros((H, W), np.float64), np.zeros((H, W), np.float64))
    assert not (tmp_path / "c").exists()


def test_nothing_written_when_a_later_file_is_refused(tmp_path):
    # scores.json, the last file written, cannot be: a folder holds its name. overlay.png and report.html of this
    # run must not be left beside it.
    (tmp_path / "d" / "scores.json").mkdir(parents=True)
    image = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(InputError, match="scores.json: it is a folder"):
        write_report(tmp_path / "d", document(), image, image)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["scores.json"]


def test_a_creative_without_elements_gets_a_report(tmp_path):
    # score_creative takes an empty element list (the creative-level numbers still hold); its report must not
    # fail on a chart with no bars.
    smap = scored()[0]
    scores = score_creative(smap, [])
    doc = build_document(scores, recommend(scores), PROV, image="ad.png", elements="ad.json", norms=None)
    image = np.zeros((H, W, 3), np.uint8)
    write_report(tmp_path / "e", doc, image, image)
    page = (tmp_path / "e" / "report.html").read_text()
    assert "No elements were scored" in page and "<rect" not in page


def test_an_overlay_of_another_size_is_refused(tmp_path):
    """It was written as is: a report whose overlay showed another image's size."""
    image = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(InputError, match=f"the overlay is {W}x10 but the image {W}x{H}"):
        write_report(tmp_path / "d", document(), image, image[:10])
    with pytest.raises(InputError, match="doc must be a scores document"):
        write_report(tmp_path / "d", {}, image, image)
    assert not (tmp_path / "d").exists()


def test_norms_without_the_format_say_so_in_words():
    fmt = f"{W}x{H}"
    norms = Norms(model={"name": "itti-koch", "sha256": "ab" * 32}, creatives={"feed": 4},
                  formats={"feed": {"cta": np.array([0.01, 0.02])}})
    doc = document(norms=norms, norms_info={"source": "/abs/path/to/norms.json", "model": norms.model,
                                            "creatives": None, "warning": None})
    page = render_html(doc, np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8))
    assert "None reference" not in page and f"format <bdi>{fmt}</bdi>: no reference creatives of this format" in page
    assert "/abs/path" not in page and "norms.json" in page


def test_bar_labels_sit_beside_their_bars():
    # A small share on a large box: the area tick lies far right of the bar; the label used to follow the tick.
    elements = [{"name": "body", "kind": "body_text", "share": 0.02, "area_fraction": 0.6, "lift": 0.03,
                 "passed": None},
                {"name": "cta", "kind": "cta", "share": 0.3, "area_fraction": 0.05, "lift": 6.0, "passed": None}]
    svg = _bar_chart(elements)
    bars = {float(w) for w in re.findall(r'<rect x="190" y="[\d.]+" width="([\d.]+)"', svg)}
    labels = [float(x) for x in re.findall(r'<text x="([\d.]+)" y="[\d.]+" fill="#1d232a"', svg)]
    assert sorted(190 + w + 6 for w in bars) == sorted(labels)


def test_overlay_has_a_colour_legend():
    doc = document()
    page = render_html(doc, np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8))
    assert 'alt="colour scale of the attention overlay" src="data:image/png;base64,' in page
    assert html.escape(LEGEND_TEXT) in page
    strip = legend_strip(100)
    assert strip.shape == (14, 100, 3)
    lum = strip[0].astype(float) @ [0.299, 0.587, 0.114]
    assert lum[-1] > lum[50] > lum[10]  # from the grey image through purple to the bright peak colour


def test_html_names_the_graph_that_ran_not_only_the_model():
    """int8, fp16 and fp32 graphs give different shares: the report names the precision and that graph's sha256."""
    page = render_html(document(), np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8))
    assert "fp32 graph (sha256 efefefefefef" in page and "abababababab" not in page


def test_report_of_hostile_names_holds_them_as_text_and_runs_no_script(tmp_path):
    """``foveal score`` for real with hostile names everywhere the report shows one: the image's and the norms'
    file names, every element name (one as long as allowed), the format and the norms' model name.  The page
    holds each as text (html.parser), and in Chromium runs none of them, shows them, loads its images and refuses
    inline script by its own policy, opened from disk as a mailed report would be."""
    from foveal.cli import main
    from tests.html_audit import FILE_NAME, PAYLOADS, written_page_checked

    names = [*PAYLOADS, "x" * 200]  # the longest name allowed
    fmt = PAYLOADS[1]
    image = tmp_path / FILE_NAME
    image.write_bytes((EXAMPLES / "creative.png").read_bytes())
    spec = tmp_path / "elements.json"
    spec.write_text(json.dumps({"format": fmt, "elements": [
        {"name": n, "kind": k, "box": [10 + 60 * i, 10 + 60 * i, 50, 50]}
        for i, (n, k) in enumerate(zip(names, ["cta", "headline", "product", "logo", "face", "body_text", "other",
                                               "cta"]))]}))
    norms = tmp_path / FILE_NAME.replace(".png", ".json")
    norms.write_text(json.dumps({"foveal_norms": 1, "quantity": "share", "model": {"name": PAYLOADS[0],
                                 "sha256": "00" * 32}, "formats": {fmt: {"creatives": 3, "kinds": {
                                     "cta": [0.01, 0.02, 0.03], "logo": [0.01, 0.5, 0.9]}}}}))
    out = tmp_path / "out"
    assert main(["-q", "score", str(image), "--elements", str(spec), "--norms", str(norms),
                 "--allow-model-mismatch", "-o", str(out), "--model", "itti-koch"]) == 0
    with written_page_checked(out / "report.html", [*names, FILE_NAME, norms.name], images=3) as driver:
        assert driver.title == f"foveal report: {FILE_NAME}"


def test_a_right_to_left_override_in_a_name_reverses_only_that_name(tmp_path):
    """U+202E in the format or an element name (an agency's file) once reversed the rest of the line in Chromium:
    the model and graph after the format in the header, the kind after the name in the chart."""
    from tests.page_harness import browser_missing, chromium

    if (missing := browser_missing()) is not None:
        pytest.skip(f"needs a browser: {missing}")
    doc = document(name="cta\u202eevil")
    doc["format"] = "160x120\u202e"
    path = tmp_path / "report.html"
    path.write_text(render_html(doc, np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8)), encoding="utf-8")
    driver = chromium()
    try:
        driver.get(path.as_uri())
        # Left edges of the first and last letter of a word that follows the name: in reading order unless reversed.
        meta = driver.execute_script("""const node = document.querySelector('.meta').lastChild;
            const at = (i) => { const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1);
                                return r.getBoundingClientRect().left; };
            const i = node.data.indexOf('model');
            return [at(i), at(i + 4)];""")
        chart = driver.execute_script("""const text = [...document.querySelectorAll('svg text')]
                .find((t) => t.textContent.includes('(cta)'));
            const i = text.textContent.indexOf('(cta)');
            return [text.getStartPositionOfChar(i).x, text.getStartPositionOfChar(i + 4).x];""")
    finally:
        driver.quit()
    assert meta[0] < meta[1], "the header after the format reads right to left"
    assert chart[0] < chart[1], "the chart's kind after the name reads right to left"


def test_a_long_name_in_the_chart_keeps_its_start_and_the_whole_name_as_a_tooltip():
    # The label is right-aligned in a 190-unit column: a long name ran off the chart's left edge, so names that
    # differ in their first words ("summer_sale_..." vs "winter_sale_...") showed as the same tail.
    names = ["summer_sale_2026_primary_button_cta_v2", "winter_sale_2026_primary_button_cta_v2"]
    elements = [{"name": n, "kind": "cta", "share": 0.1 * (i + 1), "area_fraction": 0.05, "lift": 2.0,
                 "passed": None} for i, n in enumerate(names)]
    svg = _bar_chart(elements)
    labels = re.findall(r'<text x="182" y="[\d.]+" text-anchor="end">(.*?)</text>', svg)
    visible = lambda text: html.unescape(text).replace("\u2068", "").replace("\u2069", "")  # noqa: E731
    assert len(labels) == 2
    shown = [visible(re.sub(r"<title>.*?</title>", "", label)) for label in labels]
    titles = [visible(re.search(r"<title>(.*?)</title>", label)[1]) for label in labels]
    assert all(len(s) <= 24 for s in shown), shown  # 13-unit text: about 7 units a character, 182 units of room
    assert sorted(s[:6] for s in shown) == ["summer", "winter"]
    assert sorted(titles) == [f"{n} (cta)" for n in names]


def test_a_strip_longer_than_jpeg_allows_gets_a_report(tmp_path):
    """A 70000x4 banner stopped `foveal score` with an internal error: the report embeds JPEGs, whose sides end at
    65500 pixels."""
    prob = np.full((4, 70_000), 1.0 / (4 * 70_000), np.float32)
    scores = score_creative(SaliencyMap(prob), [Element("cta", "cta", (0, 0, 10, 2))])
    doc = build_document(scores, recommend(scores), PROV, image="strip.png", elements="strip.json", norms=None)
    image = np.zeros((4, 70_000, 3), np.uint8)
    write_report(tmp_path, doc, image, image)
    page = (tmp_path / "report.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert [Image.open(io.BytesIO(base64.b64decode(u))).size for u in uris[:2]] == [(70_000, 4)] * 2


def test_a_creative_over_the_display_size_is_embedded_reduced(monkeypatch):
    """A 25-MP creative's report.html was 38 MB: the page embeds the creative and its overlay at most DISPLAY_PIXELS
    (here scaled down with the creative); the overlay.png written beside it keeps the full size."""
    from foveal.scoring import report

    monkeypatch.setattr(report, "DISPLAY_PIXELS", (H // 2) * (W // 2))
    image = np.full((H, W, 3), 90, np.uint8)
    page = render_html(document(), image, image)
    sizes = [Image.open(io.BytesIO(base64.b64decode(uri))).size
             for uri in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)]
    assert sizes == [(W // 2, H // 2)] * 2


def test_labels_are_drawn_in_the_alphabet_they_are_written_in():
    """Pillow's default font covers ASCII only: "Café crème" was drawn "Caf▯ cr▯me", Cyrillic, Greek and Hebrew as
    rows of the same box."""
    from PIL import Image, ImageDraw

    from foveal.scoring.report import label_font

    font = label_font(20)

    def drawn(ch: str) -> bytes:
        image = Image.new("L", (40, 40))
        ImageDraw.Draw(image).text((5, 5), ch, font=font, fill=255)
        return image.tobytes()

    missing = drawn("\U000F0000")  # a private-use character: the font's missing-glyph box
    for ch in "éßЖλשأ":
        assert drawn(ch) != missing, ch


def test_labels_keep_out_of_each_others_way_and_long_names_are_shortened():
    """A logo's label lay under the label of a full-image box that also began at y=0; a 200-character name made a
    label as wide as the image."""
    from foveal.scoring.report import OVERLAY_NAME_CHARS, _label, label_places

    spots = label_places([(0, 0, 600, 600), (0, 0, 140, 64), (400, 520, 550, 564)], [(150, 20), (90, 20), (60, 20)],
                         (600, 600), 2)
    rects = [(x, y, x + w, y + 20) for (x, y), w in zip(spots, (150, 90, 60))]
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    long = scored("x" * 200)[1].element("x" * 200)
    assert _label(long).startswith("x" * (OVERLAY_NAME_CHARS - 1) + "… ")


def test_the_top_ten_percent_card_explains_itself_in_its_own_unit():
    # The card showed a percentage ("65.7%") with the hint "0.1 = scattered", a fraction.
    page = render_html(document(), np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8))
    assert "10% = scattered evenly" in page and "0.1 = scattered" not in page
