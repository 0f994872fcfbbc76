"""Does a text channel help the readout across datasets? Readout-only training with and without it, paired on val.

    python -m engine.text_channel --data ../shared/data --trained-on osie --cache runs/cache --out runs/text

Text draws eyes on designs, and the backbone's ImageNet features may not single it out. The channel is the
probability map of the text network that ``foveal[detect]`` ships (PP-OCRv4's DB detector,
:meth:`foveal.detect.text.TextReader.probability`), placed where the image sits on the network's input and
averaged over each cell of the readout's finest grid: one more input of the readout, beside the backbone taps.

Both arms train the readout on the frozen cached features of ``--trained-on``'s train split (the same seeds, epochs
and optimiser; no blur calibration for either), and are scored on the val split of every dataset: paired
differences of the fixations' log-likelihood (bits per fixation, which is the difference in information gain)
over the same images, with bootstrap intervals, per seed and with each image's scores averaged over the seeds (one
seed's val-selected epoch moves cross-dataset scores by as much as 0.1 bit). No test split is read.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from engine import deepgaze
from engine.features import cache_features
from engine.intervals import paired_interval
from engine.train import Log
from foveal.datasets import Dataset, load_osie, load_scene
from foveal.detect.text import TextReader
from foveal.network.deepgaze import Readout
from foveal.network.training import (Item, Trainable, evaluate_items, fit, fixation_nll, items_of, param_groups,
                                     set_feature_normalisation, stack, val_targets)
from engine import run_main

TEXT = "text"  # the channel's key beside the backbone taps in an Item's features
TAPS, HIDDEN, VARIANT, SIZE = (4, 10, 15), (16, 16), "lite0", 384
TEXT_SEEN = 0.3  # a cell's mean text probability that counts its image as one with text (DB's pixel threshold)


def text_cells(prob: np.ndarray, resized: tuple[int, int], offset: tuple[int, int], grid: tuple[int, int],
               stride: int) -> np.ndarray:
    """A text probability map, resized to the image's place on the padded input, mean over each grid cell."""
    import cv2

    (rh, rw), (top, left), (gh, gw) = resized, offset, grid
    canvas = np.zeros((gh * stride, gw * stride), np.float32)
    canvas[top:top + rh, left:left + rw] = cv2.resize(prob, (rw, rh), interpolation=cv2.INTER_AREA)
    return canvas.reshape(gh, stride, gw, stride).mean((1, 3))


