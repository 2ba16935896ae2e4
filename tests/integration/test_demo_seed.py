"""The demo seed: a realistic region whose injected errors the real rule engine catches."""

from __future__ import annotations

import copy
import hashlib
from collections import Counter, defaultdict
from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import func, select

from qcwx import models as m
from qcwx.demo.seed import DEMO_PASSWORDS, INJECTED, seed
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs.scopes import region_subtree
from qcwx.orgs.services import authenticate
from qcwx.qcstats import peer
from tests.fixtures.app import make_test_app, rolled_back

DAYS = 40
END = date(2026, 11, 20)
SYSTEMATIC = {"2-2s", "4-1s", "10x"}
_fresh_sqlite: dict[str, str] = {}


def _fingerprint() -> str:
    """Hash every stored value by natural key (no ids), in a fixed order."""
    rows = db.session.execute(
        select(m.Hospital.code, m.Analyte.code, m.Instrument.model, m.QcRun.run_date,
               m.QcLevel.level_index, m.QcResult.value_text)
        .join(m.Lab, m.Lab.hospital_id == m.Hospital.id)
        .join(m.TestSystem, m.TestSystem.lab_id == m.Lab.id)
        .join(m.Analyte, m.Analyte.id == m.TestSystem.analyte_id)
        .join(m.Instrument, m.Instrument.id == m.TestSystem.instrument_id)
        .join(m.QcRun, m.QcRun.test_system_id == m.TestSystem.id)
        .join(m.QcResult, m.QcResult.run_id == m.QcRun.id)
        .join(m.QcLevel, m.QcLevel.id == m.QcResult.qc_level_id)).all()
    digest = hashlib.sha256()
    for row in sorted(tuple(str(v) for v in r) for r in rows):
        digest.update("|".join(row).encode())
    return f"{len(rows)}:{digest.hexdigest()}"


@pytest.fixture(scope="module")
def demo(app):
    """Seed once per backend in one outer transaction, rolled back after the module."""
    with rolled_back(app):
        summary = seed(days=DAYS, end=END)
        yield SimpleNamespace(summary=summary, injected=copy.deepcopy(INJECTED),
                              fingerprint=_fingerprint())


def _in_demo_city():
    """Return the condition "the hospital is in the demo city or one of its districts"."""
    city = select(m.Region.id).where(m.Region.code == "DEMO").scalar_subquery()
    return m.Hospital.region_id.in_(region_subtree(city))


def _region_systems() -> list[m.TestSystem]:
    return list(db.session.scalars(
        select(m.TestSystem).join(m.Lab).join(m.Hospital)
        .where(_in_demo_city()).order_by(m.TestSystem.id)))


def _system(lab_code: str, analyte: str, model: str) -> m.TestSystem:
    return db.session.scalars(
        select(m.TestSystem).join(m.Lab, m.Lab.id == m.TestSystem.lab_id)
        .join(m.Analyte, m.Analyte.id == m.TestSystem.analyte_id)
        .join(m.Instrument, m.Instrument.id == m.TestSystem.instrument_id)
        .where(m.Lab.code == lab_code, m.Analyte.code == analyte, m.Instrument.model == model)
    ).one()


def _fired(ts: m.TestSystem, start: date, end: date) -> dict[date, set[str]]:
    rows = db.session.execute(
        select(m.QcRun.run_date, m.Violation.rule_code, m.Violation.levels)
        .join(m.Violation, m.Violation.run_id == m.QcRun.id)
        .where(m.QcRun.test_system_id == ts.id, m.Violation.active,
               m.QcRun.run_date >= start, m.QcRun.run_date <= end)).all()
    out: dict[date, set[str]] = defaultdict(set)
    for day, rule, _levels in rows:
        out[day].add(rule)
    return out


