"""Grid search of the Itti–Koch read-out (contrast, epsilon, blur, centre prior) on OSIE train.

The 1998 model itself has nothing to fit; only the conversion of S into a log-density does.  S is computed once
per image, then every read-out on the grid is scored by its information gain over a uniform map (bits per
fixation: the mean log-likelihood, the quantity a density model should maximise), with NSS reported beside it.

Split (shared with ``foveal.datasets``): OSIE stimuli 1001..1700 sorted, ``np.random.default_rng(0).permutation``,
the first 80% are train.  Only train images are read.

    python -m engine.tune_itti_koch --data ../shared/data --images 200
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from foveal.network.itti_koch import IttiKoch, Readout
from engine import run_main

CONTRASTS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
EPSILONS = (0.001, 0.003, 0.01, 0.03, 0.1)  # no smaller: see the note above itti_koch.TUNED
BLUR_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0)
PRIOR_SIGMAS = (0.15, 0.2, 0.25, 0.3, 0.4, 0.6)
WORKING_HW = (288, 384)  # OSIE is 800×600: longest side 384, already a multiple of 32, no padding
RASTER = 8  # scores are computed on an 8× subsampled raster of the 600×800 image (75×100 cells)


def osie_train(data: Path) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """OSIE train images, each with its fixations' 0-based pixel columns and rows in the 800×600 image."""
    osie = data / "osie"
    mat = scipy.io.loadmat(osie / "eye" / "fixations.mat", squeeze_me=True, struct_as_record=False)
    by_name = {entry.img: entry for entry in mat["fixations"]}
    names = sorted(by_name)
    train = np.random.default_rng(0).permutation(len(names))[: int(0.8 * len(names))]
    items = []
    for index in train:
        subjects = by_name[names[index]].subjects
        # MATLAB's 1-based pixel k spans [k - 0.5, k + 0.5): its 0-based index is floor(x - 0.5).
        xs = np.concatenate([np.atleast_1d(s.fix_x) for s in subjects]).astype(np.float64) - 0.5
        ys = np.concatenate([np.atleast_1d(s.fix_y) for s in subjects]).astype(np.float64) - 0.5
        items.append((osie / "stimuli" / names[index], np.floor(xs), np.floor(ys)))
    return items


def _bilinear_matrix(out_size: int, grid_size: int) -> torch.Tensor:
    """(out_size, grid_size) weights sampling the grid at (k + 0.5) * grid/out - 0.5, clamped (as postprocess)."""
    position = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * grid_size / out_size - 0.5).clamp(
        0, grid_size - 1
    )
    low = position.floor().long()
    high = (low + 1).clamp(max=grid_size - 1)
    frac = position - low
    weights = torch.zeros(out_size, grid_size, dtype=torch.float64)
    weights[torch.arange(out_size), low] += 1 - frac
    weights[torch.arange(out_size), high] += frac
    return weights


def score(log_density: torch.Tensor, fixations: list[tuple[np.ndarray, np.ndarray]], image_hw: tuple[int, int]):
    """Mean information gain (bits/fixation over uniform) and mean NSS of (n, 1, h, w) log-densities."""
    raster_h, raster_w = image_hw[0] // RASTER, image_hw[1] // RASTER
    rows = _bilinear_matrix(raster_h, log_density.shape[-2])
    cols = _bilinear_matrix(raster_w, log_density.shape[-1])
    dense = rows @ log_density[:, 0].double() @ cols.T
    log_prob = dense - torch.logsumexp(dense.flatten(1), dim=1).view(-1, 1, 1)
    prob = log_prob.exp()
    standard = (prob - prob.mean(dim=(1, 2), keepdim=True)) / prob.std(dim=(1, 2), keepdim=True)
    gains, nss = [], []
    for i, (xs, ys) in enumerate(fixations):
        r = np.clip(ys // RASTER, 0, raster_h - 1).astype(np.int64)
        c = np.clip(xs // RASTER, 0, raster_w - 1).astype(np.int64)
        gains.append(float((log_prob[i, r, c] + math.log(raster_h * raster_w)).mean()) / math.log(2))
        nss.append(float(standard[i, r, c].mean()))
    return float(np.mean(gains)), float(np.mean(nss))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", type=int, default=200, help="first N images of the train split")
    args = parser.parse_args(argv)

    items = osie_train(args.data)[: args.images]
    network = IttiKoch().eval()
    salience = []
    with torch.no_grad():
        for path, _, _ in items:
            with Image.open(path) as image:
                image_hw = (image.height, image.width)
                small = image.convert("RGB").resize(WORKING_HW[::-1], Image.Resampling.BOX)
            pixels = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)
            salience.append(network.saliency(pixels.unsqueeze(0)))
    salience = torch.cat(salience)
    fixations = [(xs, ys) for _, xs, ys in items]

    results = []
    with torch.no_grad():
        for contrast, epsilon, blur, prior in itertools.product(CONTRASTS, EPSILONS, BLUR_SIGMAS, PRIOR_SIGMAS):
            readout = Readout(contrast=contrast, epsilon=epsilon, blur_sigma=blur, prior_sigma=prior)
            gain, nss = score(IttiKoch(readout).log_density(salience), fixations, image_hw)
            results.append((gain, nss, readout))
        best_gain, best_nss, best = max(results, key=lambda r: r[0])
        prior_only = IttiKoch(Readout(contrast=0.0, epsilon=1.0, blur_sigma=0.0, prior_sigma=best.prior_sigma))
        prior_gain, prior_nss = score(prior_only.log_density(salience), fixations, image_hw)
        no_prior = IttiKoch(Readout(best.contrast, best.epsilon, best.blur_sigma, prior_sigma=1e3))
        bare_gain, bare_nss = score(no_prior.log_density(salience), fixations, image_hw)
    report = {
        "split": "OSIE train (sorted 1001..1700, default_rng(0).permutation, first 80%)",
        "images": len(items),
        "objective": "mean information gain over uniform, bits/fixation (log-likelihood)",
        "grid": {"contrast": CONTRASTS, "epsilon": EPSILONS, "blur_sigma": BLUR_SIGMAS, "prior_sigma": PRIOR_SIGMAS},
        "chosen": best.__dict__,
        "train_sample_scores": {
            "chosen": {"IG": round(best_gain, 4), "NSS": round(best_nss, 4)},
            "centre_prior_only": {"IG": round(prior_gain, 4), "NSS": round(prior_nss, 4)},
            "without_prior": {"IG": round(bare_gain, 4), "NSS": round(bare_nss, 4)},
        },
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    run_main(main)
