"""Element specifications: the named boxes (CTA, headline, logo...) a creative is scored on.

An element file is JSON or CSV.

JSON, either a bare list or an object::

    [{"name": "cta", "kind": "cta", "box": [x, y, w, h]}, ...]
    {"format": "1080x1080", "units": "relative", "elements": [...]}

CSV, with a header row (``units`` and ``box_format`` columns optional)::

    name,kind,x,y,w,h[,units][,box_format]

Boxes are ``[x, y, w, h]`` in pixels unless declared otherwise; order and units are never guessed from the values:

- ``"units": "relative"`` (on an element, or for the whole file at the top level; CSV: a ``units`` column) reads
  the box as fractions of the image width (x, w) and height (y, h);
- ``"box_format": "xyxy"`` (same places; CSV: a ``box_format`` column, or the header ``name,kind,x0,y0,x1,y1``)
  reads it as corners ``[x0, y0, x1, y1]``.

Boxes become whole pixels by the one rule of :mod:`foveal.boxes` (edges rounded half up, ``floor(v + 0.5)``; the
rounded box must be non-empty and inside the image, never clipped), so an element file and a Python box query
give the same pixels.  Kinds are case-insensitive (``"CTA"``, ``"Body text"`` → ``cta``, ``body_text``).

Extra keys on an element (``"text"``, ``"id"``...) are ignored, so annotation tools can carry their own metadata.
"""
from __future__ import annotations

import csv
import difflib
import io
import math
import numbers
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..boxes import BOX_FORMATS, UNITS, decimal_float, decimal_floats, resolve_boxes
from ..errors import ElementSpecError, InputError, UnknownElementError, is_list_like, repeated
from ..fileio import NUMBER, checked_path, is_unicode, path_is
from .textfile import parse_json, read_text

#: Every element kind foveal scores.  Norms and recommendations are keyed by kind.
ELEMENT_KINDS: tuple[str, ...] = ("cta", "headline", "body_text", "product", "logo", "face", "other")
#: Kinds that carry the message to a conversion; attention on them is the creative's "conversion share".
CONVERSION_KINDS: frozenset[str] = frozenset({"cta", "headline", "product"})
#: Most elements one creative may have: a report draws every one, and 360,000 boxes took minutes.
MAX_ELEMENTS = 10_000
#: Longest format name a store keeps: its column is this wide (PostgreSQL enforces it, SQLite would not).
MAX_FORMAT_CHARS = 64
CSV_COLUMNS: tuple[str, ...] = ("name", "kind", "x", "y", "w", "h")
#: The CSV header for corner boxes (implies ``box_format`` xyxy).
CSV_XYXY_COLUMNS: tuple[str, ...] = ("name", "kind", "x0", "y0", "x1", "y1")
#: The element-file format in a few lines (shown by ``foveal score --help``; docs/SCORING.md has it in full).
FORMAT_SUMMARY = """\
element file (JSON or CSV), one box per element:
  [{"name": "cta", "kind": "cta", "box": [x, y, w, h]}, ...]
  {"format": "1080x1080", "units": "relative", "box_format": "xywh", "elements": [...]}
  CSV: name,kind,x,y,w,h[,units][,box_format]   (or name,kind,x0,y0,x1,y1 for corner boxes)
box: [x, y, w, h] from the top-left corner, in pixels; "units": "relative" for fractions of the image width
  (x, w) and height (y, h); "box_format": "xyxy" for [x0, y0, x1, y1]. Both may be set per element or for the
  file. Edges round to the nearest pixel (halves up); boxes must lie inside the image.
kinds (any case): cta, headline, body_text, product, logo, face, other."""
#: File extensions :func:`find_element_file` looks for, in order.
ELEMENT_FILE_SUFFIXES: tuple[str, ...] = (".json", ".csv")
#: Largest element file read (bytes): far above any real creative's, small enough to parse without harm.
MAX_ELEMENT_FILE_BYTES = 64 << 20
#: Longest CSV field (characters): Python's csv refuses fields over 131,072 by default, with its own error.
MAX_CSV_FIELD = 1 << 20

