"""Every page of every role on a phone in WeChat: tap targets, text size, width, no errors.

Each role (admin, center, director, supervisor, technician) logs in and walks the site
breadth-first from ``/`` by following every same-origin ``a[href]``, in Debian chromium at
390×844 with a WeChat user agent and a stand-in for WeChat's JS bridge (``wx``) whose
``wx.config`` checks the signature the real ``/wechat/jssdk/config`` made with the fake
WeChat's ticket, as WeChat does. A guest walk opens a shared report link with no account.
Each page is screenshotted to ``$QCWX_SCREENSHOTS`` (default /tmp/qcwx-shots) as
``walk-<role>-<n>.png`` and checked against the rules below; every failure of a role is
collected and reported together (page · rule · element · size), so one run shows all.

The rules
---------
1. **No errors**: no ``console.error``, uncaught exception or failed resource load (which
   Chromium reports as a console error); no page answering >= 400; a page that configures
   the JS-SDK gets a valid signature for its own URL (the stand-in logs
   ``wx.config: invalid signature`` otherwise, as the real SDK fails ``config``).
2. **Nothing wider than the viewport**: ``document.documentElement.scrollWidth <=
   innerWidth + 1`` (innerWidth taken as the phone's 390 px: a page without
   ``initial-scale`` that is too wide makes the phone zoom out instead of scroll). A table
   inside its own horizontal scroll box is fine. Content may not be cut off either: an
   element that hides its horizontal overflow (``overflow-x: hidden`` or ``clip``) must not
   have content wider than itself, unless it truncates one line of text on purpose
   (``text-overflow: ellipsis`` with ``white-space: nowrap``).
3. **Tap targets >= 44 × 44 px**: every visible, enabled ``a[href]``, ``button``,
   ``input`` (not hidden), ``select``, ``textarea``, ``summary``, ``[role=button]`` and
   ``[onclick]`` element. The *effective* tap area counts: a control passes when it or a
   label that activates it (wrapping it or naming it with ``for=``) is 44 × 44 or larger,
   because tapping the label is tapping the control — so a label is checked through its
   control, and a visually hidden radio inside a big segment label passes. Nothing else
   lends its size: a small link inside a tall row is a small target. Disabled controls are
   not targets. Closed ``<details>`` are opened and checked again.
4. **Text >= 14 px**: every visible text node in the main content (``main`` or
   ``[role=main]``, else ``body``; header and tab bar are outside) is at least 14 px —
   except text declared *secondary* in CSS with the custom property
   ``--qc-text: secondary`` (captions, badges, codes and units, sub-lines of list rows,
   column headers of tables marked so) or inside ``small``, ``sub``, ``sup``, ``th``,
   ``caption``, ``figcaption``, which may go down to 12 px and never below. Text declared
   ``--qc-text: print`` (a facsimile of a printed page, e.g. the A4 label sheet preview) is
   exempt. The property inherits, so a caption block is marked once.

What is walked
--------------
Every link a role can reach from its home page (the supervisor also starts at a share
link), at most ``PER_SHAPE`` pages of one shape (the path with numbers and tokens replaced,
e.g. ``/ts/<n>/chart`` for every period of every test system's chart) and ``MAX_PAGES`` per
role; a shape still queued when the cap is reached fails the walk, so the cap can never
hide a page. Not walked: ``/logout`` and other POST-only actions (no links), downloads
(``.pdf .xlsx .csv .png .svg .json .zip``), ``/static/``, ``/api/``, ``/_fake``, the WeChat
OAuth hops (``/wechat/oauth/*``, ``/wechat/go/*``: redirects to WeChat) and ``/login`` (the
walk is signed in). In Flask-Admin (``/admin/``) the index, each model's list view and
qcwx's own admin pages are walked, because the phone's 管理 tab opens them; the model
create/edit/details/export views (and the list views' sort, filter and page variants, the
same template) are declared desktop-only back-office forms (select2 widgets, many fields: a
centre edits records at a desk) and are not. Pages reached only by submitting a form
(upload preview, column mapping) are not walked; the entry page after a submit has its own
test below.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

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
ROLES = ("admin", "center", "director", "supervisor", "technician")
MAX_PAGES = 150
PER_SHAPE = 3
MIN_TAP = 44
MIN_TEXT, MIN_SECONDARY_TEXT = 14, 12
CHECK_ARGS = [MIN_TAP, MIN_TEXT, MIN_SECONDARY_TEXT, PHONE["width"]]
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) "
             "NetType/WIFI Language/zh_CN")
DOWNLOADS = (".pdf", ".xlsx", ".csv", ".png", ".svg", ".json", ".zip")
SKIP_PREFIXES = ("/static/", "/_fake", "/logout", "/login", "/wechat/oauth/", "/wechat/go/",
                 "/api/")
ADMIN_FORMS = re.compile(r"^/admin/[^/]+/(new|edit|details|export|action|ajax|delete)/")

# WeChat's JS bridge, as WeChat injects it: wx.config succeeds only with a signature that
# WeChat would accept for this page's URL (checked in Python against the fake's ticket).
FAKE_WX = """
window.__wxCalls = [];
window.wx = {
  _ready: [], _error: [],
  ready: function (fn) { this._ready.push(fn); },
  error: function (fn) { this._error.push(fn); },
  config: function (c) {
    var w = this; window.__wxCalls.push(['config', c]);
    var url = location.href.split('#')[0];
    window.__qcwxCheckWx(c, url).then(function (ok) {
      if (ok) { w._ready.forEach(function (fn) { fn(); }); return; }
      console.error('wx.config: invalid signature');
      w._error.forEach(function (fn) { fn({ errMsg: 'config:invalid signature' }); });
    });
  },
  scanQRCode: function (o) { window.__wxCalls.push(['scan', o]); },
  updateAppMessageShareData: function (o) { window.__wxCalls.push(['appMessage', o]); },
  updateTimelineShareData: function (o) { window.__wxCalls.push(['timeline', o]); }
};
"""

# One pass of rules 2-4 over the page as it is; returns plain lists for Python to format.
CHECK_JS = """([MIN_TAP, MIN_TEXT, MIN_SECONDARY, SCREEN]) => {
  // A page wider than its viewport meta allows makes a phone zoom out (innerWidth grows):
  // measure against the phone's width, not the zoomed-out one.
  const W = Math.min(window.innerWidth, SCREEN);
  const visible = (el) => {
    if (!el.getClientRects().length) return false;
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return false;
    const cs = getComputedStyle(el);
    return cs.visibility !== 'hidden' && cs.display !== 'none';
  };
  const desc = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    else if (el.classList.length) s += '.' + Array.from(el.classList).slice(0, 3).join('.');
    if (el.tagName === 'INPUT') s += '[type=' + el.type + ']';
    return s;
  };
  const sample = (el) => ((el.innerText || el.value || el.getAttribute('aria-label') || '')
    .trim().replace(/\\s+/g, ' ').slice(0, 28));
  const groups = new Map();
  const add = (kind, el, size, text) => {
    const key = kind + '|' + desc(el) + '|' + size;
    const g = groups.get(key);
    if (g) { g.count += 1; return; }
    groups.set(key, { kind: kind, what: desc(el), size: size, text: text, count: 1 });
  };

  // Rule 2: page width, and what sticks out or is cut off.
  const scrollWidth = document.documentElement.scrollWidth;
  const scrolls = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox !== 'visible') return true;
    }
    return false;
  };
  if (scrollWidth > W + 1 || window.innerWidth > SCREEN + 1) {
    const wide = Array.from(document.body.querySelectorAll('*')).filter((el) => {
      const r = el.getBoundingClientRect();
      return r.right > W + 1 && r.width > 0 && !scrolls(el)
        && !(el.parentElement && el.parentElement.getBoundingClientRect().right > W + 1
             && !scrolls(el.parentElement) && el.parentElement !== document.body);
    });
    const worst = wide.length ? wide : [document.body];
    worst.slice(0, 4).forEach((el) => add('page wider than the screen', el,
      Math.round(el.getBoundingClientRect().right) + 'px > ' + W + 'px', sample(el)));
    if (!wide.length) add('page wider than the screen', document.documentElement,
                          scrollWidth + 'px > ' + W + 'px', '');
  }
  document.body.querySelectorAll('*').forEach((el) => {
    const cs = getComputedStyle(el);
    if (cs.overflowX !== 'hidden' && cs.overflowX !== 'clip') return;
    if (!visible(el) || el.scrollWidth <= el.clientWidth + 1) return;
    if (cs.textOverflow === 'ellipsis' && cs.whiteSpace.startsWith('nowrap')) return;
    if (el.closest('.qc-chart, [_echarts_instance_], canvas')) return;  // chart internals
    if (cs.getPropertyValue('--qc-text').trim() === 'print') return;
    add('content cut off', el, el.scrollWidth + 'px in ' + el.clientWidth + 'px', sample(el));
  });

  // Rule 3: tap targets, by their effective area.
  const ok = (r) => r.width >= MIN_TAP - 0.5 && r.height >= MIN_TAP - 0.5;
  const TARGETS = 'a[href], button, input:not([type=hidden]), select, textarea, summary, '
    + '[role=button], [onclick]';
  document.body.querySelectorAll(TARGETS).forEach((el) => {
    if (el.disabled || el.closest('[inert], fieldset:disabled')) return;
    const own = visible(el);
    const areas = [];
    if (own) areas.push(el.getBoundingClientRect());
    if (el.labels) Array.from(el.labels).filter(visible)
      .forEach((l) => areas.push(l.getBoundingClientRect()));
    if (!areas.length) return;  // neither it nor a label of it is on screen
    if (areas.some(ok)) return;
    const best = areas.reduce((a, b) => (a.width * a.height >= b.width * b.height ? a : b));
    add('tap target under ' + MIN_TAP + 'px', el,
        Math.round(best.width) + '×' + Math.round(best.height), sample(el));
  });

  // Rule 4: text size in the main content.
  const roots = Array.from(document.querySelectorAll('main, [role=main]'));
  const walkRoots = roots.length ? roots : [document.body];
  const SKIP = 'script, style, noscript, template, svg, select, option, textarea, '
    + '[aria-hidden=true], .qc-topbar, .qc-tabbar';
  const range = document.createRange();
  walkRoots.forEach((root) => {
    const it = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = it.nextNode(); node; node = it.nextNode()) {
      if (!node.nodeValue.trim()) continue;
      const el = node.parentElement;
      if (!el || el.closest(SKIP)) continue;
      range.selectNodeContents(node);
      const r = range.getBoundingClientRect();
      if (r.width < 1 || r.height < 1) continue;
      const cs = getComputedStyle(el);
      if (cs.visibility === 'hidden' || parseFloat(cs.opacity) === 0) continue;
      const role = cs.getPropertyValue('--qc-text').trim();
      if (role === 'print') continue;
      const secondary = role === 'secondary'
        || !!el.closest('small, sub, sup, th, caption, figcaption');
      const min = secondary ? MIN_SECONDARY : MIN_TEXT;
      const size = parseFloat(cs.fontSize);
      if (size < min - 0.01) {
        add('text under ' + min + 'px' + (secondary ? ' (secondary)' : ''), el, size + 'px',
            node.nodeValue.trim().replace(/\\s+/g, ' ').slice(0, 28));
      }
    }
  });
  return Array.from(groups.values());
}"""


@dataclass(frozen=True)
class Failure:
    """One rule broken on one page (identical elements grouped, with their count)."""

    page: str
    kind: str
    what: str
    size: str
    text: str = ""
    count: int = 1

    def __str__(self) -> str:
        text = f" “{self.text}”" if self.text else ""
        times = f" ×{self.count}" if self.count > 1 else ""
        return f"{self.page} · {self.kind} · {self.what}{text} · {self.size}{times}"


# ------------------------------------------------------------------ server and world


@pytest.fixture(scope="module")
def walk_server(tmp_path_factory, fake_wechat_server):
    """The app with the fake WeChat on a free port, CSRF on; yields (base URL, app)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = tmp_path_factory.mktemp("walk") / "walk.sqlite3"
    settings = {k: v for k, v in WECHAT_SETTINGS.items() if k != "BASE_URL"}
    app = make_test_app(f"sqlite:///{path}", WTF_CSRF_ENABLED=True, BASE_URL=base,
                        WECHAT_API_BASE=fake_wechat_server.url, **settings)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, app
    server.shutdown()


