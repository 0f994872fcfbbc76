"""foveal serve: the real app on a loopback port, hit by a real HTTP client (httpx).

Every endpoint; 64 concurrent requests equal serial in-process results; every error case of the API; SIGTERM with
requests in flight loses none of them.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

import foveal
from foveal import Client, Engine, ElementSpecError, ImageError, SaliencyMap, ServiceError  # noqa: E402
from foveal.fileio import encode_png  # noqa: E402
from foveal.scoring.elements import parse_elements_json  # noqa: E402
from foveal.scoring.recommend import Thresholds  # noqa: E402
from foveal.scoring.report import score_document  # noqa: E402
from foveal.serve import ServeConfig, create_app  # noqa: E402
from foveal.serve.connection import connection_factory  # noqa: E402
from test_imageio import _png_header_only  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# where foveal is imported from: the installed package in CI, python/ in a checkout
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))
EXAMPLE = ROOT / "examples" / "creative.png"
EXAMPLE_B = ROOT / "examples" / "creative_b.png"
ELEMENTS = (ROOT / "examples" / "creative.json").read_text()
ELEMENTS_B = (ROOT / "examples" / "creative_b.json").read_text()
KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started_cli(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    """``foveal serve ARGS`` on a free loopback port, once its /readyz answers 200: (process, base URL, log).

    Its temporary files go under ``tmp_path``: a test that SIGKILLs it leaves the workers' metrics folder behind."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "foveal", "serve", "--port", str(port), *args],
                                env={**os.environ, "PYTHONPATH": FOVEAL_PATH, "TMPDIR": str(tmp_path)},
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"foveal serve did not become ready: {log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base, log
        time.sleep(0.1)


@contextlib.contextmanager
def reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``proc``, killed and waited for on the way out if it is still running (a failed test leaves no server)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def other_server(handler) -> Iterator[str]:
    """A plain ``http.server`` answering with ``handler`` on a free loopback port, in a thread; yield its base URL."""
    import http.server

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def running(app, plain_uvicorn: bool = False, header_timeout_s: float = 10.0, **config):
    """Serve ``app`` with uvicorn (``config``: more of its settings) and ``foveal serve``'s own connections
    (``plain_uvicorn``: uvicorn's) on a free loopback port in a thread; yield its base URL."""
    port = free_port()
    options = {} if plain_uvicorn else {"http": connection_factory(header_timeout_s, send_timeout_s=60.0)}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options,
                                           **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def images(n: int) -> list[bytes]:
    """``n`` different small creatives in four sizes (so batches mix padded sizes)."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        h, w = (96, 128) if i % 4 == 0 else (128, 96) if i % 4 == 1 else (120, 160) if i % 4 == 2 else (64, 200)
        pixels = np.full((h, w, 3), rng.integers(40, 200), np.uint8)
        y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
        pixels[y:y + 16, x:x + 16] = rng.integers(0, 255, 3)
        out.append(png(pixels))
    return out


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text(f"# service keys\n{KEY}\nanother-key-abcdefghijklmnop\n")
    return path


@pytest.fixture(scope="module")
def url(keyfile):
    app = create_app(ServeConfig(api_keys_file=str(keyfile), max_batch=8, max_wait_ms=2, max_body_bytes=2**20,
                                 max_pixels=1_000_000))
    with running(app) as base:
        yield base


@pytest.fixture
def http(url):
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        yield client


def error_of(response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert "Traceback" not in body["error"]["message"] and "\n" not in body["error"]["message"]
    return response.status_code, body["error"]["code"]


# -- every endpoint --------------------------------------------------------------------------------------------
def test_health_ready_models_norms_openapi(url, http):
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}  # probes need no key
    assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
    models = http.get("/v1/models").json()
    assert models["serving"]["name"] == "foveal-lite0" and models["serving"]["backend"] == "onnxruntime"
    assert "foveal-lite0" in models["models"]
    assert http.get("/v1/norms").json() == {"norms": {}}
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/score", "/v1/compare", "/v1/whatif", "/v1/models", "/metrics"} <= set(paths)


def test_openapi_describes_the_answers_the_service_gives(url, http):
    """The schema declared no error answer but FastAPI's 422 HTTPValidationError, which the service never sends,
    and neither the raw bodies the client sends, the other content types, X-Deadline-Ms nor the API keys: a client
    generated from it could not read a refusal."""
    schema = httpx.get(f"{url}/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(schema)
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}  # this service checks keys
    error = {"$ref": "#/components/schemas/Error"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if status != "200":
                    assert answer["content"]["application/json"]["schema"] == error, (path, status)
            if method == "post":
                # 501: a Transfer-Encoding other than chunked, refused on any POST
                assert {"400", "413", "415", "501", "503", "504"} <= set(operation["responses"]), path
                assert "not_implemented" in operation["responses"]["501"]["description"], path
                deadline = next(p for p in operation["parameters"] if p["name"] == "X-Deadline-Ms")
                assert "below 1e12" in deadline["description"], path  # the service refuses 1e12 itself
            assert ("security" in operation) == (path not in ("/healthz", "/readyz")), path
    post = {path: item["post"] for path, item in schema["paths"].items() if "post" in item}
    assert "application/octet-stream" in post["/v1/predict"]["requestBody"]["content"]
    assert set(post["/v1/compare"]["responses"]["200"]["content"]) == {"application/json", "text/html", "image/png"}
    assert "422" in post["/v1/score"]["responses"] and "501" in post["/v1/detect"]["responses"]
    assert schema["paths"]["/readyz"]["get"]["responses"]["503"]["description"] == "`not_ready` or `shutting_down`"
    # what the schema promises is what comes back: a refused format is the declared 422 with an Error body
    refused = http.post("/v1/score", params={"format": "xml"}, files={"image": ("a.png", b"x", "image/png")},
                        data={"elements": ELEMENTS})
    assert "422" in post["/v1/score"]["responses"] and error_of(refused) == (422, "invalid_request")
    unstarted = create_app(ServeConfig(warmup=False), engine=object())
    open_schema = unstarted.openapi()  # no keys: no security
    assert "securitySchemes" not in open_schema["components"] and "security" not in json.dumps(open_schema["paths"])

    async def readyz() -> httpx.Response:  # its lifespan not run, as a mounted app's while its parent starts
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=unstarted), base_url="http://app") as client:
            return await client.get("/readyz")

    not_ready = asyncio.run(readyz())  # the declared Error, not {"status": "not ready"}
    assert error_of(not_ready) == (503, "not_ready") and not_ready.headers["retry-after"] == "1"


def declared(schema: dict, method: str, path: str, answer) -> bool:
    """``answer`` (an error) is one the schema declares for ``method path``: its status, with its code named."""
    responses = schema["paths"][path][method]["responses"]
    status, code = error_of(answer)
    return f"`{code}`" in responses.get(str(status), {}).get("description", "")


def test_openapi_declares_the_refusals_any_route_gives(engine):
    """A GET's refusal for an unknown Host (400), any request's 431 for headers over 64 KiB and the 500
    `internal_error` were in no route's answers (the 400 and 408 only in the POSTs'): a generated client met an
    undeclared status."""
    app = create_app(ServeConfig(allowed_hosts=("localhost",), warmup=False), engine=engine)
    with running(app) as base:
        port = base.rpartition(":")[2]
        schema = httpx.get(f"{base}/openapi.json", headers={"Host": "localhost"}).json()
        for path, method in (("/readyz", "get"), ("/v1/models", "get"), ("/v1/predict", "post")):
            stranger = httpx.request(method, f"{base}{path}", headers={"Host": f"attacker.test:{port}"})
            assert declared(schema, method, path, stranger), (path, stranger.text)
            huge = httpx.request(method, f"{base}{path}", headers={"Host": "localhost", "X-Pad": "a" * 70_000})
            assert declared(schema, method, path, huge), (path, huge.text)
            # the guard's refusals come before any route: a GET meets them too
            for refused in (httpx.request(method, f"{base}{path}?a=1&a=2", headers={"Host": "localhost"}),
                            httpx.request(method, f"{base}{path}", headers={"Host": "localhost",
                                                                             "Content-Encoding": "gzip"})):
                assert refused.status_code in (400, 415) and declared(schema, method, path, refused), \
                    (path, refused.text)
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, code in (("400", "bad_request"), ("408", "request_timeout"), ("500", "internal_error"),
                                 ("501", "not_implemented")):
                assert f"`{code}`" in operation["responses"][status]["description"], (path, method, status)
            descriptions = [r.get("description", "") for r in operation["responses"].values()]
            assert all(len(d.split(" or ")) == len(set(d.split(" or "))) for d in descriptions), descriptions
    deadline = schema["paths"]["/v1/predict"]["post"]["parameters"]
    pattern = next(p for p in deadline if p["name"] == "X-Deadline-Ms")["schema"]["pattern"]
    assert [bool(re.fullmatch(pattern, v)) for v in ("250", "250.5", "1e3", ".5", "+250")] == \
        [True, True, False, False, False]  # what the service takes, no more


def test_openapi_describes_what_the_answers_carry(url, http):
    """The schema named neither whatif's `edited` member (?edited=true), nor the scale and provenance headers a
    predicted PNG or .npy is read with, nor the Retry-After of every 503."""
    schema = httpx.get(f"{url}/openapi.json").json()
    whatif = schema["paths"]["/v1/whatif"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    edit = {"elements": ELEMENTS, "edits": json.dumps([{"op": "move", "element": "cta", "dx": 0, "dy": -20}])}
    doc = http.post("/v1/whatif", params={"edited": "true"}, files={"image": ("c.png", EXAMPLE.read_bytes())},
                    data=edit).json()
    edited = whatif["properties"]["edited"]
    assert set(doc["edited"]) == set(edited["required"]) and doc["edited"]["format"] == edited["properties"]["format"][
        "const"]
    predict = schema["paths"]["/v1/predict"]["post"]["responses"]["200"]
    figure = http.post("/v1/predict", params={"format": "png"}, content=EXAMPLE.read_bytes(),
                       headers={"Content-Type": "image/png"})
    assert {"x-foveal-scale", "x-foveal-provenance"} <= set(figure.headers)
    assert {"X-Foveal-Scale", "X-Foveal-Provenance"} == set(predict["headers"])
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if "503" in operation["responses"]:
                assert "Retry-After" in operation["responses"]["503"]["headers"], (path, method)


def test_json_answers_hold_to_the_schemas_the_openapi_document_declares(url, http):
    """The document declared `{}` for predict's, detect's and readyz's answers, and no schema at all for the PNG,
    .npy and HTML ones: a generated client got no types, and may read a media type without a schema as no body."""
    import jsonschema

    schema = httpx.get(f"{url}/openapi.json").json()

    def declared_for(path: str, method: str, media: str = "application/json") -> dict:
        return schema["paths"][path][method]["responses"]["200"]["content"][media]["schema"]

    image = {"content": EXAMPLE.read_bytes(), "headers": {"Content-Type": "image/png"}}
    full = http.post("/v1/predict", params={"grid": "8x6", "overlay": "true"}, **image).json()
    assert {"map", "grid", "overlay"} <= set(full)
    jsonschema.validate(full, declared_for("/v1/predict", "post"))
    jsonschema.validate(http.post("/v1/predict", params={"map": "false"}, **image).json(),
                        declared_for("/v1/predict", "post"))
    jsonschema.validate(httpx.get(f"{url}/readyz").json(), declared_for("/readyz", "get"))
    for path, method in (("/v1/models", "get"), ("/v1/norms", "get")):
        jsonschema.validate(http.request(method.upper(), path).json(), declared_for(path, method))
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for media, body in operation["responses"]["200"]["content"].items():
                assert body.get("schema"), (path, method, media)  # every answer says what its body is
                if media in ("image/png", "application/x-npy"):
                    assert body["schema"] == {"type": "string", "format": "binary"}, (path, media)
    if http.get("/v1/models").json()["detection"]:
        found = http.post("/v1/detect", **image)
        assert found.status_code == 200, found.text
        jsonschema.validate(found.json(), declared_for("/v1/detect", "post"))


def test_a_client_closed_while_other_threads_call_it_says_so_to_every_call(url):
    """close() shut httpx's pool before it set the flag, and a call caught neither httpx's RuntimeError (a request
    on a closed pool) nor a connection cut under it: a bare RuntimeError, or 'cannot reach the service'."""
    client = Client(url, api_key=KEY)
    data = EXAMPLE.read_bytes()
    client.predict(data)
    seen: list[BaseException] = []

    def calls() -> None:
        for _ in range(50):
            try:
                client.predict(data)
            except BaseException as exc:  # noqa: BLE001 - what each thread met is the test
                seen.append(exc)
                return

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    client.close()
    for thread in threads:
        thread.join(60)
    assert len(seen) == 8 and all(isinstance(e, ServiceError) and e.code == "closed" for e in seen), \
        [f"{type(e).__name__}: {e}" for e in seen]


def test_serve_help_names_every_route():
    """`foveal serve --help` listed neither /v1/detect, /v1/norms nor the page at /."""
    from foveal.cli import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # noqa: SLF001 - no public getter
    text = " ".join(serve.format_help().split())
    app = create_app(ServeConfig(warmup=False), engine=object())
    paths = {route.path for route in app.routes if getattr(route, "include_in_schema", False)}
    assert "/v1/detect" in paths and all(path in text for path in paths), sorted(p for p in paths if p not in text)
    assert "the web page at /" in text


def test_predict_formats_match_engine(http, engine):
    data = EXAMPLE.read_bytes()
    expected = engine.predict(data)
    raw = http.post("/v1/predict", params={"format": "npy"}, content=data, headers={"Content-Type": "image/png"})
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/x-npy"
    assert np.array_equal(np.load(io.BytesIO(raw.content)), expected.prob)
    assert json.loads(raw.headers["x-foveal-provenance"]) == expected.provenance

    doc = http.post("/v1/predict", params={"grid": "8x6", "overlay": "true"},
                    files={"image": ("creative.png", data, "image/png")}).json()
    assert doc["shape"] == [600, 600] and doc["provenance"] == expected.provenance
    grid = np.array(doc["grid"]["values"])
    assert grid.shape == (6, 8) and abs(grid.sum() - 1) < 1e-6
    quick = http.post("/v1/predict", params={"grid": "8x6", "map": "no"}, content=data,
                      headers={"Content-Type": "image/png"}).json()  # answered on the event loop
    assert quick == {"shape": doc["shape"], "provenance": doc["provenance"], "grid": doc["grid"]}
    fine = http.post("/v1/predict", params={"grid": "601x2", "map": "no"}, content=data,
                     headers={"Content-Type": "image/png"}).json()["grid"]  # one cell per pixel at most, as documented
    assert (fine["cols"], fine["rows"]) == (600, 2) and np.array(fine["values"]).shape == (2, 600)
    # 1000x65 is cut to 600x65 first, then held to the cap (it was refused for its 65,000 cells before the cut)
    cut = http.post("/v1/predict", params={"grid": "1000x65", "map": "no"}, content=data,
                    headers={"Content-Type": "image/png"}).json()["grid"]
    assert (cut["cols"], cut["rows"]) == (600, 65)
    over = http.post("/v1/predict", params={"grid": "300x300", "map": "no"}, content=data,
                     headers={"Content-Type": "image/png"})
    assert error_of(over) == (400, "invalid_input") and "cut to the image's 600x600" in over.json()["error"]["message"]
    # edges at floor(i * H / rows + 1/2) in integers: 600 rows in 144 cells puts edge 3 at 12.5 -> 13, edge 15 at
    # 62.5 -> 63 (np.rint's float linspace gave 12 and 63)
    odd = http.post("/v1/predict", params={"grid": "1x144", "map": "no"}, content=data,
                    headers={"Content-Type": "image/png"}).json()["grid"]
    edges = [(2 * i * 600 + 144) // 288 for i in range(145)]
    assert edges[3] == 13 and edges[15] == 63
    rows = expected.prob.astype(np.float64).sum(axis=1)
    assert np.allclose([v[0] for v in odd["values"]], [rows[a:b].sum() for a, b in zip(edges, edges[1:])],
                       atol=1e-9)
    from PIL import Image

    import base64
    as_png = Image.open(io.BytesIO(base64.b64decode(doc["map"]["data"])))
    assert as_png.size == (600, 600) and np.asarray(as_png).dtype == np.uint16
    restored = np.asarray(as_png, dtype=np.float64) * doc["map"]["scale"]
    assert np.abs(restored - expected.prob).max() <= doc["map"]["scale"] / 2 + 1e-12
    overlay = Image.open(io.BytesIO(base64.b64decode(doc["overlay"]["data"])))
    assert overlay.size == (600, 600) and overlay.mode == "RGB"

    png16 = http.post("/v1/predict", params={"format": "png"}, content=data,
                      headers={"Content-Type": "application/octet-stream"})
    assert png16.headers["content-type"] == "image/png"
    assert float(png16.headers["x-foveal-scale"]) == doc["map"]["scale"]


def test_score_is_the_cli_document(http, engine, tmp_path):
    from foveal.cli import main

    response = http.post("/v1/score", files={"image": ("creative.png", EXAMPLE.read_bytes(), "image/png"),
                                             "elements": ("creative.json", ELEMENTS, "application/json")})
    assert response.status_code == 200
    served = response.json()
    assert main(["-q", "score", str(EXAMPLE), "--elements", str(ROOT / "examples" / "creative.json"), "-o",
                 str(tmp_path), "--no-report"]) == 0
    written = json.loads((tmp_path / "scores.json").read_text())
    for doc in (served, written):
        doc.pop("input")
    assert served == written
    html = http.post("/v1/score", params={"format": "html"},
                     files={"image": ("creative.png", EXAMPLE.read_bytes())}, data={"elements": ELEMENTS})
    assert html.headers["content-type"].startswith("text/html") and "<table>" in html.text


def test_a_jpegs_predicted_map_gives_the_shares_score_answers(http):
    """The page's live shares come from /v1/predict's map and the downloaded ones from /v1/score: for a JPEG the first
    was made from a reduced decode and the two differed by up to 1.5 pp."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(EXAMPLE).convert("RGB").resize((900, 900)).save(buf, "JPEG", quality=90)  # the service: 1 MP
    elements = json.dumps({"units": "relative", "elements": [
        {"name": e["name"], "kind": e["kind"], "box": [v / 600 for v in e["box"]]}
        for e in json.loads(ELEMENTS)["elements"]]})
    raw = http.post("/v1/predict", params={"format": "npy"}, content=buf.getvalue(),
                    headers={"Content-Type": "image/jpeg"})
    smap = SaliencyMap(np.load(io.BytesIO(raw.content)))
    doc = http.post("/v1/score", files={"image": ("c.jpg", buf.getvalue(), "image/jpeg")},
                    data={"elements": elements}).json()
    boxes = [e["box"] for e in doc["elements"]]
    assert np.allclose(smap.box_stats(boxes)["share"], [e["share"] for e in doc["elements"]], rtol=0, atol=1e-6)


def test_compare_names_the_element_field_the_client_sent(http, url):
    """One 'elements' field for both creatives, refused against image B, was blamed on 'elements_b', a field the
    client never sent; Client.compare given one element set sent it as both fields, and so was blamed the same."""
    from PIL import Image

    small = io.BytesIO()
    Image.open(EXAMPLE).convert("RGB").resize((100, 100)).save(small, "PNG")
    files = {"image_a": ("a.png", EXAMPLE.read_bytes()), "image_b": ("b.png", small.getvalue())}
    answer = http.post("/v1/compare", files=files, data={"elements": ELEMENTS})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"].startswith("elements (on image_b): "), answer.text
    with Client(url, api_key=KEY) as client, pytest.raises(ElementSpecError, match=r"^elements \(on image_b\): "):
        client.compare(EXAMPLE, small.getvalue(), ELEMENTS)


