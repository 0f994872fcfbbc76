"""``foveal`` command line: one module per subcommand, each with ``register(subparsers)``.

Exit codes: 0 success, 1 a foveal error (bad input, model, backend), 2 usage error (an option's value wrong on its
face included: the shared argparse types below check it while parsing), 130 interrupted (Ctrl-C), 143
terminated (SIGTERM). Errors are one line on stderr; set FOVEAL_DEBUG=1 to see the traceback of an unexpected failure.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import io
import logging
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import IO, NoReturn, TypeVar

from .._version import __version__
from ..errors import FovealError, InputError, one_line
from ..fileio import DISK_FULL, check_output, inputs_protected, path_is, shown_name
from ..models import DEFAULT_MODEL, PRECISIONS
from ..progress import note

T = TypeVar("T")

# Subcommand modules, in the order `foveal --help` lists them.
COMMANDS = ("predict", "score", "norms", "eval", "compare", "whatif", "detect", "finetune", "serve", "outcomes",
            "calibrate", "bench")


#: What scripts branch on; `foveal --help` ends with it.
EXIT_STATUS = ("exit status: 0 done; 1 an error (bad input, model, backend), also when any image or creative of a "
               "run of several failed (predict, detect, a score batch: the failures are named on stderr, the "
               "others are written); 2 a malformed command line (also an option's value wrong on its face: out of "
               "range, not a number, not one of its words, a malformed date); 130 Ctrl-C; 143 SIGTERM (foveal serve: "
               "both drain and exit 0). Set FOVEAL_DEBUG=1 to see the traceback of an unexpected failure.")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its usage errors on one line like every other error (argparse prints the whole
    usage first: a dozen lines before the one that says what is wrong), and its exit status 2."""

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required"):
            # argparse checks the required ones first: `foveal --bogus` was told a COMMAND is required, and the
            # misspelt option never named.
            unknown = [a for a in getattr(self, "_given", []) if a.startswith("-") and len(a) > 1
                       and a.split("=", 1)[0] not in self._option_string_actions
                       and not self._negative_number_matcher.match(a)]
            if unknown:
                message = f"unrecognized arguments: {' '.join(unknown)}"
        if message.startswith("unrecognized arguments: "):
            files = [a for a in message.removeprefix("unrecognized arguments: ").split(" ")
                     if a.startswith("-") and path_is(Path(a), os.path.lexists)]
            if files:  # a file whose name starts with a dash reads as an option
                message += f"; for a file named {files[0]}, write ./{files[0]}"
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def _print_message(self, message: str, file: IO[str] | None = None) -> None:
        # argparse drops a failed write: `foveal --help > /dev/full` said nothing and exited 0.
        file = file or sys.stderr
        if not message or file is None:
            return
        try:
            file.write(message)
            file.flush()
        except BrokenPipeError:  # the reader left (| head)
            _drop_stdout()
            sys.exit(128 + signal.SIGPIPE)
        except OSError as exc:
            if file is sys.stdout:
                _drop_stdout()
                print(_stdout_failed(exc), file=sys.stderr)
                sys.exit(1)


