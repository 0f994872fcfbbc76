"""Score a chunk of creatives: decode, read elements, predict in network batches, score; never raise per image.

:class:`Scorer` is the unit of work both the single-process batch and each Ray actor run.  Every creative gives a
:class:`CreativeResult`: its element rows and creative row (tables.py schemas), or the error that stopped it.
Reports and maps, when asked, are written here (atomically, by creative id, so a retried chunk rewrites the same
files); the tables are written by the one committer (store.py).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import DiskFullError, ElementSpecError, FovealError, InputError, checked_flag
from ..fileio import checked_path, is_unicode, unicode_name, write_npy
from ..imageio import DecodedImage, decode
from ..saliency_map import SaliencyMap
from ..scoring.elements import ElementSpec, checked_format, find_element_file, load_elements, parse_elements
from ..scoring.norms import Norms, engine_identity, load_norms
from ..scoring.recommend import Thresholds
from ..scoring.report import draw_boxes, scores_document, write_report
from ..scoring.scores import DEFAULT_PASS_PERCENTILE, CreativeScores, checked_pass_percentile, score_creative
from .inputs import BatchItem

REPORTS_DIR, MAPS_DIR = "reports", "maps"
AUTO = "auto"  # an item's elements: detect them on the creative (foveal[detect]) instead of reading a file


@dataclass(frozen=True)
class BatchOptions:
    """How a batch scores and what it writes besides the tables (plain values: they travel to Ray actors).

    Args:
        elements_dir: folder holding element files named like the images, for items without ``elements``
            (default: each image's own folder).
        norms: norms JSON (``foveal norms build``): enables percentile, score and pass/fail.
        format: format to compare against in the norms (default: the element file's, else the image's WxH).
        pass_percentile: an element passes at or above this percentile of its norm.
        allow_model_mismatch: accept norms built with another model (a warning goes into each report).
        reports: write ``reports/<creative_id>/scores.json`` per creative.
        html: with ``reports``, also ``overlay.png`` and ``report.html``.
        maps: write ``maps/<creative_id>.npy`` (float32 probability map, sums to 1).
        db: a calibration store URL (``sqlite:///foveal.db``, ``postgresql+psycopg://...``): each scored creative is
            recorded there under its creative id, with ``vertical`` and ``tags`` (see :mod:`foveal.store`). On Ray
            every actor opens the store itself, so across machines it must be PostgreSQL.
    """

    elements_dir: str | None = None
    norms: str | None = None
    format: str | None = None
    pass_percentile: float = DEFAULT_PASS_PERCENTILE
    allow_model_mismatch: bool = False
    reports: bool = False
    html: bool = True
    maps: bool = False
    db: str | None = None
    vertical: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Checked here, once: a bad setting would otherwise fail every creative of the batch, one by one.
        for name in ("allow_model_mismatch", "reports", "html", "maps"):
            checked_flag(getattr(self, name), name)
        checked_pass_percentile(self.pass_percentile)
        for name in ("elements_dir", "norms", "db"):
            value = getattr(self, name)
            if value is not None:
                checked_path(value, name)
        if not (self.vertical is None or isinstance(self.vertical, str)):
            raise InputError(f"vertical: expected text or None, got {self.vertical!r}")
        if self.elements_dir is not None and not os.path.isdir(self.elements_dir):
            raise InputError(f"elements_dir {self.elements_dir}: not a folder; give the folder of the element files")
        if isinstance(self.tags, str):
            raise InputError(f"tags: expected a list of tags, got {self.tags!r}; pass [{self.tags!r}] for one tag")
        # None or numbers passed here, and failed the batch's first store write (or nothing, without a store)
        tags = tuple(self.tags) if isinstance(self.tags, Iterable) else None
        if tags is None or not all(isinstance(t, str) for t in tags):
            raise InputError(f"tags: expected a list of text tags, got {self.tags!r}")
        object.__setattr__(self, "tags", tags)
        # Both go into every scores.json and report.html (UTF-8); the OS hands an undecodable argument or file
        # name over as lone surrogates, which would fail the first report half-written.
        if self.norms is not None:
            unicode_name(self.norms, "the norms file's name")
        if self.format is not None:
            if isinstance(self.format, str) and not is_unicode(self.format):  # what the OS makes of a bad argument
                raise InputError(f"format {self.format.encode('utf-8', 'replace').decode()!r} is not valid UTF-8; "
                                 "name a format of the norms")
            checked_format(self.format, stored=self.db is not None)


def absolute_options(options: BatchOptions) -> BatchOptions:
    """``options`` with every path absolute, as a batch records them (reports, the errors table), with or without
    Ray: the actors of a joined cluster run in the folder its ``ray start`` ran in, and would read relative paths
    from there (other norms, another database, element files not found)."""
    def path(value: str | None) -> str | None:
        return None if value is None else os.path.abspath(value)

    if options.db is not None:
        from ..store.database import absolute_url

        options = replace(options, db=absolute_url(options.db))
    return replace(options, elements_dir=path(options.elements_dir), norms=path(options.norms))


@dataclass
class CreativeResult:
    """One creative's outcome: rows for the element and creative tables, or ``error`` (then no rows)."""

    creative_id: str
    image: str
    elements: list[dict[str, Any]] = field(default_factory=list)
    creative: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> CreativeResult:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class _Ready:
    item: BatchItem
    decoded: DecodedImage
    spec: ElementSpec


@dataclass(frozen=True)
class Scored:
    """One scored creative: its pixels, validated elements, saliency map and scores."""

    item: BatchItem
    decoded: DecodedImage
    spec: ElementSpec
    smap: SaliencyMap
    scores: CreativeScores


def open_options(options: BatchOptions) -> tuple[Norms | None, Any]:
    """The norms and the calibration store ``options`` name, checked as a batch uses them: one InputError before any
    work, where each creative would otherwise be scored, then refused on its own line."""
    norms = None
    if options.norms is not None:
        norms = load_norms(options.norms)
        if options.format is not None:
            norms.require_format(options.format, str(options.norms))
    if options.db is None:
        return norms, None
    from ..store import Store, check_label

    for value, what in ((options.vertical, "vertical"), *((tag, "tag") for tag in options.tags)):
        if value is not None:
            check_label(value, what)
    store = Store(options.db)
    try:
        store.check_writable()
    except BaseException:
        store.close()
        raise
    return norms, store


class Scorer:
    """Scores chunks of :class:`BatchItem` with one engine and one :class:`BatchOptions`.

    ``out`` is the batch's output folder (reports and maps go under it when asked).
    """

    def __init__(self, engine, options: BatchOptions = BatchOptions(), out: str | Path = ".",
                 batch_size: int = 16) -> None:
        self.engine, self.options, self.out, self.batch_size = engine, options, Path(out), batch_size
        #: Seconds spent so far per stage: decode (image and elements), predict (network batches), score
        #: (scores, reports, maps).
        self.seconds = {"decode": 0.0, "predict": 0.0, "score": 0.0}
        self.thresholds = Thresholds.of_card(engine.graph)
        self.norms, self.store = open_options(options)
        self.norms_warning: str | None = None
        if self.norms is not None:
            self.norms_warning = self.norms.check_graph(engine_identity(engine), options.allow_model_mismatch)

    def close(self) -> None:
        """Close the calibration store it opened: its connection would otherwise stay open until a garbage
        collection, and a process running batch after batch would pile them up past the server's limit."""
        if self.store is not None:
            self.store.close()

    def score(self, items: Sequence[BatchItem]) -> list[CreativeResult]:
        """One result per item, in order; a bad image or element spec is that item's ``error``."""
        results = []
        scored_items = self.score_creatives(items)
        start = time.perf_counter()
        for item, scored in zip(items, scored_items):
            if isinstance(scored, Exception):
                results.append(_failed(item, scored))
                continue
            # Recorded before its files are written, so a creative the store refuses leaves no report that looks
            # like a success; and before the batch commits it: a crash in between re-records, never loses.
            if self.store is not None:
                try:
                    self.store.record(item.creative_id, scored.scores, scored.smap.provenance,
                                      vertical=self.options.vertical, tags=list(self.options.tags))
                except FovealError as exc:
                    results.append(_failed(item, exc))
                    continue
            try:
                if self.options.reports:
                    self.write_report(self.out / REPORTS_DIR / item.creative_id, scored)
                if self.options.maps:
                    write_npy(self.out / MAPS_DIR / f"{item.creative_id}.npy", scored.smap.prob)
            except DiskFullError:  # every creative after it would fail the same way: the batch stops, resumable
                raise
            except FovealError as exc:  # its report's place taken by a file, say: that creative fails, not the batch
                shared = [self.out / d for d, on in ((REPORTS_DIR, self.options.reports), (MAPS_DIR, self.options.maps))
                          if on]
                if any(d.exists() and not d.is_dir() for d in shared):  # as every creative's would: stop
                    raise
                results.append(_failed(item, exc))
                continue
            results.append(CreativeResult(item.creative_id, item.image,
                                          element_rows(item, scored.scores, scored.smap.provenance),
                                          creative_row(item, scored.scores, scored.smap.provenance)))
        self.seconds["score"] += time.perf_counter() - start
        return results

    def score_creatives(self, items: Sequence[BatchItem]) -> list[Scored | Exception]:
        """Decode, read elements, predict (in network batches) and score ``items``: one :class:`Scored` or the
        exception that stopped it per item, in order."""
        t0 = time.perf_counter()
        prepared: list[_Ready | Exception] = []
        for item in items:
            try:
                prepared.append(self._prepare(item))
            except Exception as exc:  # noqa: BLE001 - one creative's failure must never stop the batch
                prepared.append(exc)
        ready = [r for r in prepared if isinstance(r, _Ready)]
        t1 = time.perf_counter()
        maps = dict(zip((r.item.creative_id for r in ready), self._predict([r.decoded for r in ready])))
        t2 = time.perf_counter()
        out: list[Scored | Exception] = []
        for r in prepared:
            if isinstance(r, Exception):
                out.append(r)
                continue
            smap = maps[r.item.creative_id]
            try:
                if isinstance(smap, Exception):
                    raise smap
                scores = score_creative(smap, r.spec.elements, norms=self.norms,
                                        format=self.options.format or r.spec.format,
                                        pass_percentile=self.options.pass_percentile,
                                        allow_model_mismatch=self.options.allow_model_mismatch)
                out.append(Scored(r.item, r.decoded, r.spec, smap, scores))
            except FovealError as exc:
                out.append(exc)
        t3 = time.perf_counter()
        self.seconds["decode"] += t1 - t0
        self.seconds["predict"] += t2 - t1
        self.seconds["score"] += t3 - t2
        return out

    def write_report(self, folder: str | Path, scored: Scored) -> None:
        """``scores.json`` (and with ``options.html`` ``overlay.png``, ``report.html``) of one creative."""
        o = self.options
        norms_info = None if self.norms is None else {
            "source": o.norms, "model": self.norms.model, "creatives": self.norms.creatives.get(scored.scores.format),
            "warning": self.norms_warning}
        doc = scores_document(scored.scores, scored.smap.provenance, image=scored.item.image,
                              elements_source=scored.spec.source, norms=norms_info, thresholds=self.thresholds)
        pixels = scored.decoded.pixels
        overlay = draw_boxes(scored.smap.overlay(pixels), scored.scores) if o.html else pixels
        write_report(folder, doc, pixels, overlay, html_report=o.html)

    def _prepare(self, item: BatchItem) -> _Ready:
        decoded = decode(item.image, self.engine.max_pixels)
        hw = decoded.pixels.shape[:2]
        if item.elements == AUTO:
            from ..detect import detected_spec

            spec = detected_spec(decoded, self.engine.max_pixels)
        elif item.elements is None:
            elements_dir = self.options.elements_dir or str(Path(item.image).parent)
            spec = load_elements(find_element_file(item.image, elements_dir), hw)
        elif item.elements[:1] in ("[", "{"):
            try:
                obj = json.loads(item.elements)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ElementSpecError(f"{item.creative_id}: malformed element JSON ({exc})") from None
            spec = parse_elements(obj, hw, f"{item.creative_id} elements")
        else:
            spec = load_elements(item.elements, hw)
        return _Ready(item, decoded, spec)

    def _predict(self, decoded: list[DecodedImage]) -> list[SaliencyMap | Exception]:
        """Maps in network batches; if a batch fails, its images run one by one so only the bad one is lost."""
        if not decoded:
            return []
        try:
            return list(self.engine.predict_batch(decoded, batch_size=self.batch_size))
        except FovealError:
            maps: list[SaliencyMap | Exception] = []
            for d in decoded:
                try:
                    maps.append(self.engine.predict(d))
                except FovealError as exc:
                    maps.append(exc)
            return maps


def _failed(item: BatchItem, exc: Exception) -> CreativeResult:
    text = str(exc) if isinstance(exc, FovealError) else f"{type(exc).__name__}: {exc}"
    return CreativeResult(item.creative_id, item.image, error=text.splitlines()[0] if text else type(exc).__name__)


def _identity(provenance: dict[str, Any]) -> dict[str, Any]:
    return {k: provenance.get(k) for k in ("model", "model_sha256", "graph_sha256", "precision")}


def element_rows(item: BatchItem, scores: CreativeScores, provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the element table (and ``scores.csv``) for one scored creative."""
    return [{"creative_id": item.creative_id, "image": item.image, "image_sha256": provenance.get("image_sha256"),
             "format": scores.format, "element": e.name, "kind": e.kind,
             "x": e.box[0], "y": e.box[1], "w": e.box[2], "h": e.box[3],
             "area_fraction": e.area_fraction, "share": e.share, "density": e.density, "lift": e.lift,
             "rank": e.rank, "percentile": e.percentile, "score": e.score, "passed": e.passed,
             "conversion_share": scores.conversion_share, "background_share": scores.background_share,
             "focus": scores.focus, "top10_share": scores.top10_share, **_identity(provenance)}
            for e in scores.elements]


def creative_row(item: BatchItem, scores: CreativeScores, provenance: dict[str, Any]) -> dict[str, Any]:
    """The creative table's row for one scored creative."""
    return {"creative_id": item.creative_id, "image": item.image, "image_sha256": provenance.get("image_sha256"),
            "format": scores.format, "height": scores.image_hw[0], "width": scores.image_hw[1],
            "elements": len(scores.elements), "conversion_share": scores.conversion_share,
            "other_elements_share": scores.other_elements_share, "background_share": scores.background_share,
            "focus": scores.focus, "top10_share": scores.top10_share, **_identity(provenance)}
