"""The supervisor's sign-off: pending work first, the one next step on top, all gaps at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from qcwx.iqc import services, targets
from qcwx.iqc.models import CorrectiveAction
from qcwx.timeutil import local_today


@pytest.fixture
def rejected(world, session):
    ts = world.systems["a"]
    for lv in ts.levels:
        targets.set_control_limit(world.users["supervisor"], ts, lv, mean=5.0, sd=0.2,
                                  kind="fixed", effective_from=local_today() - timedelta(days=9),
                                  reason="靶值")
    verdict = services.submit_run(world.users["technician"], test_system_id=ts.id,
                                  run_date=local_today(), values={"1": "9.0", "2": "5.0"})
    session.commit()
    return session.get(CorrectiveAction, verdict.action_id)


def test_pending_records_come_before_the_board(world, rejected, login):
    html = login(world.users["supervisor"]).get("/").get_data(as_text=True)
    assert html.index("<h2>失控处理</h2>") < html.index("<h2>今日质控</h2>")


def test_every_missing_field_is_named_at_once(world, rejected, login):
    client = login(world.users["technician"])
    resp = client.post(f"/actions/{rejected.id}", data={"step": "complete"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    for message in ("请选择失控原因类别", "请填写原因分析", "请填写纠正措施", "请填写复测结果"):
        assert message in html
    assert "请补全以下 4 项" in html


def test_the_page_shows_the_next_step_and_a_signed_record_reads_closed(world, rejected, login):
    tech = login(world.users["technician"])
    page = tech.get(f"/actions/{rejected.id}").get_data(as_text=True)
    assert "下一步：填写处理记录" in page and 'id="action-link"' not in page  # no self-link
    tech.post(f"/actions/{rejected.id}", data={
        "step": "complete", "cause_category": "calibration", "description": "校准过期",
        "action_taken": "重新校准", "rerun_result": "复测在控"})
    sup = login(world.users["supervisor"])
    assert "下一步：审核签字" in sup.get(f"/actions/{rejected.id}").get_data(as_text=True)
    sup.post(f"/actions/{rejected.id}", data={"step": "sign", "approve": "1", "comment": "同意"})
    page = sup.get(f"/actions/{rejected.id}").get_data(as_text=True)
    assert "已签字，本记录已关闭" in page
    assert "请暂停发出本批患者报告" not in page and "本批失控已处理" in page