# ---------------------------------------------------------------------------- the region
def test_demo_region_has_thirty_odd_hospitals_of_mixed_level_and_type(demo):
    hospitals = list(db.session.scalars(
        select(m.Hospital).where(_in_demo_city()).order_by(m.Hospital.id)))
    assert len(hospitals) >= 30
    assert {h.level for h in hospitals} == {"一级", "二级", "三级"}
    assert {"综合医院", "中医医院", "妇幼保健院", "社区卫生服务中心", "民营医院"} <= {
        h.type for h in hospitals}
    assert hospitals[0].name == "示范市第一人民医院"
    assert all(len(h.labs) == 1 and h.labs[0].name == "检验科" for h in hospitals)


def test_anonymous_lab_codes_do_not_follow_hospital_order(demo):
    codes = [lab.anon_code for lab in db.session.scalars(
        select(m.Lab).join(m.Hospital).where(_in_demo_city())
        .order_by(m.Hospital.id))]
    assert sorted(codes) == [f"L{k:03d}" for k in range(1, len(codes) + 1)]
    assert codes != sorted(codes)


def test_catalogue_has_specs_instruments_reagents_and_two_level_lots(demo):
    systems = _region_systems()
    analytes = {ts.analyte for ts in systems}
    assert len(analytes) >= 12
    for analyte in analytes:
        spec = [s for s in analyte.specs if s.spec_set == "WS/T 403-2024" and s.active]
        assert len(spec) == 1 and spec[0].allowable_cv > 0 and spec[0].tea_pct > 0
        assert "WS/T 403-2024" in spec[0].source
        assert analyte.plausible_low is not None and analyte.plausible_high > analyte.plausible_low
    glu = next(a for a in analytes if a.code == "GLU").specs[0]
    assert (glu.tea_abs, glu.tea_threshold, glu.tea_pct) == (0.21, 3.0, 7.0)
    assert len({ts.instrument.maker for ts in systems}) >= 4
    assert {"科华", "利德曼", "九强"} & {ts.reagent.maker for ts in systems}
    methods = {ts.method.name for ts in systems if ts.analyte.code == "GLU"}
    assert {"己糖激酶法", "葡萄糖氧化酶法"} <= methods
    lots = Counter(ts.qc_lot.lot_number for ts in systems)
    assert len(lots) >= 2 and lots.most_common(1)[0][1] > len(systems) / 2


def test_every_test_system_has_two_levels_and_versioned_limits_per_level(demo):
    systems = _region_systems()
    labs = {ts.lab_id for ts in systems}
    for lab_id in labs:
        assert len({ts.analyte_id for ts in systems if ts.lab_id == lab_id}) >= 12
    limits = db.session.scalars(select(m.ControlLimit).order_by(m.ControlLimit.version)).all()
    by_ts = defaultdict(lambda: defaultdict(list))
    for row in limits:
        by_ts[row.test_system_id][row.qc_level_id].append(row)
    first_kind = Counter()
    for ts in systems:
        assert [lv.level_index for lv in ts.levels] == [1, 2]
        assert set(by_ts[ts.id]) == {lv.id for lv in ts.levels}
        for versions in by_ts[ts.id].values():
            first = versions[0]
            assert first.version == 1 and first.target_sd > 0
            assert first.effective_from == END - timedelta(days=DAYS - 1)
            assert first.reason == {"established": "前20天数据建立暂定靶值",
                                    "fixed": "采用质控品说明书靶值"}[first.kind]
            assert all(v.kind == first.kind for v in versions)
            assert first.kind == "established" or len(versions) == 1
            assert all("累积在控数据" in v.reason for v in versions[1:])
        first_kind[by_ts[ts.id][ts.levels[0].id][0].kind] += 1
    assert 0.15 < first_kind["fixed"] / len(systems) < 0.35


