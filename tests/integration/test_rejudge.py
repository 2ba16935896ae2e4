"""Re-judging equals judging from scratch (QC_SPEC 1.2), for every re-judged run.

The stored verdict of every run is compared with an independent full evaluation: z computed
here from the stored current values and the limit versions in force on each run's date, then
the pure rule engine over the whole history. Corrections, back-dated runs and limit changes
on random sparse multi-level histories (a level run once a week, a 3-level system with a
sparse level) must leave no stored verdict different from it.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from qcwx.extensions import db
from qcwx.iqc import services, targets
from qcwx.iqc.models import ControlLimit, QcResult, QcRun, Violation
from qcwx.qcstats import westgard
from qcwx.timeutil import local_today
from tests import factories as f

MEAN, SD = 10.0, 0.5


def make_system(world, n_levels: int, start, rule_set=None):
    system = f.test_system(world.lab_a, f.analyte("RJ", "重判项目", "mmol/L", 3, -100, 100),
                           f.qc_lot(n_levels))
    sup = world.users["supervisor"]
    for lv in system.levels:
        targets.set_control_limit(sup, system, lv, mean=MEAN + lv.level_index, sd=SD,
                                  kind="fixed", effective_from=start, reason="说明书靶值")
    if rule_set is not None:
        targets.set_rule_set(sup, system, rule_set, "测试规则")
    return system


def text(level_index: int, z: float) -> str:
    return f"{MEAN + level_index + z * SD:.3f}"


def store(world, system, rows):
    """Store runs {day: {level_index: z}} in one batch through the one write path."""
    tech = world.users["technician"]
    start = local_today() - timedelta(days=200)
    inputs = [services.RunInput(system.id, start + timedelta(days=day),
                                {str(k): text(k, z) for k, z in levels.items()}, 1,
                                f"rj-{system.id}-{day}")
              for day, levels in sorted(rows.items())]
    prepared = services.prepare_runs(tech, "h5", inputs)
    assert [p.error for p in prepared if p.error] == []
    services.store_runs(tech, "h5", prepared)


def from_scratch(system):
    """Return {run id: (status, rules)} by an independent full evaluation of the history."""
    runs = list(db.session.scalars(select(QcRun).where(QcRun.test_system_id == system.id)
                                   .order_by(QcRun.run_date, QcRun.run_no)))
    levels = [lv.id for lv in system.levels]
    limits = db.session.scalars(select(ControlLimit).where(
        ControlLimit.test_system_id == system.id)).all()
    z = np.full((len(runs), len(levels)), np.nan)
    row = {r.id: i for i, r in enumerate(runs)}
    for res in db.session.scalars(select(QcResult).where(QcResult.run_id.in_(list(row)),
                                                         QcResult.is_current)):
        run = runs[row[res.run_id]]
        inforce = [c for c in limits if c.qc_level_id == res.qc_level_id
                   and c.effective_from <= run.run_date]
        if inforce:
            lim = max(inforce, key=lambda c: (c.effective_from, c.version))
            z[row[res.run_id], levels.index(res.qc_level_id)] = (
                (res.value - lim.target_mean) / lim.target_sd)
    ev = westgard.evaluate(z, targets.current_rule_set(system))
    out = {}
    for i, run in enumerate(runs):
        if np.isnan(z[i]).all():
            out[run.id] = ("pending", frozenset())
        else:
            out[run.id] = (ev[i].status, frozenset(v.rule for v in ev[i].violations))
    return out


def stored(system):
    runs = db.session.scalars(select(QcRun).where(QcRun.test_system_id == system.id)).all()
    rules = {}
    for run_id, code in db.session.execute(select(Violation.run_id, Violation.rule_code).join(
            QcRun).where(QcRun.test_system_id == system.id, Violation.active)):
        rules.setdefault(run_id, set()).add(code)
    db.session.expire_all()
    return {r.id: (r.status, frozenset(rules.get(r.id, ()))) for r in runs}


def run_of(system, day):
    start = local_today() - timedelta(days=200)
    return db.session.scalar(select(QcRun).where(QcRun.test_system_id == system.id,
                                                 QcRun.run_date == start + timedelta(days=day)))


def result_of(run, level_index):
    return next(r for r in run.results if r.is_current and r.level.level_index == level_index)


def test_correction_keeps_a_later_violation_that_needs_older_history(session, world):
    """The issue's reproduction: a sparse L1 whose 2of3-2s window reaches back past 12 runs."""
    start = local_today() - timedelta(days=200)
    system = make_system(world, 3, start)
    rows = {d: {2: 0.1 if d % 2 else -0.1} for d in range(31)}
    rows[0][1], rows[1][1], rows[14][1] = 2.2, 0.3, 2.3
    for d in range(15, 31):  # L1 daily again afterwards, so the newest run needs 12 runs only
        rows[d][1] = 0.1 if d % 2 else -0.1
    store(world, system, rows)
    assert run_of(system, 14).status == "reject"
    assert "2of3-2s" in stored(system)[run_of(system, 14).id][1]
    run13 = run_of(system, 13)
    services.correct_result(world.users["technician"], result_of(run13, 2).id, text(2, 0.15),
                            "复核")
    assert run_of(system, 14).status == "reject"
    assert stored(system) == from_scratch(system)


