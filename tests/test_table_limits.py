"""Tables a user gives (a batch's creatives, an outcomes file) are held to foveal's limits before their data is read.

A Parquet file of a few MB can stand for any number of GB: a column of one long text repeated (dictionary-encoded,
so small on disk and in the footer), millions of rows of one value. Each bomb is read in a subprocess whose address
space is capped at 3 GiB, and its peak memory (VmHWM) is measured: it must be refused with one line, in far less
than the GBs it stands for. Legitimate tables larger than a batch of pages still read whole.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import foveal
from foveal.batch import read_inputs
from foveal.errors import InputError
from foveal.fileio import MAX_TABLE_BYTES, MAX_TABLE_ROWS
from foveal.store.outcomes import read_outcomes

FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [FOVEAL_PATH, os.environ.get("PYTHONPATH")])),
       "OPENBLAS_NUM_THREADS": "1"}
#: The address space each reading subprocess may take: far below what a bomb unpacks to.
CAP = 3 << 30
#: What reading a refused bomb may take at its peak (the interpreter, numpy and pyarrow take about 150 MB).
PEAK_MB = 500
READ = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from foveal.errors import FovealError
from foveal.batch import read_inputs
from foveal.store.outcomes import read_outcomes
try:
    path = Path(sys.argv[2])
    result = {{"rows": len(read_inputs(path) if sys.argv[1] == "batch" else read_outcomes(path, {{}})[0])}}
except FovealError as exc:
    result = {{"error": str(exc)}}
except MemoryError:
    result = {{"error": "MemoryError"}}
# VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec (pytest's, gigabytes in a full run)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
result["peak_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(result))
"""
#: A text cell of 512 KiB (one character repeated: it compresses to almost nothing).
LONG = "a" * (512 << 10)


