"""Peer pages in a phone-sized Debian chromium: correct numbers, live filter counts, no errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    phone.wait_for_function(
        "document.getElementById('pe-size').textContent.includes('5 家实验室 · 25 个结果')")
    shot(phone, "peer-lot-filter-open")
    phone.click("#apply-filters")
    phone.wait_for_selector("#group-summary[data-level='peer']")
    assert phone.locator("#group-summary").get_attribute("data-labs") == "5"
    assert float(phone.locator("#group-summary").get_attribute("data-mean")) == pytest.approx(
        f["peer"].group_mean, rel=1e-9)
    phone.wait_for_selector("#pe-sdi-cvr canvas")
    shot(phone, "peer-lot-filtered")
    assert phone.console_errors == []


def test_centre_matrix_renders_on_a_phone(live_server, phone, peer_facts):
    f = peer_facts
    login_in_browser(phone, live_server, f["center"], PASSWORD)
    phone.goto(f"{live_server}/peer/centre?metric=sdi")
    phone.wait_for_selector("#matrix")
    assert phone.locator("#matrix tbody tr").count() >= 8
    shot(phone, "peer-centre")
    phone.goto(f"{live_server}/peer/centre/nccl")
    phone.wait_for_selector("#nccl")
    shot(phone, "peer-nccl")
    assert phone.console_errors == []
