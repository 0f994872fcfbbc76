"""Resuming a large batch: how long reopening an output folder takes before the first new creative is scored.

A batch output folder of ``--creatives`` committed creatives (two elements each) is written through
``foveal.batch.BatchStore`` in parts of ``--per-part`` (the CLI commits every 256 creatives), then reopened
``--rounds`` times, as ``foveal score`` does when it resumes; each reopen checks every part against the journal
and the CSV. Reported: median and range of the reopen time. Synthetic rows: no model runs.

Run: PYTHONPATH=python python benchmarks/bench_resume.py [--creatives 100000] [--per-part 256] [--rounds 3]
Not in CI.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleaved import at_least  # noqa: E402

from foveal.batch import CREATIVE_COLUMNS, ELEMENT_COLUMNS, BatchStore, CreativeResult  # noqa: E402
from foveal.batch.store import IDENTITY  # noqa: E402


def settings() -> dict:
    return {"model": "m", "model_sha256": "a" * 64, "graph_sha256": "b" * 64, "precision": "int8",
            "norms_sha256": None, "format": None, "pass_percentile": 70.0, "reports": False, "html": False,
            "maps": False}


def result(cid: str) -> CreativeResult:
    ident = {k: settings()[k] for k in IDENTITY}
    image = f"/creatives/{cid}.png"
    element = dict.fromkeys(ELEMENT_COLUMNS) | {"creative_id": cid, "image": image, "element": "cta", "kind": "cta",
                                                "x": 0, "y": 0, "w": 10, "h": 10, "share": 0.1, **ident}
    creative = dict.fromkeys(CREATIVE_COLUMNS) | {"creative_id": cid, "image": image, "height": 100, "width": 100,
                                                  "elements": 2, **ident}
    return CreativeResult(cid, image, [element, element | {"element": "logo", "kind": "logo"}], creative)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--creatives", type=at_least(1), default=100_000)
    p.add_argument("--per-part", type=at_least(1), default=256)
    p.add_argument("--rounds", type=at_least(1), default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        with BatchStore(out, settings()) as store:
            for first in range(0, args.creatives, args.per_part):
                store.commit([result(f"c{i:08d}") for i in range(first, min(first + args.per_part, args.creatives))])
        parts = len(list((out / "elements").glob("part-*.parquet")))
        print(f"{args.creatives} creatives in {parts} parts per table, written in {time.perf_counter() - start:.1f} s")
        seconds = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            with BatchStore(out, settings()) as store:
                assert len(store.done) == args.creatives
            seconds.append(time.perf_counter() - start)
        print(f"reopen (resume): median {statistics.median(seconds):.2f} s, range {min(seconds):.2f}-"
              f"{max(seconds):.2f} s over {args.rounds} rounds")


if __name__ == "__main__":
    main()
