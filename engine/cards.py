"""Model cards: the JSON beside each shipped ONNX file (fields and meaning: docs/MODEL_CONTRACT.md).

    python -m engine.cards metrics python/foveal/models/itti-koch.json eval/osie/eval.json eval/scene/eval.json

records ``foveal eval`` results (``eval.json``, each under its dataset split's name) in a card's ``metrics``,
refusing results of another graph than the card's.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine import run_main


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_card(fields: Mapping[str, Any], onnx_path: Path, exporter: str) -> dict[str, Any]:
    """The full card for ``onnx_path``: the model's own ``fields`` plus file name, sha256 and export provenance.

    ``fields`` holds name, version, description, citation, licence, input, output, postprocess and
    ``provenance.training``; ``metrics`` start empty and are filled by ``foveal eval``.
    """
    card = copy.deepcopy(dict(fields))
    provenance = card.setdefault("provenance", {})
    provenance["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    provenance["by"] = "engine/export.py"
    provenance["exporter"] = exporter
    ordered = {key: card.pop(key) for key in ("name", "version")}
    ordered["onnx"] = onnx_path.name
    ordered["sha256"] = sha256_file(onnx_path)
    ordered.update(card)
    ordered.setdefault("metrics", {})
    return ordered


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``.

    engine/ runs from a source checkout where the foveal package need not be installed, so it cannot borrow
    ``foveal.fileio``; this is the same temp-file-and-rename pattern.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temp, 0o644)  # mkstemp creates 0600; shipped files must be readable by everyone
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def write_card(card: Mapping[str, Any], path: Path) -> None:
    """Write a card as indented UTF-8 JSON with a trailing newline."""
    write_bytes_atomic(path, (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def record_metrics(card_path: Path, eval_paths: list[Path]) -> dict[str, Any]:
    """Put each ``foveal eval`` result (its means, rounded to 4 places) under its dataset in the card's metrics."""
    card = json.loads(card_path.read_text(encoding="utf-8"))
    for path in eval_paths:
        result = json.loads(path.read_text(encoding="utf-8"))
        provenance = result.get("provenance", {})
        sha, precision = provenance.get("model_sha256"), provenance.get("precision")
        if sha != card["sha256"] or precision != "fp32":
            raise SystemExit(f"{path}: scores {precision} graph of model {str(sha)[:12]}…, not the fp32 graph of "
                             f"{card_path.name} ({card['sha256'][:12]}…)")
        card.setdefault("metrics", {})[result["dataset"]] = {k: round(v, 4) for k, v in result["metrics"].items()}
    write_card(card, card_path)
    return card["metrics"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.cards", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("metrics", help="record foveal eval results in a card")
    m.add_argument("card", type=Path)
    m.add_argument("evals", type=Path, nargs="+", metavar="EVAL_JSON")
    args = p.parse_args(argv)
    print(json.dumps(record_metrics(args.card, args.evals), indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)
