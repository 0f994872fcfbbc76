"""Load test of ``foveal serve`` on loopback, with in-process ``Engine`` as the baseline in the same run.

    PYTHONPATH=python python benchmarks/serve_load.py [--rounds 3] [--seconds 8] [--concurrency 1,8,32]
    PYTHONPATH=python python benchmarks/serve_load.py --soak-s 600          # the soak: RSS and lost requests

The service runs in a subprocess (``python -m foveal serve`` on 127.0.0.1); the load generator is this process's
own bare asyncio HTTP/1.1 client (``--client httpx`` for httpx).  Each round runs, per concurrency level, the in-process baseline and then the
service, so both see the same machine state; results are the median over rounds with the range.

Baselines (what a strong engineer would do without a service):
- concurrency 1: ``engine.predict(jpeg_bytes)`` in a loop (decode, network, postprocess; the service does the
  same per request plus HTTP and the map's transfer);
- concurrency 8 and 32: ``engine.predict_batch(32 × jpeg_bytes, batch_size=max_batch)``, images per second.

CPU time per request (the server process's, all threads, from /proc) is reported beside wall time: on a shared,
overloaded machine wall-clock latency measures the scheduler as much as the code, CPU time much less so.

Every loop is bounded by a request count and a time limit.  Nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleaved import at_least, seconds as seconds_arg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESPONSES = {"npy": {"format": "npy"}, "png": {"format": "png"}, "json": {"format": "json"},
             "grid": {"format": "json", "map": "false", "grid": "32x24"},
             "provenance": {"format": "json", "map": "false"}}


def jpeg_800x600() -> bytes:
    """The example creative resized to 800×600, as a quality-90 JPEG."""
    from PIL import Image

    with Image.open(ROOT / "examples" / "creative.png") as image:
        buf = io.BytesIO()
        image.convert("RGB").resize((800, 600), Image.LANCZOS).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, max_batch: int, max_wait_ms: float, log: Path) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "foveal", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
                                 "--max-queue", "1024"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready in 120 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, body: bytes, concurrency: int, seconds: float, max_requests: int,
               params: dict[str, str], client: str = "raw") -> tuple[list[float], int, float]:
    """``concurrency`` workers posting ``body`` until ``seconds`` or ``max_requests``: latencies, errors, wall."""
    if client == "raw":
        return await load_raw(url, body, concurrency, seconds, max_requests, params)
    import httpx

    latencies: list[float] = []
    errors = 0
    sent = 0
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker() -> None:
            nonlocal errors, sent
            while time.perf_counter() < stop and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", params=params, content=body,
                                          headers={"Content-Type": "image/jpeg"})
                    ok = r.status_code == 200 and len(r.content) > 0
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


class _Exchange(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection that reads each response into one reused buffer (no per-chunk copies):
    what a C or Go client costs, where Python stream readers spend milliseconds per 2 MB map."""

    def __init__(self) -> None:
        self.buffer = bytearray(8 * 2**20)
        self.filled = 0
        self.expected: int | None = None  # bytes of the whole response, once its headers are read
        self.ok = False
        self.done: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.filled == len(self.buffer):
            self.buffer.extend(bytes(len(self.buffer)))
        return memoryview(self.buffer)[self.filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self.filled += nbytes
        if self.done is None or self.done.done():
            return
        if self.expected is None:  # headers not parsed yet: look for their end in the new bytes only
            end = self.buffer.find(b"\r\n\r\n", max(0, self.filled - nbytes - 3), self.filled)
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]) \
                if b"content-length:" in head else 0
            self.expected, self.ok = end + 4 + length, head.split(b" ", 2)[1] == b"200" and length > 0
        if self.filled >= self.expected:
            self.done.set_result(self.ok)

    def connection_lost(self, exc) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(False)

    async def exchange(self, request: bytes) -> bool:
        self.filled, self.expected, self.ok = 0, None, False
        self.done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return await self.done


def predict_request(url: str, body: bytes, params: dict[str, str]) -> bytes:
    """The whole HTTP/1.1 request posting the JPEG ``body`` to ``url``'s /v1/predict, for :class:`_Exchange`."""
    from urllib.parse import urlencode, urlsplit

    where = urlsplit(url)
    return (f"POST /v1/predict?{urlencode(params)} HTTP/1.1\r\nHost: {where.hostname}:{where.port}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n").encode("ascii") + body


