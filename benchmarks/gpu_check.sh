#!/usr/bin/env bash
# One unattended GPU check of foveal, for a machine with an NVIDIA GPU (written for an H100/H200: CuPy 14, PyTorch
# with CUDA, pybind11, scikit-build-core, cmake, pytest-benchmark; no internet, TensorRT optional):
#   1. build and install the package (pip install --no-build-isolation --no-deps .);
#   2. preflight: the versions that shape the build (Python, NumPy, pybind11, compilers, driver, CPU), then import
#      the native module in a fresh interpreter; if that import fails: the same import with FOVEAL_NUM_THREADS=1,
#      a RelWithDebInfo build (no LTO, symbols) and its import, the backtrace from cuda-gdb (the one debugger
#      these machines have); the later phases are then skipped;
#   3. run every GPU test (pytest -m gpu): CPU/GPU kernel twins, GPU backends, Engine on CUDA;
#   4. run the GPU benchmarks (benchmarks/test_bench_gpu.py);
#   5. check the device-resident path against issue 21's targets (benchmarks/gpu_device_path.py): post-network
#      stages at 1080², SAT vs the HBM roofline, batch-64 images/s end to end from decoded images, batch-1 p99,
#      two threads on one Engine equal to the serial calls;
#   and write a Markdown report.
# $OUT (default ./gpu_check_out) ends with three files: gpu_report.md (device, phase results, benchmark and
# device-path tables), summary.json, and logs.tgz (build.log, preflight.log, pytest_gpu.log, pytest_gpu.xml,
# bench_gpu.log, bench_gpu.json, device_path.log, device_path.json, device_path.md).
# Each phase has its own time limit, so the whole check ends within 10 minutes at worst (limits 100+90+140+100+120 s,
# each plus at most 10 s to kill) and within about 9 when the preflight takes its usual seconds (if the import
# fails, the last three are skipped); a failed phase does not stop the next ones (except a failed preflight: every later
# phase imports the module), and the exit status is non-zero if any failed (device_path fails when a target is
# missed).
# Run from anywhere: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PATH="$PATH:/usr/local/cuda/bin"
export SCRATCH="$(mktemp -d)"  # this run's own: the TensorRT plan cache and the debug build, removed at the end
trap 'rm -rf "$SCRATCH"' EXIT
export FOVEAL_TRT_CACHE="${FOVEAL_TRT_CACHE:-$SCRATCH/trt_cache}"  # a fresh TensorRT plan cache (with TensorRT)
mkdir -p "$FOVEAL_TRT_CACHE"
started=$SECONDS

phase() {  # phase NAME LIMIT_S LOG COMMAND...: run with a time limit, record status and seconds
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  echo "$name $rc $((SECONDS - t0))" >>"$OUT/.phases"
  echo "[gpu_check] $name: exit $rc after $((SECONDS - t0)) s (log: $log)"
  return 0
}
: >"$OUT/.phases"

phase build 100 "$OUT/build.log" "$PY" -m pip install -v --no-build-isolation --no-deps --no-input .

preflight() {  # versions, then the native import in a fresh interpreter; non-zero if that import fails
  "$PY" - <<'PY'
import importlib.metadata as md
import platform
import sys
print("python", sys.version.replace("\n", " "), sys.executable)
print("platform", platform.platform(), platform.machine())
for name in ("numpy", "pybind11", "scikit-build-core", "cmake", "cupy-cuda13x", "cupy-cuda12x", "torch",
             "onnxruntime", "onnxruntime-gpu", "tensorrt", "pillow"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "-")
PY
  for tool in "c++ --version" "cmake --version" "nvcc --version" \
      "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader"; do
    echo "\$ $tool"; $tool 2>&1 | head -4
  done
  grep -m1 "model name" /proc/cpuinfo; nproc; cat /proc/self/cgroup
  local probe='import foveal._native as n; print("native import ok, threads", n.num_threads, n.__file__)'
  (cd /tmp && "$PY" -X faulthandler -c "$probe") && return 0
  echo "native import FAILED; again with FOVEAL_NUM_THREADS=1:"
  (cd /tmp && FOVEAL_NUM_THREADS=1 "$PY" -X faulthandler -c "$probe")
  # The shipped build is Release: pybind11 adds LTO and strips it. A RelWithDebInfo build (no LTO, symbols kept)
  # tells an LTO/strip fault from one in the code, and gives the debugger names.
  echo "RelWithDebInfo build:"
  "$PY" -m pip install -q --no-build-isolation --no-deps --no-input --target "$SCRATCH/dbg" \
    --config-settings=cmake.build-type=RelWithDebInfo --config-settings=build-dir="$SCRATCH/dbg_build" . &&
    (cd /tmp && PYTHONPATH="$SCRATCH/dbg" "$PY" -X faulthandler -c "$probe")
  if command -v cuda-gdb >/dev/null; then
    (cd /tmp && PYTHONPATH="$SCRATCH/dbg" cuda-gdb -batch -ex run -ex bt -ex "info registers rip" \
      -ex "x/8i \$pc" -ex "info sharedlibrary" --args "$PY" -c "import foveal._native")
  fi
  return 1
}
export PY
export -f preflight
phase preflight 90 "$OUT/preflight.log" bash -c preflight

