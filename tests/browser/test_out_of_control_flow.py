"""A rejected run handled and signed off end to end in a phone-sized Debian chromium."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from qcwx.iqc import targets
from qcwx.timeutil import local_today
from tests.browser.conftest import PHONE, login_in_browser
from tests.factories import PASSWORD, build_world

pytestmark = pytest.mark.browser
SHOTS = Path(os.environ.get("QCWX_SCREENSHOTS", "/tmp/qcwx-shots"))


@pytest.fixture
def lab_world(live_db):
    world = build_world()
    ts = world.systems["a"]
    for lv, (mean, sd) in zip(ts.levels, ((5.0, 0.2), (15.0, 0.5)), strict=True):
        targets.set_control_limit(world.users["supervisor"], ts, lv, mean=mean, sd=sd,
                                  kind="fixed", effective_from=local_today() - timedelta(days=30),
                                  reason="说明书靶值")
    live_db.commit()
    facts = {"ts_id": ts.id, "tech": world.users["technician"].username,
             "sup": world.users["supervisor"].username}
    live_db.close()  # end the read transaction so the server can write
    return facts


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_rejected_run_is_handled_and_signed_off(live_server, browser, phone, lab_world):
    ts_id = lab_world["ts_id"]
    login_in_browser(phone, live_server, lab_world["tech"], PASSWORD)
    shot(phone, "home-technician")

    phone.goto(f"{live_server}/ts/{ts_id}")
    phone.fill("#level_1", "5.72")      # z = +3.6 → 1-3s
    phone.fill("#level_2", "15.1")
    shot(phone, "entry-filled")
    phone.click("#submit-btn")
    card = phone.locator("#verdict")
    card.wait_for()
    assert card.get_attribute("data-status") == "reject"
    assert "失控" in card.inner_text() and "1-3s" in card.inner_text()
    shot(phone, "entry-verdict-reject")

    phone.click("#action-link")
    phone.select_option("#cause_category", "reagent")
    phone.fill("#description", "试剂开瓶超过稳定期")
    phone.fill("#action_taken", "更换新瓶试剂并重新校准")
    phone.fill("#rerun_result", "水平1 5.04，水平2 15.2，均在控")
    phone.click("#complete-form button[type=submit]")
    phone.wait_for_selector("#action-status:has-text('待审核')")
    shot(phone, "action-submitted")
    action_url = phone.url

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="zh-CN")
    sup_page = context.new_page()
    login_in_browser(sup_page, live_server, lab_world["sup"], PASSWORD)
    assert "待审核" in sup_page.inner_text("body")
    sup_page.goto(action_url)
    sup_page.fill("#comment", "同意，处理得当")
    sup_page.click("#sign-form button[value='1']")
    sup_page.wait_for_selector("#action-status:has-text('已签字')")
    shot(sup_page, "action-signed")

    sup_page.goto(f"{live_server}/ts/{ts_id}/chart")
    sup_page.wait_for_selector("canvas")
    shot(sup_page, "lj-chart")
    context.close()
    assert phone.console_errors == []