@dataclass(frozen=True)
class Element:
    """One named box on a creative.

    ``box`` is ``(x, y, w, h)`` in whole pixels of the image it was resolved against, ``w, h >= 1``.
    Construct with :func:`make_element` (or :func:`load_elements`) to get validation.
    """

    name: str
    kind: str
    box: tuple[int, int, int, int]

    def __post_init__(self) -> None:
        # NumPy integers (a DataFrame row's) score as ints do, but json cannot write them out: kept as Python ints.
        # Anything else stays as given, for check_elements to refuse.
        box = self.box
        if isinstance(box, (tuple, list)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                  for v in box):
            object.__setattr__(self, "box", tuple(int(v) for v in box))

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        """The box as half-open ``(x0, y0, x1, y1)``."""
        x, y, w, h = self.box
        return x, y, x + w, y + h

    @property
    def area(self) -> int:
        """Box area in pixels."""
        return self.box[2] * self.box[3]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (pixel units), readable back by :func:`parse_elements`."""
        return {"name": self.name, "kind": self.kind, "box": list(self.box)}


@dataclass(frozen=True)
class ElementSpec:
    """A validated element file: elements in file order, the declared format (or None), where it came from."""

    elements: tuple[Element, ...]
    format: str | None
    source: str

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self) -> Iterator[Element]:
        return iter(self.elements)


def format_of(image_hw: Sequence[int]) -> str:
    """The format name inferred from an image size: ``"WxH"`` in pixels (``(1920, 1080)`` → ``"1080x1920"``)."""
    h, w = checked_hw(image_hw)
    return f"{w}x{h}"


def checked_format(value: Any, what: str = "format", error: type[InputError] = InputError, *,
                   stored: bool = False) -> str:
    """``value`` as a format name, else ``error`` naming it ``what``: a label like an element name (non-empty valid
    Unicode of at most :data:`MAX_NAME_CHARS` characters, no control character: it goes into scores.json, every
    table row and report.html); ``stored`` (to be kept in a store): also at most :data:`MAX_FORMAT_CHARS`
    printable characters, the store's column."""
    if not isinstance(value, str) or not value.strip():
        raise error(f"{what}: expected a format name such as \"1080x1080\", got {_short(value)}")
    if not is_unicode(value):
        raise error(f"{what} holds a lone UTF-16 surrogate, got {_short(value)}; use a valid Unicode name")
    if stored and (len(value) > MAX_FORMAT_CHARS or not value.isprintable()):
        raise error(f"{what} {_short(value)}: a store keeps format names of at most {MAX_FORMAT_CHARS} printable "
                    "characters (no line breaks or control characters), such as \"1080x1080\"")
    if len(value) > MAX_NAME_CHARS or _unprintable(value):
        raise error(f"{what} {_short(value)}: a format name is at most {MAX_NAME_CHARS} characters of printable "
                    "text, such as \"1080x1080\"")
    return value


