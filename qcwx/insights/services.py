"""Cause localisation: find each test system's bias shifts and name their likely cause.

The statistics are :mod:`qcwx.qcstats.shifts`; here they meet the data: daily mean z of
every test system of the analyte in the region (so labs on the same lot can be compared),
the dated lot changes, limit and rule versions and out-of-control records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from qcwx.catalog.models import TestSystem
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.insights import queries
from qcwx.insights.models import CHANGE_KINDS, TestSystemChange
from qcwx.iqc.models import CAUSE_CATEGORIES
from qcwx.orgs.models import User
from qcwx.orgs.scopes import lab_label, root_region_id
from qcwx.qcstats import shifts as sh
from qcwx.timeutil import local_today, to_local

LOT_KIND_LABELS = {"reagent_lot": "试剂批号", "calibrator_lot": "校准品批号",
                   "qc_lot": "质控品批号"}
EVENT_LABELS = CHANGE_KINDS | {"limits": "启用新靶值", "rules": "更改质控规则",
                               "action": "失控处理记录"}
#: Words in an out-of-control record that mean something was done to the analyser or method.
MAINTENANCE_WORDS = re.compile(r"维护|保养|维修|更换|清洗|校准|电极|光源|灯|管路|探针|故障")


@dataclass
class Finding:
    """One detected shift of one test system with its likely cause."""

    ts: TestSystem
    day: date
    shift: sh.Shift
    cause: sh.Attribution
    lab_name: str = ""
    summary: str = ""
    recovery: bool = False


@dataclass
class Timeline:
    """A test system's daily mean z, its shifts and everything that changed."""

    ts: TestSystem
    dates: list[date]
    z: np.ndarray
    findings: list[Finding]
    events: list[sh.ChangeEvent] = field(default_factory=list)


def _detect(systems: list[TestSystem], zmap: dict) -> dict[int, tuple]:
    """Return per system (PeerSystem without lots, its shifts, its dates)."""
    out = {}
    for ts in systems:
        dates, z = zmap.get(ts.id, ([], np.array([])))
        found = sh.detect_shifts(z)
        shifts = tuple((dates[s.start], s.direction) for s in found)
        out[ts.id] = (sh.PeerSystem(ts.id, ts.lab_id, {}, shifts), found, dates)
    return out


def _local_events(ts: TestSystem, rows: list[TestSystemChange]) -> list[sh.ChangeEvent]:
    """Return what changed in this test system: lots, calibration, limits, rules, upkeep."""
    events = [sh.ChangeEvent(r.changed_on, r.kind, (f"{r.kind_label} {r.lot_number}"
                                                   if r.lot_number else r.kind_label)
                             + (f"：{r.note}" if r.note else ""))
              for r in rows]
    seen = set()
    for lim in queries.limit_versions(ts.id):
        if (lim.version, lim.effective_from) not in seen and lim.version > 1:
            seen.add((lim.version, lim.effective_from))
            events.append(sh.ChangeEvent(lim.effective_from, "limits",
                                         f"启用第 {lim.version} 版靶值：{lim.reason}"))
    for rule in queries.rule_versions(ts.id):
        events.append(sh.ChangeEvent(to_local(rule.created_at).date(), "rules",
                                     f"第 {rule.version} 版质控规则：{rule.reason}"))
    for run_date, rec in queries.action_records(ts.id):
        text = " ".join(t for t in (rec.description, rec.action_taken) if t)
        if text and (MAINTENANCE_WORDS.search(text) or rec.cause_category in (
                "instrument", "calibration", "reagent")):
            cause = CAUSE_CATEGORIES.get(rec.cause_category or "", "未填原因")
            events.append(sh.ChangeEvent(run_date, "action", f"失控处理（{cause}）：{text}"))
    # on the same day a registered change comes before the record of its consequence
    return sorted(events, key=lambda e: (e.day, e.kind == "action"))


