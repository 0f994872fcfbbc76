"""``foveal score``: attention scores, recommendations and a report for one creative, or a resumable batch.

One creative::

    foveal score creative.png --elements creative.json -o out/ [--norms norms.json]

writes ``out/scores.json``, ``out/overlay.png`` and ``out/report.html``.

A batch (a folder, a list file of image paths, or a Parquet/CSV table of paths with optional boxes and ids)::

    foveal score creatives/ --elements-dir elements/ -o out/ [--ray [ADDRESS]]

writes one row per element to ``out/scores.csv`` and ``out/elements/*.parquet``, one row per creative to
``out/creatives/*.parquet``, failures to ``out/errors.parquet``/``errors.csv``, and with reports
``out/reports/<id>/``.  It resumes: a rerun skips creatives already written, and after a kill each creative ends
up exactly once (see foveal.batch).  Resuming with another model, graph, precision, norms, format or pass
percentile is refused.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from ..batch import BatchItem, BatchOptions, BatchSummary, Scorer, is_batch_input, read_inputs, run_batch
from ..batch.inputs import check_creative_id
from ..batch.run import COMMIT_EVERY, own_tables
from ..batch.scorer import AUTO
from ..errors import InputError
from ..scoring.elements import FORMAT_SUMMARY, find_element_file
from ..scoring.scores import DEFAULT_PASS_PERCENTILE
from . import (DB_URL, PERCENTILE, add_engine_options, check_out_folder, extra_arg, int_arg, library_arg,
               make_engine, name_arg, number_arg, path_arg)

#: The store's module, with its check of a label (foveal.store needs its extra: see extra_arg).
STORE = "foveal.store.store"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score a creative's elements (CTA, headline, logo...) and write a report",
        description="Score element boxes on the predicted saliency map; write scores.json, overlay.png and "
                    "report.html. A batch (folder, list file .txt, table .parquet/.csv) writes scores.csv and "
                    "Parquet tables, resumably, in one process or on Ray (--ray).",
        epilog=FORMAT_SUMMARY, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", type=path_arg, metavar="INPUT",
                   help="a creative, or a batch: a folder of creatives, a list file (.txt, one image path a line) "
                        "or a table (.parquet/.csv: column image, optional creative_id and elements, or one row "
                        "per element with name,kind,x,y,w,h)")
    p.add_argument("-o", "--out", type=path_arg, required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--elements", type=_element_source, metavar="FILE|auto",
                   help="element file (.json/.csv) for IMAGE (default: IMAGE's name with .json or .csv beside it); "
                        "'auto': detect the elements (pip install 'foveal[detect]'), for a batch too")
    p.add_argument("--elements-dir", type=path_arg, metavar="EDIR",
                   help="batch: folder of element files named like the creatives (default: each image's folder)")
    add_scoring_options(p)
    p.add_argument("--no-report", action="store_true",
                   help="one creative: scores.json only; a batch: no reports/ folder, tables only")
    p.add_argument("--maps", action="store_true", help="batch: also write maps/<id>.npy (float32, sums to 1)")
    p.add_argument("--commit-every", type=int_arg(1), default=COMMIT_EVERY, metavar="N",
                   help="batch: make results durable every N creatives (or 30 s); a crash loses at most that "
                        "much work (default: %(default)s)")
    add_store_options(p)
    add_ray_options(p)
    add_engine_options(p)
    p.set_defaults(handler=run)


def _element_source(text: str) -> Path | str:
    return AUTO if text == AUTO else path_arg(text)


def _creative_id(text: str) -> str:
    """--creative-id: an id that names files, and that the store (--creative-id needs --db) takes: it refused a
    blank one only after the creative was scored."""
    library_arg(lambda one: check_creative_id(one, "--creative-id"), "--creative-id: creative_id ")(text)
    extra_arg(STORE, lambda store, one: store.check_label(one, "creative id"), "creative id ")(text)
    return text


def add_store_options(p: argparse.ArgumentParser) -> None:
    """--db/--creative-id/--vertical/--tag: record what was scored in a calibration store."""
    p.add_argument("--db", type=DB_URL, metavar="URL", help="also record the scores in this store "
                   "(sqlite:///foveal.db or postgresql+psycopg://USER@HOST/DB) for `foveal calibrate`")
    p.add_argument("--creative-id", type=_creative_id, metavar="ID",
                   help="the creative's id in the store, as your outcome files name "
                   "it (default: the image's name without extension; a batch uses its creative ids)")
    p.add_argument("--vertical", type=extra_arg(STORE, lambda store, text: store.check_label(text, "vertical"),
                                                "vertical "),
                   metavar="V", help="the creative's vertical (retail, travel...) in the store")
    p.add_argument("--tag", action="append", default=[], metavar="T", help="a free tag in the store (repeatable)",
                   type=extra_arg(STORE, lambda store, text: store.check_label(text, "tag"), "tag "))


def add_scoring_options(p: argparse.ArgumentParser) -> None:
    """--norms/--format/--pass-percentile/--allow-model-mismatch (shared with commands that score)."""
    p.add_argument("--norms", type=path_arg, metavar="FILE", help="norms.json from `foveal norms build`: enables "
                   "percentile, score (0-100) and pass/fail")
    p.add_argument("--format", type=name_arg, metavar="NAME",
                   help="format to compare against in the norms (default: the element file's \"format\", else the "
                        "image size WxH)")
    p.add_argument("--pass-percentile", type=PERCENTILE, default=DEFAULT_PASS_PERCENTILE, metavar="P",
                   help="an element passes at or above this percentile of its norm (default: %(default)g)")
    p.add_argument("--allow-model-mismatch", action="store_true",
                   help="use norms built with another model (a warning is recorded in the output)")


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """--ray [ADDRESS], --actors, --cpus-per-actor, --gpus-per-actor (needs ``pip install "foveal[ray]"``)."""
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the batch on Ray: 'local' (the default) starts a cluster in this process; an address "
                        "(host:6379, auto) joins one. A GPU --device gets GPU actors (--gpus-per-actor)")
    p.add_argument("--actors", type=int_arg(1), metavar="N",
                   help="--ray: actors, each with its own engine (default: the cluster's GPUs / --gpus-per-actor for a "
                        "GPU device, else its CPUs / --cpus-per-actor)")
    p.add_argument("--cpus-per-actor", type=int_arg(1), default=1, metavar="C",
                   help="--ray: CPUs per actor (and, on CPU actors, their threads) (default: %(default)s)")
    p.add_argument("--gpus-per-actor", type=number_arg(0, 1, above=True), default=1.0, metavar="G",
                   help="--ray with a GPU --device: GPU share per actor; 0.25 packs 4 actors on a GPU so their "
                        "decoding runs in parallel (default: %(default)g)")


def options_from_args(args: argparse.Namespace) -> BatchOptions:
    """The library's :class:`BatchOptions` for these arguments."""
    return BatchOptions(
        elements_dir=None if getattr(args, "elements_dir", None) is None else str(args.elements_dir),
        norms=None if args.norms is None else str(args.norms), format=args.format,
        pass_percentile=args.pass_percentile, allow_model_mismatch=args.allow_model_mismatch,
        reports=not getattr(args, "no_report", False), html=True, maps=getattr(args, "maps", False),
        db=getattr(args, "db", None), vertical=getattr(args, "vertical", None), tags=tuple(getattr(args, "tag", ())))


