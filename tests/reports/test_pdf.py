"""The PDF export: Debian chromium prints a report page offline, charts drawn, pages numbered."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from qcwx import charts
from qcwx.config import PROJECT_ROOT
from qcwx.reports import pdf
from tests.fixtures.app import IN_CI

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATIC = PROJECT_ROOT / "static"
HEADING = "检验科室内质控月报"
FOOTER_TITLE = "示范医院检验科 · 2026年11月"
ROWS = 160  # enough for several A4 pages


def lj_chart_html() -> str:
    points = [{"label": f"11-{d:02d} #1", "value": 5.0 + z * 0.2, "z": z, "status": s,
               "rules": [], "handled": None}
              for d, (z, s) in enumerate([(0.3, "accept"), (-1.1, "accept"), (2.3, "warning"),
                                          (0.8, "accept"), (-3.2, "reject"), (0.1, "accept"),
                                          (1.4, "accept"), (-0.6, "accept")], start=1)]
    chart = charts.levey_jennings(points, mean=5.0, sd=0.2, title="葡萄糖 水平1",
                                  unit="mmol/L", decimals=2, chart_id="lj-glu-1")
    return str(charts.render(chart, height="320px"))


def page_html(extra: str = "") -> str:
    rows = "".join(f"<tr><th>项目{i:03d} 葡萄糖</th><td>{5 + i / 100:.2f}</td><td>在控</td></tr>"
                   for i in range(ROWS))
    return f"""<!doctype html><html lang="zh-CN" data-print="true"><head><meta charset="utf-8">
