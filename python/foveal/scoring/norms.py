"""Norms: the element shares of reference creatives, kept whole so percentiles against them are exact.

A norms file (``foveal norms build``) stores, per format (``"1080x1080"``...) and element kind, the sorted shares
of every reference element, plus the graph that produced them: a share is only comparable with shares predicted
by the same graph (a model's int8, fp16 and fp32 graphs give different shares), so norms are refused for another
graph's scores (or, when allowed, reported as a warning)::

    {"foveal_norms": 2, "quantity": "share",
     "model": {"name": ..., "sha256": <fp32 card>, "graph_sha256": <graph that ran>, "precision": "int8"},
     "foveal_version": ..., "formats": {"1080x1080": {"creatives": 40, "kinds": {"cta": [0.012, ...], ...},
                                                    "pass_percentiles": {"cta": 80}}}}

Version 1 files (before the graph was recorded) are read, but match no graph: rebuild them.
``pass_percentiles`` (optional, per format and kind) overrides the scorer's pass percentile for those elements:
`foveal calibrate` proposes them from in-market outcomes, in a new norms file the user adopts by passing it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .._version import __version__
from ..errors import InputError, is_list_like
from .elements import normalise_kind
from .scores import CreativeScores
from .textfile import parse_json, read_text

NORMS_VERSION = 2
READABLE_VERSIONS = (1, 2)
QUANTITY = "share"
#: Largest norms file read: millions of reference shares.
MAX_NORMS_BYTES = 256 << 20
IDENTITY_KEYS = ("name", "sha256", "graph_sha256", "precision")


def graph_identity(provenance: Mapping[str, Any]) -> dict[str, str | None]:
    """What norms record about the graph, from a SaliencyMap's provenance (``model``, ``model_sha256``,
    ``graph_sha256``, ``precision``) or an identity dict (``name``, ``sha256``, ``graph_sha256``, ``precision``)."""
    get = provenance.get
    return {"name": get("name", get("model")), "sha256": get("sha256", get("model_sha256")),
            "graph_sha256": get("graph_sha256"), "precision": get("precision")}


def engine_identity(engine: Any) -> dict[str, str]:
    """The graph identity of an :class:`foveal.Engine`."""
    return {"name": engine.model.name, "sha256": engine.model.sha256, "graph_sha256": engine.graph_sha256,
            "precision": engine.precision}


@dataclass(frozen=True, eq=False)  # eq: its own __eq__; a frozen dataclass's generated hash hashed the dicts
class Norms:
    """Sorted reference shares per format and kind, and the model they came from. Unhashable: it holds dicts and
    arrays, which stay mutable."""

    model: dict[str, str | None]
    formats: dict[str, dict[str, np.ndarray]]
    creatives: dict[str, int]
    source: str = "norms"
    foveal_version: str = field(default=__version__)
    pass_percentiles: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Percentiles are read by bisection: shares handed over unsorted (Norms built directly) gave wrong ones. The
        # rest is what a norms file is checked for, so norms built by hand cannot score what a file could not.
        if not isinstance(self.model, Mapping):
            raise InputError("Norms: model must be a dict naming the graph (name, sha256, graph_sha256, precision); "
                             "use foveal.scoring.norms.engine_identity(engine)")
        if not isinstance(self.formats, Mapping) or not all(isinstance(k, Mapping) for k in self.formats.values()):
            raise InputError("Norms: formats must map each format to {kind: shares}")
        formats: dict[str, dict[str, np.ndarray]] = {}
        for fmt, kinds in self.formats.items():
            count = self.creatives.get(fmt) if isinstance(self.creatives, Mapping) else None
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
                raise InputError(f"Norms: creatives must give a positive count for format {fmt!r}, got {count!r}")
            formats[fmt] = {}
            for raw_kind, shares in kinds.items():
                kind = normalise_kind(raw_kind, f"Norms: format {fmt!r} kinds")
                try:
                    values = np.sort(np.asarray(shares, dtype=np.float64).ravel())
                except (TypeError, ValueError):
                    raise InputError(f"Norms: the shares of {fmt} {kind} must be numbers") from None
                if kind in formats[fmt] or not len(values) or not ((values >= 0) & (values <= 1)).all():
                    raise InputError(f"Norms: the shares of {fmt} {kind} must be one non-empty list of shares in "
                                     "[0, 1]")
                formats[fmt][kind] = values
        passes = self.pass_percentiles
        if not isinstance(passes, Mapping) or not all(
                fmt in formats and isinstance(kinds, Mapping) and _pass_percentiles_fit(kinds, formats[fmt])
                for fmt, kinds in passes.items()):
            raise InputError("Norms: pass_percentiles must map formats and kinds present in formats to numbers in "
                             "(0, 100]")
        object.__setattr__(self, "formats", formats)

    def pass_percentile_for(self, format: str, kind: str, default: float) -> float:
        """The pass percentile these norms set for ``(format, kind)``, else ``default``."""
        return self.pass_percentiles.get(format, {}).get(kind, default)

    def require_format(self, format: str, named: str) -> None:
        """InputError unless these norms (``named`` in the message) have ``format``: a format asked for by name
        that they lack is a typo, not a creative without references."""
        if format not in self.formats:
            raise InputError(f"format {format!r} is not in the norms {named} (they have "
                             f"{', '.join(sorted(self.formats)) or 'none'}); name one of those")

    def lookup(self, format: str, kind: str) -> tuple[np.ndarray | None, str | None]:
        """The sorted shares for ``(format, kind)``, or ``(None, reason)`` when the norms have none."""
        if format not in self.formats:
            have = ", ".join(sorted(self.formats)) or "none"
            return None, (f"norms have no format {format!r} (have: {have}); build norms for it or give another "
                          "format to compare against")
        values = self.formats[format].get(kind)
        if values is None or len(values) == 0:
            return None, f"norms for format {format!r} have no {kind!r} elements"
        return values, None

    def check_graph(self, identity: Mapping[str, Any], allow_mismatch: bool = False) -> str | None:
        """Refuse to compare scores of another graph with these norms (InputError); with ``allow_mismatch`` return
        a warning instead.  ``identity`` is :func:`graph_identity` or :func:`engine_identity`."""
        theirs = graph_identity(identity)
        mine = self.model
        if mine.get("graph_sha256") is not None and mine.get("graph_sha256") == theirs["graph_sha256"]:
            return None
        if mine.get("graph_sha256") is None:
            why = (f"{self.source} does not record which graph built it (a version 1 norms file, model "
                   f"{mine.get('name')!r}); scores come from {_graph(theirs)}")
        else:
            why = f"{self.source} was built with {_graph(mine)} but scores come from {_graph(theirs)}"
        msg = why + "; shares from different graphs are not comparable"
        if not allow_mismatch:
            raise InputError(msg + ": rebuild the norms with this model and precision, or set "
                                   "allow_model_mismatch to compare anyway")
        return msg

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ compared the share arrays with ==, whose array of answers has no truth value: two
        # norms are equal when they would write the same file (where they were read from is no part of them).
        return isinstance(other, Norms) and self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            # Norms read from a version 1 file (no graph recorded) stay version 1 when written again (a calibration
            # proposal built on them), rather than claim a graph they never knew.
            "foveal_norms": NORMS_VERSION if self.model.get("graph_sha256") else 1,
            "quantity": QUANTITY,
            "model": {k: v for k, v in self.model.items() if v is not None},
            "foveal_version": self.foveal_version,
            "formats": {fmt: {"creatives": self.creatives[fmt],
                              "kinds": {k: v.tolist() for k, v in sorted(kinds.items())},
                              **({"pass_percentiles": dict(sorted(self.pass_percentiles[fmt].items()))}
                                 if self.pass_percentiles.get(fmt) else {})}
                        for fmt, kinds in sorted(self.formats.items())},
        }


def build_norms(scored: Iterable[CreativeScores], model: Mapping[str, Any]) -> Norms:
    """Collect element shares of scored reference creatives by their ``format`` and element kind.

    ``model`` identifies the graph every creative was predicted with (:func:`engine_identity`, or
    :func:`graph_identity` of the maps' provenance): name, sha256, graph_sha256 and precision.
    """
    if not isinstance(model, Mapping):
        raise InputError(f"build_norms: model must be a dict naming the graph (name, sha256, graph_sha256, precision), "
                         f"got {type(model).__name__}; use foveal.scoring.norms.engine_identity(engine)")
    if not is_list_like(scored):
        raise InputError(f"build_norms: scored must be a list of CreativeScores (score_creative's results), got "
                         f"{type(scored).__name__}")
    identity = graph_identity(model)
    missing = [k for k in IDENTITY_KEYS if not isinstance(identity[k], str) or not identity[k]]
    if missing:
        raise InputError(f"build_norms: model must name {', '.join(IDENTITY_KEYS)}; missing {', '.join(missing)} "
                         "(use foveal.scoring.norms.engine_identity(engine))")
    lists: dict[str, dict[str, list[float]]] = {}
    creatives: dict[str, int] = {}
    for i, cs in enumerate(scored):
        if not isinstance(cs, CreativeScores):
            raise InputError(f"build_norms: scored[{i}] is a {type(cs).__name__}, not CreativeScores; score each "
                             "reference creative with score_creative")
        kinds = lists.setdefault(cs.format, {})
        creatives[cs.format] = creatives.get(cs.format, 0) + 1
        for e in cs.elements:
            kinds.setdefault(e.kind, []).append(e.share)
    if not creatives:
        raise InputError("build_norms: no reference creatives were scored; norms need at least one")
    formats = {fmt: {k: np.sort(np.asarray(v, dtype=np.float64)) for k, v in kinds.items()}
               for fmt, kinds in lists.items()}
    return Norms(model=identity, formats=formats, creatives=creatives)  # type: ignore[arg-type]


def norms_from_dict(obj: Any, source: str = "norms") -> Norms:
    """Validate a decoded norms file."""
    version = obj.get("foveal_norms") if isinstance(obj, dict) else None
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise InputError(f"{source}: not a foveal norms file (expected \"foveal_norms\": {NORMS_VERSION}); "
                         "build one with `foveal norms build`")
    if obj.get("quantity") != QUANTITY:
        raise InputError(f"{source}: field 'quantity' must be {QUANTITY!r}, got {obj.get('quantity')!r}")
    model = obj.get("model")
    keys = IDENTITY_KEYS if version >= 2 else IDENTITY_KEYS[:2]
    if not isinstance(model, dict) or not all(isinstance(model.get(k), str) for k in keys):
        raise InputError(f"{source}: field 'model' must be an object with string {', '.join(map(repr, keys))}")
    raw_formats = obj.get("formats")
    if not isinstance(raw_formats, dict) or not raw_formats:
        raise InputError(f"{source}: field 'formats' must be a non-empty object of format -> kinds")
    formats: dict[str, dict[str, np.ndarray]] = {}
    creatives: dict[str, int] = {}
    passes: dict[str, dict[str, float]] = {}
    for fmt, entry in raw_formats.items():
        where = f"{source}: format {fmt!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("kinds"), dict):
            raise InputError(f"{where}: must be an object with 'creatives' and 'kinds'")
        count = entry.get("creatives")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(f"{where}: field 'creatives' must be a positive integer, got {count!r}")
        creatives[fmt] = count
        formats[fmt] = {}
        for raw_kind, values in entry["kinds"].items():
            # Kinds are read as element files read them (any case): a hand-edited "CTA" would otherwise never match.
            kind = normalise_kind(raw_kind, f"{where}: kinds")
            if kind in formats[fmt]:
                raise InputError(f"{where}: kind {raw_kind!r} is given twice (kinds are read in any case); keep one")
            # Range first: math.isfinite overflows on a huge int, and 0 <= v <= 1 already excludes it and NaN.
            ok = isinstance(values, list) and values and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values)
            if not ok:
                raise InputError(f"{where}: kind {raw_kind!r} must be a non-empty list of shares in [0, 1]")
            formats[fmt][kind] = np.sort(np.asarray(values, dtype=np.float64))
        raw_passes = entry.get("pass_percentiles", {})
        kinds = {_known_kind(k): p for k, p in raw_passes.items()} if isinstance(raw_passes, dict) else None
        ok = kinds is not None and len(kinds) == len(raw_passes) and _pass_percentiles_fit(kinds, formats[fmt])
        if not ok:
            raise InputError(f"{where}: 'pass_percentiles' must map kinds present in 'kinds' to numbers in (0, 100]")
        if kinds:
            passes[fmt] = {k: float(p) for k, p in kinds.items()}
    return Norms(model=graph_identity(model), formats=formats, creatives=creatives,  # type: ignore[arg-type]
                 source=source, foveal_version=str(obj.get("foveal_version", "unknown")), pass_percentiles=passes)


def _pass_percentiles_fit(passes: Mapping[str, Any], kinds: Mapping[str, Any]) -> bool:
    """Whether every pass percentile in ``passes`` is for one of ``kinds`` and a number in (0, 100]."""
    return all(kind in kinds and isinstance(p, (int, float)) and not isinstance(p, bool) and 0 < p <= 100
               for kind, p in passes.items())


def _known_kind(kind: Any) -> Any:
    """``kind`` as :func:`normalise_kind` reads it, or as it is when it is no kind (refused by the caller)."""
    try:
        return normalise_kind(kind)
    except InputError:
        return kind


def load_norms(path: str | Path) -> Norms:
    """Read and validate a norms JSON file."""
    source = f"norms file {path}"
    text = read_text(path, "norms file", MAX_NORMS_BYTES, missing_hint="; build one with `foveal norms build`")
    return norms_from_dict(parse_json(text, source), str(path))


def _graph(identity: Mapping[str, Any]) -> str:
    sha = identity.get("graph_sha256")
    return (f"model {identity.get('name')!r} {identity.get('precision') or '?'} graph "
            f"(sha256 {str(sha)[:12] + '…' if sha else 'unknown'})")
