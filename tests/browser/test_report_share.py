"""The reports issue's acceptance walk, in Debian chromium at 390×844 with a WeChat user agent.

A supervisor opens the evaluation report from the WeChat menu's target, shares it; the link
opened in a fresh browser context (nobody logged in) draws every chart with no console error
and configures the share card through the JS-SDK (the real /wechat/jssdk/config, signed with
a ticket from the fake WeChat); expired, revoked and tampered links show the Chinese page and
no data; the PDF carries every chart; the Excel numbers equal the page's.

The server runs on a free (non-default) port with its own SQLite file and CSRF on.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from qcwx.extensions import db
from tests import factories as f
from tests.browser.conftest import PHONE, free_port, login_in_browser
from tests.factories import PASSWORD
from tests.fixtures.app import make_test_app
from tests.fixtures.wechat import WECHAT_SETTINGS
from tests.peer.conftest import build_peer_world

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("QCWX_SCREENSHOTS", "/tmp/qcwx-shots"))
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) "
             "NetType/WIFI Language/zh_CN")
# WeChat's JS bridge does not exist in a plain browser: a stand-in records what the page asks.
FAKE_WX = """
window.__wxCalls = [];
window.wx = {
  _ready: null,
  ready: function (fn) { this._ready = fn; },
  error: function (fn) {},
  config: function (c) { window.__wxCalls.push(['config', c]); var w = this;
                         setTimeout(function () { w._ready && w._ready(); }, 10); },
  updateAppMessageShareData: function (o) { window.__wxCalls.push(['appMessage', o]); },
  updateTimelineShareData: function (o) { window.__wxCalls.push(['timeline', o]); }
};
"""
# Every chart's canvas has pixels that are not background: it was really drawn.
DRAWN = """() => Array.from(document.querySelectorAll('.qc-chart')).map(div => {
  const c = div.querySelector('canvas');
  if (!c || !c.width || !c.height) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let inked = 0;
  for (let i = 0; i < d.length; i += 16) {
    if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200)) inked++;
  }
  return inked > 50;
})"""


@pytest.fixture(scope="module")
def share_server(tmp_path_factory, fake_wechat_server):
    """The app with the fake WeChat, served on a free port; yields (base URL, app)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = tmp_path_factory.mktemp("share") / "share.sqlite3"
    settings = {k: v for k, v in WECHAT_SETTINGS.items() if k != "BASE_URL"}
    app = make_test_app(f"sqlite:///{path}", WTF_CSRF_ENABLED=True, BASE_URL=base,
                        WECHAT_API_BASE=fake_wechat_server.url, **settings)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, app
    server.shutdown()


@pytest.fixture(scope="module")
def share_world(share_server):
    _base, app = share_server
    with app.app_context():
        w = build_peer_world()
        sup = f.user("supervisor", lab_=w.labs["r1"])
        facts = {"supervisor": sup.username, "lab": w.labs["r1"].id,
                 "lab_name": w.labs["r1"].full_name,
                 "others": [w.labs[n].hospital.name for n in w.labs if n != "r1"]
                 + [w.labs[n].code for n in w.labs if n != "r1"]}
        db.session.commit()
        db.session.remove()
    return facts


def _context(browser, **extra):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                                  is_mobile=True, has_touch=True, user_agent=WECHAT_UA,
                                  accept_downloads=True, **extra)
    context.add_init_script(FAKE_WX)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    return context, page


def _shot(page, name: str, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"report-{name}.png"), full_page=full_page)


def _share_from_menu(browser, base: str, facts: dict) -> str:
    """Log in as the supervisor, follow the menu's 我的报告, open and share the evaluation."""
    context, page = _context(browser)
    login_in_browser(page, base, facts["supervisor"], PASSWORD)
    page.goto(f"{base}/wechat/go/reports")  # where the menu lands after OAuth
    page.wait_for_url(f"{base}/reports/")
    page.click(f"#lab-{facts['lab']} a:has-text('质控评测报告')")
    page.wait_for_selector("#report")
    _shot(page, "evaluation-page")
    page.click("#share-btn")
    page.wait_for_selector("#share-url")
    _shot(page, "link-created")
    url = page.inner_text("#share-url").strip()
    assert page.console_errors == []
    context.close()
    assert url.startswith(base + "/r/")
    return url