@pytest.fixture(scope="module")
def walk_world(walk_server):
    """Data for every page: the peer world plus runs, actions, links, invites, imports."""
    _base, app = walk_server
    with app.app_context():
        facts = build_walk_world()
        db.session.commit()
        db.session.remove()
    return facts


def build_walk_world() -> dict:
    """Build the world through the real services; return usernames and the share path."""
    from qcwx.alerts.models import AlertDelivery, OutboxMessage
    from qcwx.ingest import apikeys, mapping_admin
    from qcwx.ingest import services as ingest
    from qcwx.iqc import actions, services
    from qcwx.reports import services as reports
    from qcwx.timeutil import local_today
    from qcwx.wechat import services as wechat

    w = build_peer_world()
    lab, ts, today = w.labs["r1"], w.systems["r1"], local_today()
    sup = f.user("supervisor", lab_=lab, name="王主管")
    tech = w.users["tech_r1"]
    ok = {"1": "5.60", "2": "15.90"}
    bad = {"1": "12.00", "2": "15.90"}  # level 1 at z ≈ +3.9: 1-3s, an action opens
    services.submit_run(tech, test_system_id=ts.id, run_date=today, values=ok)
    runs = [services.submit_run(tech, test_system_id=ts.id, run_date=today - timedelta(days=d),
                                values=bad, run_no=7) for d in (1, 2, 3)]
    fields = {"cause_category": "reagent", "description": "试剂开瓶超过稳定期",
              "action_taken": "更换新瓶试剂并重新校准", "rerun_result": "复测两个水平均在控"}
    actions.complete_action(tech, runs[1].action_id, **fields)
    actions.complete_action(tech, runs[2].action_id, **fields)
    actions.sign_action(sup, runs[2].action_id, approve=True, comment="同意")
    # actions: one open, one submitted, one signed; and an alert that could not be delivered
    outbox = db.session.scalar(db.select(OutboxMessage).order_by(OutboxMessage.id.desc()))
    db.session.add(AlertDelivery(outbox_id=outbox.id, channel="wechat_template",
                                 recipient="oWalkTest0000000000000000000", user_id=sup.id,
                                 dedupe_key=f"walk-{outbox.id}", status="dead", attempts=5,
                                 last_error="43004 接收者未关注公众号"))
    reports.publish_evaluation(lab, w.prev_month, today)
    shared = reports.share_report(sup, lab, "dynamic",
                                  {"ts_ids": None, "period": {"kind": "this_month"}}, "7", today)
    reports.share_report(sup, lab, "evaluation", {"month": w.prev_month}, "30", today)
    wechat.create_invite(sup, tech)
    apikeys.create_key(w.users["center"], lab.id, "检验科 LIS 接口机")
    mapping_admin.add_test_code_mapping(sup, lab.id, "GLU-1", ts.id)
    csv = ("检测日期,批次,项目,水平,质控批号,结果,单位\r\n"
           f"{today - timedelta(days=5)},1,GLU,1,{w.lot.lot_number},5.58,mmol/L\r\n"
           f"{today - timedelta(days=5)},1,GLU,2,{w.lot.lot_number},15.7,mmol/L\r\n"
           f"{today - timedelta(days=5)},1,XXX,1,{w.lot.lot_number},1.0,mmol/L\r\n")
    ingest.commit_file(sup, lab, csv.encode("utf-8"), filename="质控导出.csv", channel="upload")
    db.session.flush()
    return {"users": {"admin": w.users["admin"].username, "center": w.users["center"].username,
                      "director": w.users["director_r1"].username, "supervisor": sup.username,
                      "technician": tech.username},
            "share_path": shared.path, "ts": ts.id}


