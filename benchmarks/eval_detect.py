"""Accuracy, attention agreement and speed of automatic element detection on a labelled set of creatives.

    python benchmarks/creatives.py /tmp/val --count 320 --seed 0          # validation split (rules tuned on it)
    python benchmarks/creatives.py /tmp/test --count 320 --seed 100000    # test split (scored once)
    PYTHONPATH=python python benchmarks/eval_detect.py /tmp/test --out detect_eval.json [--failures DIR]

Per kind: precision and recall at IoU >= 0.5 (one-to-one, greedy by IoU); the attention share (default model) of
the auto boxes against the true boxes, summed per kind per creative, as the mean absolute difference in percentage
points over the creatives where the kind has a true box or a detection; and, on the 1080x1080 creatives, detection
time against the saliency prediction's, interleaved per image.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from foveal import Engine
from foveal.detect import DETECTED_KINDS, Detector
from foveal.detect.layout import iou
from foveal.imageio import load_image


def match(truth: list[tuple[int, ...]], found: list[tuple[int, ...]], threshold: float = 0.5) -> int:
    """True positives: pairs with IoU >= threshold, each box used once, best pairs first.

    Greedy is the optimal (largest) one-to-one matching on the generated sets: they hold at most one true box per
    kind, so every truth either has a partner at the threshold or not, whichever is taken."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    used_t, used_f, hits = set(), set(), 0
    for value, i, j in pairs:
        if value < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            hits += 1
    return hits


def share_diff(smap, truth: list[tuple[int, ...]], found: list[tuple[int, ...]]) -> float | None:
    """|attention share of the found boxes - that of the true boxes|, in percentage points; None where the kind has
    neither: a spurious box takes attention a creative without that kind gives it none of, so it counts, while the
    0-against-0 of a kind that is absent and not found would only dilute the mean."""
    if not truth and not found:
        return None
    share = lambda boxes: 100 * sum(smap.share([b[0], b[1], b[2] - b[0], b[3] - b[1]]) for b in boxes)
    return abs(share(found) - share(truth))


def _xyxy(box) -> tuple[int, int, int, int]:
    x, y, w, h = box
    return x, y, x + w, y + h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--shard", default="0/1", help="K/N: evaluate every N-th creative from the K-th (run N "
                        "processes, then --merge their --out files)")
    parser.add_argument("--merge", type=Path, nargs="*", help="merge these shard results instead of evaluating")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--failures", type=Path, help="write the worst creatives with boxes drawn here")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--det-short", type=int, default=640, help="text detection's shorter side in pixels")
    parser.add_argument("--det-long", type=int, default=1280, help="text detection's longest longer side")
    parser.add_argument("--no-engine", action="store_true", help="skip the attention comparison and timing")
    args = parser.parse_args()
    if args.merge:
        _report(*_merged(args.merge), args)
        return
    k, n = (int(v) for v in args.shard.split("/"))
    images = sorted(args.folder.glob("*.png"))[: args.limit or None][k::n]
    if not images:  # else a mistyped folder reads as a report of zeros
        parser.error(f"{args.folder}: no creatives (.png with its .json truth) to evaluate in this shard")
    detector = Detector(det_short=args.det_short, det_long=args.det_long)
    engine = None if args.no_engine else Engine()
    # Faces are measured on photographs (docs/DETECTION.md): the synthetic set's product shots hold unlabelled ones.
    kinds = [k for k in DETECTED_KINDS if k != "face"]
    counts = {k: {"tp": 0, "truth": 0, "found": 0} for k in kinds}
    share_diffs = {k: [] for k in kinds}
    t_detect, t_predict = [], []
    failures = []
    raw = {"creatives": 0, "counts": counts, "share_diff": share_diffs, "t_detect": t_detect, "t_predict": t_predict}
    for path in images:
        truth_doc = json.loads(path.with_suffix(".json").read_text())
        rgb = load_image(path)
        t0 = time.perf_counter()
        found = detector.detect(rgb)
        t1 = time.perf_counter()
        smap = engine.predict(rgb) if engine else None
        t2 = time.perf_counter()
        if rgb.shape[:2] == (1080, 1080):
            t_detect.append(t1 - t0)
            t_predict.append(t2 - t1)
        misses = 0
        for kind in kinds:
            tb = [_xyxy(e["box"]) for e in truth_doc["elements"] if e["kind"] == kind]
            fb = [d.box for d in found if d.kind == kind]
            hits = match(tb, fb)
            counts[kind]["tp"] += hits
            counts[kind]["truth"] += len(tb)
            counts[kind]["found"] += len(fb)
            misses += len(tb) - hits + len(fb) - hits
            diff = share_diff(smap, tb, fb) if smap is not None else None
            if diff is not None:
                share_diffs[kind].append(diff)
        if misses:
            failures.append((misses, path, found, truth_doc))
        raw["creatives"] += 1
        if args.out:  # after every creative, so a run cut short still reports what it measured
            args.out.with_suffix(".raw.json").write_text(json.dumps(raw))
    _report(raw, args)
    if args.failures:
        _draw_failures(args.failures, sorted(failures, key=lambda f: (-f[0], f[1].name))[:12])


