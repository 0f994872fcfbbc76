"""Element specifications: the named boxes (CTA, headline, logo...) a creative is scored on.

An element file is JSON or CSV.

JSON, either a bare list or an object::

    [{"name": "cta", "kind": "cta", "box": [x, y, w, h]}, ...]
    {"format": "1080x1080", "units": "relative", "elements": [...]}

CSV, with a header row (``units`` column optional)::

    name,kind,x,y,w,h[,units]

Units rule (explicit, never guessed from the values): a box is in pixels unless its element says
``"units": "relative"``, or, when it does not say, the file's top-level ``"units"`` does.  Relative boxes are
fractions of the image width (x, w) and height (y, h).  Either way the box edges are rounded to the nearest pixel
(``x0 = floor(x + 0.5)``, ``x1 = floor(x + w + 0.5)``; relative values are multiplied by the image size first), and
the rounded box must be non-empty and lie inside the image.

Extra keys on an element (``"text"``, ``"id"``...) are ignored, so annotation tools can carry their own metadata.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import ElementSpecError

#: Every element kind foveal scores.  Norms and recommendations are keyed by kind.
ELEMENT_KINDS: tuple[str, ...] = ("cta", "headline", "body_text", "product", "logo", "face", "other")
#: Kinds that carry the message to a conversion; attention on them is the creative's "conversion share".
CONVERSION_KINDS: frozenset[str] = frozenset({"cta", "headline", "product"})
UNITS: tuple[str, ...] = ("px", "relative")
CSV_COLUMNS: tuple[str, ...] = ("name", "kind", "x", "y", "w", "h")
#: File extensions :func:`find_element_file` looks for, in order.
ELEMENT_FILE_SUFFIXES: tuple[str, ...] = (".json", ".csv")


@dataclass(frozen=True)
class Element:
    """One named box on a creative.

    ``box`` is ``(x, y, w, h)`` in whole pixels of the image it was resolved against, ``w, h >= 1``.
    Construct with :func:`make_element` (or :func:`load_elements`) to get validation.
    """

    name: str
    kind: str
    box: tuple[int, int, int, int]

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

    def __iter__(self):
        return iter(self.elements)


def format_of(image_hw: Sequence[int]) -> str:
    """The format name inferred from an image size: ``"WxH"`` in pixels (``(1920, 1080)`` → ``"1080x1920"``)."""
    h, w = image_hw
    return f"{int(w)}x{int(h)}"


def make_element(name: Any, kind: Any, box: Any, image_hw: Sequence[int], *, units: str = "px",
                 where: str = "element") -> Element:
    """Validate one element and resolve its box to whole pixels of an ``image_hw = (H, W)`` image.

    Raises :class:`ElementSpecError` naming ``where`` and the offending field.
    """
    if not isinstance(name, str) or not name.strip():
        raise ElementSpecError(f"{where}: field 'name' must be a non-empty string, got {name!r}")
    where = f"{where} ({name!r})"
    if not isinstance(kind, str) or kind not in ELEMENT_KINDS:
        raise ElementSpecError(f"{where}: field 'kind' must be one of {', '.join(ELEMENT_KINDS)}; got {kind!r}")
    if units not in UNITS:
        raise ElementSpecError(f"{where}: field 'units' must be 'px' or 'relative', got {units!r}")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise ElementSpecError(f"{where}: field 'box' must be a list of 4 numbers [x, y, w, h], got {box!r}")
    for label, v in zip("xywh", box):
        # bool is an int subclass; true/false in a box is always a mistake.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ElementSpecError(f"{where}: field 'box' value {label} must be a number, got {v!r}")
        if not math.isfinite(v):
            raise ElementSpecError(f"{where}: field 'box' value {label} must be finite, got {v!r}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ElementSpecError(f"{where}: field 'box' has zero or negative area (w={box[2]}, h={box[3]}); "
                               "w and h must be > 0")
    img_h, img_w = int(image_hw[0]), int(image_hw[1])
    sx, sy = (img_w, img_h) if units == "relative" else (1, 1)
    x0, x1 = math.floor(x * sx + 0.5), math.floor((x + w) * sx + 0.5)
    y0, y1 = math.floor(y * sy + 0.5), math.floor((y + h) * sy + 0.5)
    shown = f"box {list(box)} ({units})"
    if x0 < 0 or y0 < 0 or x1 > img_w or y1 > img_h:
        raise ElementSpecError(f"{where}: field 'box': {shown} covers pixels x {x0}..{x1}, y {y0}..{y1}, outside "
                               f"the {img_w}x{img_h} image; boxes must lie inside the image "
                               "(relative boxes need \"units\": \"relative\")")
    if x1 <= x0 or y1 <= y0:
        raise ElementSpecError(f"{where}: field 'box': {shown} rounds to an empty pixel box; make it at least "
                               "one pixel wide and high")
    return Element(name=name, kind=kind, box=(x0, y0, x1 - x0, y1 - y0))


def check_elements(elements: Iterable[Element], image_hw: Sequence[int], source: str = "elements") -> None:
    """Check a resolved element list as a whole: at least one element, inside the image, no duplicate names,
    no two names on the identical box.  Raises :class:`ElementSpecError`."""
    elements = list(elements)
    if not elements:
        raise ElementSpecError(f"{source}: no elements; give at least one element to score")
    img_h, img_w = int(image_hw[0]), int(image_hw[1])
    names: dict[str, int] = {}
    boxes: dict[tuple[int, int, int, int], int] = {}
    for i, e in enumerate(elements):
        x0, y0, x1, y1 = e.xyxy
        if x0 < 0 or y0 < 0 or x1 > img_w or y1 > img_h or x1 <= x0 or y1 <= y0:
            raise ElementSpecError(f"{source}: element {i} ({e.name!r}): box {list(e.box)} is empty or outside "
                                   f"the {img_w}x{img_h} image")
        if e.name in names:
            raise ElementSpecError(f"{source}: elements {names[e.name]} and {i} are both named {e.name!r}; "
                                   "element names must be unique")
        if e.box in boxes:
            j = boxes[e.box]
            raise ElementSpecError(f"{source}: elements {j} ({elements[j].name!r}) and {i} ({e.name!r}) have the "
                                   f"identical box {list(e.box)}: the same element named twice? remove one or "
                                   "fix its box")
        names[e.name] = i
        boxes[e.box] = i


def _check_units(value: Any, where: str) -> str:
    if value not in UNITS:
        raise ElementSpecError(f"{where}: field 'units' must be 'px' or 'relative', got {value!r}")
    return value


def parse_elements(obj: Any, image_hw: Sequence[int], source: str = "elements") -> ElementSpec:
    """Validate decoded JSON (a list of elements, or ``{"elements": [...], "format": ..., "units": ...}``)."""
    fmt = None
    default_units = "px"
    if isinstance(obj, dict):
        if "elements" not in obj:
            raise ElementSpecError(f"{source}: a JSON object needs an 'elements' list; got keys {sorted(obj)}")
        fmt = obj.get("format")
        if fmt is not None and (not isinstance(fmt, str) or not fmt.strip()):
            raise ElementSpecError(f"{source}: field 'format' must be a non-empty string, got {fmt!r}")
        default_units = _check_units(obj.get("units", "px"), source)
        items = obj["elements"]
    else:
        items = obj
    if not isinstance(items, list):
        raise ElementSpecError(f"{source}: 'elements' must be a JSON list of objects, got {type(items).__name__}")
    elements = []
    for i, item in enumerate(items):
        where = f"{source}: element {i}"
        if not isinstance(item, dict):
            raise ElementSpecError(f"{where}: must be an object with name, kind, box; got {item!r}")
        for key in ("name", "kind", "box"):
            if key not in item:
                raise ElementSpecError(f"{where}: missing field {key!r} (each element needs name, kind, box)")
        units = _check_units(item.get("units", default_units), where)
        elements.append(make_element(item["name"], item["kind"], item["box"], image_hw, units=units, where=where))
    check_elements(elements, image_hw, source)
    return ElementSpec(elements=tuple(elements), format=fmt, source=source)


def parse_elements_csv(text: str, image_hw: Sequence[int], source: str = "elements") -> ElementSpec:
    """Validate CSV text with header ``name,kind,x,y,w,h`` (optional ``units`` column)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise ElementSpecError(f"{source}: CSV header must contain {','.join(CSV_COLUMNS)}; "
                               f"missing {','.join(missing)} (header was {header})")
    reader.fieldnames = header
    elements = []
    for row in reader:
        where = f"{source}: line {reader.line_num}"
        if None in row or any(row[c] is None for c in CSV_COLUMNS):
            raise ElementSpecError(f"{where}: expected {len(header)} comma-separated fields")
        box = []
        for c in "xywh":
            try:
                box.append(float(row[c]))
            except ValueError:
                raise ElementSpecError(f"{where} ({row['name']!r}): column {c!r} must be a number, "
                                       f"got {row[c]!r}") from None
        units = _check_units((row.get("units") or "px").strip(), where)
        elements.append(make_element(row["name"].strip(), row["kind"].strip(), box, image_hw, units=units,
                                     where=where))
    check_elements(elements, image_hw, source)
    return ElementSpec(elements=tuple(elements), format=None, source=source)


def load_elements(path: str | Path, image_hw: Sequence[int]) -> ElementSpec:
    """Read and validate an element file (``.json`` or ``.csv``) against an image of size ``(H, W)``."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ElementSpecError(f"{source}: element file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ElementSpecError(f"{source}: cannot read element file ({exc})") from None
    if path.suffix.lower() == ".csv":
        return parse_elements_csv(text, image_hw, source)
    if path.suffix.lower() != ".json":
        raise ElementSpecError(f"{source}: element files must end in .json or .csv")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ElementSpecError(f"{source}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") \
            from None
    return parse_elements(obj, image_hw, source)


def find_element_file(image_path: str | Path, elements_dir: str | Path) -> Path:
    """The element file for ``image_path`` in ``elements_dir``: same stem, ``.json`` preferred over ``.csv``."""
    stem = Path(image_path).stem
    for suffix in ELEMENT_FILE_SUFFIXES:
        candidate = Path(elements_dir) / (stem + suffix)
        if candidate.is_file():
            return candidate
    raise ElementSpecError(f"no element file for {Path(image_path).name}: expected {stem}.json or {stem}.csv "
                           f"in {elements_dir}")