def analyse(actor: User, systems: list[TestSystem], only: list[TestSystem] | None = None,
            since: date | None = None) -> tuple[list[Finding], dict]:
    """Detect shifts of ``systems`` and attribute those of ``only`` (default: all).

    Attribution compares each shift with the shifts of every other system of the same analyte
    in ``systems`` that shares a lot. Returns the findings (day ≥ ``since``) and the daily z.
    """
    ids = [ts.id for ts in systems]
    zmap = queries.daily_z(queries.results(ids))
    rows = queries.changes_by_system(queries.changes(ids))
    state = _detect(systems, zmap)
    by_analyte: dict[int, list[TestSystem]] = {}
    for ts in systems:
        by_analyte.setdefault(ts.analyte_id, []).append(ts)
    findings = []
    for ts in only if only is not None else systems:
        _, found, dates = state[ts.id]
        local = None
        for s in found:
            day = dates[s.start]
            if since is not None and day < since:
                continue
            peers = [sh.PeerSystem(p.id, p.lab_id, queries.lots_on(p, rows[p.id], day),
                                   state[p.id][0].shifts) for p in by_analyte[ts.analyte_id]]
            me = next(p for p in peers if p.system_id == ts.id)
            local = local if local is not None else _local_events(ts, rows[ts.id])
            cause = (sh.Attribution("local", changes=tuple(sh.nearby_changes(day, local)))
                     if is_recovery(s) else sh.attribute(me, day, s.direction, peers, local))
            findings.append(Finding(ts, day, s, cause, lab_label(actor, ts.lab),
                                    describe(cause, s, day), is_recovery(s)))
    return findings, zmap


def is_recovery(shift: sh.Shift) -> bool:
    """Return whether the change brings the level back near the target (a fix, not a fault)."""
    return abs(shift.after) < 1.0 and abs(shift.after) < abs(shift.before)


def describe(cause: sh.Attribution, shift: sh.Shift, day: date) -> str:
    """Return the one-sentence Chinese conclusion a supervisor reads."""
    way = "升高" if shift.direction > 0 else "降低"
    head = f"{day:%Y-%m-%d} 起平均 Z 值{way} {abs(shift.size):.1f} SD"
    if is_recovery(shift):
        fix = f"，应与「{cause.changes[0][1].text}」有关" if cause.changes else ""
        return f"{head}，回到靶值附近（恢复）{fix}。"
    if cause.scope == "shared":
        lot = cause.lot.split(":", 1)[-1] if cause.lot else ""
        return (f"{head}；使用同一{LOT_KIND_LABELS[cause.lot_kind]} {lot} 的 "
                f"{cause.labs_on_lot} 家实验室中 {cause.labs_shifted} 家同期同向偏移，"
                f"最可能的原因是该{LOT_KIND_LABELS[cause.lot_kind]}。")
    if not cause.changes:
        return f"{head}；仅本实验室偏移，前后 7 天内没有登记的变更，请排查仪器与操作。"
    gap, first = cause.changes[0]
    when = "当天" if gap == 0 else (f"前 {-gap} 天" if gap < 0 else f"后 {gap} 天")
    return f"{head}；仅本实验室偏移，最接近的变更是偏移{when}的「{first.text}」。"


def timeline(actor: User, ts: TestSystem) -> Timeline:
    """Return one test system's timeline with the shifts attributed (peers: its region)."""
    # the whole region tree shares the lot: compare with every lab of it
    systems = queries.region_systems(root_region_id(ts.lab.hospital.region_id), ts.analyte_id)
    if ts not in systems:
        systems.append(ts)
    findings, zmap = analyse(actor, systems, only=[ts])
    dates, z = zmap.get(ts.id, ([], np.array([])))
    rows = queries.changes([ts.id])
    return Timeline(ts, dates, z, findings, _local_events(ts, rows))


def region_findings(actor: User, region_id: int, since: date) -> list[Finding]:
    """Return every shift since ``since`` in the region's test systems in scope, newest first."""
    systems = queries.region_systems(region_id)
    scoped = queries.scoped_region_systems(actor, region_id)
    findings, _ = analyse(actor, systems, only=scoped, since=since)
    return sorted(findings, key=lambda f: (f.day, f.ts.id), reverse=True)


def record_change(actor: User, ts: TestSystem, form) -> TestSystemChange:
    """Record a dated change of ``ts`` (kind, date, lot for lot kinds, note); flushes."""
    kind = (form.get("kind") or "").strip()
    if kind not in CHANGE_KINDS:
        raise UserError("请选择变更类型", field="kind")
    try:
        day = date.fromisoformat((form.get("changed_on") or "").strip())
    except ValueError:
        raise UserError("日期格式应为 YYYY-MM-DD", field="changed_on") from None
    if day > local_today(ts.lab.timezone):
        raise UserError("变更日期不能晚于今天", field="changed_on")
    lot = (form.get("lot_number") or "").strip() or None
    if kind in ("reagent_lot", "calibrator_lot") and not lot:
        raise UserError("更换批号时请填写新批号", field="lot_number")
    if lot and len(lot) > 64:
        raise UserError("批号不能超过 64 个字符", field="lot_number")
    note = (form.get("note") or "").strip() or None
    if note and len(note) > 255:
        raise UserError("说明不能超过 255 个字符", field="note")
    row = TestSystemChange(test_system_id=ts.id, kind=kind, lot_number=lot, changed_on=day,
                           note=note, created_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    return row
