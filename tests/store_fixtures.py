"""Scored creatives without running a network, for store and calibration tests (importable by worker processes)."""
from __future__ import annotations

import hashlib

import numpy as np

from foveal.saliency_map import SaliencyMap
from foveal.scoring.elements import make_element
from foveal.scoring.scores import CreativeScores, score_creative

GRAPH = "ab" * 32


def scored(seed: int, cta_weight: float | None = None, graph: str = GRAPH) -> tuple[CreativeScores, dict]:
    """A 60×80 map (random, or with ``cta_weight`` of its mass inside the CTA box) scored on cta/headline/logo."""
    rng = np.random.default_rng(seed)
    prob = rng.random((60, 80)) + 0.1
    cta = (5, 40, 20, 10)
    if cta_weight is not None:
        inside = np.zeros_like(prob, dtype=bool)
        inside[cta[1]:cta[1] + cta[3], cta[0]:cta[0] + cta[2]] = True
        prob = np.where(inside, prob / prob[inside].sum() * cta_weight, prob / prob[~inside].sum() * (1 - cta_weight))
    prob = (prob / prob.sum()).astype(np.float32)
    provenance = {"model": "test-model", "model_version": "1", "model_sha256": "cd" * 32, "graph_sha256": graph,
                  "precision": "fp32", "backend": "onnxruntime", "foveal_version": "0.1.0",
                  "image_sha256": hashlib.sha256(f"image-{seed}".encode()).hexdigest()}
    smap = SaliencyMap(prob, provenance)
    elements = [make_element("cta", "cta", cta, (60, 80)), make_element("title", "headline", (10, 5, 60, 12), (60, 80)),
                make_element("logo", "logo", (60, 48, 15, 10), (60, 80))]
    return score_creative(smap, elements), provenance


def record_until(url: str, stop_file: str, at_least: int, at_most: int, limit_s: float,
                 started_file: str | None = None) -> None:
    """Record creatives ``n0, n1...`` one transaction each (a scoring process's pattern) until ``stop_file``
    exists, at least ``at_least`` and at most ``at_most`` of them, for at most ``limit_s`` seconds; print the count.
    ``started_file`` is created once the first creative is committed."""
    import time
    from pathlib import Path

    from foveal.store import Store

    start, count = time.monotonic(), 0
    with Store(url) as store:
        while count < at_most and time.monotonic() - start < limit_s and (
                count < at_least or not Path(stop_file).exists()):
            scores, provenance = scored(count)
            store.record(f"n{count}", scores, provenance, vertical="retail", tags=["load"])
            count += 1
            if count == 1 and started_file:
                Path(started_file).touch()
    print(count)


#: Root's capabilities to ignore file permissions, dropped for :func:`without_root_override`.
_OVERRIDES = "-dac_override,-dac_read_search"


def without_root_override(command: list[str]) -> list[str]:
    """``command`` run so that file permissions apply to it: as root, through setpriv without the capabilities that
    override them (a read-only file would otherwise be writable); skips the test where that cannot be done."""
    import os
    import shutil
    import subprocess

    import pytest

    if os.geteuid() != 0:
        return command
    prefix = [shutil.which("setpriv") or "setpriv", "--bounding-set", _OVERRIDES, "--inh-caps", _OVERRIDES, "--"]
    try:
        subprocess.run([*prefix, "true"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("running as root without setpriv (util-linux) to drop root's override of file permissions")
    return [*prefix, *command]


class FreezingProxy:
    """A TCP proxy on 127.0.0.1 to ``port`` that, once :meth:`freeze` is called, forwards nothing more and answers no
    new connection while keeping every socket open: a server (or a proxy before it) that stopped answering, which
    the kernel still acknowledges, so that no TCP timeout ends the wait.  Use it as a context manager: leaving it
    closes every socket and ends its threads.  ``listen_port`` reopens a proxy closed before (a server back);
    ``connect_delay_s`` holds each new connection that long before forwarding it (a server slow to connect)."""

    def __init__(self, port: int, listen_port: int = 0, connect_delay_s: float = 0.0) -> None:
        import socket
        import threading

        self.target = port
        self.connect_delay_s = connect_delay_s
        self.frozen = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def freeze(self) -> None:
        self.frozen.set()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._sockets.append(client)
            if self.frozen.is_set():
                continue  # accepted by the kernel, never answered
            if self._closed.wait(self.connect_delay_s):
                return
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            self._sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source, sink) -> None:
        source.settimeout(0.1)
        while not self._closed.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            while self.frozen.is_set() and not self._closed.is_set():  # held: never sent, never dropped
                self._closed.wait(0.1)
            try:
                sink.sendall(data)
            except OSError:
                return

    def __enter__(self) -> "FreezingProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()