def run(args: argparse.Namespace) -> int:
    check_out_folder(args.out)
    options = options_from_args(args)
    if options.db is None and (args.creative_id or args.vertical or args.tag):
        raise InputError("--creative-id, --vertical and --tag describe the creative in a store: add --db URL")
    if args.elements == AUTO:
        from ..detect import default_detector

        default_detector()  # without the detect extra, fail once, before any work
    if is_batch_input(args.image):
        return run_batch_cli(args, options)
    # First: a mistyped folder is not a reason to give up a batch's flags. A pipe, a device or a loop of links is
    # there, and reading it below says what it is.
    if not os.path.lexists(args.image):
        raise InputError(f"{args.image}: not found (give an image, a folder of images, a list file .txt or a table "
                         ".parquet/.csv)")
    for flag, given, instead in (("--elements-dir", args.elements_dir, "for one image use --elements FILE"),
                                 ("--maps", args.maps, "for one image's map use `foveal predict IMAGE --npy`"),
                                 ("--ray", args.ray, "one image runs here: leave it out")):
        if given:
            raise InputError(f"{flag} is for a batch (folder, list file or table); {instead}")
    elements = args.elements or find_element_file(args.image, args.image.parent)
    engine = make_engine(args)
    scorer = Scorer(engine, replace(options, html=not args.no_report))
    item = BatchItem(args.creative_id or args.image.stem, str(args.image), str(elements))
    scored = scorer.score_creatives([item])[0]
    if isinstance(scored, Exception):
        raise scored
    if scorer.store is not None:  # first: a creative the store refuses gets no report
        scorer.store.record(item.creative_id, scored.scores, scored.smap.provenance, vertical=options.vertical,
                            tags=list(options.tags))
    scorer.write_report(args.out, scored)
    if scorer.norms_warning:
        print(f"foveal: warning: {scorer.norms_warning}", file=sys.stderr)
    if not args.quiet:
        print(f"foveal: scored {len(scored.scores.elements)} element(s) of {args.image.name} "
              f"({engine.model.name} {engine.precision} on {engine.backend}) → {args.out}", file=sys.stderr)
    return 0