def test_compare_and_whatif(http):
    files = {"image_a": ("a.png", EXAMPLE.read_bytes()), "image_b": ("b.png", EXAMPLE_B.read_bytes())}
    doc = http.post("/v1/compare", files=files, data={"elements_a": ELEMENTS, "elements_b": ELEMENTS_B}).json()
    assert doc["verdict"] in ("better", "worse", "mixed", "no material change") and doc["elements"]
    # One engine serves every route, int8 by default on the CPU: its decisions carry the int8 caveat
    assert doc["model"]["precision"] == "int8" and any("int8 graph" in n for n in doc["notes"])
    figure = http.post("/v1/compare", params={"format": "png"}, files=files, data={"elements": ELEMENTS})
    assert figure.status_code == 200 and figure.content.startswith(b"\x89PNG")
    # formats come from the element files, as in `foveal compare`; a mismatch is refused unless allowed
    story = json.dumps({**json.loads(ELEMENTS_B), "format": "1080x1920"})
    refused = http.post("/v1/compare", files=files, data={"elements_a": ELEMENTS, "elements_b": story})
    assert error_of(refused) == (400, "format_mismatch")
    assert "allow_format_mismatch" in refused.json()["error"]["message"]
    allowed = http.post("/v1/compare", files=files, data={"elements_a": ELEMENTS, "elements_b": story,
                                                          "allow_format_mismatch": "true"}).json()
    assert allowed["formats"] == {"a": "600x600", "b": "1080x1920", "same": False}
    assert any("indicative" in n for n in allowed["notes"])

    edit = [{"op": "move", "element": "cta", "dx": 0, "dy": -60}]
    doc = http.post("/v1/whatif", files={"image": ("c.png", EXAMPLE.read_bytes())},
                    data={"elements": ELEMENTS, "edits": json.dumps(edit)}).json()
    assert doc["mode"] == "edits" and doc["edits"] == edit and doc["timing"]["images_predicted"] == 2
    assert any("int8 graph" in n for n in doc["notes"])
    doc = http.post("/v1/whatif", files={"image": ("c.png", EXAMPLE.read_bytes())},
                    data={"elements": ELEMENTS, "search": json.dumps({"element": "cta", "grid": [2, 2], "top": 2})})
    assert doc.status_code == 200, doc.text
    assert doc.json()["mode"] == "search" and len(doc.json()["search"]["best"]) == 2


def test_a_whatif_with_a_number_past_floats_range_is_refused_not_a_500(http):
    """A scale factor or a max_overlap of 400 digits reached float() and came back as 500 internal_error."""
    huge = "1" + "0" * 400
    for field, value in (("edits", f'[{{"op": "scale", "element": "logo", "factor": {huge}}}]'),
                         ("search", f'{{"element": "cta", "max_overlap": {huge}}}')):
        answer = http.post("/v1/whatif", files={"image": ("c.png", EXAMPLE.read_bytes())},
                           data={"elements": ELEMENTS, field: value})
        assert error_of(answer) == (400, "invalid_input"), answer.text
        assert len(answer.json()["error"]["message"]) < 300


def test_a_whatif_stops_applying_edits_once_its_deadline_passes(http):
    """Each edit reads and writes the whole creative: 400 ran on for seconds past X-Deadline-Ms, a worker thread and
    a core held for an answer no client waited for."""
    ramp = np.linspace(0, 255, 1000, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1).astype(np.uint8)
    image = ("big.png", encode_png(pixels))
    elements = json.dumps([{"name": "cta", "kind": "cta", "box": [100, 100, 200, 100]}])
    edits = json.dumps([{"op": "move", "element": "cta", "dx": 1 if i % 2 == 0 else -1, "dy": 0} for i in range(200)])
    fields = {"elements": elements, "edits": edits}
    start = time.perf_counter()
    assert http.post("/v1/whatif", files={"image": image}, data=fields).status_code == 200
    whole = time.perf_counter() - start
    start = time.perf_counter()
    late = http.post("/v1/whatif", files={"image": image}, data=fields, headers={"X-Deadline-Ms": "1"})
    assert error_of(late) == (504, "deadline_exceeded")
    assert time.perf_counter() - start < whole / 2, (time.perf_counter() - start, whole)
    one = {"elements": elements, "edits": json.dumps([{"op": "move", "element": "cta", "dx": 1, "dy": 0}])}
    assert http.post("/v1/whatif", files={"image": image}, data=one).status_code == 200


def test_a_whatif_gives_its_document_and_edited_creative_in_one_answer(http):
    """The page asked /v1/whatif twice per what-if, once for the document and once for the edited creative: every
    prediction ran twice.  ?edited=true puts the creative in the document, as the edited answer gives it."""
    import base64

    files = {"image": ("c.png", EXAMPLE.read_bytes())}
    edit = {"elements": ELEMENTS, "edits": json.dumps([{"op": "move", "element": "cta", "dx": 0, "dy": -60}])}
    doc = http.post("/v1/whatif", params={"edited": "true"}, files=files, data=edit).json()
    assert doc["mode"] == "edits" and doc["edited"]["format"] == "png"
    alone = http.post("/v1/whatif", params={"format": "edited"}, files=files, data=edit)
    assert base64.b64decode(doc["edited"]["data"]) == alone.content
    assert "edited" not in http.post("/v1/whatif", files=files, data=edit).json(), "only when asked"
    search = {"elements": ELEMENTS, "search": json.dumps({"element": "cta", "grid": [2, 2], "top": 1})}
    doc = http.post("/v1/whatif", params={"edited": "true"}, files=files, data=search).json()
    assert doc["mode"] == "search" and base64.b64decode(doc["edited"]["data"]).startswith(b"\x89PNG")
    refused = http.post("/v1/whatif", params={"format": "png", "edited": "true"}, files=files, data=edit)
    assert error_of(refused) == (400, "invalid_input")
    assert refused.json()["error"]["message"] == ("edited=true adds the edited creative to the JSON document; "
                                                  "with format=png leave it out")
    assert error_of(http.post("/v1/whatif", params={"edited": "maybe"}, files=files, data=edit)) == (
        422, "invalid_request")


def test_a_compare_names_the_image_it_refuses(http):
    """Either image of a compare was refused as '<bytes>: not a recognised image format', or 'the image is ...
    over this service's limit', which left the client to guess which of the two."""
    good = ("a.png", EXAMPLE.read_bytes())
    broken = http.post("/v1/compare", files={"image_a": good, "image_b": ("b.png", b"not an image")},
                       data={"elements": ELEMENTS})
    assert error_of(broken) == (400, "invalid_image")
    assert broken.json()["error"]["message"].startswith("field 'image_b': not a recognised image format")
    large = http.post("/v1/compare", files={"image_a": ("a.png", png(np.zeros((1001, 1000, 3), np.uint8))),
                                            "image_b": good}, data={"elements": ELEMENTS})
    assert error_of(large) == (413, "too_many_pixels")
    assert ("1000x1001 = 1,001,000 pixels (field 'image_a'), over this service's limit"
            in large.json()["error"]["message"])


def test_metrics(http):
    http.post("/v1/predict", params={"map": "false"}, content=EXAMPLE.read_bytes(),
              headers={"Content-Type": "image/png"})
    text = http.get("/metrics").text
    for name in ('foveal_requests_total{route="/v1/predict",status="200"}', "foveal_request_duration_seconds_bucket",
                 "foveal_queue_depth", "foveal_batch_size_bucket", "foveal_request_receive_seconds_count",
                 "foveal_response_send_seconds_count", "foveal_queue_wait_seconds_count",
                 "foveal_batch_compute_seconds_count", 'foveal_images_total{outcome="ok"}', "foveal_ready 1"):
        assert name in text, name


# -- concurrency: batched results are exactly the serial ones --------------------------------------------------
def test_64_concurrent_requests_equal_serial_in_process(url, engine):
    payloads = images(64)
    bad = {5: b"not an image", 31: b"\x89PNG\r\n\x1a\n truncated", 50: b""}  # fail alone, inside batches
    payloads = [bad.get(i, p) for i, p in enumerate(payloads)]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=120,
                                     limits=httpx.Limits(max_connections=64)) as client:
            return await asyncio.gather(*(client.post("/v1/predict", params={"format": "npy"}, content=p,
                                                      headers={"Content-Type": "image/png"}) for p in payloads))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [400 if i in bad else 200 for i in range(64)]
    for i, (payload, response) in enumerate(zip(payloads, responses)):
        if i in bad:
            assert error_of(response) == (400, "invalid_image")
            continue
        expected = engine.predict(payload)
        assert np.array_equal(np.load(io.BytesIO(response.content)), expected.prob)
        assert json.loads(response.headers["x-foveal-provenance"])["image_sha256"] == \
            expected.provenance["image_sha256"]
    ones, calls = batch_counts(url)
    if engine.lanes:  # the CPU lanes take the queued images one at a time as each lane frees up
        assert ones == calls >= 64
    else:
        assert ones < calls, "no request was ever batched with another"


def batch_counts(url: str) -> tuple[float, float]:
    """From /metrics: engine calls with one image, and all engine calls."""
    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": KEY}).text
    ones = next(line for line in text.splitlines() if line.startswith("foveal_batch_size_bucket") and 'le="1"' in line)
    calls = next(line for line in text.splitlines() if line.startswith("foveal_batch_size_count"))
    return float(ones.split()[-1]), float(calls.split()[-1])


def test_concurrent_requests_batch_where_the_engine_has_no_lanes(engine):
    """An engine on one thread (as a GPU backend) has no lanes: concurrent requests coalesce into predict_batch calls
    of several images, each still getting exactly its own map."""
    single = Engine(threads=1)
    assert single.lanes == 0
    payloads = images(24)
    with running(create_app(ServeConfig(max_batch=8, max_wait_ms=5), engine=single)) as base:
        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=24)) as client:
                return await asyncio.gather(*(client.post("/v1/predict", params={"format": "npy"}, content=p,
                                                          headers={"Content-Type": "image/png"}) for p in payloads))

        responses = asyncio.run(fire())
        ones, calls = batch_counts(base)
    for payload, response in zip(payloads, responses):
        assert response.status_code == 200
        assert np.array_equal(np.load(io.BytesIO(response.content)), engine.predict(payload).prob)
    assert ones < calls, "no request was ever batched with another"


def test_client_returns_engine_objects(url, engine):
    with Client(url, api_key=KEY) as client:
        smap = client.predict(EXAMPLE)
        expected = engine.predict(EXAMPLE)
        assert isinstance(smap, SaliencyMap)
        assert np.array_equal(smap.prob, expected.prob) and smap.provenance == expected.provenance
        assert smap.share([400, 520, 150, 44]) == expected.share([400, 520, 150, 44])
        pixels = np.asarray(expected.overlay(np.zeros((600, 600, 3), np.uint8)))  # an array input goes as PNG
        assert np.array_equal(client.predict(pixels).prob, engine.predict(pixels).prob)
        maps = client.predict_batch([EXAMPLE, EXAMPLE_B])
        assert np.array_equal(maps[1].prob, engine.predict(EXAMPLE_B).prob)
        doc = client.score(EXAMPLE, ROOT / "examples" / "creative.json")
        spec = parse_elements_json(ELEMENTS, (600, 600))
        _, local = score_document(expected, spec.elements, expected.provenance, image="creative.png",
                                  elements_source="elements", format=spec.format,
                                  thresholds=Thresholds.of_card(engine.graph))
        assert doc == json.loads(json.dumps(local))
        assert client.compare(EXAMPLE, EXAMPLE_B, ELEMENTS, ELEMENTS_B)["elements"]
        story = json.dumps({**json.loads(ELEMENTS_B), "format": "1080x1920"})
        with pytest.raises(foveal.FormatMismatchError, match="set allow_format_mismatch"):
            client.compare(EXAMPLE, EXAMPLE_B, ELEMENTS, story)
        assert client.ready() and client.models()["serving"]["precision"] == engine.precision
        with pytest.raises(ImageError, match="not a recognised image"):
            client.predict(b"definitely not an image")
        mixed = client.predict_batch([EXAMPLE, b"definitely not an image"], errors="return")  # as Engine's
        assert isinstance(mixed[0], SaliencyMap) and isinstance(mixed[1], ImageError)
        with pytest.raises(ImageError, match=r"^images\[1\]: .*not a recognised image"):
            client.predict_batch([EXAMPLE, b"definitely not an image"])
        with pytest.raises(ElementSpecError, match="kind"):
            client.score(EXAMPLE, [{"name": "x", "kind": "banana", "box": [0, 0, 10, 10]}])
    with pytest.raises(ServiceError, match="this Client is closed; make a new one") as info:
        client.predict(EXAMPLE)
    with Client(url) as anonymous, pytest.raises(ServiceError) as info:
        anonymous.predict(EXAMPLE)
    assert info.value.status == 401 and info.value.code == "unauthorized"
    with Client(url) as anonymous, pytest.raises(ServiceError, match=r"^images\[0\]: ") as info:
        anonymous.predict_batch([EXAMPLE, EXAMPLE])  # the index is added; the status and code are kept
    assert info.value.status == 401 and info.value.code == "unauthorized"
    with Client("http://127.0.0.1:1") as nowhere, pytest.raises(ServiceError, match="cannot reach"):
        nowhere.predict(EXAMPLE)


def test_client_checks_its_arguments_and_hides_passwords():
    with Client("http://user:secret@127.0.0.1:1") as client, pytest.raises(ServiceError) as info:
        client.predict(EXAMPLE)
    assert "secret" not in str(info.value) + repr(client) and "user:***@127.0.0.1:1" in repr(client)
    for url in ("localhost:8080", "ftp://x", "http://[::1", None, b"http://x"):
        with pytest.raises(foveal.InputError, match="Client: "):
            Client(url)
    for options in ({"api_key": "\u00fc" * 20}, {"timeout": -1}, {"timeout": float("nan")}, {"deadline_ms": "abc"}):
        with pytest.raises(foveal.InputError, match="Client: "):
            Client("http://127.0.0.1:1", **options)


def test_client_raises_what_engine_raises_for_an_oversize_image(url):
    """An image over the service's pixel limit is an ImageError from the Client as from Engine.predict (it was a
    bare ServiceError, which ``except ImageError`` missed)."""
    huge = png(np.zeros((1000, 1001, 3), np.uint8))
    with Client(url, api_key=KEY) as client, pytest.raises(foveal.TooManyPixelsError) as info:
        client.predict(huge)
    assert isinstance(info.value, foveal.ImageError) and info.value.limit is None
    assert str(info.value) == info.value.detail == \
        "the image is 1001x1000 = 1,001,000 pixels, over this service's limit of 1,000,000; downscale it"


def test_client_sends_its_deadline_as_the_service_reads_it(url):
    """A tiny deadline goes out as a plain decimal (repr gave '1e-05', which the service refuses as malformed) and
    passes before any result; one past the service's bound is refused by the Client itself."""
    assert Client("http://127.0.0.1:1", deadline_ms=1e-5)._http.headers["X-Deadline-Ms"] == "0.00001"
    assert Client("http://127.0.0.1:1", deadline_ms=250)._http.headers["X-Deadline-Ms"] == "250"
    with Client(url, api_key=KEY, deadline_ms=1e-5) as client, pytest.raises(ServiceError) as info:
        client.predict(EXAMPLE)
    assert (info.value.status, info.value.code) == (504, "deadline_exceeded")
    with pytest.raises(foveal.InputError, match="deadline_ms must be below 1e"):
        Client("http://127.0.0.1:1", deadline_ms=2e12)


def test_a_client_pickles_as_its_settings(url):
    """Sending a Client to a Ray task or a process pool failed with "TypeError: cannot pickle '_thread.RLock'"."""
    with Client(url, api_key=KEY, timeout=30, deadline_ms=60_000) as client:
        with pickle.loads(pickle.dumps(client)) as copy:
            assert repr(copy) == repr(client) and copy._http.headers == client._http.headers
            assert copy._timeout == 30 and copy.predict(EXAMPLE).shape == client.predict(EXAMPLE).shape


def test_client_refuses_what_engine_refuses_before_sending(tmp_path):
    """Arguments the Engine refuses are refused by the Client the same way, before any request (port 1: none could
    be answered), and never with a TypeError or by splitting one image into rows."""
    rgb = np.zeros((6, 8, 3), np.uint8)
    with Client("http://127.0.0.1:1") as client:
        for images, match in ((rgb, "an array of images must be N×H×W×C"), (None, "expected a list of images"),
                              (EXAMPLE, "got one PosixPath"), (b"png", "got one bytes")):
            with pytest.raises(foveal.InputError, match=match):
                client.predict_batch(images)
        for size in ("2", 0, None):
            with pytest.raises(foveal.InputError, match="batch_size must be"):
                client.predict_batch([rgb], batch_size=size)
        with pytest.raises(foveal.InputError, match="pass_percentile must be a number"):
            client.score(rgb, ELEMENTS, pass_percentile="abc")
        with pytest.raises(foveal.InputError, match="edits: expected a list of edits"):
            client.whatif(rgb, ELEMENTS, edits=5)
        latin = tmp_path / "latin.json"
        latin.write_bytes('[{"name": "caf\xe9", "kind": "cta", "box": [0, 0, 5, 5]}]'.encode("latin-1"))
        with pytest.raises(ElementSpecError, match="latin.json: element file is not UTF-8 text"):
            client.score(rgb, latin)
        with pytest.raises(ElementSpecError, match="the service reads JSON element files"):
            client.score(rgb, str(tmp_path / "creative.csv"))
        with pytest.raises(ElementSpecError, match=r"^elements 'auto': .* Client\.detect\(image\)"):
            client.score(rgb, "auto")  # foveal score's --elements auto: here detection is a call of its own
        with pytest.raises(ElementSpecError, match="elements: cannot send.*not JSON"):
            client.score(rgb, [{"name": "cta", "kind": "cta", "box": object()}])