# ------------------------------------------------------------------ the walk


def _phone(browser, app):
    """A WeChat-like phone context whose wx.config checks signatures like WeChat."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                                  is_mobile=True, has_touch=True, user_agent=WECHAT_UA)
    context.expose_function("__qcwxCheckWx", lambda cfg, url: _valid_signature(app, cfg, url))
    context.add_init_script(FAKE_WX)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.open_requests = set()  # what _settle waits for
    page.on("request", lambda r: page.open_requests.add(r))
    page.on("requestfinished", lambda r: page.open_requests.discard(r))
    page.on("requestfailed", lambda r: page.open_requests.discard(r))
    return context, page


def _valid_signature(app, cfg: dict, url: str) -> bool:
    """Check ``wx.config`` as WeChat does: sha1 over ticket, nonce, timestamp and the URL."""
    from qcwx.wechat import client as wechat_client
    from qcwx.wechat.token import jsapi_ticket

    with app.app_context():
        ticket = jsapi_ticket(wechat_client.official_client())
    plain = (f"jsapi_ticket={ticket}&noncestr={cfg.get('nonceStr')}"
             f"&timestamp={cfg.get('timestamp')}&url={url}")
    return (cfg.get("appId") == WECHAT_SETTINGS["WECHAT_APPID"] and bool(cfg.get("jsApiList"))
            and cfg.get("signature") == hashlib.sha1(plain.encode()).hexdigest())  # noqa: S324


def _local(url: str, base: str) -> str | None:
    """Return the walkable path+query of ``url``, or None when it is not to be walked."""
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" != base or parts.scheme not in ("http", "https"):
        return None
    path = parts.path or "/"
    if path.startswith(SKIP_PREFIXES) or path.lower().endswith(DOWNLOADS):
        return None
    query = parts.query
    if path.startswith("/admin/"):
        if ADMIN_FORMS.match(path) or query and path.count("/") <= 3:
            return None  # desktop-only model forms; list sort/filter/page variants
    return path + (f"?{query}" if query else "")


def _shape(path: str) -> str:
    """Return the page's shape: its path with numbers and tokens replaced, query dropped."""
    return "/".join("<n>" if re.fullmatch(r"\d+|[\w-]{20,}(\.[\w-]+)?", s) else s
                    for s in urlsplit(path).path.split("/"))


