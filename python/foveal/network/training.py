"""Training foveal's learned network from cached backbone features: the loop ``engine/train.py`` (from ImageNet)
and ``foveal finetune`` (from a shipped model) share.

Loss: mean negative log-likelihood of the fixations under the predicted density on the output grid (DeepGaze).
Frozen backbone blocks run once per image (and mirror image); epochs run only the trainable blocks and the readout.
Needs torch (``pip install "foveal[train]"``).
"""
from __future__ import annotations

import math
import random
import time
from typing import Callable

import numpy as np
import torch

from .. import cpu, metrics
from ..datasets import Dataset, gaussian_density
from ..geometry import Plan, layout
from . import deepgaze
from .backbone import MEAN, STD, EfficientNetLite


def preprocess(image: np.ndarray, working_size: int = 384, pad_multiple: int = 32) -> tuple[np.ndarray, Plan]:
    """uint8 H×W×3 → (float32 3×Hp×Wp, its plan) through the runtime's own plan and kernel (the plan's cell
    sizes are in pixels: stride 1)."""
    p = layout(*image.shape[:2], working_size, pad_multiple, 1)
    return cpu.preprocess(image, p.resized_hw, p.padded_hw, [MEAN] * 3, [STD] * 3, p.offset_hw)[0], p


def backbone_features(backbone: EfficientNetLite, ds: Dataset, taps: tuple[int, ...], working_size: int,
                      flips: tuple[bool, ...], pad_multiple: int = 32,
                      log: Callable[[str], None] = lambda _line: None) -> dict:
    """Outputs of blocks ``taps`` of an eval-mode ``backbone`` for every image of ``ds`` (and mirror image),
    in the layout of ``engine.features.cache_features``: ``{"resized", "offset", "feats": [[{tap: float16}, ...],
    ...]}`` with one entry per flip of ``flips``, in that order (a mirror image has its original's plan)."""
    feats, resized, offset, t0 = [], [], [], time.time()
    with torch.inference_mode():
        for i in range(len(ds)):
            img = ds.image(i)
            views = []
            for flip in flips:
                x, p = preprocess(np.ascontiguousarray(img[:, ::-1]) if flip else img, working_size, pad_multiple)
                outs = backbone(torch.from_numpy(x[None]), taps)
                views.append({t: o[0].half() for t, o in zip(taps, outs)})
            feats.append(views)
            resized.append(p.resized_hw)
            offset.append(p.offset_hw)
            if (i + 1) % 50 == 0:
                log(f"features {ds.name}: {i + 1}/{len(ds)} images, {time.time() - t0:.0f} s")
    return {"resized": resized, "offset": offset, "feats": feats}


class Item:
    """One training/validation image (one flip): cached features, the image's place on the input (``resized``
    and ``offset`` in pixels), and its fixations as indices into ``cells``, the slice of the output grid (cells of
    ``stride`` input pixels) that the image touches."""

    def __init__(self, feats: dict[int, torch.Tensor], resized: tuple[int, int], offset: tuple[int, int],
                 cells: tuple[slice, slice], fixation_cells: torch.Tensor, stride: int) -> None:
        self.feats, self.resized, self.offset, self.stride = feats, resized, offset, stride
        self.cells, self.fixation_cells = cells, fixation_cells
        self.shape = tuple(next(iter(feats.values())).shape[-2:])


def set_feature_normalisation(readout: torch.nn.Module, views: list[Item], keys: list) -> None:
    """The readout's fixed per-channel feature mean and std, from the features ``keys`` (in the readout's channel
    order) of the training views."""
    stats = torch.cat([torch.stack([it.feats[t].float().mean((1, 2)) for it in views]) for t in keys], 1)
    sq = torch.cat([torch.stack([it.feats[t].float().pow(2).mean((1, 2)) for it in views]) for t in keys], 1)
    readout.mean.copy_(stats.mean(0))
    readout.std.copy_((sq.mean(0) - stats.mean(0) ** 2).clamp_min(1e-6).sqrt())