def test_client_never_waits_on_a_fifo(tmp_path):
    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def predict() -> None:
        with Client("http://127.0.0.1:1") as client:
            try:
                client.predict(fifo)
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                outcome.append(exc)

    thread = threading.Thread(target=predict, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        with open(fifo, "wb"):  # let the blocked open return, so the thread ends
            pass
        pytest.fail("Client.predict blocked on a FIFO")
    assert isinstance(outcome[0], ImageError) and "not a regular file" in str(outcome[0])


def test_client_sends_elements_as_loaded(url, engine):
    """An ElementSpec, a list of Element objects and boxes holding numpy numbers go as the JSON they stand for."""
    spec = parse_elements_json(ELEMENTS, (600, 600))
    with Client(url, api_key=KEY) as client:
        expected = client.score(EXAMPLE, ELEMENTS)
        assert client.score(EXAMPLE, spec)["elements"] == expected["elements"]
        assert client.score(EXAMPLE, list(spec.elements))["elements"] == expected["elements"]
        boxes = [{**e.to_dict(), "box": np.asarray(e.box)} for e in spec.elements]
        assert client.score(EXAMPLE, boxes)["elements"] == expected["elements"]


def test_client_asks_for_the_pages_and_figures_the_service_answers(url, http):
    """/v1/score?format=html, /v1/compare?format=png|html and /v1/whatif?format=png|edited had no Client call: a
    Python caller had to build the multipart request by hand. Each comes back as the bytes a raw request gets."""
    from PIL import Image

    edit = [{"op": "move", "element": "cta", "dx": 0, "dy": -60}]
    one = {"image": ("creative.png", EXAMPLE.read_bytes())}
    two = {"image_a": ("creative.png", EXAMPLE.read_bytes()), "image_b": ("creative_b.png", EXAMPLE_B.read_bytes())}
    with Client(url, api_key=KEY) as client:
        doc = client.score(EXAMPLE, ELEMENTS)
        page = client.score(EXAMPLE, ELEMENTS, output="html")
        raw = http.post("/v1/score", params={"format": "html"}, files=one, data={"elements": ELEMENTS})
        assert isinstance(page, bytes) and page == raw.content
        text = page.decode()
        assert text.startswith("<!DOCTYPE html>") and f"{100 * doc['creative']['conversion_share']:.1f}%" in text
        assert all(e["name"] in text for e in doc["elements"])
        answers = {
            "compare png": (client.compare(EXAMPLE, EXAMPLE_B, ELEMENTS, ELEMENTS_B, output="png"),
                            http.post("/v1/compare", params={"format": "png"}, files=two,
                                      data={"elements_a": ELEMENTS, "elements_b": ELEMENTS_B})),
            "whatif png": (client.whatif(EXAMPLE, ELEMENTS, edits=edit, output="png"),
                           http.post("/v1/whatif", params={"format": "png"}, files=one,
                                     data={"elements": ELEMENTS, "edits": json.dumps(edit)})),
            "whatif edited": (client.whatif(EXAMPLE, ELEMENTS, edits=edit, output="edited"),
                              http.post("/v1/whatif", params={"format": "edited"}, files=one,
                                        data={"elements": ELEMENTS, "edits": json.dumps(edit)}))}
        for what, (answer, raw) in answers.items():
            assert raw.status_code == 200 and isinstance(answer, bytes) and answer == raw.content, what
            figure = Image.open(io.BytesIO(answer))
            assert figure.format == "PNG", what
            figure.load()
        assert figure.size == (600, 600)  # the edited creative
        compared = client.compare(EXAMPLE, EXAMPLE_B, ELEMENTS, ELEMENTS_B)
        page = client.compare(EXAMPLE, EXAMPLE_B, ELEMENTS, ELEMENTS_B, output="html")
        assert page == http.post("/v1/compare", params={"format": "html"}, files=two,
                                 data={"elements_a": ELEMENTS, "elements_b": ELEMENTS_B}).content
        assert compared["verdict"] in page.decode()
    with Client("http://127.0.0.1:1") as nowhere:  # checked here: no request goes out (it would find no service)
        for call, message in ((lambda: nowhere.score(EXAMPLE, ELEMENTS, output="pdf"),
                               "Client.score: output must be 'json' or 'html', got 'pdf'"),
                              (lambda: nowhere.compare(EXAMPLE, EXAMPLE_B, ELEMENTS, output="edited"),
                               "Client.compare: output must be 'json', 'png' or 'html', got 'edited'"),
                              (lambda: nowhere.whatif(EXAMPLE, ELEMENTS, edits=edit, output=None),
                               "Client.whatif: output must be 'json', 'png' or 'edited', got None"),
                              (lambda: nowhere.score(EXAMPLE, ELEMENTS, format="html"),
                               "Client.score: format 'html' names the creative format to compare against in the "
                               "norms; choose the answer with output='json' or output='html'")):
            with pytest.raises(foveal.InputError) as info:
                call()
            assert str(info.value) == message


def test_client_asks_for_the_edited_creative_in_the_whatif_document(url, http):
    """/v1/whatif?edited=true had no Client call: a caller wanting the document and the edited creative sent two
    requests, and ran every prediction twice."""
    edit = [{"op": "move", "element": "cta", "dx": 0, "dy": -60}]
    with Client(url, api_key=KEY) as client:
        doc = client.whatif(EXAMPLE, ELEMENTS, edits=edit, edited=True)
        raw = http.post("/v1/whatif", params={"edited": "true"}, data={"elements": ELEMENTS, "edits": json.dumps(edit)},
                        files={"image": (EXAMPLE.name, EXAMPLE.read_bytes())}).json()
        assert doc["edited"] == raw["edited"] and {**doc, "timing": None} == {**raw, "timing": None}
        assert "edited" not in client.whatif(EXAMPLE, ELEMENTS, edits=edit)
    with Client("http://127.0.0.1:1") as nowhere:  # refused before a request goes out
        for edited, output in ((True, "png"), (True, "edited"), ("yes", "json")):
            with pytest.raises(foveal.InputError, match=f"^Client.whatif: edited must be True or False, .*"
                                                        f"got edited={edited!r}, output={output!r}$"):
                nowhere.whatif(EXAMPLE, ELEMENTS, edits=edit, edited=edited, output=output)


def test_client_detects_what_detect_elements_detects(url, monkeypatch):
    """Client.detect is /v1/detect with detect_elements' answer: the same Element list for the same image (an empty
    one where nothing is found), and without the detect extra the same DetectorUnavailableError, not a bare
    ServiceError 501."""
    pytest.importorskip("rapidocr_onnxruntime")
    import foveal.detect as detection

    local = foveal.detect_elements(EXAMPLE)
    blank = np.full((48, 64, 3), 255, np.uint8)
    with Client(url, api_key=KEY) as client:
        assert local and client.detect(EXAMPLE) == local
        assert client.detect(foveal.load_image(EXAMPLE)) == local  # an array goes as lossless PNG
        assert client.detect(blank) == foveal.detect_elements(blank) == []
        with pytest.raises(ImageError, match="not a recognised image"):
            client.detect(b"definitely not an image")

        def missing() -> detection.Detector:
            raise foveal.DetectorUnavailableError(f"cv2 is not installed; {detection.INSTALL_HINT}")

        monkeypatch.setattr(detection, "default_detector", missing)  # the server runs in this process
        with pytest.raises(foveal.DetectorUnavailableError) as here:
            foveal.detect_elements(EXAMPLE)
        with pytest.raises(foveal.DetectorUnavailableError) as there:
            client.detect(EXAMPLE)
    assert str(there.value) == str(here.value)


# -- every error case ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, code", [
    (b"", "invalid_image"), (b"GIF89a broken", "invalid_image"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "invalid_image"),
    (b"http://169.254.169.254/latest/meta-data/", "invalid_image"),  # a URL is bytes, never fetched
    (b"DDS " + (124).to_bytes(4, "little") + bytes(120), "invalid_image"),  # Pillow: NotImplementedError
])
def test_bad_images(http, body, code):
    assert error_of(http.post("/v1/predict", content=body, headers={"Content-Type": "image/png"})) == (400, code)


@pytest.mark.parametrize("elements, fragment", [
    ("{not json", "malformed JSON"), ('[{"name": "a", "kind": "banana", "box": [0, 0, 5, 5]}]', "kind"),
    ('[{"name": "a", "kind": "cta", "box": [590, 590, 50, 50]}]', "outside"), ("[]", "no elements"),
    ("[" * 100_000 + "]" * 100_000, "elements"),
    ('[{"name": "a", "kind": "cta", "box": [1' + "0" * 5000 + ', 5, 5, 5]}]', "more than 4,300 digits"),
    ('[{"name": "\\ud800", "kind": "cta", "box": [0, 0, 5, 5]}]', "surrogate"),
    ('{"format": "\\ud800", "elements": [{"name": "a", "kind": "cta", "box": [0, 0, 5, 5]}]}', "surrogate"),
    # curl -F elements=@creative.csv: "malformed JSON at line 1 column 1" named no remedy
    ("name,kind,x,y,w,h\ncta,cta,400,520,150,44\n", "this is CSV (header 'name,kind,x,y,w,h'), not element JSON; "
                                                    "give the JSON form"),
    # foveal score --elements auto's word: "malformed JSON" did not say detection is /v1/detect's
    ("auto", "'auto' is not element JSON; elements are not detected here: detect them first (the service's POST "
             "/v1/detect"),
])
def test_bad_elements(http, elements, fragment):
    response = http.post("/v1/score", files={"image": ("c.png", EXAMPLE.read_bytes())}, data={"elements": elements})
    assert error_of(response) == (422, "invalid_elements") and fragment in response.json()["error"]["message"]


def test_bad_fields(http):
    files = {"image": ("c.png", EXAMPLE.read_bytes())}
    assert error_of(http.post("/v1/score", files=files)) == (400, "invalid_input")  # no elements
    assert error_of(http.post("/v1/score", files=files, data={"elements": ELEMENTS, "norms": "nope"})) == \
        (400, "invalid_input")
    unknown = http.post("/v1/score", files=files, data={"elements": ELEMENTS, "norms": "n" * 100_000})
    assert error_of(unknown) == (400, "invalid_input") and len(unknown.content) < 500  # it quoted all 100,000
    assert error_of(http.post("/v1/score", files=files, data={"elements": ELEMENTS, "pass_percentile": "200"})) == \
        (400, "invalid_input")
    assert error_of(http.post("/v1/whatif", files=files, data={"elements": ELEMENTS})) == (400, "invalid_input")
    assert error_of(http.post("/v1/whatif", files=files, data={
        "elements": ELEMENTS, "edits": '[{"op": "move", "element": "cta", "dx": 1.5, "dy": 0}]'})) == \
        (400, "invalid_input")
    assert error_of(http.post("/v1/whatif", files=files, data={
        "elements": ELEMENTS, "search": '{"element": "cta", "step": 1}'})) == (400, "invalid_input")
    for grid in ("0x5", "\u00b2x2", "\u0663x2", "", "9" * 5000 + "x2"):  # a superscript and an Arabic-Indic digit
        # are not ASCII digits; 5000 digits are more than int() reads
        assert error_of(http.post("/v1/predict", params={"grid": grid}, content=EXAMPLE.read_bytes(),
                                  headers={"Content-Type": "image/png"})) == (400, "invalid_input")
    # ten digits are refused for their size, which the message gives ('positive whole numbers' was no reason)
    ten = http.post("/v1/predict", params={"grid": "1000000000x1"}, content=b"x", headers={"Content-Type": "image/png"})
    assert "from 1 to 999999999" in ten.json()["error"]["message"]
    for query in ({"format": "gif"}, {"map": "maybe"}, {"overlay": "2"}):
        response = http.post("/v1/predict", params=query, content=b"x", headers={"Content-Type": "image/png"})
        assert error_of(response) == (400, "invalid_input")
        assert next(iter(query)) in response.json()["error"]["message"]
    assert error_of(http.post("/v1/score", params={"format": "gif"}, files=files)) == (422, "invalid_request")
    bom = http.post("/v1/score", files=files, data={"elements": "\ufeff" + ELEMENTS})  # as foveal score reads files
    assert bom.status_code == 200, bom.text
    missing = http.get("/v1/nothing")
    assert error_of(missing) == (404, "not_found") and "/openapi.json" in missing.json()["error"]["message"]
    for method in ("POST", "PUT", "DELETE"):  # the page's files answered 405 "use GET, HEAD" to any path
        mistyped = http.request(method, "/v1/predit", content=b"x", headers={"Content-Type": "image/png"})
        assert error_of(mistyped) == (404, "not_found"), method
    assert error_of(http.post("/index.html")) == (405, "method_not_allowed")  # the page's own file
    for method in ("GET", "POST", "DELETE"):  # a folder of the page without an index: told "use GET" to all but GET
        assert error_of(http.request(method, "/js")) == (404, "not_found"), method
    assert error_of(http.post("/")) == (405, "method_not_allowed")  # the page itself
    whole = http.get("/").content
    for bad_range in ("bytes=999999-", "bytes=abc", "bytes=5-2", "bytes=0-10"):  # a plain-text 400, an empty 416
        page = http.get("/", headers={"Range": bad_range})
        assert page.status_code == 200 and page.content == whole, (bad_range, page.status_code)
    assert error_of(http.post("/v1/whatif", files=files, data={  # a misspelt key is not an edit doing nothing
        "elements": ELEMENTS, "edits": '[{"op": "move", "element": "cta", "dx": 1, "dy": 0, "dz": 3}]'})) == \
        (400, "invalid_input")
    wrong_method = http.get("/v1/predict")
    assert error_of(wrong_method) == (405, "method_not_allowed") and wrong_method.headers["allow"] == "POST"
    assert "use POST" in wrong_method.json()["error"]["message"]
    for path in ("/healthz", "/readyz", "/v1/models", "/metrics"):
        head = http.head(path)
        assert head.status_code == 200 and head.content == b""
        put = http.put(path)  # HEAD has its own route, so the 405 named GET alone
        assert error_of(put) == (405, "method_not_allowed") and put.headers["allow"] == "GET, HEAD", path


def test_a_malformed_multipart_body_leaves_no_bare_parser_line_in_the_log(http, caplog):
    """python-multipart logged "Expected boundary character 45, got 112 at index 2" for each such body: a line
    without the request it belongs to, beside the 400 the client got."""
    with caplog.at_level(logging.WARNING):
        answer = http.post("/v1/score", content=b"preamble\r\n--yyyy--\r\n",
                           headers={"Content-Type": "multipart/form-data; boundary=yyyy"})
    assert error_of(answer)[0] == 400
    assert [r.getMessage() for r in caplog.records if r.name.startswith("python_multipart")] == []


def test_a_multipart_part_with_a_very_long_filename_says_so(http):
    """The multipart parser refuses a part header line over 4 KiB; the answer was 'malformed multipart body (400:
    Invalid multipart data.)', which names neither the cause nor the remedy."""
    files = {"image": ("a" * 5000 + ".png", EXAMPLE.read_bytes(), "image/png")}
    for route, data in (("/v1/predict", None), ("/v1/score", {"elements": ELEMENTS})):
        response = http.post(route, files=files, data=data)
        assert error_of(response) == (400, "invalid_input")
        message = response.json()["error"]["message"]
        assert "file name" in message and "shorter" in message, message
    too_many = {f"f{i}": (f"{i}.png", b"x") for i in range(9)}
    message = http.post("/v1/predict", files=too_many).json()["error"]["message"]
    assert "Too many files" in message and "Invalid multipart data" not in message, message


def test_image_as_a_plain_multipart_field(http, engine):
    """A part without a filename (Go's CreateFormField, curl -F 'image=<file') carries the image's bytes too."""
    data = EXAMPLE.read_bytes()
    body = (b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\n' + data + b"\r\n--b--\r\n")
    raw = http.post("/v1/predict", params={"format": "npy"}, content=body,
                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert raw.status_code == 200 and np.array_equal(np.load(io.BytesIO(raw.content)), engine.predict(data).prob)


def test_an_image_as_a_plain_multipart_field_may_take_the_whole_body_limit(engine):
    """A plain part over 16 MiB was refused as a 'malformed multipart body' however high the body limit: the
    multipart parser's own cap on a part without a filename, which a raw body or a file part never met."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2500, 2400), (90, 120, 150)).save(buf, format="PNG", compress_level=0)  # 18 MB
    data = buf.getvalue()
    body = b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\n' + data + b"\r\n--b--\r\n"
    with running(create_app(ServeConfig(max_body_bytes=24 * 2**20, warmup=False), engine=engine)) as base:
        answer = httpx.post(f"{base}/v1/predict", params={"map": "false"}, content=body, timeout=60,
                            headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert len(data) > 16 * 2**20 and answer.status_code == 200, answer.text
    assert answer.json()["shape"] == [2400, 2500]


def test_a_field_sent_twice_is_refused_not_half_read(http):
    """Two images in one /v1/predict, or two element files in one /v1/score: the last one was used, silently."""
    data = EXAMPLE.read_bytes()
    twice = http.post("/v1/predict", files=[("image", ("a.png", data)), ("image", ("b.png", data))])
    assert error_of(twice) == (400, "invalid_input")
    assert "multipart field 'image' is sent more than once" in twice.json()["error"]["message"]
    elements = json.dumps({"elements": [{"name": "a", "kind": "cta", "box": [0, 0, 10, 10]}]})
    scored = http.post("/v1/score", files={"image": ("a.png", data)}, data={"elements": [elements, elements]})
    assert error_of(scored) == (400, "invalid_input")


def test_a_field_no_route_reads_is_refused_not_ignored(http):
    """A misspelt 'norm' or 'pass_percentle' was ignored: the scores came without the norms, or at the default
    percentile, and nothing said why; a grid sent as a form field came back without its grid."""
    files = {"image": ("c.png", EXAMPLE.read_bytes())}
    for route, data in (("/v1/score", {"elements": ELEMENTS, "pass_percentle": "90"}),
                        ("/v1/predict", {"grid": "4x4"}),
                        ("/v1/compare", {"elements": ELEMENTS, "image_b": EXAMPLE_B.read_text("latin-1"),
                                         "allow_mismatch": "true"}),
                        ("/v1/whatif", {"elements": ELEMENTS, "edits": "[]", "serch": "{}"})):
        sent = dict(files) if route != "/v1/compare" else {"image_a": files["image"]}
        answer = http.post(route, files=sent, data=data)
        assert error_of(answer) == (400, "invalid_input"), route
        assert answer.json()["error"]["message"].startswith(f"multipart field {list(data)[-1]!r} is not one {route} "
                                                           "takes; send only "), answer.text


def test_a_search_is_refused_by_the_positions_it_would_try():
    """The service counted a step search's positions without the edge margins: it refused the example CTA at step
    25 as 418 positions, over its 400, where the search lays out 357, and quoted 644 for step 20 (546)."""
    from foveal.serve.app import _check_search_size
    from foveal.scoring.elements import load_elements
    from foveal.scoring.whatif import candidate_offsets

    elements = load_elements(ROOT / "examples" / "creative.json", (600, 600)).elements
    _check_search_size((600, 600), elements, {"name": "cta", "grid": None, "step": 25})
    with pytest.raises(foveal.InputError,
                       match="^field 'search': 546 positions to try, this service tries at most 400"):
        _check_search_size((600, 600), elements, {"name": "cta", "grid": None, "step": 20})
    laid_out = candidate_offsets((600, 600), elements, "cta", step=25)
    assert len(laid_out.offsets) + laid_out.rejected_overlap + laid_out.rejected_content + 1 == 357  # + the current


def test_a_search_with_both_grid_and_step_is_refused_for_that(http):
    """Both were counted as the step's positions, so a fine step was told to 'use a coarser grid or a larger step',
    and a coarser one then refused as grid and step together."""
    search = json.dumps({"element": "cta", "grid": [5, 5], "step": 2})
    answer = http.post("/v1/whatif", files={"image": ("c.png", EXAMPLE.read_bytes())},
                       data={"elements": ELEMENTS, "search": search})
    assert error_of(answer) == (400, "invalid_input")
    assert answer.json()["error"]["message"] == "field 'search': give grid or step, not both"


def test_a_list_of_edits_is_bounded_like_a_search(http):
    """20,000 one-pixel moves in one request held a thread for over a minute, past any deadline, before the 504."""
    moves = json.dumps([{"op": "move", "element": "cta", "dx": (-1) ** i, "dy": 0} for i in range(401)])
    response = http.post("/v1/whatif", files={"image": ("c.png", EXAMPLE.read_bytes())},
                         data={"elements": ELEMENTS, "edits": moves})
    assert error_of(response) == (400, "invalid_input")
    assert "401 edits, this service applies at most 400" in response.json()["error"]["message"]


def test_an_unknown_file_field_is_refused_not_ignored(http):
    """A misspelt 'norm' was answered 200 with every percentile null, and a third image 'image_c' left out of the
    compare, without a word."""
    image = ("a.png", EXAMPLE.read_bytes())
    for route, files, data, field in (
            ("/v1/score", {"image": image}, {"elements": ELEMENTS, "norm": "display"}, "norm"),
            ("/v1/compare", {"image_a": image, "image_b": image, "image_c": image}, {"elements": ELEMENTS}, "image_c"),
            ("/v1/whatif", {"image": image}, {"elements": ELEMENTS, "edit": "[]", "edits": "[]"}, "edit"),
            ("/v1/predict", {"image": image, "overlay": image}, None, "overlay")):
        response = http.post(route, files=files, data=data)
        assert error_of(response) == (400, "invalid_input"), route
        assert f"multipart field {field!r} is not one {route} takes" in response.json()["error"]["message"], route


@pytest.mark.parametrize("route, content_type", [
    ("/v1/predict", "text/plain"), ("/v1/predict", "application/json"), ("/v1/score", "application/json"),
    ("/v1/score", "image/png"), ("/v1/compare", "text/csv"), ("/v1/whatif", None),
])
def test_wrong_content_types(http, route, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    assert error_of(http.post(route, content=b"{}", headers=headers)) == (415, "unsupported_media_type")


def test_a_compressed_body_is_refused_as_such(http):
    """A gzip-compressed PNG was decoded as it came and answered 400 'not a recognised image format', sending its
    client to look for a fault in the image; the service does not decompress bodies, and says so (RFC 9110, 415)."""
    import gzip

    answer = http.post("/v1/predict", content=gzip.compress(EXAMPLE.read_bytes()),
                       headers={"Content-Type": "image/png", "Content-Encoding": "gzip"})
    assert error_of(answer) == (415, "unsupported_media_type") and "uncompressed" in answer.json()["error"]["message"]
    plain = http.post("/v1/predict", params={"map": "false"}, content=EXAMPLE.read_bytes(),
                      headers={"Content-Type": "image/png", "Content-Encoding": "identity"})
    assert plain.status_code == 200


def test_a_transfer_coding_other_than_chunked_is_refused_as_such(url):
    """The parser undoes chunked and passes any other transfer coding through: a gzip-coded image was read as
    the image's bytes and refused as not being one. RFC 9112 (6.1): a coding the server does not know is a 501."""
    import gzip

    data = gzip.compress(EXAMPLE.read_bytes())
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nConnection: close\r\n"
                     b"Authorization: Bearer %s\r\nTransfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                     % (KEY.encode(), len(data), data))
        head, _, body = _answer_on(sock, 20).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 "), head
    error = json.loads(body)["error"]
    assert error["code"] == "not_implemented" and "gzip" in error["message"], error


def test_an_expired_image_leaves_the_queue_gauge_and_is_counted_once(http):
    """An image the lanes skipped (its deadline passed) left foveal_queue_depth at 1 until another image ran; and
    a deadline both the request and the lane saw pass was counted twice in foveal_rejected_total."""
    series = 'foveal_rejected_total{reason="deadline"}'
    before = metric(http.get("/metrics").text, series)
    answers = [http.post("/v1/predict", params={"map": "false"}, content=EXAMPLE.read_bytes(),
                         headers={"Content-Type": "image/png", "X-Deadline-Ms": "0.01"}) for _ in range(3)]
    assert all(error_of(a) == (504, "deadline_exceeded") for a in answers)
    deadline = time.monotonic() + 10
    while metric(text := http.get("/metrics").text, "foveal_queue_depth") != 0:
        assert time.monotonic() < deadline, "the queue gauge kept the skipped images"
        time.sleep(0.05)
    assert metric(text, series) - before == 3


def test_a_pipelined_request_whose_body_is_still_arriving_is_answered(url):
    """The connection ended after an answer when the *last parsed* request's body was unfinished: a POST pipelined
    behind a GET was dropped unanswered, on an answer that had not said Connection: close."""
    body = png(np.random.default_rng(0).integers(0, 256, (400, 500, 3), np.uint8))  # ~600 kB: many reads
    port = int(url.rsplit(":", 1)[1])
    auth = b"Authorization: Bearer %s\r\n" % KEY.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /v1/predict?map=false HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n%s"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (auth, len(body), body))
        data = b""
        deadline = time.monotonic() + 20
        while (chunk := sock.recv(65536)) and time.monotonic() < deadline:
            data += chunk
    assert re.findall(rb"HTTP/1.1 (\d+)", data) == [b"200", b"200"], data[:300]


def test_a_body_that_is_not_http_is_not_counted_as_a_client_leaving(url, http):
    """A bad chunk size is answered 400 by the connection, after the app had started on the request: /metrics
    counted it as a 499 (the client closed), though SERVING.md says such requests are not in /metrics."""
    before = http.get("/metrics").text
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nAuthorization: Bearer %s"
                     b"\r\nTransfer-Encoding: chunked\r\n\r\n" % KEY.encode())
        time.sleep(0.3)  # the app is reading the body
        sock.sendall(b"zz\r\n")
        head, _, body = _answer_on(sock, 20).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body)["error"]["code"] == "bad_request", head
    time.sleep(0.3)
    after = http.get("/metrics").text
    for status in ("400", "499"):
        series = f'foveal_requests_total{{route="/v1/predict",status="{status}"}}'
        assert metric(after, series) == metric(before, series), status


