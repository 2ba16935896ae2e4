"""Benchmark the weight and first chart of a shared report opened on a phone over mobile data.

Usage::

    .venv/bin/python bench/bench_report_weight.py [--db PATH] [--runs N] [--cpu-slowdown K]

A copy of the seeded demo database (``--db``, default ``/tmp/dynperf/demo.sqlite3``; without
one a fresh demo database is migrated and seeded in a temporary directory) is served by the
real app (``create_app`` under werkzeug's ``make_server`` in a thread, so compression,
static versioning and templates are exactly the production code path). Two share links of
the first demo lab's dynamic report over the last 30 days are made through
``qcwx.reports.services.share_report``: one of 4 test systems (8 Levey–Jennings charts) and
one of every test system (about 40 charts).

Each page is opened in Debian's Chromium (Playwright, never a downloaded browser) as a cold
visitor from a group chat: a fresh 390×844 phone context, the HTTP cache disabled through a
CDP session, and, for the throttled rows, DevTools' "Fast 3G" preset
(``Network.emulateNetworkConditions``: 562.5 ms latency per request, 1.6 Mbit/s × 0.9 down,
750 kbit/s × 0.9 up). Chromium sends its own ``Accept-Encoding`` (``gzip, deflate, br, zstd``:
127.0.0.1 counts as a secure origin, as the HTTPS production site does); one more row asks
for ``identity`` to show what the same page weighs without compression.

Printed per page and profile (median of ``--runs`` cold loads):

* **transferred**: the sum of ``Network.loadingFinished.encodedDataLength`` (headers plus
  body as received, after compression) of every request, and per resource;
* **first chart**: milliseconds from navigation start (``performance.timeOrigin``) to the
  first animation frame in which a chart is on screen: either the server-drawn SVG
  (``qcwx/charts/ssr.py``: an ``svg.qc-chart__ssr`` with drawn shapes inside a
  ``.qc-chart`` box that has its size, i.e. the page's CSS has applied) or a
  ``.qc-chart canvas`` holding a non-transparent pixel. Read by a ``requestAnimationFrame``
  probe added with ``add_init_script`` (the page's own scripts are unchanged): Chromium runs
  no animation frame while rendering is blocked (stylesheets still loading), so the probe's
  frame is one that gets painted; the compositor shows it at the next vsync (≤ 17 ms later).
  The first-contentful-paint entry is printed beside it as a cross-check.
* **first canvas**: the same for the first interactive ECharts canvas (after the deferred
  ECharts bundle arrived and ``static/js/charts.js`` drew it over the SVG).
  Beside them: when the HTML and the chart scripts arrived, DOMContentLoaded, and the time all
  charts of the page were drawn (every ``.qc-chart`` has a canvas).

Before each cold load the server's in-memory SVG cache is emptied (``--warm-svg`` keeps it),
so the page's HTML includes drawing its first charts in the embedded V8 as for a report
nobody opened yet; the SSR times themselves (V8 start, first chart, further charts, cache hit)
are measured apart on the 8-chart report and printed first.

Targets (the issue): an 8-chart report ≤ 600 KB transferred and its first chart drawn within
1.5 s on Fast 3G. The numbers are printed against them; nothing asserts on wall-clock time.

Reading them: Chromium's emulated latency runs from the request's start, so the server's
time to build the page (printed per row: the report, its first two SVG charts drawn in V8 with
an empty cache, the template) hides inside the HTML's 562.5 ms as long as it is shorter; on a
real network, and here when the machine is busy, it comes on top. The shared page carries its
first charts (SVG) and its stylesheets in the HTML, so its first chart needs one round trip
plus the HTML's bytes at 180 KB/s (about 45 KB: ~0.25 s), ~0.85 s on an idle machine; the
interactive charts still wait for a second round trip and the ECharts bytes (~1 s more).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_DB = Path("/tmp/dynperf/demo.sqlite3")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
LAB_CODE = "DEMO-H01-JY"
DAYS = 30
#: DevTools' "Fast 3G" preset (front_end/core/sdk/NetworkManager.ts): bytes per second.
FAST_3G = {"offline": False, "latency": 562.5, "downloadThroughput": 1.6e6 / 8 * 0.9,
           "uploadThroughput": 750e3 / 8 * 0.9}
UNTHROTTLED = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
TARGET_BYTES = 600 * 1000
TARGET_FIRST_CHART_MS = 1500.0

#: Runs before any page script: record when the first chart (server SVG or canvas) is painted.
PROBE = """
(() => {
  const probe = window.__qcwxProbe = {firstChart: null, firstSvg: null, firstCanvas: null,
                                      allCharts: null, dcl: null, fcp: null};
  document.addEventListener('DOMContentLoaded', () => { probe.dcl = performance.now(); });
  new PerformanceObserver((list) => {
    list.getEntries().forEach((e) => {
      if (e.name === 'first-contentful-paint') { probe.fcp = e.startTime; }
    });
  }).observe({type: 'paint', buffered: true});
  function svgShown() {
    const svg = document.querySelector('.qc-chart svg.qc-chart__ssr');
    if (!svg || !svg.querySelector('path, text')) { return false; }
    const box = svg.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
  }
  function painted(canvas) {
    if (!canvas.width || !canvas.height) { return false; }
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < data.length; i += 16) { if (data[i]) { return true; } }
    return false;
  }
  function tick() {
    const now = performance.now();
    if (probe.firstSvg === null && svgShown()) { probe.firstSvg = now; }
    if (probe.firstCanvas === null) {
      const canvas = document.querySelector('.qc-chart canvas');
      if (canvas && painted(canvas)) { probe.firstCanvas = now; }
    }
    if (probe.firstChart === null && (probe.firstSvg !== null || probe.firstCanvas !== null)) {
      probe.firstChart = now;
    }
    if (probe.firstCanvas !== null && probe.allCharts === null) {
      const boxes = document.querySelectorAll('.qc-chart');
      const drawn = document.querySelectorAll('.qc-chart canvas');
      if (document.readyState !== 'loading' && boxes.length && drawn.length >= boxes.length) {
        probe.allCharts = now;
      }
    }
    if (probe.allCharts === null) { requestAnimationFrame(tick); }
  }
  requestAnimationFrame(tick);
})();
"""


@dataclass
class Load:
    """One cold page load: bytes per resource and the probe's times (ms)."""

    resources: dict[str, int] = field(default_factory=dict)
    encodings: dict[str, str] = field(default_factory=dict)
    caching: dict[str, str] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    requested: dict[str, float] = field(default_factory=dict)
    first_chart: float | None = None
    server_ms: float | None = None
    first_svg: float | None = None
    first_canvas: float | None = None
    fcp: float | None = None
    all_charts: float | None = None
    dcl: float | None = None
    charts: int = 0
    accept_encoding: str = ""

    @property
    def total(self) -> int:
        """Return the bytes transferred by every request of the load."""
        return sum(self.resources.values())


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_database(source: Path, target: Path) -> None:
    """Copy a (possibly WAL-mode, in-use) SQLite database consistently (backup API)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()


def seed_database(target: Path) -> None:
    """Migrate and seed a fresh demo database at ``target`` (the Makefile's commands)."""
    env = {**os.environ, "QCWX_DATABASE_URL": f"sqlite:///{target}"}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    for args in (["db", "upgrade"], ["seed-demo"], ["peer", "rebuild"]):
        subprocess.run(flask + args, cwd=ROOT, env=env, check=True,  # noqa: S603
                       stdout=subprocess.DEVNULL)


def make_links(app, n_systems: int) -> dict[str, str]:
    """Create the two share links (4 test systems, every test system); return their paths."""
    from sqlalchemy import select

    from qcwx.catalog.models import TestSystem
    from qcwx.extensions import db
    from qcwx.orgs.models import Lab
    from qcwx.reports import services
    from qcwx.timeutil import local_today

    with app.app_context():
        lab = db.session.scalar(select(Lab).where(Lab.code == LAB_CODE))
        if lab is None:
            lab = db.session.scalars(select(Lab).order_by(Lab.id)).first()
        ts_ids = list(db.session.scalars(
            select(TestSystem.id).where(TestSystem.lab_id == lab.id, TestSystem.active)
            .order_by(TestSystem.id)))
        period = {"kind": "days", "days": DAYS}
        links = {}
        for name, ids in ((f"{2 * n_systems} charts", ts_ids[:n_systems]),
                          (f"all {len(ts_ids)} systems", ts_ids)):
            made = services.share_report(None, lab, "dynamic", {"ts_ids": ids, "period": period},
                                         "30", local_today())
            links[name] = made.path
        db.session.commit()
    return links


#: Milliseconds the app took to build each shared page's HTML (``/r/<token>``), in order.
SERVER_MS: list[float] = []


def timed(wsgi_app):
    """Wrap a WSGI app: record how long each shared page took to build (with its SVGs)."""
    import time

    def app(environ, start_response):
        started = time.perf_counter()
        body = b"".join(wsgi_app(environ, start_response))
        if environ.get("PATH_INFO", "").startswith("/r/"):
            SERVER_MS.append((time.perf_counter() - started) * 1000)
        return [body]
    return app


def serve(app, port: int):
    """Serve ``app`` on 127.0.0.1:``port`` in a daemon thread; return the server."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, timed(app), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def print_ssr_timings(app, path: str) -> None:
    """Time the server-side SVG drawing of a report's charts in a fresh embedded V8.

    Cold: starting V8 and loading ECharts, then the first chart (its code not yet compiled);
    warm: each further chart; cached: the first chart again (the in-memory LRU).
    """
    import time

    from qcwx.charts import ssr
    from qcwx.reports import services
    from qcwx.timeutil import local_today

    with app.app_context():
        report = services.report_of_link(services.find_link(path.rsplit("/", 1)[-1]),
                                         local_today())
    charts = [(c.options, int(c.height.removesuffix("px"))) for c in report.charts]
    renderer = ssr.Renderer()
    try:
        started = time.perf_counter()
        renderer.warm_up()
        loaded = time.perf_counter()
        renderer.render(*charts[0])
        first = time.perf_counter()
        warm = []
        for options, height in charts[1:]:
            t0 = time.perf_counter()
            renderer.render(options, height)
            warm.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        renderer.render(*charts[0])
        cached = (time.perf_counter() - t0) * 1000
    finally:
        renderer.close()
    print(f"server-side SVG ({len(charts)} charts, {ssr.WIDTH} px wide, embedded V8): "
          f"V8 + ECharts load {(loaded - started) * 1000:.0f} ms, first chart (cold) "
          f"{(first - loaded) * 1000:.0f} ms, further charts median {statistics.median(warm):.0f}"
          f" ms ({min(warm):.0f}–{max(warm):.0f}), from cache {cached:.2f} ms")


# ----------------------------------------------------------------------------- the browser


def load_once(browser, url: str, network: dict, accept_encoding: str | None,
              cpu_slowdown: float) -> Load:
    """Open ``url`` cold in a fresh phone context; return what it transferred and when."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, locale="zh-CN",
                                  is_mobile=True, has_touch=True)
    context.add_init_script(PROBE)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    load, urls, errors = Load(), {}, []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type in ("error", "warning") and errors.append(m.text))

    def on_request(ev):
        urls[ev["requestId"]] = ev["request"]["url"]
        if ev["request"]["url"] == url:
            headers = {k.lower(): v for k, v in ev["request"]["headers"].items()}
            load.accept_encoding = headers.get("accept-encoding", "")

    def on_extra(ev):
        headers = {k.lower(): v for k, v in ev["headers"].items()}
        if urls.get(ev["requestId"]) == url and "accept-encoding" in headers:
            load.accept_encoding = headers["accept-encoding"]

    def on_response(ev):
        headers = {k.lower(): v for k, v in ev["response"]["headers"].items()}
        name = short(urls.get(ev["requestId"], "?"))
        load.encodings[name] = headers.get("content-encoding", "identity")
        load.caching[name] = headers.get("cache-control", "-")

    def on_finished(ev):
        name = short(urls.get(ev["requestId"], "?"))
        load.resources[name] = load.resources.get(name, 0) + int(ev["encodedDataLength"])

    cdp.on("Network.requestWillBeSent", on_request)
    cdp.on("Network.requestWillBeSentExtraInfo", on_extra)
    cdp.on("Network.responseReceived", on_response)
    cdp.on("Network.loadingFinished", on_finished)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send("Network.emulateNetworkConditions", network)
    if cpu_slowdown > 1:
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu_slowdown})
    if accept_encoding:
        cdp.send("Network.setExtraHTTPHeaders", {"headers": {"Accept-Encoding": accept_encoding}})
    built = len(SERVER_MS)
    page.goto(url, wait_until="load", timeout=120_000)
    page.wait_for_function("() => window.__qcwxProbe.allCharts !== null", timeout=120_000)
    page.wait_for_load_state("networkidle")
    probe = page.evaluate("""() => ({...window.__qcwxProbe,
        charts: document.querySelectorAll('.qc-chart').length,
        arrived: performance.getEntriesByType('resource').concat(
            performance.getEntriesByType('navigation')).map(e => [e.name, e.responseEnd,
                                                                  e.startTime])})""")
    load.first_chart, load.all_charts, load.dcl = (probe["firstChart"], probe["allCharts"],
                                                   probe["dcl"])
    load.first_svg, load.first_canvas, load.fcp = (probe["firstSvg"], probe["firstCanvas"],
                                                   probe["fcp"])
    load.charts = probe["charts"]
    load.server_ms = SERVER_MS[built] if len(SERVER_MS) > built else None
    load.arrived = {short(name): t for name, t, _ in probe["arrived"]}
    load.requested = {short(name): t for name, _, t in probe["arrived"]}
    context.close()
    if errors:
        print(f"   console: {errors[:3]}")
    return load


