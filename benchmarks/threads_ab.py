"""The default thread count against FOVEAL_NUM_THREADS=1, each in its own process, calls interleaved.

    python benchmarks/threads_ab.py                  # predict on a 1920x1080 JPEG, machine otherwise idle
    python benchmarks/threads_ab.py --load 1         # beside one competing CPU-bound process
    python benchmarks/threads_ab.py --image my.jpg   # your own image

FOVEAL_NUM_THREADS is read once per process (the kernels' pool and ONNX Runtime's threads alike), so the two
thread counts cannot share one process. Here each runs in a worker process that keeps its Engine warm and times
one ``predict(bytes)`` plus three box shares whenever the parent asks; the parent asks them in turn, alternating
which goes first, so both see the same stretch of the machine's load. While one worker runs, the other waits on
its pipe and uses no CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleaved import at_least, competing_load, seconds  # noqa: E402

#: argv: the image ("" for foveal bench's synthetic JPEG, which installs older than foveal bench lack) and the
#: Engine's keyword arguments as JSON.
WORKER = """
import json, sys, time
from foveal import Engine
if sys.argv[1]:
    data = open(sys.argv[1], "rb").read()
else:
    from foveal.bench import synthetic_jpeg
    data = synthetic_jpeg(1080, 1920)
engine = Engine(**json.loads(sys.argv[2]))
h, w = engine.predict(data).shape
boxes = [[w // 19, h // 11, max(1, w // 5), max(1, h // 5)],
         [w * 5 // 12, h * 5 // 11, max(1, w // 6), max(1, h // 10)], [0, 0, w, h]]
for _ in range(3):
    engine.predict(data).box_stats(boxes)
print("ready", flush=True)
for _ in sys.stdin:
    t0 = time.perf_counter()
    engine.predict(data).box_stats(boxes)
    print(time.perf_counter() - t0, flush=True)
"""

CASES = {"default threads": {}, "1 thread": {"FOVEAL_NUM_THREADS": "1"}}


def start(env: dict[str, str], image: str, options: dict[str, object] | None = None) -> subprocess.Popen:
    """A worker with ``env`` over this process's environment, timing ``Engine(**options)`` on ``image``."""
    worker = subprocess.Popen([sys.executable, "-c", WORKER, image, json.dumps(options or {})], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    if worker.stdout.readline().strip() != "ready":
        raise SystemExit(f"worker {env or 'default'} {options or ''} did not start (exit {worker.wait()})")
    return worker


def ask_in_turn(workers: dict[str, subprocess.Popen], rounds: int, max_seconds: float,
                load: int) -> dict[str, list[float]]:
    """Each worker's times in ms, one per round, the order rotated each round so all see the same stretch of the
    machine; beside ``load`` competing processes; the workers are stopped at the end."""
    times: dict[str, list[float]] = {name: [] for name in workers}
    try:
        with competing_load(load) if load else contextlib.nullcontext():
            time.sleep(1.0)  # the competing processes are running before the first call
            deadline = time.monotonic() + max_seconds
            names = list(workers)
            for r in range(rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    workers[name].stdin.write("go\n")
                    workers[name].stdin.flush()
                    times[name].append(float(workers[name].stdout.readline()) * 1e3)
                if time.monotonic() > deadline and r >= 1:  # two rounds at least: a median and deciles need them
                    break
    finally:
        for worker in workers.values():
            worker.stdin.close()
            worker.wait(timeout=30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=at_least(0), default=0, help="competing CPU-bound processes")
    parser.add_argument("--rounds", type=at_least(2), default=100)
    parser.add_argument("--max-seconds", type=seconds, default=120.0)
    parser.add_argument("--image", default="", help="an image (default: foveal bench's synthetic 1920x1080 JPEG)")
    args = parser.parse_args()
    if args.image and not os.path.isfile(args.image):
        parser.error(f"--image {args.image}: no such file")
    if args.image:
        from foveal.errors import FovealError
        from foveal.imageio import decode

        try:  # here, not as each worker's traceback
            decode(Path(args.image).read_bytes())
        except FovealError as exc:
            parser.error(f"--image {args.image}: {exc}")
    os.environ.pop("FOVEAL_NUM_THREADS", None)
    workers = {name: start(env, args.image) for name, env in CASES.items()}
    times = ask_in_turn(workers, args.rounds, args.max_seconds, args.load)
    print(f"predict(bytes) + 3 box shares, {args.image or 'synthetic 1920x1080 JPEG'}, competing processes "
          f"{args.load}, cpus {os.cpu_count()}, {len(times['1 thread'])} rounds")
    print(f"{'threads':<16} {'median ms':>9} {'p10':>7} {'p90':>7} {'min':>7} {'max':>7}")
    for name, t in times.items():
        deciles = statistics.quantiles(t, n=10, method="inclusive")  # within the times, as numpy.percentile
        print(f"{name:<16} {statistics.median(t):>9.2f} {deciles[0]:>7.2f} {deciles[-1]:>7.2f} {min(t):>7.2f} "
              f"{max(t):>7.2f}")
    ratio = statistics.median(times["1 thread"]) / statistics.median(times["default threads"])
    print(f"default threads are {ratio:.2f}x one thread's speed (1 thread median / default median)")


if __name__ == "__main__":
    main()
