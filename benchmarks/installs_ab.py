"""Two or more foveal installs (an older commit against this one, say), each in its own process, calls interleaved.

    pip install --no-build-isolation --no-deps --target /tmp/old-foveal .   # in a checkout of the older commit
    FOVEAL_NUM_THREADS=1 python benchmarks/installs_ab.py --install old=/tmp/old-foveal --install new= \\
        --reduced new --image photo.jpg [--load 1]

Each ``--install NAME=DIR`` is a worker process with ``DIR`` first on its ``PYTHONPATH`` (empty: the foveal this
Python imports), timing one ``predict(bytes)`` plus three box shares whenever the parent asks, as
``threads_ab.py``'s workers do; ``--reduced NAME`` adds a worker of that install with ``Engine(reduced_decode=True)``.
The parent asks them in turn, rotating who goes first, so every install sees the same stretch of the machine's load.
A target measured on one machine can be carried to another this way: the ratio between two commits moves less
between machines than either's milliseconds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleaved import at_least, seconds  # noqa: E402
from threads_ab import ask_in_turn, start  # noqa: E402


def worker(path: str, image: str, options: dict[str, object]) -> subprocess.Popen:
    """A worker with ``path`` first on its PYTHONPATH (empty: as this process has it)."""
    pythonpath = os.pathsep.join(p for p in (path, os.environ.get("PYTHONPATH", "")) if p)
    return start({"PYTHONPATH": pythonpath} if path else {}, image, options)


def _install(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR (DIR may be empty), got {text!r}")
    if path and not os.path.isdir(os.path.join(path, "foveal")):
        raise argparse.ArgumentTypeError(f"{path} holds no foveal package")
    return name, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", type=_install, action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--reduced", action="append", default=[], metavar="NAME",
                        help="also time this install with Engine(reduced_decode=True)")
    parser.add_argument("--image", default="", help="an image (default: foveal bench's synthetic 1920x1080 JPEG)")
    parser.add_argument("--load", type=at_least(0), default=0, help="competing CPU-bound processes")
    parser.add_argument("--rounds", type=at_least(2), default=60)
    parser.add_argument("--max-seconds", type=seconds, default=120.0)
    args = parser.parse_args()
    installs = dict(args.install)
    if len(installs) != len(args.install):
        parser.error("each --install NAME once")
    if unknown := [name for name in args.reduced if name not in installs]:
        parser.error(f"--reduced {unknown[0]}: no --install of that name")
    if args.image and not os.path.isfile(args.image):
        parser.error(f"--image {args.image}: no such file")
    cases = {name: (path, {}) for name, path in installs.items()}
    cases.update({f"{name}, reduced decode": (installs[name], {"reduced_decode": True}) for name in args.reduced})
    workers = {name: worker(path, args.image, options) for name, (path, options) in cases.items()}
    times = ask_in_turn(workers, args.rounds, args.max_seconds, args.load)
    first = next(iter(times))
    print(f"predict(bytes) + 3 box shares, {args.image or 'synthetic 1920x1080 JPEG'}, FOVEAL_NUM_THREADS="
          f"{os.environ.get('FOVEAL_NUM_THREADS', 'default')}, competing processes {args.load}, "
          f"{len(times[first])} rounds")
    print(f"{'install':<24} {'median ms':>9} {'p10':>7} {'p90':>7} {'min':>7} {'max':>7} {'vs ' + first:>10}")
    for name, t in times.items():
        deciles = statistics.quantiles(t, n=10, method="inclusive")
        ratio = statistics.median(times[first]) / statistics.median(t)
        print(f"{name:<24} {statistics.median(t):>9.2f} {deciles[0]:>7.2f} {deciles[-1]:>7.2f} {min(t):>7.2f} "
              f"{max(t):>7.2f} {ratio:>9.2f}x")


if __name__ == "__main__":
    main()
