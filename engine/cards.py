"""Model cards: the JSON beside each shipped ONNX file (fields and meaning: docs/MODEL_CONTRACT.md)."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


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