def test_demo_users_of_every_role_log_in_with_the_documented_passwords(demo):
    assert set(DEMO_PASSWORDS) == {"admin", "center", "center_a", "center_b", "expert",
                                   "director", "supervisor", "tech", "tech2"}
    users = {u: authenticate(u, p) for u, p in DEMO_PASSWORDS.items()}
    assert all(users.values())
    assert {u: users[u].role for u in users} == {
        "admin": "admin", "center": "center", "center_a": "center", "center_b": "center",
        "expert": "expert", "director": "director",
        "supervisor": "supervisor", "tech": "technician", "tech2": "technician"}
    assert all(len(p) >= 8 for p in DEMO_PASSWORDS.values())
    hospital1 = users["director"].hospital
    assert hospital1.name == "示范市第一人民医院"
    assert users["supervisor"].lab.hospital_id == users["tech"].lab.hospital_id == hospital1.id
    assert users["tech2"].lab_id != users["tech"].lab_id
    assert users["center"].region.code == users["expert"].region.code == "DEMO"
    assert users["center"].region.level == "city"
    districts = {users["center_a"].region, users["center_b"].region}
    assert {(r.code, r.level, r.parent.code) for r in districts} == {
        ("DEMO-A", "district", "DEMO"), ("DEMO-B", "district", "DEMO")}


def test_demo_hospitals_are_split_between_the_two_districts(demo):
    hospitals = list(db.session.scalars(
        select(m.Hospital).where(_in_demo_city()).order_by(m.Hospital.id)))
    by_district = Counter(h.region.code for h in hospitals)
    assert set(by_district) == {"DEMO-A", "DEMO-B"}
    assert abs(by_district["DEMO-A"] - by_district["DEMO-B"]) <= 1


# ---------------------------------------------------------------------------- the results
def test_results_are_stored_as_displayed_one_run_a_day_with_both_levels(demo):
    ts = _system(demo.injected["shift_1"]["lab_code"], "CREA", "cobas c702")
    runs = list(db.session.scalars(select(m.QcRun).where(m.QcRun.test_system_id == ts.id)
                                   .order_by(m.QcRun.run_date)))
    assert DAYS - 5 <= len(runs) <= DAYS and runs[-1].run_date <= END
    assert len({r.run_date for r in runs}) == len(runs)
    for run in runs:
        current = [r for r in run.results if r.is_current]
        assert len(current) == 2
        for r in current:
            assert float(r.value_text) == r.value
            assert "." not in r.value_text  # creatinine: 0 decimals
            assert r.submission_id is not None and r.entered_by.username == "tech"
    tech2_lab = authenticate("tech2", DEMO_PASSWORDS["tech2"]).lab_id
    k = db.session.scalars(select(m.QcResult).join(m.QcRun).join(m.TestSystem).join(m.Analyte)
                           .where(m.Analyte.code == "K", m.TestSystem.lab_id == tech2_lab)
                           .limit(1)).one()
    assert len(k.value_text.split(".")[1]) == 2


def test_community_hospitals_skip_weekends(demo):
    weekdays = db.session.execute(
        select(m.QcRun.run_date).join(m.TestSystem).join(m.Lab).join(m.Hospital)
        .where(m.Hospital.type == "社区卫生服务中心")).scalars().all()
    assert weekdays and all(day.weekday() < 5 for day in weekdays)


def test_runs_are_judged_with_statuses_violations_and_out_of_control_records(demo):
    statuses = dict(db.session.execute(
        select(m.QcRun.status, func.count()).group_by(m.QcRun.status)).all())
    assert set(statuses) == {"accept", "warning", "reject"}
    total = sum(statuses.values())
    assert statuses["accept"] / total > 0.8
    assert 0.005 < statuses["reject"] / total < 0.1
    rules = set(db.session.scalars(select(m.Violation.rule_code).distinct()))
    assert {"1-2s", "1-3s", "2-2s", "4-1s"} <= rules
    actions = Counter(db.session.scalars(select(m.CorrectiveAction.status)))
    assert sum(actions.values()) == statuses["reject"]
    assert actions["signed"] > 0 and actions["open"] > 0
    assert "示范数据已生成" in demo.summary
    audit = db.session.scalars(select(m.AuditLog).where(m.AuditLog.action == "seed")).one()
    assert audit.changes["results"] > 0 and audit.changes["days"] == DAYS


# ---------------------------------------------------------------------------- injected errors
def test_injected_shifts_fire_a_systematic_rule_in_their_lab_and_period(demo):
    shifts = [e for e in demo.injected.values() if e["kind"] == "shift"]
    assert len(shifts) >= 2
    for event in shifts:
        model = event["instrument"].split(" ", 1)[1]
        ts = _system(event["lab_code"], event["analyte"], model)
        assert ts.id == event["test_system_id"] and ts.lab.anon_code == event["anon_code"]
        fired = _fired(ts, event["start"], event["end"])
        assert SYSTEMATIC & set().union(*fired.values()), event