def normalise_kind(kind: Any, where: str = "element") -> str:
    """The canonical kind for ``kind``: case, spaces and hyphens are forgiven (``"Body text"`` → ``body_text``);
    anything else is an :class:`ElementSpecError` with a "did you mean" when a kind is close."""
    if isinstance(kind, str):
        key = "_".join(kind.strip().lower().replace("-", " ").split())
        if key in ELEMENT_KINDS:
            return key
        close = difflib.get_close_matches(key, ELEMENT_KINDS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    else:
        hint = ""
    raise ElementSpecError(f"{where}: field 'kind' must be one of {', '.join(ELEMENT_KINDS)} (any case); got "
                           f"{_short(kind)}{hint}")


#: Longest element name, in characters.
MAX_NAME_CHARS = 200


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int of over 4,300 digits has no repr
        text = f"a {type(value).__name__} too long to print"
    return text if len(text) <= limit else text[:limit] + "…"


#: Most element names a refusal lists: a creative may have 10,000, and listing them all made a 4 MB message.
SHOWN_NAMES = 20


def unknown_element(where: str, name: object, names: Iterable[str]) -> UnknownElementError:
    """The refusal of a name no element has (an edit's, a search's, a lookup's): the name given, cut short, and
    the elements."""
    known = sorted(names)
    listed = ", ".join(known[:SHOWN_NAMES]) + (f" and {len(known) - SHOWN_NAMES:,} more" if len(known) > SHOWN_NAMES
                                                else "")
    return UnknownElementError(f"{where}: no element named {_short(name)}; the elements are {listed or 'none'}")


def canonical_name(name: str) -> str:
    """An element name as it is stored and looked up: spaces around it dropped, Unicode in NFC, so that "café" typed
    on one keyboard (one code point) and exported by a design tool (e and a combining accent) name one element."""
    return unicodedata.normalize("NFC", name.strip())


def _too_many(count: int, source: str, more: bool = False) -> ElementSpecError:
    return ElementSpecError(f"{source}: {'more than ' if more else ''}{count:,} elements, more than the "
                            f"{MAX_ELEMENTS:,} a creative may have; score the ones a reader would notice")


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ElementSpecError(f"{where}: field 'name' must be a non-empty string, got {_short(name)}")
    if len(name) > MAX_NAME_CHARS:  # a name is a label: it is repeated in every table, chart and message
        raise ElementSpecError(f"{where}: field 'name' is {len(name):,} characters long ({_short(name)}); use at most "
                               f"{MAX_NAME_CHARS}")
    if not is_unicode(name):  # a lone surrogate (JSON's "\ud800") cannot be written back out as UTF-8
        raise ElementSpecError(f"{where}: field 'name' holds a lone UTF-16 surrogate, got {_short(name)}; use a "
                               "valid Unicode name")
    if _unprintable(name):
        # NUL, ESC, a tab... are no label, and HTML, SVG and XML reports cannot hold them
        raise ElementSpecError(f"{where}: field 'name' holds a control character or a Unicode noncharacter, got "
                               f"{_short(name)}; use printable text")
    return canonical_name(name)


def _unprintable(text: str) -> bool:
    """Whether ``text`` holds a control character or a Unicode noncharacter (U+FDD0..U+FDEF and the last two code
    points of every plane: never for interchange)."""
    return any(unicodedata.category(c) == "Cc" or 0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE
               for c in text)


def _check_box_values(box: Any, where: str) -> list[float]:
    if isinstance(box, np.ndarray) and box.ndim == 1:  # a box computed in numpy (make_element); JSON has lists
        box = (decimal_floats(box) if box.dtype.kind == "f" else box).tolist()  # float32 0.7 as 0.7
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise ElementSpecError(f"{where}: field 'box' must be a list of 4 numbers [x, y, w, h], got {_short(box)}")
    if all(type(v) is int or type(v) is float for v in box):  # the common case, checked in one pass
        try:
            values = [float(v) for v in box]
        except OverflowError:
            values = []
        if values and all(map(math.isfinite, values)):
            return values
    values = []
    for label, v in zip("xywh", box):
        # bool is an int subclass; true/false in a box is always a mistake.
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise ElementSpecError(f"{where}: field 'box' value {label} must be a number, got {_short(v)}")
        try:
            f = decimal_float(v)
            if not math.isfinite(f):
                raise ElementSpecError(f"{where}: field 'box' value {label} must be finite, got {_short(v)}")
            values.append(f)
        except OverflowError:
            raise ElementSpecError(f"{where}: field 'box' value {label} ({str(v)[:20]}…, {len(str(v))} digits) is "
                                   "beyond any image; boxes must lie inside the image") from None
    return values


def _check_choice(value: Any, choices: tuple[str, ...], field: str, where: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ElementSpecError(f"{where}: field {field!r} must be {' or '.join(map(repr, choices))}, got "
                               f"{_short(value)}")
    return value


def _resolve(names: Sequence[str], kinds: Sequence[str], boxes: Sequence[Sequence[float]], formats: Sequence[str],
             units: Sequence[str], wheres: Sequence[str], image_hw: Sequence[int]) -> list[Element]:
    """Every box to pixels by the one rule, in one vectorised pass per (format, units) group."""
    out: list[Element | None] = [None] * len(names)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(formats, units)):
        groups.setdefault(key, []).append(i)
    for (box_format, unit), idx in groups.items():
        try:
            xyxy = resolve_boxes(np.asarray([boxes[i] for i in idx], np.float64).reshape(-1, 4),
                                 (int(image_hw[0]), int(image_hw[1])), box_format=box_format, units=unit,
                                 label=lambda j: f"{wheres[idx[j]]} ({names[idx[j]]!r}): field 'box'")
        except ElementSpecError:
            raise
        except InputError as exc:
            raise ElementSpecError(str(exc)) from None
        for i, (x0, y0, x1, y1) in zip(idx, xyxy.tolist()):
            out[i] = Element(name=names[i], kind=kinds[i], box=(x0, y0, x1 - x0, y1 - y0))
    return out  # type: ignore[return-value]


def make_element(name: Any, kind: Any, box: Any, image_hw: Sequence[int], *, units: str = "px",
                 box_format: str = "xywh", where: str = "element") -> Element:
    """Validate one element and resolve its box to whole pixels of an ``image_hw = (H, W)`` image.

    Raises :class:`ElementSpecError` naming ``where`` and the offending field.
    """
    image_hw = checked_hw(image_hw)
    name = _check_name(name, where)
    where_named = f"{where} ({name!r})"
    kind = normalise_kind(kind, where_named)
    _check_choice(units, UNITS, "units", where_named)
    _check_choice(box_format, BOX_FORMATS, "box_format", where_named)
    values = _check_box_values(box, where_named)
    return _resolve([name], [kind], [values], [box_format], [units], [where], image_hw)[0]


def checked_hw(image_hw: Any) -> tuple[int, int]:
    """``(height, width)`` of the image elements are placed on, as whole pixels >= 1, else InputError."""
    try:
        h, w = image_hw
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"image_hw: expected the image's (height, width) in whole pixels >= 1, got {image_hw!r}")
    return int(h), int(w)