class _CommandParser(_Parser):
    """A subcommand's parser. argparse hands the arguments a subcommand does not know up to ``foveal``, which then
    names itself and its own --help, where no command's options are listed; the command refuses them instead."""

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="foveal", description="Predict where people look, and score it.", epilog=EXIT_STATUS)
    parser.add_argument("--version", action="version", version=f"foveal {__version__}")
    _add_global_options(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for command in sub.choices.values():  # so `foveal predict ... -q` works as well as `foveal -q predict ...`
        _add_global_options(command, default=argparse.SUPPRESS)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bar or summary")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log which backend runs and any fallback")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop), raised where the command is, so that it ends as on Ctrl-C: files
    half-written are removed, a batch closes its output folder, a Ray cluster it started is stopped."""


#: Set by the SIGTERM handler: a library may turn the Terminated it raised into a KeyboardInterrupt of its own (Ray's
#: blocking calls do), and the command must still end as terminated.
_sigterm = threading.Event()


def _terminate(signum: int, frame: object) -> None:
    _sigterm.set()
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    # The default SIGTERM action ends the process on the spot, without a word or any clean-up.
    main_thread = threading.current_thread() is threading.main_thread()
    _sigterm.clear()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return _main(argv)
    finally:
        if main_thread:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _main(argv: list[str] | None) -> int:
    # What stdout cannot encode (a Windows console's or redirect's code page has no "↓" for eval's "KLD ↓") is
    # written escaped, as on stderr, rather than failing the command after its work, before its files are written.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    if sys.stderr is None:  # started with stderr closed (2>&-): print(file=None) would put messages among the data
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
    try:
        parser = build_parser()  # imports every command: a Ctrl-C may well land here
    except KeyboardInterrupt:
        print("foveal: interrupted", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    # psycopg warns of what it gave up after the error or interrupt the command reports in its one line (a store's
    # query it could not cancel on Ctrl-C, a rollback that failed on a lost connection).
    logging.getLogger("psycopg").setLevel(logging.INFO if args.verbose else logging.ERROR)
    # Pillow warns about corrupt metadata and large images; a file foveal can read is read, one it cannot is a
    # one-line error, so its warnings would only break the one-line promise. (The command owns this process.)
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="PIL")
    try:
        with inputs_protected(_input_files(args)):  # no output may replace a file the command reads
            status = int(args.handler(args) or 0)
        if sys.stdout is not None:  # None: started with stdout closed (>&-)
            sys.stdout.flush()  # here, while a failure to write it can still be told as one
        return status
    except FovealError as exc:
        note(error_line(exc, args))
        return 1
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated) or _sigterm.is_set():
            note("foveal: terminated")
            return 128 + signal.SIGTERM
        note("foveal: interrupted")
        return 130
    except BrokenPipeError:  # the reader left (| head): nothing more to say, and nowhere to say it
        _drop_stdout()
        return 128 + signal.SIGPIPE
    except MemoryError:
        # Only commands that read images have --max-pixels; an outcomes or calibration run ran out on a table.
        advice = ("use smaller images, or lower --max-pixels to refuse such images up front"
                  if hasattr(args, "max_pixels") else "split the input into smaller files, or free memory")
        note(f"foveal: error: not enough memory for this input; {advice}")
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        if isinstance(exc, OSError) and exc.errno in DISK_FULL and exc.filename is None:
            # The files foveal writes name themselves in a FovealError (atomic_write): this is stdout, redirected
            # onto a full disk (or /dev/full).
            _drop_stdout()
            print(_stdout_failed(exc), file=sys.stderr)
            return 1
        if isinstance(exc, OSError) and exc.errno in _BAD_PATH and exc.filename is not None:
            # A path the system cannot take, met by a check no command wraps (Python 3.11's Path.is_file()
            # raises for a name over 255 bytes).
            note(f"foveal: error: {exc.filename}: {exc.strerror}; {_BAD_PATH[exc.errno]}")
            return 1
        if os.environ.get("FOVEAL_DEBUG"):
            raise
        note(f"foveal: internal error: {type(exc).__name__}: {one_line(str(exc))} (set FOVEAL_DEBUG=1 for details)")
        return 1


_BAD_PATH = {errno.ENAMETOOLONG: "name a path whose every part is at most 255 bytes",
             errno.ELOOP: "the path runs in a loop of symbolic links; name the file itself"}


def _stdout_failed(exc: OSError) -> str:
    advice = "free some space, or send it elsewhere" if exc.errno in DISK_FULL else "send it elsewhere"
    return f"foveal: error: cannot write the standard output: {exc.strerror or exc}; {advice}"


def _drop_stdout() -> None:
    """Point stdout at the null device: else the interpreter's last flush at exit reports the failure again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


#: The library's advice names its own arguments; on the command line the same thing is a flag.
#: Library words for a setting → the command line's flag, where the command has that option (``dest``); a command
#: without it leaves the advice out rather than name a flag it does not take.
_FLAGS = (("raise max_pixels", "raise --max-pixels", "max_pixels", (" or raise max_pixels", "")),
          ("set allow_model_mismatch", "pass --allow-model-mismatch", "allow_model_mismatch", None),
          ("set allow_format_mismatch", "pass --allow-format-mismatch", "allow_format_mismatch", None),
          ("choose one with graph (", "choose one with --graph (", "graph", None),
          ("elements_dir ", "--elements-dir ", "elements_dir", None),
          ("a larger max_seconds", "a larger --max-seconds", "max_seconds", None),
          ("train_blocks must", "--train-blocks must", "train_blocks", None),
          ("working_size must", "--working-size must", "working_size", None),
          ("set name to", "pass --name to", "name", None),
          ("(split=None)", "(--split all)", "split", None))


