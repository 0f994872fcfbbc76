"""Fine-tune a learned foveal model on a team's own eye-tracking data (``foveal finetune``).

The base network (``foveal-lite0`` or an earlier fine-tuned folder) keeps its backbone; the readout, blur and
centre prior (and optionally the last ``train_blocks`` backbone blocks) are fitted to the fixations of the
dataset's train split by fixation log-likelihood, the epoch (and the output blur) are chosen on its val split, and
the test split is scored once, for the fine-tuned model and for the base, both as fp32 graphs.  The result is a
folder with ``<name>.onnx``, its card ``<name>.json`` and ``<name>.safetensors`` that ``Engine(model=folder)``,
every CLI command and the norms accept like a shipped model (docs/FINETUNE.md).

Needs torch, onnx and onnxscript: ``pip install "foveal[train]"``.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from ._version import __version__
from .datasets import Dataset, _folder_images, load_dataset
from .errors import FovealError, InputError, ModelError, checked_count
from .evaluate import check_seed
from .fileio import checked_path, new_sibling_folder
from .imageio import IMAGE_SUFFIXES
from .models import ModelCard, file_sha256, load_card

__all__ = ["MIN_IMAGES", "MIN_TRAIN_FIXATIONS", "FinetuneResult", "data_fingerprint", "check_dataset", "finetune"]

# The fixed 80/10/10 split of 20 images leaves 2 to choose the epoch on (val) and 2 to score on (test): fewer
# leaves a split empty or a single image, whose metrics say nothing.
MIN_IMAGES = 20
# The readout and centre prior hold ~7,900 parameters; a floor (a rule of thumb, not a measured threshold) below
# which the fit follows individual fixations rather than where this kind of image draws the eyes.
MIN_TRAIN_FIXATIONS = 500
# Epochs without a better val NLL before training stops.
PATIENCE = 3
# A rise of val NLL (nats per fixation) after the kept epoch smaller than this is the flat tail of the cosine
# schedule (measured: 6.63100 then 6.63105 on NUS Scene), not overfitting, and warrants no warning.
OVERFIT_RISE = 1e-3
# The largest learning rate taken: AdamW's steps are about lr in size, so above 1 the weights leave any range the
# network was trained in at the first step; a typo (1e3 for 1e-3) is said before the feature pass.
MAX_LR = 1.0


@dataclass(frozen=True)
class FinetuneResult:
    """Where the model went, its card, and the warnings raised while fitting (also in the card)."""

    folder: Path
    card: dict
    warnings: tuple[str, ...]


def data_fingerprint(root: str | os.PathLike) -> dict:
    """sha256 over the sorted relative paths and contents of every regular file under ``root`` (symlinks followed).

    Two folders with the same files give the same fingerprint wherever they live; any changed byte changes it.
    """
    root = Path(root)
    digest, count, size = hashlib.sha256(), 0, 0
    for path in _files_under(root):
        rel = path.relative_to(root).as_posix().encode("utf-8")
        digest.update(len(rel).to_bytes(8, "little") + rel)
        digest.update(file_sha256(path).encode("ascii"))
        count, size = count + 1, size + path.stat().st_size
    return {"sha256": digest.hexdigest(), "files": count, "bytes": size}


def _files_under(root: Path) -> list[Path]:
    """Every regular file under ``root``, sorted, through linked folders too (``Path.rglob`` does not enter them: a
    linked images/ folder went unhashed), each real folder once (a link to a folder above would loop)."""
    files, seen = [], set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        files += [path for path in (Path(folder, n) for n in names) if path.is_file()]
    return sorted(files)


def checked_name(name: str, taken_from: str | None = None) -> str:
    """A model name: it names the folder's files, so one that reaches another folder ('../victim/m1') or hides
    ('.m') is refused before any work. ``taken_from`` says where a name nobody gave came from."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}", name):
        source = f" ({taken_from}; set name to choose another)" if taken_from else ""
        raise InputError(f"model name {name!r}{source}: use 1-100 letters, digits, '.', '_', '+' or '-', starting "
                         "with a letter or digit (it names the model's files)")
    return name