def element_objects(elements: Iterable[Element], source: str = "elements") -> list[Element]:
    """:func:`element_list` whose items are all :class:`Element` objects, else InputError."""
    elements = element_list(elements, source)
    for e in elements:
        if not isinstance(e, Element):
            raise InputError(f"{source}: expected Element objects (foveal.scoring.Element or parse_elements' "
                             f"result), got {type(e).__name__} {_short(e)}")
    return elements


def element_list(elements: Iterable[Element], source: str = "elements") -> list[Element]:
    """``elements`` as a list, else InputError: None or a number is no element list."""
    if not is_list_like(elements):
        raise InputError(f"{source}: expected a list of Element objects (from load_elements or make_element), got "
                         f"{type(elements).__name__}")
    return list(elements)


def check_elements(elements: Iterable[Element], image_hw: Sequence[int], source: str = "elements", *,
                   identical_boxes: bool = False) -> None:
    """Check a resolved element list as a whole: at least one element, known kinds, inside the image, no duplicate
    names and (unless ``identical_boxes``, as an edit may produce) no two names on the identical box.  Raises
    :class:`ElementSpecError`."""
    elements = element_objects(elements, source)
    image_hw = checked_hw(image_hw)
    if not elements:
        raise ElementSpecError(f"{source}: no elements; give at least one element to score")
    if len(elements) > MAX_ELEMENTS:
        raise _too_many(len(elements), source)
    img_h, img_w = int(image_hw[0]), int(image_hw[1])
    names: dict[str, int] = {}
    boxes: dict[tuple[int, int, int, int], int] = {}
    for i, e in enumerate(elements):
        # Elements built directly skip make_element: their name and box are unchecked until here.
        _check_name(e.name, f"{source}: element {i}")
        if not (isinstance(e.box, (tuple, list)) and len(e.box) == 4
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in e.box)):
            raise ElementSpecError(f"{source}: element {i} ({e.name!r}): box {_short(e.box)} must be 4 whole pixels "
                                   "(x, y, w, h); make_element resolves other boxes to pixels")
        x0, y0, x1, y1 = e.xyxy
        if e.kind not in ELEMENT_KINDS:
            raise ElementSpecError(f"{source}: element {i} ({e.name!r}): kind {e.kind!r} is not one of "
                                   f"{', '.join(ELEMENT_KINDS)}")
        if x0 < 0 or y0 < 0 or x1 > img_w or y1 > img_h or x1 <= x0 or y1 <= y0:
            raise ElementSpecError(f"{source}: element {i} ({e.name!r}): box {list(e.box)} is empty or outside "
                                   f"the {img_w}x{img_h} image")
        if e.name in names:
            raise ElementSpecError(f"{source}: elements {names[e.name]} and {i} are both named {e.name!r}; "
                                   "element names must be unique")
        box = tuple(e.box)  # a list is a box too, but not a key
        if box in boxes and not identical_boxes:
            j = boxes[box]
            raise ElementSpecError(f"{source}: elements {j} ({elements[j].name!r}) and {i} ({e.name!r}) have the "
                                   f"identical box {list(e.box)}: the same element named twice? remove one or "
                                   "fix its box")
        names[e.name] = i
        boxes[box] = i


