"""The shipped itti-koch model: its card, its ONNX graph, agreement with the torch network, and behaviour.

Behaviour tests run the shipped ONNX file through onnxruntime (what users get); tests that need the torch
network skip without torch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

MODELS = Path(__file__).resolve().parents[1] / "python" / "foveal" / "models"
ONNX_PATH = MODELS / "itti-koch.onnx"
CARD_PATH = MODELS / "itti-koch.json"
STRIDE = 16


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def session() -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(ONNX_PATH), providers=["CPUExecutionProvider"])


def run(session: onnxruntime.InferenceSession, images: np.ndarray) -> np.ndarray:
    """Log-density of float images (N, H, W, 3) in [0, 1], as (N, H/16, W/16)."""
    (out,) = session.run(None, {"image": np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)})
    return out[:, 0]


def disc(canvas: np.ndarray, cy: float, cx: float, radius: float, colour: tuple[float, float, float]) -> None:
    rows, cols = np.mgrid[: canvas.shape[0], : canvas.shape[1]]
    canvas[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2] = colour


def bar(canvas: np.ndarray, cy: float, cx: float, angle_deg: float, length: float, width: float) -> None:
    """A white bar centred at (cy, cx), ``angle_deg`` from vertical."""
    rows, cols = np.mgrid[: canvas.shape[0], : canvas.shape[1]]
    theta = np.radians(angle_deg)
    along = (rows - cy) * np.cos(theta) + (cols - cx) * np.sin(theta)
    across = -(rows - cy) * np.sin(theta) + (cols - cx) * np.cos(theta)
    canvas[(np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)] = 1.0


def peak_cell(log_density: np.ndarray) -> np.ndarray:
    return np.array(np.unravel_index(np.argmax(log_density), log_density.shape))


def centre_prior(card: dict, rows: int, cols: int) -> np.ndarray:
    """The card's log centre prior on a rows × cols output grid."""
    sigma = card["provenance"]["training"]["readout"]["prior_sigma"]
    v = (np.arange(rows) + 0.5) / rows - 0.5
    u = (np.arange(cols) + 0.5) / cols - 0.5
    return -(v[:, None] ** 2 + u[None, :] ** 2) / (2 * sigma**2)


# --- card and file ---------------------------------------------------------------------------------------------


def test_card_sha256_matches_shipped_onnx(card):
    from engine.cards import sha256_file

    assert card["onnx"] == ONNX_PATH.name
    assert card["sha256"] == sha256_file(ONNX_PATH)


def test_card_fields_follow_contract(card):
    assert card["name"] == "itti-koch"
    assert [int(p) for p in card["version"].split(".")] >= [1, 0, 0]
    assert "Itti" in card["citation"] and "1998" in card["citation"]
    assert card["licence"].startswith("Apache-2.0")
    assert card["input"] == {
        "name": "image", "layout": "NCHW", "dtype": "float32", "color": "RGB", "working_size": 384,
        "pad_multiple": 32, "pad_mode": "edge", "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0],
    }
    assert card["output"] == {"name": "log_density", "stride": STRIDE}
    assert card["postprocess"] == {"blur_sigma": 0.0}
    assert card["input"]["pad_multiple"] % card["output"]["stride"] == 0
    provenance = card["provenance"]
    assert provenance["by"] == "engine/export.py" and provenance["created"]
    assert provenance["training"]["learned_weights"] is False
    assert "train" in provenance["training"]["tuning"]["split"]
    assert isinstance(card["metrics"], dict)


def test_onnx_graph_is_small_with_dynamic_axes(card):
    assert ONNX_PATH.stat().st_size < 64 * 1024  # fixed filters only: no baked-in constants
    model = onnx.load(str(ONNX_PATH))
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == card["input"]["name"] and graph_output.name == card["output"]["name"]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[1].dim_value == 3
    assert all(dims[i].dim_param and not dims[i].dim_value for i in (0, 2, 3))
    assert model.opset_import[0].version >= 17