def run_batch_cli(args: argparse.Namespace, options: BatchOptions) -> int:
    if args.elements not in (None, AUTO):
        raise InputError("--elements names one file; for a batch use --elements-dir EDIR (or an elements column), "
                         "or --elements auto")
    if args.elements == AUTO and options.elements_dir is not None:  # detection would ignore the folder's files
        raise InputError("--elements auto detects every creative's elements, so --elements-dir would be ignored; "
                         "give one of them")
    if args.creative_id:
        raise InputError("--creative-id names one creative; a batch records each creative under its own id")
    if os.path.realpath(args.image) in own_tables(args.out):  # the run rewrites it: once the work is done, refused
        raise InputError(f"{args.image} is one of the tables this batch rewrites in {args.out}; copy it out first "
                         f"(cp {args.image} retry{args.image.suffix}) and score that copy into the same folder")
    items = read_inputs(args.image)
    if args.elements == AUTO:
        items = [item if item.elements is not None else replace(item, elements=AUTO) for item in items]
    if args.ray is not None:
        from ..batch.on_ray import EngineSpec, run_batch_on_ray

        logging.getLogger("ray").setLevel(logging.WARNING)
        quiet_ray_data(args.verbose)
        spec = EngineSpec(args.model, args.device, args.precision, int(args.max_pixels))
        summary = run_batch_on_ray(items, args.out, spec, options, address=args.ray, actors=args.actors,
                                   cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                                   batch_size=args.batch_size,
                                   commit_every=args.commit_every, show_progress=not args.quiet)
    else:
        for flag, given in (("--actors", args.actors), ("--cpus-per-actor", args.cpus_per_actor != 1),
                            ("--gpus-per-actor", args.gpus_per_actor != 1)):
            if given:
                raise InputError(f"{flag} sizes Ray actors; add --ray to run on Ray")
        summary = run_batch(items, args.out, make_engine(args), options, batch_size=args.batch_size,
                            commit_every=args.commit_every, show_progress=not args.quiet)
    return report_summary(summary, args.quiet)


def quiet_ray_data(verbose: bool) -> None:
    """Ray Data prints its own lines to the console (each run's start, plan and end, that its progress bars are
    off, at INFO and WARNING; a failed run's traceback at ERROR, which the command then says in one line), between
    the command's progress lines; it keeps them in its log file in the Ray session folder.  Its console handler is
    turned off, unless ``--verbose``."""
    try:
        import ray.data  # noqa: F401 - sets up the "ray.data" logger and its handlers (once per process)
    except ImportError:
        return  # run_batch_on_ray says what to install
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.INFO if verbose else logging.CRITICAL + 1)


#: Failures listed on the terminal at the end of a batch; all of them are in OUT/errors.csv and errors.parquet.
ERRORS_SHOWN = 20


def report_summary(summary: BatchSummary, quiet: bool) -> int:
    """Print the batch's warning, failures (the first ``ERRORS_SHOWN``) and totals; exit status 1 when any creative
    failed."""
    if summary.norms_warning:
        print(f"foveal: warning: {summary.norms_warning}", file=sys.stderr)
    for e in summary.errors[:ERRORS_SHOWN]:
        print(f"foveal: error: {e['creative_id']}: {e['error']}", file=sys.stderr)
    if summary.failed > ERRORS_SHOWN:
        # A batch of millions with a bad source can fail thousands; the table, not the terminal, is the place to
        # read them (and a rerun retries them).
        print(f"foveal: error: {summary.failed - ERRORS_SHOWN} more failed creative(s): all "
              f"{summary.failed} are in {summary.out / 'errors.csv'}", file=sys.stderr)
    if not quiet:
        print(f"foveal: scored {summary.scored} creative(s), {summary.skipped} already done, {summary.failed} failed "
              f"→ {summary.out}", file=sys.stderr)
    return 1 if summary.failed else 0