def test_value_typed_exactly_at_3sd_rejects_through_the_service(session, world):
    """(4.3 - 4.0) / 0.1 = 2.9999999999999982 in float64: still beyond 3 SD (QC_SPEC 1.1)."""
    start = local_today() - timedelta(days=10)
    system = f.test_system(world.lab_a, f.analyte("EX3", "边界项目", "mmol/L", 1, 0, 100),
                           f.qc_lot(1))
    targets.set_control_limit(world.users["supervisor"], system, system.levels[0], mean=4.0,
                              sd=0.1, kind="fixed", effective_from=start, reason="靶值")
    verdict = services.submit_run(world.users["technician"], test_system_id=system.id,
                                  run_date=start, values={"1": "4.3"})
    assert verdict.status == "reject" and {r.rule for r in verdict.rules} >= {"1-2s", "1-3s"}
    verdict = services.submit_run(world.users["technician"], test_system_id=system.id,
                                  run_date=start + timedelta(days=1), values={"1": "3.8"})
    assert "1-2s" in {r.rule for r in verdict.rules}  # exactly -2 SD


# ---------------------------------------------------------------- property
RULE_SETS = [None, dict.fromkeys(westgard.RULE_CODES, "reject") | {"1-2s": "warning",
                                                                     "7T": "warning"}]


@st.composite
def histories(draw):
    n_levels = draw(st.integers(1, 3))
    n_runs = draw(st.integers(14, 45))
    every = [draw(st.sampled_from([1, 1, 2, 7])) for _ in range(n_levels)]
    z = st.sampled_from([-3.1, -2.2, -2.0, -1.2, -0.4, 0.0, 0.3, 1.1, 1.6, 2.0, 2.4, 3.3])
    rows = {}
    for d in range(n_runs):
        levels = {k + 1: draw(z) for k in range(n_levels) if d % every[k] == 0}
        if levels:
            rows[d] = levels
    return n_levels, rows, draw(st.sampled_from(RULE_SETS))


OPERATIONS = st.sampled_from(["correct", "back_date", "limit"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(histories(), OPERATIONS, st.data())
def test_every_stored_verdict_equals_a_full_evaluation_after_any_change(
        session, world, history, operation, data):
    n_levels, rows, rule_set = history
    start = local_today() - timedelta(days=200)
    system = make_system(world, n_levels, start, rule_set)
    days = sorted(rows)
    if operation == "back_date":  # hold back a day, store the rest, then send it late
        late = data.draw(st.sampled_from(days))
        store(world, system, {d: v for d, v in rows.items() if d != late})
        assert stored(system) == from_scratch(system)
        store(world, system, {late: rows[late]})
    else:
        store(world, system, rows)
        assert stored(system) == from_scratch(system)
        if operation == "correct":
            run = run_of(system, data.draw(st.sampled_from(days)))
            level = data.draw(st.sampled_from(sorted(
                r.level.level_index for r in run.results if r.is_current)))
            services.correct_result(world.users["technician"], result_of(run, level).id,
                                    text(level, data.draw(st.sampled_from([-2.5, 0.0, 2.6]))),
                                    "更正")
        else:
            day = data.draw(st.sampled_from(days))
            lv = system.levels[data.draw(st.integers(0, n_levels - 1))]
            targets.set_control_limit(world.users["supervisor"], system, lv,
                                      mean=MEAN + lv.level_index + 0.4, sd=SD * 0.8,
                                      kind="fixed", effective_from=start + timedelta(days=day),
                                      reason="新靶值")
            services.evaluate_from(system, run_of(system, day), notify=False)
    assert stored(system) == from_scratch(system)
