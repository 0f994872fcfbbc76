"""Reading and validating outcomes files (CSV or Parquet) before they reach the store.

Columns (after ``--map column=field`` renames): ``creative_id, date, impressions, clicks`` are required;
``conversions, spend, source`` are optional.  Every row is checked and every problem reported with its line (CSV,
counting the header as line 1) or row (Parquet, from 1), so a file is fixed in one pass; nothing is imported
from a file with any bad row.
"""
from __future__ import annotations

import csv
import decimal
import math
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import InputError, repeated
from ..fileio import NUMBER, check_text_table, column_list, parquet_columns, read_parquet, text_lines

REQUIRED = ("creative_id", "date", "impressions", "clicks")
OPTIONAL = ("conversions", "spend", "source")
FIELDS = REQUIRED + OPTIONAL
SHOWN_ERRORS = 8
#: The largest count a store column (a 64-bit signed integer, in SQLite and PostgreSQL) holds.
MAX_COUNT = 2**63 - 1
#: The one date form the docs promise; date.fromisoformat also takes "20240301" and "2024-W09-5" (Python 3.11).
DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
#: What is stripped around a field: spaces after the commas, not the no-break spaces of a formatted number.
PADDING = " \t"
#: What to do with a file over foveal's table limits (MAX_TABLE_ROWS, MAX_TABLE_BYTES).
TOO_LARGE = "split it into several files (by date, say) and import each"


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``["Impr=impressions", ...]`` → ``{"Impr": "impressions"}`` (file column → field), validated."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, field = pair.partition("=")
        if not sep or not column or field not in FIELDS:
            raise InputError(f"mapping {pair!r}: expected COLUMN=FIELD with FIELD one of {', '.join(FIELDS)}")
        if column in mapping:  # a dict would keep only the last of them
            raise InputError(f"mapping: column {column!r} is mapped twice (to {mapping[column]!r} and {field!r}); "
                             "map each column once")
        mapping[column] = field
    return check_mapping(mapping)


def check_mapping(mapping: Any) -> Mapping[str, str]:
    """``mapping`` if it maps file columns (non-empty text) to fields, each field at most once; else InputError."""
    if not (isinstance(mapping, Mapping) and all(isinstance(c, str) and c and f in FIELDS for c, f in mapping.items())):
        raise InputError(f"mapping: expected {{column: field}} with each field one of {', '.join(FIELDS)}, got "
                         f"{mapping!r:.80}")
    twice = repeated(mapping.values())
    if twice:  # the row would take the last of the columns, silently
        raise InputError(f"mapping: two columns map to {twice[0]!r}; map each field once")
    return mapping