@pytest.mark.parametrize("batch, height, width", [(1, 288, 384), (2, 96, 384), (1, 384, 96), (1, 32, 32)])
def test_output_is_padded_size_over_stride(session, batch, height, width):
    images = np.random.default_rng(1).random((batch, height, width, 3))
    out = run(session, images)
    assert out.shape == (batch, height // STRIDE, width // STRIDE)
    assert np.isfinite(out).all()


def test_batch_items_are_independent(session):
    rng = np.random.default_rng(2)
    images = rng.random((2, 128, 192, 3))
    images[1, 40:80, 20:60] = (1.0, 0.0, 0.0)
    together = run(session, images)
    for i in range(2):
        np.testing.assert_allclose(together[i], run(session, images[i : i + 1])[0], atol=1e-5)


# --- behaviour -------------------------------------------------------------------------------------------------


def test_bright_blob_on_uniform_background_is_the_peak(session):
    image = np.full((288, 384, 3), 0.3)
    disc(image, cy=72, cx=300, radius=10, colour=(1.0, 1.0, 1.0))
    assert np.abs(peak_cell(run(session, image[None])[0]) - [72 / STRIDE, 300 / STRIDE]).max() <= 1.5


@pytest.mark.parametrize("colour", [(0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8), (0.6, 0.6, 0.0)])
def test_isoluminant_colour_blob_is_the_peak(session, colour):
    """Same intensity as the grey background, so only the colour-opponent channels can find the disc."""
    image = np.full((288, 384, 3), np.mean(colour))
    disc(image, cy=200, cx=80, radius=12, colour=colour)
    assert np.abs(peak_cell(run(session, image[None])[0]) - [200 / STRIDE, 80 / STRIDE]).max() <= 1.5


@pytest.mark.parametrize("target", [(1, 3), (0, 2), (2, 0)])
def test_tilted_bar_among_vertical_bars_pops_out(session, card, target):
    """Identical white bars on black, one at 45°: only orientation singles it out.

    Judged on the bottom-up part (output minus the card's centre prior): the prior, fitted to where people
    look in photographs, rightly outweighs a modest pop-out near the border.
    """
    spacing = 96
    image = np.zeros((288, 384, 3))
    for row in range(288 // spacing):
        for col in range(384 // spacing):
            tilt = 45.0 if (row, col) == target else 0.0
            centre_y, centre_x = spacing / 2 + spacing * row, spacing / 2 + spacing * col
            bar(image, cy=centre_y, cx=centre_x, angle_deg=tilt, length=48, width=12)
    bottom_up = run(session, image[None])[0] - centre_prior(card, 288 // STRIDE, 384 // STRIDE)
    expected = (np.array(target) * spacing + spacing / 2) / STRIDE
    assert np.abs(peak_cell(bottom_up) - expected).max() <= 1.5


@pytest.mark.parametrize("colour", [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), (0.9, 0.2, 0.1)])
@pytest.mark.parametrize("height, width", [(288, 384), (96, 384)])
def test_uniform_image_is_the_centre_prior_alone(session, card, colour, height, width):
    out = run(session, np.full((1, height, width, 3), colour))[0]
    prior = centre_prior(card, height // STRIDE, width // STRIDE)
    np.testing.assert_allclose(out - out.max(), prior - prior.max(), atol=1e-4)


# --- torch network -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch, height, width",
    [(1, 288, 384), (2, 96, 384), (1, 384, 96), (1, 64, 32), (3, 160, 224)],
)
def test_onnxruntime_matches_torch(session, batch, height, width):
    torch = pytest.importorskip("torch")
    from foveal.network.itti_koch import build

    images = np.random.default_rng(3).random((batch, height, width, 3)).astype(np.float32)
    images[:, height // 4 : height // 2, width // 3 : width // 2] = (0.9, 0.1, 0.2)  # some structure, not just noise
    with torch.no_grad():
        want = build()(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()[:, 0]
    np.testing.assert_allclose(run(session, images), want, atol=1e-4, rtol=0)


def test_normalisation_promotes_a_single_peak_over_many():
    torch = pytest.importorskip("torch")
    from foveal.network.itti_koch import normalize

    single = torch.zeros(1, 1, 16, 16)
    single[0, 0, 8, 8] = 1.0
    many = torch.zeros(1, 1, 16, 16)
    many[0, 0, 2::4, 2::4] = 1.0
    many[0, 0, 10, 10] = 1.001  # the global maximum, barely above the other peaks
    both = normalize(torch.cat([single, many], dim=1))
    assert both[0, 0].max() == pytest.approx(1.0)  # no other local maxima: (M - 0)^2 with M = 1
    assert both[0, 1].max() == pytest.approx((1.0 - 1.0 / 1.001) ** 2, rel=1e-3)  # m̄ ≈ M: suppressed
    assert torch.equal(normalize(torch.zeros(1, 2, 8, 8)), torch.zeros(1, 2, 8, 8))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own pytree deprecation notices
def test_export_reproduces_the_shipped_model(tmp_path, session):
    pytest.importorskip("torch")
    from engine.cards import sha256_file
    from engine.export import export

    onnx_path, card_path = export("itti-koch", tmp_path)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    assert card["sha256"] == sha256_file(onnx_path) and card["onnx"] == "itti-koch.onnx"
    images = np.random.default_rng(4).random((1, 96, 128, 3))
    fresh = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(run(fresh, images), run(session, images), atol=1e-5)
