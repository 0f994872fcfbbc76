"""A calibration run: read a store, analyse, propose thresholds, write ``calibration.json``, ``calibration.html``
and ``proposed_norms/<segment>.json``."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..fileio import check_not_input, folder_replacement, write_json, write_text
from ..scoring.norms import Norms
from .analysis import CREATIVE_PREDICTORS, Data, Settings, analyse, build_data, window_totals
from .thresholds import creative_percentiles, propose, proposed_norms


#: Where proposed norms files go, inside the output folder.
PROPOSALS_DIR = "proposed_norms"
#: The files beside it in the output folder.
OUTPUT_FILES = ("calibration.json", "calibration.html")


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


def calibrate(store, settings: Settings, *, norms: Norms | None = None, graph: str | None = None,
              allow_model_mismatch: bool = False) -> Calibration:
    """Calibrate the latest predictions in ``store`` against its outcomes.

    ``norms`` of another graph than the predictions' are refused (InputError), as in scoring, unless
    ``allow_model_mismatch``, which records a warning (``norms_warning``) instead.
    """
    if not all(hasattr(store, a) for a in ("latest_predictions", "outcome_rows")):
        raise InputError(f"store: expected a foveal.store.Store, got {type(store).__name__}")
    if not isinstance(settings, Settings):
        raise InputError(f"settings: expected a foveal.calibration.analysis.Settings, got {type(settings).__name__}")
    if not (norms is None or isinstance(norms, Norms)):
        raise InputError(f"norms: expected Norms (foveal.scoring.norms.load_norms reads them) or None, got "
                         f"{type(norms).__name__}")
    if not (graph is None or isinstance(graph, str)):
        raise InputError(f"graph: expected a graph_sha256 (text) or None, got {graph!r}")
    predictions = choose_graph(store.latest_predictions(graph), graph)
    first = predictions[0]
    model = {"name": first["model"], "graph_sha256": first["graph_sha256"], "precision": first["precision"]}
    warning = None if norms is None else norms.check_graph(model, allow_model_mismatch)
    data = build_data(predictions, store.outcome_rows(), settings.by)
    doc = analyse(data, settings)
    doc["model"] = model
    result = Calibration(doc)
    if norms is None:
        doc["thresholds_note"] = "give norms to propose pass thresholds"
    else:
        if warning:
            doc["norms_warning"] = warning
        add_thresholds(result, data, settings, norms)
    return result


def add_thresholds(result: Calibration, data: Data, settings: Settings, norms: Norms) -> None:
    """Per segment and element kind, the proposed pass percentile; a norms file per segment where one changed."""
    last = int(data.day.max()) if settings.until is None else settings.until.toordinal()
    num, den, ok = window_totals(data, last - settings.window_days + 1, last, settings)
    kinds = sorted(k[:-6] for k in data.scores if k.endswith("_share") and k not in CREATIVE_PREDICTORS)
    for seg, (key, members) in zip(result.document["segments"], data.segments.items()):
        sel = members[ok[members]]
        formats = [data.formats[i] for i in sel]
        seg["thresholds"] = {}
        passes: dict[str, dict[str, float]] = {}
        seg["thresholds_skipped"] = {}
        recent = seg["windows"][-1]["scores"] if seg["windows"] else {}
        for kind in kinds:
            pct = creative_percentiles(data.scores[f"{kind}_share"][sel], formats, kind, norms)
            have = np.isfinite(pct)
            need = 2 * settings.min_creatives
            if have.sum() < need:
                with_kind = int(np.isfinite(data.scores[f"{kind}_share"][sel]).sum())
                if not with_kind:  # no creative here has such an element: nothing to explain
                    continue
                if not have.any():
                    listed = ", ".join(sorted(set(formats)))
                    why = f"the norms hold no {kind} shares for this segment's formats ({listed})"
                else:
                    why = (f"{int(have.sum())} of the recent window's {with_kind} creatives with a {kind} have a "
                           f"percentile in the norms; a threshold needs at least {need}, twice the creatives a "
                           "correlation needs")
                seg["thresholds_skipped"][kind] = f"{why}: no threshold proposed"
                continue
            ci = (recent.get(f"{kind}_share") or {}).get("spearman_ci")
            if not ci or ci[0] <= 0:
                # A threshold on a score that does not rank creatives here would only fit noise.
                seg["thresholds_skipped"][kind] = (f"{kind}_share does not predict {settings.metric} in the recent "
                                                   "window (Spearman 95% interval reaches 0): no threshold proposed")
                continue
            current = np.array([norms.pass_percentile_for(f, kind, settings.pass_percentile)
                                for f, h in zip(formats, have) if h])
            proposal = propose(pct[have], num[sel][have] / den[sel][have], current)
            seg["thresholds"][kind] = proposal
            if proposal["changed"]:
                for fmt in sorted({f for f, h in zip(formats, have) if h}):
                    passes.setdefault(fmt, {})[kind] = proposal["after"]["pass_percentile"]
        if passes:
            name = f"{PROPOSALS_DIR}/{seg['slug']}.json"
            seg["proposed_norms"] = name
            result.proposals[name] = proposed_norms(norms, passes)


def check_output_folder(out: Path) -> None:
    """Refuse an output folder that a run could not replace whole: one that holds anything besides an earlier
    calibration's files (it would be deleted), or an input of the run, or the current folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; name a folder (it is created if needed)")
    real = Path(os.path.realpath(out))
    here = Path.cwd()
    if real == here or real in here.parents:  # replaced, it would leave the shell in a deleted folder
        raise InputError(f"{out}: the current folder is in it, and a calibration replaces its folder whole; write it "
                         "to another folder")
    ours, other = [], []
    for entry in sorted(real.iterdir()):
        if entry.name == PROPOSALS_DIR and entry.is_dir() and not entry.is_symlink():
            for item in sorted(entry.iterdir()):
                mine = item.suffix == ".json" and item.is_file() and not item.is_symlink()
                (ours if mine else other).append(item)
        elif entry.name in OUTPUT_FILES and entry.is_file() and not entry.is_symlink():
            ours.append(entry)
        else:
            other.append(entry)
    for path in ours + other:
        check_not_input(path)
    if other:
        names = ", ".join(str(p.relative_to(real)) for p in other[:3])
        more = f" and {len(other) - 3} more" if len(other) > 3 else ""
        raise InputError(f"{out}: holds {names}{more} besides a calibration's files, and a calibration replaces its "
                         "folder whole; write it to a new folder, or to one only calibrations are written to")


def write_calibration(out: Path, result: Calibration) -> list[Path]:
    """Write the run's files into ``out`` and return their paths.

    They appear together or not at all: written into a new folder beside ``out``, which then takes its place in
    one step, so ``out`` never holds a mix of this run's and an earlier run's files (numbers of one beside proposed
    norms of the other), nor proposals this run no longer makes.
    """
    from .report import render_html

    check_output_folder(out)
    with folder_replacement(out) as new:
        for name, doc in result.proposals.items():
            write_json(new / name, doc)
        write_json(new / "calibration.json", result.document)
        write_text(new / "calibration.html", render_html(result.document))
    return [out / "calibration.json", out / "calibration.html", *(out / name for name in result.proposals)]