#: How long no request of the page may be open before it counts as quiet, and at most
QUIET_S, SETTLE_S = 0.05, 10.0


def _settle(page) -> None:
    """Wait until the page is loaded and quiet (charts drawn, JS-SDK configured).

    Quiet: none of the page's own requests open (``page.open_requests``, :func:`_phone`)
    for ``QUIET_S``. Playwright's ``networkidle`` waits 500 ms after the last request of
    every page, three minutes of the suite over the ~380 pages walked, for requests a page
    sends at once (its JS-SDK signature, its chart data) or not at all. A page that never
    goes quiet is checked as it is after ``SETTLE_S``.
    """
    page.wait_for_load_state("load")
    deadline = time.monotonic() + SETTLE_S
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if page.open_requests:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            return
        page.wait_for_timeout(20)


def _check_page(page, label: str) -> list[Failure]:
    """Apply rules 2-4 to the page, then again with every <details> opened."""
    found = {}
    for opened in (False, True):
        if opened:
            if not page.locator("details:not([open])").count():
                break
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        for g in page.evaluate(CHECK_JS, CHECK_ARGS):
            key = (g["kind"], g["what"], g["size"])
            if key not in found:
                found[key] = Failure(label, g["kind"], g["what"], g["size"], g["text"],
                                     g["count"])
    return list(found.values())


