"""Reading the small text files scoring takes (element files, norms) without trusting them.

Files go through :func:`foveal.fileio.read_input` (regular files only: a FIFO would block forever, a device never
end; at most ``max_bytes``; remembered as the command's inputs, so no output may replace them), text must be UTF-8, and JSON that Python's parser refuses for its own reasons (integers over 4,300 digits,
nesting deep enough to exhaust the recursion limit) is reported like malformed JSON.  Every failure is a
:class:`~foveal.errors.InputError` (or the ``error`` subclass given) with a one-line message.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import checked_path, read_input


def read_text(path: str | Path, what: str, max_bytes: int, error: type[InputError] = InputError,
              missing_hint: str = "") -> str:
    """The UTF-8 text of ``path`` (a leading BOM dropped); ``what`` names the file in messages, ``missing_hint``
    follows "not found"."""
    path = Path(checked_path(path, what, error))
    if not path.exists():
        raise error(f"{path}: {what} not found{missing_hint}")
    data = read_input(path, max_bytes, what, error)  # regular files only, bounded, and protected from overwriting
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def parse_json(text: str, source: str, error: type[InputError] = InputError) -> Any:
    """``json.loads`` with every refusal as ``error``; a leading byte order mark is dropped, as files' are."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise error(f"{source}: expected JSON text, got {type(text).__name__}")
    if isinstance(text, str):
        text = text.removeprefix("\ufeff")  # text sent whole (a form field, a string) keeps an editor's BOM
    try:
        return json.loads(text, object_pairs_hook=_once_each)
    except _KeyTwice as twice:
        raise error(f"{source}: the key {twice.key[:60]!r} is given twice in one JSON object (JSON keeps the last "
                    "without a word); give it once") from None
    except json.JSONDecodeError as exc:
        raise error(f"{source}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise error(f"{source}: JSON nested too deeply to be a foveal file") from None
    except ValueError as exc:
        if "digits" in str(exc):  # Python's limit on converting long integers
            raise error(f"{source}: a number in the JSON has more than 4,300 digits; no foveal file needs one") \
                from None
        raise error(f"{source}: unreadable JSON ({str(exc)[:120]})") from None


class _KeyTwice(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict, refusing a key given twice (an element's "box" twice, the first silently dropped)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _KeyTwice(key)
            seen.add(key)
    return obj
