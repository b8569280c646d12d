"""A page folder served on 127.0.0.1 and opened in Debian's headless Chromium through selenium: what
tests/test_web_page.py and benchmarks/bench_web.py share.

``missing()`` says what is absent (Chromium, its driver, selenium, onnxruntime-web's npm files), None when
all is there. ``serving(folder)`` serves a folder from a thread (http.server, .mjs as JavaScript and .wasm as
application/wasm, as the page needs) and yields its URL; ``chromium()`` yields a headless driver; ``open_page``
loads a URL and ``wait_for`` waits until the page's ``window.arPage.state`` (the body's data-state) is one
of ``until``, returning ``window.arPage``.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"


def missing() -> str | None:
    """What the browser tests need and this machine lacks, in one line, or None."""
    from arexport.webpage import ORT_FILES, ORT_WEB_DIST, WEB_SOURCES

    lacks = [f"{name} (Debian's {package})" for name, package in (
        (CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")) if not shutil.which(name)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        lacks.append("selenium (pip install -e '.[web]')")
    if not all((ORT_WEB_DIST / name).is_file() for name in ORT_FILES):
        lacks.append(f"onnxruntime-web (npm ci --prefix {WEB_SOURCES})")
    return f"the browser test needs {', '.join(lacks)}" if lacks else None


class _Handler(http.server.SimpleHTTPRequestHandler):
    # Chromium refuses a module script served with a non-JavaScript type and compiles wasm by streaming only
    # from application/wasm; said here rather than trusting the platform's mime.types.
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """``folder`` served on 127.0.0.1 at a free port from a thread -> its URL (ending in '/')."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 900):
    """A headless Chromium driven by selenium through Debian's chromedriver, with a fresh profile (nothing
    cached), quit on exit; its profile and the singleton files it puts in $TMP live in one temporary folder,
    removed after it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="ar-chromium-") as scratch:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which(CHROMIUM)
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--disable-extensions", f"--window-size={width},{height}",
                         f"--user-data-dir={scratch}/profile", "--autoplay-policy=no-user-gesture-required"):
            options.add_argument(argument)
        service = Service(shutil.which(CHROMEDRIVER), env={**os.environ, "TMPDIR": scratch})
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()


def open_page(driver, url: str, until=("done", "error"), timeout: float = 300.0) -> dict:
    """Load ``url`` and wait until the page's state is one of ``until`` (``wait_for``) -> ``window.arPage``."""
    driver.get(url)
    return wait_for(driver, until, timeout)


def wait_for(driver, until=("done", "error"), timeout: float = 300.0) -> dict:
    """Wait until the page's state is one of ``until`` -> ``window.arPage``, with ``state`` and ``error`` taken
    from the body and the error box (so they are there when page.mjs never ran). TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        page = driver.execute_script(
            "const p = window.arPage || {}; const box = document.getElementById('error');"
            "return Object.assign({}, p, {state: document.body.dataset.state,"
            " error: box && !box.hidden ? box.textContent : (p.error ?? null)});")
        if page["state"] in until:
            return page
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page at {driver.current_url} stayed {page['state']!r} for {timeout:.0f} s")
        time.sleep(0.1)
