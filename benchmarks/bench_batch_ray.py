"""Batch throughput: the library batch in one process vs the same batch on Ray with CPU actors, in the same run.

500 banners (300x250, three elements each) are scored into Parquet/CSV tables by ``foveal.batch.run_batch`` (one
Engine, default threads) and by ``run_batch_on_ray`` (an in-process Ray cluster, ``--actors`` CPU actors of one
thread each), interleaved, ``--rounds`` times each, into fresh output folders.  Reported per implementation:
median and range of wall time and creatives/s, the steady-state rate on Ray (after the first result: actors up),
and the per-stage split (decode, predict, score: CPU-seconds summed over actors; commit: the driver's table writes).

Run: PYTHONPATH=python python benchmarks/bench_batch_ray.py [--creatives 500] [--rounds 3] [--actors 2]
(``FOVEAL_NUM_THREADS=1`` for one thread in the single process; ``--device cuda`` on a GPU node).  Not in CI.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

STAGES = ("decode", "predict", "score", "commit")


def make_banners(folder: Path, n: int) -> None:
    """``n`` seeded 300x250 banners: a background, a product block, a headline bar and a CTA button."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(500)
    for i in range(n):
        px = np.empty((250, 300, 3), np.uint8)
        px[:] = rng.integers(0, 256, 3)
        px += rng.integers(0, 24, (250, 300, 1), dtype=np.uint8)
        x = int(rng.integers(10, 150))
        px[60:180, x:x + 120] = rng.integers(0, 256, 3)
        px[15:45, 20:280] = rng.integers(0, 256, 3)
        px[195:235, 170:285] = rng.integers(0, 256, 3)
        Image.fromarray(px).save(folder / f"b{i:04d}.png")
        (folder / f"b{i:04d}.json").write_text(json.dumps({"elements": [
            {"name": "product", "kind": "product", "box": [x, 60, 120, 120]},
            {"name": "headline", "kind": "headline", "box": [20, 15, 260, 30]},
            {"name": "cta", "kind": "cta", "box": [170, 195, 115, 40]}]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creatives", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: one GPU actor per --actors")
    parser.add_argument("--gpus-per-actor", type=float, default=1.0)
    args = parser.parse_args()

    import ray

    from foveal import Engine
    from foveal.batch import read_inputs, run_batch
    from foveal.batch.on_ray import EngineSpec, run_batch_on_ray

    work = Path(tempfile.mkdtemp(prefix="foveal-bench-batch-"))
    try:
        make_banners(work / "in", args.creatives)
        items = read_inputs(work / "in")
        engine = Engine(device=args.device)
        spec = EngineSpec(device=args.device)
        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        cluster_start = time.perf_counter() - t
        runs: dict[str, list[dict[str, float]]] = {"single process": [], f"ray {args.actors} actors": []}
        for r in range(args.rounds):
            for name in runs:  # interleaved: load changes on this shared machine hit both alike
                out = work / f"out-{r}-{name.split()[0]}"
                if name.startswith("ray"):
                    s = run_batch_on_ray(items, out, spec, address=None, actors=args.actors,
                                         gpus_per_actor=args.gpus_per_actor, batch_size=args.batch_size)
                else:
                    s = run_batch(items, out, engine, batch_size=args.batch_size)
                assert s.scored == args.creatives and not s.errors, s
                runs[name].append(s.seconds)
                print(f"round {r} {name}: {s.seconds['wall']:.1f} s", flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = args.creatives
    base = statistics.median(n / s["wall"] for s in runs["single process"])
    print(f"\n{n} banners 300x250, batch size {args.batch_size}, {os.cpu_count()} CPUs, "
          f"FOVEAL_NUM_THREADS={os.environ.get('FOVEAL_NUM_THREADS', 'unset')}, ray.init {cluster_start:.1f} s "
          f"(not in the times below)")
    print(f"{'implementation':<16} {'wall s (range)':>22} {'creatives/s (range)':>24} {'x single':>9} "
          f"{'steady/s':>9} " + " ".join(f"{s + ' s':>10}" for s in STAGES))
    for name, seconds in runs.items():
        walls = [s["wall"] for s in seconds]
        rates = [n / w for w in walls]
        steady = [(n - args.batch_size) / (s["wall"] - s["startup"]) for s in seconds if "startup" in s]
        steady_text = f"{statistics.median(steady):9.1f}" if steady else f"{'-':>9}"
        stages = " ".join(f"{statistics.median(s[k] for s in seconds):10.2f}" for k in STAGES)
        print(f"{name:<16} {statistics.median(walls):8.1f} ({min(walls):5.1f}-{max(walls):5.1f}) "
              f"{statistics.median(rates):10.1f} ({min(rates):5.1f}-{max(rates):5.1f}) "
              f"{statistics.median(rates) / base:8.2f}x {steady_text} {stages}")
        if any("startup" in s for s in seconds):
            print(f"{'':<16} startup (join, actors up, first batch): median "
                  f"{statistics.median(s['startup'] for s in seconds):.1f} s")


if __name__ == "__main__":
    main()
