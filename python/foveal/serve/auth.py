"""Optional API keys: a file of keys, one per line, compared in constant time."""
from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Iterable

from ..errors import InputError, ServiceError

_GENERATE = 'generate them with `python -c "import secrets; print(secrets.token_urlsafe(32))"`'


def load_keys(path: str | os.PathLike) -> tuple[str, ...]:
    """Keys from a file: one per line; blank lines and ``#`` comments ignored; at least one key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"API key file {os.fspath(path)}: cannot read it ({exc})") from None
    keys = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        raise InputError(f"API key file {os.fspath(path)} holds no key; put one key per line")
    short = [k for k in keys if len(k) < 16]
    if short:
        raise InputError(f"API key file {os.fspath(path)}: keys must be at least 16 characters (one has "
                         f"{len(short[0])}); {_GENERATE}")
    if not all(k.isascii() and k.isprintable() for k in keys):  # headers arrive as Latin-1; foveal.Client refuses
        raise InputError(f"API key file {os.fspath(path)}: keys must be printable ASCII (one is not), as clients send "
                         f"them in an HTTP header; {_GENERATE}")
    return keys


class KeyChecker:
    """Checks a request's key against every configured key without an early exit, on fixed-length digests, so
    the time taken says nothing about how much of a key matched or which key it was."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(hashlib.sha256(k.encode("utf-8")).digest() for k in keys)

    def check(self, presented: str | None, scheme: str | None = None) -> None:
        """``presented``: the request's key, if any; ``scheme``: its Authorization header's scheme when that is not
        Bearer (a key sent as Basic was told a key is required, as if none had been sent)."""
        if not presented:
            hint = f" (this request's Authorization header uses {scheme[:20]!r}, not Bearer)" if scheme else ""
            raise ServiceError("an API key is required: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
                               f"{hint}", status=401, code="unauthorized")
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        match = False
        for known in self._digests:
            match |= hmac.compare_digest(digest, known)
        if not match:
            raise ServiceError("the API key is not valid for this service; send one of its keys (ask its operator "
                               "for one)", status=403, code="forbidden")


def other_scheme(headers) -> str | None:
    """The scheme of the request's Authorization header when it is not Bearer (Basic, Token...), else None."""
    scheme = (headers.get("authorization") or "").partition(" ")[0]
    return scheme if scheme and scheme.lower() != "bearer" else None


def presented_key(headers) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key else None
