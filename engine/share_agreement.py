"""How far a reduced-precision graph moves attention shares away from its model's fp32 graph.

    python -m engine.share_agreement foveal-lite0                 # the shipped fp16 and int8 graphs
    python -m engine.share_agreement foveal-lite0 --graph g.onnx  # any graph file under the same card
    python -m engine.share_agreement foveal-lite0 --data ../shared/data   # also OSIE and Scene val images

A user reads shares, so agreement is measured in them: each element box of the example creatives
(``examples/*.png`` and ``examples/references/*.png`` with their ``.json`` element files) is scored on the map
of each graph, and the difference from the fp32 graph's share is reported in percentage points (pp), the unit of
the compare "material change" threshold (0.5 pp).  On dataset images, which have no element boxes, the boxes are
the 16 cells of a 4×4 grid.  The stated tolerances (:data:`TOLERANCE_PP`) are what ``tests/test_quantize.py``
holds the shipped graphs to.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foveal import Engine
from foveal.models import load_card
from foveal.scoring.elements import load_elements
from engine import run_main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: Largest |share − fp32 share| (pp) a shipped graph may show on any element of the example creatives.
TOLERANCE_PP = {"fp16": 0.25, "int8": 2.0}
#: ... and the largest median over those elements.
MEDIAN_TOLERANCE_PP = {"fp16": 0.05, "int8": 0.5}


@dataclass(frozen=True)
class Agreement:
    """Per-box share differences (pp, graph minus fp32) of one graph on one set of images."""

    images: int
    differences: np.ndarray

    @property
    def median(self) -> float:
        return float(np.median(np.abs(self.differences)))

    @property
    def max(self) -> float:
        return float(np.max(np.abs(self.differences)))

    def summary(self) -> dict:
        """JSON form: counts, median, 90th percentile and max of |difference| in pp."""
        d = np.abs(self.differences)
        return {"images": self.images, "boxes": int(d.size), "median_pp": round(self.median, 3),
                "p90_pp": round(float(np.percentile(d, 90)), 3), "max_pp": round(self.max, 3)}


def example_creatives(root: Path = EXAMPLES) -> list[tuple[Path, Path]]:
    """(image, element file) pairs of the example creatives, in a fixed order."""
    pngs = sorted(root.glob("*.png")) + sorted((root / "references").glob("*.png"))
    return [(png, png.with_suffix(".json")) for png in pngs if png.with_suffix(".json").is_file()]


def grid_boxes(shape: tuple[int, int], cells: int = 4) -> np.ndarray:
    """``[x, y, w, h]`` boxes of a ``cells``×``cells`` grid tiling an image of ``shape`` (H, W)."""
    ys = np.linspace(0, shape[0], cells + 1).round().astype(int)
    xs = np.linspace(0, shape[1], cells + 1).round().astype(int)
    return np.array([[xs[j], ys[i], xs[j + 1] - xs[j], ys[i + 1] - ys[i]]
                     for i in range(cells) for j in range(cells)])


def shares(engine: Engine, images: list, boxes: list) -> np.ndarray:
    """Shares of every box of every image, concatenated; ``boxes[i]`` is an element file path or a callable
    giving the boxes for the map's shape."""
    out = []
    for image, spec in zip(images, boxes):
        smap = engine.predict(image)
        if callable(spec):
            xywh = spec(smap.shape)
        else:
            xywh = np.array([e.box for e in load_elements(spec, smap.shape)])
        out.append(smap.box_stats(xywh)["share"])
    return np.concatenate(out)


def graph_engine(model: str, graph: Path, workdir: Path) -> Engine:
    """An ONNX Runtime engine running ``graph`` under ``model``'s card (input contract, stride, blur)."""
    raw = json.loads(Path(load_card(model).onnx_path).with_suffix(".json").read_text(encoding="utf-8"))
    for precision in ("fp16", "int8"):
        raw.pop(precision, None)
    raw["onnx"] = str(Path(graph).resolve())
    raw.pop("sha256", None)
    card = workdir / f"{Path(graph).stem}.json"
    card.write_text(json.dumps(raw), encoding="utf-8")
    return Engine(str(card), device="cpu", precision="fp32")


def measure(model: str, engines: dict[str, Engine], images: list, boxes: list) -> dict[str, Agreement]:
    """Share differences of each engine from ``model``'s fp32 graph on ``images``."""
    reference = shares(Engine(model, device="cpu", precision="fp32"), images, boxes)
    return {name: Agreement(len(images), (shares(e, images, boxes) - reference) * 100)
            for name, e in engines.items()}


def example_agreement(model: str, engines: dict[str, Engine]) -> dict[str, Agreement]:
    """:func:`measure` on the example creatives' element boxes."""
    pairs = example_creatives()
    return measure(model, engines, [str(p) for p, _ in pairs], [e for _, e in pairs])


def val_agreement(model: str, engines: dict[str, Engine], data: Path) -> dict[str, Agreement]:
    """:func:`measure` on the OSIE and Scene val images, boxes a 4×4 grid."""
    from foveal.datasets import load_osie, load_scene

    images = []
    for name, loader in (("osie", load_osie), ("scene", load_scene)):
        val = loader(data / name).split("val")
        images += [val.image(i) for i in range(len(val))]
    return measure(model, engines, images, [grid_boxes] * len(images))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.share_agreement", description=__doc__.split("\n")[0])
    p.add_argument("model", help="a shipped model's name, e.g. foveal-lite0")
    p.add_argument("--graph", type=Path, action="append", default=[],
                   help="an ONNX graph to measure instead of the shipped fp16 and int8 graphs (repeatable)")
    p.add_argument("--data", type=Path, help="folder holding osie/ and scene/: also measure on their val images")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.graph:
            engines = {str(g): graph_engine(args.model, g, Path(tmp)) for g in args.graph}
        else:
            engines = {p: Engine(args.model, device="cpu", precision=p) for p in ("fp16", "int8")}
        results = {"example creatives (element boxes)": example_agreement(args.model, engines)}
        if args.data:
            results["OSIE + Scene val (4x4 grid cells)"] = val_agreement(args.model, engines, args.data)
    for where, agreement in results.items():
        for name, a in agreement.items():
            print(f"{where}: {name}: {json.dumps(a.summary())}")
    return 0


if __name__ == "__main__":
    run_main(main)
