"""engine.cards metrics: foveal eval results go into a card only for the graph the card describes."""
from __future__ import annotations

import json
import shutil

import pytest

from foveal.models import load_card

cards = pytest.importorskip("engine.cards", reason="needs the source checkout's engine/")


def _eval_json(path, sha, precision="fp32", dataset="osie-test"):
    path.write_text(json.dumps({"dataset": dataset, "metrics": {"CC": 0.123456, "NSS": 1.0},
                                "provenance": {"model_sha256": sha, "precision": precision}}))
    return path


def test_record_metrics(tmp_path):
    card = load_card("itti-koch")
    target = tmp_path / "itti-koch.json"
    shutil.copy(card.onnx_path.with_suffix(".json"), target)
    metrics = cards.record_metrics(target, [_eval_json(tmp_path / "a.json", card.sha256, dataset="mine-test")])
    assert metrics["mine-test"] == {"CC": 0.1235, "NSS": 1.0}
    assert json.loads(target.read_text())["metrics"]["mine-test"]["CC"] == 0.1235
    for bad in (_eval_json(tmp_path / "b.json", "0" * 64), _eval_json(tmp_path / "c.json", card.sha256, "int8")):
        with pytest.raises(SystemExit, match="not the fp32 graph"):
            cards.record_metrics(target, [bad])
