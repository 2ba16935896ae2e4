"""The sigma-rules advisor's one-click apply, end to end in a phone-sized Debian chromium.

A supervisor opens the test system's σ page from the rules page's header link, sees the
advised rule set beside the current one, taps once, lands on the rules page with the new
version in force (the radio buttons show it) and the reason stored as the advice said.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.qcstats.rulesets import sigma_rule_set
from tests import factories as f
from tests.browser.conftest import login_in_browser
from tests.factories import PASSWORD
from tests.peer.conftest import build_peer_world

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("QCWX_SCREENSHOTS", "/tmp/qcwx-shots"))


@pytest.fixture
def advisor_facts(live_db):
    w = build_peer_world()
    sup = f.user("supervisor", lab_=w.labs["r1"])
    live_db.commit()
    facts = {"ts_id": w.systems["r1"].id, "sup": sup.username, "month": w.month}
    live_db.close()
    return facts


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_supervisor_adopts_the_sigma_rules_with_one_tap(live_server, live_db, phone,
                                                         advisor_facts):
    ts_id = advisor_facts["ts_id"]
    login_in_browser(phone, live_server, advisor_facts["sup"], PASSWORD)
    phone.goto(f"{live_server}/ts/{ts_id}/rules")
    phone.click("text=σ设计")
    phone.wait_for_selector("#advisor")
    phone.goto(f"{live_server}/analytics/sigma/ts/{ts_id}?period=month"
               f"&month={advisor_facts['month']}")
    advisor = phone.locator("#advisor")
    sigma = float(advisor.get_attribute("data-sigma"))
    reason = advisor.get_attribute("data-reason")
    advised = sigma_rule_set(sigma)
    codes = [c for c, role in advised.items() if role != "off"]
    assert phone.locator("#advised-rules li").all_inner_texts() == codes
    assert "1-2s（警告）" in phone.locator("#current-rules").inner_text()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"page is {width}px wide on a 390px phone"
    shot(phone, "sigma-advisor")

    phone.click("#apply-advice")
    phone.wait_for_url(f"{live_server}/ts/{ts_id}/rules")
    assert reason in phone.locator(".qc-flash").inner_text()
    for code, role in advised.items():
        assert phone.locator(f"input[name='rule_{code}'][value='{role}']").is_checked(), code
    shot(phone, "sigma-advisor-applied")

    live_db.expire_all()
    row = live_db.scalar(select(m.RuleSet).where(m.RuleSet.test_system_id == ts_id)
                         .order_by(m.RuleSet.version.desc()))
    assert row.rules == advised and row.reason == reason
    phone.goto(f"{live_server}/analytics/sigma/ts/{ts_id}?period=month"
               f"&month={advisor_facts['month']}")
    assert "当前规则已与推荐规则一致" in phone.inner_text("#advisor")
    assert phone.console_errors == []


def test_analytics_pages_fit_a_phone_and_draw_their_charts(live_server, phone, browser,
                                                           advisor_facts, tmp_path):
    login_in_browser(phone, live_server, advisor_facts["sup"], PASSWORD)
    csv = tmp_path / "pairs.csv"
    csv.write_text("样本号,X 仪器,Y 仪器\n" + "".join(
        f"S{i},{x},{y}\n" for i, (x, y) in enumerate(zip(
            [1.0, 2.1, 2.9, 4.2, 5.0, 6.1, 7.0, 8.2, 8.9, 10.1],
            [1.1, 2.0, 3.2, 4.5, 5.1, 6.5, 7.2, 8.8, 9.4, 10.9], strict=True))), "utf-8")
    phone.goto(f"{live_server}/analytics/comparisons")
    phone.select_option("#analyte_id", label="葡萄糖（GLU，mmol/L）")
    phone.set_input_files("#file", str(csv))
    phone.click("#upload-form button[type=submit]")
    phone.wait_for_selector("#comparison")
    assert phone.get_attribute("#comparison", "data-pb-slope").startswith("1.06944")
    phone.wait_for_function("() => document.querySelectorAll('canvas').length >= 2")
    shot(phone, "instrument-comparison")
    pages = {"comparison": None, "periods": "/analytics/periods",
             "sigma-lab": f"/analytics/sigma/lab?period=month&month={advisor_facts['month']}"}
    for name, path in pages.items():
        if path:
            phone.goto(f"{live_server}{path}")
            shot(phone, f"analytics-{name}")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{name} is {width}px wide on a 390px phone"
    desktop = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = desktop.new_page()
    login_in_browser(page, live_server, advisor_facts["sup"], PASSWORD)
    page.goto(f"{live_server}/analytics/sigma/lab?period=month&month={advisor_facts['month']}")
    page.wait_for_selector("canvas")
    shot(page, "analytics-sigma-lab-desktop")
    desktop.close()
    assert phone.console_errors == []
