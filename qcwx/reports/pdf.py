"""Print a report page to PDF with headless Debian Chromium (Playwright), cached per content.

The HTML is the page itself (the same body template), loaded under a fake origin
(:data:`ORIGIN`): ``/static/…`` is served from the app's static folder and every other
request is aborted, so printing never touches the network. The page is laid out in print
media at the A4 printable width; ``static/js/charts.js`` then draws the charts without
animation and sets ``window.qcwxChartsDone``, and printing waits until every
``div.qc-chart`` holds a drawn, non-blank canvas. Each page gets the report's title as a
header and ``第 X / Y 页`` as a footer.

The browser is Debian's ``chromium`` (``QCWX_CHROMIUM_PATH``), never a downloaded one.
"""

from __future__ import annotations

import html as html_lib
import logging
import mimetypes
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flask import current_app, has_app_context

log = logging.getLogger(__name__)

#: The fake origin the page is loaded under; nothing is ever fetched from it.
ORIGIN = "http://qcwx.pdf"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Page margins; the left and right ones also fix the layout width below.
MARGIN = {"top": "16mm", "bottom": "16mm", "left": "12mm", "right": "12mm"}
#: The A4 printable width (210 mm − 24 mm) in CSS pixels: charts are drawn at the width
#: they are printed at, so none is cut off or rescaled.
VIEWPORT = {"width": 703, "height": 1000}
CHART_TIMEOUT_MS = 20_000
NAVIGATION_TIMEOUT_MS = 30_000
_FONT = "font-family:'Noto Sans CJK SC','Noto Sans SC',sans-serif;font-size:8px;color:#666;"
FOOTER_TEMPLATE = (f'<div style="{_FONT}width:100%;text-align:center;">第 '
                   '<span class="pageNumber"></span> / <span class="totalPages"></span> 页</div>')
_HEADER_TEMPLATE = f'<div style="{_FONT}width:100%;padding:0 12mm;text-align:right;">{{}}</div>'
_FINGERPRINT = re.compile(r"^[0-9a-f]{8,64}$")

#: True once every chart of the page is drawn (charts.js sets ``qcwxChartsDone``) and each
#: ``div.qc-chart`` has a canvas with at least one painted pixel.
CHARTS_DRAWN_JS = """() => {
  const divs = Array.from(document.querySelectorAll('div.qc-chart'));
  if (divs.length === 0) { return true; }
  if (!window.qcwxChartsDone) { return false; }
  return divs.every((div) => Array.from(div.querySelectorAll('canvas')).some((canvas) => {
    if (!canvas.width || !canvas.height) { return false; }
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) { return true; } }
    return false;
  }));
}"""


class PdfError(RuntimeError):
    """Chromium could not print the page (missing browser, charts never drawn, …)."""


def html_to_pdf(html: str, *, static_dir: Path, footer_title: str,
                executable: str | None = None) -> bytes:
    """Return ``html`` printed to A4 PDF bytes by headless Chromium.

    ``static_dir`` serves ``/static/…``; ``footer_title`` is the running title printed on
    every page (with ``第 X / Y 页``). ``executable`` defaults to ``QCWX_CHROMIUM_PATH``.

    Raises
    ------
    PdfError
        When Chromium is missing, the page does not load, or its charts are not drawn.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    executable = executable or chromium_path()
    if not Path(executable).exists():
        raise PdfError(f"chromium not found at {executable} (set QCWX_CHROMIUM_PATH)")
    started = time.monotonic()

    def run() -> bytes:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                                 args=LAUNCH_ARGS)
            try:
                return _print(browser, html, Path(static_dir), footer_title)
            finally:
                browser.close()

    # Playwright's sync API refuses a thread that already runs an asyncio loop (a caller
    # driving its own Playwright, an async worker): print on a thread of our own.
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qcwx-pdf") as pool:
            data = pool.submit(run).result()
    except PlaywrightError as exc:
        raise PdfError(f"chromium could not print the report: {exc}") from exc
    log.info("printed a PDF of %s bytes in %.2f s", len(data), time.monotonic() - started)
    return data


def chromium_path() -> str:
    """Return the Chromium executable: the app's ``CHROMIUM_PATH``, else the default."""
    if has_app_context() and current_app.config.get("CHROMIUM_PATH"):
        return current_app.config["CHROMIUM_PATH"]
    from qcwx.config import default_chromium_path

    return default_chromium_path()


def _print(browser, html: str, static_dir: Path, footer_title: str) -> bytes:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
    try:
        page = context.new_page()
        page.set_default_timeout(NAVIGATION_TIMEOUT_MS)
        page.route("**/*", lambda route: _serve(route, html, static_dir))
        page.emulate_media(media="print")
        page.goto(f"{ORIGIN}/", wait_until="load")
        _wait_for_charts(page)
        return page.pdf(format="A4", print_background=True, display_header_footer=True,
                        header_template=_HEADER_TEMPLATE.format(html_lib.escape(footer_title)),
                        footer_template=FOOTER_TEMPLATE, margin=MARGIN)
    finally:
        context.close()


def _wait_for_charts(page) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate("() => document.fonts.ready.then(() => true)")
    try:
        page.wait_for_function(CHARTS_DRAWN_JS, timeout=CHART_TIMEOUT_MS, polling=100)
    except PlaywrightTimeout as exc:
        raise PdfError("the report's charts were not drawn (ECharts or charts.js missing?)"
                       ) from exc


def _serve(route, html: str, static_dir: Path) -> None:
    """Answer the page itself and ``/static/…`` from disk; abort everything else."""
    url = urlsplit(route.request.url)
    if f"{url.scheme}://{url.netloc}" == ORIGIN and url.path == "/":
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
        return
    file = static_file(static_dir, url.path) if url.scheme in ("http", "https") else None
    if file is None:
        log.debug("PDF page request blocked: %s", route.request.url)
        route.abort("blockedbyclient")
        return
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    route.fulfill(status=200, content_type=content_type, body=file.read_bytes())


def static_file(static_dir: Path, url_path: str) -> Path | None:
    """Return the file under ``static_dir`` that ``/static/<name>`` names, or None.

    Any host is accepted (an absolute static URL still prints offline), but never a path
    outside ``static_dir``.
    """
    if not url_path.startswith("/static/"):
        return None
    root = static_dir.resolve()
    candidate = (root / unquote(url_path[len("/static/"):])).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


# -- the cache ---------------------------------------------------------------------------
def pdf_path(fingerprint: str) -> Path:
    """Return where the PDF of a report with this fingerprint is cached (instance folder)."""
    if not _FINGERPRINT.match(fingerprint or ""):
        raise ValueError(f"not a report fingerprint: {fingerprint!r}")
    return Path(current_app.instance_path) / "reports" / f"{fingerprint}.pdf"


def write_pdf(html: str, fingerprint: str, footer_title: str) -> Path:
    """Print ``html`` into the cache as ``<fingerprint>.pdf`` and return its path.

    Idempotent: a cached file is returned as it is. The file appears atomically (written
    beside it, then ``os.replace``), so a reader never sees half a PDF.
    """
    path = pdf_path(fingerprint)
    if path.exists():
        return path
    data = html_to_pdf(html, static_dir=Path(current_app.static_folder),
                       footer_title=footer_title)
    write_atomically(path, data)
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