def test_a_shared_evaluation_report_opens_anywhere_and_forwards_with_its_card(
        browser, share_server, share_world):
    base, app = share_server
    url = _share_from_menu(browser, base, share_world)

    context, page = _context(browser)  # a group member: no account, no cookies
    page.goto(url)
    page.wait_for_selector("#report")
    n_charts = page.locator(".qc-chart").count()
    assert n_charts >= 3
    page.wait_for_function(f"() => ({DRAWN})().filter(Boolean).length === {n_charts}",
                           timeout=15000)
    page.wait_for_function("() => document.documentElement.dataset.shareCard === 'configured'")
    calls = page.evaluate("window.__wxCalls")
    config = next(c[1] for c in calls if c[0] == "config")
    assert config["appId"] == WECHAT_SETTINGS["WECHAT_APPID"] and config["signature"]
    card = next(c[1] for c in calls if c[0] == "appMessage")
    assert share_world["lab_name"] in card["title"] and "质控评测报告" in card["title"]
    assert card["link"] == url and card["desc"] and card["imgUrl"].startswith(base + "/static/")
    assert any(c[0] == "timeline" for c in calls)
    # Style sheets and chart geometry are left out: SVG path data such as "1.06L10.938"
    # (WeUI's icons, the charts) holds a lab code like "L10" whatever the page shows; the
    # codes the factories hand out depend on how many labs earlier tests made.
    html = re.sub(r'<style[^>]*>.*?</style>|\s(?:d|points|transform)="[^"]*"', "",
                  page.content(), flags=re.S)
    for other in share_world["others"]:
        assert other not in html
    _shot(page, "shared", full_page=True)
    assert page.console_errors == []

    # Excel: every number of every table equals the page's cell.
    cells = page.evaluate("""() => Array.from(document.querySelectorAll('table[data-table]')).map(
        t => [t.dataset.table, Array.from(t.querySelectorAll('tbody tr')).map(
            tr => Array.from(tr.children).map(td => td.dataset.value ?? null))])""")
    with page.expect_download() as dl:
        page.click("#xlsx-link")
    _compare_excel(dl.value.path(), cells)

    # PDF: printed by Chromium in the (eager) task; every chart drawn on its pages.
    response = context.request.get(url + ".pdf", timeout=60000)
    assert response.status == 200 and response.body()[:4] == b"%PDF"
    _check_pdf(response.body(), n_charts)
    context.close()


def _compare_excel(path, cells) -> None:
    from openpyxl import load_workbook

    from qcwx.reports.excel import sheet_names

    # Playwright keeps downloads without their extension, which openpyxl refuses: read bytes.
    book = load_workbook(io.BytesIO(Path(path).read_bytes()), read_only=True, data_only=True)
    assert len(book.sheetnames) == len(cells) + 1  # 概要 first, then one sheet per table
    compared = 0
    for sheet_name, (_key, rows) in zip(book.sheetnames[1:], cells, strict=True):
        data = [r for r in book[sheet_name].iter_rows(values_only=True)]
        body = data[-len(rows):] if rows else []
        for page_row, xl_row in zip(rows, body, strict=True):
            for page_value, xl_value in zip(page_row, xl_row, strict=False):
                if page_value is not None:
                    assert xl_value == pytest.approx(float(page_value), rel=0, abs=1e-12)
                    compared += 1
    assert compared > 20
    assert sheet_names  # the exporter's own naming is what the sheets use


def _check_pdf(data: bytes, n_charts: int) -> None:
    if not shutil.which("pdfimages"):
        pytest.skip("poppler-utils (pdfimages) not installed")
    out = subprocess.run(["pdfimages", "-list", "-"], input=data, capture_output=True,
                         check=True).stdout.decode()
    images = [line for line in out.splitlines()[2:] if line.strip()]
    assert len(images) >= n_charts, out
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True,
                          check=True).stdout.decode()
    assert "质控评测报告" in text and re.search(r"第\s*1\s*/\s*\d+\s*页", text)


@pytest.mark.parametrize("how", ["expired", "revoked", "tampered"])
def test_an_ended_or_tampered_link_shows_the_chinese_page_and_no_data(
        browser, share_server, share_world, how):
    base, app = share_server
    with app.app_context():
        from qcwx.orgs.models import Lab
        from qcwx.reports import services
        from qcwx.timeutil import local_today, utcnow

        lab = db.session.get(Lab, share_world["lab"])
        created = services.share_report(None, lab, "dynamic", {
            "ts_ids": None, "period": {"kind": "this_month"}}, "7", local_today())
        if how == "expired":
            created.link.expires_at = utcnow() - timedelta(minutes=1)
        elif how == "revoked":
            created.link.revoked_at = utcnow()
        db.session.commit()
        db.session.remove()
    token = created.token if how != "tampered" else created.token[:-2] + "zz"
    context, page = _context(browser)
    response = page.goto(f"{base}/r/{token}")
    assert response.status == (404 if how == "tampered" else 410)
    text = page.inner_text("body")
    assert ("链接无效" if how == "tampered" else "链接已" if how == "expired" else "撤销") in text
    assert page.locator("#report, .qc-chart, table").count() == 0
    assert share_world["lab_name"] not in page.content()
    _shot(page, f"link-{how}")
    context.close()
