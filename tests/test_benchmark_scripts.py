"""The scripts under benchmarks/ run as documented, and print numbers that can be true."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import foveal

ROOT = Path(__file__).resolve().parents[1]
# where foveal is imported from: the installed package in CI, python/ in a checkout
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))


def _script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([FOVEAL_PATH, str(ROOT)])}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_threads_ab_deciles_lie_within_the_times() -> None:
    """statistics.quantiles' default ("exclusive") extrapolates past the samples: two rounds read p10 18.2 ms
    against a minimum of 27.4 ms, and p90 49.5 against a maximum of 40.4."""
    run = _script("threads_ab.py", "--rounds", "2", "--max-seconds", "1")
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines()
            if line.startswith(("default threads ", "1 thread ")) and " are " not in line]
    assert len(rows) == 2
    for row in rows:
        median, p10, p90, low, high = map(float, row[-5:])
        assert low <= p10 <= median <= p90 <= high


def test_installs_ab_times_each_install_and_its_reduced_decode_in_turn() -> None:
    run = _script("installs_ab.py", "--install", "here=", "--install", f"there={FOVEAL_PATH}", "--reduced", "there",
                  "--rounds", "3", "--max-seconds", "1")
    assert run.returncode == 0, run.stderr
    rows = {line[:24].strip(): line[24:].split() for line in run.stdout.splitlines()[2:]}
    assert list(rows) == ["here", "there", "there, reduced decode"], run.stdout
    assert rows["here"][-1] == "1.00x"
    for row in rows.values():
        median, p10, p90, low, high = map(float, row[:5])
        assert low <= p10 <= median <= p90 <= high
    refused = _script("installs_ab.py", "--install", "a=", "--reduced", "b")
    assert refused.returncode == 2 and "no --install of that name" in refused.stderr


def test_gpu_device_path_answers_help_without_a_gpu(tmp_path) -> None:
    """``--help`` was taken for the output folder (a GPU machine would have run the check into ./--help), and
    without CuPy the script ended in a ModuleNotFoundError traceback."""
    run = _script("gpu_device_path.py", "--help")
    assert run.returncode == 0 and "usage:" in run.stdout and "out" in run.stdout, run.stderr


def test_eval_detect_refuses_a_folder_without_creatives(tmp_path) -> None:
    """A mistyped folder was evaluated as zero creatives: a report of zeros and exit status 0."""
    run = _script("eval_detect.py", str(tmp_path / "nope"), "--no-engine")
    assert run.returncode == 2 and "no creatives" in run.stderr and "Traceback" not in run.stderr


def test_bench_precision_refuses_bad_rounds_and_sizes_in_one_line() -> None:
    """--size abc, --size 0x0 and --rounds 0 ended in tracebacks (ValueError, ZeroDivisionError, a reduction of
    an empty array) after loading three engines."""
    for args in (["--size", "abc"], ["--size", "0x0"], ["--rounds", "0"]):
        run = _script("bench_precision.py", *args)
        assert run.returncode == 2 and "error: argument" in run.stderr and "Traceback" not in run.stderr, args


def test_decode_times_foveal_against_pillow_and_opencv_on_the_same_pixels() -> None:
    pytest.importorskip("cv2", reason="benchmarks/decode.py compares against OpenCV (installed with the detect extra)")
    done = _script("decode.py", "--rounds", "1", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "differ" not in done.stderr  # every baseline ends with foveal's pixels
    for title in ("JPEG in full", "JPEG reduced to 480x270", "RGBA PNG, on white"):
        assert title in done.stdout
    assert done.stdout.count("foveal decode") == 3


def test_display_figures_times_both_sizes_and_the_reduced_files_are_smaller() -> None:
    run = _script("display_figures.py", "--side", "1600", "--rounds", "1")  # 2.56 MP: over the 2-MP limit
    assert run.returncode == 0, run.stderr
    sizes = [float(word) for word in run.stdout.splitlines()[0].replace(";", " ").split()
             if word.replace(".", "").isdigit()]
    png_reduced, png_full, page_reduced, page_full = sizes
    assert png_reduced < png_full and page_reduced < page_full, run.stdout
    assert run.stdout.count("reduced  ") == 2 and run.stdout.count("full size  ") == 2, run.stdout


def test_detect_reading_times_runs_of_similar_width_against_one_padded_run() -> None:
    from foveal.detect import unavailable_reason

    if unavailable_reason() is not None:
        pytest.skip(f"needs the detect extra: {unavailable_reason()}")
    run = _script("detect_reading.py", "--buttons", "4", "--rounds", "1")
    assert run.returncode == 0, run.stderr
    assert "one run, padded to the widest" in run.stdout and "foveal runs of similar width" in run.stdout
