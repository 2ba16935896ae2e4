"""Seed the demo region: 32 hospitals, their labs, users, catalogue and daily QC results.

Everything is drawn from one seeded ``numpy`` generator family, so the same call on an empty
database always stores the same values. The organisation and catalogue are created through
the ORM (and so audited row by row, :mod:`qcwx.demo.catalogue`); runs, submissions and
results (~54 000 runs and ~108 000 results for the default 120 days) go through the one
write path every capture channel takes (:func:`qcwx.iqc.services.prepare_runs` /
``store_runs``) and are judged there.

The plan (:mod:`qcwx.demo.plan`) and the simulation (:mod:`qcwx.demo.simulate`) come first.
Simulation of one test system × level (QC_SPEC §2, §5): the QC material's true concentration
× (1 + method bias + lab bias) plus noise with the lab's CV (30 % of the variance shared by
both levels of a run), plus small steps at each recalibration. Lab bias and CV are drawn
around the analyte's WS/T 403-2024 allowable bias and CV. On top of that come the events
listed in :data:`INJECTED`: shifts, trends, single outliers and one lab biased throughout.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import date, datetime, timedelta

import numpy as np
from sqlalchemy import bindparam, func, select, text, update

from qcwx.audit.models import AuditLog
from qcwx.catalog.models import TestSystem
from qcwx.demo import data as d
from qcwx.demo.catalogue import create_orgs, create_test_systems, create_users
from qcwx.demo.plan import (
    CLOSE_AFTER_DAYS,
    DEMO_PASSWORD,
    DEMO_PASSWORDS,
    INJECTED,
    LIMIT_ENTERED_AT,
    SUBMIT_AFTER_DAYS,
    LabPlan,
    SystemPlan,
    plan_labs,
    plan_systems,
    rngs,
)
from qcwx.demo.signals import inject_signals
from qcwx.demo.simulate import (
    apply_events,
    cumulative_updates,
    establish,
    place_events,
    plan_events,
    rounded,
    simulate,
)
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc import services as iqc_services
from qcwx.iqc import targets
from qcwx.iqc.models import ControlLimit, CorrectiveAction, QcResult, QcRun, Submission
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.orgs.scopes import region_subtree
from qcwx.qcstats import westgard
from qcwx.timeutil import local_today, to_utc

log = logging.getLogger(__name__)

__all__ = ["DEMO_PASSWORD", "DEMO_PASSWORDS", "INJECTED", "seed"]
# ---------------------------------------------------------------------------- limits & rules
def _store_limits(systems: list[SystemPlan], users: dict[str, User], dates: list[date]) -> int:
    """Store every limit version (audited like any ORM insert) in one flush.

    Rows are built directly rather than through ``targets.set_control_limit`` — ~3 000 calls
    with a query and a flush each — and carry what that service would: version, kind, who,
    why, from when.
    """
    rows = []
    for sp in systems:
        actor = sp.lab.signer or users["center"]
        for version, limit in enumerate(sp.limits, start=1):
            created = to_utc(datetime.combine(dates[limit.created], LIMIT_ENTERED_AT))
            rows += [ControlLimit(
                test_system_id=sp.ts.id, qc_level_id=level.id, version=version, kind=limit.kind,
                target_mean=float(limit.mean[j]), target_sd=float(limit.sd[j]),
                n_used=limit.n_used[j], effective_from=dates[limit.start], reason=limit.reason,
                created_by_id=actor.id, created_at=created)
                for j, level in enumerate(sp.ts.levels)]
    db.session.add_all(rows)
    db.session.flush()
    return len(rows)


def _custom_rules(kind: str) -> tuple[dict[str, str], str] | None:
    base = westgard.default_rule_set(2)
    if kind == "trend":
        return base | {"7T": "warning"}, "增加7T趋势规则，及早发现试剂降解等渐进性漂移"
    if kind == "sigma":
        return westgard.sigma_rule_set(5.5), "依据西格玛度量（5~6σ）采用Westgard西格玛规则"
    if kind == "strict":
        return (base | {"1-2.5s": "reject", "1-3s": "off"},
                "项目性能一般，采用1-2.5s提高误差检出率")
    return None


def _store_rule_sets(systems: list[SystemPlan], users: dict[str, User]) -> int:
    count = 0
    for sp in systems:
        custom = _custom_rules(sp.lab.rules)
        if custom is not None:
            targets.set_rule_set(sp.lab.signer or users["center"], sp.ts, custom[0], custom[1])
            count += 1
    return count


# ---------------------------------------------------------------------------- bulk rows
def _texts(values: np.ndarray, decimals: int) -> list[str]:
    return [f"{v:.{decimals}f}" for v in values]


def _store_results(systems: list[SystemPlan], dates: list[date], rng: np.random.Generator,
                   admin: User) -> tuple[int, int]:
    """Store every lab's runs through the one write path, as the labs would have sent them.

    ``prepare_runs`` checks them and ``store_runs`` writes runs, submissions and results
    with Core inserts and judges each test system once from its first run — the same code
    a phone entry or an upload takes, with the entry times the simulation drew. Labs
    without a named technician are entered by the platform admin (the demo loader).
    """
    midnight = [to_utc(datetime(day.year, day.month, day.day)) for day in dates]
    by_lab: dict[int, tuple[LabPlan, list]] = {}
    n_results = 0
    for sp in systems:
        idx = np.flatnonzero(sp.present)
        values = rounded(sp)[idx]
        texts = [_texts(values[:, j], sp.spec.decimals) for j in range(2)]
        start = 390 if sp.slot else 450  # emergency analysers run QC earlier
        minutes = rng.uniform(start, start + 100, size=idx.size)
        delay = rng.uniform(3, 40, size=idx.size)
        api = sp.lab.channel == "api"
        rows = by_lab.setdefault(id(sp.lab), (sp.lab, []))[1]
        for k, day in enumerate(idx):
            measured = midnight[day] + timedelta(minutes=float(minutes[k]))
            entered = measured + timedelta(minutes=1.0 if api else float(delay[k]))
            rows.append(iqc_services.RunInput(
                sp.ts.id, dates[day], {"1": texts[0][k], "2": texts[1][k]}, 1,
                f"demo-{sp.ts.id}-{dates[day]:%Y%m%d}-1", measured, entered))
            n_results += 2
    n_runs = 0
    for lab, rows in by_lab.values():
        actor = lab.technician or admin
        prepared = iqc_services.prepare_runs(actor, lab.channel, rows)
        refused = [p.error for p in prepared if p.error is not None]
        if refused:
            raise RuntimeError(f"demo rows refused: {refused[0].message}")
        iqc_services.store_runs(actor, lab.channel, prepared)
        n_runs += len(rows)
    _refresh_statistics()
    return n_runs, n_results


def _refresh_statistics() -> None:
    """Let SQLite's planner see the new row counts for the pages that read them next.

    Without statistics SQLite reads ``qc_result`` through the barely selective
    ``is_current`` index instead of ``run_id`` (17 ms instead of 0.3 ms per test system).
    (``ANALYZE TABLE`` on MariaDB would commit implicitly, so no.)
    """
    if db.session.get_bind().dialect.name == "sqlite":
        for table in (QcRun.__tablename__, QcResult.__tablename__, Submission.__tablename__):
            db.session.execute(text(f"ANALYZE {table}"))


_CAUSES = {
    "shift": ("calibration", "更换试剂批号或校准后出现系统偏移", "重新校准，复测质控两个水平均在控",
              "回顾失控期间的患者结果，对偏差超过允许总误差的标本重新检测并通知临床"),
    "trend": ("reagent", "质控结果逐日同向漂移，试剂开瓶时间过长或光源老化",
              "更换新开瓶试剂并重新校准，复测在控", "抽查失控期间的患者标本复测，差异在允许范围内"),
    "outlier": ("control", "单个水平偶发超限，质控品复溶或混匀不充分", "重新复溶质控品后复测在控",
                "无影响（复测在控，本批结果可发出）"),
    "random": ("random", "偶发随机误差", "重新检测质控品，结果在控", "无影响"),
}


def _close_old_actions(systems: list[SystemPlan], end: date) -> Counter:
    """Complete and sign the out-of-control records of earlier days, as the labs would have."""
    by_ts = {sp.ts.id: sp for sp in systems}
    kinds = {name: INJECTED[name] for sp in systems for name in sp.events if name in INJECTED}
    rows = db.session.execute(
        select(CorrectiveAction.id, QcRun.test_system_id, QcRun.run_date, QcRun.created_at)
        .join(QcRun, QcRun.id == CorrectiveAction.run_id)
        .where(QcRun.test_system_id.in_(list(by_ts)), CorrectiveAction.status == "open")).all()
    updates, done = [], Counter()
    table = CorrectiveAction.__table__
    if rows:  # a record opens when its run was judged, not when the demo was loaded
        db.session.execute(update(table).where(table.c.id == bindparam("_id")),
                           [{"_id": r[0], "opened_at": r[3]} for r in rows])
    for action_id, ts_id, run_date, created in rows:
        age = (end - run_date).days
        if age < SUBMIT_AFTER_DAYS:
            continue
        sp = by_ts[ts_id]
        cause = "random"
        for name in sp.events:
            ev = kinds.get(name)
            if ev and ev["start"] <= run_date <= ev["end"]:
                cause = ev["kind"]
        category, description, taken, impact = _CAUSES[cause]
        signed = age >= CLOSE_AFTER_DAYS
        completer = sp.lab.technician or sp.lab.signer
        updates.append({
            "_id": action_id, "status": "signed" if signed else "submitted",
            "cause_category": category, "description": description, "action_taken": taken,
            "rerun_result": "复测在控", "patient_impact": impact,
            "completed_by_id": completer.id if completer else None,
            "completed_at": created + timedelta(hours=2),
            "signed_by_id": sp.lab.signer.id if signed and sp.lab.signer else None,
            "signed_at": created + timedelta(days=1) if signed else None,
            "sign_comment": "同意" if signed else None})
        done["signed" if signed else "submitted"] += 1
    if updates:
        db.session.execute(update(table).where(table.c.id == bindparam("_id")), updates)
    return done


# ---------------------------------------------------------------------------- entry point
def seed(days: int = 120, *, seed_value: int = 20261125, end: date | None = None) -> str:
    """Create the demo region with ``days`` days of daily QC ending ``end``; return a summary.

    ``end`` defaults to yesterday in Asia/Shanghai, so today's QC can still be entered by
    hand. Flushes, never commits. Refuses to run twice (the region code ``DEMO`` exists).
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if db.session.scalar(select(Region.id).where(Region.code == d.REGION_CODE)) is not None:
        raise UserError("示范区域已存在，不能重复生成示范数据", status=409)
    end = end or local_today() - timedelta(days=1)
    dates = [end - timedelta(days=days - 1 - k) for k in range(days)]
    streams = rngs(seed_value)
    clock = _Clock()
    labs = plan_labs(streams["plan"])
    systems = plan_systems(labs, streams["params"])
    region = create_orgs(labs)
    users = create_users(region, labs)
    create_test_systems(labs, systems, end, streams["plan"])
    clock.lap("orgs, users, catalogue")
    simulate(systems, labs, dates, streams["noise"])
    establish(systems, dates)
    placed = place_events(plan_events(labs, systems, streams["events"]), systems, dates)
    cumulative_updates(systems, dates)
    apply_events(placed, dates)
    inject_signals(labs, systems, dates, streams["events"], users)
    n_limits = _store_limits(systems, users, dates)
    custom = _store_rule_sets(systems, users)
    clock.lap("simulation, limits")
    n_runs, n_results = _store_results(systems, dates, streams["times"], users["admin"])
    clock.lap("store and judge runs")
    actions = _close_old_actions(systems, end)
    status = Counter(dict(db.session.execute(
        select(QcRun.status, func.count()).join(TestSystem, TestSystem.id == QcRun.test_system_id)
        .join(Lab, Lab.id == TestSystem.lab_id).join(Hospital, Hospital.id == Lab.hospital_id)
        .where(Hospital.region_id.in_(region_subtree(region.id)))
        .group_by(QcRun.status)).all()))
    counts = {"hospitals": len(labs), "labs": len(labs), "test_systems": len(systems),
              "control_limits": n_limits, "runs": n_runs, "results": n_results,
              "reject": status["reject"], "warning": status["warning"], "custom_rule_sets": custom,
              "actions_signed": actions["signed"], "actions_submitted": actions["submitted"]}
    db.session.add(AuditLog(action="seed", entity="demo", entity_id=d.REGION_CODE, changes={
        "seed_value": seed_value, "days": days, "start": dates[0].isoformat(),
        "end": end.isoformat(), **counts, "injected": sorted(INJECTED),
        "note": "示范数据批量导入：批次、提交记录与结果为批量写入，未逐条记审计"}))
    db.session.flush()
    db.session.expire_all()  # bulk updates bypassed the identity map
    clock.lap("close actions, audit")
    log.info("demo seed timings: %s", clock.summary())
    return (f"示范数据已生成 demo seeded: {d.REGION_NAME} {len(labs)} 家医院/实验室、"
            f"{len(systems)} 个检测系统、{n_runs} 批次、{n_results} 个质控结果"
            f"（{dates[0]}～{end}，{days} 天）；"
            f"失控 {status['reject']} 批、警告 {status['warning']} 批；"
            f"注入事件 {len(INJECTED)} 个；用时 {clock.total():.1f} s")


class _Clock:
    """Lap timer for the seed's log line."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self.last))
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start

    def summary(self) -> str:
        return ", ".join(f"{name} {secs:.2f}s" for name, secs in self.laps)