def read_in_subprocess(kind: str, path: Path) -> dict:
    """Read ``path`` as a batch table (``kind`` "batch") or an outcomes file ("outcomes") in a capped subprocess:
    its result (``rows`` or ``error``) and peak memory in MB."""
    proc = subprocess.run([sys.executable, "-c", READ.format(cap=CAP), kind, str(path)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def repeated_text(text: str, rows: int) -> pa.DictionaryArray:
    """``text`` in each of ``rows`` cells, as Parquet stores it: once in the dictionary, then an index a row."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([text]))


def write_bomb(path: Path, columns: dict[str, pa.Array]) -> Path:
    # The Arrow schema is not stored: a reader sees plain text columns, and would unpack every row's value.
    pq.write_table(pa.table(columns), path, compression="zstd", dictionary_pagesize_limit=4 << 20,
                   store_schema=False)
    return path


def outcome_columns(rows: int) -> dict[str, pa.Array]:
    return {"creative_id": pa.array([f"c{i % 500}" for i in range(rows)]), "date": pa.array(["2024-03-01"] * rows),
            "impressions": pa.array([1000] * rows), "clicks": pa.array([10] * rows),
            "source": pa.array([f"s{i}" for i in range(rows)])}


@pytest.mark.parametrize("kind", ["batch", "outcomes"])
def test_a_column_of_one_long_text_repeated_is_refused_before_it_unpacks(tmp_path, kind):
    """5,000 cells of the same 512 KiB: 2.5 GiB once read, 80 KB on disk, and its footer names 0.5 MiB."""
    rows = 5000
    column = "image" if kind == "batch" else "source"
    columns = {"creative_id": pa.array([f"c{i}" for i in range(rows)])} if kind == "batch" else outcome_columns(rows)
    bomb = write_bomb(tmp_path / "bomb.parquet", {**columns, column: repeated_text(LONG, rows)})
    assert bomb.stat().st_size < 1 << 20 and rows * len(LONG) > 2 * MAX_TABLE_BYTES
    got = read_in_subprocess(kind, bomb)
    said = f"{bomb}: its data unpacks to more than the 1,024 MiB foveal reads from one table; split it"
    assert got.get("error", "").startswith(said), got
    assert "\n" not in got["error"] and got["peak_mb"] < PEAK_MB, got


@pytest.mark.parametrize("kind", ["batch", "outcomes"])
def test_millions_of_rows_are_refused_from_the_footer(tmp_path, kind):
    """More rows than MAX_TABLE_ROWS, of one short value each: refused on the footer's row count, no data read."""
    rows = MAX_TABLE_ROWS + 1
    columns = ({"image": repeated_text("x.png", rows)} if kind == "batch" else
               {"creative_id": repeated_text("c1", rows), "date": repeated_text("2024-03-01", rows),
                "impressions": pa.array(np.ones(rows, np.int64)), "clicks": pa.array(np.ones(rows, np.int64))})
    bomb = write_bomb(tmp_path / "rows.parquet", columns)
    got = read_in_subprocess(kind, bomb)
    said = f"{bomb}: {rows:,} rows, more than the {MAX_TABLE_ROWS:,} rows foveal reads from one table; split it"
    assert got.get("error", "").startswith(said) and got["peak_mb"] < PEAK_MB, got


def test_a_csv_of_millions_of_lines_is_refused_before_it_is_parsed(tmp_path):
    """6 MB of line breaks would be millions of rows (Python objects of some hundred bytes each)."""
    for name, header in (("batch.csv", "image\n"), ("outcomes.csv", "creative_id,date,impressions,clicks\n")):
        path = tmp_path / name
        path.write_text(header + "x\n" * (MAX_TABLE_ROWS + 1))
        got = read_in_subprocess("batch" if name == "batch.csv" else "outcomes", path)
        assert f"more than {MAX_TABLE_ROWS:,} lines" in got.get("error", ""), got
        assert got["peak_mb"] < PEAK_MB, got


def test_text_tables_larger_than_the_byte_limit_are_refused_unread(tmp_path):
    """A sparse file: its size is over the limit, and nothing of it is read (it would be all zero bytes)."""
    for name in ("batch.csv", "outcomes.csv", "list.txt"):
        path = tmp_path / name
        with path.open("wb") as fh:
            fh.truncate(MAX_TABLE_BYTES + 1)
        with pytest.raises(InputError, match=r"MiB, more than the 1,024 MiB foveal reads from one table; split it"):
            if name == "outcomes.csv":
                read_outcomes(path, {})
            else:
                read_inputs(path)


def test_an_outcomes_cell_with_a_unicode_line_separator_stays_one_cell(tmp_path):
    """Lines were cut with str.splitlines, which also ends one at U+2028 (and form feeds...): a list of millions
    from a small file of them, and a row cut in two where a cell holds one."""
    path = tmp_path / "o.csv"
    path.write_text("creative_id,date,impressions,clicks,source\nc1,2024-03-01,100,5,a\u2028b\n", encoding="utf-8")
    rows, errors = read_outcomes(path, {})
    assert errors == [] and [r["source"] for r in rows] == ["a\u2028b"]


def test_a_nested_column_is_refused_with_what_to_write(tmp_path):
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"image": pa.array([["a.png"], ["b.png"]])}), path)
    with pytest.raises(InputError, match=r"column 'image' holds list<element: string> values; .* write that column"):
        read_inputs(path)


def test_large_legitimate_tables_read_whole(tmp_path):
    """Several row groups and decoding batches, dictionary-encoded and plain columns, an unused column too large
    to read (it is not read): every row comes back as written."""
    rows = 200_000
    table = pa.table({"creative_id": pa.array([f"c{i:06d}" for i in range(rows)]),
                      "image": pa.array([f"img/{i % 1000}.png" for i in range(rows)]),
                      "notes": repeated_text(LONG, rows)})  # 100 GiB unpacked; not a batch column
    path = tmp_path / "batch.parquet"
    pq.write_table(table, path, row_group_size=70_000, dictionary_pagesize_limit=4 << 20)
    items = read_inputs(path)
    assert len(items) == rows and items[123_456].creative_id == "c123456"
    assert items[123_456].image == str(tmp_path / "img" / "456.png")
    outcomes = tmp_path / "outcomes.parquet"
    pq.write_table(pa.table({**outcome_columns(80_000), "notes": repeated_text(LONG, 80_000)}), outcomes,
                   row_group_size=30_000, dictionary_pagesize_limit=4 << 20)
    got, errors = read_outcomes(outcomes, {})
    assert errors == [] and len(got) == 80_000 and got[-1]["source"] == "s79999" and got[-1]["line"] == "row 80000"