def error_line(exc: FovealError, args: argparse.Namespace | None = None) -> str:
    """``foveal: error: <message>``, one line as every FovealError's message is, in the command line's words
    (``args``: the command's, so that only flags it has are named)."""
    # shown_name: a file name that is not UTF-8 as its bytes (\xfe), not as Python's stand-in for them (\udcfe)
    return f"foveal: error: {shown_name(in_flags(str(exc), args))}"


def in_flags(text: str, args: argparse.Namespace | None = None) -> str:
    """A library message in the command line's words (see :func:`error_line`)."""
    for argument, flag, dest, without in _FLAGS:
        if args is None or hasattr(args, dest):
            text = text.replace(argument, flag)
        elif without is not None:
            text = text.replace(*without)
    return text


def _input_files(args: argparse.Namespace) -> list[Path]:
    """Files named on the command line other than the output (``out``): what no output may replace. Files read
    from folders are protected as they are opened (foveal.fileio)."""
    named: list[Path] = []
    for key, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if key != "out":
            named += [v for v in values if isinstance(v, Path)]
    if isinstance(getattr(args, "model", None), str):
        named.append(Path(args.model))
    # path_is: a name too long is no file; the command refuses it in its own words
    return [path for path in named if path_is(path, Path.is_file)]


def check_out_folder(path: Path, outputs: tuple[str, ...] = ()) -> None:
    """``-o`` must name a folder (created when the first output is written), not an existing file nor one under a
    file, in a place this process may write (not a read-only disk or another user's folder); each of ``outputs``,
    file names in it, must be writable there (:func:`~foveal.fileio.check_output`). Commands check it before their
    work, so a bad ``-o`` does not throw that work away."""
    try:
        if path.exists() and not path.is_dir():
            raise InputError(f"-o {path}: exists and is not a folder; name a folder (it is created if needed)")
    except OSError as exc:  # a name too long, a loop of links...
        raise InputError(f"-o {path}: {exc.strerror or exc}; name a valid folder") from None
    _check_writable_place(path, f"-o {path}")
    for name in outputs:
        check_output(path / name)


def check_out_file(path: Path) -> None:
    """``-o`` naming one file: writable (:func:`~foveal.fileio.check_output`) in a folder this process may create
    or write, checked, as :func:`check_out_folder`, before the command's work."""
    check_output(path)
    _check_writable_place(path.parent, f"-o {path}")


def _check_writable_place(path: Path, said: str) -> None:
    """``path``, or the nearest folder above it that exists, is a folder this process may write in."""
    try:
        above = path
        while not above.exists() and above != above.parent:
            if above.is_symlink():  # a link to nowhere, or a loop: nothing can be made there
                raise InputError(f"{said}: {above} is a link to {os.readlink(above)}, which is not there (or a loop of "
                                 "links); name a folder, or make the link point at one")
            above = above.parent
        if not above.is_dir():
            raise InputError(f"{said}: {above} is a file, so no folder can be made under it; name another folder")
        if not os.access(above, os.W_OK | os.X_OK):  # else every output fails, each after its image's work
            raise InputError(f"{said}: {above} is not writable (a read-only disk, or a folder this user may not "
                             "write); make it writable or name another folder")
    except OSError as exc:  # a name too long, a loop of links...
        raise InputError(f"{said}: {exc.strerror or exc}; name a valid folder") from None


def add_engine_options(parser: argparse.ArgumentParser, *, for_decisions: bool = False) -> None:
    """--model/--device/--precision/--batch-size/--max-pixels, shared by every command that runs the network;
    ``for_decisions``: the command decides at the material-change threshold (see :func:`make_engine`)."""
    add_model_options(parser, for_decisions=for_decisions)
    parser.add_argument("--batch-size", type=int_arg(1), default=16,
                        help="images per network batch on a GPU (default: %(default)s; on the CPU images run "
                             "one per core, side by side)")
    parser.add_argument("--max-pixels", type=MAX_PIXELS, default=100e6, help="refuse larger images (default: 100e6)")


