"""Bad-input campaign, the rest of the library a notebook user calls: the kernels, metrics, element and edit helpers,
what-if, batch, calibration, the store, detection's element file, the client and bench. Each argument in turn is
replaced by a value of the wrong type; the answer is a result or a one-line FovealError, never a bare TypeError,
AttributeError or KeyError from deep inside."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from foveal import Client, Engine, FovealError
from foveal import cpu, metrics
from foveal.backends import backend_options
from foveal.batch.inputs import list_images, read_inputs
from foveal.batch.run import run_batch
from foveal.batch.scorer import BatchOptions
from foveal.bench import run_bench
from foveal.calibration.analysis import Settings
from foveal.datasets import load_dataset, load_folder
from foveal.errors import checked_flag
from foveal.scoring.edits import Move, Scale, apply_edits
from foveal.scoring.elements import format_of, parse_elements, parse_elements_json
from foveal.scoring.scores import score_creative
from foveal.scoring.whatif import whatif_edits, whatif_search

calibrate = importlib.import_module("foveal.calibration.calibrate").calibrate


class _Opaque:
    pass


WRONG = [None, 1.5, -1, "zz", [], {}, _Opaque(), b"x", float("nan"), True, (1, 2, 3)]


def _contained(call):
    try:
        call()
    except FovealError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("args")
    rng = np.random.default_rng(0)
    image = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(image).save(tmp / "a.png")
    engine = Engine("itti-koch")
    smap = engine.predict(image)
    elements = list(parse_elements([{"name": "cta", "kind": "cta", "box": [10, 10, 20, 10]}], (60, 80)).elements)
    (tmp / "outcomes.csv").write_text("creative_id,date,impressions,clicks\nc1,2024-01-01,100,3\n")
    return {"tmp": tmp, "image": image, "engine": engine, "smap": smap, "elements": elements,
            "scores": score_creative(smap, elements)}


@pytest.fixture(scope="module")
def cases(world):
    pytest.importorskip("sqlalchemy")
    return _cases(world)


def _cases(w):
    from foveal.store.store import Store

    tmp, image, engine, smap, els = w["tmp"], w["image"], w["engine"], w["smap"], w["elements"]
    dens = smap.prob.astype(np.float64)
    store = Store(f"sqlite:///{tmp}/store.db")
    return {
        "cpu.overlay": (cpu.overlay, dict(image=image, prob=smap.prob, alpha=0.6, cmap="turbo")),
        "cpu.preprocess": (cpu.preprocess, dict(image=image, resized_hw=(30, 40), padded_hw=(32, 48),
                                                mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), offset_hw=(0, 0))),
        "cpu.summed_area_table": (cpu.summed_area_table, dict(prob=smap.prob)),
        "cpu.box_sums": (cpu.box_sums, dict(sat=cpu.summed_area_table(smap.prob),
                                            boxes=np.array([[0, 0, 5, 5]], np.int64))),
        "metrics.gaussian_blur": (metrics.gaussian_blur, dict(density=dens, sigma=3.0, truncate=5.0)),
        "format_of": (format_of, dict(image_hw=(60, 80))),
        "parse_elements_json": (parse_elements_json, dict(text='[{"name": "a", "box": [1, 1, 4, 4]}]',
                                                          image_hw=(60, 80), source="x")),
        "apply_edits": (apply_edits, dict(image=image, elements=els, edits=[Move("cta", 5, 5)])),
        "Move": (lambda **k: apply_edits(image, els, [Move(**k)]), dict(name="cta", dx=5, dy=5)),
        "Scale": (lambda **k: apply_edits(image, els, [Scale(**k)]), dict(name="cta", factor=1.2)),
        "whatif_edits": (whatif_edits, dict(engine=engine, image=image, elements=els, edits=[Move("cta", 5, 5)],
                                            batch_size=4)),
        "whatif_search": (whatif_search, dict(engine=engine, image=image, elements=els, name="cta", grid=(2, 2),
                                              top=2, max_overlap=0.1, batch_size=4)),
        "read_inputs": (read_inputs, dict(source=tmp)),
        "list_images": (list_images, dict(folder=tmp)),
        "BatchOptions": (BatchOptions, dict(elements_dir=None, norms=None, format=None, pass_percentile=70.0,
                                            reports=False, db=None, vertical=None, tags=())),
        "run_batch": (run_batch, dict(items=read_inputs(tmp), out=tmp / "batch", engine=engine,
                                      options=BatchOptions(), batch_size=2, commit_every=4)),
        "Settings": (Settings, dict(by=(), window_days=28, step_days=7, metric="ctr", min_impressions=1000,
                                    min_clicks=20, min_creatives=10, alpha=0.05, bootstrap=10, score=None,
                                    pass_percentile=70.0, until=None)),
        "calibrate": (calibrate, dict(store=store, settings=Settings(), norms=None, graph=None)),
        "Store.record": (store.record, dict(creative_id="c1", scores=w["scores"], provenance=smap.provenance,
                                            vertical=None, tags=(), scored_at=None)),
        "Store.import_outcomes": (store.import_outcomes, dict(path=tmp / "outcomes.csv", mapping=None)),
        "load_dataset": (load_dataset, dict(path=tmp)),
        "load_folder": (load_folder, dict(root=tmp, name=None)),
        "Client": (lambda **k: Client(**k).close(), dict(url="http://127.0.0.1:9", timeout=1.0, deadline_ms=None)),
        "backend_options": (backend_options, dict(name="onnxruntime")),
        "run_bench": (run_bench, dict(engine=engine, images=[tmp / "a.png"], repeats=1, batch_sizes=(1,),
                                      max_seconds=0.5)),
    }


CASES = ["cpu.overlay", "cpu.preprocess", "cpu.summed_area_table", "cpu.box_sums", "metrics.gaussian_blur",
         "format_of", "parse_elements_json", "apply_edits", "Move", "Scale", "whatif_edits",
         "whatif_search", "read_inputs", "list_images", "BatchOptions", "run_batch", "Settings", "calibrate",
         "Store.record", "Store.import_outcomes", "load_dataset", "load_folder", "Client", "backend_options",
         "run_bench"]


@pytest.mark.parametrize("case", CASES)
def test_each_argument_of_the_wrong_type_is_a_foveal_error(cases, case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # text where a path belongs ("zz") is a relative path: an output folder lands here
    function, base = cases[case]
    for name in base:
        for wrong in WRONG:
            _contained(lambda: function(**{**base, name: wrong}))


def test_a_numpy_bool_is_a_flag():
    """NumPy 2 names its bool type "bool", so a check by the name "bool_" refused np.True_ as a flag."""
    assert checked_flag(np.True_, "maps") is True
    assert BatchOptions(maps=np.False_).maps is np.False_


def test_the_kernels_dtype_refusal_is_an_input_error_and_a_type_error():
    with pytest.raises(FovealError, match="prob must be a floating array") as info:
        cpu.summed_area_table(np.ones((4, 4), np.int64))
    assert isinstance(info.value, TypeError)


def test_numbers_from_numpy_are_numbers():
    """The stricter checks must not refuse what NumPy hands back: a scalar, or a 0-d array from a reduction."""
    image, prob = np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.float32)
    for alpha in (np.float32(0.5), np.array(0.5), 1):
        assert cpu.overlay(image, prob, alpha).shape == (8, 8, 3)
    assert metrics.gaussian_blur(prob.astype(np.float64) / 64, np.array(1.5), np.int64(3)).sum() == pytest.approx(1)
