"""Norms: the element shares of reference creatives, kept whole so percentiles against them are exact.

A norms file (``foveal norms build``) stores, per format (``"1080x1080"``...) and element kind, the sorted shares
of every reference element, plus the model that produced them: a share is only comparable with shares predicted
by the same model, so norms from another model are refused (or, when allowed, reported as a warning)::

    {"foveal_norms": 1, "quantity": "share", "model": {"name": ..., "sha256": ...}, "foveal_version": ...,
     "formats": {"1080x1080": {"creatives": 40, "kinds": {"cta": [0.012, 0.031, ...], ...},
                               "pass_percentiles": {"cta": 80}}}}

``pass_percentiles`` (optional, per format and kind) overrides the scorer's pass percentile for those elements:
`foveal calibrate` proposes them from in-market outcomes, in a new norms file the user adopts by passing it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .._version import __version__
from ..errors import InputError
from .scores import CreativeScores

NORMS_VERSION = 1
QUANTITY = "share"


@dataclass(frozen=True)
class Norms:
    """Sorted reference shares per format and kind, and the model they came from."""

    model: dict[str, str]
    formats: dict[str, dict[str, np.ndarray]]
    creatives: dict[str, int]
    source: str = "norms"
    foveal_version: str = field(default=__version__)
    pass_percentiles: dict[str, dict[str, float]] = field(default_factory=dict)

    def pass_percentile_for(self, format: str, kind: str, default: float) -> float:
        """The pass percentile these norms set for ``(format, kind)``, else ``default``."""
        return self.pass_percentiles.get(format, {}).get(kind, default)

    def lookup(self, format: str, kind: str) -> tuple[np.ndarray | None, str | None]:
        """The sorted shares for ``(format, kind)``, or ``(None, reason)`` when the norms have none."""
        if format not in self.formats:
            have = ", ".join(sorted(self.formats)) or "none"
            return None, (f"norms have no format {format!r} (have: {have}); build norms for it or pass --format "
                          "to compare against another")
        values = self.formats[format].get(kind)
        if values is None or len(values) == 0:
            return None, f"norms for format {format!r} have no {kind!r} elements"
        return values, None

    def check_model(self, name: str, sha256: str, allow_mismatch: bool = False) -> str | None:
        """Refuse norms built with another model (InputError); with ``allow_mismatch`` return a warning instead."""
        if self.model.get("sha256") == sha256:
            return None
        msg = (f"{self.source} was built with model {self.model.get('name')!r} (sha256 "
               f"{str(self.model.get('sha256'))[:12]}…) but scores come from {name!r} (sha256 {sha256[:12]}…); "
               "shares from different models are not comparable")
        if not allow_mismatch:
            raise InputError(msg + ": rebuild the norms with this model, or pass --allow-model-mismatch")
        return msg

    def to_dict(self) -> dict[str, Any]:
        return {
            "foveal_norms": NORMS_VERSION,
            "quantity": QUANTITY,
            "model": dict(self.model),
            "foveal_version": self.foveal_version,
            "formats": {fmt: {"creatives": self.creatives[fmt],
                              "kinds": {k: v.tolist() for k, v in sorted(kinds.items())},
                              **({"pass_percentiles": dict(sorted(self.pass_percentiles[fmt].items()))}
                                 if self.pass_percentiles.get(fmt) else {})}
                        for fmt, kinds in sorted(self.formats.items())},
        }


def build_norms(scored: Iterable[CreativeScores], model: dict[str, str]) -> Norms:
    """Collect element shares of scored reference creatives by their ``format`` and element kind."""
    lists: dict[str, dict[str, list[float]]] = {}
    creatives: dict[str, int] = {}
    for cs in scored:
        kinds = lists.setdefault(cs.format, {})
        creatives[cs.format] = creatives.get(cs.format, 0) + 1
        for e in cs.elements:
            kinds.setdefault(e.kind, []).append(e.share)
    if not creatives:
        raise InputError("build_norms: no reference creatives were scored; norms need at least one")
    formats = {fmt: {k: np.sort(np.asarray(v, dtype=np.float64)) for k, v in kinds.items()}
               for fmt, kinds in lists.items()}
    return Norms(model={"name": model["name"], "sha256": model["sha256"]}, formats=formats, creatives=creatives)


def norms_from_dict(obj: Any, source: str = "norms") -> Norms:
    """Validate a decoded norms file."""
    if not isinstance(obj, dict) or obj.get("foveal_norms") != NORMS_VERSION:
        raise InputError(f"{source}: not a foveal norms file (expected \"foveal_norms\": {NORMS_VERSION}); "
                         "build one with `foveal norms build`")
    if obj.get("quantity") != QUANTITY:
        raise InputError(f"{source}: field 'quantity' must be {QUANTITY!r}, got {obj.get('quantity')!r}")
    model = obj.get("model")
    if not isinstance(model, dict) or not all(isinstance(model.get(k), str) for k in ("name", "sha256")):
        raise InputError(f"{source}: field 'model' must be an object with string 'name' and 'sha256'")
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
        for kind, values in entry["kinds"].items():
            ok = isinstance(values, list) and values and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1
                for v in values)
            if not ok:
                raise InputError(f"{where}: kind {kind!r} must be a non-empty list of shares in [0, 1]")
            formats[fmt][kind] = np.sort(np.asarray(values, dtype=np.float64))
        raw_passes = entry.get("pass_percentiles", {})
        ok = isinstance(raw_passes, dict) and all(
            k in formats[fmt] and isinstance(p, (int, float)) and not isinstance(p, bool) and 0 < p <= 100
            for k, p in raw_passes.items())
        if not ok:
            raise InputError(f"{where}: 'pass_percentiles' must map kinds present in 'kinds' to numbers in (0, 100]")
        if raw_passes:
            passes[fmt] = {k: float(p) for k, p in raw_passes.items()}
    return Norms(model={"name": model["name"], "sha256": model["sha256"]}, formats=formats, creatives=creatives,
                 source=source, foveal_version=str(obj.get("foveal_version", "unknown")), pass_percentiles=passes)


def load_norms(path: str | Path) -> Norms:
    """Read and validate a norms JSON file."""
    source = str(path)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--norms {source}: file not found; build one with `foveal norms build`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--norms {source}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"--norms {source}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    return norms_from_dict(obj, source)
