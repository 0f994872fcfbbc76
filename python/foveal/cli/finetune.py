"""``foveal finetune DATA -o DIR``: fit a learned model to a team's own eye-tracking data, write a model folder."""
from __future__ import annotations

import argparse
import sys

from ..finetune import MAX_LR, MIN_IMAGES, MIN_TRAIN_FIXATIONS, checked_name, finetune
from . import int_arg, library_arg, number_arg, path_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a model on your own eye-tracking data (needs foveal[train])",
        description="Fit the readout, blur and centre prior of a learned model (and optionally its last backbone "
                    "blocks) to DATA's fixations on its fixed train split, choose the epoch on its val split, score "
                    "its test split against the base, and write DIR: <name>.onnx, its int8 graph <name>.int8.onnx "
                    "(the CPU's default), its card <name>.json (base, data fingerprint, settings, test metrics) and "
                    "<name>.safetensors. Use it as --model DIR. Needs at "
                    f"least {MIN_IMAGES} images and {MIN_TRAIN_FIXATIONS} train fixations.")
    p.add_argument("data", type=path_arg, metavar="DATA",
                   help="a dataset foveal eval reads, with fixations (images + fixations.csv/.json, OSIE, NUS Scene)")
    p.add_argument("-o", "--out", type=path_arg, required=True, metavar="DIR",
                   help="model folder to create (must not exist)")
    p.add_argument("--base", default="foveal-lite0",
                   help="model to start from: foveal-lite0 or a folder foveal finetune wrote (default: %(default)s)")
    p.add_argument("--epochs", type=int_arg(1), default=10,
                   help="most epochs; stops after 3 without a better val score (default: %(default)s)")
    p.add_argument("--train-blocks", type=int_arg(0), default=0, metavar="K",
                   help="also train the last K backbone blocks, at a tenth of the learning rate (default: 0, the "
                        "readout, blur and centre prior only)")
    p.add_argument("--seed", type=int_arg(0, 2**63 - 1), default=0,
                   help="seed of the epoch order (default: %(default)s)")
    p.add_argument("--lr", type=number_arg(0, MAX_LR, above=True), default=1e-3,
                   help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--batch", type=int_arg(1), default=8, help="images per step (default: %(default)s)")
    p.add_argument("--working-size", type=int_arg(32, 4096), metavar="PX",
                   help="longest side the model sees (default: the base model's)")
    p.add_argument("--train-images", type=int_arg(1), metavar="N",
                   help="fit on N of the train split's images only, a seeded random choice (default: all)")
    p.add_argument("--name", type=library_arg(checked_name, "model name "),
                   help="the model's name (default: DIR's name)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    def log(line: str) -> None:
        print(f"foveal: {line}", file=sys.stderr, flush=True)

    result = finetune(args.data, args.out, base=args.base, epochs=args.epochs, train_blocks=args.train_blocks,
                      seed=args.seed, lr=args.lr, batch=args.batch, working_size=args.working_size,
                      name=args.name, train_images=args.train_images, log=None if args.quiet else log)
    for warning in result.warnings:
        print(f"foveal: warning: {warning}", file=sys.stderr)
    evaluation = result.card["provenance"]["evaluation"]
    print(f"| metric | {result.card['name']} | base | difference (95 % interval) |\n|---|---:|---:|---:|")
    for m, v in evaluation["finetuned"].items():
        d = evaluation["finetuned_minus_base"][m]
        print(f"| {m}{' ↓' if m == 'KLD' else ''} | {v['mean']:.4f} | {evaluation['base'][m]['mean']:.4f} | "
              f"{d['mean']:+.4f} ({d['ci95'][0]:+.4f} to {d['ci95'][1]:+.4f}) |")
    if not args.quiet:  # stderr, like every command's summary: stdout holds the table alone
        print(f"foveal: model written to {result.folder} (test split: {evaluation['images']} images); "
              f"use it with --model {result.folder}", file=sys.stderr)
    return 0
