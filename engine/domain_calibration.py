"""Choose the learned network's domain calibration on cross-dataset validation, and write it into weights.

    python -m engine.domain_calibration choose --data ../shared/data \\
        --trained-on osie=OSIE_ONLY.onnx --trained-on scene=SCENE_ONLY.onnx
    python -m engine.domain_calibration apply python/foveal/models/foveal-lite0.safetensors \\
        --temperature 0.9 --centre-mix 0.1

A density fitted by likelihood on one dataset's photos is overconfident on other images: the network trained on
OSIE alone scores 0.49 bits per fixation on NUS Scene val, 0.57 once flattened.  ``choose`` scores each network
(trained on one dataset only, with the shipped recipe) on the *other* dataset's val split with its density
raised to a temperature T and mixed with the fitted centre bias (weight ε), and picks the (T, ε) with the best
information gain averaged over the two directions.  No test split is read.  The calibration is applied here to
the full-resolution map; in the graph (``foveal.network.deepgaze.Readout.calibrate``) it runs on the output grid
before upsampling, which ``foveal eval`` of the exported graph checks.  ``apply`` stores (T, ε) in a weights
file's config; ``python -m engine.export`` then bakes them into the graph.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from foveal import metrics as M
from foveal.datasets import load_dataset
from engine import run_main

TEMPERATURES = (0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
CENTRE_MIXES = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
SCORES = ("IG", "NSS", "CC", "KLD", "SIM")


def calibrated(prob: np.ndarray, centre_log: np.ndarray, temperature: float, centre_mix: float) -> np.ndarray:
    """``prob ** temperature`` renormalised, mixed with the centre bias: what the graph's calibration computes."""
    log = temperature * np.log(np.maximum(prob, 1e-30, dtype=np.float64))
    p = np.exp(log - log.max())
    p /= p.sum()
    return (1.0 - centre_mix) * p + centre_mix * np.exp(centre_log) if centre_mix else p


def cross_dataset_scores(models: dict[str, Path], data: Path) -> list[dict]:
    """Every (T, ε) scored for each network on the val split of each dataset it was not trained on."""
    from foveal import Engine

    rows = []
    names = sorted(models)
    for trained_on, path in sorted(models.items()):
        engine = Engine(str(path), precision="fp32")
        for other in (n for n in names if n != trained_on):
            val = load_dataset(data / other).split("val")
            probs = [engine.predict(val.image(i)).prob for i in range(len(val))]
            fixations = [val.fixations(i) for i in range(len(val))]
            densities = [val.density(i) for i in range(len(val))]
            centres = [M.centre_bias_log_density(val.shape(i)) for i in range(len(val))]
            for t in TEMPERATURES:
                for eps in CENTRE_MIXES:
                    per = {k: [] for k in SCORES}
                    for prob, fix, dens, centre in zip(probs, fixations, densities, centres):
                        p = calibrated(prob, centre, t, eps)
                        per["IG"].append(M.information_gain(p, centre, fix.x, fix.y))
                        per["NSS"].append(M.nss(p, fix.x, fix.y))
                        per["CC"].append(M.cc(p, dens))
                        per["KLD"].append(M.kld(p, dens))
                        per["SIM"].append(M.sim(p, dens))
                    rows.append({"trained_on": trained_on, "val": other, "temperature": t, "centre_mix": eps,
                                 **{k: float(np.mean(v)) for k, v in per.items()}})
    return rows


def choose(rows: list[dict]) -> tuple[float, float]:
    """The (T, ε) with the highest information gain averaged over the cross-dataset directions."""
    means: dict[tuple[float, float], list[float]] = {}
    for r in rows:
        means.setdefault((r["temperature"], r["centre_mix"]), []).append(r["IG"])
    return max(means, key=lambda k: float(np.mean(means[k])))


def apply(weights: Path, temperature: float, centre_mix: float) -> None:
    """Store the calibration in ``weights``' config (written to a temporary file, then renamed)."""
    from foveal.network import deepgaze

    calibration = deepgaze.checked_calibration(temperature, centre_mix)  # before anything is read or written
    net = deepgaze.load(weights)
    net.readout.temperature, net.readout.centre_mix = calibration
    tmp = weights.with_name(weights.name + ".tmp")
    deepgaze.save(net, tmp)
    tmp.replace(weights)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.domain_calibration", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("choose", help="score (T, ε) on cross-dataset val and print the choice")
    c.add_argument("--data", type=Path, required=True, help="folder holding osie/ and scene/")
    c.add_argument("--trained-on", action="append", required=True, metavar="DATASET=ONNX",
                   help="a network trained on DATASET only (repeat for each dataset)")
    c.add_argument("--json", type=Path, help="also write every row here")
    a = sub.add_parser("apply", help="write (T, ε) into a weights file's config")
    a.add_argument("weights", type=Path)
    a.add_argument("--temperature", type=float, required=True)
    a.add_argument("--centre-mix", type=float, required=True)
    args = p.parse_args(argv)
    if args.command == "apply":
        apply(args.weights, args.temperature, args.centre_mix)
        return 0
    models = dict(item.split("=", 1) for item in args.trained_on)
    rows = cross_dataset_scores({k: Path(v) for k, v in models.items()}, args.data)
    print("trained_on  val    T     eps    " + "  ".join(f"{k:>6}" for k in SCORES))
    for r in rows:
        print(f"{r['trained_on']:<11} {r['val']:<6} {r['temperature']:<5} {r['centre_mix']:<6} "
              + "  ".join(f"{r[k]:6.3f}" for k in SCORES))
    t, eps = choose(rows)
    print(f"chosen: temperature {t}, centre_mix {eps} (best mean cross-dataset val IG)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "temperature": t, "centre_mix": eps}, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