def _merged(paths: list[Path]) -> tuple[dict]:
    parts = [json.loads(p.read_text()) for p in paths]
    raw = {"creatives": sum(p["creatives"] for p in parts), "counts": {}, "share_diff": {}, "t_detect": [],
           "t_predict": []}
    for p in parts:
        for kind, c in p["counts"].items():
            total = raw["counts"].setdefault(kind, {"tp": 0, "truth": 0, "found": 0})
            for key in total:
                total[key] += c[key]
        for kind, values in p["share_diff"].items():
            raw["share_diff"].setdefault(kind, []).extend(values)
        raw["t_detect"] += p["t_detect"]
        raw["t_predict"] += p["t_predict"]
    return (raw,)


def _report(raw: dict, args: argparse.Namespace) -> None:
    table = {}
    for kind, c in raw["counts"].items():
        if not c["truth"]:
            continue
        diffs = raw["share_diff"][kind]
        table[kind] = {"truth": c["truth"], "found": c["found"],
                       "precision": round(c["tp"] / c["found"], 3) if c["found"] else None,
                       "recall": round(c["tp"] / c["truth"], 3),
                       "share_mad_pp": round(statistics.mean(diffs), 2) if diffs else None}
    result = {"creatives": raw["creatives"], "kinds": table,
              "threads": os.environ.get("FOVEAL_NUM_THREADS", "default"), "det_short": args.det_short,
              "det_long": args.det_long}
    if raw["t_detect"]:
        result["speed_1080x1080"] = {"n": len(raw["t_detect"]), "detect_ms": _stats(raw["t_detect"]),
                                     "predict_ms": _stats(raw["t_predict"])}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


def _stats(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000
    return {"median": round(float(np.median(ms)), 1), "min": round(float(ms.min()), 1),
            "max": round(float(ms.max()), 1)}


def _draw_failures(folder: Path, failures) -> None:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    colours = {"headline": "red", "body_text": "orange", "cta": "lime", "logo": "cyan", "face": "magenta",
               "product": "yellow"}
    for misses, path, found, truth in failures:
        img = Image.open(path).convert("RGB")
        draw = ImageDraw.Draw(img)
        for e in truth["elements"]:
            draw.rectangle(_xyxy(e["box"]), outline="white", width=1)
        for d in found:
            draw.rectangle(d.box, outline=colours[d.kind], width=3)
            draw.text((d.box[0] + 2, d.box[1] + 2), d.kind, fill=colours[d.kind])
        img.save(folder / f"{path.stem}_{misses}.png")
        print(path.name, misses, [(d.kind, d.box) for d in found])


if __name__ == "__main__":
    main()
