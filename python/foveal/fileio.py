"""File input and output that a user can trust.

Output: every file foveal writes appears whole or not at all. Writers stream into a temporary file in the
destination folder, flush and fsync it, then ``os.replace`` it over the target, so an interrupted run never leaves
a truncated PNG, JSON or CSV behind. Inside :func:`inputs_protected` (the CLI runs every command in it), a write
that would replace a file the run reads as input is refused.

Input: :func:`open_input` opens only regular files (a FIFO or a device such as ``/dev/zero`` is refused without
blocking or reading) of bounded size, so no input can hang the process or fill its memory. Tables (a batch's list of
creatives, an outcomes file) are held to :data:`MAX_TABLE_ROWS` and :data:`MAX_TABLE_BYTES` before their data is read
(:func:`check_text_table`, :func:`read_parquet`).
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import struct
import threading
import zlib
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable, Iterable, Iterator, Mapping

import numpy as np

from .errors import DiskFullError, InputError

#: errno values of a full disk (or quota): the user's to fix, not a failure of foveal.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: Failures only a write has: a full disk, and a file past the size limit (``ulimit -f``, the file system's).
WRITE_FAILED = (*DISK_FULL, errno.EFBIG)
#: Longest file name (bytes) of Linux's file systems, macOS's and Windows' (in UTF-16 units there).
NAME_MAX = 255
#: Most rows, and bytes of data as read (uncompressed, each row's value of a dictionary-encoded column counted), of
#: one table a user gives foveal: a batch's list of creatives, an outcomes file. Far above a batch or a year of a
#: campaign's daily outcomes (a table at the limits takes some GB as Python rows), and far below what a file of a few
#: MB can unpack to: a Parquet column of one value repeated, or a huge text cell, can stand for any number of GB.
MAX_TABLE_ROWS = 5_000_000
MAX_TABLE_BYTES = 1 << 30
#: Rows of a Parquet table decoded at a time, each batch's size counted before it is unpacked.
_PARQUET_BATCH_ROWS = 65_536
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
#: A number as spreadsheets and ad servers write it in a text table: ASCII digits, a sign, decimals, an exponent.
#: int() and float() also take Python's "1_000", other scripts' digits ("١٢") and "nan", which no such file holds.
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
#: The finished temporaries of the innermost :func:`written_together` block, with their targets.
_TOGETHER: contextvars.ContextVar[list[tuple[Path, Path, bool]] | None] = contextvars.ContextVar(
    "_TOGETHER", default=None)

# Files the running command reads, as (device, inode): None outside inputs_protected().
_inputs: set[tuple[int, int]] | None = None
_inputs_lock = threading.Lock()


@contextlib.contextmanager
def inputs_protected(paths: Iterable[str | os.PathLike] = ()) -> Iterator[None]:
    """Within the block, :func:`atomic_write` refuses to replace ``paths`` or any file opened by :func:`open_input`.

    Files are compared by device and inode, so a symlink, a hard link or ``./`` spelling of an input is caught too.
    """
    global _inputs
    with _inputs_lock:
        previous = _inputs
        _inputs = set(previous or ())
    try:
        for path in paths:
            note_input(path)
        yield
    finally:
        with _inputs_lock:
            _inputs = previous


def note_input(path: str | os.PathLike) -> None:
    """Remember ``path`` as an input of the running command (no-op outside :func:`inputs_protected`)."""
    if _inputs is None:
        return
    with contextlib.suppress(OSError):
        st = os.stat(path)
        with _inputs_lock:
            if _inputs is not None:
                _inputs.add((st.st_dev, st.st_ino))


def check_not_input(path: str | os.PathLike) -> None:
    """InputError if writing ``path`` would replace an input of the running command (see :func:`inputs_protected`)."""
    if not _inputs:
        return
    try:
        st = os.stat(path)
    except OSError:
        return
    if (st.st_dev, st.st_ino) in _inputs:
        raise InputError(f"refusing to write {os.fspath(path)}: it is one of this run's inputs and would be "
                         "overwritten; write the outputs to another folder")


def path_is(path: Path, test: Callable[[Path], bool]) -> bool:
    """``test(path)`` (``Path.is_file``, ``Path.exists``...), False for a path the system cannot take: Python
    3.11's tests raise for a name over 255 bytes, where no such file can be there anyway."""
    try:
        return test(path)
    except OSError:
        return False


