"""Hostile names for the pages foveal writes, and the two checks that they stayed text: the markup read by
``html.parser``, and the page itself in headless Chromium (tests/page_harness.py)."""
from __future__ import annotations

import contextlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator, Sequence

#: Each sets ``window.__pwned`` if it ever runs; each is a valid element name, segment name or creative id.
PAYLOADS: tuple[str, ...] = (
    '<script>window.__pwned="script"</script>',
    '"><img src=x onerror=window.__pwned="img">',
    "'><svg onload=window.__pwned='svg'>",
    '</textarea></title></style><img src=x onerror=window.__pwned="closer">',
    'javascript:window.__pwned="url"',
    '</script><!--<script>window.__pwned="comment"</script>',
    "&amp;lt;b&amp;gt; &lt;i&gt; $title ${meta}",
)
#: A file name (no slash) that breaks out of an attribute or a tag if it is not escaped.
FILE_NAME = "\"'><img src=x onerror=window.__pwned=\"file\">.png"

#: Inline script appended to the page: it runs unless the page's Content-Security-Policy forbids inline script.
PROBE = """const s = document.createElement('script'); s.textContent = 'window.__probe = 1';
document.head.append(s); return window.__probe === undefined ? null : window.__probe;"""


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_only_text(page: str, payloads: Sequence[str], images: int) -> None:
    """``page`` holds each payload as text, and no markup of its own: no script, no event handler, no URL that is
    not embedded, exactly ``images`` images."""
    markup = _Markup()
    markup.feed(page)
    markup.close()
    text = "".join(markup.text)
    assert [p for p in payloads if p not in text] == []
    assert not [tag for tag, _ in markup.tags if tag in ("script", "iframe", "object", "embed", "base", "form")]
    assert not [(tag, a) for tag, attrs in markup.tags for a in attrs if a.startswith("on")]
    urls = [v or "" for _, attrs in markup.tags for a, v in attrs.items() if a in ("src", "href", "action")]
    assert all(u.startswith("data:") for u in urls), urls
    assert sum(tag == "img" for tag, _ in markup.tags) == images


def assert_inert_in_browser(driver: Any, payloads: Sequence[str], images: int) -> None:
    """The page ``driver`` shows ran none of the payloads, shows each as text, loaded its ``images`` embedded
    images, and forbids inline script (its policy, not only its escaping, stops a payload)."""
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return document.querySelectorAll("
                                 "'script, iframe, [onerror], [onload], img:not([src^=\"data:\"])').length") == 0
    text = driver.execute_script("return document.documentElement.textContent")
    assert [p for p in payloads if p not in text] == []
    assert driver.execute_script("return [...document.images].filter((i) => i.complete && i.naturalWidth > 0)"
                                 ".length") == images
    assert driver.execute_script(PROBE) is None, "the page's Content-Security-Policy lets inline script run"


@contextlib.contextmanager
def written_page_checked(path: Path, payloads: Sequence[str], images: int) -> Iterator[Any]:
    """Both checks on a page foveal wrote to ``path``: its markup, then the page in Chromium (the test skips there
    when no browser is installed); yields the driver for the caller's own checks on the page."""
    import pytest

    from tests.page_harness import browser_missing, chromium

    assert_only_text(path.read_text(encoding="utf-8"), payloads, images)
    if (missing := browser_missing()) is not None:
        pytest.skip(f"the browser half needs a browser: {missing}")
    driver = chromium()
    try:
        driver.get(path.as_uri())
        assert_inert_in_browser(driver, payloads, images)
        yield driver
    finally:
        driver.quit()
