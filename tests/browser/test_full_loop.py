"""The out-of-control loop walked end to end on two phones (issue 13's acceptance walk).

A technician submits today's QC on the phone; level 1 at +3.6 SD fires 1-3s and the run is
rejected. The alert leaves through the outbox after the commit (eager Celery: the dispatch
task runs in-process) and reaches the supervisor's WeChat — the local fake WeChat, whose
development page ``/_fake/phone/<openid>`` shows what that user's phone received. Opening that
page makes the supervisor's browser that user's phone (the fake's phone cookie), so tapping
the message's link logs the supervisor in through WeChat OAuth, with no password, and lands
on the run. The technician fills the out-of-control record, the supervisor signs it off, the
record reads closed and its printable PDF downloads.

Debian chromium at 390×844 with a WeChat user agent; the app on a free (non-default) port with
its own SQLite file, CSRF on, and ``BASE_URL`` set to that server, so the message's link
points at it. Screenshots: ``$QCWX_SCREENSHOTS`` (default ``/tmp/qcwx-shots``)/loop-NN-*.png,
with the record's PDF and its first page as a picture. What is shown wrongly without stopping
the loop (a card under the sticky top bar, a stale message) is collected on the way and
asserted at the end, so one such defect never hides the rest of the walk.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.extensions import db
from qcwx.iqc import services, targets
from qcwx.iqc.models import CorrectiveAction, QcRun
from qcwx.timeutil import local_today
from tests.browser.conftest import PHONE, free_port, login_in_browser
from tests.factories import PASSWORD, build_world
from tests.fixtures.app import make_test_app
from tests.fixtures.wechat import WECHAT_SETTINGS

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("QCWX_SCREENSHOTS", "/tmp/qcwx-shots"))
SHANGHAI = ZoneInfo("Asia/Shanghai")
SUPERVISOR_OPENID = "oLoopSupervisor000000000001"
# The lab's last five days, in control: the entry page lists them under the form, as it would.
HISTORY = ({"1": "5.04", "2": "15.10"}, {"1": "4.96", "2": "14.90"}, {"1": "5.10", "2": "15.20"},
           {"1": "4.92", "2": "15.05"}, {"1": "5.02", "2": "14.85"})
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) "
             "NetType/WIFI Language/zh_CN")
# WeChat's JS bridge does not exist in a plain browser: a stand-in that configures at once.
FAKE_WX = """
window.wx = {
  _ready: null,
  ready: function (fn) { this._ready = fn; },
  error: function (fn) {},
  config: function (c) { var w = this; setTimeout(function () { w._ready && w._ready(); }, 10); },
  updateAppMessageShareData: function () {}, updateTimelineShareData: function () {},
  scanQRCode: function () {}
};
"""
# Where an element's top lies below the sticky top bar's bottom: it is not covered.
BELOW_TOPBAR = """sel => {
  const bar = document.querySelector('.qc-topbar').getBoundingClientRect();
  const el = document.querySelector(sel).getBoundingClientRect();
  return {bar: bar.bottom, top: el.top, visible: el.top >= bar.bottom - 0.5
          && el.top < window.innerHeight};
}"""


@pytest.fixture(scope="module")
def loop_server(tmp_path_factory, fake_wechat_server):
    """The app with the fake WeChat on a free port, BASE_URL = itself; yields (base, app)."""
    port = free_port()
    assert port != 5000
    base = f"http://127.0.0.1:{port}"
    path = tmp_path_factory.mktemp("loop") / "loop.sqlite3"
    settings = {k: v for k, v in WECHAT_SETTINGS.items() if k != "BASE_URL"}
    app = make_test_app(f"sqlite:///{path}", WTF_CSRF_ENABLED=True, BASE_URL=base,
                        WECHAT_API_BASE=fake_wechat_server.url, **settings)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, app
    server.shutdown()


@pytest.fixture(scope="module")
def loop_world(loop_server):
    """Lab A: a supervisor bound to the fake WeChat, a technician, glucose with fixed limits."""
    _base, app = loop_server
    with app.app_context():
        world = build_world()
        sup, tech = world.users["supervisor"], world.users["technician"]
        sup.wechat_openid = SUPERVISOR_OPENID
        ts = world.systems["a"]
        for lv, (mean, sd) in zip(ts.levels, ((5.0, 0.2), (15.0, 0.5)), strict=True):
            targets.set_control_limit(sup, ts, lv, mean=mean, sd=sd, kind="fixed",
                                      effective_from=local_today() - timedelta(days=30),
                                      reason="说明书靶值")
        today = local_today(ts.lab.timezone)
        for days_ago, values in enumerate(HISTORY, start=1):  # in control, no alerts
            services.submit_run(tech, test_system_id=ts.id, values=values, channel="h5",
                                run_date=today - timedelta(days=days_ago), run_no=1)
        facts = {"ts_id": ts.id, "tech": tech.username, "sup": sup.username,
                 "sup_id": sup.id, "sup_name": sup.display_name, "tech_id": tech.id,
                 "lab_name": world.lab_a.full_name}
        db.session.commit()
        db.session.remove()
    return facts


@pytest.fixture
def wechat_phone(browser):
    """Return a maker of phones in WeChat (390×844, zh-CN, WeChat's user agent), closed after.

    Each phone is its own browser context (its own cookies: its own person); its page keeps
    console errors as (page URL, text).
    """
    contexts = []

    def make():
        context = browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                                      is_mobile=True, has_touch=True, user_agent=WECHAT_UA,
                                      accept_downloads=True)
        contexts.append(context)
        context.add_init_script(FAKE_WX)
        page = context.new_page()
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(
            (m.location.get("url") or page.url, m.text)))
        page.on("pageerror", lambda e: page.console_errors.append((page.url, str(e))))
        return page

    yield make
    for context in contexts:
        context.close()


def _ours(page, base: str) -> list:
    """Return the console errors of our own pages (the fake phone page is WeChat's)."""
    return [e for e in page.console_errors if e[0].startswith(base)]


def _shot(page, n: int, step: str, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"loop-{n:02d}-{step}.png"), full_page=full_page)


def _settled_scroll(page) -> None:
    """Wait until a smooth scroll has stopped: the same position for 300 ms."""
    page.evaluate("""() => new Promise(done => {
      let last = window.scrollY, since = performance.now();
      (function check() {
        if (window.scrollY !== last) { last = window.scrollY; since = performance.now(); }
        if (performance.now() - since >= 300) done(); else requestAnimationFrame(check);
      })();
    })""")


def _db(app, fn):
    """Run ``fn()`` on the live server's database in a fresh session; return its result."""
    with app.app_context():
        try:
            return fn()
        finally:
            db.session.remove()


def _messages_to(fake, openid: str) -> list[dict]:
    return [m for m in fake.messages if m["kind"] == "template" and m["touser"] == openid]


def _wait_for_message(fake, openid: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _messages_to(fake, openid)
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no template message reached {openid}: {fake.messages}")


def _look_at_pdf(pdf: bytes, w: dict) -> None:
    """Keep the PDF and its first page as a picture beside the screenshots; check its text."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "loop-11-record.pdf").write_bytes(pdf)
    if not (shutil.which("pdftotext") and shutil.which("pdftoppm")):
        return  # poppler-utils absent: the bytes were checked, the picture is a bonus
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True,
                          check=True).stdout.decode()
    for fact in ("失控处理记录", "葡萄糖", "1-3s", "更换新瓶试剂并重新校准", w["sup_name"]):
        assert fact in text, f"{fact} missing from the printed record"
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile",
                    str(SHOTS / "loop-11-record.pdf"), str(SHOTS / "loop-11-record-pdf-page1")],
                   check=True)


def test_a_rejected_run_reaches_the_supervisors_wechat_and_is_closed_with_a_signed_record(
        wechat_phone, fake_wechat, loop_server, loop_world):
    base, app = loop_server
    w = loop_world
    # Wrong but not blocking: checked as the walk passes, asserted at its end, so one defect
    # does not hide what the rest of the loop does.
    defects: list[str] = []
    tech, sup = wechat_phone(), wechat_phone()

    # 1. The technician logs in and enters today's QC: level 1 at z = +3.6 (1-3s).
    login_in_browser(tech, base, w["tech"], PASSWORD)
    tech.goto(f"{base}/ts/{w['ts_id']}")
    tech.fill("#level_1", "5.72")
    tech.fill("#level_2", "15.1")
    _shot(tech, 1, "tech-entry")
    submitted_at = datetime.now(SHANGHAI)
    tech.click("#submit-btn")
    card = tech.locator("#verdict")
    card.wait_for()
    _settled_scroll(tech)
    _shot(tech, 2, "tech-verdict-reject")
    assert card.get_attribute("data-status") == "reject"
    verdict = card.inner_text()
    assert "失控" in verdict and "1-3s" in verdict and "\t3.60" in verdict
    place = tech.evaluate(BELOW_TOPBAR, "#verdict")
    if not place["visible"]:
        defects.append(f"entry page: after submit the verdict card's top is at {place['top']:.0f}"
                       f" px, under the sticky top bar (bottom {place['bar']:.0f} px)")

    run_id, run_status = _db(app, lambda: db.session.execute(
        select(QcRun.id, QcRun.status).where(QcRun.test_system_id == w["ts_id"])
        .order_by(QcRun.id.desc()).limit(1)).one())
    assert run_status == "reject"

    # 2. The alert went through the outbox to the supervisor's WeChat, after the commit.
    msg = _wait_for_message(fake_wechat, SUPERVISOR_OPENID)
    data = {k: v["value"] for k, v in msg["data"].items()}
    assert msg["template_id"] == app.config["WECHAT_TEMPLATE_ALERT"]
    assert "葡萄糖质控失控" in data["first"] and w["lab_name"] in data["first"]
    assert data["keyword1"] == "葡萄糖（GLU，mmol/L）"
    assert data["keyword2"] == "水平1 5.72（Z=+3.60）；水平2 15.1（Z=+0.20）"
    assert "1-3s 单值超出3倍标准差" in data["keyword3"].split("；")
    sent_at = datetime.strptime(data["keyword4"], "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)
    assert abs(sent_at - submitted_at.replace(second=0, microsecond=0)) <= timedelta(minutes=1)
    link = urlsplit(msg["url"])
    assert (link.scheme, link.netloc, link.path) == ("http", urlsplit(base).netloc,
                                                     f"/runs/{run_id}")

    def delivery_facts():
        outbox = db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.run_id == run_id)).one()
        rows = db.session.scalars(select(AlertDelivery).where(
            AlertDelivery.outbox_id == outbox.id)).all()
        return outbox.kind, outbox.status, [(r.channel, r.recipient, r.status) for r in rows]

    assert _db(app, delivery_facts) == ("run_reject", "sent",
                                        [("wechat_template", SUPERVISOR_OPENID, "sent")])

    # 3. The supervisor's phone shows the message with its fields and the link.
    sup.goto(f"{fake_wechat.url}/_fake/phone/{SUPERVISOR_OPENID}")
    _shot(sup, 3, "sup-wechat-message", full_page=True)
    bubble = sup.locator(".msg").first
    text = bubble.inner_text()
    for value in (data["first"], data["keyword1"], data["keyword2"], data["keyword3"],
                  data["keyword4"]):
        assert value in text
    more = bubble.locator("a.more")
    assert more.get_attribute("href") == msg["url"]

    # 4. Tapping the link: /login inside WeChat → OAuth at the fake → back, logged in.
    # (wechatpy's authorize URL ends in #wechat_redirect; the browser keeps that fragment
    # across the redirects, as it would inside WeChat.)
    with sup.expect_navigation(url=re.compile(rf"{re.escape(base)}/runs/{run_id}(#.*)?$")):
        more.click()
    oauth = [c for c in fake_wechat.calls if c["path"] == "/connect/oauth2/authorize"]
    assert len(oauth) == 1 and oauth[0]["args"]["appid"] == WECHAT_SETTINGS["WECHAT_APPID"]
    assert oauth[0]["args"]["redirect_uri"] == f"{base}/wechat/oauth/callback"
    assert fake_wechat.calls_to("/sns/oauth2/access_token")
    sup.locator("#verdict").wait_for()
    _shot(sup, 4, "sup-run-after-oauth")
    assert w["sup_name"] in sup.inner_text(".qc-topbar")
    # Logged in by OAuth: "please log in" (flashed when the run page sent us to /login, never
    # shown there since WeChat skipped the form) must not greet the user now.
    flashes = sup.locator(".qc-flash").all_inner_texts()
    if "请先登录" in flashes:
        defects.append("run page after WeChat OAuth: the stale flash 请先登录 greets the "
                       "logged-in supervisor")
    assert sup.locator("#verdict").get_attribute("data-status") == "reject"
    assert "1-3s" in sup.inner_text("#verdict")

    # 5. From the run to its out-of-control record: waiting for the technician.
    sup.click("#action-link")
    sup.wait_for_selector("#next-step")
    action_url = sup.url
    assert re.fullmatch(rf"{re.escape(base)}/actions/\d+", action_url)
    action_id = int(action_url.rsplit("/", 1)[1])
    _shot(sup, 5, "sup-record-open")
    assert sup.inner_text("#action-status") == "待处理"
    assert "下一步" in sup.inner_text("#next-step")

    # 6. The technician fills the record from the verdict card: cause, action, re-run.
    tech.click("#action-link")
    tech.wait_for_url(action_url)
    assert "下一步：填写处理记录" in tech.inner_text("#next-step")
    _shot(tech, 6, "tech-record-next-step")
    tech.select_option("#cause_category", "reagent")
    tech.fill("#description", "试剂开瓶超过稳定期")
    tech.fill("#action_taken", "更换新瓶试剂并重新校准")
    tech.fill("#rerun_result", "水平1 5.04，水平2 15.2，均在控")
    tech.locator("#complete-form").scroll_into_view_if_needed()
    _shot(tech, 7, "tech-record-filled")
    tech.click("#complete-form button[type=submit]")
    tech.wait_for_selector("#action-status:has-text('待审核')")
    assert "等待质控主管审核签字" in tech.inner_text("#next-step")
    _shot(tech, 8, "tech-record-submitted")

    # 7. The supervisor reopens the record and signs it off.
    sup.reload()
    assert "下一步：审核签字" in sup.inner_text("#next-step")
    assert "更换新瓶试剂并重新校准" in sup.inner_text(".qc-record")
    _shot(sup, 9, "sup-record-to-sign")
    sup.fill("#comment", "同意，处理得当")
    sup.click("#sign-form button[value='1']")
    sup.wait_for_selector("#action-status:has-text('已签字')")
    closed = sup.inner_text("#next-step")
    assert "已签字，本记录已关闭" in closed and w["sup_name"] in closed
    assert sup.locator("#sign-form").count() == 0
    _shot(sup, 10, "sup-record-closed", full_page=True)

    def record_facts():
        a = db.session.get(CorrectiveAction, action_id)
        return (a.run_id, a.status, a.completed_by_id, a.signed_by_id, a.signed_at is not None,
                a.sign_comment)

    assert _db(app, record_facts) == (run_id, "signed", w["tech_id"], w["sup_id"], True,
                                      "同意，处理得当")

    # 8. The printable record downloads as a PDF.
    with sup.expect_download(timeout=90000) as download:
        sup.click("#record-pdf")
    pdf = Path(download.value.path()).read_bytes()
    assert pdf[:4] == b"%PDF"
    assert download.value.suggested_filename.endswith(f"-{action_id}.pdf")
    _look_at_pdf(pdf, w)

    assert _ours(tech, base) == []
    assert _ours(sup, base) == []
    assert defects == [], "the loop completes, but the app shows it wrongly:\n" + "\n".join(
        defects)
