"""The printable out-of-control record: the run, its rules, the chart and the sign-off."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta

import pytest

from qcwx.iqc import actions, services, targets
from qcwx.iqc.models import CorrectiveAction
from qcwx.reports.record import build_record
from qcwx.timeutil import local_today


@pytest.fixture
def signed(world, session):
    ts = world.systems["a"]
    for lv in ts.levels:
        targets.set_control_limit(world.users["supervisor"], ts, lv, mean=5.0, sd=0.2,
                                  kind="fixed", effective_from=local_today() - timedelta(days=9),
                                  reason="靶值")
    for back in (3, 2, 1):
        services.submit_run(world.users["technician"], test_system_id=ts.id,
                            run_date=local_today() - timedelta(days=back),
                            values={"1": "5.1", "2": "4.9"})
    verdict = services.submit_run(world.users["technician"], test_system_id=ts.id,
                                  run_date=local_today(), values={"1": "9.0", "2": "5.0"})
    action = session.get(CorrectiveAction, verdict.action_id)
    actions.complete_action(world.users["technician"], action.id, cause_category="calibration",
                            description="校准过期", action_taken="重新校准",
                            rerun_result="复测在控", patient_impact="无")
    actions.sign_action(world.users["supervisor"], action.id, approve=True, comment="同意")
    session.commit()
    return action


def _table(report, key):
    return next(t for t in report.tables if t.key == key)


def test_the_record_report_holds_the_run_rules_chart_and_sign_off(world, signed):
    report = build_record(signed)
    values = _table(report, "质控结果")
    level1 = values.rows[0]
    assert level1[1] == 9.0 and level1[2] == 5.0 and level1[3] == 0.2
    assert level1[4] == pytest.approx((9.0 - 5.0) / 0.2)
    assert any(r[0] == "1-3s" for r in _table(report, "触发规则").rows)
    record = dict(_table(report, "处理记录").rows)
    assert record["原因分析"] == "校准过期" and record["审核签字"] == world.users[
        "supervisor"].display_name
    assert record["审核意见"] == "同意" and record["签字时间"]
    chart = report.charts[0].options
    assert len(chart["series"][0]["data"]) == 4  # the three runs before and this one


def test_only_the_records_scope_may_print_it(world, signed, login):
    client = login(world.users["technician_b"])
    assert client.get(f"/actions/{signed.id}.pdf").status_code == 404
    html = login(world.users["supervisor"]).get(f"/actions/{signed.id}").get_data(as_text=True)
    assert f'href="/actions/{signed.id}.pdf"' in html


@pytest.mark.browser
def test_the_record_prints_to_a_pdf_with_its_chart(world, signed, login):
    if not shutil.which("pdftotext"):
        pytest.skip("poppler-utils not installed")
    res = login(world.users["supervisor"]).get(f"/actions/{signed.id}.pdf")
    assert res.status_code == 200 and res.data[:4] == b"%PDF"
    text = subprocess.run(["pdftotext", "-", "-"], input=res.data, capture_output=True,
                          check=True).stdout.decode()
    assert "失控处理记录" in text and "校准过期" in text and "重新校准" in text
    images = subprocess.run(["pdfimages", "-list", "-"], input=res.data, capture_output=True,
                            check=True).stdout.decode().splitlines()[2:]
    assert len([i for i in images if i.strip()]) >= 2  # both levels' charts