def check_dataset(ds: Dataset, root: Path, train_images: int | None = None) -> None:
    """Refuse data that cannot give a meaningful fit, with what to do (see the module constants for why)."""
    if not ds.has_fixations:
        raise InputError(f"{root}: this dataset has density maps only; fine-tuning fits fixations, so add "
                         f"fixations.csv or fixations.json (image,x,y[,subject])")
    image_dir = _folder_images(root)  # also OSIE's and NUS Scene's stimuli/, whose .mat lists every image
    listed = set(ds.ids)
    unlisted = sorted(p.name for p in image_dir.iterdir()
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in listed)
    if unlisted:
        raise InputError(f"{image_dir}: {len(unlisted)} image(s) have no fixations, e.g. {unlisted[:3]}; add "
                         f"their fixations or move them out of the folder (silently dropping them would "
                         f"change what the model learns)")
    for i in range(len(ds)):
        fix, (h, w) = ds.fixations(i), ds.shape(i)
        if len(fix) == 0:
            raise InputError(f"image {ds.ids[i]!r} of {root} has no fixations; add them or remove the image")
        bad = (fix.x < 0) | (fix.x >= w) | (fix.y < 0) | (fix.y >= h)
        if bad.any():
            k = int(np.argmax(bad))
            raise InputError(f"fixation ({fix.x[k]:g}, {fix.y[k]:g}) of {ds.ids[i]!r} is outside its {w}x{h} "
                             f"image ({int(bad.sum())} such); coordinates are 0-based pixels, 0 <= x < width")
    if len(ds) < MIN_IMAGES:
        raise InputError(f"{root}: {len(ds)} images with fixations; fine-tuning needs at least {MIN_IMAGES}, so "
                         f"that the fixed 80/10/10 split leaves 2 images to choose the epoch on (val) and 2 to "
                         f"score on (test)")
    train = _train_split(ds, train_images)
    n_fix = sum(len(train.fixations(i)) for i in range(len(train)))
    if n_fix < MIN_TRAIN_FIXATIONS:
        raise InputError(f"{root}: the train split holds {n_fix} fixations; fine-tuning needs at least "
                         f"{MIN_TRAIN_FIXATIONS} (the readout and centre prior have ~7,900 parameters: fewer "
                         f"fixations fit noise); add images or viewers")


def _train_split(ds: Dataset, limit: int | None) -> Dataset:
    """The train split, or ``limit`` of its images chosen at random (seed 0: the same images every run)."""
    train = ds.split("train")
    if limit is None or limit >= len(train):
        return train
    return train.subset(np.sort(np.random.default_rng(0).permutation(len(train))[:limit]), train.name)


def _base_network(base: str | os.PathLike) -> tuple[ModelCard, Path]:
    """The base model's card and its weights (``<card>.safetensors``), or a ModelError saying what is accepted."""
    try:
        card = load_card(base)
    except ModelError:
        if Path(base).exists():
            raise
        raise ModelError(f"base {str(base)!r}: no such model or path; fine-tuning starts from foveal-lite0 or a "
                         "folder foveal finetune wrote (or its card .json)") from None
    weights = card.card_path.with_suffix(".safetensors") if card.card_path is not None else None
    if weights is None or not weights.is_file():
        raise ModelError(f"base model {card.name!r} has no .safetensors weights beside its card; fine-tuning starts "
                         f"from a learned foveal network: foveal-lite0 or a folder foveal finetune wrote")
    recorded = card.weights_sha256
    if recorded is not None and file_sha256(weights) != recorded:
        raise ModelError(f"{weights} does not match its card {card.card_path} (sha256 {str(recorded)[:12]}…): the "
                         "weights were swapped or damaged; copy the model's folder again as foveal finetune wrote it")
    return card, weights


def _torch():
    try:
        import onnxscript  # noqa: F401 - the ONNX exporter needs it; fail before training, not after
        import torch
    except ImportError as exc:
        raise FovealError(f"fine-tuning needs torch, onnx and onnxscript ({exc.name} is missing): "
                          f"pip install \"foveal[train]\"") from None
    return torch


