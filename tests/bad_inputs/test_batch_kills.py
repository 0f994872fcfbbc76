"""Bad-input campaign, kills during batches: SIGKILL `foveal score DIR` at seeded random moments, rerun, repeat.

Whatever the moment (mid-decode, mid-report, between a Parquet part and the journal, inside an atomic write), the
final run must leave every creative exactly once in scores.csv, the Parquet tables and the journal, the same
rows as an uninterrupted run, and no ``*.part`` temporary anywhere.  Bounded: at most KILLS kills, 120 s.
"""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

import foveal
from foveal import Engine
from foveal.batch import BatchOptions, read_inputs, run_batch

ROOT = Path(__file__).resolve().parents[2]
# where foveal is imported from: the installed package in CI, python/ in a checkout
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [FOVEAL_PATH, os.environ.get("PYTHONPATH")]))}
N, KILLS, BUDGET_S = 24, 4, 120.0


def make_batch(folder: Path, n: int = N) -> None:
    folder.mkdir()
    rng = np.random.default_rng(13)
    for i in range(n):
        pixels = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"k{i:02d}.png")
        (folder / f"k{i:02d}.json").write_text(json.dumps({"units": "relative", "elements": [
            {"name": "cta", "kind": "cta", "box": [0.1, 0.5, 0.4, 0.3]},
            {"name": "headline", "kind": "headline", "box": [0.1, 0.05, 0.8, 0.2]}]}))


def score(folder: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "foveal", "-q", "score", str(folder), "-o", str(out), "--maps",
                             "--batch-size", "2", "--commit-every", "1"], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def table_rows(out: Path) -> list[tuple]:
    with (out / "scores.csv").open(newline="", encoding="utf-8") as fh:
        return sorted(tuple(r.values()) for r in csv.DictReader(fh))


def test_kill_9_at_random_moments_then_resume_exactly_once(tmp_path):
    folder = tmp_path / "in"
    make_batch(folder)
    clean = tmp_path / "clean"  # the reference: the same batch, uninterrupted, in this process
    run_batch(read_inputs(folder), clean, Engine(), BatchOptions(reports=True, maps=True), batch_size=2)

    out, rng, kills = tmp_path / "out", random.Random(1717), 0
    deadline = time.monotonic() + BUDGET_S
    while kills < KILLS and time.monotonic() < deadline:
        proc = score(folder, out)
        # Let it start scoring, then kill at a random moment within the next few commits: counted in commits, not
        # seconds, so a faster machine does not finish the batch before the kills (a fixed 0-0.4 s wait did).
        journal = out / "scores.journal"
        before = journal.read_text().count("\n") if journal.exists() else 0
        target = before + rng.randint(1, 3)
        while proc.poll() is None and time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count("\n") >= target:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))  # anywhere in the next creative's decode, write or commit
        if proc.poll() is not None:
            proc.communicate()
            break  # it finished first: the batch is done
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        kills += 1
    assert kills >= 2, "the batch finished before it could be killed twice"

    proc = score(folder, out)
    _, err = proc.communicate(timeout=BUDGET_S)
    assert proc.returncode == 0, err
    assert table_rows(out) == table_rows(clean)
    ids = pq.read_table(out / "creatives").column("creative_id").to_pylist()
    assert sorted(ids) == [f"k{i:02d}" for i in range(N)]
    elements = pq.read_table(out / "elements")
    assert elements.num_rows == 2 * N
    assert len(set(zip(elements.column("creative_id").to_pylist(), elements.column("element").to_pylist()))) == 2 * N
    assert sorted(json.loads(line) for line in (out / "scores.journal").read_text().splitlines()) == sorted(ids)
    assert sorted(p.stem for p in (out / "maps").glob("*.npy")) == sorted(ids)
    assert sorted(p.name for p in (out / "reports").iterdir()) == sorted(ids)
    assert not list(out.rglob("*.part")), "kill -9 leftovers must be cleaned on resume"


def test_resume_removes_stale_part_files_left_by_kill_9(tmp_path):
    folder = tmp_path / "in"
    make_batch(folder, 6)
    out = tmp_path / "out"
    run_batch(read_inputs(folder), out, Engine(), BatchOptions(reports=True, maps=True))
    stale = [out / ".scores.csv.abc123.part", out / "elements" / ".part-000001.parquet.x.part",
             out / "reports" / "k03" / ".report.html.q1.part", out / "maps" / ".k04.npy.zz.part"]
    for path in stale:
        path.write_bytes(b"half written")
    (folder / "keep.part").write_bytes(b"an input, not ours")
    proc = score(folder, out)
    assert proc.wait(timeout=BUDGET_S) == 0, proc.stderr.read()
    proc.stderr.close()
    assert not any(p.exists() for p in stale) and (folder / "keep.part").exists()
