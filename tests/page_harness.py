"""The real page in a real browser: the foveal service on a loopback port (uvicorn in a thread) and headless
Debian Chromium driven by Selenium.  Used by tests/test_page.py and benchmarks/test_bench_page.py."""
from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "python" / "foveal" / "serve" / "static"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def browser_missing() -> str | None:
    """Why the page cannot be tested here, or None when Chromium, chromedriver and Selenium are all present."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not any(shutil.which(name) for name in CHROMIUM):
        return "no Chromium browser installed (apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


@contextlib.contextmanager
def running_service(**config: Any) -> Iterator[str]:
    """Start ``foveal.serve.create_app(**config)`` on a free 127.0.0.1 port; yield its base URL; stop it."""
    import uvicorn

    from foveal.serve import create_app

    app = create_app(static_dir=str(STATIC), **config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the foveal service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def open_page(driver, url: str) -> None:
    """Open the page at ``url`` as a first visit: what an earlier page of that origin kept in the browser (its
    boxes and last creative, in IndexedDB) is cleared first, with no page of it open to write more."""
    driver.get("about:blank")
    driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": url, "storageTypes": "indexeddb"})
    driver.get(url + "/")


def chromium(download_dir: Path | None = None, size: tuple[int, int] = (1280, 800)):
    """A headless Chromium WebDriver with the window at ``size`` and downloads going to ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={size[0]},{size[1]}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    binary = next(shutil.which(name) for name in CHROMIUM if shutil.which(name))
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if download_dir is not None:
        # A person clicking several download buttons is asked once to allow multiple downloads; here, allowed.
        options.add_experimental_option("prefs", {
            "download.default_directory": str(download_dir), "download.prompt_for_download": False,
            "profile.default_content_setting_values.automatic_downloads": 1})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
