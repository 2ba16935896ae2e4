"""Real-browser fixtures: the app served over HTTP in a thread, Debian chromium via Playwright.

The live server uses its own SQLite file with real commits (the browser is another client),
so these tests build their data through ``live_db`` and never share the rollback session.
Chromium missing is a skip on a laptop and a failure in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading

import pytest
from werkzeug.serving import make_server

from qcwx.extensions import db
from tests.fixtures.app import IN_CI, make_test_app

CHROMIUM = os.environ.get("QCWX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--no-first-run"]
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_app(tmp_path_factory):
    """An app on its own SQLite file, CSRF on (as in production).

    One database serves the whole session, so it collects the worlds of several test
    modules, each its own region tree on the same QC lots. Pooling trees (the product
    default) would mix them and a page's numbers would depend on which modules ran first;
    like the rest of the suite (tests/conftest.py) the live app keeps trees apart.
    """
    path = tmp_path_factory.mktemp("live") / "live.sqlite3"
    return make_test_app(f"sqlite:///{path}", WTF_CSRF_ENABLED=True, PEER_POOL_TREES=False)


@pytest.fixture(scope="session")
def live_server(live_app):
    """Serve ``live_app`` on 127.0.0.1 in a background thread; yields the base URL."""
    port = free_port()
    server = make_server("127.0.0.1", port, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture
def live_db(live_app):
    """An app context on the live server's database; data committed here is visible to it."""
    with live_app.app_context():
        yield db.session
        db.session.remove()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium (never a downloaded browser)."""
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail(f"chromium is required in CI but {CHROMIUM} is missing")
        pytest.skip("Debian chromium not installed (apt-get install chromium fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def phone(browser):
    """A fresh phone-sized browser context (390×844, zh-CN) and its page; console errors kept."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                                  is_mobile=True, has_touch=True)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    context.close()


def login_in_browser(page, base_url: str, username: str, password: str) -> None:
    """Log in through the real form."""
    page.goto(f"{base_url}/login?password=1")  # inside WeChat, /login alone goes to OAuth
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