def parse_elements(obj: Any, image_hw: Sequence[int], source: str = "elements") -> ElementSpec:
    """Validate decoded JSON (a list of elements, or ``{"elements": [...], "format": ..., "units": ...,
    "box_format": ...}``)."""
    image_hw = checked_hw(image_hw)
    fmt = None
    default_units, default_format = "px", "xywh"
    if isinstance(obj, dict):
        if "elements" not in obj:
            raise ElementSpecError(f"{source}: a JSON object needs an 'elements' list; got keys "
                                   f"{_short(sorted(map(str, obj)))}")
        fmt = obj.get("format")
        if fmt is not None:
            fmt = checked_format(fmt, f"{source}: field 'format'", ElementSpecError)
        default_units = _check_choice(obj.get("units", "px"), UNITS, "units", source)
        default_format = _check_choice(obj.get("box_format", "xywh"), BOX_FORMATS, "box_format", source)
        items = obj["elements"]
    else:
        items = obj
    if isinstance(items, (str, bytes, bytearray)) and items is obj:
        raise ElementSpecError(f"{source}: expected decoded JSON (a list or an object), got "
                               f"{type(items).__name__}; for the text of a JSON file use parse_elements_json")
    if not isinstance(items, list):
        raise ElementSpecError(f"{source}: 'elements' must be a JSON list of objects, got {type(items).__name__}")
    if len(items) > MAX_ELEMENTS:  # before any is checked: a million took seconds and a GB to be refused
        raise _too_many(len(items), source)
    names, kinds, boxes, formats, units, wheres = [], [], [], [], [], []
    for i, item in enumerate(items):
        where = f"{source}: element {i}"
        if not isinstance(item, dict):
            raise ElementSpecError(f"{where}: must be an object with name, kind, box; got {_short(item)}")
        for key in ("name", "kind", "box"):
            if key not in item:
                raise ElementSpecError(f"{where}: missing field {key!r} (each element needs name, kind, box)")
        name = _check_name(item["name"], where)
        where_named = f"{where} ({name!r})"
        kinds.append(normalise_kind(item["kind"], where_named))
        units.append(_check_choice(item.get("units", default_units), UNITS, "units", where_named))
        formats.append(_check_choice(item.get("box_format", default_format), BOX_FORMATS, "box_format",
                                     where_named))
        boxes.append(_check_box_values(item["box"], where_named))
        names.append(name)
        wheres.append(where)
    elements = _resolve(names, kinds, boxes, formats, units, wheres, image_hw)
    check_elements(elements, image_hw, source)
    return ElementSpec(elements=tuple(elements), format=fmt, source=source)