def walk(page, base: str, seeds: list[str], role: str) -> tuple[list[str], list[Failure]]:
    """Walk breadth-first from ``seeds``; return the pages seen and every failure.

    Reaching ``MAX_PAGES`` while a page of a new shape is still queued is a failure too:
    the walk must cover every kind of page a role can reach.
    """
    queue, seen, shapes = deque(seeds), set(), Counter()
    visited, failures = [], []
    SHOTS.mkdir(parents=True, exist_ok=True)
    while queue and len(visited) < MAX_PAGES:
        path = queue.popleft()
        if path in seen or shapes[_shape(path)] >= PER_SHAPE:
            continue
        seen.add(path)
        shapes[_shape(path)] += 1
        page.console_errors.clear()
        response = page.goto(base + path)
        _settle(page)
        landed = _local(page.url, base) or page.url
        label = path if landed == path else f"{path} → {landed}"
        if landed != path:
            seen.add(landed)
        visited.append(label)
        if response is None or response.status >= 400:
            failures.append(Failure(label, "page answered an error",
                                    "document", str(response.status if response else "none")))
        if not landed.startswith("/"):
            failures.append(Failure(label, "left the site", "document", landed))
            continue
        failures += _check_page(page, label)
        failures += [Failure(label, "console error", "console", "", e[:160])
                     for e in page.console_errors]
        # at CSS pixels: half the walk's screenshot time of the phone's 2x pixels, as legible
        page.screenshot(path=str(SHOTS / f"walk-{role}-{len(visited):02d}.png"), full_page=True,
                        scale="css")
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
        for href in hrefs:
            local = _local(href, base)
            if local and local not in seen:
                queue.append(local)
    missed = sorted({_shape(p) for p in queue if not shapes[_shape(p)]})
    failures += [Failure(shape, "not walked: MAX_PAGES reached", "page", str(MAX_PAGES))
                 for shape in missed]
    return visited, failures