<link rel="stylesheet" href="/static/css/app.css?v=1">
<link rel="stylesheet" href="/static/css/report-print.css">
<script src="/static/vendor/echarts.min.js?v=abc"></script>
<script src="/static/js/charts.js" defer></script>
<style>h1 {{ margin: 0; height: 40px; font-size: 24px; }}</style></head>
<body><main class="qc-main">
<nav class="qc-topbar">导航栏不应打印</nav>
<h1>{HEADING}</h1>
<figure class="rp-chart" style="margin:0">{lj_chart_html()}</figure>
{extra}
<table class="rp-table"><thead><tr><th>项目</th><th>均值</th><th>结论</th></tr></thead>
<tbody>{rows}</tbody></table>
</main></body></html>"""


@pytest.fixture(scope="module")
def chromium():
    path = pdf.chromium_path()
    if not Path(path).exists():
        if IN_CI:
            pytest.fail(f"chromium is required in CI but {path} is missing")
        pytest.skip("Debian chromium not installed (apt-get install chromium fonts-noto-cjk)")
    return path


@pytest.fixture(scope="module")
def printed(chromium, tmp_path_factory):
    """The test page printed once (with an external image that must not be fetched)."""
    started = time.monotonic()
    data = pdf.html_to_pdf(page_html('<img src="https://example.invalid/logo.png" alt="">'),
                           static_dir=STATIC, footer_title=FOOTER_TITLE, executable=chromium)
    seconds = time.monotonic() - started
    out = tmp_path_factory.mktemp("pdf") / "report.pdf"
    out.write_bytes(data)
    print(f"PDF: {len(data)} bytes in {seconds:.2f} s")  # noqa: T201 - shown with -s
    return out


def page_count(path: Path) -> int:
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True,
                              check=True).stdout
        return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    return len(re.findall(rb"/Type\s*/Page(?!s)", path.read_bytes()))


def test_prints_a_multi_page_a4_pdf(printed):
    data = printed.read_bytes()
    assert data.startswith(b"%PDF-")
    assert page_count(printed) >= 2  # the long table runs over


def page_words(path: Path) -> list[str]:
    """Return each page's text as its words joined by spaces (``pdftotext -bbox``).

    Plain ``pdftotext`` glues CJK words together (``第1/5页``); the words themselves are
    separate boxes, as the reader sees them (``第 1 / 5 页``).
    """
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) not installed")
    out = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True,
                         text=True, check=True).stdout
    return [" ".join(html.unescape(w) for w in re.findall(r"<word [^>]*>(.*?)</word>", page))
            for page in out.split("<page ")[1:]]


def test_every_page_is_numbered_and_the_chinese_heading_is_text(printed):
    pages = page_words(printed)
    text = "\n".join(pages)
    assert len(pages) == page_count(printed)
    assert HEADING in pages[0]
    assert "第 1 / " in pages[0] and FOOTER_TITLE in pages[0]
    total = len(pages)
    assert all(f"第 {n} / {total} 页" in page for n, page in enumerate(pages, start=1))
    assert "导航栏不应打印" not in text  # print CSS hides the navigation
    assert "项目159 葡萄糖" in text  # the whole table, last row included


def test_the_chart_is_drawn_on_page_one(printed, tmp_path):
    if not shutil.which("pdftoppm"):
        pytest.skip("pdftoppm (poppler-utils) not installed")
    subprocess.run(["pdftoppm", "-png", "-r", "96", "-f", "1", "-l", "1", "-singlefile",
                    str(printed), str(tmp_path / "page1")], check=True)
    page = Image.open(tmp_path / "page1.png").convert("RGB")
    assert abs(page.size[0] - 794) <= 1 and abs(page.size[1] - 1123) <= 1  # A4, 96 dpi
    # Content starts at the 16 mm top margin (60 px), the heading is 40 px high: the chart
    # (320 px) lies inside y 100–420, x 45–750.
    chart = page.crop((60, 110, 740, 400))
    grey = chart.convert("L")
    assert ImageStat.Stat(grey).stddev[0] > 8  # not a flat area
    assert sum(grey.histogram()[:200]) > 1000  # axes, labels, lines
    saturation = chart.convert("HSV").getchannel("S")
    assert sum(saturation.histogram()[100:]) > 300  # coloured points and limit lines
    image = page.convert("L")
    blank = image.crop((60, 1123 - 50, 740, 1123 - 45))  # in the bottom margin, no footer
    assert ImageStat.Stat(blank).stddev[0] < 1


def test_a_page_without_charts_prints_without_waiting(chromium):
    body = f"<!doctype html><html><body><h1>{HEADING}</h1><p>无图表</p></body></html>"
    started = time.monotonic()
    data = pdf.html_to_pdf(body, static_dir=STATIC, footer_title="t", executable=chromium)
    assert data.startswith(b"%PDF-") and time.monotonic() - started < pdf.CHART_TIMEOUT_MS / 1000


def test_charts_that_never_draw_are_an_error_not_a_blank_pdf(chromium, monkeypatch):
    monkeypatch.setattr(pdf, "CHART_TIMEOUT_MS", 1500)
    body = page_html().replace("/static/vendor/echarts.min.js", "/static/vendor/missing.js")
    with pytest.raises(pdf.PdfError, match="charts were not drawn"):
        pdf.html_to_pdf(body, static_dir=STATIC, footer_title="t", executable=chromium)


def test_a_missing_browser_is_a_clear_error(tmp_path):
    with pytest.raises(pdf.PdfError, match="QCWX_CHROMIUM_PATH"):
        pdf.html_to_pdf("<p>x</p>", static_dir=STATIC, footer_title="t",
                        executable=str(tmp_path / "no-chromium"))


def test_static_files_are_served_only_from_the_static_folder():
    assert pdf.static_file(STATIC, "/static/js/charts.js") == (STATIC / "js/charts.js").resolve()
    assert pdf.static_file(STATIC, "/static/../qcwx/config.py") is None
    assert pdf.static_file(STATIC, "/static/%2e%2e/qcwx/config.py") is None
    assert pdf.static_file(STATIC, "/static/js/nothing.js") is None
    assert pdf.static_file(STATIC, "/etc/passwd") is None


def test_the_task_caches_the_pdf_once_and_atomically(app, tmp_path, monkeypatch):
    from qcwx.reports.tasks import render_pdf

    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    fingerprint = "0123456789abcdef0123456789abcdef"
    calls = []

    def fake_print(html, *, static_dir, footer_title):
        calls.append((html, Path(static_dir), footer_title))
        return b"%PDF-1.4 fake"

    monkeypatch.setattr(pdf, "html_to_pdf", fake_print)
    with app.app_context():
        first = render_pdf.delay("<p>报告</p>", fingerprint, "标题").get()
        second = render_pdf("<p>报告</p>", fingerprint, "标题")
        assert first == second == str(tmp_path / "reports" / f"{fingerprint}.pdf")
        assert Path(first).read_bytes() == b"%PDF-1.4 fake"
        assert len(calls) == 1 and calls[0][1] == Path(app.static_folder)
        assert [p.name for p in (tmp_path / "reports").iterdir()] == [f"{fingerprint}.pdf"]
        with pytest.raises(ValueError):
            pdf.pdf_path("../../etc/passwd")