def cache_text(ds: Dataset, cache: dict, reader: TextReader, stride: int, path: Path, log=print) -> list:
    """Per image, the text channel for it and its mirror image (float16 1×gh×gw tensors), cached at ``path``."""
    if path.is_file():
        cached = torch.load(path, weights_only=False)
        if cached["ids"] == ds.ids:
            return cached["maps"]
    maps, t0 = [], time.time()
    for i in range(len(ds)):
        prob = reader.probability(np.ascontiguousarray(ds.image(i)))
        grid = tuple(cache["feats"][i][0][TAPS[0]].shape[-2:])
        pair = [torch.from_numpy(text_cells(np.ascontiguousarray(p), cache["resized"][i], cache["offset"][i], grid,
                                            stride)[None]).half() for p in (prob, prob[:, ::-1])]
        maps.append(pair)
        if (i + 1) % 100 == 0:
            log(f"text {ds.name}: {i + 1}/{len(ds)} images, {time.time() - t0:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"ids": ds.ids, "maps": maps}, path)
    return maps


class WithText(Trainable):
    """The readout fed the backbone taps and the text channel, as its last input."""

    def forward(self, feats: dict) -> torch.Tensor:
        return self.net.readout([feats[t] for t in self.net.taps] + [feats[TEXT]])


def with_text(items: list[list[Item]], maps: list) -> None:
    """Adds each view's text channel to its features (views in ``items_of``'s flip order: plain, mirrored)."""
    for views, pair in zip(items, maps):
        for flip, view in enumerate(views):
            view.feats[TEXT] = pair[flip]


def per_image_bits(model: Trainable, items: list[Item], keys: list) -> np.ndarray:
    """Mean log-likelihood of each item's fixations, bits per fixation."""
    model.eval()
    with torch.no_grad():
        return np.array([-fixation_nll(model(stack([it], keys)), [it]).item() / np.log(2) for it in items])


def train_arm(text: bool, seed: int, train: list[list[Item]], val: list[Item], val_dens: list, args, log
              ) -> Trainable:
    """A readout trained on ``train``'s frozen features, with the text channel as one more input when ``text``."""
    torch.manual_seed(seed)
    net = deepgaze.create(VARIANT, TAPS, HIDDEN)
    keys: list = list(TAPS)
    if text:
        net.readout = Readout([net.backbone.channels[t] for t in TAPS] + [1], HIDDEN, net.stride)
        keys.append(TEXT)
    set_feature_normalisation(net.readout, [it for group in train for it in group], keys)
    for prm in net.backbone.parameters():
        prm.requires_grad_(False)
    model = (WithText if text else Trainable)(net, max(TAPS) + 1)
    fit(model, train, val, keys, val_dens, param_groups(net.readout, args.lr, 0.0), args.epochs, 6, 8, seed, log,
        f"{'text' if text else 'plain'} seed {seed}")
    return model


def paired(d: np.ndarray) -> dict:
    """:func:`engine.intervals.paired_interval` as a result document, with the number of images."""
    mean, lo, hi = paired_interval(d)
    return {"mean": mean, "lo": lo, "hi": hi, "n": len(d)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.text_channel", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding osie/ and scene/")
    p.add_argument("--trained-on", required=True, choices=["osie", "scene"])
    p.add_argument("--out", type=Path, required=True, help="folder for the log and result.json")
    p.add_argument("--cache", type=Path, default=Path("runs/cache"), help="engine.train's feature cache folder")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seeds", default="0,1,2", help="each arm is trained once per seed")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    log = Log(args.out / "text_channel.log")
    reader = TextReader()
    stride = deepgaze.output_stride(VARIANT, TAPS)

    def prepared(ds: Dataset, split: str, flips: tuple[bool, ...]) -> tuple[list[list[Item]], Dataset, dict]:
        sub = ds.split(split)
        cache = cache_features(sub, VARIANT, TAPS, args.cache, SIZE, args.threads, log)
        items = items_of(sub, cache, flips, stride)
        with_text(items, cache_text(sub, cache, reader, stride, args.cache / f"{sub.name}-text-{SIZE}.pt", log))
        return items, sub, cache

    datasets = {"osie": load_osie(args.data / "osie"), "scene": load_scene(args.data / "scene")}
    train, _, _ = prepared(datasets[args.trained_on], "train", (False, True))
    vals = {}
    for name, ds in datasets.items():
        items, sub, cache = prepared(ds, "val", (False,))
        vals[name] = ([views[0] for views in items], val_targets(sub, cache))
    own_val, own_dens = vals[args.trained_on]
    share = [float((it.feats[TEXT].float() > TEXT_SEEN).float().mean()) for views in train for it in views[:1]]
    log(f"text channel on {args.trained_on} train: {np.mean([s > 0 for s in share]):.0%} of images have a cell "
        f"over {TEXT_SEEN}, {np.mean(share):.2%} of cells on average")

    seeds = [int(x) for x in args.seeds.split(",")]
    bits: dict = {name: {"plain": [], "text": []} for name in vals}
    quality: dict = {name: {"plain": [], "text": []} for name in vals}
    for seed in seeds:
        for arm in ("plain", "text"):
            model = train_arm(arm == "text", seed, train, own_val, own_dens, args, log)
            keys = list(TAPS) + ([TEXT] if arm == "text" else [])
            for name, (items, dens) in vals.items():
                bits[name][arm].append(per_image_bits(model, items, keys))
                quality[name][arm].append(evaluate_items(model, items, keys, dens))
    result: dict = {"trained_on": args.trained_on, "epochs": args.epochs, "seeds": seeds, "val": {}}
    for name, (items, _) in vals.items():
        per_seed = [paired(t - q) for t, q in zip(bits[name]["text"], bits[name]["plain"])]
        # Seed-averaged per-image scores: the arms' difference without most of one training run's noise.
        d = np.mean(bits[name]["text"], 0) - np.mean(bits[name]["plain"], 0)
        texty = np.array([float(it.feats[TEXT].max()) > TEXT_SEEN for it in items])
        mean_q = {arm: {k: float(np.mean([q[k] for q in qs])) for k in ("CC", "NSS")}
                  for arm, qs in quality[name].items()}
        r, t = paired(d), paired(d[texty])
        result["val"][name] = {"text - plain, bits/fixation, per seed": per_seed,
                               "text - plain, seed-averaged": r,
                               f"same, images with a cell over {TEXT_SEEN}": t,
                               "CC and NSS, mean over seeds": mean_q}
        log(f"val {name}: text - plain per seed " + ", ".join(f"{x['mean']:+.4f}" for x in per_seed)
            + f"; seed-averaged {r['mean']:+.4f} bits/fixation ({r['lo']:+.4f} to {r['hi']:+.4f}), on the "
            f"{t['n']} images with text {t['mean']:+.4f} ({t['lo']:+.4f} to {t['hi']:+.4f}); CC "
            f"{mean_q['plain']['CC']:.4f} -> {mean_q['text']['CC']:.4f}, NSS {mean_q['plain']['NSS']:.4f} -> "
            f"{mean_q['text']['NSS']:.4f}")
    (args.out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    run_main(main)