#: Most train images the int8 graph's activation ranges are calibrated on (evenly spaced in the train split).
CALIBRATION_IMAGES = 30


def _int8(card: ModelCard, train: Dataset) -> dict:
    """The int8 graph of ``card``'s fp32 graph, written beside it, calibrated on train images preprocessed as at run
    time; its card entry."""
    from . import cpu
    from .geometry import plan
    from .network.quantize import FORMAT, int8_graph

    spec = card.input
    picks = np.linspace(0, len(train) - 1, min(CALIBRATION_IMAGES, len(train))).round().astype(int)

    def inputs():
        for i in picks:
            pixels = train.image(int(i))
            p = plan(*pixels.shape[:2], card)
            yield cpu.preprocess(pixels, p.resized_hw, p.padded_hw, spec.mean, spec.std, p.offset_hw)

    target = card.onnx_path.with_name(f"{card.name}.int8.onnx")
    target.write_bytes(int8_graph(card.onnx_path, spec.name, inputs()))
    return {"onnx": target.name, "sha256": file_sha256(target), "format": FORMAT,
            "calibration": f"{len(picks)} train images of {train.name} (evenly spaced), at the working size"}


def _evaluation(model_dir_onnx: Path, base: ModelCard, ds: Dataset) -> dict:
    """Test-split metrics of the fine-tuned (fp32 and int8) and base fp32 graphs, with 95 % intervals of each mean
    and of the paired per-image difference, fine-tuned fp32 - base (bootstrap over images, seed 0)."""
    from .engine import Engine
    from .evaluate import evaluate

    tuned = evaluate(Engine(str(model_dir_onnx), precision="fp32"), ds, split="test", progress=False)
    tuned_int8 = evaluate(Engine(str(model_dir_onnx), precision="int8"), ds, split="test", progress=False)
    before = evaluate(Engine(str(base.card_path), precision="fp32"), ds, split="test", progress=False)
    n = len(tuned.images)
    picks = np.random.default_rng(0).integers(0, n, (2000, n))

    def summary(result) -> dict:
        ci = result.confidence_intervals()
        return {m: {"mean": round(v, 4), "ci95": [round(ci[m][0], 4), round(ci[m][1], 4)]}
                for m, v in result.aggregate.items()}

    diff = {}
    for m in tuned.metrics:
        d = tuned.per_image[m] - before.per_image[m]
        lo, hi = np.percentile(d[picks].mean(axis=1), [2.5, 97.5])
        diff[m] = {"mean": round(float(d.mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}
    return {"split": tuned.dataset, "images": n, "fixations": int(sum(tuned.fixations)), "precision": "fp32",
            "finetuned": summary(tuned), "int8": summary(tuned_int8), "base": summary(before),
            "finetuned_minus_base": diff,
            "lower_is_better": ["KLD"]}


def finetune(data: str | os.PathLike, out: str | os.PathLike, base: str | os.PathLike = "foveal-lite0",
             epochs: int = 10, train_blocks: int = 0, seed: int = 0, lr: float = 1e-3, batch: int = 8,
             working_size: int | None = None, name: str | None = None, train_images: int | None = None,
             log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune ``base`` on the dataset at ``data`` and write the model folder ``out`` (which must not exist).

    Args:
        data: a folder :func:`foveal.datasets.load_dataset` reads, with fixations.
        out: the model folder to create (written beside, then renamed into place: never half-written).
        base: a learned foveal model with ``.safetensors`` weights: ``foveal-lite0`` or a fine-tuned folder.
        epochs: most epochs (training stops after 3 without a better val NLL).
        train_blocks: also train the last this many backbone blocks (0: readout, blur and prior only).
        seed: seeds the epoch order; the split is the dataset's fixed one.
        lr: AdamW learning rate of the readout (trained backbone blocks get a tenth).
        batch: images per optimiser step.
        working_size: longest side the model sees (default: the base's); the card records it.
        name: the model's name (default: the folder's name).
        train_images: fit on only this many images of the train split, a seeded random choice (e.g. to see how
            much data a gain needs); val and test stay whole.
        log: called with one line per step (epoch scores, timings); None for silence.
    """
    say = log or (lambda _line: None)
    t0 = time.time()
    out, root = Path(checked_path(out, "out")), Path(checked_path(data, "data"))
    # Types first: a float epochs or working_size failed only after the feature pass, or the whole training.
    epochs, batch = checked_count(epochs, "epochs"), checked_count(batch, "batch")
    train_blocks = checked_count(train_blocks, "train_blocks", minimum=0)
    if train_images is not None:
        train_images = checked_count(train_images, "train_images")
    if working_size is not None:
        working_size = checked_count(working_size, "working_size")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr <= MAX_LR:
        raise InputError(f"lr must be a number in (0, {MAX_LR:g}], got {lr!r} (the default is 1e-3)")
    check_seed(seed)
    if seed >= 2**63:  # torch's generator takes a signed 64-bit seed
        raise InputError(f"seed must be below 2**63, got {seed}")
    if not (name is None or isinstance(name, str)):
        raise InputError(f"name must be text or None, got {name!r}")
    name = checked_name(name, None) if name else checked_name(out.name, "the output folder's name")
    if os.path.lexists(out):
        raise InputError(f"{out} already exists; fine-tuning writes a new model folder, choose another path")
    above = out.parent  # the folders up to it are made when the model is written, as other commands make -o
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise InputError(f"{above} is not a folder, so {out} cannot be made under it; choose another output path")
    if not os.access(above, os.W_OK | os.X_OK):  # said now, not after the training
        raise InputError(f"{above} is not writable; choose another output path")
    torch = _torch()  # first: reading the data would otherwise name only the part of the train extra it needs
    base_card, weights = _base_network(base)
    from .network import deepgaze
    from .network.onnx_export import OPSET, fused, to_onnx, verify
    from .network.training import (Trainable, backbone_features, calibrate_blur, evaluate_items, fit, items_of,
                                   param_groups, val_targets)

    torch.manual_seed(seed)
    net = deepgaze.load(weights)
    # The base's domain calibration hedges for images unlike its training data; fine-tuning fits the team's own
    # domain by likelihood, and its val split picks the blur, so the fitted density is used as it is.
    net.readout.temperature, net.readout.centre_mix = 1.0, 0.0
    taps, stride = net.taps, net.stride
    if not 0 <= train_blocks <= max(taps):
        raise InputError(f"train_blocks must be between 0 and {max(taps)} (the blocks the network runs), "
                         f"got {train_blocks}")
    size = base_card.input.working_size if working_size is None else working_size
    pad = base_card.input.pad_multiple
    if not pad <= size <= 4096:
        raise InputError(f"working_size must be between {pad} and 4096, got {size}")
    ds = load_dataset(root)  # after the checks the network answers: reading a large dataset takes a while
    check_dataset(ds, root, train_images)
    start = max(taps) + 1 - train_blocks
    keys = sorted({t for t in taps if t < start} | ({start - 1} if train_blocks else set()))
    frozen = fused(net).backbone  # the base's own backbone, BatchNorm folded: the features it was trained on
    frozen.eval()
    train_ds, val_ds = _train_split(ds, train_images), ds.split("val")
    fingerprint = data_fingerprint(root)
    say(f"data {root}: {len(ds)} images ({len(train_ds)} train, {len(val_ds)} val, {len(ds.split('test'))} test), "
        f"fingerprint {fingerprint['sha256'][:12]}; base {base_card.name}")
    train_cache = backbone_features(frozen, train_ds, tuple(keys), size, (False, True), pad, say)
    val_cache = backbone_features(frozen, val_ds, tuple(keys), size, (False,), pad, say)
    train = items_of(train_ds, train_cache, (False, True), stride)
    val = [views[0] for views in items_of(val_ds, val_cache, (False,), stride)]
    val_dens = val_targets(val_ds, val_cache)
    say(f"features of {len(train_ds)} train (+ mirror) and {len(val_ds)} val images in {time.time() - t0:.0f} s")

    for prm in net.parameters():
        prm.requires_grad_(False)
    trained = [net.readout, *net.backbone._blocks[start:]]
    for module in trained:
        for prm in module.parameters():
            prm.requires_grad_(True)
    model = Trainable(net, start)
    groups = param_groups(net.readout, lr, 0.0)
    if train_blocks:
        groups += param_groups(torch.nn.ModuleList(trained[1:]), lr / 10, 0.0)
    base_val = evaluate_items(model, val, keys, val_dens)
    say(f"base on val: NLL {base_val['NLL']:.4f} CC {base_val['CC']:.4f} NSS {base_val['NSS']:.3f}")
    best = fit(model, train, val, keys, val_dens, groups, epochs, PATIENCE, batch, seed, say, "finetune",
               baseline=base_val)
    warnings = _overfitting(best, base_val)
    extra_blur, calibrated = calibrate_blur(model, val, keys, val_dens, say)
    net.eval()
    fit_s = time.time() - t0

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_sibling_folder(out, "tmp")
    except OSError as exc:  # read-only although access() allowed it (an immutable folder, a read-only mount)
        raise InputError(f"cannot write in {out.parent} ({exc.strerror or exc}); choose another output path") \
            from None
    try:
        inference = fused(net)
        card = _card_fields(base_card, name, size, fingerprint, root)
        card["provenance"]["data"].update(
            name=ds.name, images={s: len(train_ds if s == "train" else ds.split(s)) for s in ("train", "val", "test")},
            train_fixations=sum(len(f) for f in (train_ds.fixations(i) for i in range(len(train_ds)))))
        model_bytes = to_onnx(inference, card).SerializeToString()
        worst = verify(inference, model_bytes, card)
        onnx_path = tmp / f"{name}.onnx"
        onnx_path.write_bytes(model_bytes)
        deepgaze.save(net, tmp / f"{name}.safetensors")
        card = {"name": name, "version": card.pop("version"), "onnx": onnx_path.name,
                "sha256": file_sha256(onnx_path), **{k: v for k, v in card.items() if k != "name"},
                # checked when the folder is a base, as its graph is: a swapped file would start another network
                "weights": {"file": f"{name}.safetensors", "sha256": file_sha256(tmp / f"{name}.safetensors")}}
        card["provenance"].update({
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "by": f"foveal finetune {__version__}",
            "exporter": f"torch {torch.__version__} dynamo exporter, opset {OPSET}; max |ort - torch| {worst:.1e}",
            "training": {
                "epochs": epochs, "train_images": len(train_ds), "train_blocks": train_blocks,
                "trained_from_block": start, "seed": seed,
                "lr": lr, "backbone_lr": lr / 10 if train_blocks else None, "batch": batch, "patience": PATIENCE,
                "working_size": size, "loss": f"mean fixation negative log-likelihood on the stride-{stride} grid",
                "split": "the dataset's fixed split: ids sorted, numpy default_rng(0).permutation, 80 % train "
                         "(+ mirror images) / 10 % val (epoch and blur chosen) / 10 % test (scored once)",
                "val": {f"base at {size} px": base_val, "selected": best, "final (with extra blur)": calibrated},
                "extra_blur_cells": extra_blur, "fit_seconds": round(fit_s, 1), "warnings": list(warnings),
            },
        })
        _write_card(card, tmp / f"{name}.json")  # the Engine that scores the graph reads its working size here
        card["int8"] = _int8(load_card(tmp / f"{name}.json"), train_ds)
        say(f"int8 graph calibrated on {card['int8']['calibration']}")
        _write_card(card, tmp / f"{name}.json")
        evaluation = _evaluation(tmp / f"{name}.onnx", base_card, ds)
        below = _below_base(evaluation, size, base_card.input.working_size)
        if below:  # val compared the base run at this model's size: at its own, the base may be far better
            warnings += (below,)
            card["provenance"]["training"]["warnings"] = list(warnings)
        card["metrics"] = {evaluation["split"]: {m: v["mean"] for m, v in evaluation["finetuned"].items()}}
        card["int8"]["metrics"] = {evaluation["split"]: {m: v["mean"] for m, v in evaluation["int8"].items()}}
        card["provenance"]["evaluation"] = evaluation
        card["provenance"]["training"]["total_seconds"] = round(time.time() - t0, 1)
        _write_card(card, tmp / f"{name}.json")
        os.chmod(tmp, 0o755)
        for written in tmp.iterdir():  # safetensors writes 0600: others could not use the folder as a base
            os.chmod(written, 0o644)
        try:
            os.rename(tmp, out)
        except OSError:  # another run wrote it meanwhile
            if not os.path.lexists(out):
                raise
            raise InputError(f"{out} appeared while fine-tuning (another run?); it is kept, and this model was not "
                             "written: choose another path") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"wrote {out} in {time.time() - t0:.0f} s; test {evaluation['split']}: "
        + ", ".join(f"{m} {v['mean']:.3f} (base {evaluation['base'][m]['mean']:.3f})"
                    for m, v in evaluation["finetuned"].items() if m in ("IG", "NSS", "CC", "KLD")))
    return FinetuneResult(out, card, warnings)


def _overfitting(best: dict, base_val: dict) -> tuple[str, ...]:
    """Warnings (with numbers) when val got worse after the kept epoch (by more than ``OVERFIT_RISE``), or never
    beat the base."""
    history, chosen = best["val_NLL"], best["epoch"]
    if chosen == 0:
        return (f"val NLL never improved on the base's {base_val['NLL']:.4f} (epochs: "
                f"{', '.join(f'{v:.4f}' for v in history)}); the folder holds the base's weights with a val-chosen "
                f"blur: this data does not teach the model more than it knows, or needs more images",)
    if chosen < len(history) and max(history[chosen:]) - history[chosen - 1] > OVERFIT_RISE:
        return (f"val NLL stopped improving after epoch {chosen} of {len(history)} run ({history[chosen - 1]:.4f}, "
                f"then {', '.join(f'{v:.4f}' for v in history[chosen:])}): the model began to overfit the train "
                f"split; epoch {chosen} is kept (more images, or fewer epochs or train_blocks)",)
    return ()


def _below_base(evaluation: dict, size: int, base_size: int) -> str | None:
    """A warning when the fine-tuned graph scores below the base as shipped on the test split (the whole 95 %
    interval of the paired NSS difference below 0): val chose the epoch against the base run at ``size``."""
    low, high = evaluation["finetuned_minus_base"]["NSS"]["ci95"]
    if high >= 0:
        return None
    tuned, base = evaluation["finetuned"]["NSS"]["mean"], evaluation["base"]["NSS"]["mean"]
    why = (f"; it sees images at {size} px where the base sees {base_size}, and val compared the base run at {size}"
           if size != base_size else "")
    return (f"on the test split it scores below the base as shipped (NSS {tuned:.3f} against {base:.3f}, difference "
            f"{low:+.3f} to {high:+.3f}){why}: keep using the base")


def _card_fields(base: ModelCard, name: str, working_size: int, fingerprint: dict, root: Path) -> dict:
    """The fine-tuned model's card before export: the base's contract and credits, plus where it came from."""
    raw = base.raw
    return {
        "name": name,
        "version": f"{base.version}+ft.{fingerprint['sha256'][:8]}",
        "description": f"{base.name} fine-tuned with foveal finetune on the eye-tracking data {root.name!r} "
                       f"(fingerprint {fingerprint['sha256'][:12]}). Output: log-density at stride {base.stride}.",
        "citation": raw.get("citation", ""),
        "licence": raw.get("licence", ""),
        "input": {**raw["input"], "working_size": working_size},
        "output": dict(raw["output"]),
        "postprocess": {"blur_sigma": 0.0},
        "provenance": {
            "source": "python/foveal/finetune.py, python/foveal/network/",
            "base": {"name": base.name, "version": base.version, "sha256": base.sha256},
            "data": {"path": str(root.resolve()), "fingerprint": fingerprint},
        },
    }


def _write_card(card: dict, path: Path) -> None:
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
