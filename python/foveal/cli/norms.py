"""``foveal norms build DIR --elements EDIR -o norms.json``: reference shares for exact percentiles.

Scores every creative in DIR (your top performers) with the element file of the same name from EDIR, and stores
the sorted element shares per format and kind, with the model's name and sha256.  A bad reference creative stops
the build (nothing is written): silently dropping one would shift every percentile computed from the norms.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..batch import BatchItem, BatchOptions, Scorer, read_inputs
from ..errors import InputError
from ..fileio import note_input, write_json
from ..progress import progress
from ..scoring.elements import find_element_file
from ..scoring.norms import build_norms, engine_identity
from . import _add_global_options, add_engine_options, check_out_file, make_engine, name_arg, path_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("norms", help="build norms (reference shares) from your best creatives",
                       description="Norms turn shares into percentiles, 0-100 scores and pass/fail.")
    actions = p.add_subparsers(dest="norms_command", required=True, metavar="ACTION")
    b = actions.add_parser("build", help="score reference creatives and store their element shares",
                           description=__doc__.split("\n\n")[1])
    b.add_argument("folder", type=path_arg, metavar="DIR", help="folder of reference creatives")
    b.add_argument("--elements", type=path_arg, metavar="EDIR",
                   help="folder of element files named like the creatives (default: DIR itself)")
    b.add_argument("--format", type=name_arg, metavar="NAME",
                   help="format name for every creative (default: each element file's \"format\", else the image size "
                        "WxH, e.g. 1080x1080)")
    b.add_argument("-o", "--out", type=path_arg, required=True, metavar="FILE", help="norms JSON to write")
    add_engine_options(b)
    _add_global_options(b, default=argparse.SUPPRESS)  # `-q`/`-v` after `build` too, like every other command
    b.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        raise InputError(f"{args.folder}: not a folder")
    images = [Path(item.image) for item in read_inputs(args.folder)]
    elements_dir = args.elements or args.folder
    if not elements_dir.is_dir():
        raise InputError(f"--elements {elements_dir}: not a folder")
    items = [BatchItem(image.stem, str(image), str(find_element_file(image, elements_dir))) for image in images]
    for item in items:
        note_input(item.image)
        note_input(item.elements)
    check_out_file(args.out)  # before scoring every reference creative, not after
    options = BatchOptions(format=args.format)
    engine = make_engine(args)
    scorer = Scorer(engine, options, batch_size=args.batch_size)
    chunks = (scorer.score_creatives(items[i:i + args.batch_size]) for i in range(0, len(items), args.batch_size))
    scored = []
    # the bar first: zip stops at the first iterator that ends, and the bar ends (its last count, its newline)
    # only when asked for an item past the last
    for result, item in zip(progress((r for c in chunks for r in c), total=len(items), label="norms",
                                     enabled=not args.quiet), items):
        if isinstance(result, Exception):
            raise InputError(f"reference creative {Path(item.image).name}: {result}")
        scored.append(result.scores)
    norms = build_norms(scored, engine_identity(engine))
    write_json(args.out, norms.to_dict())
    if not args.quiet:
        for fmt, kinds in sorted(norms.formats.items()):
            counts = ", ".join(f"{kind} {len(v)}" for kind, v in sorted(kinds.items()))
            print(f"foveal: format {fmt}: {norms.creatives[fmt]} creative(s); elements: {counts}", file=sys.stderr)
        print(f"foveal: norms ({engine.model.name}) written to {args.out}", file=sys.stderr)
    return 0