def parse_elements_csv(text: str, image_hw: Sequence[int], source: str = "elements") -> ElementSpec:
    """Validate CSV text with header ``name,kind,x,y,w,h`` or ``name,kind,x0,y0,x1,y1`` (optional ``units`` and
    ``box_format`` columns)."""
    if not isinstance(text, str):
        hint = "; decode it first (data.decode('utf-8'))" if isinstance(text, (bytes, bytearray)) else ""
        raise ElementSpecError(f"{source}: expected CSV text, got {type(text).__name__}{hint}")
    text = text.removeprefix("\ufeff")  # a spreadsheet's byte order mark, left on by a plain read of the file
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(MAX_CSV_FIELD)
        return _parse_csv(text, image_hw, source)
    except csv.Error as exc:
        raise ElementSpecError(f"{source}: malformed CSV ({exc}); fields are limited to {MAX_CSV_FIELD:,} "
                               "characters and must not contain NUL bytes") from None
    finally:
        csv.field_size_limit(limit)


def _parse_csv(text: str, image_hw: Sequence[int], source: str) -> ElementSpec:
    image_hw = checked_hw(image_hw)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [c.strip().lower() for c in (reader.fieldnames or [])]
    columns, default_format = CSV_COLUMNS, "xywh"
    if all(c in header for c in CSV_XYXY_COLUMNS) and not all(c in header for c in CSV_COLUMNS):
        columns, default_format = CSV_XYXY_COLUMNS, "xyxy"
    twice = repeated(header)
    if twice:
        raise ElementSpecError(f"{source}: CSV header names column {', '.join(map(repr, twice))} more than once; "
                               "keep one")
    missing = [c for c in columns if c not in header]
    if missing:
        # Excel writes CSV with semicolons where the decimal mark is a comma: the whole header is then one column.
        hint = "; separate columns with commas, not semicolons" if len(header) == 1 and ";" in header[0] else ""
        raise ElementSpecError(f"{source}: CSV header must contain {','.join(CSV_COLUMNS)} (or "
                               f"{','.join(CSV_XYXY_COLUMNS)}); missing {','.join(missing)} (header was "
                               f"{_short(header, 200)}){hint}")
    reader.fieldnames = header
    names, kinds, boxes, formats, units, wheres = [], [], [], [], [], []
    for row in reader:
        if len(names) == MAX_ELEMENTS:  # a row past the cap: the rest is not read
            raise _too_many(MAX_ELEMENTS, source, more=True)
        where = f"{source}: line {reader.line_num}"
        if None in row or any(row[c] is None for c in columns):
            raise ElementSpecError(f"{where}: expected {len(header)} comma-separated fields")
        name = _check_name(row["name"].strip(), where)
        where_named = f"{where} ({name!r})"
        box = []
        for c in columns[2:]:
            if not NUMBER.fullmatch(row[c].strip()):  # float() takes "1_0", "١٢" and "nan" too
                raise ElementSpecError(f"{where_named}: column {c!r} must be a number, got {_short(row[c])}")
            box.append(float(row[c]))
        kinds.append(normalise_kind(row["kind"], where_named))
        units.append(_check_choice((row.get("units") or "px").strip(), UNITS, "units", where_named))
        formats.append(_check_choice((row.get("box_format") or default_format).strip(), BOX_FORMATS, "box_format",
                                     where_named))
        boxes.append(_check_box_values(box, where_named))
        names.append(name)
        wheres.append(where)
    elements = _resolve(names, kinds, boxes, formats, units, wheres, image_hw)
    check_elements(elements, image_hw, source)
    return ElementSpec(elements=tuple(elements), format=None, source=source)