def test_oversize_bodies_and_pixels(http):
    big = os.urandom(2**20 + 1)
    refused = http.post("/v1/predict", content=big, headers={"Content-Type": "image/png"})
    # Refused before the body arrived, the connection ends after the answer, and the answer says so: a client that
    # sent its next request on it would lose that request.
    assert error_of(refused) == (413, "body_too_large") and refused.headers["connection"] == "close"

    def chunks():  # no Content-Length: the limit is counted as the body streams in
        for _ in range(40):
            yield os.urandom(65536)

    refused = http.post("/v1/predict", content=chunks(), headers={"Content-Type": "image/png"})
    assert error_of(refused) == (413, "body_too_large") and refused.headers["connection"] == "close"
    assert http.get("/healthz").status_code == 200, "the client's next request goes on a new connection"
    huge = png(np.zeros((1000, 1001, 3), np.uint8))  # 1.001 MP, a few kB encoded
    answer = http.post("/v1/predict", content=huge, headers={"Content-Type": "image/png"})
    assert error_of(answer) == (413, "too_many_pixels")
    assert answer.json()["error"]["message"] == \
        "the image is 1001x1000 = 1,001,000 pixels, over this service's limit of 1,000,000; downscale it"
    files = {"image": ("big.png", huge, "image/png")}
    assert error_of(http.post("/v1/score", files=files, data={"elements": "[]"})) == (413, "too_many_pixels")
    bomb = _png_header_only(14000, 14000)  # over twice Pillow's own limit: refused by Pillow before foveal's check
    assert error_of(http.post("/v1/predict", content=bomb, headers={"Content-Type": "image/png"})) == \
        (413, "too_many_pixels")


def test_a_norms_name_that_is_not_utf8_is_refused_at_start():
    """It was taken, and /v1/norms and every /v1/score answered 500 (a name JSON cannot hold)."""
    run = subprocess.run([sys.executable, "-m", "foveal", "serve", "--norms", b"n\xff=n.json"], capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(Path(foveal.__file__).resolve().parents[1])},
                         text=True, timeout=120)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "argument --norms: NAME n\\xff is not valid UTF-8 text; give another name" in run.stderr


def test_a_slow_header_check_does_not_hold_up_other_requests(engine):
    """/v1/predict checked an image's header on the event loop: Pillow parses every chunk before the pixels, so a
    body of a million empty text chunks held every other request (/healthz included) for as long as that took."""
    import struct
    import zlib

    from foveal.imageio import check_header

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    small = png(np.zeros((8, 8, 3), np.uint8))
    padded = small[:33] + chunk(b"tEXt", b"") * 1_000_000 + small[33:]  # 12 MB, after IHDR
    started = time.perf_counter()
    check_header(padded, 1_000_000)
    check_s = time.perf_counter() - started
    app = create_app(ServeConfig(max_batch=1, max_body_bytes=2**25), engine=engine)
    with running(app) as base, httpx.Client(base_url=base, timeout=120) as http:
        answers: list[int] = []
        upload = threading.Thread(target=lambda: answers.append(http.post(
            "/v1/predict?format=json&map=false", content=padded, headers={"Content-Type": "image/png"}).status_code))
        upload.start()
        waits = []
        with httpx.Client(base_url=base, timeout=120) as probe:
            deadline = time.monotonic() + 2 * check_s + 5
            while upload.is_alive() and time.monotonic() < deadline and len(waits) < 500:
                started = time.perf_counter()
                assert probe.get("/healthz").status_code == 200
                waits.append(time.perf_counter() - started)
                time.sleep(0.05)
        upload.join(120)
    assert answers == [200]
    assert max(waits) < max(0.5, check_s / 3), (check_s, sorted(waits)[-5:])


def test_a_score_format_the_named_norms_lack_is_refused_as_the_cli_refuses_it(tmp_path, engine):
    """The service scored it with every percentile null ('norms have no format'), where foveal score --format
    stops: a format named by the caller that the norms lack is a typo."""
    from foveal.scoring.elements import Element
    from foveal.scoring.norms import build_norms, engine_identity
    from foveal.scoring.scores import score_creative

    smap = SaliencyMap(np.full((600, 600), 1 / 360000, np.float32))
    refs = [score_creative(smap, [Element("cta", "cta", (0, 0, w, 60))]) for w in (60, 120, 240)]
    (tmp_path / "n.json").write_text(json.dumps(build_norms(refs, engine_identity(engine)).to_dict()))
    app = create_app(ServeConfig(warmup=False, norms={"display": str(tmp_path / "n.json")}), engine=engine)
    files = {"image": ("a.png", EXAMPLE.read_bytes(), "image/png")}
    with running(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        typo = http.post("/v1/score", files=files, data={"elements": ELEMENTS, "norms": "display",
                                                         "format": "123x456"})
        assert error_of(typo) == (400, "invalid_input")
        assert typo.json()["error"]["message"] == ("format '123x456' is not in the norms 'display' (they have "
                                                   "600x600); name one of those")
        named = http.post("/v1/score", files=files, data={"elements": ELEMENTS, "norms": "display",
                                                          "format": "600x600"})
        cta = next(e for e in named.json()["elements"] if e["kind"] == "cta")
        assert named.status_code == 200 and cta["percentile"] is not None


def test_client_gone_mid_body_and_stalled_body(engine):
    """A client that leaves mid-body is no server error (499 in the metrics, no traceback); one that stalls gets 408
    once the request's time is up, instead of holding its connection forever."""
    app = create_app(ServeConfig(warmup=False, request_timeout_s=1.0), engine=engine)
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
    with running(app) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as gone:
            gone.sendall(head + b"x" * 1000)
            time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            stalled.sendall(head + b"x" * 1000)
            started = time.monotonic()
            answer = stalled.recv(65536)
            assert b" 408 " in answer.split(b"\r\n", 1)[0] and b"request_timeout" in answer
            assert b"\r\nconnection: close\r\n" in answer.split(b"\r\n\r\n", 1)[0] + b"\r\n"
            assert time.monotonic() - started < 5
        deadline = time.monotonic() + 10
        while 'status="499"' not in (metrics := httpx.get(f"{base}/metrics").text):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.05)
    assert 'route="/v1/predict",status="500"' not in metrics


