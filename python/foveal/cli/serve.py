"""``foveal serve``: the HTTP service (needs ``pip install "foveal[serve]"``); docs/SERVING.md."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType

from ..errors import FovealError, InputError
from ..fileio import is_unicode, shown_name
from . import MAX_PIXELS, add_model_options, extra_arg, int_arg, number_arg, path_arg

#: A positive, finite time (ms or s): 0 would time out every request or connection at once.
_TIME = number_arg(0, above=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve predictions and scores over HTTP (JSON API, dynamic batching)",
                       description="Run the foveal HTTP service: POST /v1/predict, /v1/score, /v1/compare, "
                                   "/v1/whatif, /v1/detect; GET /v1/models, /v1/norms, /healthz, /readyz, /metrics, "
                                   "and the web page at /. SIGTERM drains in-flight requests and exits 0. See "
                                   "docs/SERVING.md and docs/WEB.md.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only; "
                   "0.0.0.0 to accept other machines)")
    p.add_argument("--port", type=int_arg(0, 65535), default=8080,
                   help="port to listen on; 0: any free one, announced on stderr "
                   "(unless -q) once the service answers (default: %(default)s)")
    add_model_options(p)
    p.add_argument("--max-batch", type=int_arg(1), default=16, help="most images per network call "
                   "(default: %(default)s)")
    p.add_argument("--max-wait-ms", type=number_arg(0), default=2.0, help="how long a partial batch waits for more "
                   "images (default: %(default)s)")
    p.add_argument("--max-queue", type=extra_arg("foveal.serve.app", _queue_length), default=256,
                   help="most images waiting; more get 503 (default: %(default)s)")
    p.add_argument("--max-body-mb", type=number_arg(2**-20, note="one byte"), default=32.0,
                   help="largest request body (default: %(default)s)")
    p.add_argument("--max-pixels", type=MAX_PIXELS, default=40e6, help="largest image (default: 40e6)")
    p.add_argument("--timeout-ms", type=_TIME, default=60000, help="deadline of a request without "
                   "X-Deadline-Ms (default: %(default)s)")
    p.add_argument("--header-timeout-s", type=_TIME, default=10.0, help="time a connection has to send a request's "
                   "headers, from its opening or the request's first byte; 408 and closed after it (default: "
                   "%(default)s)")
    p.add_argument("--keep-alive-s", type=_TIME, default=5.0, help="a kept-alive connection idle this long is "
                   "closed; set it above the idle timeout of a proxy or load balancer in front (default: "
                   "%(default)s)")
    p.add_argument("--api-keys", type=path_arg, metavar="FILE", help="require one of these keys (one per line)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   type=extra_arg("foveal.serve.cors", lambda cors, one: cors.check_origins((one,))[0],
                                  "CORS origin "),
                   help="allow browser pages from ORIGIN (repeatable; default: CORS off)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   type=extra_arg("foveal.serve.guard", lambda guard, one: guard.check_hosts((one,))[0],
                                  "allowed host "),
                   help="answer only requests whose Host header names NAME (repeatable; *.example.com for any "
                        "name under it; default: any host); against DNS rebinding of a loopback service")
    p.add_argument("--norms", action=_NormsAction, default=[], type=_named_norms, metavar="NAME=FILE",
                   help="norms clients may name in /v1/score (repeatable, each NAME once)")
    p.add_argument("--workers", type=extra_arg("foveal.serve.server", _workers, "workers "), default=1,
                   help="processes, each with its own engine, at most one per CPU (default: %(default)s)")
    p.set_defaults(handler=run)


def _queue_length(app: ModuleType, text: str) -> int:
    """--max-queue: at least the app's own minimum."""
    try:
        return int_arg(app.MIN_QUEUE)(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; a compare queues its two images together") from None


def _workers(server: ModuleType, text: str) -> int:
    """--workers: a whole number the server takes."""
    return server.check_workers(int_arg(1)(text))


class _NormsAction(argparse.Action):
    """Collect --norms NAME=FILE; a NAME given twice would leave one of its files unused without a word."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, self.dest) or []
        if any(name == values[0] for name, _ in given):
            raise argparse.ArgumentError(self, f"{values[0]!r} is named twice; give each NAME once")
        setattr(namespace, self.dest, [*given, values])


def _named_norms(text: str) -> tuple[str, str]:
    """NAME=FILE → (NAME, FILE); whether FILE exists is run()'s check."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    if not is_unicode(name):  # clients name it in JSON and form fields, which are UTF-8
        raise argparse.ArgumentTypeError(f"NAME {shown_name(name)} is not valid UTF-8 text; give another name")
    return name, path


def run(args: argparse.Namespace) -> int:
    try:
        from ..serve import ServeConfig, serve
        from ..serve.server import check_listen
    except ImportError as exc:
        raise FovealError(f"foveal serve needs the serve extra ({exc.name} is missing): "
                          "pip install \"foveal[serve]\"") from None
    check_listen(args.host, args.port)  # before the model loads: a port in use is said at once
    norms = {}
    for name, path in args.norms:
        if not Path(path).is_file():
            raise InputError(f"--norms {name}: file not found: {path}")
        norms[name] = str(Path(path).resolve())
    if args.api_keys is not None and not args.api_keys.is_file():
        raise InputError(f"--api-keys: file not found: {args.api_keys}")
    config = ServeConfig(model=args.model, device=args.device, precision=args.precision, max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                         max_body_bytes=int(args.max_body_mb * 2**20), max_pixels=int(args.max_pixels),
                         request_timeout_s=args.timeout_ms / 1000.0,
                         api_keys_file=None if args.api_keys is None else str(args.api_keys.resolve()),
                         cors_origins=tuple(args.cors_origin), allowed_hosts=tuple(args.allowed_host), norms=norms)
    # Load and run the model, and load the norms, here: a bad --model (one whose output breaks the contract too) or
    # --norms is then a one-line error before the server starts, not a failed startup inside it.
    from ..engine import Engine
    from ..serve.app import service_norms, warmup_image

    engine = Engine(config.model, device=config.device, precision=config.precision, max_pixels=config.max_pixels)
    engine.predict(warmup_image(config.max_pixels))
    service_norms(engine, norms)
    serve(config, engine=engine if args.workers == 1 else None, host=args.host, port=args.port, workers=args.workers,
          log_level="info" if args.verbose else "warning", header_timeout_s=args.header_timeout_s,
          keep_alive_s=args.keep_alive_s, on_ready=None if args.quiet else _announce)
    return 0


def _announce(url: str) -> None:
    # The one line a user (or a script that started it with --port 0) needs: where it answers, once it does.
    print(f"foveal: serving on {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
