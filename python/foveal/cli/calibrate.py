"""``foveal calibrate --db URL -o DIR``: do the predicted scores still rank creatives by their in-market results?

Per segment (``--by vertical,format``) and rolling window: Spearman and Kendall correlations of each predicted
score with the outcome rate (bootstrap 95 % intervals), a decile table, a drift flag when the recent window's
correlation fell below the reference window's by more than chance (Benjamini–Hochberg across segments), and, with
``--norms``, proposed pass thresholds written as new norms files.  Writes calibration.json and calibration.html;
exits 0 whether or not drift is flagged (the flags are in the outputs and on stderr).
"""
from __future__ import annotations

import argparse
import sys
from datetime import date
from types import ModuleType

from ..store.outcomes import parse_day
from . import DB_URL, PERCENTILE, check_out_folder, extra_arg, int_arg, name_arg, number_arg, path_arg

#: The analysis' own checks (foveal.calibration needs its extra: see extra_arg).
ANALYSIS, STATS = "foveal.calibration.analysis", "foveal.calibration.stats"


def register(sub: argparse._SubParsersAction) -> None:
    # The docstring's reST ``quotes`` would reach the terminal as typed; the other commands' help quotes `so`.
    p = sub.add_parser("calibrate", help="correlate predictions with outcomes, flag drift, propose thresholds",
                       description=__doc__.split("\n\n")[1].replace("``", "`"))
    p.add_argument("--db", type=DB_URL, required=True, metavar="URL", help="the store (sqlite:///foveal.db or "
                   "postgresql+psycopg://USER@HOST/DB)")
    p.add_argument("-o", "--out", type=path_arg, required=True, metavar="DIR",
                   help="output folder, the calibrations' own: a run replaces its files whole (created if needed)")
    p.add_argument("--by", type=extra_arg(ANALYSIS, _segments, "by "), default=(), metavar="FIELDS",
                   help="segment by any of vertical,format,tag (default: all creatives together)")
    p.add_argument("--window", type=extra_arg(ANALYSIS, _window), default="28d", metavar="DAYS",
                   help="rolling window length, e.g. 28d or 4w (default: %(default)s)")
    p.add_argument("--step", type=extra_arg(ANALYSIS, lambda analysis, text: analysis.parse_days(text)), default=None,
                   metavar="DAYS", help="distance between window ends (default: 7d, or the window if shorter)")
    p.add_argument("--metric", choices=("ctr", "cvr"), default="ctr",
                   help="ctr = clicks/impressions, cvr = conversions/clicks (default: %(default)s)")
    p.add_argument("--score", type=extra_arg(ANALYSIS, lambda analysis, text: analysis.Settings(score=text).score,
                                             "score "),
                   metavar="NAME", help="the score plotted, binned and thresholded (default: cta_share "
                   "for ctr, conversion_share for cvr); every score is correlated and tested")
    p.add_argument("--min-impressions", type=int_arg(1), default=1000, metavar="N",
                   help="a creative counts in a window with at least N impressions there (default: %(default)s)")
    p.add_argument("--min-clicks", type=int_arg(0), default=20, metavar="N",
                   help="and, for cvr, at least N clicks (default: %(default)s)")
    p.add_argument("--min-creatives", type=int_arg(5), default=10, metavar="N",
                   help="correlate only with at least N such creatives (default: %(default)s)")
    p.add_argument("--alpha", type=number_arg(0, 1, above=True, below=True), default=0.05,
                   help="false-alarm level (BH q value) for drift flags (default: %(default)s)")
    p.add_argument("--bootstrap", type=extra_arg(STATS, lambda stats, text: int_arg(100, stats.MAX_BOOTSTRAP)(text)),
                   default=1000, metavar="B",
                   help="bootstrap resamples for the intervals, 100 to 100000 (default: %(default)s)")
    p.add_argument("--seed", type=int_arg(0), default=0, help="bootstrap seed (default: %(default)s)")
    p.add_argument("--until", type=_day, metavar="YYYY-MM-DD",
                   help="analyse outcomes up to this day (default: the last one)")
    p.add_argument("--norms", type=path_arg, metavar="FILE", help="norms.json: propose pass thresholds against it "
                   "(written to DIR/proposed_norms/, never over FILE)")
    p.add_argument("--pass-percentile", type=PERCENTILE, default=70.0, metavar="P",
                   help="the current pass percentile where the norms set none (default: %(default)g)")
    p.add_argument("--allow-model-mismatch", action="store_true",
                   help="use --norms built with another model graph than the predictions' (a warning, not an error)")
    p.add_argument("--graph", type=name_arg, metavar="SHA", help="use predictions of the model graph whose sha256 "
                   "starts with SHA (needed when the store holds several)")
    p.set_defaults(handler=run, parser=p)


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _segments(analysis: ModuleType, text: str) -> tuple[str, ...]:
    """``vertical,format`` → the fields, checked as the analysis checks them; none (an unset shell variable?) is
    refused rather than taken for the option left out."""
    fields = tuple(f.strip() for f in text.split(",") if f.strip())
    if not fields:
        raise argparse.ArgumentTypeError(f"no field given in {text!r}; name fields among "
                                         f"{', '.join(analysis.SEGMENT_FIELDS)}, or leave the option out")
    return analysis.Settings(by=fields).by


def _window(analysis: ModuleType, text: str) -> int:
    days = analysis.parse_days(text)
    if days < 2:  # a correlation over one day: the step, which must not exceed it, is the run's check
        raise argparse.ArgumentTypeError(f"a window needs 2 days or more, got {text!r}")
    return days


def run(args: argparse.Namespace) -> int:
    from ..calibration import Settings, calibrate, write_calibration
    from ..calibration.calibrate import check_output_folder
    from ..scoring.norms import load_norms
    from ..store import Store

    if args.step is None:
        args.step = min(7, args.window)
    elif args.step > args.window:  # windows that leave days out between them
        args.parser.error(f"--step {args.step}d is longer than --window {args.window}d; give a step up to the window")
    check_out_folder(args.out)  # before the analysis, which may take minutes
    check_output_folder(args.out)
    settings = Settings(by=args.by, window_days=args.window, step_days=args.step, metric=args.metric,
                        min_impressions=args.min_impressions, min_clicks=args.min_clicks,
                        min_creatives=args.min_creatives, alpha=args.alpha, bootstrap=args.bootstrap, seed=args.seed,
                        score=args.score, pass_percentile=args.pass_percentile, until=args.until)
    norms = None if args.norms is None else load_norms(args.norms)
    with Store(args.db, read_only=True) as store:  # it only reads: an existing store, even one it may not write
        result = calibrate(store, settings, norms=norms, graph=args.graph,
                           allow_model_mismatch=args.allow_model_mismatch)
    paths = write_calibration(args.out, result)
    doc = result.document
    for message in [doc.get("norms_warning"), *(flag["message"] for flag in doc["flags"])]:
        if message:
            print(f"foveal: warning: {message}", file=sys.stderr)
    if not args.quiet:
        segs = doc["segments"]
        print(f"foveal: calibrated {len(segs)} segment(s), {sum(s['flagged'] for s in segs)} flagged for drift, "
              f"{len(result.proposals)} proposed norms file(s) → {paths[1]}", file=sys.stderr)
    return 0
