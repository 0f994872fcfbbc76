"""``foveal score``: attention scores, recommendations and a report for one creative or a folder of them.

One creative::

    foveal score creative.png --elements creative.json -o out/ [--norms norms.json]

writes ``out/scores.json``, ``out/overlay.png`` and ``out/report.html``.

A folder::

    foveal score creatives/ --elements-dir elements/ -o out/

writes ``out/<name>/`` per creative and one row per element to ``out/scores.csv``.  It resumes: after each
creative its rows are flushed and fsynced, then its name is appended (and fsynced) to ``out/scores.journal``.  On
restart creatives in the journal are skipped and rows of any creative missing from it (an interrupted one) are
dropped before scoring goes on, so no row is lost or duplicated.  ``out/scores.settings.json`` records the model,
norms, format and pass percentile; resuming with different ones is refused.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

from ..errors import FovealError, InputError
from ..fileio import atomic_write, write_json, write_text
from ..imageio import DecodedImage, decode
from ..models import file_sha256
from ..progress import progress
from ..saliency_map import SaliencyMap
from ..scoring.elements import FORMAT_SUMMARY, ElementSpec, find_element_file, load_elements
from ..scoring.norms import Norms, engine_identity, load_norms
from ..scoring.recommend import Thresholds
from ..scoring.report import draw_boxes, score_document, write_report
from ..scoring.scores import DEFAULT_PASS_PERCENTILE, CreativeScores
from . import add_engine_options, make_engine

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
AUTO = "auto"  # --elements auto: detect the elements instead of reading a file
CSV_NAME, JOURNAL_NAME, SETTINGS_NAME = "scores.csv", "scores.journal", "scores.settings.json"
CSV_HEADER = ("creative", "image_sha256", "format", "model", "model_sha256", "element", "kind", "x", "y", "w", "h",
              "area_fraction", "share", "density", "lift", "rank", "percentile", "score", "passed",
              "conversion_share", "background_share", "focus", "top10_share")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score a creative's elements (CTA, headline, logo...) and write a report",
        description="Score element boxes on the predicted saliency map; write scores.json, overlay.png and "
                    "report.html (a folder: one subfolder per creative plus scores.csv, resumable).",
        epilog=FORMAT_SUMMARY, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=Path, metavar="IMAGE|DIR", help="a creative, or a folder of creatives")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--elements", type=_element_source, metavar="FILE|auto",
                   help="element file (.json/.csv) for IMAGE (default: IMAGE's name with .json or .csv beside it); "
                        "'auto': detect the elements (pip install 'foveal[detect]'), for a folder too")
    p.add_argument("--elements-dir", type=Path, metavar="EDIR",
                   help="folder of element files named like the creatives (default: DIR itself)")
    add_scoring_options(p)
    p.add_argument("--no-report", action="store_true", help="write scores.json only, no overlay.png/report.html")
    add_store_options(p)
    add_engine_options(p)
    p.set_defaults(handler=run)


def add_store_options(p: argparse.ArgumentParser) -> None:
    """--db/--creative-id/--vertical/--tag: record what was scored in a calibration store."""
    p.add_argument("--db", metavar="URL", help="also record the scores in this store (sqlite:///foveal.db or "
                   "postgresql+psycopg://USER@HOST/DB) for `foveal calibrate`")
    p.add_argument("--creative-id", metavar="ID", help="the creative's id in the store, as your outcome files name "
                   "it (default: the image's name without extension; a folder always uses the names)")
    p.add_argument("--vertical", metavar="V", help="the creative's vertical (retail, travel...) in the store")
    p.add_argument("--tag", action="append", default=[], metavar="T", help="a free tag in the store (repeatable)")


def open_store(args: argparse.Namespace):
    """The store named by --db, or None; the store options without --db are refused."""
    if args.db is None:
        if args.creative_id or args.vertical or args.tag:
            raise InputError("--creative-id, --vertical and --tag describe the creative in a store: add --db URL")
        return None
    from ..store import Store

    return Store(args.db)


def add_scoring_options(p: argparse.ArgumentParser) -> None:
    """--norms/--format/--pass-percentile/--allow-model-mismatch (shared with commands that score)."""
    p.add_argument("--norms", type=Path, metavar="FILE", help="norms.json from `foveal norms build`: enables "
                   "percentile, score (0-100) and pass/fail")
    p.add_argument("--format", metavar="NAME", help="format to compare against in the norms (default: the "
                   "element file's \"format\", else the image size WxH)")
    p.add_argument("--pass-percentile", type=float, default=DEFAULT_PASS_PERCENTILE, metavar="P",
                   help="an element passes at or above this percentile of its norm (default: %(default)g)")
    p.add_argument("--allow-model-mismatch", action="store_true",
                   help="use norms built with another model or graph (precision); a warning is recorded in the "
                        "output")


@dataclass(frozen=True)
class Predicted:
    """One creative ready to score: its decoded pixels, validated elements and saliency map."""

    image: Path
    elements: Path
    decoded: DecodedImage
    spec: ElementSpec
    smap: SaliencyMap


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; names (stems) must be unique."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    stems: dict[str, Path] = {}
    for p in images:
        if p.stem in stems:
            raise InputError(f"{stems[p.stem].name} and {p.name} share the name {p.stem!r}; their outputs and element "
                             "files would collide, rename one")
        stems[p.stem] = p
    return images


def iter_predicted(engine, items: Sequence[tuple[Path, Path]], batch_size: int,
                   ) -> Iterator[tuple[Path, Predicted | FovealError]]:
    """Decode, validate and predict ``(image, element file)`` pairs in network batches; yield one result per
    creative, in order: a :class:`Predicted`, or the :class:`FovealError` that stopped it."""
    for start in range(0, len(items), batch_size):
        ready: list[tuple[Path, Path, DecodedImage, ElementSpec]] = []
        failed: dict[Path, FovealError] = {}
        for image, elements in items[start:start + batch_size]:
            try:
                decoded = decode(image, engine.max_pixels)
                ready.append((image, elements, decoded, _resolve_elements(elements, decoded)))
            except FovealError as exc:
                failed[image] = exc
        maps = iter(engine.predict_batch([r[2] for r in ready], batch_size=batch_size)) if ready else iter(())
        by_image = {r[0]: Predicted(*r, next(maps)) for r in ready}
        for image, _ in items[start:start + batch_size]:
            yield image, by_image.get(image) or failed[image]


def _element_source(text: str) -> Path | str:
    return AUTO if text == AUTO else Path(text)


def _resolve_elements(elements: Path | str, decoded: DecodedImage) -> ElementSpec:
    """The one place ``--elements auto`` turns into elements: detected on the decoded creative."""
    if elements == AUTO:
        from ..detect import detected_spec

        return detected_spec(decoded)
    return load_elements(elements, decoded.pixels.shape[:2])


def _load_norms(args: argparse.Namespace, engine) -> tuple[Norms | None, str | None]:
    if args.norms is None:
        return None, None
    norms = load_norms(args.norms)
    return norms, norms.check_graph(engine_identity(engine), args.allow_model_mismatch)


def _score(p: Predicted, args: argparse.Namespace, norms: Norms | None, warning: str | None,
           thresholds: Thresholds) -> tuple[CreativeScores, dict]:
    return score_document(p.smap, p.spec.elements, p.smap.provenance, image=str(p.image),
                          elements_source=str(p.elements), norms=norms,
                          norms_source=None if args.norms is None else str(args.norms), norms_warning=warning,
                          format=args.format or p.spec.format, pass_percentile=args.pass_percentile,
                          allow_model_mismatch=args.allow_model_mismatch, thresholds=thresholds)


def _write_outputs(out: Path, p: Predicted, scores: CreativeScores, doc: dict, html_report: bool) -> None:
    pixels = p.decoded.pixels
    overlay = draw_boxes(p.smap.overlay(pixels), scores) if html_report else pixels
    write_report(out, doc, pixels, overlay, html_report=html_report)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.pass_percentile <= 100:
        raise InputError(f"--pass-percentile must be in (0, 100], got {args.pass_percentile:g}")
    if args.elements == AUTO:
        from ..detect import default_detector

        default_detector()  # without the detect extra, fail once, before any work
    if args.image.is_dir():
        return run_batch(args)
    if args.elements_dir is not None:
        raise InputError("--elements-dir is for a folder of creatives; for one image use --elements FILE")
    if not args.image.is_file():
        raise InputError(f"image not found: {args.image}")
    elements = args.elements or find_element_file(args.image, args.image.parent)
    store = open_store(args)
    engine = make_engine(args)
    norms, warning = _load_norms(args, engine)
    result = next(iter_predicted(engine, [(args.image, elements)], 1))[1]
    if isinstance(result, FovealError):
        raise result
    scores, doc = _score(result, args, norms, warning, Thresholds.of_card(engine.graph))
    _write_outputs(args.out, result, scores, doc, not args.no_report)
    if store is not None:
        store.record(args.creative_id or args.image.stem, scores, result.smap.provenance, vertical=args.vertical,
                     tags=args.tag)
    if warning:
        print(f"foveal: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(f"foveal: scored {len(scores.elements)} element(s) of {args.image.name} "
              f"({engine.model.name} {engine.precision} on {engine.backend}) → {args.out}", file=sys.stderr)
    return 0


def csv_rows(name: str, scores: CreativeScores, doc: dict) -> list[list[object]]:
    """The ``scores.csv`` rows of one creative, in :data:`CSV_HEADER` order."""
    def cell(v: object) -> object:
        return "" if v is None else v
    rows = []
    for e in scores.elements:
        rows.append([cell(v) for v in (
            name, doc["input"]["image_sha256"], scores.format, doc["model"]["name"], doc["model"]["sha256"],
            e.name, e.kind, *e.box, e.area_fraction, e.share, e.density, e.lift, e.rank, e.percentile, e.score,
            e.passed, scores.conversion_share, scores.background_share, scores.focus, scores.top10_share)])
    return rows


def _append_durably(fh: IO[str], text: str) -> None:
    """Append and fsync: the rows (or journal line) survive a crash before the next step starts."""
    fh.write(text)
    fh.flush()
    os.fsync(fh.fileno())


def _csv_text(rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def batch_settings(args: argparse.Namespace, engine) -> dict[str, object]:
    """What every row of one ``scores.csv`` must share: a resumed run with other settings would mix numbers."""
    return {"model": engine.model.name, "model_sha256": engine.model.sha256,
            "norms_sha256": None if args.norms is None else file_sha256(args.norms),
            "format": args.format, "pass_percentile": args.pass_percentile}


def resume(out: Path, settings: dict[str, object]) -> set[str]:
    """Prepare ``out`` for (re)starting a batch: return creatives already done, and make ``scores.csv`` hold
    exactly their rows (dropping any rows of an interrupted creative).  Refuses a folder started with other
    ``settings`` (model, norms, format, pass percentile)."""
    journal, table, saved = out / JOURNAL_NAME, out / CSV_NAME, out / SETTINGS_NAME
    if saved.exists():
        try:
            before = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{saved}: unreadable ({exc}); use a new output folder") from None
        changed = sorted(k for k in settings.keys() | before.keys() if before.get(k) != settings.get(k))
        if changed:
            raise InputError(f"{out} holds a run with other settings ({', '.join(changed)} differ): resuming would "
                             "mix incomparable rows in scores.csv; use a new output folder")
    else:
        write_json(saved, settings)
    done: set[str] = set()
    if journal.exists():
        text = journal.read_text(encoding="utf-8")
        # A line without its newline was cut by a crash: that creative is not done.
        done = {json.loads(line) for line in text.split("\n")[:-1] if line}
    if not table.exists():
        if done:  # rows of done creatives are gone: forget them so they are scored again
            write_text(journal, "")
            done = set()
        write_text(table, _csv_text([CSV_HEADER]))
        return done
    with table.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0]) != CSV_HEADER:
        raise InputError(f"{table}: header differs from this foveal version's ({','.join(CSV_HEADER[:4])},...); "
                         "use a new output folder")
    keep = [r for r in rows[1:] if r and r[0] in done]
    if len(keep) != len(rows) - 1 or not table.read_text(encoding="utf-8").endswith("\n"):
        with atomic_write(table, "w") as fh:
            fh.write(_csv_text([CSV_HEADER, *keep]))
    return done


def run_batch(args: argparse.Namespace) -> int:
    if args.elements not in (None, AUTO):
        raise InputError("--elements names one file; for a folder of creatives use --elements-dir EDIR or "
                         "--elements auto")
    images = list_images(args.image)
    reserved = [p.name for p in images if p.stem in (CSV_NAME, JOURNAL_NAME, SETTINGS_NAME)]
    if reserved:
        raise InputError(f"{reserved[0]}: its output folder would collide with the batch's own files; rename it")
    elements_dir = args.elements_dir or args.image
    if not elements_dir.is_dir():
        raise InputError(f"--elements-dir {elements_dir}: not a folder")
    if args.creative_id:
        raise InputError("--creative-id names one creative; a folder's creatives are recorded by their file names")
    store = open_store(args)
    engine = make_engine(args)
    norms, warning = _load_norms(args, engine)
    if warning:
        print(f"foveal: warning: {warning}", file=sys.stderr)
    done = resume(args.out, batch_settings(args, engine))
    thresholds = Thresholds.of_card(engine.graph)
    todo, failures = [], 0
    for image in images:
        if image.stem in done:
            continue
        try:
            todo.append((image, AUTO if args.elements == AUTO else find_element_file(image, elements_dir)))
        except FovealError as exc:
            failures += 1
            print(f"foveal: error: {exc}", file=sys.stderr)
    scored = 0
    with (args.out / CSV_NAME).open("a", encoding="utf-8", newline="") as table, \
            (args.out / JOURNAL_NAME).open("a", encoding="utf-8") as journal:
        results = iter_predicted(engine, todo, args.batch_size)
        for image, result in progress(results, total=len(todo), label="score", enabled=not args.quiet):
            if isinstance(result, FovealError):
                failures += 1
                print(f"foveal: error: {image.name}: {result}", file=sys.stderr)
                continue
            scores, doc = _score(result, args, norms, warning, thresholds)
            _write_outputs(args.out / image.stem, result, scores, doc, not args.no_report)
            _append_durably(table, _csv_text(csv_rows(image.stem, scores, doc)))
            if store is not None:  # before the journal: a crash in between re-records, never loses, a creative
                store.record(image.stem, scores, result.smap.provenance, vertical=args.vertical, tags=args.tag)
            _append_durably(journal, json.dumps(image.stem) + "\n")
            scored += 1
    if not args.quiet:
        skipped = len(done & {image.stem for image in images})
        print(f"foveal: scored {scored} creative(s), {skipped} already done, {failures} failed → "
              f"{args.out / CSV_NAME}", file=sys.stderr)
    return 1 if failures else 0
