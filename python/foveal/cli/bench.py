"""``foveal bench [IMAGES...]``: per-stage latency percentiles and throughput of the engine on this machine."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from ..bench import run_bench
from ..errors import one_line
from . import MAX_PIXELS, add_model_options, in_flags, int_arg, make_engine, number_arg, path_arg
from .predict import expand


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure latency per stage and throughput on this machine",
                       description="Time decode, preprocess, network, postprocess and box queries (p50/p90/p99) "
                                   "and predict_batch throughput at each --batch size, on IMAGES (files or "
                                   "folders; none: a synthetic 1920x1080 JPEG; one that cannot be read is skipped "
                                   "with a note). Set FOVEAL_NUM_THREADS to pin the kernels' thread count.")
    p.add_argument("images", nargs="*", type=path_arg, metavar="IMAGE|FOLDER")
    add_model_options(p)
    p.add_argument("--batch", type=_sizes, default=(1, 8, 16), metavar="N[,N...]",
                   help="batch sizes for the throughput table (default: 1,8,16)")
    p.add_argument("--repeats", type=int_arg(1), default=20,
                   help="timed calls per stage and image (default: %(default)s)")
    p.add_argument("--max-seconds", type=number_arg(0, above=True), default=30.0,
                   help="time budget of each of: reading the images, the stage loop, the throughput loop "
                        "(default: %(default)s)")
    p.add_argument("--max-pixels", type=MAX_PIXELS, default=100e6, help="refuse larger images (default: 100e6)")
    p.add_argument("--reduced-decode", action="store_true",
                   help="decode JPEGs at the network's size (faster; maps differ from the full decode's: see "
                        "docs/PERFORMANCE.md)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.set_defaults(handler=run)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 1,8,16, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"each size must be >= 1, got {text!r}")
    return sizes


def run(args: argparse.Namespace) -> int:
    engine = make_engine(args)
    report = run_bench(engine, expand(args.images) if args.images else [], repeats=args.repeats,
                       batch_sizes=args.batch, max_seconds=args.max_seconds)
    # The library's messages in the command line's words; the rest (paths among them) as they are.
    for skipped in report.skipped:
        skipped["error"] = in_flags(skipped["error"], args)
        print(f"foveal: skipped {one_line(skipped['error'])}", file=sys.stderr)  # the error names the file
    report.throughput = [dataclasses.replace(row, skipped=in_flags(row.skipped, args)) for row in report.throughput]
    if report.not_read:
        print(f"foveal: {report.not_read} image(s) not read within --max-seconds ({args.max_seconds:g} s); the run "
              f"uses the {len(report.images)} read before them", file=sys.stderr)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table(), file=sys.stdout)
    return 0
