"""A calibration run: read a store, analyse, propose thresholds, write ``calibration.json``, ``calibration.html``
and ``proposed_norms/<segment>.json``."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..fileio import write_json, write_text
from ..scoring.norms import Norms
from .analysis import Data, Settings, analyse, build_data, window_totals
from .thresholds import creative_percentiles, propose, proposed_norms


#: Where proposed norms files go, inside the output folder.
PROPOSALS_DIR = "proposed_norms"


@dataclass
class Calibration:
    """The ``calibration.json`` document and the proposed norms files (segment slug → norms dict)."""

    document: dict[str, Any]
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)


def choose_graph(predictions: list[dict[str, Any]], graph: str | None) -> list[dict[str, Any]]:
    """Predictions of one model graph: scores of different graphs are not comparable."""
    graphs = Counter(p["graph_sha256"] for p in predictions)
    if not predictions:
        raise InputError("the store holds no predictions" + (f" of a graph starting {graph!r}" if graph else "")
                         + ": record some with `foveal score ... --db URL`")
    if len(graphs) > 1:
        found = ", ".join(f"{g[:12]} ({n} creatives)" for g, n in graphs.most_common())
        raise InputError(f"the latest predictions come from {len(graphs)} model graphs ({found}); scores of "
                         "different graphs are not comparable: choose one with graph (a prefix of its sha256)")
    return predictions


def calibrate(store, settings: Settings, *, norms: Norms | None = None, graph: str | None = None) -> Calibration:
    """Calibrate the latest predictions in ``store`` against its outcomes."""
    predictions = choose_graph(store.latest_predictions(graph), graph)
    data = build_data(predictions, store.outcome_rows(), settings.by)
    doc = analyse(data, settings)
    first = predictions[0]
    doc["model"] = {"name": first["model"], "graph_sha256": first["graph_sha256"], "precision": first["precision"]}
    result = Calibration(doc)
    if norms is None:
        doc["thresholds_note"] = "give norms to propose pass thresholds"
    else:
        add_thresholds(result, data, settings, norms)
    return result


def add_thresholds(result: Calibration, data: Data, settings: Settings, norms: Norms) -> None:
    """Per segment and element kind, the proposed pass percentile; a norms file per segment where one changed."""
    last = int(data.day.max()) if settings.until is None else settings.until.toordinal()
    num, den, ok = window_totals(data, last - settings.window_days + 1, last, settings)
    kinds = sorted(k[:-6] for k in data.scores if k.endswith("_share") and k[:-6] not in ("conversion",))
    for seg, (key, members) in zip(result.document["segments"], data.segments.items()):
        sel = members[ok[members]]
        formats = [data.formats[i] for i in sel]
        common = Counter(formats).most_common(1)[0][0] if formats else ""
        seg["thresholds"] = {}
        passes: dict[str, dict[str, float]] = {}
        seg["thresholds_skipped"] = {}
        recent = seg["windows"][-1]["scores"] if seg["windows"] else {}
        for kind in kinds:
            pct = creative_percentiles(data.scores[f"{kind}_share"][sel], formats, kind, norms)
            have = np.isfinite(pct)
            if have.sum() < 2 * settings.min_creatives:
                continue
            ci = (recent.get(f"{kind}_share") or {}).get("spearman_ci")
            if not ci or ci[0] <= 0:
                # A threshold on a score that does not rank creatives here would only fit noise.
                seg["thresholds_skipped"][kind] = (f"{kind}_share does not predict {settings.metric} in the recent "
                                                   "window (Spearman 95% interval reaches 0): no threshold proposed")
                continue
            current = norms.pass_percentile_for(common, kind, settings.pass_percentile)
            proposal = propose(pct[have], num[sel][have] / den[sel][have], current)
            seg["thresholds"][kind] = proposal
            if proposal["changed"]:
                for fmt in sorted({f for f, h in zip(formats, have) if h}):
                    passes.setdefault(fmt, {})[kind] = proposal["after"]["pass_percentile"]
        if passes:
            name = f"{PROPOSALS_DIR}/{seg['slug']}.json"
            seg["proposed_norms"] = name
            result.proposals[name] = proposed_norms(norms, passes)


def write_calibration(out: Path, result: Calibration) -> list[Path]:
    """Write the run's files into ``out`` (atomically, each); return their paths.

    Proposals an earlier run left in ``out/proposed_norms/`` that this run does not make are removed, once
    ``calibration.json`` (which names the current ones) is written: adopting one would apply an outdated threshold.
    """
    from .report import render_html

    written = []
    for name, doc in result.proposals.items():
        write_json(out / name, doc)
        written.append(out / name)
    write_json(out / "calibration.json", result.document)
    write_text(out / "calibration.html", render_html(result.document))
    folder = out / PROPOSALS_DIR
    if folder.is_dir():
        for stale in sorted(set(folder.glob("*.json")) - set(written)):
            stale.unlink(missing_ok=True)
    return [out / "calibration.json", out / "calibration.html", *written]
