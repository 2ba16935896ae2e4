"""Peer pages in a phone-sized Debian chromium: correct numbers, live filter counts, no errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login_in_browser
from tests.factories import PASSWORD
from tests.peer.conftest import build_peer_world, expected, month_start, raw_values

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("QCWX_SCREENSHOTS", "/tmp/qcwx-shots"))
PEER = ("r1", "r2", "r3", "r4", "r5")
ALL = PEER + ("b1", "b2", "s1")


@pytest.fixture
def peer_facts(live_db):
    w = build_peer_world()
    live_db.commit()
    start = month_start(w.today)
    lv1 = w.level(1)
    peer_ids = [w.systems[n].id for n in PEER]
    all_ids = [w.systems[n].id for n in ALL]
    facts = {
        "tech": w.users["tech_r1"].username, "center": w.users["center"].username,
        "lab": w.labs["r1"].id, "ts": w.systems["r1"].id, "level": lv1.id, "analyte": w.glu.id,
        "own_name": w.labs["r1"].hospital.name,
        "others": {w.labs[n].anon_code: w.labs[n].hospital.name for n in ALL if n != "r1"},
        "peer": expected(raw_values(peer_ids, lv1.id, start, w.today), peer_ids, peer_ids[0]),
        "all": expected(raw_values(all_ids, lv1.id, start, w.today), all_ids, all_ids[0]),
    }
    live_db.close()  # end the read transaction so the server can write
    return facts


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_lab_comparison_page_shows_the_recomputed_numbers(live_server, phone, peer_facts):
    f = peer_facts
    login_in_browser(phone, live_server, f["tech"], PASSWORD)
    phone.goto(f"{live_server}/peer/labs/{f['lab']}")
    block = phone.locator(f".pe-level[data-ts='{f['ts']}'][data-level='{f['level']}']")
    block.wait_for()
    exp = f["peer"]
    assert block.locator("[data-field=sdi]").inner_text() == f"{exp.sdi:+.2f}"
    assert block.locator("[data-field=group-mean]").inner_text() == f"{exp.group_mean:.2f}"
    assert block.locator("[data-field=cvr]").inner_text() == f"{exp.cvr:.2f}"
    assert block.locator("[data-field=rank]").inner_text() == (
        f"你在 5 家中排第 {exp.bias_rank}")
    assert "同组 · 5 家 · 25 个结果" in block.inner_text()
    phone.wait_for_selector(".pe-spark canvas")
    assert_phone_layout(phone)
    shot(phone, "peer-lab")
    assert phone.console_errors == []


def test_lot_chart_page_filters_live_and_keeps_peers_anonymous(live_server, phone, peer_facts):
    f = peer_facts
    login_in_browser(phone, live_server, f["tech"], PASSWORD)
    phone.goto(f"{live_server}/peer/lot?level={f['level']}&analyte={f['analyte']}")
    phone.wait_for_selector("#pe-lab-comparison canvas")
    summary = phone.locator("#group-summary")
    assert summary.get_attribute("data-level") == "all"
    assert float(summary.get_attribute("data-mean")) == pytest.approx(f["all"].group_mean,
                                                                      rel=1e-9)
    assert f"{f['all'].group_mean:.2f}" in summary.inner_text()
    body = phone.inner_text("body")
    assert f["own_name"] in body
    for code, name in f["others"].items():
        assert code in body and name not in body
    shot(phone, "peer-lot")

    phone.click("summary.pe-filters__summary")
    phone.locator("label.pe-opt", has_text="罗氏").first.click()
    # A locator expectation, not wait_for_function: a string predicate is eval'd in the
    # page, which the site's CSP (script-src 'self') forbids.
    expect(phone.locator("#pe-size")).to_contain_text("5 家实验室 · 25 个结果")
    shot(phone, "peer-lot-filter-open")
    phone.click("#apply-filters")
    phone.wait_for_selector("#group-summary[data-level='peer']")
    assert phone.locator("#group-summary").get_attribute("data-labs") == "5"
    assert float(phone.locator("#group-summary").get_attribute("data-mean")) == pytest.approx(
        f["peer"].group_mean, rel=1e-9)
    phone.wait_for_selector("#pe-sdi-cvr canvas")
    shot(phone, "peer-lot-filtered")
    assert phone.console_errors == []


#: Layout facts of a page on the phone, by the house rules (tests/browser/test_walk_pages.py):
#: the page itself never scrolls sideways; every control's effective tap area (itself or a
#: label of it) is at least 44 × 44 px; text is at least 14 px, or 12 px when declared
#: secondary (``--qc-text: secondary``, or inside small/sub/sup/th/caption).
LAYOUT = """(scope) => {
  const doc = document.documentElement, root = document.querySelector(scope) || document.body;
  const shown = (el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden';
  const big = (r) => r.width >= 43.5 && r.height >= 43.5;
  const small = [], tiny = [];
  const targets = 'a[href], button, input:not([type=hidden]), select, textarea, summary';
  for (const el of root.querySelectorAll(targets)) {
    const areas = [el, ...(el.labels || [])].filter(shown).map((e) => e.getBoundingClientRect());
    if (areas.length && !areas.some(big)) {
      const r = el.getBoundingClientRect();
      small.push((el.textContent || el.name).trim().slice(0, 12) + ' ' + r.width + '×' + r.height);
    }
  }
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement, text = n.textContent.trim();
    if (!text || !shown(el) || el.closest('noscript, option, select, svg')) continue;
    const cs = getComputedStyle(el), size = parseFloat(cs.fontSize);
    const secondary = cs.getPropertyValue('--qc-text').trim() === 'secondary'
      || !!el.closest('small, sub, sup, th, caption, figcaption');
    if (size < (secondary ? 12 : 14) - 0.01) tiny.push(el.className + ' ' + size + ' ' + text);
  }
  return {overflow: doc.scrollWidth - doc.clientWidth, small: small, tiny: tiny};
}"""


def assert_phone_layout(page, scope: str = ".pe-page") -> None:
    facts = page.evaluate(LAYOUT, scope)
    assert facts["overflow"] <= 0, "the page itself scrolls sideways"
    assert facts["small"] == [], "tap targets under 44 × 44 px"
    assert facts["tiny"] == [], "text under 14 px (12 px when secondary)"


def test_centre_matrix_renders_on_a_phone(live_server, phone, peer_facts):
    f = peer_facts
    login_in_browser(phone, live_server, f["center"], PASSWORD)
    phone.goto(f"{live_server}/peer/centre?metric=sdi")
    phone.wait_for_selector("#matrix")
    assert phone.locator("#matrix tbody tr").count() >= 8
    assert "A/B 级项目占比高者在前" in phone.inner_text("#ranking-rule")
    assert_phone_layout(phone)
    shot(phone, "peer-centre")
    # The lab column stays put, with its rank and A/B share, while the analytes scroll.
    first = phone.locator("#matrix tbody tr").first.locator("th")
    before = first.bounding_box()
    phone.locator(".pe-matrix-wrap").evaluate("box => { box.scrollLeft = 600; }")
    after = first.bounding_box()
    assert after["x"] == pytest.approx(before["x"], abs=1) and after["x"] + after["width"] < 390
    assert "第1名" in first.inner_text() and "A/B" in first.inner_text()
    first.locator("a").click()
    phone.wait_for_url(f"{live_server}/peer/labs/*")
    phone.goto(f"{live_server}/peer/centre/nccl")
    phone.wait_for_selector("#nccl")
    assert_phone_layout(phone)
    total = phone.locator("#nccl tbody tr").first.locator("td").first.bounding_box()
    assert total["x"] + total["width"] <= 390  # the overall pass rate is on screen
    shot(phone, "peer-nccl")
    assert phone.console_errors == []


def test_exception_report_and_lot_members_fit_a_phone(live_server, phone, peer_facts):
    f = peer_facts
    login_in_browser(phone, live_server, f["center"], PASSWORD)
    phone.goto(f"{live_server}/peer/centre/exceptions?period=r30&kind=few_results&min_n=11")
    phone.wait_for_selector("#exc-few_results")
    assert_phone_layout(phone)
    assert phone.locator(".pe-card").count() == int(
        phone.locator(".pe-pager").first.get_attribute("data-total")) == 16
    shot(phone, "peer-exceptions")
    phone.goto(f"{live_server}/peer/lot?level={f['level']}&analyte={f['analyte']}")
    phone.wait_for_selector("#pe-lab-comparison canvas")
    assert_phone_layout(phone)
    phone.locator("#members a.pe-labcell").first.click()
    phone.wait_for_url(f"{live_server}/peer/labs/*")
    assert phone.console_errors == []


def test_admin_lists_keep_lab_names_on_one_line(live_server, phone, peer_facts):
    f = peer_facts
    login_in_browser(phone, live_server, f["center"], PASSWORD)
    phone.goto(f"{live_server}/admin/lab/")
    cells = phone.locator("td.col-hospital")
    assert cells.count() >= 8
    line = float(phone.evaluate(
        "() => parseFloat(getComputedStyle(document.querySelector('td.col-hospital')).lineHeight)"
        " || 24"))
    heights = [cells.nth(i).bounding_box()["height"] for i in range(cells.count())]
    assert max(heights) < 2 * line + 24  # one line of text plus padding, never a column
    assert_phone_layout(phone, "body")
    shot(phone, "admin-labs")