def test_multipart_bodies_cut_short(engine):
    """A client that leaves mid-way through a multipart body is gone (499 in the metrics), not a malformed request
    (400); a body that ends before its closing boundary is malformed, and the answer says it was cut short instead
    of calling the half-sent field missing."""
    app = create_app(ServeConfig(warmup=False), engine=engine)
    data = EXAMPLE.read_bytes()
    body = (b'--XX\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png'
            b'\r\n\r\n' + data + b'\r\n--XX\r\nContent-Disposition: form-data; name="elements"\r\n\r\n'
            + EXAMPLE.with_suffix(".json").read_bytes() + b'\r\n--XX--\r\n')
    head = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XX\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    with running(app) as base:
        port = int(base.rsplit(":", 1)[1])
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port)) as gone:
                gone.sendall(head + body[:len(body) // 2])
                time.sleep(0.2)
        deadline = time.monotonic() + 10
        while metric(text := httpx.get(f"{base}/metrics").text, 'foveal_requests_total{route="/v1/score",'
                                                                 'status="499"}') < 2:
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert metric(text, 'foveal_requests_total{route="/v1/score",status="400"}') == 0
        cut = body[:len(body) // 2]
        answer = httpx.post(f"{base}/v1/predict", content=cut,
                            headers={"Content-Type": "multipart/form-data; boundary=XX"})
        assert error_of(answer) == (400, "invalid_input") and "cut short" in answer.json()["error"]["message"]
        # a complete body delimited by another boundary than its header's, or none at all, is not cut short
        for other, told in ((body.replace(b"--XX", b"--YY"), "no part delimited by the boundary its Content-Type "
                             "names ('XX')"), (b"", "the multipart body is empty")):
            answer = httpx.post(f"{base}/v1/score", content=other,
                                headers={"Content-Type": "multipart/form-data; boundary=XX"})
            assert error_of(answer) == (400, "invalid_input") and told in answer.json()["error"]["message"], told
        assert metric(httpx.get(f"{base}/openapi.json") and httpx.get(f"{base}/metrics").text,
                      'foveal_requests_total{route="/openapi.json",status="200"}') == 1  # was route="other"
        whole = httpx.post(f"{base}/v1/score", content=body,
                           headers={"Content-Type": "multipart/form-data; boundary=XX"})
        assert whole.status_code == 200, whole.text


def test_a_server_without_the_detect_extra_says_so_as_501():
    """The server, not the client, lacks what detection needs: 501 with the install hint, not a 400 blaming the
    request."""
    from foveal.errors import DetectorUnavailableError
    from foveal.serve.errors import status_of

    refusal = DetectorUnavailableError("rapidocr_onnxruntime is not installed")
    assert status_of(refusal) == (501, "detection_unavailable")


@pytest.mark.parametrize("workers", [0, 2.0, "2", True, "one too many"])
def test_serve_refuses_a_worker_count_before_starting_any(workers):
    """workers=10**20 started processes, each loading a model, until the machine gave out."""
    from foveal.serve.server import max_workers, serve

    workers = max_workers() + 1 if workers == "one too many" else workers
    with pytest.raises(foveal.InputError, match=f"^workers must be from 1 to {max_workers()} on this machine"):
        serve(ServeConfig(warmup=False), port=0, workers=workers)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_key_file_it_cannot_use_stops_the_start_in_one_line(tmp_path, workers):
    """With workers, each worker read the key file as it started, died on a short key and was started again, for
    ever, a traceback each time, the port held; the file is read before anything starts."""
    keys = tmp_path / "keys.txt"
    keys.write_text("short\n")
    run = subprocess.run([sys.executable, "-m", "foveal", "serve", "--port", str(free_port()), "--model", "itti-koch",
                          "--api-keys", str(keys), "--workers", workers],
                         env={**os.environ, "PYTHONPATH": FOVEAL_PATH}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert run.stderr.count("\n") == 1 and "keys must be at least 16 characters" in run.stderr, run.stderr


def test_api_keys(url):
    data = EXAMPLE.read_bytes()
    missing = httpx.post(f"{url}/v1/predict", content=data, headers={"Content-Type": "image/png"})
    assert error_of(missing) == (401, "unauthorized") and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(f"{url}/v1/predict", content=data, headers={"Content-Type": "image/png", "X-API-Key": "x" * 24})
    assert error_of(wrong) == (403, "forbidden")
    assert "ask its operator" in wrong.json()["error"]["message"]  # what to do
    assert error_of(httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"})) == (403, "forbidden")
    # a key sent under another scheme was told "an API key is required", as if none had been sent
    basic = httpx.get(f"{url}/metrics", headers={"Authorization": "Basic another-key-abcdefghijklmnop"})
    assert error_of(basic) == (401, "unauthorized")
    assert basic.json()["error"]["message"].endswith("(this request's Authorization header uses 'Basic', not Bearer)")
    ok = httpx.post(f"{url}/v1/predict", params={"map": "false"}, content=data,
                    headers={"Content-Type": "image/png", "X-API-Key": "another-key-abcdefghijklmnop"})
    assert ok.status_code == 200


def test_a_key_no_client_can_send_is_refused_when_the_keys_load(tmp_path):
    """A non-ASCII key loaded, yet could never match: header values reach the service as Latin-1, and
    foveal.Client refuses such a key. The key file says so before the service starts."""
    from foveal import InputError
    from foveal.serve.auth import load_keys

    path = tmp_path / "keys.txt"
    path.write_text(f"{KEY}\nключ-0123456789abcdef\n", encoding="utf-8")
    with pytest.raises(InputError, match="printable ASCII") as refused:
        load_keys(path)
    assert "\n" not in str(refused.value)
    path.write_text(f"{KEY}\nwith inner space 0123456789\n")
    assert load_keys(path) == (KEY, "with inner space 0123456789")


def test_deadline_exceeded(http):
    response = http.post("/v1/predict", content=EXAMPLE.read_bytes(),
                         headers={"Content-Type": "image/png", "X-Deadline-Ms": "1"})
    assert error_of(response) == (504, "deadline_exceeded")
    for bad in ("soon", "0", "-1", "nan", "inf", "1e309", "1_000", "1e3", "0x10", "1000000000000"):
        answer = http.post("/v1/predict", content=b"x", headers={"Content-Type": "image/png", "X-Deadline-Ms": bad})
        assert error_of(answer) == (400, "invalid_input"), bad
        # a positive number too large was told to be a positive number
        assert answer.json()["error"]["message"].startswith("X-Deadline-Ms must be a positive number of "
                                                            "milliseconds below 1e+12 such as 250")
    # Whitespace after a field value is not part of it (RFC 9110 5.5): "250   " was refused.
    port = int(str(http.base_url).rstrip("/").rsplit(":", 1)[1])
    body = EXAMPLE.read_bytes()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /v1/predict?map=false HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Authorization: Bearer %s\r\nX-Deadline-Ms: 60000 \t \r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (KEY.encode(), len(body), body))
        assert _answer_on(sock, 20).startswith(b"HTTP/1.1 200 ")


def test_a_header_that_decides_the_request_sent_twice_is_refused(url):
    """Two keys, deadlines or content types: the key check took the last and the deadline the first, so which one
    counted depended on the header, and a proxy checking the first key could be bypassed. Neither is guessed."""
    data = EXAMPLE.read_bytes()
    key, png_type = ("Authorization", f"Bearer {KEY}"), ("Content-Type", "image/png")
    for twice in ([("Authorization", "Bearer nope"), key], [key, ("X-API-Key", "x" * 24), ("X-API-Key", KEY)],
                  [key, ("X-Deadline-Ms", "1"), ("X-Deadline-Ms", "60000")], [key, ("Content-Type", "text/plain")]):
        answer = httpx.post(f"{url}/v1/predict", params={"map": "false"}, content=data, headers=[png_type, *twice])
        assert error_of(answer) == (400, "invalid_input") and "more than once" in answer.json()["error"]["message"]
    ok = httpx.post(f"{url}/v1/predict", params={"map": "false"}, content=data,
                    headers=[png_type, key, ("X-API-Key", KEY), ("Accept", "a/b"), ("Accept", "c/d")])
    assert ok.status_code == 200


def test_a_query_parameter_given_twice_is_refused(url):
    """?format=json&format=npy silently took the last: which answer a client gets must not be a guess, as for the
    headers that decide a request."""
    data = EXAMPLE.read_bytes()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "image/png"}
    for query in ("format=json&format=npy", "map=false&grid=4x4&map=true", "map=false&map="):
        answer = httpx.post(f"{url}/v1/predict?{query}", content=data, headers=headers)
        assert error_of(answer) == (400, "invalid_input"), query
        assert answer.json()["error"]["message"].endswith("is given more than once; give it once")
    assert httpx.post(f"{url}/v1/predict?map=false&grid=4x4", content=data, headers=headers).status_code == 200


def test_json_only_options_beside_a_map_format_are_refused(url):
    """?format=png&grid=2x2 answered the PNG alone: the grid asked for was dropped without a word."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "image/png"}
    for fmt, option in (("png", "grid=2x2"), ("npy", "overlay=true"), ("png", "map=false")):
        answer = httpx.post(f"{url}/v1/predict?format={fmt}&{option}", content=EXAMPLE.read_bytes(), headers=headers)
        assert error_of(answer) == (400, "invalid_input"), option
        name = option.split("=")[0]
        assert answer.json()["error"]["message"] == (f"{name} applies to format=json only: format={fmt} answers "
                                                     "with the map alone")


def test_an_unknown_query_parameter_is_refused(url):
    """?gird=32x24 (a typo) was ignored: the answer came without its grid, and nothing said why."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "image/png"}
    answer = httpx.post(f"{url}/v1/predict?map=false&gird=32x24", content=EXAMPLE.read_bytes(), headers=headers)
    assert error_of(answer) == (400, "invalid_input")
    assert answer.json()["error"]["message"] == ("unknown query parameter 'gird': /v1/predict takes format, map, grid "
                                                 "and overlay")
    # ?norms=display on /v1/score was ignored too: the scores came without the norms
    answer = httpx.post(f"{url}/v1/score?norms=display", files={"image": ("c.png", EXAMPLE.read_bytes())},
                        data={"elements": ELEMENTS}, headers={"Authorization": f"Bearer {KEY}"})
    assert error_of(answer) == (400, "invalid_input")
    assert answer.json()["error"]["message"] == ("unknown query parameter 'norms': /v1/score takes format in its "
                                                 "query; send the other fields in the multipart body")
    # /v1/detect reads no parameter at all
    answer = httpx.post(f"{url}/v1/detect?min_face=0.02", content=EXAMPLE.read_bytes(), headers=headers)
    assert error_of(answer) == (400, "invalid_input")
    assert answer.json()["error"]["message"] == ("unknown query parameter 'min_face': /v1/detect takes none; send "
                                                 "only the image")
    # a 30,000-character name came back whole in the message, and given twice, too
    for query in ("a" * 30_000 + "=1", "a" * 30_000 + "=1&" + "a" * 30_000 + "=2"):
        answer = httpx.post(f"{url}/v1/predict?{query}", content=EXAMPLE.read_bytes(), headers=headers)
        assert error_of(answer) == (400, "invalid_input") and len(answer.json()["error"]["message"]) < 200


def test_queue_overflow_gets_503_with_retry_after(engine):
    app = create_app(ServeConfig(max_queue=2, max_batch=1, max_wait_ms=0, warmup=False), engine=engine)
    payload = EXAMPLE.read_bytes()

    async def fire(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=24)) as client:
            return await asyncio.gather(*(client.post("/v1/predict", params={"map": "false"}, content=payload,
                                                      headers={"Content-Type": "image/png"}) for _ in range(24)))

    with running(app) as base:
        responses = asyncio.run(fire(base))
        metrics = httpx.get(f"{base}/metrics").text
    refused = [r for r in responses if r.status_code == 503]
    assert refused and all(error_of(r) == (503, "queue_full") and r.headers["retry-after"] == "1" for r in refused)
    assert all(r.status_code in (200, 503) for r in responses)
    assert f'foveal_rejected_total{{reason="queue_full"}} {len(refused)}' in metrics


def test_search_larger_than_the_queue(engine):
    """A what-if search tries more positions than --max-queue holds: they are queued a part at a time."""
    app = create_app(ServeConfig(max_queue=2, max_batch=8, warmup=False), engine=engine)
    with running(app) as base:
        doc = httpx.post(f"{base}/v1/whatif", files={"image": ("c.png", EXAMPLE.read_bytes())}, timeout=120,
                         data={"elements": ELEMENTS, "search": json.dumps({"element": "cta", "grid": [3, 3]})})
    assert doc.status_code == 200, doc.text
    assert doc.json()["timing"]["images_predicted"] > 2


def test_abandoned_search_stops(engine):
    """A what-if search whose client leaves stops within a batch instead of running its 400 positions."""
    app = create_app(ServeConfig(max_batch=4, warmup=False), engine=engine)
    fields = {"elements": ELEMENTS, "search": json.dumps({"element": "cta", "grid": [20, 20]})}
    request = httpx.Request("POST", "http://x/", files={"image": ("c.png", EXAMPLE.read_bytes())}, data=fields)
    body, content_type = request.read(), request.headers["content-type"]

    def images_done(base: str) -> float:
        lines = httpx.get(f"{base}/metrics").text.splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("foveal_images_total{"))

    with running(app) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(f"POST /v1/whatif HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            deadline = time.monotonic() + 30
            while images_done(base) < 8:  # the search is under way
                assert time.monotonic() < deadline
                time.sleep(0.05)
        time.sleep(1.0)  # the batch running when it left finishes
        settled = images_done(base)
        time.sleep(1.5)
        assert images_done(base) == settled < 100
        metrics = httpx.get(f"{base}/metrics").text
    assert 'route="/v1/whatif",status="499"' in metrics


def test_allowed_hosts_refuse_a_rebound_name(engine):
    """Any Host was answered, so a page whose name an attacker points at 127.0.0.1 (DNS rebinding) could read a
    loopback service without keys; --allowed-host names the hosts it answers to, probes and the page included."""
    app = create_app(ServeConfig(allowed_hosts=("localhost", "*.example.com"), warmup=False), engine=engine)
    with running(app) as base:
        port = base.rpartition(":")[2]
        for host, status in (("localhost", 200), (f"localhost:{port}", 200), (f"API.example.com:{port}", 200),
                             (f"attacker.test:{port}", 400), (f"127.0.0.1:{port}", 400), ("example.com", 400)):
            for path in ("/healthz", "/v1/models", "/"):
                answer = httpx.get(f"{base}{path}", headers={"Host": host}, timeout=30)
                assert answer.status_code == status, (host, path, answer.text)
                if status == 400:
                    assert error_of(answer) == (400, "unknown_host")
                    assert "--allowed-host" in answer.json()["error"]["message"]
    with pytest.raises(foveal.InputError, match="allowed host 'localhost:8080': give a host name"):
        ServeConfig(allowed_hosts=("localhost:8080",))


def test_detect_is_bounded_like_predict(engine):
    """/v1/detect runs one detection at a time, refuses beyond --max-queue (503) and honours X-Deadline-Ms."""
    pytest.importorskip("rapidocr_onnxruntime")
    app = create_app(ServeConfig(max_queue=2, warmup=False), engine=engine)
    payload = EXAMPLE.read_bytes()

    async def fire(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=8)) as client:
            return await asyncio.gather(*(client.post("/v1/detect", content=payload,
                                                      headers={"Content-Type": "image/png"}) for _ in range(8)))

    with running(app) as base:
        responses = asyncio.run(fire(base))
        headers = {"Content-Type": "image/png"}
        late = httpx.post(f"{base}/v1/detect", content=payload, headers={**headers, "X-Deadline-Ms": "1"}, timeout=60)
        bad = httpx.post(f"{base}/v1/detect", content=payload, headers={**headers, "X-Deadline-Ms": "soon"})
        again = httpx.post(f"{base}/v1/detect", content=payload, headers=headers, timeout=120)
    refused = [r for r in responses if r.status_code == 503]
    assert refused and all(error_of(r) == (503, "queue_full") and r.headers["retry-after"] == "1" for r in refused)
    done = [r for r in responses if r.status_code == 200]
    assert done and all(r.json() == done[0].json() for r in done) and again.json() == done[0].json()
    assert error_of(late) == (504, "deadline_exceeded") and error_of(bad) == (400, "invalid_input")


def test_cors_off_by_default_and_on_when_asked(engine, url):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in httpx.options(f"{url}/v1/predict", headers=preflight).headers
    app = create_app(ServeConfig(cors_origins=("https://ok.example",), warmup=False), engine=engine)
    with running(app) as base:
        allowed = httpx.options(f"{base}/v1/predict", headers={**preflight, "Origin": "https://ok.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://ok.example"
        # a page on that origin could not read a map's scale, its provenance or a 503's Retry-After
        answer = httpx.post(f"{base}/v1/predict?format=png", content=EXAMPLE.read_bytes(),
                            headers={"Content-Type": "image/png", "Origin": "https://ok.example"})
        exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"].split(",")}
        assert {"x-foveal-scale", "x-foveal-provenance", "retry-after"} <= exposed
        assert "x-foveal-scale" in answer.headers
        # refused preflights were text/plain ("Disallowed CORS origin"); every error of the API is its JSON
        refused = httpx.options(f"{base}/v1/predict", headers=preflight)
        assert error_of(refused) == (403, "cors_refused")
        assert "access-control-allow-origin" not in refused.headers
        assert "origin 'https://evil.example' is not allowed" in refused.json()["error"]["message"]
        refused = httpx.options(f"{base}/v1/predict", headers={
            "Origin": "https://ok.example", "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type, x-secret"})
        assert error_of(refused) == (403, "cors_refused")
        message = refused.json()["error"]["message"]
        assert "method PUT" in message and "header x-secret" in message and "GET, POST" in message, message


@pytest.mark.parametrize("origin", ["ex.com", "https://ex.com/", "https://Ex.com", "https://ex.com/app", "", None,
                                    "https://ex.com:443", "http://ex.com:80", "http://ex.com:99999",
                                    "http://ex.com:080"])
def test_a_cors_origin_no_browser_sends_is_refused_at_start(origin, capsys):
    """--cors-origin ex.com started fine and then refused every preflight from http://ex.com: CORS silently off."""
    from foveal.cli import main

    with pytest.raises(foveal.InputError, match="is not one a browser sends: give scheme://host"):
        ServeConfig(cors_origins=(origin,))
    if origin:  # refused while parsing, before the port is tried
        with pytest.raises(SystemExit) as stop:
            main(["serve", "--port", "0", "--cors-origin", origin])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"error: argument --cors-origin: {origin!r} is not" in err, err
        assert "is not one a browser sends" in err and len(err.strip().splitlines()) == 1, err
    kept = ("*", "http://localhost:8080", "https://[::1]", "https://ex.com:80")
    assert ServeConfig(cors_origins=list(kept)).cors_origins == kept
    with pytest.raises(foveal.InputError, match="'null' .* would let every page in"):
        ServeConfig(cors_origins=("null",))


def test_cors_preflight_needs_no_key(engine, keyfile):
    """A browser sends no credentials on a preflight: with keys and CORS both on, the preflight is answered by the
    CORS layer, and the real request still needs its key."""
    app = create_app(ServeConfig(api_keys_file=str(keyfile), cors_origins=("https://ok.example",), warmup=False),
                     engine=engine)
    preflight = {"Origin": "https://ok.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-api-key,content-type"}
    with running(app) as base:
        allowed = httpx.options(f"{base}/v1/predict", headers=preflight)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://ok.example"
        assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
        assert error_of(httpx.options(f"{base}/v1/predict", headers={"Origin": "https://ok.example"})) == \
            (401, "unauthorized")
        refused = httpx.post(f"{base}/v1/predict", content=EXAMPLE.read_bytes(),
                             headers={"Content-Type": "image/png", "Origin": "https://ok.example"})
        # the refusal carries the CORS headers, so the page that sent it can read why (not a bare CORS failure)
        assert error_of(refused) == (401, "unauthorized")
        assert refused.headers["access-control-allow-origin"] == "https://ok.example"


def test_mounted_under_a_prefix_keeps_keys_limits_and_route_labels(engine, keyfile):
    """``parent_app.mount("/foveal", app)`` (docs/SERVING.md): the parent runs the app's lifespan, and the app still
    asks for keys, applies its limits and labels its routes, although every path starts with the prefix."""
    from fastapi import FastAPI

    app = create_app(ServeConfig(api_keys_file=str(keyfile), max_body_bytes=50_000, warmup=False), engine=engine)
    parent = FastAPI(lifespan=lambda _: app.router.lifespan_context(app))
    parent.mount("/foveal", app)
    data = EXAMPLE.read_bytes()
    with running(parent) as base:
        assert httpx.get(f"{base}/foveal/readyz").status_code == 200
        missing = httpx.post(f"{base}/foveal/v1/predict", content=data, headers={"Content-Type": "image/png"})
        assert error_of(missing) == (401, "unauthorized")
        assert error_of(httpx.get(f"{base}/foveal/metrics")) == (401, "unauthorized")
        key = {"X-API-Key": KEY}
        ok = httpx.post(f"{base}/foveal/v1/predict", params={"map": "false"}, content=data,
                        headers={"Content-Type": "image/png", **key})
        assert ok.status_code == 200
        big = httpx.post(f"{base}/foveal/v1/predict", content=os.urandom(50_001),
                         headers={"Content-Type": "image/png", **key})
        assert error_of(big) == (413, "body_too_large")
        assert "limit of 0.0477 MiB" in big.json()["error"]["message"]
        text = httpx.get(f"{base}/foveal/metrics", headers=key).text
        lost = httpx.get(f"{base}/foveal/v1/nothing", headers=key)
        assert error_of(lost) == (404, "not_found") and lost.json()["error"]["message"] == \
            "nothing is at /foveal/v1/nothing; the API's routes are listed at /foveal/openapi.json"
        assert httpx.get(f"{base}/foveal/openapi.json").json()["paths"]
    assert 'foveal_requests_total{route="/v1/predict",status="200"} 1' in text
    assert 'foveal_requests_total{route="/v1/predict",status="413"} 1' in text


# -- graceful shutdown -----------------------------------------------------------------------------------------
def test_sigterm_drains_in_flight_requests(tmp_path):
    proc, base, log = started_cli(tmp_path, "--max-batch", "2")
    try:
        payloads = images(10)

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                tasks = [asyncio.create_task(client.post("/v1/predict", params={"format": "npy"}, content=p,
                                                         headers={"Content-Type": "image/png"})) for p in payloads]
                until = time.monotonic() + 20
                while time.monotonic() < until:  # wait until the server holds most of them, then SIGTERM
                    text = (await client.get("/metrics")).text
                    held = float(text.split("\nfoveal_requests_in_flight ")[1].split()[0]) - 1
                    if held >= 6:
                        break
                    await asyncio.sleep(0.005)
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks)

        responses = asyncio.run(fire())
        assert [r.status_code for r in responses] == [200] * len(payloads)
        assert all(np.load(io.BytesIO(r.content)).shape for r in responses)
        assert proc.wait(timeout=60) == 0, log.read_text()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_ctrl_c_answers_what_is_in_flight_503_and_exits_130(tmp_path, workers):
    """Ctrl-C twice: uvicorn stops waiting and cancels the requests still in flight, which it answered with a
    plain-text 500 (and a traceback in the log), and the process exited 0 as after a full drain. With workers,
    uvicorn's supervisor ended them by SIGTERM alone: what they held was cut without an answer."""
    proc, base, log = started_cli(tmp_path, "--model", "itti-koch", "--verbose", "--workers", workers)
    port = int(base.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            # in flight until the service stops: its body never arrives whole
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
            until = time.monotonic() + 20
            while metric(httpx.get(f"{base}/metrics").text, "foveal_requests_in_flight") < 2:  # it and /metrics
                assert time.monotonic() < until, "the request never arrived"
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
            assert proc.poll() is None, "the first Ctrl-C drains: the request is still waited for"
            proc.send_signal(signal.SIGTERM)  # a repeated SIGTERM (an orchestrator's) does not force it
            time.sleep(0.5)
            assert proc.poll() is None, "a SIGTERM while draining cut the drain short"
            proc.send_signal(signal.SIGINT)
            head, _, body = _answer_on(sock, 20).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and b"content-type: application/json" in head.lower(), head
        assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower(), head
        assert json.loads(body)["error"]["code"] == "shutting_down"
        assert proc.wait(timeout=30) == 130
        text = log.read_text()
        assert "Traceback" not in text and "foveal: interrupted" in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_forced_stop_during_a_whatif_search_leaves_no_coroutine_unawaited(tmp_path):
    """The search's thread went on handing positions to a stopped event loop: 'RuntimeWarning: coroutine
    Batcher.submit_many was never awaited' on stderr after the 503."""
    proc, base, log = started_cli(tmp_path)  # the default model: 400 positions (the most) take it seconds
    answers: list[httpx.Response] = []
    try:
        search = {"image": ("c.png", EXAMPLE.read_bytes()), "elements": (None, ELEMENTS),
                  "search": (None, json.dumps({"element": "cta", "grid": [20, 20]}))}
        asking = threading.Thread(target=lambda: answers.append(httpx.post(f"{base}/v1/whatif", files=search,
                                                                           timeout=120)))
        asking.start()
        until = time.monotonic() + 30
        while metric(httpx.get(f"{base}/metrics").text, "foveal_requests_in_flight") < 2:  # it and /metrics
            assert time.monotonic() < until and asking.is_alive(), "the search never started"
            time.sleep(0.02)
        time.sleep(0.5)  # well into its positions
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        asking.join(60)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [a.status_code for a in answers] == [503] and answers[0].json()["error"]["code"] == "shutting_down"
    assert "never awaited" not in log.read_text() and "Traceback" not in log.read_text(), log.read_text()


def test_verbose_workers_log_what_one_verbose_server_logs(tmp_path):
    """A spawned worker starts with logging unconfigured, so with --workers -v foveal's own info lines (the service
    ready, a client cut off for reading nothing) reached no log; only warnings did, through Python's last resort."""
    proc, base, log = started_cli(tmp_path, "--model", "itti-koch", "--verbose", "--workers", "2")
    with reaped(proc):
        until = time.monotonic() + 60
        while log.read_text().count("foveal serve ready: Engine(") < 2:  # one line per worker, as from one server
            assert time.monotonic() < until, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()


def test_workers_refuse_new_connections_once_draining_and_answer_what_they_hold(tmp_path):
    """With --workers, uvicorn's parent kept the listening socket open through the drain: the kernel accepted new
    connections that no worker would take and reset them when the last worker ended. Now the port refuses at once,
    while a request a worker already holds is still answered."""
    proc, base, log = started_cli(tmp_path, "--model", "itti-koch", "--workers", "2")
    port = int(base.rsplit(":", 1)[1])
    png = images(1)[0]
    with reaped(proc):
        until = time.monotonic() + 60
        while metric(httpx.get(f"{base}/metrics").text, "foveal_ready") < 2:
            assert time.monotonic() < until, log.read_text()
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as held:
            held.sendall(b"POST /v1/predict?format=npy HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(png) + png[:20])
            time.sleep(0.5)  # the request is a worker's
            proc.send_signal(signal.SIGTERM)
            until = time.monotonic() + 10
            while True:  # refused, not accepted and left waiting for a worker
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2):
                        pass
                except ConnectionRefusedError:
                    break
                assert time.monotonic() < until, "the port still accepts connections while draining"
                time.sleep(0.05)
            assert proc.poll() is None, "the held request keeps the service draining"
            held.sendall(png[20:])
            head, _, body = _answer_on(held, 20).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert proc.wait(timeout=60) == 0, log.read_text()
        assert "Traceback" not in log.read_text()


def test_a_request_still_in_flight_when_the_drain_times_out_gets_503(tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    code = ("from foveal.serve import ServeConfig, serve\n"
            f"serve(ServeConfig(model='itti-koch'), port={port}, graceful_timeout_s=0.5)")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": FOVEAL_PATH},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        until = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < until, log.read_text()
            with contextlib.suppress(OSError):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            time.sleep(0.1)
        with sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            head, _, body = _answer_on(sock, 20).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and b"content-type: application/json" in head.lower(), head
        assert json.loads(body)["error"]["code"] == "shutting_down"
        assert proc.wait(timeout=30) == 0 and "Traceback" not in log.read_text(), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _answer_on(sock: socket.socket, limit_s: float) -> bytes:
    """Everything the server sends on ``sock`` until it closes it, waiting at most ``limit_s``."""
    sock.settimeout(limit_s)
    chunks = []
    with contextlib.suppress(socket.timeout):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
    raise AssertionError(f"still open after {limit_s} s, having sent {b''.join(chunks)!r}")


def test_connections_that_never_finish_their_headers_are_answered_and_closed(tmp_path):
    """uvicorn alone kept a connection that sent nothing, or headers without end, open for ever, took 300 MB of
    headers into memory, and answered a request it could not parse in plain text. `foveal serve` gives every
    request's headers a deadline and a size limit, and answers in the API's JSON."""
    proc, base, log = started_cli(tmp_path, "--model", "itti-koch", "--header-timeout-s", "1")
    port = int(base.rsplit(":", 1)[1])

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=5)

    def error(answer: bytes) -> tuple[int, dict]:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower(), head
        return int(head.split()[1]), json.loads(body)["error"]

    try:
        with connect() as silent, connect() as slow:
            started = time.monotonic()
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the blank line that ends them never comes
            assert _answer_on(silent, 10) == b"", "a connection that said nothing is closed without an answer"
            status, body = error(_answer_on(slow, 10))
            assert (status, body["code"]) == (408, "request_timeout") and "within 1 s" in body["message"]
            assert 0.9 < time.monotonic() - started < 8
        with connect() as endless:
            with contextlib.suppress(OSError):  # the server may close while the rest is still being sent
                endless.sendall(b"GET /healthz HTTP/1.1\r\n"
                                + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 4000) for i in range(40)))
            status, body = error(_answer_on(endless, 10))
            assert (status, body["code"]) == (431, "headers_too_large"), body
        with connect() as garbled:
            garbled.sendall(b"HELLO THERE\r\n\r\n")
            status, body = error(_answer_on(garbled, 10))
            assert (status, body["code"]) == (400, "bad_request"), body
        # A request whose headers and large body come in one go is not mistaken for large headers.
        payload = png(np.random.default_rng(3).integers(0, 256, (200, 200, 3), dtype=np.uint8))
        assert len(payload) > 64 * 2**10
        with connect() as ok:
            ok.sendall(b"POST /v1/predict?format=json&map=false HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                       b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
            answer = _answer_on(ok, 30)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200, "the server still serves"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()


def test_a_client_that_reads_none_of_its_answer_is_cut_off(tmp_path):
    """An answer is handed whole to the connection's write buffer: a client that never read it held that memory
    (160 MB for a 40 MP map as .npy) for ever. A reader that keeps reading, however slowly, gets all of it."""
    # Longer than uvicorn's 5 s keep-alive timeout, whose close() of the answered connection once stopped the cut.
    proc, base, log = started_cli(tmp_path, "--model", "itti-koch", "--timeout-ms", "6000", "--verbose")
    port = int(base.rsplit(":", 1)[1])
    payload = png(np.full((1500, 2000, 3), 90, np.uint8))
    size = 128 + 4 * 1500 * 2000  # the .npy header and the float32 map: 12 MB, beyond what the kernel's buffers take

    def request(small_window: bool) -> socket.socket:
        sock = socket.socket()
        if small_window:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"POST /v1/predict?format=npy HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        return sock

    def drain(sock: socket.socket, pause_s: float, limit_s: float) -> int:
        sock.settimeout(limit_s)
        got, started = 0, time.monotonic()
        with contextlib.suppress(OSError):  # a reset ends it too
            while time.monotonic() - started < limit_s:
                chunk = sock.recv(2**18)
                if not chunk:
                    break
                got += len(chunk)
                time.sleep(pause_s)
        return got

    try:
        with request(small_window=True) as stalled:
            time.sleep(8.0)  # reads nothing for longer than the 6 s
            assert drain(stalled, 0.0, 10) < size, "the stalled answer was kept"
        with request(small_window=False) as slow:  # 256 kB a read, 10 reads a second: about 5 s in all
            started = time.monotonic()
            assert drain(slow, 0.1, 60) >= size
            assert time.monotonic() - started > 1.5
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200, "the server still serves"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    assert log.read_text().count("read none of its answer for 6 s") == 1, log.read_text()


class _Wire(asyncio.Transport):
    """The server's side of a connection, recording what it writes: bytes fed to a :class:`Connection` directly
    arrive in exactly one read, which a socket cannot promise."""

    def __init__(self) -> None:
        super().__init__()
        self.out, self.eof, self.closed = bytearray(), False, False

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data) -> None:
        assert not self.eof, "written after write_eof"
        self.out += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _one_read(*reads: bytes, status: int = 200, app=None) -> tuple[bytes, list[str], _Wire]:
    """What a ``foveal serve`` connection answers when its bytes arrive in these reads (to ``app``, by default one
    answering ``status`` without reading the body), the paths the default app saw, and the connection's
    transport."""
    from uvicorn.server import ServerState

    seen: list[str] = []
    wire = _Wire()

    async def answering(scope, receive, send) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def run() -> bytes:
        config = uvicorn.Config(app or answering, log_level="critical")
        connection = connection_factory(5.0, 60.0)(config=config, server_state=ServerState(), app_state={},
                                             _loop=asyncio.get_running_loop())
        connection.connection_made(wire)
        for data in reads:
            connection.data_received(data)
            await asyncio.sleep(0.01)
        connection.connection_lost(None)
        return bytes(wire.out)

    return asyncio.run(run()), seen, wire


def test_headers_over_the_limit_are_refused_however_they_arrive():
    """The 64 KiB limit held only while the headers were unfinished at the end of a read: whole in one read, 100 KB
    of headers reached the app, and a request line over 64 KiB was answered 400 (the URL parser's own limit)."""
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 4000) for i in range(25))
    for request in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n",
                    b"GET /healthz?" + b"q" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"):
        answer, seen, _ = _one_read(request)
        assert answer.startswith(b"HTTP/1.1 431 ") and b'"headers_too_large"' in answer, answer[:200]
        assert seen == []
    answer, seen, _ = _one_read(b"GET /healthz?" + b"q" * 60000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and seen == ["/healthz"]


def test_a_request_both_garbled_and_too_large_is_answered_once():
    """A read over 64 KiB that the parser refuses was answered 400, then 431 on the same connection, which raised
    in the event loop (a traceback in the log)."""
    answer, seen, _ = _one_read(b"GET /healthz HTTP/1.1\r\nX-A: b\x00" + b"c" * 70000 + b"\r\n\r\n")
    assert answer.count(b"\r\n\r\n") == 1 and answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert seen == []


def test_a_request_answered_before_its_body_arrived_ends_its_connection():
    """Answered before its body had all arrived (a 413 by Content-Length, a 401, a 408 for a stalled body), the
    connection stayed open, reading and dropping the rest of the body without any deadline: a client trickling
    bytes after its refusal held it for ever. It is now closed after the answer (the rest read and dropped for a
    moment first, so the answer is not lost to a reset); a request whose body came whole keeps its connection."""
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
    answer, _, wire = _one_read(head % 10**12 + b"x" * 1000, b"x" * 1000, status=413)
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.endswith(b"ok") and wire.eof
    answer, _, wire = _one_read(head % 3 + b"abc", status=400)
    assert answer.startswith(b"HTTP/1.1 400 ") and not wire.eof


def test_trailer_fields_are_dropped_and_bounded():
    """uvicorn added a chunked body's trailer fields to the headers the app was given: an API key sent after the
    body passed the key check when it came in the same read as the headers, and trailers had no size limit (300 MB
    of them were held in memory). They are dropped (RFC 9110 6.5: never merged), and over 64 KiB of them is a 431."""
    def run(*reads: bytes) -> tuple[bytes, list[list[bytes]]]:
        seen: list[list[bytes]] = []

        async def app(scope, receive, send) -> None:
            message = await receive()
            while message.get("more_body"):
                message = await receive()
            if message["type"] == "http.request":  # the whole body, not the client gone
                seen.append([name for name, _ in scope["headers"]])
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        return _one_read(*reads, app=app)[0], seen

    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
    answer, seen = run(head + b"X-API-Key: " + b"k" * 20 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and seen == [[b"host", b"transfer-encoding"]], (answer, seen)
    answer, seen = run(head, *[b"X-Pad: " + b"a" * 30000 + b"\r\n"] * 4, b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ") and b"trailer fields" in answer and seen == [], answer[:300]


WEBSOCKET = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             b"Sec-WebSocket-Version: 13\r\n")


def test_an_upgrade_request_is_answered_as_plain_http_or_refused_in_json(tmp_path):
    """uvicorn answered a WebSocket handshake with an empty 403 that no key check, JSON body or /metrics saw, and
    read an upgrade request's body as the other protocol's bytes: dropped, the request got 'the body is empty'.
    The service has no WebSocket or HTTP/2 endpoint: it answers an upgrade request as the HTTP request it also is
    (RFC 9110 7.8), and one with a body, which its parser cannot read, with the API's JSON 400."""
    answer, seen, wire = _one_read(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + WEBSOCKET + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and seen == ["/healthz"], answer
    assert b"connection: close" in answer.lower(), "what follows the upgrade request cannot be read: closed"
    data = EXAMPLE.read_bytes()
    answer, seen, wire = _one_read(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                                   b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AA\r\n"
                                   b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and seen == [] and wire.eof, answer[:300]
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and "Upgrade" in error["message"], error

    proc, base, log = started_cli(tmp_path, "--model", "itti-koch")
    port = int(base.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /v1/predict HTTP/1.1\r\nHost: x\r\n" + WEBSOCKET + b"\r\n")
            head, _, body = _answer_on(sock, 10).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 405 ") and json.loads(body)["error"]["code"] == "method_not_allowed", head
        text = httpx.get(f"{base}/metrics").text
        assert metric(text, 'foveal_requests_total{route="/v1/predict",status="405"}') == 1
        assert "Unsupported upgrade" not in log.read_text(), "a client's header is no warning for the operator"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()


def test_a_websocket_handshake_to_a_mounted_app_is_refused_in_json_and_counted(keyfile, engine):
    """Mounted in a server that speaks WebSocket (here uvicorn with wsproto), the handshake reaches the app, which
    refused it with an empty 403 that /metrics never counted."""
    app = create_app(ServeConfig(api_keys_file=str(keyfile), warmup=False), engine=engine)
    with running(app, plain_uvicorn=True) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /v1/predict HTTP/1.1\r\nHost: x\r\n" + WEBSOCKET + b"\r\n")
            head, _, body = _answer_on(sock, 10).partition(b"\r\n\r\n")
        text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert head.startswith(b"HTTP/1.1 404 ") and b"content-type: application/json" in head.lower(), head
    error = json.loads(body)["error"]
    assert error["code"] == "not_found" and "WebSocket" in error["message"], error
    assert metric(text, 'foveal_requests_total{route="/v1/predict",status="404"}') == 1


def test_batcher_isolates_an_image_that_breaks_its_batch(engine):
    """When the batched engine call raises, every image is re-run alone: only the culprit fails."""
    from foveal import InputError
    from foveal.serve.batcher import Batcher

    import hashlib

    payloads = images(6)
    culprit = payloads[3]
    culprit_sha = hashlib.sha256(culprit).hexdigest()

    class Fragile:  # the real engine, failing whenever the culprit is in the call (as a broken model would)
        def predict_batch(self, batch, batch_size=16, errors="raise"):
            if any(hashlib.sha256(b).hexdigest() == culprit_sha for b in batch):
                raise InputError("this image breaks the model")
            return engine.predict_batch(batch, batch_size, errors=errors)

    async def run():
        batcher = Batcher(Fragile(), max_batch=8, max_wait_ms=0)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(p) for p in payloads), return_exceptions=True)
        finally:
            await batcher.stop()

    results = asyncio.run(run())
    assert isinstance(results[3], InputError)
    for payload, result in zip(payloads, results):
        if payload is not culprit:
            assert np.array_equal(result.prob, engine.predict(payload).prob)


class Gated:
    """A stand-in engine whose first image holds its lane (or batch) until ``gate`` is set; every map is flat."""

    def __init__(self, streaming: bool) -> None:
        self.gate, self.streaming, self.first = threading.Event(), streaming, True
        if streaming:
            self.lanes = 1

    def _map(self, image):
        if self.first:
            self.first = False
            assert self.gate.wait(30)
        return SaliencyMap(np.full((2, 2), 0.25, np.float32))

    def predict_batch(self, batch, batch_size=16, errors="raise"):
        return [self._map(image) for image in batch]

    def predict_stream(self, images, on_result):
        if not self.streaming:
            raise AttributeError("predict_stream")
        for i, image in enumerate(images):
            on_result(i, self._map(image))


@pytest.mark.parametrize("streaming", [True, False], ids=["lanes", "batches"])
def test_images_answered_before_they_ran_leave_the_queue_at_once(streaming):
    """An image answered 504 (its deadline) or left by its client stayed in the queue until a lane reached it, and
    counted there: new requests were refused 503 queue_full, /readyz and the gauge showed a queue of dead work."""
    from foveal.serve.batcher import Batcher

    engine = Gated(streaming)

    async def run() -> list[int]:
        batcher = Batcher(engine, max_batch=1, max_wait_ms=0, max_queue=2)
        batcher.start()
        try:
            running = asyncio.ensure_future(batcher.submit(b"first"))  # holds the engine
            await asyncio.sleep(0.2)
            late = [asyncio.ensure_future(batcher.submit(b"late", time.monotonic() + 0.05)) for _ in range(2)]
            for task in late:
                with pytest.raises(ServiceError, match="deadline"):
                    await task
            depths = [batcher.depth, int(batcher.metrics.queue_depth.value)]
            gone = asyncio.ensure_future(batcher.submit(b"gone"))
            await asyncio.sleep(0.05)
            gone.cancel()  # its client left
            await asyncio.sleep(0.05)
            depths.append(batcher.depth)
            after = asyncio.ensure_future(batcher.submit_many([b"a", b"b"]))  # room for two: nothing live queued
            await asyncio.sleep(0.05)
            engine.gate.set()
            assert len(await after) == 2 and (await running).shape == (2, 2)
            return depths + [batcher.depth]
        finally:
            engine.gate.set()
            await batcher.stop()

    assert asyncio.run(run()) == [0, 0, 0, 0]


def test_a_lane_job_answered_before_it_ran_stops_counting_at_once():
    """/v1/detect's lane counted a job answered 504 until a worker reached it, refusing new requests meanwhile."""
    from foveal.serve.lane import Lane
    from foveal.serve.metrics import ServiceMetrics

    gate, ran = threading.Event(), []

    def slow() -> str:
        assert gate.wait(30)
        return "slow"

    async def run() -> list:
        lane = Lane("detect", workers=1, max_queue=2, metrics=ServiceMetrics())
        try:
            first = asyncio.ensure_future(lane.run(slow, time.monotonic() + 30))
            await asyncio.sleep(0.1)
            with pytest.raises(ServiceError, match="deadline"):
                await lane.run(lambda: ran.append("late"), time.monotonic() + 0.05)
            counted = lane._unfinished
            then = asyncio.ensure_future(lane.run(lambda: "then", time.monotonic() + 30))  # room: one job live
            await asyncio.sleep(0.05)
            gate.set()
            return [counted, await first, await then, lane._unfinished]
        finally:
            gate.set()
            lane.shutdown()

    assert asyncio.run(run()) == [1, "slow", "then", 0] and ran == []


class WrappedSource:
    """The real engine behind the batcher's streaming mode, its lanes reading the queue through ``wrap`` (a
    generator function of the images), so a test can break or watch the reads. A generator has no length hint:
    each image runs alone, the others waiting for it."""

    lanes = 2

    def __init__(self, engine: Engine, wrap) -> None:
        self.engine, self.wrap = engine, wrap

    def predict_batch(self, batch, batch_size=16, errors="raise"):
        return self.engine.predict_batch(batch, batch_size, errors=errors)

    def predict_stream(self, images, on_result):
        self.engine.predict_stream(self.wrap(images), on_result)


def test_batcher_stream_survives_a_failing_lane(engine):
    """On the CPU the batcher feeds the engine's lanes a stream. An unexpected exception there (not a FovealError:
    a bug, a broken backend) fails the image it hit, the images already running still get their maps, and the
    stream starts again for the rest and for later requests."""
    import hashlib

    from foveal.serve.batcher import Batcher

    payloads = images(6)
    culprit_sha = hashlib.sha256(payloads[3]).hexdigest()

    def breaking(images):  # the lanes fail on reading the culprit
        for image in images:
            if hashlib.sha256(image).hexdigest() == culprit_sha:
                raise RuntimeError("a lane broke")
            yield image

    async def run():
        batcher = Batcher(WrappedSource(engine, breaking), max_batch=8, max_wait_ms=0)
        assert batcher.streaming
        batcher.start()
        try:
            first = await asyncio.gather(*(batcher.submit(p) for p in payloads), return_exceptions=True)
            return first, await batcher.submit(payloads[0])
        finally:
            await batcher.stop()

    results, later = asyncio.run(run())
    assert isinstance(results[3], RuntimeError)
    for i, (payload, result) in enumerate(zip(payloads, results)):
        if i != 3:
            assert np.array_equal(result.prob, engine.predict(payload).prob), i
    assert np.array_equal(later.prob, engine.predict(payloads[0]).prob)


def test_batcher_stream_fails_an_image_that_hits_a_bug_at_once(engine):
    """An unexpected exception while a lane works on an image (a bug, not a bad image) is that image's answer at
    once, even while another lane waits on the queue for the next request; the other images run."""
    import time

    from foveal.serve.batcher import Batcher

    buggy = Engine()
    if buggy.lanes == 0:
        pytest.skip("one usable CPU: no lanes, the batcher batches")
    payloads = images(3)
    decode = buggy._decode

    def broken(image):
        if image is payloads[0]:
            time.sleep(0.3)  # the other lane is done with its image and waiting on the queue by then
            raise RuntimeError("a bug in decoding")
        return decode(image)

    buggy._decode = broken

    async def run():
        batcher = Batcher(buggy, max_batch=8, max_wait_ms=0)
        batcher.start()
        try:
            first = await asyncio.wait_for(asyncio.gather(*(batcher.submit(p) for p in payloads[:2]),
                                                          return_exceptions=True), 30)
            return first, await asyncio.wait_for(batcher.submit(payloads[2]), 30)
        finally:
            await batcher.stop()

    (failed, good), later = asyncio.run(run())
    assert isinstance(failed, RuntimeError) and str(failed) == "a bug in decoding"
    assert np.array_equal(good.prob, engine.predict(payloads[1]).prob)
    assert np.array_equal(later.prob, engine.predict(payloads[2]).prob)


def test_batcher_stream_drops_images_whose_deadline_passed_in_the_queue(engine):
    """Images queued behind a long one whose deadline passes are answered 504 at their deadline and never reach
    the engine's lanes; later images still run."""
    import time

    from foveal import ServiceError
    from foveal.serve.batcher import Batcher

    big = np.random.default_rng(3).integers(0, 255, (3000, 3000, 3), np.uint8)
    small = [np.full((64, 64, 3), v, np.uint8) for v in (30, 60, 90)]
    read: list[int] = []

    def recording(images):  # each image run alone: the small ones wait for the big one
        for image in images:
            read.append(image.shape[0])
            yield image

    async def run():
        batcher = Batcher(WrappedSource(engine, recording), max_batch=8, max_wait_ms=0)
        batcher.start()
        try:
            # First one image alone, so that both lanes have started: the one that ran it reads next and the other
            # waits (a lane still starting could otherwise read a small image before its deadline).
            await batcher.submit(np.full((48, 48, 3), 10, np.uint8))
            await asyncio.sleep(0.05)
            slow = asyncio.ensure_future(batcher.submit(big))
            await asyncio.sleep(0.01)
            soon = time.monotonic() + 0.005
            late = await asyncio.gather(*(batcher.submit(image, soon) for image in small[:2]), return_exceptions=True)
            await slow
            return late, await batcher.submit(small[2])
        finally:
            await batcher.stop()

    late, after = asyncio.run(run())
    assert all(isinstance(e, ServiceError) and (e.status, e.code) == (504, "deadline_exceeded") for e in late), late
    assert read == [48, 3000, 64], read  # the big image, then only the one submitted after it
    assert np.array_equal(after.prob, engine.predict(small[2]).prob)


def metric(text: str, series: str) -> float:
    """The value of one exposition line (``name{labels}``), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_serve_says_where_it_answers_once_ready_and_closes_idle_connections_when_told(tmp_path):
    """Without -v, `foveal serve --port 0` printed nothing, so nothing said which port it drew; and the 5 s after
    which a kept-alive connection closes could not be set above a load balancer's idle timeout."""
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "foveal", "serve", "--port", "0", "--model", "itti-koch",
                                 "--keep-alive-s", "0.5"], env={**os.environ, "PYTHONPATH": FOVEAL_PATH},
                                stdout=subprocess.DEVNULL, stderr=out)
    with reaped(proc):
        deadline = time.monotonic() + 60
        while not (found := re.search(r"foveal: serving on (http://127\.0\.0\.1:\d+) \(Ctrl-C to stop\)\n",
                                      log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        base = found.group(1)
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200  # said once it answers, not before
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            for _ in range(20):  # headers and body may come in two segments
                answer += sock.recv(65536)
                if answer.endswith(b"}"):
                    break
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(1.5)  # idle past --keep-alive-s: the service has closed its end
            assert sock.recv(65536) == b""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert log.read_text().count("foveal: serving on") == 1


def test_workers_share_one_metrics_endpoint(tmp_path):
    """With --workers 2 the port is shared, so /metrics must sum both processes, whichever one answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": FOVEAL_PATH, "FOVEAL_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "foveal", "serve", "--port", str(port), "--workers", "2"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    healthz = 'foveal_requests_total{route="/healthz",status="200"}'
    try:
        deadline = time.monotonic() + 120
        while True:  # both workers up and published: the shared gauge counts them
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if metric(httpx.get(f"{base}/metrics", timeout=2).text, "foveal_ready") == 2:
                    break
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while f"foveal: serving on {base} (Ctrl-C to stop)" not in log.read_text():  # the supervisor looks each 1 s
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        if sys.platform.startswith("linux"):  # the workers start with glibc's arenas capped (cap_malloc_arenas)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            assert len(children) >= 2
            for child in children:
                assert b"MALLOC_ARENA_MAX=2" in Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for _ in range(40):  # a new connection each: the kernel spreads them over the two workers
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        deadline = time.monotonic() + 20
        while True:  # other workers' counts arrive within their publishing period (1 s)
            counts = [metric(httpx.get(f"{base}/metrics", timeout=10).text, healthz) for _ in range(4)]
            if counts == [40] * 4:
                break
            assert time.monotonic() < deadline, f"/metrics answers {counts} /healthz requests, 40 were made"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas are a Linux matter")
def test_malloc_arenas_are_capped_unless_the_user_chose(monkeypatch):
    """Each thread may otherwise take an arena of its own, and memory freed in one stays there: the soak's RSS grew
    8.6 % in 10 minutes. A MALLOC_ARENA_MAX the user set (glibc has read it) is left to rule."""
    from foveal.serve.server import cap_malloc_arenas

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert cap_malloc_arenas()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert not cap_malloc_arenas()


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name; [] once the process is gone."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return []


def worker_pids(parent: int) -> list[int]:
    """The worker processes of ``foveal serve --workers`` (pid ``parent``): its spawned children."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if proc_stat(pid)[1:2] == [str(parent)] and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def assert_orphans_end(workers: list[int], log: Path, limit_s: float) -> None:
    """The ``workers`` of a killed ``foveal serve`` end within ``limit_s`` (SIGKILLed, and the test failed, if not)."""
    deadline = time.monotonic() + limit_s
    while any(proc_stat(pid)[:1] not in ([], ["Z"]) for pid in workers):
        if time.monotonic() > deadline:
            for pid in workers:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"orphaned workers still running: {log.read_text()}")
        time.sleep(0.1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers in /proc")
def test_ctrl_c_while_workers_start_is_no_traceback(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: a worker still importing raised KeyboardInterrupt, and
    multiprocessing printed its traceback, one per worker."""
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "foveal", "serve", "--port", str(free_port()), "--model",
                                 "itti-koch", "--workers", "2"], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": FOVEAL_PATH, "TMPDIR": str(tmp_path)},
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(worker_pids(proc.pid)) < 2:  # spawned: importing foveal, not yet serving
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()
        assert "Traceback" not in log.read_text() and "KeyboardInterrupt" not in log.read_text(), log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers in /proc")
def test_a_worker_that_dies_is_replaced(tmp_path):
    proc, base, log = started_cli(tmp_path, "--model", "itti-koch", "--workers", "2")
    with reaped(proc):
        deadline = time.monotonic() + 30
        while len(first := worker_pids(proc.pid)) < 2:
            assert time.monotonic() < deadline, "the workers were not found"
            time.sleep(0.1)
        os.kill(first[0], signal.SIGKILL)
        # ...and its replacement too, while it starts (the OOM killer, say): that stopped the whole service, healthy
        # worker included, as 'could not start; its error is in the log above' (there was none)
        deadline = time.monotonic() + 30
        while not (replacement := [pid for pid in worker_pids(proc.pid) if pid not in first]):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        os.kill(replacement[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (len(now := worker_pids(proc.pid)) == 2 and first[0] not in now and replacement[0] not in now
                   and metric(httpx.get(f"{base}/metrics", timeout=5).text, "foveal_ready") == 2):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers in /proc")
def test_a_worker_told_to_stop_before_uvicorn_listens_does_not_serve(tmp_path):
    """A SIGTERM between the worker's start and uvicorn's own signal handlers went to a no-op handler: killed, the
    parent left its workers serving as orphans. The window is widened here by holding uvicorn's start 3 s."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import os, pathlib, sys, time\n"
        "if any('multiprocessing' in a for a in sys.argv):  # worker processes only\n"
        "    import uvicorn.server\n"
        "    run = uvicorn.server.Server.run\n"
        "    def held(self, *a, **k):\n"
        f"        pathlib.Path({str(tmp_path)!r}, f'held-{{os.getpid()}}').touch()\n"
        "        time.sleep(3)\n"
        "        return run(self, *a, **k)\n"
        "    uvicorn.server.Server.run = held\n")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "foveal", "serve", "--port", str(port), "--model", "itti-koch",
                                 "--workers", "2"], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), FOVEAL_PATH]),
                                     "TMPDIR": str(tmp_path)})  # SIGKILLed: its metrics folder stays
    with reaped(proc):
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("held-*"))) < 2:  # both workers inside the hold: no uvicorn handler yet
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        found = [int(p.name.split("-")[1]) for p in tmp_path.glob("held-*")]
        proc.kill()
        proc.wait(timeout=10)
        assert_orphans_end(found, log, 20)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)