# Only the test files that hold GPU tests are collected: the others may import packages (hypothesis, scipy,
# pysaliency...) this machine lacks. -W default: on an unattended run a third-party warning is reported (in the
# log's warnings summary), not turned into an error by the project's filterwarnings=error.
if grep -q "^preflight 0 " "$OUT/.phases"; then
  mapfile -t gpu_tests < <(grep -l "pytest.mark.gpu" tests/test_*.py)
  phase tests 140 "$OUT/pytest_gpu.log" "$PY" -m pytest -m gpu "${gpu_tests[@]}" -W default -ra \
    --junitxml="$OUT/pytest_gpu.xml" -p no:cacheprovider

  phase bench 100 "$OUT/bench_gpu.log" "$PY" -m pytest benchmarks/test_bench_gpu.py -W default -ra -p no:cacheprovider \
    --benchmark-json="$OUT/bench_gpu.json" --benchmark-min-rounds=5 --benchmark-max-time=0.5 --benchmark-warmup=on

  phase device_path 120 "$OUT/device_path.log" "$PY" -X faulthandler benchmarks/gpu_device_path.py "$OUT"
else
  echo "[gpu_check] the native module does not import: tests, bench and device_path skipped (see preflight.log)"
fi

"$PY" - "$OUT" "$((SECONDS - started))" <<'PY'
"""Write gpu_report.md and summary.json from the phase results and the benchmark JSON."""
import json
import subprocess
import sys
from pathlib import Path

out, total = Path(sys.argv[1]), int(sys.argv[2])
phases = [line.split() for line in (out / ".phases").read_text().splitlines()]
try:
    device = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                             "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
except (OSError, subprocess.SubprocessError) as exc:
    device = f"nvidia-smi unavailable ({exc})"


def tail(name: str, lines: int = 1) -> str:
    path = out / name
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " / ".join(text[-lines:]) if text else "(no output)"


report = [f"# foveal GPU check\n", f"Device: {device}\n", f"Total: {total} s\n", "| phase | exit | seconds | last line |",
          "|---|---|---|---|"]
logs = {"build": "build.log", "preflight": "preflight.log", "tests": "pytest_gpu.log", "bench": "bench_gpu.log", "device_path": "device_path.log"}
for name, rc, seconds in phases:
    report.append(f"| {name} | {rc} | {seconds} | {tail(logs[name]).replace('|', '/')} |")

rows, summary = [], {"device": device, "seconds": total, "phases": {n: int(rc) for n, rc, _ in phases}}
bench = out / "bench_gpu.json"
if bench.is_file() and bench.stat().st_size:
    data = json.loads(bench.read_text())
    summary["machine_info"] = {k: data.get("machine_info", {}).get(k) for k in ("node", "python_version", "cpu")}
    by_group: dict[str, list[dict]] = {}
    for b in data.get("benchmarks", []):
        by_group.setdefault(b["group"], []).append(b)
    report += ["", "## Benchmarks (median; GPU rows include a device synchronisation)", "",
               "| group | implementation | median ms | per image ms | vs baseline | notes |", "|---|---|---|---|---|---|"]
    for group, items in by_group.items():
        base = next((b["stats"]["median"] for b in items if b["extra_info"].get("baseline")), None)
        for b in items:
            median, extra = b["stats"]["median"], b["extra_info"]
            per = median / extra["images"] if extra.get("images") else None
            notes = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()
                              if k not in ("baseline", "images"))
            report.append(f"| {group} | {b['name']} | {median * 1e3:.3f} | "
                          f"{'' if per is None else f'{per * 1e3:.3f}'} | "
                          f"{'' if base is None else f'{base / median:.2f}x'} | {notes} |")
            rows.append({"group": group, "name": b["name"], "median_s": median, "per_image_s": per,
                         "speedup": None if base is None else base / median, **extra})
summary["benchmarks"] = rows
device_path = out / "device_path.json"
if device_path.is_file() and device_path.stat().st_size:
    summary["device_path"] = json.loads(device_path.read_text())
    report += ["", (out / "device_path.md").read_text() if (out / "device_path.md").is_file() else
               "## Device-resident path: stopped before its table (see device_path.json)"]
(out / "gpu_report.md").write_text("\n".join(report) + "\n")
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print("\n".join(report))
PY
failed=$(awk '$2 != 0' "$OUT/.phases" | wc -l)
rm -f "$OUT/.phases"
# Three files in the end (some runners bring back only a few): the report, the summary and one archive of the rest.
(cd "$OUT" && logs=$(ls | grep -v -x -e gpu_report.md -e summary.json -e logs.tgz) &&
  tar czf logs.tgz $logs && rm -f $logs)
echo "[gpu_check] done in $((SECONDS - started)) s; $failed phase(s) failed; report: $OUT/gpu_report.md"
[ "$failed" -eq 0 ]