def parse_elements_json(text: str, image_hw: Sequence[int], source: str = "elements") -> ElementSpec:
    """Validate the text of a JSON element file."""
    if isinstance(text, str) and text.strip("\ufeff \t\r\n\"") == "auto":  # foveal score's word, sent to the service
        raise ElementSpecError(f"{source}: 'auto' is not element JSON; elements are not detected here: detect them "
                               "first (the service's POST /v1/detect, or foveal.detect.Detector) and send the element "
                               "file that returns")
    try:
        obj = parse_json(text, source, ElementSpecError)
    except ElementSpecError:
        # A CSV element file sent where JSON is read (curl -F elements=@creative.csv) was "malformed JSON at line 1
        # column 1", which names no remedy.
        first = text.removeprefix("\ufeff").partition("\n")[0] if isinstance(text, str) else ""
        if {"name", "kind"} <= {c.strip().lower() for c in first.split(",")}:  # in any order, as CSV reads them
            raise ElementSpecError(f"{source}: this is CSV (header {_short(first.strip(), 80)}), not element JSON; "
                                   "give the JSON form, or a file named .csv where a file is read (foveal.Client "
                                   "refuses a .csv path: pass it what foveal.scoring.load_elements reads)") from None
        raise
    return parse_elements(obj, image_hw, source)


def load_elements(path: str | Path, image_hw: Sequence[int]) -> ElementSpec:
    """Read and validate an element file (``.json`` or ``.csv``) against an image of size ``(H, W)``."""
    path = Path(checked_path(path, "element file", ElementSpecError))
    suffix = path.suffix.lower()
    if suffix not in ELEMENT_FILE_SUFFIXES:
        raise ElementSpecError(f"{path}: element files must end in .json or .csv")
    text = read_text(path, "element file", MAX_ELEMENT_FILE_BYTES, ElementSpecError)
    if suffix == ".csv":
        return parse_elements_csv(text, image_hw, str(path))
    return parse_elements_json(text, image_hw, str(path))


#: Characters that reorder the text around them (bidi embeddings, overrides, isolates and marks).
_REORDERING = frozenset(map(chr, (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)))


def quoted(name: str) -> str:
    """An element's name in quotes, for a message people read: as written, joiners and other format characters
    kept (repr escaped Persian's zero-width non-joiner and the joiners of emoji sequences as \\u200c), only the
    characters that would reorder the message around it escaped."""
    text = "".join(f"\\u{ord(c):04x}" if c in _REORDERING else c for c in name)
    quote = '"' if "'" in text and '"' not in text else "'"
    return f"{quote}{text}{quote}"


def find_element_file(image_path: str | Path, elements_dir: str | Path) -> Path:
    """The element file for ``image_path`` in ``elements_dir``: same stem, ``.json`` preferred over ``.csv``."""
    stem = Path(checked_path(image_path, "image", ElementSpecError)).stem
    folder = Path(checked_path(elements_dir, "elements folder", ElementSpecError))
    candidates = [folder / (stem + suffix) for suffix in ELEMENT_FILE_SUFFIXES]
    for candidate in candidates:
        if path_is(candidate, Path.is_file):
            return candidate
    for candidate in candidates:  # there, but no file: "no element file ... expected it" would send the user looking
        if path_is(candidate, Path.exists):
            raise ElementSpecError(f"{candidate}: not a regular file (a folder, FIFO, socket or device); the element "
                                   f"file for {Path(image_path).name} must be a file")
    raise ElementSpecError(f"no element file for {Path(image_path).name}: expected {stem}.json or {stem}.csv "
                           f"in {elements_dir}")