def test_workers_that_keep_failing_to_start_stop_the_service_in_one_line(tmp_path, keyfile):
    """Its key file deleted after the start, every replacement worker fails to build the app: each printed a full
    traceback (multiprocessing's), and the first failure stopped the service."""
    keys = tmp_path / "keys.txt"
    keys.write_bytes(keyfile.read_bytes())
    proc, base, log = started_cli(tmp_path, "--model", "itti-koch", "--workers", "2", "--api-keys", str(keys))
    with reaped(proc):
        keys.unlink()
        os.kill(worker_pids(proc.pid)[0], signal.SIGKILL)
        assert proc.wait(timeout=120) == 1, log.read_text()
        text = log.read_text()
        assert "Traceback" not in text and "cannot read it" in text, text
        # The crash, then four failed starts; or, when the killed worker had not yet reported ready (the service was
        # ready through the other one), its death is the first of the five failed starts.
        assert text.count("starting another") in (4, 5), text
        assert text.count("cannot read it") == 5 - (text.count("starting another") == 4), text
        last = text.strip().splitlines()[-1]
        assert last.startswith("foveal: error: a worker process could not start (5 times in a row) (exit status 3); "
                               "its error is in the log above"), last


def test_workers_listen_on_every_address_the_host_names(monkeypatch):
    """Where /etc/hosts names localhost ::1 and 127.0.0.1 (Debian's default), one server listened on both but
    --workers only on the first (::1), so IPv4 clients of `--host localhost --workers 2` were refused."""
    from foveal.serve.server import bound

    resolve = socket.getaddrinfo

    def both(host, port, *args, **kwargs):
        if host != "localhost":
            return resolve(host, port, *args, **kwargs)
        return [*resolve("::1", port, *args, **kwargs), *resolve("127.0.0.1", port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", both)
    socks = bound("localhost", 0)
    try:
        addresses = sorted((s.getsockname()[0], s.getsockname()[1]) for s in socks)
        assert [host for host, _ in addresses] == ["127.0.0.1", "::1"], addresses
        assert addresses[0][1] == addresses[1][1], "port 0 drew one port for both"
    finally:
        for sock in socks:
            sock.close()


def test_workers_on_a_port_taken_after_the_check_is_a_foveal_error():
    """uvicorn's bind exits the process (SystemExit) when the port is taken: between foveal's check and the bind."""
    from foveal.serve.workers import run_workers

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(foveal.InputError, match=rf"cannot listen on 127.0.0.1:{port}: address already in use"):
            run_workers(ServeConfig(model="itti-koch"), {"host": "127.0.0.1", "port": port, "log_level": "critical",
                                                         "timeout_graceful_shutdown": 1.0}, 2)


def test_workers_that_cannot_start_stop_the_service_with_a_foveal_error(tmp_path):
    """The CLI loads the model before it starts any worker; a library caller of serve() may not have."""
    code = ("import sys\nfrom foveal.errors import FovealError\nfrom foveal.serve import ServeConfig, serve\n"
            f"try:\n    serve(ServeConfig(model='no-such-model'), port={free_port()}, workers=2)\n"
            "except FovealError as exc:\n    sys.exit(f'refused: {exc}')\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": FOVEAL_PATH},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "refused: a worker process could not start" in done.stderr, done.stderr
    assert "unknown model 'no-such-model'" in done.stderr  # the worker's own error, in the log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers in /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    """SIGKILL to `foveal serve --workers 2` left both workers serving, orphaned, on the port a restarted service
    then found taken; they drain and exit."""
    proc, base, log = started_cli(tmp_path, "--model", "itti-koch", "--workers", "2")
    deadline = time.monotonic() + 30
    while len(found := worker_pids(proc.pid)) < 2:
        assert time.monotonic() < deadline, "the workers were not found"
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=10)
    assert_orphans_end(found, log, 30)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/readyz", timeout=2)


def test_metrics_exchange_sums_workers_and_drops_an_exited_workers_gauges(tmp_path):
    from foveal.serve.metrics import MetricsExchange, ServiceMetrics, _start_time

    mine, other = ServiceMetrics(), ServiceMetrics()
    for m, n in ((mine, 3), (other, 5)):
        for _ in range(n):
            m.requests.inc(route="/v1/predict", status="200")
            m.latency.observe(0.02, route="/v1/predict")
        m.in_flight.set(n)
    exchange = MetricsExchange(tmp_path, mine)
    MetricsExchange(tmp_path, other).publish()
    alive = tmp_path / f"1-{_start_time(1)}.json"  # pid 1 (init) is alive
    (tmp_path / f"{os.getpid()}-{_start_time(os.getpid())}.json").rename(alive)
    text = exchange.render()
    assert metric(text, 'foveal_requests_total{route="/v1/predict",status="200"}') == 8
    assert metric(text, 'foveal_request_duration_seconds_count{route="/v1/predict"}') == 8
    assert metric(text, 'foveal_request_duration_seconds_bucket{route="/v1/predict",le="0.025"}') == 8
    assert metric(text, "foveal_requests_in_flight") == 8
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f"{int(dead.stdout)}-1.json"  # a worker that has exited
    alive.rename(gone)
    text = exchange.render()
    assert metric(text, 'foveal_requests_total{route="/v1/predict",status="200"}') == 8
    assert metric(text, "foveal_requests_in_flight") == 3
    gone.rename(tmp_path / "1-0.json")  # its pid now another process's (init's, started at another time)
    assert metric(exchange.render(), "foveal_requests_in_flight") == 3


def test_a_worker_killed_after_a_scrape_takes_back_nothing_the_scrape_reported(tmp_path):
    """A worker answered /metrics from memory and published every second: killed just after a scrape, its file held
    less than that scrape reported, and the next scrape's total went down (32 to 2 with --workers 2), which
    Prometheus reads as a counter reset."""
    from foveal.serve.metrics import MetricsExchange, ServiceMetrics, _start_time

    counted = ServiceMetrics()
    killed = MetricsExchange(tmp_path, counted)
    killed.publish()
    for _ in range(3):
        counted.requests.inc(route="/healthz", status="200")
    series = 'foveal_requests_total{route="/healthz",status="200"}'
    assert metric(killed.render(), series) == 3  # the scrape it answered, just before it was killed
    survivor = MetricsExchange(tmp_path, ServiceMetrics())
    survivor._own = tmp_path / f"1-{_start_time(1)}.json"  # another worker's file (pid 1's, so not this one's)
    assert metric(survivor.render(), series) == 3
    shutil.rmtree(tmp_path)  # a scrape is answered even where this worker cannot publish
    assert metric(killed.render(), series) == 3


def test_warm_up_keeps_to_a_small_pixel_limit(engine):
    """The warm-up image is sized within the service's own max_pixels (it used to be 640x480 always, and any limit
    under 307,200 pixels failed startup)."""
    app = create_app(ServeConfig(max_pixels=200_000), engine=engine)
    with running(app) as base:
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.05)


def test_norms_of_another_graph_are_refused_with_the_services_remedy(tmp_path, capsys):
    """`foveal serve` has no way to accept a mismatch, so its refusal names only the remedy it has."""
    from foveal.cli import main

    old = tmp_path / "old.json"  # a version 1 norms file: it records no graph, so it matches none
    old.write_text(json.dumps({"foveal_norms": 1, "quantity": "share",
                               "model": {"name": "foveal-lite0", "sha256": "ab" * 32},
                               "formats": {"feed": {"creatives": 2, "kinds": {"cta": [0.3, 0.1]}}}}))
    assert main(["serve", "--norms", f"old={old}", "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("foveal: error: norms 'old': ") and "\n" not in err
    assert err.endswith("rebuild them with the model and precision this service runs")
    assert "allow_model_mismatch" not in err


def test_an_address_it_cannot_listen_on_is_one_line_before_the_model_loads(capsys):
    """uvicorn said a port in use only as its own log line (exit status 3), and took port 70000 while listening on
    another, announcing 70000."""
    from foveal.cli import main
    from foveal.errors import InputError
    from foveal.serve import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, message in [(["--port", str(port)], f"cannot listen on 127.0.0.1:{port}: address already in use; "
                                                      "choose another port, or stop the process that listens on it"),
                              (["--host", "192.0.2.1"], "cannot listen on 192.0.2.1:8080: cannot assign requested "
                                                        "address; give an address of this machine")]:
            assert main(["serve", *args]) == 1
            err = capsys.readouterr().err
            assert err.startswith("foveal: error: " + message) and err.count("\n") == 1, err
        with pytest.raises(InputError, match="address already in use"):
            serve(ServeConfig(), port=port)
    for port in ("70000", "-1"):  # wrong on its face: a usage error
        with pytest.raises(SystemExit) as stop:
            main(["serve", "--port", port])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"error: argument --port: must be from 0 to 65535, got {port} (" in err, err


def test_workers_without_a_writable_temporary_folder_is_one_line(tmp_path, monkeypatch, capsys):
    """A read-only root file system (a hardened container's, /tmp included) failed --workers as an internal error."""
    import tempfile

    from foveal.cli import main

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(blocked))
    assert main(["serve", "--port", "0", "--model", "itti-koch", "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert err == (f"foveal: error: cannot make the workers' shared /metrics folder in {blocked}: not a directory; "
                   "set TMPDIR to a writable folder\n"), err


@pytest.mark.parametrize("field, value, message", [
    ("max_wait_ms", float("nan"), "max_wait_ms must be a finite number >= 0, got nan"),
    ("max_wait_ms", -1, "max_wait_ms must be a finite number >= 0"),
    ("request_timeout_s", float("inf"), "request_timeout_s must be a finite number > 0, got inf"),
    ("max_batch", 0, "max_batch must be a whole number >= 1, got 0"),
    ("max_queue", 2.5, "max_queue must be a whole number >= 1, got 2.5"),
    ("max_body_bytes", True, "max_body_bytes must be a whole number >= 1, got True")])
def test_service_settings_a_batcher_cannot_run_on_are_refused(field, value, message):
    """A NaN wait passed every "< 0" check and left the batcher waiting on a NaN timeout."""
    from foveal.errors import InputError

    with pytest.raises(InputError, match=re.escape(message)):
        ServeConfig(**{field: value})


def test_nan_service_settings_are_one_line_in_the_cli_and_the_library(capsys):
    """--max-body-mb nan was an internal error; --max-wait-ms nan started a service."""
    from foveal.cli import main
    from foveal.errors import InputError

    with pytest.raises(InputError, match="header_timeout_s must be a finite number > 0, got nan"):
        foveal.serve.serve(ServeConfig(), port=0, header_timeout_s=float("nan"))
    for flag in ("--max-wait-ms", "--max-body-mb", "--timeout-ms", "--header-timeout-s", "--max-pixels"):
        with pytest.raises(SystemExit) as stop:
            main(["serve", flag, "nan"])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"foveal serve: error: argument {flag}: must be a finite number"), err


@pytest.mark.parametrize("args, message", [
    (["--keep-alive-s", "0"], "--keep-alive-s: must be a finite number > 0, got 0"),
    (["--timeout-ms", "-5"], "--timeout-ms: must be a finite number > 0, got -5"),
    (["--max-body-mb", "1e-9"], "--max-body-mb: must be a finite number >= 9.53674e-07 (one byte), got 1e-9")])
def test_a_bad_number_in_the_cli_is_named_with_its_flag(capsys, args, message):
    """One message for every numeric flag led with --max-wait-ms whichever was wrong, and a body limit under a
    byte passed it and was refused as the library's max_body_bytes."""
    from foveal.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["serve", *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err == f"foveal serve: error: argument {message} (see foveal serve --help)\n", err


@pytest.mark.parametrize("missing", ["fastapi", "python_multipart"])
def test_without_the_serve_extra_the_import_says_how_to_get_it(missing):
    """from foveal.serve import create_app (the documented entry point) raised ModuleNotFoundError: fastapi; and a
    server without python-multipart started, then answered every upload 400 as a malformed body."""
    code = (f"import sys; sys.modules[{missing!r}] = None\nfrom foveal.errors import FovealError\n"
            "try:\n    from foveal.serve import create_app\nexcept FovealError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": FOVEAL_PATH},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == (
        f'foveal.serve needs the serve extra ({missing} is missing): pip install "foveal[serve]"\n'), done.stderr


class Canned(BaseHTTPRequestHandler):
    """A handler for :func:`other_server` that answers with :meth:`answer` and logs nothing."""

    def answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_client_pointed_at_another_server_says_so():
    """A Client at the wrong port (another app answering 200 with its own page) raises a ServiceError saying the
    answer is no foveal answer, not a NumPy or JSON decoding error."""
    class NotFoveal(Canned):
        def do_GET(self):
            self.answer(200, b"<html>some other app</html>", Content_Type="text/html")

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.do_GET()

    with other_server(NotFoveal) as base, Client(base) as client:
        for call in (lambda: client.predict(EXAMPLE), lambda: client.score(EXAMPLE, ELEMENTS), client.models,
                     client.norms, lambda: client.detect(EXAMPLE)):
            with pytest.raises(ServiceError, match="is no foveal .*; is http://127.0.0.1:.* a foveal service") \
                    as info:
                call()
            assert info.value.code == "bad_answer"


def test_client_asking_another_server_for_a_figure_says_it_is_no_foveal_answer():
    """A 200 answer that is not the content type asked for (another app's page where a PNG was asked for) is a
    ServiceError bad_answer, not bytes handed on as if they were the figure."""
    class NotFoveal(Canned):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.answer(200, b'{"not": "a figure"}', Content_Type="application/json")

    with other_server(NotFoveal) as base, Client(base) as client:
        for call in (lambda: client.compare(EXAMPLE, EXAMPLE_B, ELEMENTS, output="png"),
                     lambda: client.score(EXAMPLE, ELEMENTS, output="html")):
            with pytest.raises(ServiceError, match=r"the answer is no foveal (PNG figure|page) \(TypeError\); is "
                                                   r"http://127.0.0.1:\d+ a foveal service\?$") as info:
                call()
            assert info.value.code == "bad_answer"


def test_client_errors_from_other_servers_urls_and_element_paths():
    """A refusal without a foveal error in it was code 'http_error', which the docs do not list; a bad answer under
    a path prefix named the prefix twice; a URL with a query sent every call to the wrong place; an element file
    without .json was sent as JSON text and refused as malformed JSON."""
    class Plain(Canned):
        def do_GET(self):
            gateway = self.path.endswith("/v1/norms")
            self.answer(502 if gateway else 200, b"<html>bad gateway</html>" if gateway else b"<html>page</html>",
                        Content_Type="text/html")

    with other_server(Plain) as base, Client(f"{base}/prefix") as client:
        with pytest.raises(ServiceError) as info:
            client.norms()
        assert (info.value.status, info.value.code) == (502, "bad_answer")
        assert str(info.value).startswith(f"{base}/prefix/v1/norms: HTTP 502 without a foveal error in it")
        with pytest.raises(ServiceError, match=rf"^{re.escape(base)}/prefix/v1/models: the answer is no foveal"):
            client.models()
    for url in ("http://127.0.0.1:8080/?token=abc", "http://127.0.0.1:8080/#top", " http://127.0.0.1:8080",
                "http://127.0.0.1:8080?"):
        with pytest.raises(foveal.InputError, match="Client: "):
            Client(url)
    with pytest.raises(foveal.InputError) as info:
        Client("http://me:s3cret@127.0.0.1:8080/?x=1")
    assert "s3cret" not in str(info.value) and "me:***@127.0.0.1:8080" in str(info.value)

    class NotGzip(Canned):
        def do_GET(self):
            self.answer(200, b"this is not gzip", Content_Type="application/json", Content_Encoding="gzip")

    with other_server(NotGzip) as base, Client(base) as client:  # httpx.DecodingError escaped as it was
        with pytest.raises(ServiceError) as info:
            client.models()
        assert info.value.code == "bad_answer" and "cannot be decoded" in str(info.value)
    with pytest.raises(ElementSpecError, match=r"neither JSON text nor a \.json element file"):
        Client("http://127.0.0.1:9").score(EXAMPLE, "elements/creative.el")


def _trickle(wfile, data: bytes) -> None:
    """Send ``data`` a byte every 0.2 s (bounded by its length), until the client leaves."""
    for byte in data:
        try:
            wfile.write(bytes([byte]))
            wfile.flush()
        except OSError:
            return
        time.sleep(0.2)


def test_client_timeout_bounds_the_whole_request():
    """httpx's timeout bounds each read: a server sending one byte a second held the caller for as long as it
    sent."""
    class Trickle(Canned):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "30")
            self.end_headers()
            _trickle(self.wfile, b" " * 30)  # 6 s if the client waited for all

    with other_server(Trickle) as base, Client(base, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(ServiceError) as info:
            client.models()
        assert info.value.code == "timeout" and time.monotonic() - started < 2.5


def test_client_timeout_bounds_a_trickled_status_line_and_headers_and_ready():
    """The deadline was checked between body reads only: a server trickling its status line and headers a byte at a
    time held models() for 33 s at timeout=2, and ready(), which did not use the deadline at all, for as long."""
    class TrickledHead(Canned):
        def handle_one_request(self):
            self.raw_requestline = self.rfile.readline(65537)
            if not self.parse_request():
                return
            _trickle(self.wfile, b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 30)  # 8 s in all

    with other_server(TrickledHead) as base, Client(base, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(ServiceError) as info:
            client.models()
        assert info.value.code == "timeout" and time.monotonic() - started < 2.5
        started = time.monotonic()
        assert client.ready() is False and time.monotonic() - started < 2.5


def test_client_reads_no_answer_larger_than_any_foveal_answer(monkeypatch):
    """The body was gathered without a limit: a server streaming zeros grew the caller to 3 GB in 4 s."""
    from foveal import client as client_module

    class Endless(Canned):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for _ in range(64):  # bounded: 4 MiB, past the limit set below
                try:
                    self.wfile.write(b"\0" * 65536)
                except OSError:
                    return

    monkeypatch.setattr(client_module, "MAX_ANSWER_BYTES", 1 << 20)
    with other_server(Endless) as base, Client(base, timeout=30) as client:
        with pytest.raises(ServiceError, match="the answer runs past 1 MiB; is .* a foveal service") as info:
            client.models()
        assert info.value.code == "bad_answer"


def test_client_names_the_file_it_cannot_send(tmp_path):
    """The service knows an upload only as "<bytes>": an empty or non-image file given by path was refused as
    "<bytes>: ..." (or "the request body is empty"), naming no file, where Engine names it."""
    (tmp_path / "t.png").write_text("text")
    (tmp_path / "z.png").write_bytes(b"")
    with Client("http://127.0.0.1:1") as client:  # refused before any request: port 1 answers nothing
        with pytest.raises(foveal.ImageError, match=f"^{tmp_path / 't.png'}: not a recognised image format"):
            client.predict(tmp_path / "t.png")
        with pytest.raises(foveal.ImageError, match=f"^{tmp_path / 'z.png'}: file is empty"):
            client.detect(tmp_path / "z.png")


def test_client_reads_retry_after_as_seconds_or_an_http_date():
    """RFC 9110 allows a Retry-After of delay-seconds or an HTTP-date (what proxies and load balancers send); the
    Client read only whole seconds, took a superscript digit for one (and raised ValueError), and ignored the rest."""
    import email.utils
    import http.server
    from urllib.parse import unquote

    class Overloaded(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"error": {"code": "queue_full", "message": "busy; retry after a moment"}}'
            self.send_response(503)  # with a Date header, which an HTTP-date is measured from
            self.send_header("Retry-After", unquote(self.path.rsplit("/", 1)[1]))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    earlier = email.utils.formatdate(time.time() - 30, usegmt=True)
    with other_server(Overloaded) as base, Client(base) as client:
        def retry_after(value: str) -> float | None:
            with pytest.raises(ServiceError) as info:
                client._get(f"/v1/models/{value}")
            assert (info.value.status, info.value.code) == (503, "queue_full")
            return info.value.retry_after

        assert retry_after("7") == 7 and retry_after("1.5") == 1.5 and retry_after("0") == 0
        assert 27 <= retry_after(later) <= 31 and retry_after(earlier) == 0
        assert retry_after("99999999") == foveal.client.MAX_RETRY_AFTER_S == retry_after("9" * 400)
        for unreadable in ("soon", "%C2%B2", "-5", "nan", "inf", "1e3"):
            assert retry_after(unreadable) is None, unreadable


@pytest.mark.parametrize("kwargs, message", [
    ({"max_wait_ms": float("nan")}, "max_wait_ms must be a finite number >= 0, got nan"),
    ({"max_wait_ms": float("inf")}, "max_wait_ms must be a finite number >= 0, got inf"),
    ({"max_batch": 0}, "max_batch must be a whole number >= 1, got 0"),
    ({"max_queue": 1.5}, "max_queue must be a whole number >= 1, got 1.5")])
def test_a_batcher_built_directly_refuses_what_it_cannot_run_on(kwargs, message):
    """Its own check was "< 0": a NaN or infinite wait, which would hold a lone image for ever, passed."""
    from foveal.errors import InputError
    from foveal.serve.batcher import Batcher

    with pytest.raises(InputError, match=re.escape(message)):
        Batcher(object(), **kwargs)


def test_a_queue_too_small_for_a_compare_is_refused_at_startup(capsys):
    """With a queue of one image every /v1/compare was answered 503 "retry after a moment", which never works."""
    from foveal.cli import main
    from foveal.errors import InputError

    with pytest.raises(InputError, match="max_queue must be at least 2, got 1: /v1/compare queues its two images"):
        ServeConfig(max_queue=1)
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--port", "0", "--max-queue", "1"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("foveal serve: error: argument --max-queue: must be at least 2, got "
                                                   "1; a compare queues its two images together"), err
    from foveal.serve.app import MIN_QUEUE

    assert MIN_QUEUE == 2, "the messages above quote the app's minimum"


def test_the_container_build_copies_the_licence():
    """The build stage copied pyproject, CMake, README and the sources only, so the wheel it built (and the image)
    carried no LICENSE: scikit-build-core ships the LICENSE it finds beside pyproject.toml."""
    build_stage = (ROOT / "Dockerfile").read_text(encoding="utf-8").split("\nFROM ")[1]
    copied = {path for line in build_stage.splitlines() if line.startswith("COPY ") for path in line.split()[1:-1]}
    assert {"pyproject.toml", "CMakeLists.txt", "README.md", "LICENSE", "csrc", "python"} <= copied, copied


def test_a_client_api_key_that_is_not_text_is_refused_not_dropped():
    """Client(url, api_key=0) or api_key=[] sent its requests without a key, without a word."""
    for key in (0, [], b"key-0123456789abcdef"):
        with pytest.raises(foveal.InputError, match="api_key must be printable ASCII text"):
            Client("http://127.0.0.1:1", api_key=key)
    assert "Authorization" not in Client("http://127.0.0.1:1", api_key="")._http.headers


def test_client_score_names_and_formats_must_be_text():
    """Client.score(format={"a": 1}) raised httpx's bare TypeError; format=5 went as "5" where score_creative
    refuses it."""
    with Client("http://127.0.0.1:1") as client:
        for field, value in (("format", {"a": 1}), ("format", 5), ("norms", ["display"])):
            with pytest.raises(foveal.InputError, match=f"^Client.score: {field} must be text"):
                client.score(EXAMPLE, ELEMENTS, **{field: value})


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_that_breaks_the_contract_stops_the_start_in_one_line(tmp_path, workers):
    """The engine was built before the server started but first run inside its startup, where a NaN map came out as
    uvicorn's traceback ("Application startup failed", exit 3; one per worker)."""
    pytest.importorskip("onnx")
    from onnx import helper

    from tests.test_model_contract import _const, _pooled

    model = _pooled(tmp_path / "nan.onnx", 8, [helper.make_node("Mul", ["mean", "c"], ["log_density"])],
                    initializers=[_const("c", float("nan"))])
    run = subprocess.run([sys.executable, "-m", "foveal", "serve", "--port", str(free_port()), "--model", model,
                          "--workers", workers],
                         env={**os.environ, "PYTHONPATH": FOVEAL_PATH}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert run.stderr.count("\n") == 1 and "returned NaN or infinite log-density" in run.stderr, run.stderr


def _counter(metrics: str, name: str, labels: str) -> float:
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_requests_whose_client_left_after_the_body_are_dropped_not_computed(engine):
    """Only /v1/whatif watched for its client leaving: 30 uploads whose clients hung up once the body was sent all
    ran the network and were counted 200, answered to nobody, holding places in the queue."""
    app = create_app(ServeConfig(warmup=False, max_batch=1, max_queue=64), engine=engine)
    body = EXAMPLE.read_bytes()
    n = 12
    with running(app) as base:
        port = int(base.rsplit(":", 1)[1])
        socks = []
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n"
                         b"\r\n%s" % (len(body), body))
            socks.append(sock)
        for sock in socks:
            sock.close()
        deadline = time.monotonic() + 30
        while _counter(metrics := httpx.get(f"{base}/metrics").text, "foveal_requests_total",
                       'route="/v1/predict",status="499"') < n:
            assert time.monotonic() < deadline and 'status="200"' not in metrics, metrics
            time.sleep(0.05)
        assert _counter(metrics, "foveal_images_total", 'outcome="ok"') < n  # the queued ones never ran
        assert httpx.post(f"{base}/v1/predict", content=body, headers={"Content-Type": "image/png"},
                          params={"map": "false"}, timeout=60).status_code == 200


@pytest.mark.parametrize("requests, answers", [(1, [b"200", b"400"]), (2, [b"200", b"200", b"400"])])
def test_bytes_that_are_not_http_after_whole_requests_are_answered_after_them(url, requests, answers):
    """The 400 for the malformed bytes was sent at once and the connection closed, so the whole requests sent
    before them in the same write lost their answers (a predict was computed and never answered)."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * requests + b"\x01 garbage\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 20
        while (chunk := sock.recv(65536)) and time.monotonic() < deadline:
            data += chunk
    assert re.findall(rb"HTTP/1.1 (\d+)", data) == answers, data[:400]
    assert data.endswith(b'"code": "bad_request", "message": "Invalid HTTP request received: this is not an '
                         b'HTTP/1.1 request foveal can read"}}')


def test_client_settings_take_numpy_numbers_and_refuse_numbers_past_floats_range():
    """np.float32(5) as a timeout was refused (every Engine argument takes NumPy numbers); 10**400 raised an
    OverflowError."""
    with Client("http://127.0.0.1:1", timeout=np.float32(5), deadline_ms=np.int64(250)) as client:
        assert client._timeout == 5.0 and type(client._timeout) is float
    for settings in ({"timeout": 10**400}, {"deadline_ms": 10**400}, {"timeout": np.True_}):
        with pytest.raises(foveal.InputError, match="must be a positive number"):
            Client("http://127.0.0.1:1", **settings)


def _exchange(port: int, data: bytes, wait_s: float = 20) -> bytes:
    """Everything the server sends back for ``data`` on a new connection, which it must close within ``wait_s``."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(data)
        return _answer_on(sock, wait_s)


def test_a_request_refused_by_the_connection_is_answered_after_the_whole_ones_before_it(url, caplog):
    """Too-large headers, an upgrade with a body, or a malformed chunk in a request pipelined behind a whole one
    was answered at once: the whole one lost its answer, and uvicorn logged two tracebacks writing it."""
    port = int(url.rsplit(":", 1)[1])
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    large = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000)
                                                             for i in range(70)) + b"\r\n"
    upgrade = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
               b"Content-Type: image/png\r\nContent-Length: 4\r\n\r\nabcd")
    bad_chunk = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n"
                 b"\r\nzz\r\nabcd\r\n0\r\n\r\n")
    for refused, status in ((large, b"431"), (upgrade, b"400"), (bad_chunk, b"400")):
        answers = _exchange(port, ok + refused)
        assert re.findall(rb"HTTP/1.1 (\d+)", answers) == [b"200", status], answers[:600]
    assert "Cannot call write() after write_eof()" not in caplog.text