def test_injected_trends_are_flagged(demo):
    trends = [e for e in demo.injected.values() if e["kind"] == "trend"]
    assert trends
    for event in trends:
        ts = db.session.get(m.TestSystem, event["test_system_id"])
        fired = set().union(*_fired(ts, event["start"], event["end"]).values())
        assert fired & set(event["expected_rules"]), event


def test_injected_outliers_fire_1_3s_on_their_day_and_level(demo):
    outliers = [e for e in demo.injected.values() if e["kind"] == "outlier"]
    assert len(outliers) >= 3
    for event in outliers:
        ts = db.session.get(m.TestSystem, event["test_system_id"])
        level_id = ts.levels[event["level_index"] - 1].id
        rows = db.session.execute(
            select(m.Violation.rule_code, m.Violation.levels).join(m.QcRun)
            .where(m.QcRun.test_system_id == ts.id, m.QcRun.run_date == event["start"],
                   m.Violation.active)).all()
        assert any(rule == "1-3s" and level_id in levels for rule, levels in rows), event
        run = db.session.scalars(select(m.QcRun).where(
            m.QcRun.test_system_id == ts.id, m.QcRun.run_date == event["start"])).one()
        assert run.status == "reject"


def test_biased_lab_is_in_control_but_unacceptable_against_its_peers(demo):
    event = demo.injected["bias_1"]
    assert event["analyte"] == "CREA" and event["size"] >= 8
    target = db.session.get(m.TestSystem, event["test_system_id"])
    statuses = Counter(db.session.scalars(
        select(m.QcRun.status).where(m.QcRun.test_system_id == target.id)))
    assert statuses["reject"] / sum(statuses.values()) < 0.15
    for level in target.levels:  # its own limits absorb the bias: no systematic signal
        latest = db.session.scalars(select(m.ControlLimit).where(
            m.ControlLimit.test_system_id == target.id, m.ControlLimit.qc_level_id == level.id)
            .order_by(m.ControlLimit.version.desc()).limit(1)).one()
        values = db.session.scalars(select(m.QcResult.value).join(m.QcRun).where(
            m.QcRun.test_system_id == target.id, m.QcResult.qc_level_id == level.id)).all()
        assert abs(np.mean(values) - latest.target_mean) < 0.5 * latest.target_sd
    peers = [ts for ts in _region_systems()
             if ts.analyte.code == "CREA" and ts.qc_lot_id == target.qc_lot_id]
    assert len({ts.lab_id for ts in peers}) >= 10
    for level in target.levels:
        means = {}
        for ts in peers:
            values = db.session.scalars(
                select(m.QcResult.value).join(m.QcRun)
                .where(m.QcRun.test_system_id == ts.id, m.QcResult.qc_level_id == level.id,
                       m.QcResult.is_current)).all()
            means[ts.id] = float(np.mean(values))
        group = peer.algorithm_a(list(means.values()))
        sdi = peer.sdi(means[target.id], group.mean, group.sd)
        assert sdi >= 2, (level.name, sdi)
        assert 7 <= peer.bias_pct(means[target.id], group.mean) <= 11


# ---------------------------------------------------------------------------- determinism
def test_seed_is_deterministic_across_fresh_databases(demo, tmp_path_factory):
    if "sqlite" not in _fresh_sqlite:
        path = tmp_path_factory.mktemp("demo") / "fresh.sqlite3"
        fresh = make_test_app(f"sqlite:///{path}")
        with fresh.app_context():
            seed(days=DAYS, end=END)
            _fresh_sqlite["sqlite"] = _fingerprint()
            db.session.rollback()
            db.session.remove()
            db.engine.dispose()
    assert demo.fingerprint == _fresh_sqlite["sqlite"]


def test_seed_refuses_to_run_twice(demo):
    with pytest.raises(UserError):
        seed(days=DAYS, end=END)