def checked_path(path: object, what: str, error: type[InputError] = InputError) -> str:
    """``path`` (a ``str`` or ``os.PathLike``) as text, else ``error``: None, a number or bytes is no file name."""
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise error(f"{what}: expected a file path (str or pathlib.Path), got {type(path).__name__}")
    return os.fspath(path)


def open_input(path: str | os.PathLike, max_bytes: int, what: str = "file",
               error: type[InputError] = InputError) -> BinaryIO:
    """Open a user's input for binary reading: a regular file of at most ``max_bytes`` bytes, else ``error``.

    FIFOs, sockets and devices are refused before any read (a FIFO is opened non-blocking, so a missing writer
    cannot hang the call). The file is remembered as an input (see :func:`inputs_protected`).
    """
    name = checked_path(path, what, error)
    if "\0" in str(name):
        raise error(f"{what} path contains a NUL character: {name!r}")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} not found: {name}") from None
    except IsADirectoryError:
        raise error(f"expected a file ({what}), got a directory: {name}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {name}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"expected a file ({what}), got a directory: {name}")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{name}: not a regular file (a FIFO, socket or device); save it to a file first")
        if st.st_size > max_bytes:
            raise error(f"{name}: {st.st_size / 1e6:.1f} MB is larger than the {max_bytes / 1e6:.1f} MB accepted "
                        f"for this {what}")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    note_input(name)
    return fh


def read_input(path: str | os.PathLike, max_bytes: int, what: str = "file",
               error: type[InputError] = InputError) -> bytes:
    """The bytes of a user's input file, through :func:`open_input`'s checks (never more than ``max_bytes``)."""
    with open_input(path, max_bytes, what, error) as fh:
        data = fh.read(max_bytes + 1)  # a file growing while it is read is still held to the limit
    if len(data) > max_bytes:
        raise error(f"{os.fspath(path)}: larger than the {max_bytes / 1e6:.1f} MB accepted for this {what}")
    return data


def _too_large(path: str | os.PathLike, found: str, limit: str, advice: str) -> InputError:
    return InputError(f"{os.fspath(path)}: {found}, more than the {limit} foveal reads from one table; {advice}")


def check_text_table(path: str | os.PathLike, advice: str) -> None:
    """Refuse a text table (CSV, a list of paths) of more than :data:`MAX_TABLE_BYTES` bytes or
    :data:`MAX_TABLE_ROWS` lines before it is parsed: a file of short lines is more rows than its bytes, and each
    row costs a parser far more memory than its bytes. Lines are counted in bounded reads; a quoted cell's line
    breaks count too. ``advice``: what to do with a larger one (split it...)."""
    size = os.stat(path).st_size
    if size > MAX_TABLE_BYTES:
        raise _too_large(path, f"{size / 2**20:,.0f} MiB", f"{MAX_TABLE_BYTES / 2**20:,.0f} MiB", advice)
    lines = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += max(chunk.count(b"\n"), chunk.count(b"\r"))  # "\r" alone ends a line in old Mac files
            if lines > MAX_TABLE_ROWS + 1:  # the header's line is no row
                raise _too_large(path, f"more than {MAX_TABLE_ROWS:,} lines", f"{MAX_TABLE_ROWS:,} rows", advice)


def parquet_columns(path: str | os.PathLike) -> list[str]:
    """The column names of the Parquet file ``path``, from its footer (no data read); pyarrow's errors as they come."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).schema_arrow.names


def text_lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their ends, one at a time: ended by ``\\r\\n``, ``\\n`` or ``\\r`` alone (old Mac
    files), as a CSV reader wants them. Not ``str.splitlines``, which makes a list of every line at once and also
    ends lines at form feeds and Unicode line separators: characters a cell may hold, and a small file millions."""
    for match in _LINE.finditer(text):
        yield match.group()