def test_trailer_fields_are_limited_in_the_read_that_ends_the_body(url):
    # Those in the same read as the last chunk were not counted: 80 KB of them passed the 64 KiB limit.
    port = int(url.rsplit(":", 1)[1])
    answers = _exchange(port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n"
                        + b"".join(b"X-T%d: %s\r\n" % (i, b"b" * 1000) for i in range(80)) + b"\r\n")
    assert re.findall(rb"HTTP/1.1 (\d+)", answers) == [b"431"], answers[:300]


def test_a_request_begun_behind_an_answered_one_gets_its_header_deadline(engine):
    """uvicorn's idle timer (keep_alive_s) closed the connection without a word while a pipelined request's headers
    were still arriving; the header deadline answers 408."""
    app = create_app(ServeConfig(warmup=False), engine=engine)
    with running(app, header_timeout_s=2.0, timeout_keep_alive=0.5) as base:
        started = time.monotonic()
        answers = _exchange(int(base.rsplit(":", 1)[1]), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                                        b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    assert re.findall(rb"HTTP/1.1 (\d+)", answers) == [b"200", b"408"] and time.monotonic() - started > 1.5


def test_requests_the_parser_refuses_are_not_logged(url, caplog):
    # Anyone could fill the log with "Invalid HTTP request received.", one line each, even under -q.
    port = int(url.rsplit(":", 1)[1])
    with caplog.at_level("WARNING"):
        for _ in range(3):
            assert _exchange(port, b"BLAH\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert "Invalid HTTP request" not in caplog.text


def test_host_is_one_header_and_preflights_and_redirects_respect_it(engine):
    """Two Host headers were taken (the guard checked the last, the framework used the first); a CORS preflight
    skipped --allowed-host; a folder's redirect was built from Host (http://evil.example/...)."""
    app = create_app(ServeConfig(allowed_hosts=("localhost",), cors_origins=("https://ads.example.com",),
                                 warmup=False), engine=engine)
    preflight = {"Origin": "https://ads.example.com", "Access-Control-Request-Method": "POST"}
    with running(app) as base:
        port = int(base.rsplit(":", 1)[1])
        twice = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: evil.com\r\nHost: localhost\r\n\r\n", 5)
        assert twice.startswith(b"HTTP/1.1 400") and b"the header host is sent more than once" in twice
        none = _exchange(port, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 5)  # RFC 9112 3.2
        assert none.startswith(b"HTTP/1.1 400") and b"needs a Host header" in none
        refused = httpx.options(f"{base}/v1/predict", headers={**preflight, "Host": "evil.com"}, timeout=30)
        assert error_of(refused) == (400, "unknown_host")
        allowed = httpx.options(f"{base}/v1/predict", headers={**preflight, "Host": "localhost"}, timeout=30)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == preflight["Origin"]
    with running(create_app(ServeConfig(warmup=False), engine=engine)) as base:
        moved = _exchange(int(base.rsplit(":", 1)[1]), b"GET /. HTTP/1.1\r\nHost: evil.example\r\n"
                                                       b"Connection: close\r\n\r\n", 5)
        location = re.search(rb"(?im)^location: (.*)\r$", moved)
        assert moved.startswith(b"HTTP/1.1 307") and location and location[1].startswith(b"/"), moved[:300]
        page = httpx.get(f"{base}/style.css", headers={"Range": "bytes=0-10"}, timeout=30)
        assert page.status_code == 200 and "accept-ranges" not in page.headers
