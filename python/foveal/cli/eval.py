"""``foveal eval --dataset PATH --model NAME|FILE.onnx [-o DIR]``: benchmark metrics of a model on a dataset split."""
from __future__ import annotations

import argparse
import sys

from .. import fileio
from ..datasets import load_dataset
from ..evaluate import CENTRE_BIAS_MODEL, HUMAN_MODEL, MAPS, check_metrics, evaluate, human_consistency
from ..metrics import METRICS
from . import add_engine_options, check_out_folder, int_arg, library_arg, make_engine, path_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="benchmark a model on an eye-tracking dataset",
        description=f"Score a model's maps against human fixations ({', '.join(METRICS)}), per image and on "
                    f"average. --model {CENTRE_BIAS_MODEL} evaluates the centre-bias baseline; --model "
                    f"{HUMAN_MODEL} the split-half consistency of the dataset's viewers (the ceiling; raw maps). "
                    "With -o, writes eval.json (every image's values) and eval.md (the table).")
    p.add_argument("--dataset", type=path_arg, required=True, metavar="PATH",
                   help="OSIE or NUS Scene folder, or a folder of images with fixations.csv/.json or maps/")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                   help="the dataset's fixed split to score (default: %(default)s)")
    p.add_argument("--metrics", type=library_arg(_metrics, "metrics: "), metavar="LIST",
                   help="comma-separated subset of the metrics (default: all the dataset supports)")
    p.add_argument("--maps", choices=MAPS, default="metric",
                   help="metric: score each metric on its own map of the predicted density (CC/KLD/SIM: blurred "
                        "like the dataset's density maps, one degree; sAUC: divided by the centre bias), the "
                        "MIT/Tuebingen protocol; raw: the density itself for every metric (default: %(default)s)")
    p.add_argument("--seed", type=int_arg(0), default=0,
                   help="seed of AUC-Borji's random draws, and with --model human "
                   "of the viewers' split into halves (default: %(default)s)")
    p.add_argument("-o", "--out", type=path_arg, metavar="DIR", help="write eval.json and eval.md here")
    add_engine_options(p)
    p.set_defaults(handler=run)


def _metrics(text: str) -> list[str]:
    """``NSS,CC`` → the names, each one foveal computes, each once; whether the dataset supports them is the run's
    check."""
    return list(check_metrics([m.strip() for m in text.split(",") if m.strip()]))


def run(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_out_folder(args.out, ("eval.json", "eval.md"))  # before the evaluation, not after it
    dataset = load_dataset(args.dataset, max_pixels=args.max_pixels)
    split = None if args.split == "all" else args.split
    if args.model == HUMAN_MODEL:
        result = human_consistency(dataset, split=split, metrics=args.metrics, seed=args.seed, progress=not args.quiet)
    else:
        model = CENTRE_BIAS_MODEL if args.model == CENTRE_BIAS_MODEL else make_engine(args)
        result = evaluate(model, dataset, split=split, metrics=args.metrics, progress=not args.quiet,
                          batch_size=args.batch_size, seed=args.seed, maps=args.maps)
    table = result.to_markdown()
    if args.out is not None:  # first: a reader of stdout that is gone (`| true`) must not cost the evaluation
        fileio.write_json(args.out / "eval.json", result.to_dict())
        fileio.write_text(args.out / "eval.md", table)
    print(table, end="")  # stdout holds the table alone (`> table.md`); what the command says goes to stderr
    if args.out is not None and not args.quiet:
        print(f"foveal: eval.json and eval.md written to {args.out}", file=sys.stderr)
    return 0