def _report(role: str, visited: list[str], failures: list[Failure]) -> str:
    """Return the role's failures, one line per distinct problem with the pages it is on."""
    by_problem: dict[tuple, list[Failure]] = {}
    for x in failures:
        by_problem.setdefault((x.kind, x.what, x.size), []).append(x)
    lines = [f"{role}: {len(by_problem)} problem(s) on {len({x.page for x in failures})} of "
             f"{len(visited)} page(s) walked"]
    for (kind, what, size), items in sorted(by_problem.items(), key=lambda kv: kv[1][0].page):
        text = f" “{items[0].text}”" if items[0].text else ""
        pages = [x.page for x in items]
        where = ", ".join(pages[:3]) + (f" and {len(pages) - 3} more" if len(pages) > 3 else "")
        count = max(x.count for x in items)
        lines.append(f"  {kind} · {what}{text} · {size}{f' ×{count}' if count > 1 else ''}"
                     f" · on {where}")
    lines += ["pages walked:"] + [f"  {p}" for p in visited]
    return "\n".join(lines)


@pytest.mark.parametrize("role", ROLES)
def test_every_page_of_the_role_fits_a_phone_in_wechat(browser, walk_server, walk_world, role):
    base, app = walk_server
    context, page = _phone(browser, app)
    login_in_browser(page, base, walk_world["users"][role], PASSWORD)
    seeds = ["/"] + ([walk_world["share_path"]] if role == "supervisor" else [])
    visited, failures = walk(page, base, seeds, role)
    context.close()
    (SHOTS / f"walk-{role}.txt").write_text(_report(role, visited, failures), encoding="utf-8")
    assert len(visited) >= 8, _report(role, visited, failures)
    assert not failures, _report(role, visited, failures)


def test_a_shared_report_fits_a_phone_for_a_guest(browser, walk_server, walk_world):
    base, app = walk_server
    context, page = _phone(browser, app)
    visited, failures = walk(page, base, [walk_world["share_path"]], "guest")
    assert page.evaluate("document.documentElement.dataset.shareCard") == "configured"
    context.close()
    (SHOTS / "walk-guest.txt").write_text(_report("guest", visited, failures), encoding="utf-8")
    assert not failures, _report("guest", visited, failures)


# ------------------------------------------------------------------ after a submit


def _scroll_settled(page) -> None:
    last, still = None, 0
    for _ in range(60):
        y = page.evaluate("window.scrollY")
        still = still + 1 if y == last else 0
        if still >= 3:
            return
        last = y
        time.sleep(0.1)


