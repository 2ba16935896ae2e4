"""Reads for cause localisation and integrity signals: daily z, dated changes, lots in use.

Everything is loaded in a few set-based queries per request (one for the results of all
test systems in question, one for their limits), never one query per system.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select

from qcwx.catalog.models import TestSystem
from qcwx.extensions import db
from qcwx.insights.models import LOT_CHANGE_KINDS, TestSystemChange
from qcwx.iqc.models import ControlLimit, CorrectiveAction, QcResult, QcRun, RuleSet
from qcwx.orgs.models import Hospital, Lab, User
from qcwx.orgs.scopes import lab_ids_in_scope, region_subtree


def region_systems(region_id: int, analyte_id: int | None = None) -> list[TestSystem]:
    """Return the active test systems of a region and the regions below it (one analyte or all)."""
    stmt = (select(TestSystem).join(Lab, Lab.id == TestSystem.lab_id)
            .join(Hospital, Hospital.id == Lab.hospital_id)
            .where(Hospital.region_id.in_(region_subtree(region_id)), TestSystem.active))
    if analyte_id is not None:
        stmt = stmt.where(TestSystem.analyte_id == analyte_id)
    return list(db.session.scalars(stmt.order_by(TestSystem.id)))


def scoped_region_systems(actor: User, region_id: int) -> list[TestSystem]:
    """Return the region's active test systems inside the actor's scope."""
    labs = set(db.session.scalars(lab_ids_in_scope(actor)))
    return [ts for ts in region_systems(region_id) if ts.lab_id in labs]


def results(ts_ids: list[int], start: date | None = None, *,
            detail: bool = False) -> pd.DataFrame:
    """Return current results (ts, level, run_date, value) with target, target SD and z.

    ``detail`` adds ``value_text`` and ``entered_at`` (the integrity signals need them;
    reading them doubles the query time, so the shift analysis leaves them out).
    """
    cols = ["ts_id", "level_id", "run_date", "value"]
    extra = [QcResult.value_text, QcResult.entered_at] if detail else []
    cols += ["value_text", "entered_at"] if detail else []
    if not ts_ids:
        return pd.DataFrame(columns=[*cols, "z", "target", "target_sd"])
    stmt = (select(QcRun.test_system_id, QcResult.qc_level_id, QcRun.run_date, QcResult.value,
                   *extra)
            .join(QcResult, QcResult.run_id == QcRun.id)
            .where(QcRun.test_system_id.in_(ts_ids), QcResult.is_current))
    if start is not None:
        stmt = stmt.where(QcRun.run_date >= start)
    # plain tuples: pandas probes Row objects key by key (2 s for 100 000 rows)
    frame = pd.DataFrame([tuple(r) for r in db.session.execute(stmt)], columns=cols)
    if frame.empty:  # a test system without results yet (a new one, or one just set up)
        return pd.DataFrame(columns=[*cols, "z", "target", "target_sd"])
    steps: dict[tuple[int, int], list] = defaultdict(list)
    for row in db.session.execute(
            select(ControlLimit.test_system_id, ControlLimit.qc_level_id,
                   ControlLimit.effective_from, ControlLimit.target_mean, ControlLimit.target_sd)
            .where(ControlLimit.test_system_id.in_(ts_ids))
            .order_by(ControlLimit.effective_from, ControlLimit.version)):
        steps[(row[0], row[1])].append((row[2], row[3], row[4]))
    frame = frame.sort_values(["ts_id", "level_id", "run_date"]).reset_index(drop=True)
    ordinal = np.array([d.toordinal() for d in frame["run_date"]], dtype=np.int64)
    value = frame["value"].to_numpy(float)
    target, target_sd = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
    keys = frame[["ts_id", "level_id"]].to_numpy()
    cuts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1 if len(frame) else []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(frame)], strict=True):
        s = steps.get((int(keys[lo, 0]), int(keys[lo, 1])))
        if not s:
            continue
        starts = np.array([st[0].toordinal() for st in s])
        idx = np.searchsorted(starts, ordinal[lo:hi], side="right") - 1
        ok = idx >= 0
        target[lo:hi][ok] = np.array([st[1] for st in s])[idx[ok]]
        target_sd[lo:hi][ok] = np.array([st[2] for st in s])[idx[ok]]
    frame["target"], frame["target_sd"] = target, target_sd
    frame["z"] = (value - target) / target_sd
    return frame


def daily_z(frame: pd.DataFrame) -> dict[int, tuple[list[date], np.ndarray]]:
    """Return per test system the run dates and the daily mean z over levels (judged days)."""
    judged = frame.dropna(subset=["z"])
    daily = judged.groupby(["ts_id", "run_date"], sort=True)["z"].mean()
    ts_ids = daily.index.get_level_values(0).to_numpy()
    days = daily.index.get_level_values(1)
    values = daily.to_numpy(float)
    out = {}
    cuts = np.flatnonzero(np.diff(ts_ids) != 0) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(values)], strict=True):
        if hi > lo:
            out[int(ts_ids[lo])] = (list(days[lo:hi]), values[lo:hi])
    return out


def changes(ts_ids: list[int]) -> list[TestSystemChange]:
    """Return the dated changes of the test systems, oldest first."""
    if not ts_ids:
        return []
    return list(db.session.scalars(
        select(TestSystemChange).where(TestSystemChange.test_system_id.in_(ts_ids))
        .order_by(TestSystemChange.changed_on, TestSystemChange.id)))


def changes_by_system(rows: list[TestSystemChange]) -> dict[int, list[TestSystemChange]]:
    """Group changes by test system, keeping their date order."""
    out: dict[int, list[TestSystemChange]] = defaultdict(list)
    for row in rows:
        out[row.test_system_id].append(row)
    return out


def lots_on(ts: TestSystem, rows: list[TestSystemChange], day: date,
            lead_days: int = 2) -> dict[str, str | None]:
    """Return the reagent/calibrator lot in use by ``day`` (+ lead) and the QC lot.

    ``rows`` are the changes of ``ts`` only, oldest first (see :func:`changes_by_system`).
    """
    cutoff = day + timedelta(days=lead_days)
    lots: dict[str, str | None] = dict.fromkeys(LOT_CHANGE_KINDS)
    for row in rows:
        if row.changed_on > cutoff:
            break
        if row.kind in LOT_CHANGE_KINDS:
            lots[row.kind] = row.lot_number
    lots["qc_lot"] = f"{ts.qc_lot.material_id}:{ts.qc_lot.lot_number}"
    return lots


def limit_versions(ts_id: int) -> list[ControlLimit]:
    """Return the control-limit versions of one test system (one row per level and version)."""
    return list(db.session.scalars(select(ControlLimit).where(
        ControlLimit.test_system_id == ts_id).order_by(ControlLimit.effective_from)))


def rule_versions(ts_id: int) -> list[RuleSet]:
    """Return the rule-set versions of one test system."""
    return list(db.session.scalars(select(RuleSet).where(RuleSet.test_system_id == ts_id)
                                   .order_by(RuleSet.version)))


def action_records(ts_id: int) -> list[tuple[date, CorrectiveAction]]:
    """Return the out-of-control records of one test system with their run dates."""
    return [(day, rec) for day, rec in db.session.execute(
        select(QcRun.run_date, CorrectiveAction).join(
            CorrectiveAction, CorrectiveAction.run_id == QcRun.id)
        .where(QcRun.test_system_id == ts_id).order_by(QcRun.run_date))]
