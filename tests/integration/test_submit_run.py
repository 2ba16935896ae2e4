"""The submission service: validation, idempotency, evaluation, outbox, corrections."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from qcwx.alerts.models import OutboxMessage
from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.iqc import evaluation, services, targets
from qcwx.iqc.models import CorrectiveAction, QcResult, QcRun, Violation
from qcwx.timeutil import local_today

MEAN = {1: 5.0, 2: 15.0}
SD = {1: 0.2, 2: 0.5}


@pytest.fixture
def ts(world):
    system = world.systems["a"]
    supervisor = world.users["supervisor"]
    start = local_today() - timedelta(days=60)
    for lv in system.levels:
        targets.set_control_limit(supervisor, system, lv, mean=MEAN[lv.level_index],
                                  sd=SD[lv.level_index], kind="fixed", effective_from=start,
                                  reason="说明书靶值")
    return system


def submit(world, ts, z1, z2=None, *, day=0, run_no=1, client_id=None, role="technician"):
    values = {"1": f"{MEAN[1] + z1 * SD[1]:.3f}"}
    if z2 is not None:
        values["2"] = f"{MEAN[2] + z2 * SD[2]:.3f}"
    return services.submit_run(world.users[role], test_system_id=ts.id,
                               run_date=local_today() - timedelta(days=30 - day), run_no=run_no,
                               values=values, client_id=client_id)


def count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_in_control_run_is_accepted_and_writes_no_alert(session, world, ts):
    verdict = submit(world, ts, 0.5, -0.3)
    assert verdict.status == "accept" and verdict.rules == ()
    assert [round(v.z, 3) for v in verdict.values] == [0.5, -0.3]
    assert count(session, OutboxMessage) == 0


def test_1_3s_rejects_opens_an_action_and_writes_one_outbox_row(session, world, ts):
    verdict = submit(world, ts, 3.2, 0.1)
    assert verdict.status == "reject"
    assert [r.rule for r in verdict.rules] == ["1-3s"] or "1-3s" in [r.rule for r in verdict.rules]
    fired = {r.rule: r for r in verdict.rules}
    assert fired["1-3s"].levels == ("水平1",)
    assert "随机误差" in fired["1-3s"].error or "系统误差" in fired["1-3s"].error
    assert verdict.action_id is not None
    rows = session.scalars(select(OutboxMessage)).all()
    assert len(rows) == 1 and rows[0].payload["status"] == "reject"
    assert rows[0].payload["rules"] == [r.rule for r in verdict.rules]


def test_1_2s_is_a_warning_exactly_at_two_sd(session, world, ts):
    assert submit(world, ts, 2.0, 0.0).status == "warning"
    assert submit(world, ts, 1.99, 0.0, day=1).status == "accept"


def test_2_2s_fires_across_levels_in_one_run(session, world, ts):
    verdict = submit(world, ts, 2.1, 2.2)
    assert "2-2s" in {r.rule for r in verdict.rules} and verdict.status == "reject"


def test_2_2s_fires_within_level_across_two_runs(session, world, ts):
    assert submit(world, ts, 2.1, 0.0, day=0).status == "warning"
    verdict = submit(world, ts, 2.3, 0.0, day=1)
    assert "2-2s" in {r.rule for r in verdict.rules}


def test_same_client_id_returns_stored_verdict_without_duplicates(session, world, ts):
    first = submit(world, ts, 3.5, 0.0, client_id="phone-123")
    again = submit(world, ts, 3.5, 0.0, client_id="phone-123")
    assert again.duplicate and again.run_id == first.run_id and again.status == first.status
    assert count(session, QcResult) == 2
    assert count(session, OutboxMessage) == 1


def test_same_client_id_with_other_values_is_a_conflict(session, world, ts):
    submit(world, ts, 0.0, 0.0, client_id="phone-9")
    with pytest.raises(Conflict) as exc:
        submit(world, ts, 1.0, 0.0, client_id="phone-9")
    assert exc.value.field == "client_id"


def test_level_already_entered_in_the_run_needs_a_correction(session, world, ts):
    submit(world, ts, 0.0, 0.0)
    with pytest.raises(Conflict, match="更正"):
        submit(world, ts, 0.1, None)


@pytest.mark.parametrize("values, field, message", [
    ({"1": "abc"}, "level_1", "不是有效数字"),
    ({"1": "nan"}, "level_1", "不是有效数字"),
    ({"1": "9999"}, "level_1", "合理范围"),
    ({"9": "5.0"}, "level", "不属于"),
    ({"1": "", "2": ""}, "values", "至少填写"),
    ({}, "values", "至少填写"),
])
def test_bad_values_are_refused_with_a_chinese_message_naming_the_field(
        session, world, ts, values, field, message):
    with pytest.raises(UserError) as exc:
        services.submit_run(world.users["technician"], test_system_id=ts.id,
                            run_date=local_today(), values=values)
    assert exc.value.field == field and message in exc.value.message
    assert count(session, QcRun) == 0 and count(session, QcResult) == 0


def test_full_width_digits_are_accepted(session, world, ts):
    verdict = services.submit_run(world.users["technician"], test_system_id=ts.id,
                                  run_date=local_today(), values={"1": "５．０２"})
    assert verdict.values[0].value == pytest.approx(5.02)
    assert verdict.values[0].value_text == "５．０２"


def test_future_date_is_refused(session, world, ts):
    with pytest.raises(UserError) as exc:
        services.submit_run(world.users["technician"], test_system_id=ts.id,
                            run_date=local_today() + timedelta(days=1), values={"1": "5"})
    assert exc.value.field == "run_date"


def test_test_system_outside_scope_is_not_found(session, world, ts):
    with pytest.raises(NotFound):
        services.submit_run(world.users["technician_b"], test_system_id=ts.id,
                            run_date=local_today(), values={"1": "5"})


def test_centre_cannot_submit(session, world, ts):
    with pytest.raises(Forbidden):
        services.submit_run(world.users["center"], test_system_id=ts.id,
                            run_date=local_today(), values={"1": "5"})


def test_run_without_limits_is_pending_not_judged(session, world):
    system = world.systems["b"]
    verdict = services.submit_run(world.users["technician_b"], test_system_id=system.id,
                                  run_date=local_today(), values={"1": "50"})
    assert verdict.status == "pending" and "靶值" in verdict.summary


def test_correction_is_a_new_version_and_reevaluates(session, world, ts):
    verdict = submit(world, ts, 3.5, 0.0)
    assert verdict.status == "reject"
    result = session.scalar(select(QcResult).where(QcResult.run_id == verdict.run_id,
                                                   QcResult.qc_level_id == ts.levels[0].id))
    with pytest.raises(UserError):
        services.correct_result(world.users["technician"], result.id, "5.02", "  ")
    fixed = services.correct_result(world.users["technician"], result.id, "5.02", "小数点录错")
    assert fixed.status == "accept"
    versions = session.scalars(select(QcResult).where(
        QcResult.run_id == verdict.run_id, QcResult.qc_level_id == ts.levels[0].id)
        .order_by(QcResult.version)).all()
    assert [(r.version, r.is_current, r.value_text) for r in versions] == [
        (1, False, f"{MEAN[1] + 3.5 * SD[1]:.3f}"), (2, True, "5.02")]
    assert versions[1].reason == "小数点录错"
    assert count(session, Violation, Violation.active, Violation.run_id == verdict.run_id) == 0


def test_backdated_run_rejudges_later_runs(session, world, ts):
    submit(world, ts, 2.2, 0.0, day=5)
    assert submit(world, ts, 0.0, 0.0, day=6).status == "accept"
    later = submit(world, ts, 2.1, 0.0, day=7)
    assert "2-2s" not in {r.rule for r in later.rules}
    # a forgotten run between day 6 and 7 arrives late: day 6 run 2 beyond +2SD
    submit(world, ts, 2.4, 0.0, day=6, run_no=2)
    run7 = session.get(QcRun, later.run_id)
    assert run7.status == "reject"
    assert {v.rule_code for v in run7.violations if v.active} >= {"2-2s"}


def test_rejected_run_opens_exactly_one_action(session, world, ts):
    verdict = submit(world, ts, 3.6, 0.0)
    services.correct_result(world.users["technician"],
                            session.scalar(select(QcResult.id).where(
                                QcResult.run_id == verdict.run_id, QcResult.is_current,
                                QcResult.qc_level_id == ts.levels[0].id)), "5.9", "复核")
    assert count(session, CorrectiveAction, CorrectiveAction.run_id == verdict.run_id) == 1


def test_evaluation_reads_a_bounded_window(session, world, ts, monkeypatch):
    """Submitting one run loads at most a bounded number of earlier runs."""
    for d in range(25):
        submit(world, ts, 0.1 * (d % 3), -0.1, day=d)
    seen = []
    original = evaluation.series

    def spy(ts_, runs, *rest):
        seen.append(len(runs))
        return original(ts_, runs, *rest)

    monkeypatch.setattr(evaluation, "series", spy)
    submit(world, ts, 0.0, 0.0, day=26)
    assert seen and max(seen) <= 13


def test_worked_example_through_the_service(session, world):
    """QC_SPEC §1.3 run by run through submit_run (one level, mu 47, sigma 3)."""
    from tests.factories import analyte, qc_lot, test_system

    values = ("42.5 55.1 46.4 47.0 43.1 56.9 41.3 44.9 45.5 41.3 47.0 37.7 41.6 53.3 55.4 44.6 "
              "47.3 48.2 41.3 42.8 44.3 47.6 44.3 45.8 47.6 39.8 39.8 50.9 49.7 45.5 45.2 47.3 "
              "47.9 44.3 40.1 48.2 40.7 41.9 43.4 43.7 49.7 42.2 52.1 44.6 45.2 45.8 41.6 41.3 "
              "44.9 43.7 45.2 50.6 50.3 51.2 51.5 44.3 41.6").split()
    system = test_system(world.lab_a, analyte("CHOL", "胆固醇", "mg/dL", 1, 0, 1000), qc_lot(1))
    sup = world.users["supervisor"]
    start = local_today() - timedelta(days=len(values))
    targets.set_control_limit(sup, system, system.levels[0], mean=47, sd=3, kind="fixed",
                              effective_from=start, reason="例题")
    rules = dict.fromkeys(["1-2s"], "warning") | dict.fromkeys(
        ["1-3s", "2-2s", "R-4s", "4-1s", "8x", "10x"], "reject")
    targets.set_rule_set(sup, system, rules, "例题规则")
    expected = {2: {"1-2s"}, 6: {"1-2s", "1-3s"}, 12: {"1-2s", "1-3s"}, 14: {"1-2s"},
                15: {"1-2s", "2-2s"}, 26: {"1-2s"}, 27: {"1-2s", "2-2s"}, 35: {"1-2s"},
                37: {"1-2s"}, 40: {"4-1s"}, 51: {"8x"}, 55: {"4-1s"}}
    for i, text in enumerate(values, start=1):
        verdict = services.submit_run(world.users["technician"], test_system_id=system.id,
                                      run_date=start + timedelta(days=i - 1), values={"1": text})
        assert {r.rule for r in verdict.rules} == expected.get(i, set()), i
        want = ("reject" if expected.get(i, set()) - {"1-2s"} else
                "warning" if expected.get(i) else "accept")
        assert verdict.status == want, i
    assert date.today()  # keep the import used


def test_only_supervisors_and_above_change_limits_or_rules(session, world, ts):
    """The service itself refuses, so no capture channel or page can bypass the role check."""
    tech = world.users["technician"]
    with pytest.raises(UserError) as exc:
        targets.set_control_limit(tech, ts, ts.levels[0], mean=5, sd=0.2, kind="fixed",
                                  effective_from=local_today(), reason="x")
    assert exc.value.status == 403
    with pytest.raises(UserError):
        targets.set_rule_set(tech, ts, {"1-3s": "reject"}, "x")
    targets.set_rule_set(world.users["center"], ts, {"1-3s": "reject"}, "区域统一规则")
