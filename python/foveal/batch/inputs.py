"""What a batch scores: creatives from a folder, a list file, or a Parquet/CSV table of paths.

Each creative becomes a :class:`BatchItem`: an id (unique in the batch; it names the creative's rows, report folder
and map), the image path, and where its elements come from: an element file, inline element JSON, or (None) the
file of the same name in the elements folder.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..boxes import decimal_float
from ..errors import InputError, repeated
from ..fileio import (check_text_table, checked_path, column_list, parquet_columns, path_is, read_parquet,
                      text_lines, unicode_name)
from ..imageio import IMAGE_SUFFIXES

LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})
TABLE_SUFFIXES = frozenset({".parquet", ".csv"})
BOX_COLUMNS = ("name", "kind", "x", "y", "w", "h")
#: Columns a CSV table holds as text whatever they look like.
TEXT_COLUMNS = ("creative_id", "image", "path", "elements", "name", "kind", "units")
#: The columns of a table a batch reads (a Parquet file's others are not read at all).
USED_COLUMNS = frozenset(TEXT_COLUMNS + BOX_COLUMNS)
#: What to do with a table over foveal's limits (MAX_TABLE_ROWS, MAX_TABLE_BYTES).
TOO_LARGE = ("split it into several tables, each creative's rows in one, and score them one after another into the "
             "same output folder (-o)")
LIST_TOO_LARGE = "split it into several list files and score them one after another into the same output folder (-o)"
_ID = re.compile(r"[^/\\\x00-\x1f\x7f-\x9f]{1,200}")
MAX_ID_BYTES = 200
ID_RULE = "1-200 characters (200 bytes in UTF-8), no slashes, control characters or leading dot"


@dataclass(frozen=True)
class BatchItem:
    """One creative of a batch.

    ``elements`` is a path to an element file (.json/.csv), element JSON text (starting with ``[`` or ``{``), or
    None: the element file named like the image in the batch's elements folder (default: the image's folder).
    """

    creative_id: str
    image: str
    elements: str | None = None

    def __post_init__(self) -> None:
        for name, optional in (("creative_id", False), ("image", False), ("elements", True)):
            value = getattr(self, name)
            if isinstance(value, os.PathLike) and name != "creative_id":  # a Path reached pyarrow as it was
                object.__setattr__(self, name, os.fspath(value))
            elif not (isinstance(value, str) or (optional and value is None)):
                raise InputError(f"BatchItem {name}: expected text{' or a path' if name != 'creative_id' else ''}"
                                 f"{' or None' if optional else ''}, got {type(value).__name__}")
        # The name goes into scores, reports and stores, all UTF-8; the OS hands undecodable bytes over as lone
        # surrogates, which none of them can hold.
        for what, text in (("the image's file name", self.image), ("the element file's name", self.elements or ""),
                           ("the creative id", self.creative_id)):
            unicode_name(text, what)


def is_batch_input(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a batch (folder, list file, table) rather than one image."""
    path = Path(checked_path(path, "path"))
    return path.is_dir() or path.suffix.lower() in LIST_SUFFIXES | TABLE_SUFFIXES


def read_inputs(source: str | Path) -> list[BatchItem]:
    """The creatives named by ``source``: a folder of images, a list file (``.txt``: one image path a line,
    relative to the list's folder, ``#`` comments), or a table (``.parquet``/``.csv``).

    A table has an ``image`` (or ``path``) column and optionally ``creative_id`` and ``elements`` (an element file's
    path or element JSON); or one row per element with ``name, kind, x, y, w, h`` (and ``units``) columns, grouped
    into creatives by ``creative_id`` (else by image).  Relative paths are relative to the table's folder.  Every
    image (and element file) path is made absolute, so a resume from another folder records the same ``image``.
    """
    if type(source).__name__ == "DataFrame":  # a table in memory: read_inputs reads its rows from a file
        raise InputError("batch input: expected a file path, got a DataFrame; save it as a table "
                         "(df.to_parquet(\"batch.parquet\")) and read that, or make a BatchItem per row")
    source = Path(checked_path(source, "batch input"))
    if source.is_dir():
        try:
            images = list_images(source)
        except InputError as exc:
            # Creatives sorted into subfolders (per campaign, per client) are a common layout: say how to batch them.
            try:
                subfolders = any(path_is(p, Path.is_dir) for p in source.iterdir())
            except OSError:  # unlistable: exc says so
                subfolders = False
            if not subfolders:
                raise
            raise InputError(f"{exc}; subfolders are not searched: give a list file (.txt, one image path a line) "
                             "or a table (.parquet/.csv) naming the images in them") from None
        return _unique(_from_paths(images), source, named_by_file=True)
    if not source.is_file():
        raise InputError(f"{source}: not found (give a folder, a list file .txt, or a table .parquet/.csv)")
    suffix = source.suffix.lower()
    if suffix in LIST_SUFFIXES:
        return _unique(_from_paths(_read_list(source)), source, named_by_file=True)
    if suffix in TABLE_SUFFIXES:
        return _from_table(source)
    raise InputError(f"{source}: a batch is a folder, a list file ({', '.join(sorted(LIST_SUFFIXES))}) or a table "
                     f"({', '.join(sorted(TABLE_SUFFIXES))}); got {suffix or 'no suffix'}")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; names (stems) must be unique.

    Hidden files (a leading dot) are not listed, as a file browser does not show them: macOS leaves a ``._NAME``
    metadata file beside every file copied to a foreign disk, with the image's suffix and no image inside. Every
    other name with an image suffix is listed, whatever it is: a link to no file, a folder or a pipe fails as what it
    is instead of vanishing unreported.
    """
    folder = Path(checked_path(folder, "folder"))
    try:
        if not folder.is_dir():
            raise InputError(f"{folder}: not a folder")
        images = sorted(p for p in folder.iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(f"cannot list {folder}: {exc.strerror or exc}; make it readable") from None
    if not images:
        raise InputError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def check_creative_id(value: Any, where: str) -> str:
    """A creative id names files (``reports/<id>/``, ``maps/<id>.npy`` and its temporary name, 23 bytes longer):
    non-empty text without slashes or control characters, not starting with a dot, at most 200 bytes as a file
    name (file systems count a name's bytes, 255 at most, and a character may take four)."""
    if (not isinstance(value, str) or not _ID.fullmatch(value) or value.startswith(".")
            or len(os.fsencode(value)) > MAX_ID_BYTES):
        raise InputError(f"{where}: creative_id {value!r} cannot name a file: use {ID_RULE}")
    return value


def _from_paths(paths: Iterable[Path]) -> list[BatchItem]:
    return [BatchItem(p.stem, str(p.absolute())) for p in paths]


def _unique(items: list[BatchItem], source: Path, named_by_file: bool = False,
            ids_given: bool = False) -> list[BatchItem]:
    """``items``, checked: valid and unique creative ids.  ``named_by_file``: the ids are the images' file names
    (a folder or a list file), so a bad or shared one is the file's to rename; ``ids_given``: they come from a
    table's ``creative_id`` column, so a shared one is that column's to fix."""
    if not items:
        raise InputError(f"{source}: no creatives listed")
    seen: dict[str, BatchItem] = {}
    for item in items:
        if named_by_file:
            try:
                check_creative_id(item.creative_id, str(source))
            except InputError:
                raise InputError(f"{item.image}: the file's name {item.creative_id!r} cannot serve as a creative id "
                                 f"({ID_RULE}): rename the file or move it out of the batch") from None
        else:
            check_creative_id(item.creative_id, str(source))
        if item == seen.get(item.creative_id):
            raise InputError(f"{source}: {item.image} is listed twice; list each creative once")
        if item.creative_id in seen:
            remedy = ("give each creative its own creative_id" if ids_given else
                      f"rename one{'' if named_by_file else ' or give a creative_id column'}")
            raise InputError(f"{source}: {seen[item.creative_id].image} and {item.image} share the creative id "
                             f"{item.creative_id!r}; their rows, reports and maps would collide: {remedy}")
        seen[item.creative_id] = item
    return items


def _read_list(path: Path) -> list[Path]:
    try:
        check_text_table(path, LIST_TOO_LARGE)
        # utf-8-sig: Windows editors start a UTF-8 file with a byte-order mark, which is no part of the first path
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list file ({exc})") from None
    return [_resolve(line.strip(), path.parent) for line in text_lines(text)
            if line.strip() and not line.lstrip().startswith("#")]


def _resolve(text: str, base: Path) -> Path:
    """``text`` as an absolute path, taken from ``base`` when relative.  Absolute, so that the tables name the same
    file whichever folder a run (or its resume, or a Ray worker) starts in; not resolved (``..`` kept), so that a
    path through a linked folder means what it says."""
    p = Path(text)
    return (p if p.is_absolute() else base / p).absolute()


def _from_table(path: Path) -> list[BatchItem]:
    names, columns = _read_table(path)
    image_col = "image" if "image" in columns else "path" if "path" in columns else None
    if image_col is None:
        raise InputError(f"{path}: a table needs an 'image' (or 'path') column; got {column_list(names) or 'none'}")
    n = len(columns[image_col])
    images = [_cell(v, path, image_col, i) for i, v in enumerate(columns[image_col])]
    ids = ([_cell(v, path, "creative_id", i) for i, v in enumerate(columns["creative_id"])]
           if "creative_id" in columns else [Path(p).stem for p in images])
    if all(c in columns for c in BOX_COLUMNS):
        return _unique(_long_table(path, columns, images, ids), path)  # ids grouped: none is shared
    some = [c for c in BOX_COLUMNS if c in columns]
    if any(c in columns for c in "xywh"):  # else its boxes would give way to the element files beside the images
        missing = [c for c in BOX_COLUMNS if c not in columns]
        raise InputError(f"{path}: a table of one row per element needs the columns {','.join(BOX_COLUMNS)}; it has "
                         f"{','.join(some)} but not {','.join(missing)} (rename them, e.g. width to w)")
    if "elements" in columns:
        elements = [_elements_cell(v, path, i) for i, v in enumerate(columns["elements"])]
    else:
        elements = [None] * n
    return _unique([BatchItem(ids[i], str(_resolve(images[i], path.parent)), elements[i]) for i in range(n)], path,
                   ids_given="creative_id" in columns)


def _long_table(path: Path, columns: dict[str, list[Any]], images: list[str], ids: list[str]) -> list[BatchItem]:
    """One row per element: group rows into creatives (in order of first appearance)."""
    groups: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for i, cid in enumerate(ids):
        image, elements = groups.setdefault(cid, (images[i], []))
        if image != images[i]:
            raise InputError(f"{path}: row {i + 1}: creative {cid!r} has two images ({image}, {images[i]})")
        element = {"name": columns["name"][i], "kind": columns["kind"][i],
                   "box": [_box_cell(columns[c][i], path, c, i) for c in "xywh"]}
        units = columns["units"][i] if "units" in columns else None
        if units is not None and str(units).strip():  # an empty cell is the default (pixels), as in element CSVs
            element["units"] = str(units).strip()
        elements.append(element)
    return [BatchItem(cid, str(_resolve(image, path.parent)), json.dumps(elements, allow_nan=False))
            for cid, (image, elements) in groups.items()]


def _read_table(path: Path) -> tuple[list[str], dict[str, list[Any]]]:
    """The table's column names, and the values of the columns a batch reads (see :func:`read_inputs`), within
    the table limits (:data:`~foveal.fileio.MAX_TABLE_ROWS`, checked before the data is read)."""
    import pyarrow as pa

    try:
        if path.suffix.lower() == ".parquet":
            names = parquet_columns(path)
            _check_names(path, names)
            table = read_parquet(path, [n for n in names if n in USED_COLUMNS], TOO_LARGE)
        else:
            import pyarrow.csv as pcsv

            check_text_table(path, TOO_LARGE)
            # Ids and names stay text: a guessed type would turn the id 00123 into 123.0 and 1e3 into 1000.0.
            text = pcsv.ConvertOptions(column_types={c: pa.string() for c in TEXT_COLUMNS})
            table = pcsv.read_csv(path, convert_options=text)
            names = table.column_names
            _check_names(path, names)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read the table ({str(exc).splitlines()[0]})") from None
    return names, {name: _values(table.column(name)) for name in table.column_names if name in USED_COLUMNS}


def _check_names(path: Path, names: list[str]) -> None:
    twice = repeated(names)
    if twice:
        raise InputError(f"{path}: column {column_list(map(repr, twice))} appears more than once; keep one")


def _values(column: Any) -> list[Any]:
    """A column's values; a float32 or float16 one's as the decimals they stand for (a relative box's 0.7 as 0.7,
    not the 0.699999988 it widens to, which rounds a pixel lower: see foveal.boxes.decimal_floats)."""
    import pyarrow as pa

    narrow = {pa.float32(): np.float32, pa.float16(): np.float16}.get(column.type)
    values = column.to_pylist()
    return values if narrow is None else [None if v is None else decimal_float(narrow(v)) for v in values]


def _cell(value: Any, path: Path, column: str, row: int) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{path}: row {row + 1}: column {column!r} is empty")
    return str(value).strip()


def _box_cell(value: Any, path: Path, column: str, row: int) -> Any:
    """A box coordinate as read; an empty or non-finite one refused here, since the element JSON made from the
    row cannot hold it (any other bad value is reported by the element checks, with the element's name)."""
    if value is None:
        raise InputError(f"{path}: row {row + 1}: column {column!r} is empty or not a number")
    if isinstance(value, str):  # one cell that is no number makes the reader take the whole column as text
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(f"{path}: row {row + 1}: column {column!r} is {value!r}, not a number") from None
        value = int(value) if value.is_integer() else value
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{path}: row {row + 1}: column {column!r} is {value}; a box needs finite numbers")
    return value


def _elements_cell(value: Any, path: Path, row: int) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # this creative's element file is found by name
    text = str(value).strip()
    return text if text[0] in "[{" else str(_resolve(text, path.parent))