def window_cells(resized: tuple[int, int], offset: tuple[int, int], stride: int) -> tuple[slice, slice]:
    """Rows and columns of the output grid that an image of ``resized`` pixels at ``offset`` touches."""
    return tuple(slice(o // stride, -(-(o + r) // stride)) for r, o in zip(resized, offset))  # type: ignore[return-value]


def items_of(ds: Dataset, cache: dict, flips: tuple[bool, ...], stride: int) -> list[list[Item]]:
    """Per image, one :class:`Item` per requested flip, fixations binned into cells of ``stride`` pixels."""
    items = []
    for i in range(len(ds)):
        h, w = ds.shape(i)
        (rh, rw), (top, left) = cache["resized"][i], cache["offset"][i]
        rows, cols = window_cells((rh, rw), (top, left), stride)
        vh, vw = rows.stop - rows.start, cols.stop - cols.start
        views = []
        for flip in flips:
            fix = ds.fixations(i)
            fix = fix.flipped(w) if flip else fix
            cy = np.clip(np.floor((top + fix.y * rh / h) / stride) - rows.start, 0, vh - 1).astype(np.int64)
            cx = np.clip(np.floor((left + fix.x * rw / w) / stride) - cols.start, 0, vw - 1).astype(np.int64)
            views.append(Item(cache["feats"][i][int(flip)], (rh, rw), (top, left), (rows, cols),
                              torch.from_numpy(cy * vw + cx), stride))
        items.append(views)
    return items


def batches(items: list[Item], size: int, rng: random.Random | None) -> list[list[Item]]:
    """Items grouped by feature shape (so they stack), in chunks of ``size``; shuffled when ``rng`` is given."""
    groups: dict[tuple, list[Item]] = {}
    for it in items:
        groups.setdefault(it.shape, []).append(it)
    out = []
    for group in groups.values():
        if rng:
            rng.shuffle(group)
        out += [group[k:k + size] for k in range(0, len(group), size)]
    if rng:
        rng.shuffle(out)
    return out


def fixation_nll(logd: torch.Tensor, batch: list[Item]) -> torch.Tensor:
    """Mean over images of the mean −log p (nats) of their fixations, density renormalised on the valid grid."""
    losses = []
    for k, it in enumerate(batch):
        lp = torch.log_softmax(logd[k, 0][it.cells].reshape(-1), 0)
        losses.append(-lp[it.fixation_cells].mean())
    return torch.stack(losses).mean()


class Trainable(torch.nn.Module):
    """The network as trained from cached features: blocks ``start``… of the backbone (BN frozen) + readout."""

    def __init__(self, net: deepgaze.SaliencyNet, start: int) -> None:
        super().__init__()
        self.net, self.start = net, start

    def forward(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        taps = self.net.taps
        if self.start > max(taps):
            return self.net.readout([feats[t] for t in taps])
        got = self.net.backbone.run(feats[self.start - 1], self.start, max(taps) + 1, taps)
        return self.net.readout([feats[t] if t < self.start else got[t] for t in taps])


def stack(batch: list[Item], keys: list[int]) -> dict[int, torch.Tensor]:
    return {t: torch.stack([it.feats[t] for it in batch]).float() for t in keys}


def evaluate_items(model: Trainable, items: list[Item], keys: list[int], val_dens: list[tuple]) -> dict[str, float]:
    """NLL on the grid, plus CC and NSS at the resized resolution (val items: one per image, unflipped).

    CC is that of the density's metric-specific map (blurred like the density map), as ``foveal eval`` scores it.
    """
    model.eval()
    nll, cc, nss = [], [], []
    with torch.no_grad():
        for batch in batches(items, 16, None):
            logd = model(stack(batch, keys))
            for k, it in enumerate(batch):
                nll.append(fixation_nll(logd[k:k + 1], [it]).item())
                density, xs, ys, sigma = val_dens[items.index(it)]
                prob = cpu.postprocess(logd[k, 0].numpy(), it.resized, tuple(r / it.stride for r in it.resized),
                                       origin_hw=tuple(o / it.stride for o in it.offset))
                cc.append(metrics.cc(metrics.metric_map("CC", prob, sigma), density))
                nss.append(metrics.nss(prob, xs, ys))
    model.train()
    freeze_bn(model)
    return {"NLL": float(np.mean(nll)), "CC": float(np.mean(cc)), "NSS": float(np.mean(nss))}


def param_groups(module: torch.nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Optimiser groups: convolution weights decay, biases / BN / blur and prior parameters do not."""
    params = [q for q in module.parameters() if q.requires_grad]
    decay = [q for q in params if q.ndim == 4]
    rest = [q for q in params if q.ndim != 4]
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay}, {"params": rest, "lr": lr, "weight_decay": 0.0}]


def freeze_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


def fit(model: Trainable, train: list[list[Item]], val: list[Item], keys: list[int], val_dens: list[tuple],
        groups: list[dict], epochs: int, patience: int, batch: int, seed: int, log: Callable[[str], None],
        phase: str, baseline: dict | None = None) -> dict:
    """AdamW with cosine decay; keeps the weights of the epoch with the best val NLL.

    An epoch visits every training image once, in one of its views (mirror image, size) chosen at random.
    ``baseline``: the val scores of the weights as they are (epoch 0), which the epochs must beat to replace them.
    The result holds the best epoch's scores and ``val_NLL`` of every epoch run.
    """
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    rng = random.Random(seed)
    best = {"NLL": math.inf} if baseline is None else {**baseline, "epoch": 0}
    best_state = None if baseline is None else {k: v.detach().clone() for k, v in model.state_dict().items()}
    since, history = 0, []
    model.train()
    freeze_bn(model)
    for epoch in range(1, epochs + 1):
        t0, losses = time.time(), []
        for b in batches([rng.choice(views) for views in train], batch, rng):
            loss = fixation_nll(model(stack(b, keys)), b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        score = evaluate_items(model, val, keys, val_dens)
        history.append(round(score["NLL"], 5))
        ro = model.net.readout
        log(f"{phase} epoch {epoch}: train NLL {np.mean(losses):.4f}  val NLL {score['NLL']:.4f} "
            f"CC {score['CC']:.4f} NSS {score['NSS']:.3f}  blur {math.exp(ro.log_blur.item()):.2f} "
            f"prior σ {np.exp(ro.log_prior_sigma.detach().numpy()).round(3).tolist()}  {time.time() - t0:.0f} s")
        if score["NLL"] < best["NLL"]:
            best, since = {**score, "epoch": epoch}, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    log(f"{phase}: best epoch {best['epoch']} val {best}")
    return {**best, "val_NLL": history}


def calibrate_blur(model: Trainable, val: list[Item], keys: list[int], val_dens: list[tuple],
                   log: Callable[[str], None]) -> tuple[float, dict]:
    """Choose the readout's extra blur on val by NLL: the model's output is a density, and each metric scores
    its own map of it (``foveal.metrics.metric_map``), so the best density is the one that serves them all.

    Mini-batch training leaves the learned blur a little sharper than the val optimum; this corrects it.
    """
    ro = model.net.readout
    scores = {}
    for sigma in np.arange(0.0, 2.01, 0.25) * deepgaze.BLUR_STRIDE / model.net.stride:  # 0-2 cells at stride 8
        ro.extra_blur.fill_(float(sigma))
        scores[float(sigma)] = evaluate_items(model, val, keys, val_dens)
    best = min(scores, key=lambda s: scores[s]["NLL"])
    for s, v in scores.items():
        log(f"extra blur {s:.2f} cells: val CC {v['CC']:.4f} NSS {v['NSS']:.3f} NLL {v['NLL']:.4f}"
            f"{'  <- chosen' if s == best else ''}")
    ro.extra_blur.fill_(best)
    return best, scores[best]


def val_targets(ds: Dataset, cache: dict) -> list[tuple]:
    """Per val image at its resized size: fixation density, fixation coordinates, the density's sigma (scaled)."""
    out = []
    for i in range(len(ds)):
        h, w = ds.shape(i)
        rh, rw = cache["resized"][i]
        fix = ds.fixations(i)
        xs, ys = fix.x * rw / w, fix.y * rh / h
        scaled = type(fix)(xs, ys, fix.subject)
        sigma = ds.sigma(i) * rw / w
        out.append((gaussian_density(scaled, (rh, rw), sigma), xs, ys, sigma))
    return out
