"""A headless Chromium for the browser tests and the screenshots: Debian's `chromium` and
`chromium-driver` packages (/usr/bin/chromium, /usr/bin/chromedriver), driven by Selenium
with the system chromedriver (Selenium never downloads a driver or a browser here).

require_browser() skips a test with the reason when any of the three is missing -- except
under CI=true, where that is a FAILURE (.ci/run installs them; CI must not go green by
skipping the browser tests)."""
from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import shutil
import tempfile
import threading
from typing import Iterator

from tests.support import in_ci

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
# flags that work in a container without a display, a GPU or a user namespace, and keep the
# browser from calling home (no update checks, sync, QUIC)
FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-dev-shm-usage', '--hide-scrollbars')


def missing() -> str | None:
    """Why a browser can't be started here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f'{path} not found (apt-get install -y chromium chromium-driver)'
    if importlib.util.find_spec('selenium') is None:
        return "the selenium package is not installed (pip install -e '.[test]')"
    return None


def require_browser() -> None:
    import pytest
    reason = missing()
    if reason:
        if in_ci():
            pytest.fail(f'{reason} (CI=true: the browser tests must run in CI)', pytrace=False)
        pytest.skip(reason)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator:
    """A Selenium driver for a fresh headless Chromium with an empty profile; console
    messages are kept (driver.get_log('browser'))."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix='localrunner-chromium-')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f'--user-data-dir={profile}')
    options.add_argument(f'--window-size={width},{height}')
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: str) -> Iterator[str]:
    """Serves `folder` over HTTP on 127.0.0.1 (a real origin: cookies and localStorage work,
    unlike file://); yields the base URL."""
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