def read_parquet(path: str | os.PathLike, columns: Iterable[str], advice: str):
    """The ``columns`` of the Parquet file ``path`` (those of them it has) as a ``pyarrow.Table``, within
    :data:`MAX_TABLE_ROWS` rows and :data:`MAX_TABLE_BYTES` bytes, else InputError (``advice``: what to do).

    The footer's row count and uncompressed sizes are checked before any data is read; then the data is decoded
    a batch of rows at a time, text columns kept dictionary-encoded until each batch's unpacked size is counted
    (a column of one long value repeated is small on disk and in the footer, and that size times its rows once
    unpacked). Columns other than ``columns`` are not read at all; ``columns`` must not be names the file repeats.
    Errors of pyarrow's (a damaged file) are raised as they come."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    footer = pq.ParquetFile(path)
    meta, schema = footer.metadata, footer.schema_arrow
    names = [name for name in dict.fromkeys(columns) if name in schema.names]
    if meta.num_rows > MAX_TABLE_ROWS:
        raise _too_large(path, f"{meta.num_rows:,} rows", f"{MAX_TABLE_ROWS:,} rows", advice)
    for name in names:
        kind = schema.field(name).type
        if pa.types.is_nested(kind):
            raise InputError(f"{os.fspath(path)}: column {name!r} holds {kind} values; foveal reads one plain value "
                             "(text or a number) per cell: write that column as such")
    # The file's columns are the leaves of its fields, in order (a struct of two values is two).
    owner = [field.name for field in schema for _ in range(_leaves(field.type))]
    wanted = set(names) if len(owner) == meta.num_columns else set(schema.names)  # else count them all
    stored = sum(meta.row_group(g).column(c).total_uncompressed_size for g in range(meta.num_row_groups)
                 for c in range(meta.num_columns) if len(owner) != meta.num_columns or owner[c] in wanted)
    if stored > MAX_TABLE_BYTES:
        raise _too_large(path, f"{stored / 2**20:,.0f} MiB of data", f"{MAX_TABLE_BYTES / 2**20:,.0f} MiB", advice)

    def is_text(kind) -> bool:
        return any(test(kind) for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                           pa.types.is_large_binary))

    reader = pq.ParquetFile(path, read_dictionary=[n for n in names if is_text(schema.field(n).type)])
    batches, rows, size = [], 0, 0
    for batch in reader.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=names, use_threads=False):
        rows += batch.num_rows
        arrays = []
        for array in batch.columns:
            if pa.types.is_dictionary(array.type) and is_text(array.type.value_type):
                lengths = pc.binary_length(array.dictionary).take(array.indices)
                size += (pc.sum(lengths).as_py() or 0) + 4 * len(array)  # the values, and their offsets
            else:  # numbers, dates...: fixed-width values, at most the rows times their width
                array = array.dictionary_decode() if pa.types.is_dictionary(array.type) else array
                size += array.nbytes
            arrays.append(array)
        if rows > MAX_TABLE_ROWS:  # a footer that says fewer than there are
            raise _too_large(path, f"more than {MAX_TABLE_ROWS:,} rows", f"{MAX_TABLE_ROWS:,} rows", advice)
        if size > MAX_TABLE_BYTES:
            raise InputError(f"{os.fspath(path)}: its data unpacks to more than the {MAX_TABLE_BYTES / 2**20:,.0f} "
                             f"MiB foveal reads from one table; {advice}")
        batches.append(pa.record_batch([a.dictionary_decode() if pa.types.is_dictionary(a.type) else a
                                        for a in arrays], names=names))
    if not batches:
        return pa.table({n: pa.array([], _undictionary(schema.field(n).type)) for n in names})
    return pa.Table.from_batches(batches)


def _leaves(kind) -> int:
    """The Parquet columns (leaves) that hold a field of Arrow type ``kind``."""
    import pyarrow as pa

    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaves(kind.value_type)
    return 1


def _undictionary(kind):
    import pyarrow as pa

    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _sibling_name(target: Path, suffix: str) -> Path:
    """``.NAME.XXXXXXXXXXXX.SUFFIX`` beside ``target``, NAME cut short so that the whole fits the 255 bytes a file
    name may have: a legal target name of 237-255 bytes must not fail as "File name too long"."""
    tail = f".{secrets.token_hex(6)}.{suffix}"
    # Cut whole characters: macOS refuses a name that is not UTF-8, as half a character would leave it.
    cut = os.fsencode(target.name)[:NAME_MAX - 1 - len(tail)].decode("utf-8", "ignore").encode("utf-8")
    name = os.fsdecode(cut)  # back as the file system encodes names (not UTF-8 under PYTHONUTF8=0 LC_ALL=C)
    return target.parent / f".{name}{tail}"


def _create_temporary(target: Path, made: list[Path]) -> int:
    """A new, exclusive temporary sibling of ``target``, created with the permissions an ordinary ``open()`` gives
    (0666 less the umask: the kernel applies it, so the process umask is never read or changed); its name goes into
    ``made`` before it exists, so that a Ctrl-C or SIGTERM raised the moment it is made still finds it to delete."""
    for _ in range(100):
        made.append(_sibling_name(target, "part"))
        try:
            return os.open(made[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            made.pop()  # another's
    raise FileExistsError(f"no free temporary name beside {target}")


def cannot_write(target: str | os.PathLike, exc: OSError) -> InputError:
    """The one-line error for a failed write of ``target``, telling a full disk by what to do about it."""
    if exc.errno in DISK_FULL:
        return DiskFullError(f"cannot write {target}: {exc.strerror or exc}; free some space, then run again")
    if exc.errno == errno.EFBIG:
        return InputError(f"cannot write {target}: {exc.strerror or exc} (past the size limit for one file: `ulimit "
                          "-f`, or the file system's); raise the limit, or write to another file system")
    return InputError(f"cannot write {target}: {exc.strerror or exc}")


def check_output(path: str | os.PathLike) -> Path:
    """``path`` as a Path if :func:`atomic_write` may write it, else the :class:`InputError` it would raise: a NUL
    in the name, a name the OS refuses, a folder or a device in its place, or an input of the running command.

    A command writing several files checks them all first, so that a refused one leaves none of the others
    written."""
    target = Path(checked_path(path, "output"))
    if "\0" in str(target):
        raise InputError(f"cannot write {str(target)!r}: a file name cannot hold a NUL byte")
    try:
        kind = target.stat().st_mode
    except FileNotFoundError:  # also when a folder on the way is still to be made: its names go unchecked
        kind = None
        _check_name_lengths(target)
    except PermissionError as exc:  # a folder on the way that cannot be entered
        raise InputError(f"cannot write {target}: {exc.strerror or exc}; choose a writable location") from None
    except OSError as exc:  # a name too long, a loop of links...
        raise InputError(f"cannot write {target}: {exc.strerror or exc}; give a valid file name") from None
    if kind is not None and stat.S_ISDIR(kind):
        raise InputError(f"cannot write {target}: it is a folder; give a file name")
    if kind is not None and not stat.S_ISREG(kind):  # renaming over it would replace a device or a pipe
        raise InputError(f"cannot write {target}: it is not a regular file (a device, pipe or socket); give a file "
                         "name")
    check_not_input(target)
    return target


def _check_name_lengths(target: Path) -> None:
    """InputError when a name in ``target`` below its nearest existing folder is longer than that file system takes:
    with the folder still to be made, stat said only "not found", and the write failed after the work."""
    existing = next((p for p in target.absolute().parents if os.path.isdir(p)), None)
    if existing is None:
        return
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        return
    for part in target.absolute().relative_to(existing).parts:
        if len(os.fsencode(part)) > limit:
            raise InputError(f"cannot write {target}: File name too long ({len(os.fsencode(part))} bytes, over "
                             f"{limit}); give a valid file name")


def remove_stale(path: str | os.PathLike, mark: bytes) -> bool:
    """Remove ``path`` if foveal wrote it (``mark`` is in its first 4 KiB): an earlier run's output that this run does
    not write, which would sit beside this run's outputs and disagree with them. A file of the user's, an input of
    the running command, a link or a folder is left alone. True if it was removed."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        check_not_input(path)
        with open(path, "rb") as fh:
            if mark not in fh.read(4096):
                return False
    except (OSError, InputError):
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise cannot_write(path, exc) from None
    return True


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, replace: bool = True) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` only if the block succeeds.

    An output that is a folder, cannot be created, or would replace an input raises :class:`InputError`. With
    ``replace=False`` a file that is at ``path`` when the write completes (made meanwhile by someone else) is
    kept, and :class:`FileExistsError` raised.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    target = check_output(path)
    made: list[Path] = []
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = _create_temporary(target, made)
        except OSError as exc:
            if exc.errno in WRITE_FAILED:  # a full disk refuses a new folder or file too
                raise cannot_write(target, exc) from None
            raise InputError(f"cannot write {target}: {exc.strerror or exc}; choose a writable location") from None
        tmp = made[-1]
        fh = os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))
        try:
            try:
                yield fh
            except OSError as exc:
                if exc.errno not in WRITE_FAILED:  # the block's own failures (reading an input...) stay its own
                    raise
                raise cannot_write(target, exc) from None
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                raise cannot_write(target, exc) from None
        finally:
            # After a failed write, closing flushes the rest again and fails again: the first error is the one
            # to report, and the temporary is deleted anyway. After fsync there is nothing left to flush.
            with contextlib.suppress(OSError):
                fh.close()
        together = _TOGETHER.get()
        if together is not None:  # renamed with the block's other files when it ends (written_together)
            together.append((tmp, target, replace))
            return
        _land(tmp, target, replace)
    except BaseException:
        for tmp in made:
            with contextlib.suppress(OSError):  # gone already, or never made: what stopped the write is the error
                os.unlink(tmp)
        raise


@contextlib.contextmanager
def written_together() -> Iterator[None]:
    """Files that :func:`atomic_write` (and the writers built on it) writes inside the block land together: each
    goes to its temporary sibling as the block writes it, and all are renamed onto their names only once the block
    has succeeded, so a full disk on the last of them leaves every one as it was instead of a set mixing two runs.
    """
    together: list[tuple[Path, Path, bool]] = []
    token = _TOGETHER.set(together)
    try:
        yield
    except BaseException:
        _TOGETHER.reset(token)
        _discard(tmp for tmp, _, _ in together)
        raise
    _TOGETHER.reset(token)
    for i, (tmp, target, replace) in enumerate(together):
        try:
            _land(tmp, target, replace)
        except BaseException:
            _discard(tmp for tmp, _, _ in together[i:])
            raise


def _discard(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _land(tmp: Path, target: Path, replace: bool) -> None:
    """:func:`_put`, its failures told as :func:`atomic_write` tells them."""
    try:
        _put(tmp, target, replace)
    except FileExistsError:
        raise
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}; choose a writable location") from None


def _put(tmp: Path, target: Path, replace: bool) -> None:
    """Move the finished ``tmp`` to ``target``; without ``replace``, never over a file there (a hard link fails
    if the name is taken, where a rename would replace it)."""
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if target.exists() or target.is_symlink():  # a filesystem without hard links: checked, then renamed
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(tmp, target)
        return
    with contextlib.suppress(OSError):  # written: a stray temporary is no reason to call the write failed
        os.unlink(tmp)


@contextlib.contextmanager
def folder_replacement(target: str | os.PathLike) -> Iterator[Path]:
    """A new, empty folder beside ``target`` for the block to fill; when the block succeeds it takes ``target``'s
    place in one step (what ``target`` held is deleted), else it is deleted and ``target`` stays as it was.

    So a set of files appears whole or not at all.  The step is one atomic exchange where the system has it (Linux);
    elsewhere ``target`` is moved aside first: for an instant there is no ``target``, never a mix of old and new.
    The caller makes sure ``target`` holds nothing else worth keeping.
    """
    target = Path(os.path.realpath(checked_path(target, "output folder")))  # a link to a folder: that folder
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        new = new_sibling_folder(target, "part")
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}; choose a writable location") from None
    try:
        yield new
        try:
            if target.is_dir():
                os.chmod(new, stat.S_IMODE(target.stat().st_mode))  # keep the permissions its owner gave it
            old = _swap_in(new, target)
        except OSError as exc:
            raise InputError(f"cannot write {target}: {exc.strerror or exc}; choose a writable location") from None
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def new_sibling_folder(target: Path, suffix: str) -> Path:
    """A new, empty hidden folder ``.NAME.XXXX.SUFFIX`` beside ``target`` (0777 less the umask, as ``mkdir`` makes
    it), its name within the 255 bytes a file name may have whatever ``target``'s."""
    for _ in range(100):
        path = _sibling_name(target, suffix)
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def _swap_in(new: Path, target: Path) -> Path | None:
    """Put folder ``new`` in ``target``'s place; return where ``target``'s old content now is (None: it had none)."""
    try:
        os.rename(new, target)  # no target, or an empty folder: replaced in one step
        return None
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    if _exchange(new, target):
        return new
    aside = new_sibling_folder(target, "old")
    os.rename(target, aside)  # onto the empty folder just made
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(aside, target)
        raise
    return aside


#: Linux's renameat2 arguments: the current folder, and the flag that swaps two paths.
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux's renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a kernel or file system without it
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: not when it holds a lone surrogate (an undecodable file name from
    the OS, or JSON's ``"\\ud800"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(text: str) -> str:
    """A name for a message: bytes that are not UTF-8 escaped (``\\xff``) rather than lost as ``?``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace") if not is_unicode(text) else text


def unicode_name(path: str | os.PathLike, what: str) -> str:
    """``path`` as text for a document (scores, reports and stores are UTF-8), or InputError naming ``what``."""
    text = os.fspath(path)
    if not is_unicode(text):
        raise InputError(f"{shown_name(text)}: {what} is not valid UTF-8; rename it")
    return text


#: Most column names a message lists: a table's header is whoever made the file's, of any width.
SHOWN_COLUMNS = 12


def column_list(columns: Iterable[Any]) -> str:
    """Column names for a one-line message: the first :data:`SHOWN_COLUMNS`, each cut to 40 characters, and how
    many more there are (listing all of a 50,000-column header made a 5.5 MB message)."""
    names = [str(c) for c in columns]
    shown = ", ".join(c if len(c) <= 40 else c[:40] + "…" for c in names[:SHOWN_COLUMNS])
    return shown + (f" and {len(names) - SHOWN_COLUMNS:,} more" if len(names) > SHOWN_COLUMNS else "")


#: First characters with which a spreadsheet reads a CSV cell as a formula (OWASP's "CSV injection"), and the quote
#: that marks such a cell as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_cell(value: Any) -> Any:
    """``value`` as a cell of a CSV people open in a spreadsheet: text starting like a formula (``=``, ``+``, ``-``,
    ``@``, a tab or a CR; a name or a file name can) gets a leading ``'``, which spreadsheets read as "text". Text
    already starting with ``'`` gets one more, so :func:`spreadsheet_text` undoes it exactly; numbers are kept."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


def spreadsheet_text(cell: str) -> str:
    """The text :func:`spreadsheet_cell` wrote as ``cell``."""
    return cell[1:] if cell.startswith("'") else cell


def stream_sha256(fh: BinaryIO) -> str:
    """Hex sha256 of what ``fh`` has left to read, a MiB at a time (``hashlib.file_digest`` is Python 3.11+)."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def write_text(path: str | os.PathLike, text: str, *, replace: bool = True) -> None:
    """Write ``text`` as UTF-8, atomically (``replace``: as in :func:`atomic_write`)."""
    with atomic_write(path, "w", replace=replace) as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj: Any, *, replace: bool = True) -> None:
    """Write ``obj`` as indented JSON (NaN refused: it is not JSON), atomically (``replace``: as in
    :func:`atomic_write`)."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=False, default=json_default)
    except ValueError as exc:
        raise InputError(f"cannot write {os.fspath(path)}: {exc}") from exc
    write_text(path, text + "\n", replace=replace)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save a NumPy array (``.npy``), atomically."""
    with atomic_write(path, "wb") as fh:
        # Through write(): on a real file np.save uses tofile(), whose short write on a full disk is an OSError
        # without an errno, so it could not be told apart from any other failure.
        np.lib.format.write_array(_WriteOnly(fh), np.asanyarray(array), allow_pickle=False)


class _WriteOnly:
    def __init__(self, fh: BinaryIO) -> None:
        self.write = fh.write


#: zlib level of every PNG foveal writes: a 1920x1080 photograph's overlay deflates in 51 ms at level 1 against
#: about 380 at Pillow's default 6, for a file a fifth larger.
PNG_COMPRESS_LEVEL = 1

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels: grey, grey and alpha, RGB, RGBA
_PNG_BLOCK_BYTES = 8 << 20  # rows filtered and deflated at a time


def encode_png(array: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """``array`` as PNG bytes (:func:`write_png`)."""
    buf = io.BytesIO()
    write_png(buf, array, text)
    return buf.getvalue()


def write_png(fh: BinaryIO, array: np.ndarray, text: Mapping[str, str] | None = None) -> None:
    """Write a uint8 grey, grey-and-alpha, RGB or RGBA array, or a uint16 grey one, to ``fh`` as PNG; ``text`` goes
    into text chunks (tEXt, or iTXt for a value Latin-1 cannot hold).

    Every row is Sub-filtered (each byte less the byte one pixel to its left) and the rows deflated at
    :data:`PNG_COMPRESS_LEVEL` in one stream, a block of rows at a time, so memory beyond the array stays a few MB.
    Pillow tries all five PNG filters on every row: for a 1920x1080 photograph's overlay that took 56 ms of its
    105, and Sub alone gives a file of the same size."""
    a = np.asarray(array)
    channels = 1 if a.ndim == 2 else (a.shape[2] if a.ndim == 3 else 0)
    if not ((a.dtype == np.uint8 and channels in _PNG_COLOUR_TYPES) or (a.dtype == np.uint16 and a.ndim == 2)):
        raise InputError(f"PNG: expected uint8 (H, W[, 2|3|4]) or uint16 (H, W) pixels, got {a.dtype} {a.shape}")
    height, width = a.shape[:2]
    if not (0 < height < 1 << 31 and 0 < width < 1 << 31):
        raise InputError(f"PNG: an image needs 1 to 2**31 - 1 pixels a side, got {width}x{height}")
    texts = b"".join(_png_text(key, str(value)) for key, value in (text or {}).items())  # a bad key: nothing written
    header = struct.pack(">IIBBBBB", width, height, 8 * a.dtype.itemsize, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    fh.write(_PNG_SIGNATURE + _png_chunk(b"IHDR", header) + texts)
    step = channels * a.dtype.itemsize  # bytes per pixel: Sub subtracts the byte this far to the left
    row_bytes = width * step
    block = max(1, _PNG_BLOCK_BYTES // (row_bytes + 1))
    rows = np.empty((min(block, height), row_bytes + 1), np.uint8)
    rows[:, 0] = 1
    deflate = zlib.compressobj(PNG_COMPRESS_LEVEL)
    for y in range(0, height, block):
        raw = np.ascontiguousarray(a[y:y + block], dtype=">u2" if a.dtype == np.uint16 else np.uint8)
        raw = raw.view(np.uint8).reshape(len(raw), row_bytes)
        out = rows[:len(raw)]
        out[:, 1:step + 1] = raw[:, :step]
        np.subtract(raw[:, step:], raw[:, :-step], out=out[:, step + 1:])
        data = deflate.compress(out)
        if data:
            fh.write(_png_chunk(b"IDAT", data))
    fh.write(_png_chunk(b"IDAT", deflate.flush()) + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def _png_text(key: str, value: str) -> bytes:
    if not 1 <= len(key) <= 79 or not all(" " <= c <= "~" or "\xa1" <= c <= "\xff" for c in key):
        raise InputError(f"PNG text key {key!r}: a PNG keyword is 1 to 79 printable Latin-1 characters; rename it")
    try:
        return _png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:  # iTXt: not compressed, no language, its text in UTF-8
        return _png_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def save_png(path: str | os.PathLike, array: np.ndarray, **pnginfo: str) -> None:
    """Save an array as PNG (:func:`write_png`), atomically; ``pnginfo`` goes into text chunks."""
    with atomic_write(path, "wb") as fh:
        write_png(fh, array, pnginfo)


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