def short(url: str) -> str:
    """Return a resource's name without host, token or version query."""
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    return "/r/<token> (HTML)" if path.startswith("r/") else "/" + path


def median_load(loads: list[Load]) -> Load:
    """Return the load with the median first-chart time (its bytes are the run's bytes)."""
    ranked = sorted(loads, key=lambda x: x.first_chart if x.first_chart is not None else 1e12)
    return ranked[len(ranked) // 2]


# ----------------------------------------------------------------------------- printing


def verdict(ok: bool) -> str:
    return "ok" if ok else "OVER"


def print_row(page: str, profile: str, loads: list[Load], gate: bool) -> None:
    """Print one page × profile: bytes, first chart (median, range), first canvas, all drawn."""
    load = median_load(loads)
    firsts = [x.first_chart for x in loads if x.first_chart is not None] or [float("nan")]
    first = statistics.median(firsts)
    canvas = statistics.median([x.first_canvas or float("nan") for x in loads])
    spread = f"{min(firsts):.0f}–{max(firsts):.0f}" if len(firsts) > 1 else ""
    kind = "svg" if load.first_svg is not None and load.first_svg <= (load.first_chart or 0) \
        else "canvas"
    size_mark = f"[{verdict(load.total <= TARGET_BYTES)} ≤ 600 KB]" if gate else ""
    time_mark = (f"[{verdict(first <= TARGET_FIRST_CHART_MS)} ≤ 1.5 s]"
                 if gate and profile == "Fast 3G" else "")
    server = statistics.median([x.server_ms or float("nan") for x in loads])
    print(f"  {page:<15} {profile:<22} {load.charts:>3} charts {load.total / 1000:7.1f} KB "
          f"{size_mark:<16} first chart {first:6.0f} ms {kind:<6} ({spread:>9}) "
          f"{time_mark:<15} first canvas {canvas:6.0f} ms  "
          f"all drawn {load.all_charts or 0:6.0f} ms  (server {server:4.0f} ms)")
    if len(loads) > 1:  # a busy machine shows here: the first chart follows the server time
        print("      per load, first chart / server ms: " + ", ".join(
            f"{x.first_chart or 0:.0f}/{x.server_ms or 0:.0f}" for x in loads))


def print_breakdown(load: Load) -> None:
    """Print what each resource of one load weighed, how it came and when it arrived."""
    svg = f"{load.first_svg:.0f} ms" if load.first_svg is not None else "none"
    print(f"    server built the HTML in {load.server_ms or 0:.0f} ms (inside the first "
          f"{FAST_3G['latency']} ms on Fast 3G, on top of it beyond)")
    print(f"    Accept-Encoding {load.accept_encoding!r}; DOMContentLoaded {load.dcl or 0:.0f} ms,"
          f" first-contentful-paint {load.fcp or 0:.0f} ms, first SVG chart {svg},"
          f" first canvas {load.first_canvas or 0:.0f} ms,"
          f" all charts {load.all_charts or 0:.0f} ms")
    for name, size in sorted(load.resources.items(), key=lambda kv: -kv[1]):
        arrived = load.arrived.get(name)
        when = (f"asked {load.requested.get(name, 0):5.0f}, arrived {arrived:5.0f} ms"
                if arrived else "(after load)")
        print(f"    {size / 1000:7.1f} KB  {load.encodings.get(name, '?'):<8} {when:<30} "
              f"{name}  [{load.caching.get(name, '-')}]")


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=DEMO_DB,
                        help="seeded demo database to copy (default %(default)s; "
                             "missing: seed a fresh one)")
    parser.add_argument("--runs", type=int, default=3, help="cold loads per row (median)")
    parser.add_argument("--cpu-slowdown", type=float, default=1.0,
                        help="also emulate a slower CPU (DevTools' 4× mid-tier phone: 4)")
    parser.add_argument("--only-target", action="store_true",
                        help="only the targeted row: the 8-chart page, Fast 3G, compressed")
    parser.add_argument("--warm-svg", action="store_true",
                        help="keep the server's SVG cache between loads (a report opened before)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if not Path(CHROMIUM).exists():
        print(f"skipped: Debian chromium not found at {CHROMIUM}")
        return

    from playwright.sync_api import sync_playwright

    from qcwx import create_app
    from qcwx.charts import ssr

    tmp = Path(tempfile.mkdtemp(prefix="qcwx-bench-weight-"))
    db_path = tmp / "demo.sqlite3"
    if args.db.exists():
        copy_database(args.db, db_path)
    else:
        print(f"{args.db} missing: seeding a fresh demo database in {tmp}")
        seed_database(db_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app({"DATABASE_URL": f"sqlite:///{db_path}", "BASE_URL": base,
                      "LOG_LEVEL": "WARNING", "RATELIMIT_ENABLED": False})
    links = make_links(app, n_systems=4)
    print_ssr_timings(app, links["8 charts"])
    server = serve(app, port)
    profiles = (("Fast 3G", FAST_3G, None), ("Fast 3G, uncompressed", FAST_3G, "identity"),
                ("unthrottled", UNTHROTTLED, None))
    print(f"shared dynamic report of {LAB_CODE}, last {DAYS} days; {args.runs} cold loads per "
          f"row (median; range){'; CPU ×%g' % args.cpu_slowdown if args.cpu_slowdown > 1 else ''}")
    print(f"targets (8-chart page, Fast 3G): ≤ {TARGET_BYTES // 1000} KB transferred, "
          f"first chart ≤ {TARGET_FIRST_CHART_MS / 1000:.1f} s")
    print(f"Fast 3G = CDP Network.emulateNetworkConditions latency {FAST_3G['latency']} ms, "
          f"down {FAST_3G['downloadThroughput'] * 8 / 1e6:.2f} Mbit/s, "
          f"up {FAST_3G['uploadThroughput'] * 8 / 1e3:.0f} kbit/s; HTTP cache disabled; "
          f"server SVG cache {'kept' if args.warm_svg else 'emptied before each load'}")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=CHROMIUM_ARGS)
            load_once(browser, base + links["8 charts"], UNTHROTTLED, None, 1)  # warm server
            details = []
            for page_name, path in links.items():
                for profile, network, encoding in profiles:
                    if args.only_target and (page_name != "8 charts" or profile != "Fast 3G"):
                        continue
                    loads = []
                    for _ in range(args.runs):
                        if not args.warm_svg:
                            ssr.renderer.forget()  # a report nobody opened yet
                        loads.append(load_once(browser, base + path, network, encoding,
                                               args.cpu_slowdown))
                    med = median_load(loads)
                    print_row(page_name, profile, loads,
                              gate=page_name == "8 charts" and encoding is None)
                    if profile == "Fast 3G":
                        details.append((page_name, profile, med))
            browser.close()
        for page_name, profile, load in details:
            print(f"\n  {page_name}, {profile}: per resource (encodedDataLength)")
            print_breakdown(load)
    finally:
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
