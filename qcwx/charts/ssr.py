"""Draw charts on the server as SVG, so a page's first charts paint with its HTML.

A report opened on a phone over mobile data would otherwise show its first chart only after
the HTML *and* the ~180 KB ECharts bundle arrived (two round trips and a second of transfer on
"Fast 3G"). ECharts' own server-side rendering (``echarts.init(null, null, {renderer: 'svg',
ssr: true})`` then ``renderToSVGString()``) draws the same options into an SVG string, which
the page inlines in the chart's ``div``; ``static/js/charts.js`` replaces it with the
interactive canvas chart once the bundle has loaded (progressive enhancement).

The JavaScript runs in an embedded V8 (the ``mini-racer`` wheel): no Node.js in production.
``static/vendor/echarts-qcwx-ssr.js`` (``make assets``: the pages' partial ECharts plus the
SVG renderer) is loaded once per process, lazily, and calls are serialised by a lock (a V8
isolate runs one thing at a time). SVGs are cached by a fingerprint of the options and size:
in memory (LRU) for every chart, and on disk under ``instance/chart-svg/`` for the charts of
published reports, whose options never change.

Whatever fails (no wheel, no bundle, a chart ECharts rejects, markup that is not plain SVG)
is logged and the chart is simply left to the browser: a page never fails because of this.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from xml.etree import ElementTree

from markupsafe import Markup

from qcwx.charts.common import check_chart_id

log = logging.getLogger(__name__)

#: The server-side ECharts build (``make assets``); never sent to browsers.
BUNDLE = Path(__file__).resolve().parents[2] / "static" / "vendor" / "echarts-qcwx-ssr.js"
#: Width the SVGs are drawn at: a chart's box on a 390-px phone (the SVG scales to its box).
WIDTH = 358
#: A chart that takes longer than this to draw is left to the browser (a page never waits).
TIMEOUT_S = 2.0
#: How many SVGs the in-memory cache keeps (about 30 KB each).
CACHE_SIZE = 256
_SVG_NS = "{http://www.w3.org/2000/svg}"
_STYLE = re.compile(r"<style\b[^>]*>.*?</style>", re.S)
_ZR_ID = re.compile(r"(?<![\w-])zr\d+-")
#: Elements ECharts' SVG renderer writes; anything else (script, foreignObject…) is refused.
_ALLOWED_TAGS = {"svg", "g", "path", "rect", "circle", "ellipse", "line", "polyline",
                 "polygon", "text", "tspan", "defs", "clipPath", "linearGradient",
                 "radialGradient", "stop", "pattern", "image", "title", "desc"}

# Runs once in the fresh V8 context: what ECharts expects of a browser-less global, and the
# one function Python calls. Font families are quoted with ' because zrender writes them
# unescaped into a style="…" attribute.
_PRELUDE = """
var window = globalThis, self = globalThis;
if (typeof setTimeout === 'undefined') {
  globalThis.setTimeout = function () { return 0; };
  globalThis.clearTimeout = function () {};
}
"""
_RENDER = """
function qcwxSafeFonts(node) {
  if (Array.isArray(node)) { node.forEach(qcwxSafeFonts); return; }
  if (node === null || typeof node !== 'object') { return; }
  Object.keys(node).forEach(function (key) {
    var value = node[key];
    if (key === 'fontFamily' && typeof value === 'string') {
      node[key] = value.replace(/"/g, "'");
    } else { qcwxSafeFonts(value); }
  });
}
function qcwxRenderSVG(json, width, height) {
  var chart = echarts.init(null, null, {renderer: 'svg', ssr: true, width: width,
                                        height: height});
  try {
    var options = JSON.parse(json);
    qcwxSafeFonts(options);
    options.animation = false;
    chart.setOption(options);
    return chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
}
"""


class RenderError(RuntimeError):
    """The chart could not be drawn on the server (the browser draws it instead)."""


class Renderer:
    """One embedded V8 with ECharts loaded, shared by the threads of a process."""

    def __init__(self, bundle: Path = BUNDLE) -> None:
        self.bundle = bundle
        self._lock = threading.Lock()
        self._ctx = None
        self._cache: OrderedDict[str, str] = OrderedDict()
        self.broken: str | None = None  # why this process cannot render (logged once)

    def _context(self):
        if self._ctx is None:
            started = time.perf_counter()
            ctx = _new_isolate()
            ctx.eval(_PRELUDE)
            ctx.eval(self.bundle.read_text(encoding="utf-8"))
            ctx.eval(_RENDER)
            self._ctx = ctx
            log.info("chart SSR: ECharts loaded into V8 in %.0f ms",
                     (time.perf_counter() - started) * 1000)
        return self._ctx

    def warm_up(self) -> None:
        """Start V8 and load ECharts now (e.g. when a worker starts) instead of at first use."""
        with self._lock:
            self._context()

    def forget(self) -> None:
        """Empty the in-memory SVG cache (the benchmark's never-opened report)."""
        with self._lock:
            self._cache.clear()

    def render(self, options: dict, height: int, width: int = WIDTH) -> str:
        """Return the chart drawn as an SVG document string (cached); raise ``RenderError``."""
        text = options_text(options)
        return self.render_text(text, fingerprint(text, width, height), height, width)

    def render_text(self, text: str, key: str, height: int, width: int) -> str:
        """Draw options given as JSON text, cached in memory under ``key``."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            if self.broken:
                raise RenderError(self.broken)
            try:
                ctx = self._context()
            except Exception as exc:  # wheel missing, bundle missing, V8 failed to start
                self.broken = _first_line(exc)
                log.warning("chart SSR disabled, charts are drawn by the browser only: %s",
                            self.broken)
                raise RenderError(self.broken) from exc
            try:
                svg = ctx.call("qcwxRenderSVG", text, width, height, timeout_sec=TIMEOUT_S)
            except Exception as exc:  # a JS error of this chart's options, or too slow
                raise RenderError(_first_line(exc)) from exc
            self._cache[key] = svg
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return svg

    def close(self) -> None:
        """Dispose of the V8 isolate (its thread otherwise keeps the interpreter alive)."""
        with self._lock:
            if self._ctx is not None:
                self._ctx.close()
                self._ctx = None


def _new_isolate():
    """Start a MiniRacer from a thread with no running asyncio loop.

    MiniRacer adopts the creating thread's running loop when there is one (Playwright's
    sync API keeps one running in its thread; so do async servers). Calls from that thread
    then count as "inside the isolate's loop", where mini-racer refuses a timeout
    ("To apply a timeout in an async context …") and no chart could be drawn. Created
    from a bare thread, the isolate starts a loop thread of its own and every caller
    gets the timeout.
    """
    from py_mini_racer import MiniRacer  # the mini-racer wheel

    made: dict = {}

    def start() -> None:
        try:
            made["ctx"] = MiniRacer()
        except BaseException as exc:  # handed to the caller below
            made["error"] = exc

    thread = threading.Thread(target=start, name="chart-ssr-v8", daemon=True)
    thread.start()
    thread.join()
    if "error" in made:
        raise made["error"]
    return made["ctx"]


def _first_line(exc: Exception) -> str:
    """Return an error's first line, short: V8's messages quote the whole minified line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def options_text(options: dict) -> str:
    """Return the options as canonical JSON (the text drawn and fingerprinted)."""
    return json.dumps(options, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def fingerprint(options_json: str, width: int, height: int) -> str:
    """Return the cache key of one drawing: the options, the size and the ECharts build."""
    digest = hashlib.sha256(f"{width}x{height}\n{_bundle_stamp()}\n".encode())
    digest.update(options_json.encode("utf-8"))
    return digest.hexdigest()[:40]


def _bundle_stamp() -> str:
    try:
        stat = BUNDLE.stat()
    except OSError:
        return "-"
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def inline_svg(svg: str, chart_id: str) -> Markup:
    """Return ECharts' SVG as markup to place inside a chart's box (scaled to fill it).

    Its ids (clip paths) are renamed after ``chart_id``: zrender numbers them per V8 context,
    so two SVGs of one page, drawn by different processes or cached, could share them. Its
    ``<style>`` (hover rules for a chart nobody hovers yet) is dropped. Refuses
    (``RenderError``) anything that is not well-formed SVG of the elements ECharts writes, or
    that carries an event handler or a ``javascript:`` URL: the SVG holds text from the
    options (lab and analyte names), and zrender does not escape attribute values.
    """
    svg = _ZR_ID.sub(f"{check_chart_id(chart_id)}-ssr-", _STYLE.sub("", svg))
    if "<!" in svg or "<?" in svg:  # no DOCTYPE/ENTITY (entity expansion), no PI
        raise RenderError("the SVG holds a declaration")
    try:
        root = ElementTree.fromstring(svg)  # noqa: S314 (no DTD possible, checked above)
    except ElementTree.ParseError as exc:
        raise RenderError(f"not well-formed SVG: {exc}") from exc
    for el in root.iter():
        tag = el.tag.removeprefix(_SVG_NS)
        if tag not in _ALLOWED_TAGS:
            raise RenderError(f"unexpected element <{tag}> in the SVG")
        for name, value in el.attrib.items():
            if name.lower().startswith("on") or "javascript:" in value.lower():
                raise RenderError(f"unexpected attribute {name!r} in the SVG")
    head, sep, rest = svg.partition(">")
    if not head.startswith("<svg ") or not sep:
        raise RenderError("the SVG does not start with <svg>")
    head = _set_attr(_set_attr(head, "width", "100%"), "height", "100%")
    # Safe: parsed above as plain SVG without scripts, handlers or javascript: URLs.
    return Markup(f'{head} class="qc-chart__ssr" role="img" aria-hidden="true">{rest}')  # noqa: S704


def _set_attr(head: str, name: str, value: str) -> str:
    start = head.find(f' {name}="')
    if start < 0:
        return f'{head} {name}="{value}"'
    end = head.index('"', start + len(name) + 3)
    return f'{head[:start]} {name}="{value}"{head[end + 1:]}'


_PX = re.compile(r"^(\d{1,4})px$")
#: The process's renderer (lazy: V8 starts at the first chart drawn).
renderer = Renderer()
atexit.register(renderer.close)


def chart_svgs(charts, count: int, cache_dir: Path | None = None) -> dict[str, Markup]:
    """Return ``{chart_id: inline SVG}`` for the first ``count`` charts (page order).

    ``charts`` are :class:`qcwx.reports.document.Chart`-like (``chart_id``, ``options``,
    ``height`` in px). ``cache_dir`` keeps the SVGs on disk for good (a published report's
    charts never change). A chart that cannot be drawn here is left out (and logged): the
    browser draws it.
    """
    out: dict[str, Markup] = {}
    for chart in list(charts)[:max(0, count)]:
        size = _PX.match(str(chart.height or ""))
        if not size:
            continue
        try:
            svg = _svg(chart.options, int(size.group(1)), cache_dir)
            out[chart.chart_id] = inline_svg(svg, chart.chart_id)
        except RenderError as exc:
            if not renderer.broken:  # the disabled renderer was logged once already
                log.warning("chart SSR failed for %s, drawn by the browser: %s",
                            chart.chart_id, exc)
    return out


def _svg(options: dict, height: int, cache_dir: Path | None) -> str:
    text = options_text(options)
    key = fingerprint(text, WIDTH, height)
    path = cache_dir / f"{key}.svg" if cache_dir else None
    if path is not None and path.is_file():
        return path.read_text(encoding="utf-8")
    svg = renderer.render_text(text, key, height, WIDTH)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(svg, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # a read-only instance folder only costs the next render
            log.warning("chart SSR: cannot keep %s: %s", path, exc)
    return svg
