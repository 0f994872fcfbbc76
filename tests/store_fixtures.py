"""Scored creatives without running a network, for store and calibration tests (importable by worker processes)."""
from __future__ import annotations

import hashlib

import numpy as np

from foveal.saliency_map import SaliencyMap
from foveal.scoring.elements import make_element
from foveal.scoring.scores import CreativeScores, score_creative

GRAPH = "ab" * 32


def scored(seed: int, cta_weight: float | None = None, graph: str = GRAPH) -> tuple[CreativeScores, dict]:
    """A 60×80 map (random, or with ``cta_weight`` of its mass inside the CTA box) scored on cta/headline/logo."""
    rng = np.random.default_rng(seed)
    prob = rng.random((60, 80)) + 0.1
    cta = (5, 40, 20, 10)
    if cta_weight is not None:
        inside = np.zeros_like(prob, dtype=bool)
        inside[cta[1]:cta[1] + cta[3], cta[0]:cta[0] + cta[2]] = True
        prob = np.where(inside, prob / prob[inside].sum() * cta_weight, prob / prob[~inside].sum() * (1 - cta_weight))
    prob = (prob / prob.sum()).astype(np.float32)
    provenance = {"model": "test-model", "model_version": "1", "model_sha256": "cd" * 32, "graph_sha256": graph,
                  "precision": "fp32", "backend": "onnxruntime", "foveal_version": "0.1.0",
                  "image_sha256": hashlib.sha256(f"image-{seed}".encode()).hexdigest()}
    smap = SaliencyMap(prob, provenance)
    elements = [make_element("cta", "cta", cta, (60, 80)), make_element("title", "headline", (10, 5, 60, 12), (60, 80)),
                make_element("logo", "logo", (60, 48, 15, 10), (60, 80))]
    return score_creative(smap, elements), provenance


def record_until(url: str, stop_file: str, at_least: int, at_most: int, limit_s: float,
                 started_file: str | None = None) -> None:
    """Record creatives ``n0, n1...`` one transaction each (a scoring process's pattern) until ``stop_file``
    exists, at least ``at_least`` and at most ``at_most`` of them, for at most ``limit_s`` seconds; print the count.
    ``started_file`` is created once the first creative is committed."""
    import time
    from pathlib import Path

    from foveal.store import Store

    start, count = time.monotonic(), 0
    with Store(url) as store:
        while count < at_most and time.monotonic() - start < limit_s and (
                count < at_least or not Path(stop_file).exists()):
            scores, provenance = scored(count)
            store.record(f"n{count}", scores, provenance, vertical="retail", tags=["load"])
            count += 1
            if count == 1 and started_file:
                Path(started_file).touch()
    print(count)


#: Root's capabilities to ignore file permissions, dropped for :func:`without_root_override`.
_OVERRIDES = "-dac_override,-dac_read_search"


def without_root_override(command: list[str]) -> list[str]:
    """``command`` run so that file permissions apply to it: as root, through setpriv without the capabilities that
    override them (a read-only file would otherwise be writable); skips the test where that cannot be done."""
    import os
    import shutil
    import subprocess

    import pytest

    if os.geteuid() != 0:
        return command
    prefix = [shutil.which("setpriv") or "setpriv", "--bounding-set", _OVERRIDES, "--inh-caps", _OVERRIDES, "--"]
    try:
        subprocess.run([*prefix, "true"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("running as root without setpriv (util-linux) to drop root's override of file permissions")
    return [*prefix, *command]
