"""Scanning QC labels in a phone-sized Debian chromium: label → login → entry → verdict.

Also checks the printed sheet: an A4 rendering whose codes are at least 25 mm and decode
(cut out of the screenshot) to the exact label URL, and qcwxScan() both outside WeChat (photo
decoded on the server) and inside it (a stand-in ``wx`` object, as WeChat injects one).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import zxingcpp
from PIL import Image

from qcwx.extensions import db
from qcwx.iqc import targets
from qcwx.iqc.models import QcRun, Submission
from qcwx.labels import services
from qcwx.timeutil import local_today
from tests import factories as f
from tests.browser.conftest import PHONE, login_in_browser
from tests.factories import PASSWORD, build_world
from tests.integration.test_labels import photo_of

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("QCWX_SCREENSHOTS", "/tmp/qcwx-shots"))
SCAN_TO_VERDICT_BUDGET_S = 15.0
MM_PER_CSS_PX = 25.4 / 96
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323b) "
             "NetType/WIFI Language/zh_CN")
# What WeChat provides inside its browser: a ``wx`` whose scanner returns window.__nextScan.
FAKE_WX = """
window.__wxCalls = [];
window.__nextScan = null;
window.wx = {
  _ready: null, _error: null,
  ready: function (fn) { this._ready = fn; },
  error: function (fn) { this._error = fn; },
  config: function (c) { window.__wxCalls.push(['config', c]); var w = this;
                         setTimeout(function () { w._ready && w._ready(); }, 10); },
  scanQRCode: function (o) { window.__wxCalls.push(['scan', o]);
    setTimeout(function () {
      o.success({ errMsg: 'scanQRCode:ok', resultStr: window.__nextScan }); }, 30); }
};
"""


def shot(page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"labels-{name}.png"), full_page=full_page)


def _with_limits(supervisor, ts) -> None:
    for lv, (mean, sd) in zip(ts.levels, ((5.0, 0.2), (15.0, 0.5)), strict=True):
        targets.set_control_limit(supervisor, ts, lv, mean=mean, sd=sd, kind="fixed",
                                  effective_from=local_today() - timedelta(days=30),
                                  reason="说明书靶值")


@pytest.fixture
def label_world(live_db):
    """Lab A with two test systems (glucose, cholesterol) that have targets, and their labels."""
    world = build_world()
    first = world.systems["a"]
    second = f.test_system(world.lab_a, f.analyte("TC", "总胆固醇", "mmol/L"), f.qc_lot(2),
                           maker="Beckman", model="AU5800")
    for ts in (first, second):
        _with_limits(world.users["supervisor"], ts)
    live_db.commit()
    facts = {"ts1": first.id, "ts2": second.id, "lab": world.lab_a.id,
             "path1": f"/s/{services.make_token(first)}",
             "path2": f"/s/{services.make_token(second)}",
             "tech": world.users["technician"].username,
             "sup": world.users["supervisor"].username}
    live_db.close()  # end the read transaction so the server can write
    return facts


def _submission_channel(live_db, run_id: int) -> str:
    live_db.rollback()
    return live_db.scalar(db.select(Submission.channel).where(Submission.run_id == run_id))


def _fill_and_submit(page, v1: str, v2: str):
    page.fill("#level_1", v1)
    page.fill("#level_2", v2)
    page.click("#submit-btn")
    card = page.locator("#verdict")
    card.wait_for()
    return card


def test_label_scan_logs_in_and_reaches_a_verdict_fast(live_server, phone, label_world, live_db):
    w = label_world
    entry1 = re.compile(rf"{re.escape(live_server)}/ts/{w['ts1']}\?channel=scan$")

    # A fresh phone opens the label's URL: the login page, then straight back to the label.
    phone.goto(live_server + w["path1"])
    assert urlsplit(phone.url).path == "/login"
    assert parse_qs(urlsplit(phone.url).query)["next"] == [w["path1"]]
    assert "请先登录" in phone.inner_text("body")
    shot(phone, "login-from-label")
    phone.fill("#username", w["tech"])
    phone.fill("#password", PASSWORD)
    phone.click("button[type=submit]")
    phone.wait_for_url(entry1)
    assert phone.get_attribute("#entry-form", "data-api").endswith("?channel=scan")
    assert phone.locator("#scan-btn").is_visible()  # scan.js revealed it
    assert "葡萄糖" in phone.inner_text(".qc-tshead")
    shot(phone, "entry-from-scan")

    card = _fill_and_submit(phone, "5.05", "15.2")
    assert card.get_attribute("data-status") == "accept"
    assert "通过" in card.inner_text()
    shot(phone, "verdict-after-scan")
    live_db.rollback()
    run = live_db.scalars(db.select(QcRun).where(QcRun.test_system_id == w["ts1"])).one()
    assert _submission_channel(live_db, run.id) == "scan"
    live_db.close()

    # Already logged in: the second label, from opening its URL to the verdict card.
    started = time.perf_counter()
    phone.goto(live_server + w["path2"])
    phone.wait_for_url(re.compile(rf"/ts/{w['ts2']}\?channel=scan$"))
    card = _fill_and_submit(phone, "5.1", "14.9")
    elapsed = time.perf_counter() - started
    print(f"scan-to-verdict with a logged-in session: {elapsed:.2f} s")
    assert card.get_attribute("data-status") == "accept"
    assert elapsed < SCAN_TO_VERDICT_BUDGET_S
    live_db.rollback()
    run2 = live_db.scalars(db.select(QcRun).where(QcRun.test_system_id == w["ts2"])).one()
    assert _submission_channel(live_db, run2.id) == "scan"
    live_db.close()
    assert phone.console_errors == []


def test_scan_button_outside_wechat_decodes_a_photo_on_the_server(live_server, phone,
                                                                  label_world):
    w = label_world
    login_in_browser(phone, live_server, w["tech"], PASSWORD)
    phone.goto(f"{live_server}/ts/{w['ts1']}")
    button = phone.locator("#scan-btn")
    assert button.is_visible() and button.inner_text() == "扫描质控标签"

    # A photo of a code that is not ours: a Chinese message, and we stay on the page.
    with phone.expect_file_chooser() as chooser:
        button.click()
    assert chooser.value.element.get_attribute("accept") == "image/*"
    assert chooser.value.element.get_attribute("capture") == "environment"
    chooser.value.set_files(files=[{"name": "label.jpg", "mimeType": "image/jpeg",
                                    "buffer": photo_of("https://example.com/some/page")}])
    msg = phone.locator("#qcwx-scan-msg")
    msg.filter(has_text="不是本平台的质控标签").wait_for()
    shot(phone, "scan-foreign-code", full_page=False)
    assert phone.url.endswith(f"/ts/{w['ts1']}")

    # A hurried, rotated, blurred photo of the second label: its entry page, scan channel.
    with phone.expect_file_chooser() as chooser:
        button.click()
    chooser.value.set_files(files=[{"name": "label.jpg", "mimeType": "image/jpeg",
                                    "buffer": photo_of(live_server + w["path2"])}])
    phone.wait_for_url(re.compile(rf"/ts/{w['ts2']}\?channel=scan$"))
    assert phone.get_attribute("#entry-form", "data-api").endswith("?channel=scan")
    assert "总胆固醇" in phone.inner_text(".qc-tshead")
    # The decode answered 400 once (the foreign code); nothing else may have failed.
    assert [e for e in phone.console_errors if "400" not in e] == []


def test_scan_inside_wechat_uses_the_js_sdk_scanner(live_server, browser, label_world):
    w = label_world
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                                  is_mobile=True, has_touch=True, user_agent=WECHAT_UA)
    context.add_init_script(FAKE_WX)
    config_requests: list[str] = []

    def jssdk_config(route):
        config_requests.append(route.request.url)
        route.fulfill(status=200, content_type="application/json", body=json.dumps({
            "appId": "wx_dev_appid", "timestamp": 1767225600, "nonceStr": "n0nce",
            "signature": "0" * 40, "jsApiList": ["scanQRCode"]}))

    context.route("**/wechat/jssdk/config?*", jssdk_config)
    page = context.new_page()
    login_in_browser(page, live_server, w["tech"], PASSWORD)
    page.goto(f"{live_server}/ts/{w['ts1']}#top")
    page.wait_for_function("() => window.__wxCalls.length > 0")  # configured on load
    config = page.evaluate("window.__wxCalls[0]")
    assert config[0] == "config" and config[1]["appId"] == "wx_dev_appid"
    assert "scanQRCode" in config[1]["jsApiList"]
    assert parse_qs(urlsplit(config_requests[0]).query)["url"] == [
        f"{live_server}/ts/{w['ts1']}"]  # signed URL: the page without its #hash

    page.evaluate("u => { window.__nextScan = u; }", "https://evil.example.com/s/abc.def")
    page.click("#scan-btn")
    page.locator("#qcwx-scan-msg").filter(has_text="不是本平台的质控标签").wait_for()
    assert page.url.endswith(f"/ts/{w['ts1']}#top")

    page.evaluate("u => { window.__nextScan = u; }", live_server + w["path2"])
    page.click("#scan-btn")
    page.wait_for_url(re.compile(rf"/ts/{w['ts2']}\?channel=scan$"))
    shot(page, "entry-after-wechat-scan", full_page=False)
    context.close()


def test_scan_inside_wechat_without_jssdk_config_falls_back_to_a_photo(live_server, browser,
                                                                         label_world):
    w = label_world
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True,
                                  has_touch=True, user_agent=WECHAT_UA)
    context.add_init_script(FAKE_WX)
    context.route("**/wechat/jssdk/config?*", lambda route: route.fulfill(
        status=503, content_type="application/json", body='{"error": "微信服务暂不可用"}'))
    page = context.new_page()
    login_in_browser(page, live_server, w["tech"], PASSWORD)
    page.goto(f"{live_server}/scan")
    page.wait_for_load_state("networkidle")
    assert page.locator("#scan-btn").is_visible()
    shot(page, "scan-page", full_page=False)
    with page.expect_file_chooser() as chooser:
        page.click("#scan-btn")
    chooser.value.set_files(files=[{"name": "label.jpg", "mimeType": "image/jpeg",
                                    "buffer": photo_of(live_server + w["path1"])}])
    page.wait_for_url(re.compile(rf"/ts/{w['ts1']}\?channel=scan$"))
    assert page.evaluate("window.__wxCalls.filter(c => c[0] === 'scan').length") == 0
    context.close()


def test_label_sheet_prints_legibly_on_a4_and_its_codes_scan(live_server, live_app, browser,
                                                             phone, label_world, monkeypatch):
    w = label_world
    monkeypatch.setitem(live_app.config, "BASE_URL", live_server)  # labels point here
    scale = 3  # ~288 dpi: what a printer makes of the page, roughly
    context = browser.new_context(viewport={"width": 794, "height": 1123},
                                  device_scale_factor=scale, locale="zh-CN")
    page = context.new_page()
    login_in_browser(page, live_server, w["sup"], PASSWORD)
    page.goto(f"{live_server}/labs/{w['lab']}/labels")
    shot(page, "sheet-screen")
    page.emulate_media(media="print")
    sheet = page.locator(".lbl-page").first
    box = sheet.bounding_box()
    assert abs(box["width"] * MM_PER_CSS_PX - 210) < 0.5
    assert abs(box["height"] * MM_PER_CSS_PX - 297) < 0.5
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = sheet.screenshot(path=str(SHOTS / "labels-sheet-a4.png"))
    image = Image.open(io.BytesIO(png)).convert("L")

    labels = page.locator("article.lbl")
    assert labels.count() == 2
    with live_app.app_context():
        from qcwx.catalog.models import TestSystem
        expected = {ts_id: services.label_url(db.session.get(TestSystem, ts_id))
                    for ts_id in (w["ts1"], w["ts2"])}
        db.session.remove()
    for i in range(labels.count()):
        label = labels.nth(i)
        svg = label.locator(".lbl__qr svg")
        qr = svg.bounding_box()
        modules = int(svg.get_attribute("viewBox").split()[2])
        total_mm = qr["width"] * MM_PER_CSS_PX
        symbol_mm = total_mm * (modules - 2 * services.QUIET_ZONE) / modules
        assert symbol_mm >= 25.0, symbol_mm
        # Every printed line is inside its label (nothing cut off by the 54 mm cell).
        cell = label.bounding_box()
        lines = label.locator(".lbl__lab, .lbl__analyte, .lbl__line, .lbl__foot")
        assert lines.count() == 5
        for k in range(lines.count()):
            part = lines.nth(k).bounding_box()
            assert part["height"] > 0 and part["y"] >= cell["y"]
            assert part["y"] + part["height"] <= cell["y"] + cell["height"] + 0.5
        # Cut the code (with its quiet zone) out of the A4 screenshot and decode it.
        left, top = (qr["x"] - box["x"]) * scale, (qr["y"] - box["y"]) * scale
        crop = image.crop((int(left), int(top), int(left + qr["width"] * scale),
                           int(top + qr["height"] * scale)))
        texts = [b.text for b in zxingcpp.read_barcodes(crop)]
        ts_id = int(label.get_attribute("data-ts"))
        assert texts == [expected[ts_id]] == [label.get_attribute("data-url")]
        if i == 0:
            crop.save(SHOTS / "labels-sheet-qr-cutout.png")
            first_url = texts[0]

    pdf = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1
    context.close()

    # The decoded URL is a working label: a logged-in technician lands on its entry page.
    login_in_browser(phone, live_server, w["tech"], PASSWORD)
    phone.goto(first_url)
    phone.wait_for_url(re.compile(r"/ts/\d+\?channel=scan$"))
    phone.goto(f"{live_server}/labs/{w['lab']}/labels")
    shot(phone, "sheet-phone")


def test_full_sheet_spans_pages_of_twenty(live_server, browser, live_db):
    world = build_world()
    lot = f.qc_lot(2)
    for k in range(21):
        f.test_system(world.lab_b, f.analyte(f"A{k:02d}", f"项目{k:02d}", "U/L"), lot,
                      model=f"cobas c{k:03d}")
    live_db.commit()
    lab_id, sup = world.lab_b.id, f.user("supervisor", lab_=world.lab_b).username
    live_db.commit()
    live_db.close()
    context = browser.new_context(viewport={"width": 794, "height": 1123}, locale="zh-CN")
    page = context.new_page()
    login_in_browser(page, live_server, sup, PASSWORD)
    page.goto(f"{live_server}/labs/{lab_id}/labels")
    assert page.locator(".lbl-page").count() == 2
    assert page.locator(".lbl-page").nth(1).locator("article.lbl").count() == 2  # 22 - 20
    assert "第 2/2 页" in page.inner_text(".lbl-page >> nth=1")
    pdf = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 2
    page.emulate_media(media="print")
    shot(page, "sheet-full-print")
    context.close()


def test_regenerated_label_shows_the_reprint_page(live_server, browser, phone, label_world):
    w = label_world
    context = browser.new_context(viewport={"width": 1024, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    login_in_browser(page, live_server, w["sup"], PASSWORD)
    page.goto(f"{live_server}/labs/{w['lab']}/labels")
    page.click(f"#regenerate-{w['ts1']}")
    page.wait_for_selector(".lbl-flash")
    assert "请打印第 2 版新标签" in page.inner_text(".lbl-flash")
    assert "第 2 版" in page.inner_text(f"#ts-{w['ts1']}")
    context.close()

    login_in_browser(phone, live_server, w["tech"], PASSWORD)
    resp = phone.goto(live_server + w["path1"])
    assert resp.status == 410
    assert "标签已失效，请重新打印" in phone.inner_text("#label-revoked")
    shot(phone, "revoked")
