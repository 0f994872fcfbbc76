"""File chosen → attention overlay drawn and scores shown, in real headless Chromium against the real service.

Run: ``PYTHONPATH=python python -m pytest benchmarks/test_bench_page.py -s`` (``FOVEAL_NUM_THREADS=1`` for one
thread).  For an 800×600 and a 1920×1080 JPEG creative with the six example elements, interleaved, it measures:

- ``page drawn``: the page's own ``performance.measure`` from the file-input change to the frame holding the
  overlay and the local share/lift/rank table (the page's critical path: decode, POST /v1/predict as float32
  .npy, summed-area table, render);
- ``page served``: until the service's /v1/score document (percentiles, recommendations) is shown too
  (includes the page's 250 ms debounce);
- baselines measured in the same run: ``http predict``, the bare POST /v1/predict?format=npy round trip from
  Python (httpx), and ``in-process``, ``Engine.predict`` + ``score_creative`` with no HTTP and no browser.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest

from tests.page_harness import ROOT, browser_missing, chromium, open_page, running_service

MISSING = browser_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"the page benchmark needs a browser: {MISSING}")

EXAMPLES = ROOT / "examples"
SIZES = ((800, 600), (1920, 1080))
ROUNDS = int(os.environ.get("FOVEAL_BENCH_ROUNDS", "7"))


def creatives(tmp: Path) -> dict[tuple[int, int], Path]:
    """The example creative stretched to each size, as a quality-90 JPEG (a typical export)."""
    from PIL import Image

    out = {}
    with Image.open(EXAMPLES / "creative.png") as image:
        for w, h in SIZES:
            path = tmp / f"creative_{w}x{h}.jpg"
            image.convert("RGB").resize((w, h), Image.Resampling.LANCZOS).save(path, quality=90)
            out[(w, h)] = path
    return out


def elements_for(w: int, h: int) -> str:
    spec = json.loads((EXAMPLES / "creative.json").read_text())
    return json.dumps({"units": "relative", "elements": [
        {"name": e["name"], "kind": e["kind"],
         "box": [e["box"][0] / 600, e["box"][1] / 600, e["box"][2] / 600, e["box"][3] / 600]}
        for e in spec["elements"]]})


def page_times(driver, path: Path, elements: Path) -> tuple[float, float]:
    """Load ``path`` into a fresh page holding the example elements; return (drawn, served) in seconds."""
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(driver, driver.current_url.rstrip("/"))  # nothing kept from the last round
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.querySelectorAll('#colormap option').length") > 0)
    # Elements first (they are carried over to the creative that follows), then the timed file.
    driver.find_element("id", "file-a").send_keys(str(EXAMPLES / "creative.png"))
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    driver.find_element("id", "import-elements").send_keys(str(elements))
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return performance.getEntriesByName('foveal:served').length") > 0)
    driver.execute_script("performance.clearMeasures(); performance.clearMarks();")
    driver.find_element("id", "file-a").send_keys(str(path))
    WebDriverWait(driver, 60, poll_frequency=0.02).until(lambda d: d.execute_script(
        "return performance.getEntriesByName('foveal:served').length") > 0)
    rows = driver.execute_script("return document.querySelectorAll('#scores-table tbody tr').length")
    assert rows == 6, rows
    drawn, served = driver.execute_script(
        "return ['foveal:drawn', 'foveal:served'].map((n) => performance.getEntriesByName(n)[0].duration)")
    return drawn / 1000, served / 1000


def test_page_drop_to_overlay(tmp_path):
    import httpx

    from foveal import Engine
    from foveal.scoring import parse_elements, score_creative

    files = creatives(tmp_path)
    engine = Engine()
    results: dict[tuple[str, tuple[int, int]], list[float]] = {}
    with running_service() as url:
        driver = chromium()
        try:
            open_page(driver, url)
            with httpx.Client(timeout=60) as client:
                for round_ in range(ROUNDS + 1):  # round 0 warms every path up and is not counted
                    for size, path in files.items():
                        spec_path = tmp_path / f"elements_{size[0]}x{size[1]}.json"
                        spec_path.write_text(elements_for(*size))
                        data = path.read_bytes()
                        start = time.perf_counter()
                        smap = engine.predict(data)
                        score_creative(smap, parse_elements(json.loads(spec_path.read_text()), smap.shape).elements)
                        in_process = time.perf_counter() - start
                        start = time.perf_counter()
                        r = client.post(f"{url}/v1/predict", params={"format": "npy"},
                                        files={"image": (path.name, data, "image/jpeg")})
                        r.raise_for_status()
                        http = time.perf_counter() - start
                        drawn, served = page_times(driver, path, spec_path)
                        if round_:
                            for name, value in (("in-process", in_process), ("http predict", http),
                                                ("page drawn", drawn), ("page served", served)):
                                results.setdefault((name, size), []).append(value)
        finally:
            driver.quit()
    threads = os.environ.get("FOVEAL_NUM_THREADS", "default")
    print(f"\nfile → overlay + scores, FOVEAL_NUM_THREADS={threads}, {ROUNDS} rounds, interleaved "
          "(median, min–max, ms)")
    for size in SIZES:
        for name in ("in-process", "http predict", "page drawn", "page served"):
            v = [1000 * t for t in results[(name, size)]]
            print(f"  {size[0]}x{size[1]:<5} {name:<13} {statistics.median(v):7.0f}  ({min(v):.0f}–{max(v):.0f})")