def read_outcomes(path: Path, mapping: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The file's rows as dicts of typed fields plus ``line``, and the problems found (``"line 4: ..."``)."""
    check_mapping(mapping)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():  # a pipe or device could block the read, or never end
        raise InputError(f"{path}: not a regular file (a folder, pipe or device); name an outcomes .csv or "
                         ".parquet file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        columns, records, unit = _read_csv(path)
    elif suffix in (".parquet", ".pq"):
        columns, records, unit = _read_parquet(path, mapping)
    else:
        raise InputError(f"{path}: outcomes must be a .csv or .parquet file")
    # Unnamed columns are ignored like other extra ones: spreadsheets export the empty columns beside the data.
    twice = repeated(c for c in columns if c)
    if twice:  # each row is read as a dict: the later column would win, silently
        raise InputError(f"{path}: the file repeats a column name ({column_list(twice)}); give each column its "
                         "own name")
    missing_columns = [c for c in mapping if c not in columns]
    if missing_columns:
        raise InputError(f"{path}: the mapping names column(s) {', '.join(missing_columns)} that the file lacks "
                         f"(it has: {column_list(columns)})")
    rename = _fields(columns, mapping)
    lacking = [f for f in REQUIRED if f not in rename.values()]
    if lacking:
        raise InputError(f"{path}: no column for {', '.join(lacking)} (the file has: {column_list(columns)}); "
                         "rename the columns or map them (COLUMN=FIELD)")
    rows, errors, seen = [], [], {}
    for line, record in records:
        where = f"{unit} {line}"
        if "__width__" in record:
            errors.append(f"{where}: {record['__width__']}")
            continue
        row, problems = _parse_row({rename[c]: v for c, v in record.items() if rename.get(c) in FIELDS})
        errors += [f"{where}: {p}" for p in problems]
        if problems:
            continue
        key = (row["creative_id"], row["date"], row["source"])
        if key in seen:
            errors.append(f"{where}: repeats {unit} {seen[key]} (same creative_id, date and source)")
            continue
        seen[key] = line
        rows.append({**row, "line": where})
    if not rows and not errors:
        raise InputError(f"{path}: no data rows")
    return rows, errors


def _fields(columns: list[str], mapping: Mapping[str, str]) -> dict[str, str | None]:
    """Each column's field: a column mapped onto a field is read instead of one that bears the field's name (the
    mapping says which is meant; otherwise the later of the two in the file would win, silently)."""
    return {c: mapping[c] if c in mapping else None if c in mapping.values() else c for c in columns}


def check(path: Path, rows: list[dict[str, Any]], errors: list[str], known_ids: set[str]) -> None:
    """Raise one InputError listing every bad row (parse errors and creative ids the store does not know)."""
    errors = errors + [f"{r['line']}: unknown creative_id {r['creative_id']!r}" for r in rows
                       if r["creative_id"] not in known_ids]
    if errors:
        errors.sort(key=_line_number)
        shown = "; ".join(errors[:SHOWN_ERRORS])
        more = f"; and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        raise InputError(f"{path}: {len(errors)} invalid row(s), nothing imported: {shown}{more}. Fix the file "
                         "(unknown creatives: record them first with `foveal score --db`) and import again")


def _line_number(message: str) -> int:
    return int(message.split(":")[0].split()[1])


def _read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]], str]:
    try:
        check_text_table(path, TOO_LARGE)
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError as exc:  # Excel's plain "CSV" is the system's code page (Latin-1, Windows-1252...)
        read = exc.object  # after a byte-order mark, which exc.start does not count
        line = read.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}: line {line} is not UTF-8 text (byte 0x{read[exc.start]:02x}); save the file as "
                         "CSV UTF-8 and import again") from None
    del data
    reader = csv.reader(text_lines(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(f"{path}: empty file; expected a header row "
                         f"({', '.join(REQUIRED)}, ...)") from None
    except csv.Error as exc:
        raise InputError(f"{path}: line 1: {_csv_problem(exc)}") from None
    separators = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}
    other = [name for sep, name in separators.items() if len(header) == 1 and sep in header[0]]
    if other:  # the usual export of a spreadsheet set to a European locale
        raise InputError(f"{path}: the header is one column, {header[0]!r}: the file looks separated by {other[0]}; "
                         "foveal reads comma-separated CSV: export the file with commas")

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        # A row is reported at the line it starts on: line_num is where it ends, later when a quoted field holds
        # line breaks, and at the end of the file when a quote is never closed.
        start = reader.line_num + 1
        try:
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    yield line, {"__width__": f"{len(cells)} cells, the header has {len(header)}"}
                    continue
                yield line, dict(zip(header, cells))
        except csv.Error as exc:
            raise InputError(f"{path}: line {start}: {_csv_problem(exc)}") from None
    return header, records(), "line"


def _csv_problem(exc: csv.Error) -> str:
    # The usual cause is a quote left open, which runs the field on through the lines after it.
    return f"not a valid CSV row ({exc}); check that every quoted field is closed and fix the file"


def _read_parquet(path: Path, mapping: Mapping[str, str]) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]],
                                                                   str]:
    """The file's column names and its rows, of the columns that map to a field (the others are not read), read
    once the names have been checked: when the rows are first asked for."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install 'foveal[store]')") from None
    columns = _parquet(path, parquet_columns)

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        used = [c for c, field in _fields(columns, mapping).items() if field in FIELDS]
        table = _parquet(path, lambda p: read_parquet(p, used, TOO_LARGE))
        line = 0
        for batch in table.to_batches():  # Python rows a batch at a time: they take far more than Arrow's
            try:
                rows = batch.to_pylist()
            except Exception:  # noqa: BLE001 - a value Python cannot hold: found cell by cell, and named below
                rows = [{name: _cell(batch.column(j), i) for j, name in enumerate(batch.schema.names)}
                        for i in range(batch.num_rows)]
            for record in rows:
                line += 1
                yield line, record
    return columns, records(), "row"


class Unreadable:
    """A Parquet value Python cannot hold (a day past year 9999, a time zone Python does not know, nanoseconds
    without pandas), standing in its row for the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _cell(column: Any, i: int) -> Any:
    try:
        return column[i].as_py()
    except Exception as exc:  # noqa: BLE001 - OverflowError, ValueError, ArrowInvalid... all say why
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Unreadable(f"cannot be read as a Python value ({column.type}: {reason})")


