"""``foveal outcomes import FILE... --db URL``: load in-market results (impressions, clicks, conversions) into a
calibration store.

Each file is validated whole (negative counts, clicks above impressions or conversions above clicks, bad dates,
unknown creative ids are reported with their line numbers) and imported in one transaction: all its rows or none.
A bad file stops the import: the files before it stay imported, the files after it are named in the error.
Rows are keyed by creative, date and source, so importing a file again changes nothing and a corrected file updates
its rows.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import FovealError
from ..store.outcomes import FIELDS, REQUIRED, parse_mapping
from . import DB_URL, _add_global_options, library_arg, path_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("outcomes", help="import in-market outcomes (impressions, clicks...) into a store",
                       description="Outcomes are what `foveal calibrate` compares predictions with.")
    actions = p.add_subparsers(dest="outcomes_command", required=True, metavar="ACTION")
    i = actions.add_parser("import", help="validate and import outcome files (CSV or Parquet)",
                           description=__doc__.split("\n\n")[1])
    i.add_argument("files", type=path_arg, nargs="+", metavar="FILE", help=".csv or .parquet outcome file(s)")
    i.add_argument("--db", type=DB_URL, required=True, metavar="URL",
                   help="the store: sqlite:///foveal.db or postgresql+psycopg://USER@HOST/DB")
    i.add_argument("--map", action="append", default=[], type=library_arg(_pair, "mapping "), metavar="COLUMN=FIELD",
                   help=f"read the file's COLUMN as FIELD ({', '.join(FIELDS)}; {', '.join(REQUIRED)} required); "
                        "repeatable")
    _add_global_options(i, default=argparse.SUPPRESS)
    i.set_defaults(handler=run_import)


def _pair(text: str) -> str:
    """One COLUMN=FIELD, checked alone; a column or field mapped twice is the run's check."""
    parse_mapping([text])
    return text


def run_import(args: argparse.Namespace) -> int:
    from ..store import Store

    mapping = parse_mapping(args.map)
    with Store(args.db, create=False) as store:  # outcomes belong to creatives already recorded there
        # One transaction per file: a bad file stops here, earlier files stay imported, and the files after it are
        # named (a corrected file updates rows, so their order counts; a rerun of the bad file alone misses them).
        for n, path in enumerate(args.files):
            try:
                summary = store.import_outcomes(path, mapping)
            except FovealError as exc:
                rest = args.files[n + 1:]
                if not rest:
                    raise
                raise FovealError(f"{exc}; the files after it were not imported either: "
                                  f"{', '.join(map(str, rest))}") from None
            if not args.quiet:
                print(f"foveal: {path}: {summary.rows} row(s): {summary.inserted} new, {summary.updated} updated, "
                      f"{summary.unchanged} unchanged", file=sys.stderr)
    return 0
