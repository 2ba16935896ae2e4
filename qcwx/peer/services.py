"""Peer-comparison writes: the moments cache, frozen months, saved groupings (flush only).

``refresh_after_submission`` is what the after-commit Celery task runs for the test system a
run was submitted to (or corrected, or re-judged after a limit change): it re-aggregates that
one system's in-control current results per level and day and writes only the days that
changed, so its cost depends on the system's own history, never on the size of its peer
group. Group statistics are then derived on read from the per-system moments (Algorithm A
over the member means takes milliseconds even for 5,000 labs), so a page is never more than
one task behind a submission.

``freeze_month`` computes a finished month once per region and stores it; an existing
snapshot is never recomputed (a region asked for explicitly answers 409). It works lot by lot:
peer groups never span QC lots (the group key starts with the QC level), so each lot is an
independent chunk — one SQL aggregation feeding :mod:`qcwx.peer.compute` — which is also how
the work splits across Celery workers at national scale (see ``bench/bench_peer_service.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass
from datetime import date

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update

from qcwx import followups
from qcwx.catalog.models import TestSystem
from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.iqc.models import QcResult, QcRun
from qcwx.orgs import scopes
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.peer import pending, queries
from qcwx.peer.filters import DIMENSIONS, Period, month_end, month_period, parse_filters
from qcwx.peer.models import (
    PeerLabDay,
    PeerSnapshot,
    PeerSnapshotLab,
    PeerTsState,
    SavedGrouping,
)
from qcwx.peer.queries import lot
from qcwx.peer.queries.frames import in_control, load_specs
from qcwx.timeutil import utcnow

log = logging.getLogger(__name__)

CENTRE_ROLES = ("center", "admin")
REFRESH_TASK = "qcwx.peer.refresh"
_PENDING_KEY = "qcwx.peer.refresh_ids"
REFRESH_CHUNK = 200
#: cached rows deleted per statement (three parameters each: within SQLite's 32,766)
DELETE_CHUNK = 1000
FREEZE_LOT_CHUNK = 1


@dataclass(frozen=True)
class RefreshResult:
    """What a cache refresh changed."""

    systems: int
    days_written: int
    days_deleted: int
    results: int

    def __add__(self, other: RefreshResult) -> RefreshResult:
        return RefreshResult(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def _aggregate(ts_ids: Sequence[int], since: date | None = None,
               ) -> dict[tuple[int, int, date], tuple[int, float, float]]:
    """Return (ts, level, day) → (n, Σx, Σx²) of in-control current results, from the results.

    In control = a judged run not rejected (:func:`qcwx.peer.frames.in_control`): pending runs
    stay out until they are judged, and their re-judgement triggers a refresh like any other.
    ``since``: only days from then on (the run date index bounds the read).
    """
    value = QcResult.value
    stmt = (select(QcRun.test_system_id, QcResult.qc_level_id, QcRun.run_date,
                   func.count(QcResult.id), func.sum(value), func.sum(value * value))
            .join(QcResult, QcResult.run_id == QcRun.id)
            .where(QcRun.test_system_id.in_(list(ts_ids)), QcResult.is_current, in_control())
            .group_by(QcRun.test_system_id, QcResult.qc_level_id, QcRun.run_date))
    if since is not None:
        stmt = stmt.where(QcRun.run_date >= since)
    return {(ts, lv, day): (int(n), float(total), float(total_sq))
            for ts, lv, day, n, total, total_sq in db.session.execute(stmt)}


def _cached(ts_ids: Sequence[int], since: date | None = None,
            ) -> dict[tuple[int, int, date], tuple[int, float, float]]:
    t = PeerLabDay.__table__
    stmt = (select(t.c.test_system_id, t.c.qc_level_id, t.c.day, t.c.n, t.c.total, t.c.total_sq)
            .where(t.c.test_system_id.in_(list(ts_ids))))
    if since is not None:
        stmt = stmt.where(t.c.day >= since)
    return {(ts, lv, day): (int(n), float(total), float(total_sq))
            for ts, lv, day, n, total, total_sq in db.session.execute(stmt)}


def refresh_systems(ts_ids: Iterable[int], since: date | None = None) -> RefreshResult:
    """Bring the moments cache of these test systems up to date; write only changed days.

    Also marks each system as cached (``PeerTsState``), after which readers use the cache for
    it instead of raw results. Core statements: the cache is derived data, not audited.

    ``since`` (a submission's or re-judgement's first changed day) re-reads only the days from
    then on, so a refresh after today's run costs the same with 10 or 100,000 runs stored
    (issue 14: re-aggregating a 300-day history per submission was most of the worker's CPU).
    Days before ``since`` cannot have changed: re-judging starts at the first changed run and
    every later verdict it rewrites is dated on or after it. A system never cached yet is
    always read whole (its older days are not in the cache).
    """
    ids = sorted({int(i) for i in ts_ids})
    st = PeerTsState.__table__
    known = set(db.session.scalars(select(st.c.test_system_id)
                                   .where(st.c.test_system_id.in_(ids)))) if ids else set()
    if since is not None and len(known) < len(ids):
        whole = _refresh([i for i in ids if i not in known], None, set())
        part = _refresh(sorted(known), since, known) if known else RefreshResult(0, 0, 0, 0)
        return whole + part
    return _refresh(ids, since, known)


def _refresh(ids: list[int], since: date | None, known: set[int]) -> RefreshResult:
    """:func:`refresh_systems` of sorted ``ids``, ``known`` being those already cached."""
    written = deleted = results = 0
    t = PeerLabDay.__table__
    for start in range(0, len(ids), REFRESH_CHUNK):
        chunk = ids[start:start + REFRESH_CHUNK]
        fresh, old = _aggregate(chunk, since), _cached(chunk, since)
        gone = [k for k, v in old.items() if fresh.get(k) != v]
        new = [k for k, v in fresh.items() if old.get(k) != v]
        _delete_days(gone)
        if new:
            db.session.execute(insert(t), [
                {"test_system_id": ts, "qc_level_id": lv, "day": day, "n": fresh[(ts, lv, day)][0],
                 "total": fresh[(ts, lv, day)][1], "total_sq": fresh[(ts, lv, day)][2]}
                for ts, lv, day in new])
        _mark_cached(chunk, fresh, known, old if since is not None else None)
        written += len(new)
        deleted += len(set(gone) - set(new))
        results += sum(v[0] for v in fresh.values())
    return RefreshResult(len(ids), written, deleted, results)


def _delete_days(keys: list[tuple[int, int, date]]) -> None:
    """Delete the cached (system, level, day) rows ``keys``, ``DELETE_CHUNK`` per statement.

    One statement, not one per row: an executemany DELETE is a round trip per row in the
    driver, and a drain after 100 submissions deleted ~200 rows that way (issue 14: about
    two statements per submission, in the worker and in MariaDB). The primary key is
    (system, level, day), so the row-value IN is a set of primary-key lookups.
    """
    t = PeerLabDay.__table__
    key = tuple_(t.c.test_system_id, t.c.qc_level_id, t.c.day)
    for start in range(0, len(keys), DELETE_CHUNK):
        db.session.execute(delete(t).where(key.in_(keys[start:start + DELETE_CHUNK])))


def _mark_cached(ts_ids: Sequence[int], fresh: Mapping, known: set[int],
                 old: Mapping | None = None) -> None:
    """Stamp the systems as cached with their result count (``known``: already stamped).

    ``old`` (a refresh of recent days): the cached rows those days replaced, so the count
    moves by the difference instead of being recounted over the whole history.
    """
    counts: dict[int, int] = {ts: 0 for ts in ts_ids}
    for (ts, _, _), (n, _, _) in fresh.items():
        counts[ts] += n
    for (ts, _, _), (n, _, _) in (old or {}).items():
        counts[ts] -= n
    st = PeerTsState.__table__
    now = utcnow()
    count = st.c.n_results + bindparam("nr") if old is not None else bindparam("nr")
    # One UPDATE per distinct count, not per system (an executemany UPDATE is a round trip
    # per row): after a drain of today's runs most systems moved by the same few counts.
    by_count: dict[int, list[int]] = {}
    for ts in ts_ids:
        if ts in known:
            by_count.setdefault(counts[ts], []).append(ts)
    for nr, ids in sorted(by_count.items()):
        db.session.execute(update(st).where(st.c.test_system_id.in_(ids))
                           .values(refreshed_at=now, n_results=count), {"nr": nr})
    missing = [ts for ts in ts_ids if ts not in known]
    if missing:
        db.session.execute(insert(st), [{"test_system_id": ts, "refreshed_at": now,
                                         "n_results": counts[ts]} for ts in missing])


def refresh_after_submission(test_system_id: int, since: date | None = None) -> RefreshResult:
    """Update the live peer statistics after a run of ``test_system_id`` was committed.

    Call it (through the ``qcwx.peer.refresh`` task) after every commit that adds, corrects
    or re-judges results of the system; it is idempotent, so a retry or a duplicate is harmless.
    ``since``: the first day that changed (None: the whole history).
    """
    ts_id = int(test_system_id)
    cached = since is not None and db.session.get(PeerTsState, ts_id) is not None
    if not cached and db.session.get(TestSystem, ts_id) is None:  # a cached one exists (FK)
        raise NotFound("检测系统不存在", field="test_system_id")
    result = _refresh([ts_id], since, {ts_id}) if cached else refresh_systems([ts_id], since)
    log.debug("peer refresh ts=%s since %s: %s", test_system_id, since, result)
    return result


def refresh_after_commit(*test_system_ids: int, since: date | None = None) -> None:
    """Queue ``qcwx.peer.refresh`` for these systems once the current transaction commits.

    The one line a writer of results adds (submission, correction, re-judgement after a limit
    change), with ``since`` the first day it changed when it knows it (None: all days).
    Queueing before the commit would let a fast worker read the old results; after a
    rollback nothing is queued. Several changes of one system in one transaction keep the
    earliest day. The task is looked up by name, so services never import worker modules.
    """
    queued = db.session.info.setdefault(_PENDING_KEY, {})
    day = since.isoformat() if since is not None else None
    for i in test_system_ids:
        i = int(i)
        if i not in queued:
            queued[i] = day
        elif queued[i] is not None:
            queued[i] = None if day is None else min(queued[i], day)


def refresh_parked(systems: Mapping[int, date | None]) -> RefreshResult:
    """Refresh the systems the drain took from Redis (:mod:`qcwx.peer.pending`), by day.

    Systems deleted since they were parked are skipped (a foreign key would otherwise fail
    the whole drain, which would then put them back for ever).
    """
    existing = set(db.session.scalars(select(TestSystem.id).where(
        TestSystem.id.in_(list(systems))))) if systems else set()
    total = RefreshResult(0, 0, 0, 0)
    for day, ids in pending.by_day({k: v for k, v in systems.items() if k in existing}).items():
        total = total + refresh_systems(ids, day)
    return total


followups.register(_PENDING_KEY, REFRESH_TASK, "peer refresh of ts=%s not queued (the nightly "
                   "rebuild catches up): %s", priority=10, coalesce=pending.coalesce)
followups.register_delayed(pending.DRAIN_TASK, pending.DELAY)


def rebuild_cache(region_id: int | None = None) -> RefreshResult:
    """Refresh the cache of every test system (of one region, or all): nightly and after imports."""
    stmt = select(TestSystem.id)
    if region_id is not None:
        stmt = (stmt.join(Lab, Lab.id == TestSystem.lab_id)
                .join(Hospital, Hospital.id == Lab.hospital_id)
                .where(Hospital.region_id.in_(scopes.region_subtree(region_id))))
    result = refresh_systems(db.session.scalars(stmt).all())
    log.info("peer cache rebuilt (region=%s): %s", region_id, result)
    return result


# ------------------------------------------------------------------ frozen months


@dataclass(frozen=True)
class FreezeResult:
    """One region's outcome of a freeze: created (with its size) or already frozen."""

    region_id: int
    month: str
    snapshot_id: int
    created: bool
    rows: int


def _check_month_over(month: str, today: date) -> Period:
    period = month_period(month, today)
    if month_end(month) >= today:
        raise UserError("只能冻结已经结束的月份", field="month")
    return Period("month", period.start, month_end(month), month)


def freeze_month(region_id: int | None, month: str, today: date,
                 actor: User | None = None) -> list[FreezeResult]:
    """Compute and store ``month`` for one region (or every region); never recompute.

    A region given explicitly whose month is already frozen raises ``Conflict``; with
    ``region_id=None`` (the monthly task) frozen regions are skipped and reported.
    """
    period = _check_month_over(month, today)
    if region_id is not None and db.session.get(Region, region_id) is None:
        raise NotFound("区域不存在", field="region")
    regions = [region_id] if region_id is not None else list(
        db.session.scalars(select(Region.id).order_by(Region.id)))
    out = []
    for rid in regions:
        existing = queries.snapshot_for(rid, month)
        if existing is not None:
            if region_id is not None:
                raise Conflict(f"{period.label}已冻结，冻结后的统计不会重新计算", field="month")
            out.append(FreezeResult(rid, month, existing.id, False, 0))
            continue
        out.append(_freeze_region(rid, period, actor))
    return out


def _freeze_region(region_id: int, period: Period, actor: User | None) -> FreezeResult:
    snap = PeerSnapshot(region_id=region_id, month=period.month,
                        frozen_by_id=actor.id if actor else None)
    db.session.add(snap)
    db.session.flush()
    lots = sorted(set(db.session.scalars(
        select(TestSystem.qc_lot_id).join(Lab, Lab.id == TestSystem.lab_id)
        .join(Hospital, Hospital.id == Lab.hospital_id)
        .where(Hospital.region_id.in_(scopes.region_subtree(region_id))))))
    n_rows = n_results = 0
    for start in range(0, len(lots), FREEZE_LOT_CHUNK):
        chunk = lots[start:start + FREEZE_LOT_CHUNK]
        labs = queries.compare_region(region_id, period, lot_ids=chunk)
        specs = load_specs(labs["analyte_id"].unique() if len(labs) else [])
        rows = [_snapshot_row(snap.id, queries.result_from_row(r, specs))
                for r in labs.to_dict("records")]
        if rows:
            db.session.execute(insert(PeerSnapshotLab.__table__), rows)
        n_rows += len(rows)
        n_results += int(labs["n"].sum()) if len(labs) else 0
    snap.n_systems, snap.n_results = n_rows, n_results
    db.session.flush()
    log.info("peer snapshot %s region=%s: %s rows", period.month, region_id, n_rows)
    return FreezeResult(region_id, period.month, snap.id, True, n_rows)


def _snapshot_row(snapshot_id: int, r: queries.SystemResult) -> dict:
    return {
        "snapshot_id": snapshot_id, "test_system_id": r.ts_id, "lab_id": r.lab_id,
        "analyte_id": r.analyte_id, "qc_level_id": r.qc_level_id, "unit": r.unit, "n": r.n,
        "mean": r.mean, "sd": r.sd, "cv": r.cv, "group_level": r.group_level,
        "group_label": (r.group_label or "")[:255] if r.group_level else None,
        "group_n_labs": r.n_labs, "group_n_systems": r.n_systems,
        "group_n_results": r.n_results, "group_mean": r.g_mean, "group_sd": r.g_sd,
        "group_cv": r.g_cv, "group_flagged": r.g_flagged, "sdi": r.sdi, "cvr": r.cvr,
        "bias_pct": r.bias_pct, "bias_rank": r.bias_rank, "cv_rank": r.cv_rank,
        "rank_size": r.rank_size, "tea_pct": r.tea_pct,
        "tea_source": (r.tea_source or "")[:100] or None, "allowable_cv": r.allowable_cv,
        "allowable_bias": r.allowable_bias, "sigma": r.sigma, "grade": r.grade,
    }


def previous_month(today: date) -> str:
    """Return the month before ``today``'s as ``YYYY-MM``."""
    year, mon = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    return f"{year:04d}-{mon:02d}"


# ------------------------------------------------------------------ saved groupings


def _require_centre(actor: User) -> None:
    if actor.role not in CENTRE_ROLES:
        raise Forbidden("只有区域质控中心可以管理分组方案")


def save_grouping(actor: User, region_id: int, name: str,
                  filters: Mapping[str, Sequence[str]]) -> SavedGrouping:
    """Save the current filter stack under a name for the region (centre only)."""
    _require_centre(actor)
    if actor.role != "admin" and not scopes.region_in_scope(actor, region_id):
        raise NotFound("区域不存在", field="region")
    name = (name or "").strip()
    if not name:
        raise UserError("请填写分组方案名称", field="name")
    if len(name) > 64:
        raise UserError("分组方案名称最多64个字符", field="name")
    clean = parse_filters(dict(filters))
    if not clean:
        raise UserError("请至少选择一个筛选条件再保存", field="filters")
    taken = db.session.scalar(select(SavedGrouping.id).where(
        SavedGrouping.region_id == region_id, SavedGrouping.name == name))
    if taken is not None:
        raise Conflict(f"分组方案“{name}”已存在", field="name")
    grouping = SavedGrouping(region_id=region_id, name=name,
                             filters={k: clean[k] for k in DIMENSIONS if k in clean},
                             created_by_id=actor.id)
    db.session.add(grouping)
    db.session.flush()
    return grouping


def delete_grouping(actor: User, region_id: int, grouping_id: int) -> None:
    """Delete one of the region's saved groupings (centre only)."""
    _require_centre(actor)
    grouping = lot.load_grouping(region_id, grouping_id)
    db.session.delete(grouping)
    db.session.flush()