def _parquet(path: Path, read: Callable[[Path], Any]) -> Any:
    """``read(path)``, pyarrow's errors (a damaged file) as one line."""
    try:
        return read(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable Parquet file ({reason})") from None


def _parse_row(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    unreadable = [f"{name} {value.reason}" for name, value in values.items() if isinstance(value, Unreadable)]
    if unreadable:
        return {}, unreadable
    problems: list[str] = []
    row: dict[str, Any] = {}
    cid = values.get("creative_id")
    row["creative_id"] = "" if _blank(cid) else str(cid).strip()
    if not row["creative_id"]:
        problems.append("creative_id is empty")
    elif not is_label(row["creative_id"]):
        problems.append(f"creative_id {row['creative_id'][:40]!r} is not 1-200 printable characters")
    row["date"] = _parse_date(values.get("date"), problems)
    for name in ("impressions", "clicks", "conversions"):
        row[name] = _parse_count(name, values.get(name), name != "conversions", problems)
    row["spend"] = _parse_spend(values.get("spend"), problems)
    source = values.get("source")
    row["source"] = "" if _blank(source) else str(source).strip()
    if row["source"] and not is_label(row["source"]):
        problems.append(f"source {row['source'][:40]!r} is not 1-200 printable characters")
    for part, whole in (("clicks", "impressions"), ("conversions", "clicks")):  # each a subset of the one before
        if isinstance(row[part], int) and isinstance(row[whole], int) and row[part] > row[whole]:
            problems.append(f"{part} {row[part]} > {whole} {row[whole]}")
    return row, problems


#: The segment of creatives without a vertical (or tag) in a calibration: no creative's own label.
NO_LABEL = "(none)"
#: The segment of creatives whose stored label is NO_LABEL itself (an older foveal stored it): kept apart from the
#: creatives without one, under a name no label may take.
STORED_NO_LABEL = '"(none)" as stored'


def is_label(text: str) -> bool:
    """Whether non-empty ``text`` may be a creative id, tag, vertical or source in the store: at most 200
    characters, none of them a control character (PostgreSQL refuses NUL, and ids are shown on one line): C0, DEL
    or C1, whose U+009B a terminal may run as an escape sequence."""
    return len(text) <= 200 and not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def parse_day(text: str) -> date:
    """``YYYY-MM-DD`` as a date; ValueError for any other form or a day that does not exist."""
    try:
        if DAY.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:  # 2024-02-30
        pass
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)")


def _parse_date(value: Any, problems: list[str]) -> date | None:
    if isinstance(value, datetime):
        # A day at midnight (pandas writes dates so) is that day; any other time, say a local midnight stored as
        # the UTC instant before it, would be taken as the wrong day, or several hours as one day repeated.
        if value.timetz().replace(tzinfo=None) != datetime.min.time():
            problems.append(f"date {value.isoformat(sep=' ')} has a time of day; outcomes are daily: give each "
                            "row's local day (YYYY-MM-DD, or a Parquet date column)")
            return None
        day = value.date()
    elif isinstance(value, date):
        day = value
    elif _blank(value):
        problems.append("date is empty")
        return None
    else:
        try:
            day = parse_day(str(value).strip(PADDING))
        except ValueError:
            problems.append(f"date {value!r} is not a date (YYYY-MM-DD)")
            return None
    # A mistyped year (2204 for 2024) would make calibration's latest window that day's, empty of every other
    # outcome: drift would go unchecked without a word. A day ahead of UTC is allowed for time zones east of it.
    if day > datetime.now(timezone.utc).date() + timedelta(days=1):
        problems.append(f"date {day.isoformat()} is in the future; outcomes are of days already run")
        return None
    return day


def _parse_count(name: str, value: Any, required: bool, problems: list[str]) -> int | None:
    if _blank(value):
        if required:
            problems.append(f"{name} is empty")
        return None
    if isinstance(value, bool):  # a Parquet boolean column would otherwise count True as 1
        problems.append(f"{name} {value!r} is a boolean, not a count")
        return None
    try:
        number = _whole(value)
    except (TypeError, ValueError):
        problems.append(f"{name} {value!r} is not a number")
        return None
    if number is None:
        problems.append(f"{name} {value!r} is not a whole number")
        return None
    if number < 0:
        problems.append(f"{name} {value!r} is negative")
        return None
    if number > MAX_COUNT:
        problems.append(f"{name} {value!r} is above {MAX_COUNT} (2^63-1), the largest count a store holds")
        return None
    return number


def _whole(value: Any) -> int | None:
    """``value`` as an exact int (None when it is not whole).  Text goes through Decimal, not a float that would
    round counts above 2^53 and fractions within 1e-16 of a whole number (1.0000000000000001, 1e-400)."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = _number_text(value)
        try:
            number = decimal.Decimal(text)
        except decimal.InvalidOperation:  # an exponent beyond Decimal's own range: far above or below any count
            mantissa, _, exponent = text.lower().partition("e")
            if not mantissa.strip("+-0."):  # 0e99999999999999999999 is still zero
                return 0
            return None if "-" in exponent else MAX_COUNT + 1
    elif isinstance(value, decimal.Decimal):  # a Parquet decimal column
        number = value
    else:
        number = decimal.Decimal(float(value))  # a Parquet float: exactly the binary value it holds
    if not number.is_finite() or number != number.to_integral_value():
        return None
    if number.is_zero():  # 0e21: its exponent alone would count as a huge number below
        return 0
    # 1e999999 is whole, but int() of it would build a million digits: anything that long is over MAX_COUNT anyway
    return int(number) if number.adjusted() <= 20 else MAX_COUNT + 1


def _number_text(text: str) -> str:
    """``text`` without its padding, or ValueError when it is not a number in the form of :data:`NUMBER`."""
    text = text.strip(PADDING)
    if not NUMBER.fullmatch(text):
        raise ValueError(text)
    return text


def _parse_spend(value: Any, problems: list[str]) -> float | None:
    if _blank(value):
        return None
    try:
        number = float(_number_text(value)) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        problems.append(f"spend {value!r} is not a number")
        return None
    if not math.isfinite(number) or number < 0:
        problems.append(f"spend {value!r} must be a finite number >= 0")
        return None
    return number