def add_model_options(parser: argparse.ArgumentParser, *, for_decisions: bool = False) -> None:
    """--model/--device/--precision, the same words in every command (bench and serve batch their own way)."""
    parser.add_argument("--model", default="default",
                        help=f"model name, path to an .onnx file, or a model folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--device", type=device_arg, default="cpu",
                        help="cpu, cuda, auto, or a backend name (default: %(default)s)")
    auto = ("auto: the fp32 graph on the CPU (int8 rounding changes verdicts near the threshold), fp16 on GPUs"
            if for_decisions else "auto: the model's int8 graph on the CPU when it ships one, fp16 on GPUs")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help=f"{auto}; fp32: the float graph everywhere; fp16: the fp16 graph; int8: the int8 graph "
                             "(CPU only) (default: %(default)s)")
    parser.set_defaults(for_decisions=for_decisions)


def path_arg(text: str) -> Path:
    """A path argument; an empty one is refused (``Path("")`` is the current folder, so a script passing an unset
    variable would work on whatever is there)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path; give a file or folder (an unset shell variable?)")
    return Path(text)


def name_arg(text: str) -> str:
    """A name argument (a format, ...); an empty one is refused rather than read as the option left out."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name; give one or leave the option out")
    return text


def int_arg(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` (to ``high``), else a usage error naming the flag."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # argparse would name this function: "invalid parse value"
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def number_arg(low: float = -math.inf, high: float = math.inf, *, above: bool = False, below: bool = False,
               note: str = "") -> Callable[[str], float]:
    """An argparse type: a finite number from ``low`` to ``high`` (``above``/``below``: not equal to them), else a
    usage error naming the flag (NaN and inf included: no limit, wait or rate is meant by them); ``note`` says what
    ``low`` is, in the message."""
    if math.isinf(high):
        wanted = f"a finite number {'>' if above else '>='} {low:g}"
    else:
        wanted = f"a number in {'(' if above else '['}{low:g}, {high:g}{')' if below else ']'}"
    wanted += f" ({note})" if note else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = (low < value if above else low <= value) and (value < high if below else value <= high)
        if not (inside and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text.strip()}")
        return value
    return parse


def library_arg(parse: Callable[[str], T], prefix: str = "") -> Callable[[str], T]:
    """An argparse type from a library parser (``"5x5"`` → a grid...): its InputError or ValueError, which says
    what is wrong with the text, becomes a usage error naming the flag. ``prefix``: the library's own name for the
    value, which starts its messages ("grid: ", "model name "); argparse's "argument --flag: " already says it."""
    def checked(text: str) -> T:
        try:
            return parse(text)
        except (FovealError, ValueError) as exc:
            raise argparse.ArgumentTypeError(one_line(str(exc)).removeprefix(prefix)) from None
    return checked


def extra_arg(module: str, parse: Callable[[ModuleType, str], T], prefix: str = "") -> Callable[[str], T | str]:
    """:func:`library_arg` of ``parse(module, text)``, for a check in a module of an optional extra (foveal.serve,
    foveal.calibration): without the extra the text is taken as given, and the command says what to install."""
    def checked(text: str) -> T | str:
        try:
            loaded = importlib.import_module(module)
        except (ImportError, FovealError):  # foveal.calibration says its missing extra as a FovealError
            return text
        return library_arg(lambda one: parse(loaded, one), prefix)(text)
    return checked


def _store_url(database: ModuleType, text: str) -> str:
    database.parse_url(text)
    return text


#: --db: a store's URL or SQLite file, checked by the store's own parser before any work (the text is kept as given).
DB_URL = extra_arg("foveal.store.database", _store_url)

#: --max-pixels: a pixel limit (5e8 is fine).
MAX_PIXELS = number_arg(1)

#: --pass-percentile: an element passes at or above this percentile of its norm.
PERCENTILE = number_arg(0, 100, above=True)


def device_arg(text: str) -> str:
    """--device: auto, cpu, cuda or a backend name, checked before the command's work (the engine, made after it,
    would refuse an unknown one as a foveal error)."""
    from ..backends import resolve

    library_arg(resolve)(text)
    return text


def make_engine(args: argparse.Namespace):
    """The Engine described by :func:`add_engine_options`' arguments, for decisions when the command registered
    itself as deciding (see ``Engine(for_decisions=...)``); commands with options of their own decide nothing."""
    from ..engine import Engine

    return Engine(args.model, device=args.device, precision=args.precision,
                  for_decisions=getattr(args, "for_decisions", False), max_pixels=args.max_pixels,
                  reduced_decode=getattr(args, "reduced_decode", False))


if __name__ == "__main__":
    sys.exit(main())