def test_a_reject_verdict_shows_below_the_header_and_joins_the_recent_runs(
        browser, walk_server, walk_world):
    base, app = walk_server
    context, page = _phone(browser, app)
    login_in_browser(page, base, walk_world["users"]["technician"], PASSWORD)
    page.goto(f"{base}/ts/{walk_world['ts']}")
    _settle(page)
    run_no = page.input_value("#run_no")
    page.fill("#level_1", "12.5")
    page.fill("#level_2", "15.9")
    page.click("#submit-btn")
    page.locator("#verdict").wait_for()
    _scroll_settled(page)
    page.screenshot(path=str(SHOTS / "walk-entry-after-reject.png"))
    header = page.locator(".qc-topbar").bounding_box()
    label = page.locator("#verdict .qc-verdict__label")
    assert label.inner_text() == "失控"
    assert label.bounding_box()["y"] >= header["y"] + header["height"], "失控 is under the header"
    first = page.locator("#recent .qc-list__item").first
    assert f"第{run_no}批" in first.inner_text() and "失控" in first.inner_text()
    # The scanner's wx.config was signed for this page, and the stand-in would have known.
    config = next(c[1] for c in page.evaluate("window.__wxCalls") if c[0] == "config")
    check = "([c, u]) => window.__qcwxCheckWx(c, u)"
    assert page.evaluate(check, [config, page.url])
    assert not page.evaluate(check, [config | {"signature": "0" * 40}, page.url])
    assert page.console_errors == []
    context.close()


def test_walk_helpers_keep_one_shape_per_template():
    base = "http://127.0.0.1:1"
    assert _shape("/ts/12/chart?days=60&start=") == "/ts/<n>/chart"
    assert _shape("/r/abcdefghijklmnopqrstuvwx.yz") == "/r/<n>"
    assert _local(f"{base}/admin/hospital/?sort=1", base) is None
    assert _local(f"{base}/admin/hospital/edit/?id=1", base) is None
    assert _local(f"{base}/admin/hospital/", base) == "/admin/hospital/"
    assert _local(f"{base}/actions/3.pdf", base) is None
    assert _local("https://example.com/x", base) is None
    assert _local(f"{base}/peer/lot?" + urlencode({"level": 1}), base) == "/peer/lot?level=1"


CHECKER_FIXTURE = """<!doctype html><html><head><meta name="viewport" content="width=device-width">
<style>body { margin: 0; font-size: 16px; } .sec { --qc-text: secondary; }
.big { display: block; min-height: 48px; } .big input { opacity: 0; position: absolute; }</style>
</head><body><main>
<p id="small-text" style="font-size: 13px">正文太小</p>
<p class="sec" style="font-size: 12px">说明文字可以小一些</p>
<p class="sec" id="tiny-secondary" style="font-size: 11px">再小就不行</p>
<button id="small-button" style="height: 30px; font-size: 16px">按钮</button>
<label class="big">开启<input type="radio" name="r"></label>
<input type="checkbox" id="lonely-box">
<div style="overflow: hidden; width: 200px"><table id="cut"><tr>
  <td style="white-space: nowrap">一张被裁掉右边的很宽很宽很宽很宽很宽的表格</td></tr></table></div>
<div style="overflow: hidden; width: 100px; white-space: nowrap; text-overflow: ellipsis">
  故意截断的一行文字故意截断的一行文字</div>
<div style="overflow-x: auto; width: 200px"><div style="width: 900px">滚动盒子里的宽内容</div></div>
<div id="too-wide" style="width: 600px">比屏幕宽</div>
</main></body></html>"""


def test_the_checks_find_small_targets_small_text_and_overflow_and_nothing_else(browser):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_content(CHECKER_FIXTURE)
    found = {(g["kind"], g["what"]) for g in page.evaluate(
        CHECK_JS, CHECK_ARGS)}
    context.close()
    assert found == {
        ("text under 14px", "p#small-text"),
        ("text under 12px (secondary)", "p#tiny-secondary"),
        ("tap target under 44px", "button#small-button"),
        ("tap target under 44px", "input#lonely-box[type=checkbox]"),
        ("content cut off", "div"),
        ("page wider than the screen", "div#too-wide"),
    }