async def connect(url: str) -> tuple[asyncio.Transport, _Exchange]:
    """A keep-alive connection to ``url``'s host and port."""
    from urllib.parse import urlsplit

    where = urlsplit(url)
    return await asyncio.get_running_loop().create_connection(_Exchange, where.hostname, where.port)


async def load_raw(url: str, body: bytes, concurrency: int, seconds: float, max_requests: int,
                   params: dict[str, str]) -> tuple[list[float], int, float]:
    """:func:`load` with a bare keep-alive HTTP/1.1 client (:class:`_Exchange`), so that the load generator
    takes little of this 2-core machine's CPU from the server it measures (httpx spends milliseconds a request)."""
    request = predict_request(url, body, params)
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, sent
        transport, conn = await connect(url)
        try:
            while time.perf_counter() < stop and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                ok = await asyncio.wait_for(conn.exchange(request), 60)
                latencies.append(time.perf_counter() - t0)
                errors += not ok
        finally:
            transport.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


_WRK_SCRIPT = """
local f = assert(io.open(os.getenv("FOVEAL_BENCH_BODY"), "rb"))
wrk.method, wrk.body = "POST", f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FOVEAL %d %d %d %f %f %f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def load_wrk(url: str, body: bytes, concurrency: int, seconds: float, params: dict[str, str]) -> dict[str, float]:
    """The load from ``wrk`` (Debian's ``wrk``: a C client on one thread, epoll, keep-alive), for latencies that
    include no Python client at all: p50/p90/p99 (ms), requests per second, errors, requests."""
    import shutil
    import tempfile
    from urllib.parse import urlencode

    if shutil.which("wrk") is None:
        raise SystemExit("--client wrk needs wrk (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        script, data = Path(tmp, "post.lua"), Path(tmp, "body.jpg")
        script.write_text(_WRK_SCRIPT)
        data.write_bytes(body)
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "60s",
                              "-s", str(script), f"{url}/v1/predict?{urlencode(params)}"],
                             env={**os.environ, "FOVEAL_BENCH_BODY": str(data)}, capture_output=True, text=True,
                             timeout=seconds + 120, check=True).stdout
    fields = next(line for line in out.splitlines() if line.startswith("FOVEAL ")).split()[1:]
    requests, duration_us, errors = (int(x) for x in fields[:3])
    p50, p90, p99 = (float(x) / 1e3 for x in fields[3:])
    return {"p50": p50, "p90": p90, "p99": p99, "rps": requests / (duration_us / 1e6), "errors": float(errors),
            "requests": float(requests)}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def in_process_predict(engine, body: bytes, seconds: float, max_requests: int) -> tuple[list[float], float]:
    """Latencies of ``engine.predict`` in a loop, and the CPU seconds per call (every thread of this process)."""
    out = []
    stop = time.perf_counter() + seconds
    cpu0 = time.process_time()
    while time.perf_counter() < stop and len(out) < max_requests:
        t0 = time.perf_counter()
        engine.predict(body)
        out.append(time.perf_counter() - t0)
    return out, (time.process_time() - cpu0) / len(out)


async def paired(url: str, server: int, engine, body: bytes, params: dict[str, str], seconds: float,
                 max_pairs: int) -> tuple[list[float], list[float], float, float, float]:
    """Concurrency 1, interleaved: in-process ``engine.predict`` and one service request, alternately (which goes
    first alternates too), so both see the same moment of this noisy machine and their difference per pair is the
    service's own cost.  Returns both latency lists, the server's CPU seconds per request, this process's CPU
    seconds per in-process predict and per service request (the load generator's own cost)."""
    request = predict_request(url, body, params)
    transport, conn = await connect(url)
    local, remote = [], []
    local_cpu = remote_cpu = server_cpu = 0.0
    stop = time.perf_counter() + seconds
    try:
        while time.perf_counter() < stop and len(local) < max_pairs:
            for first in ((True, False) if len(local) % 2 else (False, True)):
                s0 = cpu_seconds(server)  # a /proc read: outside the timed span
                c0, t0 = time.process_time(), time.perf_counter()
                if first:
                    engine.predict(body)
                    local.append(time.perf_counter() - t0)
                    local_cpu += time.process_time() - c0
                else:
                    if not await asyncio.wait_for(conn.exchange(request), 60):
                        raise SystemExit("a request failed during the paired run")
                    remote.append(time.perf_counter() - t0)
                    remote_cpu += time.process_time() - c0
                    server_cpu += cpu_seconds(server) - s0
    finally:
        transport.close()
    n = len(remote)
    return local, remote, server_cpu / n, local_cpu / len(local), remote_cpu / n


def in_process_batch(engine, body: bytes, n: int, batch_size: int, seconds: float) -> float:
    """Images per second of ``predict_batch`` over repeated ``n``-image calls."""
    done, start = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - start < seconds:
        engine.predict_batch([body] * n, batch_size=batch_size)
        done += n
    return done / (time.perf_counter() - start)


def summarise(name: str, rows: list[dict[str, float]]) -> str:
    def med(key: str) -> str:
        vals = [r[key] for r in rows]
        return f"{statistics.median(vals):.1f} ({min(vals):.1f}–{max(vals):.1f})"
    keys = [k for k in ("p50", "p90", "p99", "rps", "errors", "cpu_ms", "client_cpu_ms") if k in rows[0]]
    return f"{name:<34} " + "  ".join(f"{k} {med(k)}" for k in keys)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=at_least(1), default=3)
    p.add_argument("--seconds", type=seconds_arg, default=8.0, help="per measurement (bounded also by --requests)")
    p.add_argument("--requests", type=at_least(1), default=2000, help="most requests per measurement")
    p.add_argument("--concurrency", type=_levels, default=[1, 8, 32], help="comma-separated client counts")
    p.add_argument("--max-batch", type=at_least(1), default=16)
    p.add_argument("--max-wait-ms", type=float, default=2.0)
    p.add_argument("--format", default="npy", choices=sorted(RESPONSES),
                   help="what /v1/predict returns: npy (the exact float32 map), png (16-bit PNG), json (document with "
                        "the PNG map in base64), grid (document with a 32x24 grid only), provenance (document "
                        "without the map: the smallest answer)")
    p.add_argument("--client", default="raw", choices=("raw", "httpx", "wrk"),
                   help="load generator: raw (a bare keep-alive HTTP/1.1 client, little CPU), httpx, or wrk (C; "
                        "apt-get install wrk; at concurrency 1 it alternates with in-process predict in blocks, "
                        "not call by call)")
    p.add_argument("--soak-s", type=seconds_arg, default=None,
                   help="run a soak of this many seconds instead (e.g. 600)")
    p.add_argument("--soak-concurrency", type=at_least(1), default=8)
    args = p.parse_args()

    import foveal

    body = jpeg_800x600()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = tempfile.TemporaryDirectory(prefix="foveal-serve-bench-")  # the server's log, shown if it fails
    log = Path(logs.name) / "serve.log"
    server = start_server(port, args.max_batch, args.max_wait_ms, log)
    params = RESPONSES[args.format]
    threads = os.environ.get("FOVEAL_NUM_THREADS", "default")
    print(f"foveal {foveal.__version__}, 800x600 JPEG ({len(body) / 1024:.0f} KiB), response {args.format}, "
          f"client {args.client}, max_batch {args.max_batch}, max_wait_ms {args.max_wait_ms}, threads {threads}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    try:
        if args.soak_s is not None:
            soak(url, server.pid, body, args, params)
            return
        engine = foveal.Engine()
        engine.predict_batch([body] * 2)  # warm
        levels = args.concurrency
        results: dict[str, list[dict[str, float]]] = {}
        for r in range(args.rounds):
            for c in levels:
                if c == 1 and args.client == "raw":
                    local, remote, server_cpu, local_cpu, client_cpu = asyncio.run(
                        paired(url, server.pid, engine, body, params, 2 * args.seconds, args.requests))
                    results.setdefault("in-process predict (c=1)", []).append(
                        {"p50": pct(local, 50), "p90": pct(local, 90), "p99": pct(local, 99),
                         "rps": len(local) / sum(local), "cpu_ms": 1e3 * local_cpu})
                    results.setdefault("service c=1", []).append(
                        {"p50": pct(remote, 50), "p90": pct(remote, 90), "p99": pct(remote, 99),
                         "rps": len(remote) / sum(remote), "errors": 0.0, "cpu_ms": 1e3 * server_cpu,
                         "client_cpu_ms": 1e3 * client_cpu})
                    results.setdefault("paired difference (c=1)", []).append(
                        {"p50": pct([b - a for a, b in zip(local, remote)], 50)})
                    continue
                if c == 1:
                    lat, cpu = in_process_predict(engine, body, args.seconds, args.requests)
                    results.setdefault("in-process predict (c=1)", []).append(
                        {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "rps": len(lat) / sum(lat),
                         "cpu_ms": 1e3 * cpu})
                else:
                    rate = in_process_batch(engine, body, 32, args.max_batch, args.seconds)
                    results.setdefault(f"in-process predict_batch (32, bs {args.max_batch})", []).append(
                        {"rps": rate})
                server_cpu0, client_cpu0 = cpu_seconds(server.pid), time.process_time()
                if args.client == "wrk":
                    row = load_wrk(url, body, c, args.seconds, params)
                    row["cpu_ms"] = 1e3 * (cpu_seconds(server.pid) - server_cpu0) / row.pop("requests")
                    results.setdefault(f"service c={c}", []).append(row)
                    continue
                lat, errors, wall = asyncio.run(load(url, body, c, args.seconds, args.requests, params,
                                                     args.client))
                server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu0, time.process_time() - client_cpu0
                results.setdefault(f"service c={c}", []).append(
                    {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "rps": len(lat) / wall,
                     "errors": float(errors), "cpu_ms": 1e3 * server_cpu / len(lat),
                     "client_cpu_ms": 1e3 * client_cpu / len(lat)})
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        print("median over rounds (range); latencies in ms, throughput in requests (images) per second")
        for name, rows in results.items():
            print(summarise(name, rows))
        base = statistics.median(r["p50"] for r in results["in-process predict (c=1)"]) \
            if "in-process predict (c=1)" in results else None
        if base is not None and "service c=1" in results:
            overhead = [s["p50"] - b["p50"] for s, b in zip(results["service c=1"],
                                                           results["in-process predict (c=1)"])]
            print(f"service p50 overhead at c=1, per round: {', '.join(f'{o:+.2f} ms' for o in overhead)} "
                  f"(baseline p50 {base:.1f} ms)")
            if "paired difference (c=1)" in results:
                print("median of per-pair differences (service − in-process) at c=1, per round: "
                      + ", ".join(f"{r['p50']:+.2f} ms" for r in results["paired difference (c=1)"]))
            cpu = [s["cpu_ms"] - b["cpu_ms"] for s, b in zip(results["service c=1"],
                                                            results["in-process predict (c=1)"])]
            print(f"server CPU per request minus in-process CPU per predict at c=1, per round: "
                  f"{', '.join(f'{o:+.2f} ms' for o in cpu)}")
        batch_key = f"in-process predict_batch (32, bs {args.max_batch})"
        for c in levels:
            if c > 1 and batch_key in results:
                ratios = [s["rps"] / b["rps"] for s, b in zip(results[f"service c={c}"], results[batch_key])]
                print(f"service c={c} throughput / in-process predict_batch, per round: "
                      f"{', '.join(f'{x:.2f}' for x in ratios)}")
    finally:
        server.terminate()
        code = server.wait(timeout=60)
        print(f"server exit code after SIGTERM: {code}")
        logs.cleanup()


def _levels(text: str) -> list[int]:
    """An argparse type: comma-separated client counts, each >= 1."""
    return [at_least(1)(part) for part in text.split(",")]


def soak(url: str, pid: int, body: bytes, args, params) -> None:
    """Constant load for ``soak_s``; server RSS sampled every 5 s; growth after warm-up (first 10 %)."""
    samples: list[tuple[float, float]] = []
    total, errors = 0, 0
    start = time.perf_counter()
    chunk = 5.0
    while time.perf_counter() - start < args.soak_s:
        lat, err, _ = asyncio.run(load(url, body, args.soak_concurrency, chunk, 100_000, params, args.client))
        total, errors = total + len(lat), errors + err
        samples.append((time.perf_counter() - start, rss_mib(pid)))
    warm = [rss for t, rss in samples if t >= 0.1 * args.soak_s]
    first, last, peak = warm[0], warm[-1], max(warm)
    print(f"soak {args.soak_s:.0f} s at concurrency {args.soak_concurrency}: {total} requests, {errors} errors "
          f"or lost; server RSS after warm-up {first:.0f} MiB → {last:.0f} MiB (peak {peak:.0f}), growth "
          f"{100 * (last - first) / first:+.1f} %")
    print("RSS samples (s, MiB): " + ", ".join(f"{t:.0f}:{r:.0f}" for t, r in samples[:: max(1, len(samples) // 20)]))


if __name__ == "__main__":
    main()
