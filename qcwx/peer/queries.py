"""Read peer statistics for the pages: scoped, anonymised, live or frozen.

The comparison universe is the actor's region: a lab is compared with every lab of its region
on the same QC lot and level, but below ``center`` it sees other labs only by anonymous code
and only as per-lab aggregates (never their raw results). Which labs count as "own" (named,
highlighted) comes from :func:`qcwx.orgs.scopes.lab_ids_in_scope`; names from
:func:`qcwx.orgs.scopes.sees_identities`. Objects outside the region answer 404.

Per-system moments come from the ``peer_lab_day`` cache for systems that are cached and from
raw results (in-control = run not rejected, current versions) for the rest, both aggregated
in SQL; :mod:`qcwx.peer.compute` does the statistics.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

import pandas as pd
from sqlalchemy import Select, String, and_, cast, func, select, true

from qcwx.catalog.models import (
    Analyte,
    Calibrator,
    Instrument,
    Method,
    QcLevel,
    QcLot,
    QcMaterial,
    QualitySpec,
    Reagent,
    TestSystem,
)
from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.iqc.models import QcResult, QcRun
from qcwx.orgs import scopes
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.peer import compute
from qcwx.peer.filters import (
    DIMENSIONS,
    METHOD_KEYS,
    Period,
    describe,
    month_period,
    recent_months,
)
from qcwx.peer.models import (
    GROUP_LEVEL_LABELS,
    PeerLabDay,
    PeerSnapshot,
    PeerSnapshotLab,
    PeerTsState,
    SavedGrouping,
)
from qcwx.qcstats import peer as qpeer
from qcwx.qcstats.specs import WST403_SOURCE, Tea

UNPUBLISHED = "比对组实验室不足 5 家或结果不足 20 个，暂不发布统计"

#: SQL column of each filter dimension.
DIMENSION_COLUMNS = {
    "instrument_maker": Instrument.maker,
    "instrument_model": Instrument.model,
    "reagent_maker": Reagent.maker,
    "method": Method.code,
    "method_principle": Method.principle,
    "calibrator": TestSystem.calibrator_id,
    "unit": TestSystem.unit,
    "temperature": TestSystem.temperature,
    "hospital_level": Hospital.level,
}
_SYSTEM_COLUMNS = (
    TestSystem.id.label("ts_id"), TestSystem.lab_id, TestSystem.analyte_id,
    TestSystem.qc_lot_id.label("lot_id"), TestSystem.unit, TestSystem.temperature,
    TestSystem.active, Instrument.maker.label("instrument_maker"),
    Instrument.model.label("instrument_model"), Reagent.maker.label("reagent_maker"),
    Method.code.label("method"), Method.name.label("method_name"),
    Method.principle.label("method_principle"),
    cast(TestSystem.calibrator_id, String).label("calibrator"),
    Calibrator.maker.label("calibrator_maker"), Calibrator.name.label("calibrator_name"),
    Hospital.level.label("hospital_level"), Hospital.name.label("hospital_name"),
    Lab.name.label("lab_name"), Lab.anon_code,
)
_MOMENT_COLUMNS = ["ts_id", "qc_level_id", "n", "total", "total_sq"]


# ------------------------------------------------------------------ region and scope


def region_id_for(actor: User, requested: int | None = None) -> int:
    """Return the region whose labs the actor is compared with (admins may pick one)."""
    if actor.role == "admin":
        if requested is not None:
            if db.session.get(Region, requested) is None:
                raise NotFound("区域不存在", field="region")
            return requested
        first = db.session.scalar(select(Region.id).order_by(Region.id).limit(1))
        if first is None:
            raise NotFound("尚未建立任何区域", field="region")
        return first
    if actor.role == "center" and actor.region_id is not None:
        return actor.region_id
    if actor.role == "director" and actor.hospital is not None:
        return actor.hospital.region_id
    if actor.lab is not None:
        return actor.lab.hospital.region_id
    raise NotFound("当前账号未关联区域或实验室", field="region")


def own_lab_ids(actor: User) -> set[int]:
    """Return the labs the actor may see by name and raw data (its scope)."""
    return set(db.session.scalars(scopes.lab_ids_in_scope(actor)))


def load_lab(actor: User, lab_id: int) -> Lab:
    """Return a lab inside the actor's scope, else 404 (same answer as a missing lab)."""
    return scopes.get_lab_object(actor, Lab, lab_id, lab_attr="id")


def first_system(actor: User) -> TestSystem | None:
    """Return the actor's first test system in scope (the lot page's default selection)."""
    return db.session.scalar(select(TestSystem).where(scopes.in_scope(actor, TestSystem.lab_id))
                             .order_by(TestSystem.id).limit(1))


def labs_in_scope(actor: User) -> list[Lab]:
    """Return the labs in the actor's scope, ordered by hospital."""
    stmt = (select(Lab).join(Hospital).where(scopes.in_scope(actor, Lab.id))
            .order_by(Hospital.code, Lab.code))
    return list(db.session.scalars(stmt))


# ------------------------------------------------------------------ system frames


def _systems_stmt(region_id: int) -> Select:
    return (select(*_SYSTEM_COLUMNS).select_from(TestSystem)
            .join(Lab, Lab.id == TestSystem.lab_id)
            .join(Hospital, Hospital.id == Lab.hospital_id)
            .join(Instrument, Instrument.id == TestSystem.instrument_id)
            .outerjoin(Reagent, Reagent.id == TestSystem.reagent_id)
            .outerjoin(Method, Method.id == TestSystem.method_id)
            .outerjoin(Calibrator, Calibrator.id == TestSystem.calibrator_id)
            .where(Hospital.region_id == region_id))


def filter_clause(filters: Mapping[str, Sequence[str]]):
    """Return the SQL condition of a filter stack (AND across dimensions, OR within one)."""
    parts = []
    for dim, values in filters.items():
        column = DIMENSION_COLUMNS[dim]
        parts.append(column.in_([int(v) for v in values] if dim == "calibrator" else values))
    return and_(true(), *parts)


def systems_frame(region_id: int, *, analyte_ids: Iterable[int] | None = None,
                  lot_ids: Iterable[int] | None = None,
                  filters: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Return the region's test systems (one row each) with every grouping code."""
    stmt = _systems_stmt(region_id)
    if analyte_ids is not None:
        stmt = stmt.where(TestSystem.analyte_id.in_(list(analyte_ids)))
    if lot_ids is not None:
        stmt = stmt.where(TestSystem.qc_lot_id.in_(list(lot_ids)))
    if filters:
        stmt = stmt.where(filter_clause(filters))
    rows = db.session.execute(stmt).all()
    cols = [c.key for c in _SYSTEM_COLUMNS]
    return pd.DataFrame([tuple(r) for r in rows], columns=cols)


def _period_where(column, period: Period) -> list:
    cond = [column <= period.end]
    if period.start is not None:
        cond.append(column >= period.start)
    return cond


def _month_of(column):
    """Return a YYYYMM integer expression of a date column (portable: SQLite and MariaDB)."""
    return (func.extract("year", column) * 100 + func.extract("month", column)).label("month")


def moments(ts_ids: Sequence[int], level_ids: Iterable[int] | None, period: Period,
            by_month: bool = False) -> pd.DataFrame:
    """Return n, Σx, Σx² per test system × level of in-control current results in ``period``.

    Cached systems are summed from ``peer_lab_day``; the others straight from the results
    (runs with status ``reject`` excluded, superseded versions excluded). ``by_month`` splits
    the sums by calendar month (column ``month`` = YYYYMM).
    """
    columns = _MOMENT_COLUMNS + (["month"] if by_month else [])
    if not len(ts_ids):
        return pd.DataFrame(columns=columns)
    ids = [int(i) for i in ts_ids]
    cached = set(db.session.scalars(
        select(PeerTsState.test_system_id).where(PeerTsState.test_system_id.in_(ids))))
    frames = []
    if cached:
        day = PeerLabDay
        keys = [day.test_system_id, day.qc_level_id] + ([_month_of(day.day)] if by_month else [])
        stmt = (select(day.test_system_id, day.qc_level_id, func.sum(day.n), func.sum(day.total),
                       func.sum(day.total_sq), *keys[2:])
                .where(day.test_system_id.in_(sorted(cached)), *_period_where(day.day, period))
                .group_by(*keys))
        if level_ids is not None:
            stmt = stmt.where(day.qc_level_id.in_(list(level_ids)))
        frames.append(db.session.execute(stmt).all())
    raw_ids = [i for i in ids if i not in cached]
    if raw_ids:
        value = QcResult.value
        keys = [QcRun.test_system_id, QcResult.qc_level_id] + (
            [_month_of(QcRun.run_date)] if by_month else [])
        stmt = (select(QcRun.test_system_id, QcResult.qc_level_id, func.count(QcResult.id),
                       func.sum(value), func.sum(value * value), *keys[2:])
                .join(QcResult, QcResult.run_id == QcRun.id)
                .where(QcRun.test_system_id.in_(raw_ids), QcResult.is_current,
                       QcRun.status != "reject", *_period_where(QcRun.run_date, period))
                .group_by(*keys))
        if level_ids is not None:
            stmt = stmt.where(QcResult.qc_level_id.in_(list(level_ids)))
        frames.append(db.session.execute(stmt).all())
    rows = [tuple(r) for part in frames for r in part]
    out = pd.DataFrame(rows, columns=columns)
    out["n"] = out["n"].astype("int64")
    out["total"] = out["total"].astype("float64")
    out["total_sq"] = out["total_sq"].astype("float64")
    if by_month:
        out["month"] = [f"{int(m) // 100:04d}-{int(m) % 100:02d}" for m in out["month"]]
    return out


def system_moments(systems: pd.DataFrame, period: Period,
                   level_ids: Iterable[int] | None = None, by_month: bool = False
                   ) -> pd.DataFrame:
    """Join the moments of ``period`` onto the systems (one row per system × level [× month])."""
    mom = moments(systems["ts_id"].tolist() if len(systems) else [], level_ids, period, by_month)
    return systems.merge(mom, on="ts_id", how="inner")


# ------------------------------------------------------------------ specs


def load_specs(analyte_ids: Iterable[int]) -> dict[int, compute.SpecInfo]:
    """Return each analyte's active quality specification (WS/T 403 preferred, then newest)."""
    ids = sorted({int(a) for a in analyte_ids})
    if not ids:
        return {}
    rows = db.session.scalars(select(QualitySpec).where(
        QualitySpec.analyte_id.in_(ids), QualitySpec.active).order_by(QualitySpec.id))
    best: dict[int, QualitySpec] = {}
    for spec in rows:
        current = best.get(spec.analyte_id)
        if current is None or (spec.spec_set == WST403_SOURCE) >= (
                current.spec_set == WST403_SOURCE):
            best[spec.analyte_id] = spec
    return {a: _spec_info(s) for a, s in best.items()}


def _spec_info(spec: QualitySpec) -> compute.SpecInfo:
    tea = None
    if spec.tea_pct is not None and spec.tea_pct > 0:
        try:
            tea = Tea(spec.tea_pct, spec.tea_abs, spec.tea_abs_unit, spec.tea_threshold)
        except ValueError:  # an incomplete two-tier row: judge by nothing rather than wrongly
            tea = None
    return compute.SpecInfo(tea, spec.allowable_cv, spec.allowable_bias,
                            f"{spec.spec_set}（TEa {spec.tea_text}）")


# ------------------------------------------------------------------ compared rows


def group_label(row: Mapping, level: str | None) -> str:
    """Return the Chinese description of a default-grouping group from a member row."""
    if level == "peer":
        parts = [f"{row.get('instrument_maker') or '未登记'}仪器",
                 f"{row.get('reagent_maker') or '未登记'}试剂",
                 row.get("method_name") or "未登记方法", row.get("unit"),
                 row.get("temperature")]
        return " · ".join(str(p) for p in parts if p)
    if level == "method":
        return row.get("method_name") or "未登记方法"
    if level == "all":
        return "同批号同水平全部实验室"
    return "—"


def compare_region(region_id: int, period: Period, *, analyte_ids: Iterable[int] | None = None,
                   lot_ids: Iterable[int] | None = None,
                   level_ids: Iterable[int] | None = None, by_month: bool = False,
                   details: bool = True) -> pd.DataFrame:
    """Compare every system of the region (optionally some analytes/lots) by the default grouping.

    Returns :func:`qcwx.peer.compute.compare` rows; with ``details`` also performance (TEa,
    σ, grade) and a ``group_label``. ``by_month`` compares each calendar month of the period
    separately in one pass (the month is part of every group key).
    """
    systems = systems_frame(region_id, analyte_ids=analyte_ids, lot_ids=lot_ids)
    frame = system_moments(systems, period, level_ids, by_month)
    keys = compute.DEFAULT_LEVEL_KEYS
    if by_month:
        keys = {lv: ("month", *k) for lv, k in keys.items()}
    labs = compute.compare(frame, keys)
    if details:
        compute.add_performance(labs, load_specs(labs["analyte_id"].unique()
                                                 if len(labs) else []))
        firsts = labs[labs["group_key"] >= 0].drop_duplicates("group_key").to_dict("records")
        labels = {r["group_key"]: group_label(r, level_of(r["group_level"])) for r in firsts}
        labs["group_label"] = labs["group_key"].map(labels)
    return labs


# ------------------------------------------------------------------ display rows


@dataclass(frozen=True)
class SystemResult:
    """One test system × QC level as a page shows it (live or frozen)."""

    ts_id: int
    lab_id: int
    qc_level_id: int
    analyte_id: int
    n: int
    mean: float
    sd: float | None
    cv: float | None
    unit: str
    group_level: str | None = None
    group_label: str | None = None
    n_labs: int | None = None
    n_systems: int | None = None
    n_results: int | None = None
    g_mean: float | None = None
    g_sd: float | None = None
    g_cv: float | None = None
    g_flagged: bool = False
    sdi: float | None = None
    cvr: float | None = None
    bias_pct: float | None = None
    bias_rank: int | None = None
    cv_rank: int | None = None
    rank_size: int | None = None
    tea_pct: float | None = None
    tea_source: str | None = None
    allowable_cv: float | None = None
    allowable_bias: float | None = None
    sigma: float | None = None
    grade: str | None = None
    frozen: bool = False
    sparkline: tuple = field(default=(), compare=False)

    @property
    def publishable(self) -> bool:
        """Return whether any group level could be published for this row."""
        return self.group_level is not None

    @property
    def level_label(self) -> str:
        """Return 同组 / 同方法 / 全部."""
        return GROUP_LEVEL_LABELS.get(self.group_level or "", "—")

    @property
    def sdi_band(self) -> qpeer.Band | None:
        """Return the SDI band (QC_SPEC §3), None without an SDI."""
        return qpeer.sdi_band(self.sdi) if self.sdi is not None else None

    @property
    def cvr_band(self) -> qpeer.Band | None:
        """Return the CVR band (QC_SPEC §3), None without a CVR."""
        return qpeer.cvr_band(self.cvr) if self.cvr is not None else None

    @property
    def rank_text(self) -> str:
        """Return e.g. ``你在 58 家中排第 7`` (rank of |bias|; systems when labs repeat)."""
        if self.bias_rank is None or not self.rank_size:
            return "—"
        noun = "家" if self.n_labs == self.n_systems else "个检测系统"
        return f"你在 {self.rank_size} {noun}中排第 {self.bias_rank}"


def _num(value) -> float | None:
    if value is None:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def level_of(value) -> str | None:
    """Return a group level (``peer``/``method``/``all``), None for missing (None, NaN, NA)."""
    return value if isinstance(value, str) and value in GROUP_LEVEL_LABELS else None


def _grade(value) -> str | None:
    return value if isinstance(value, str) else None


def _int(value) -> int | None:
    v = _num(value)
    return int(v) if v is not None else None


def result_from_row(row: Mapping, specs: Mapping[int, compute.SpecInfo]) -> SystemResult:
    """Build a display row from a :func:`compare_region` record (live statistics)."""
    spec = specs.get(int(row["analyte_id"]))
    level = level_of(row.get("group_level"))
    published = level is not None
    return SystemResult(
        ts_id=int(row["ts_id"]), lab_id=int(row["lab_id"]), qc_level_id=int(row["qc_level_id"]),
        analyte_id=int(row["analyte_id"]), n=int(row["n"]), mean=float(row["mean"]),
        sd=_num(row["sd"]), cv=_num(row["cv"]), unit=str(row["unit"]),
        group_level=level, group_label=row.get("group_label") if published else None,
        n_labs=_int(row.get("n_labs")), n_systems=_int(row.get("n_systems")),
        n_results=_int(row.get("n_results")),
        g_mean=_num(row.get("g_mean")) if published else None,
        g_sd=_num(row.get("g_sd")) if published else None,
        g_cv=_num(row.get("g_cv")) if published else None,
        g_flagged=bool(row.get("g_flagged")) if published else False,
        sdi=_num(row.get("sdi")) if published else None,
        cvr=_num(row.get("cvr")) if published else None,
        bias_pct=_num(row.get("bias_pct")) if published else None,
        bias_rank=_int(row.get("bias_rank")) if published else None,
        cv_rank=_int(row.get("cv_rank")) if published else None,
        rank_size=_int(row.get("rank_size")) if published else None,
        tea_pct=_num(row.get("tea_pct")), tea_source=spec.source if spec else None,
        allowable_cv=spec.allowable_cv if spec else None,
        allowable_bias=spec.allowable_bias if spec else None,
        sigma=_num(row.get("sigma")), grade=_grade(row.get("grade")))


def result_from_snapshot(row: PeerSnapshotLab) -> SystemResult:
    """Build a display row from a frozen snapshot row (never recomputed)."""
    return SystemResult(
        ts_id=row.test_system_id, lab_id=row.lab_id, qc_level_id=row.qc_level_id,
        analyte_id=row.analyte_id, n=row.n, mean=row.mean, sd=row.sd, cv=row.cv, unit=row.unit,
        group_level=row.group_level, group_label=row.group_label, n_labs=row.group_n_labs,
        n_systems=row.group_n_systems, n_results=row.group_n_results, g_mean=row.group_mean,
        g_sd=row.group_sd, g_cv=row.group_cv, g_flagged=row.group_flagged, sdi=row.sdi,
        cvr=row.cvr, bias_pct=row.bias_pct, bias_rank=row.bias_rank, cv_rank=row.cv_rank,
        rank_size=row.rank_size, tea_pct=row.tea_pct, tea_source=row.tea_source,
        allowable_cv=row.allowable_cv, allowable_bias=row.allowable_bias, sigma=row.sigma,
        grade=row.grade, frozen=True)


def snapshot_for(region_id: int, month: str) -> PeerSnapshot | None:
    """Return the region's frozen snapshot of ``month``, if any."""
    return db.session.scalar(select(PeerSnapshot).where(
        PeerSnapshot.region_id == region_id, PeerSnapshot.month == month))


def snapshots(region_id: int) -> list[PeerSnapshot]:
    """Return the region's frozen months, newest first."""
    return list(db.session.scalars(select(PeerSnapshot).where(
        PeerSnapshot.region_id == region_id).order_by(PeerSnapshot.month.desc())))


def region_results(region_id: int, period: Period, *, lab_ids: Iterable[int] | None = None,
                   analyte_ids: Iterable[int] | None = None,
                   lot_ids: Iterable[int] | None = None
                   ) -> tuple[list[SystemResult], PeerSnapshot | None]:
    """Return display rows of the region (or some labs) for ``period``: frozen when it is."""
    snap = snapshot_for(region_id, period.month) if period.kind == "month" else None
    if snap is not None:
        stmt = select(PeerSnapshotLab).where(PeerSnapshotLab.snapshot_id == snap.id)
        if lab_ids is not None:
            stmt = stmt.where(PeerSnapshotLab.lab_id.in_(list(lab_ids)))
        if analyte_ids is not None:
            stmt = stmt.where(PeerSnapshotLab.analyte_id.in_(list(analyte_ids)))
        if lot_ids is not None:
            stmt = stmt.where(PeerSnapshotLab.test_system_id.in_(
                select(TestSystem.id).where(TestSystem.qc_lot_id.in_(list(lot_ids)))))
        return [result_from_snapshot(r) for r in db.session.scalars(stmt)], snap
    labs = compare_region(region_id, period, analyte_ids=analyte_ids, lot_ids=lot_ids)
    if lab_ids is not None:
        labs = labs[labs["lab_id"].isin(list(lab_ids))]
    specs = load_specs(labs["analyte_id"].unique() if len(labs) else [])
    return [result_from_row(r, specs) for r in labs.to_dict("records")], None


# ------------------------------------------------------------------ the lab page


@dataclass(frozen=True)
class LabSystemBlock:
    """One test system of a lab with its levels' rows (the lab page's cards)."""

    ts: TestSystem
    rows: list[SystemResult]

    @property
    def grade(self) -> str | None:
        """Return the system's grade: the worst of its levels."""
        return compute.worst_grade(r.grade for r in self.rows)


@dataclass(frozen=True)
class LabPage:
    """Everything the lab comparison page shows."""

    lab: Lab
    period: Period
    snapshot: PeerSnapshot | None
    blocks: list[LabSystemBlock]
    months: list[str]
    overall: qpeer.OverallGrade | None
    levels: dict[int, QcLevel]


def lab_page(actor: User, lab_id: int, period: Period, today: date) -> LabPage:
    """Return the lab's systems with each level's statistics and 12-month SDI sparklines."""
    lab = load_lab(actor, lab_id)
    region_id = lab.hospital.region_id
    systems = list(db.session.scalars(
        select(TestSystem).where(TestSystem.lab_id == lab.id)
        .order_by(TestSystem.analyte_id, TestSystem.id)))
    analytes = {ts.analyte_id for ts in systems}
    lots = {ts.qc_lot_id for ts in systems}
    rows, snap = region_results(region_id, period, lab_ids=[lab.id], analyte_ids=analytes,
                                lot_ids=lots) if systems else ([], None)
    months = recent_months(today, 12)
    trend = history(region_id, [ts.id for ts in systems], months, today)
    by_ts: dict[int, list[SystemResult]] = {}
    for r in rows:
        series = trend.get((r.ts_id, r.qc_level_id), {})
        by_ts.setdefault(r.ts_id, []).append(replace(
            r, sparkline=tuple(series.get(m, (None, None))[0] for m in months)))
    levels = {lv.id: lv for ts in systems for lv in ts.levels}
    blocks = []
    for ts in systems:
        ts_rows = sorted(by_ts.get(ts.id, []),
                         key=lambda r: levels[r.qc_level_id].level_index
                         if r.qc_level_id in levels else r.qc_level_id)
        if ts_rows or ts.active:
            blocks.append(LabSystemBlock(ts, ts_rows))
    grades = [b.grade for b in blocks if b.grade]
    overall = qpeer.lab_overall_grade(_analyte_grades(blocks)) if grades else None
    return LabPage(lab, period, snap, blocks, months, overall, levels)


def _analyte_grades(blocks: Sequence[LabSystemBlock]) -> list[str]:
    """Return one grade per analyte (the worst of its systems and levels)."""
    per: dict[int, list[str]] = {}
    for b in blocks:
        if b.grade:
            per.setdefault(b.ts.analyte_id, []).append(b.grade)
    return [compute.worst_grade(g) for g in per.values()]


def history(region_id: int, ts_ids: Sequence[int], months: Sequence[str], today: date
            ) -> dict[tuple[int, int], dict[str, tuple[float | None, float | None]]]:
    """Return ``{(ts, level): {month: (SDI, CVR)}}`` from frozen months plus live months.

    Frozen months read their snapshot; months without one (the current month is never
    frozen while it runs) are computed live with the default grouping.
    """
    out: dict[tuple[int, int], dict[str, tuple[float | None, float | None]]] = {}
    if not len(ts_ids):
        return out
    wanted = [int(i) for i in ts_ids]
    frozen_months = set(db.session.scalars(select(PeerSnapshot.month).where(
        PeerSnapshot.region_id == region_id, PeerSnapshot.month.in_(list(months)))))
    frozen = db.session.execute(
        select(PeerSnapshot.month, PeerSnapshotLab.test_system_id, PeerSnapshotLab.qc_level_id,
               PeerSnapshotLab.sdi, PeerSnapshotLab.cvr)
        .join(PeerSnapshot, PeerSnapshot.id == PeerSnapshotLab.snapshot_id)
        .where(PeerSnapshot.region_id == region_id, PeerSnapshot.month.in_(list(months)),
               PeerSnapshotLab.test_system_id.in_(wanted))).all()
    for month, ts_id, level_id, sdi, cvr in frozen:
        out.setdefault((ts_id, level_id), {})[month] = (_num(sdi), _num(cvr))
    live = [m for m in months if m not in frozen_months and m <= today.strftime("%Y-%m")]
    if not live:
        return out
    ts = db.session.execute(select(TestSystem.analyte_id, TestSystem.qc_lot_id).where(
        TestSystem.id.in_(wanted))).all()
    first = db.session.scalar(select(func.min(QcRun.run_date)).where(
        QcRun.test_system_id.in_(wanted)))
    analytes, lots = {a for a, _ in ts}, {lot for _, lot in ts}
    live = [m for m in live if first is not None and m >= first.strftime("%Y-%m")]
    if not live:
        return out
    window = Period("cum", month_period(live[0], today).start, today)
    labs = compare_region(region_id, window, analyte_ids=analytes, lot_ids=lots, by_month=True,
                          details=False)
    labs = labs[labs["ts_id"].isin(wanted) & labs["month"].isin(live)]
    for r in labs[["ts_id", "qc_level_id", "month", "group_level", "sdi", "cvr"]].itertuples():
        pub = level_of(r.group_level) is not None
        out.setdefault((int(r.ts_id), int(r.qc_level_id)), {})[r.month] = (
            _num(r.sdi) if pub else None, _num(r.cvr) if pub else None)
    return out


# ------------------------------------------------------------------ the lot page


@dataclass(frozen=True)
class Member:
    """One system in the chosen comparison group, labelled for the viewer."""

    ts_id: int
    lab_id: int
    code: str
    highlight: bool
    n: int
    mean: float
    sd: float | None
    cv: float | None
    sdi: float | None
    cvr: float | None
    bias_pct: float | None
    bias_rank: int | None
    grade: str | None
    sigma: float | None


@dataclass(frozen=True)
class LevelSize:
    """Size of one group level of the lot page's group."""

    level: str
    label: str
    description: str
    n_labs: int
    n_systems: int
    n_results: int
    publishable: bool


@dataclass(frozen=True)
class LotView:
    """The QC-lot comparison: the chosen group, its members and its statistics."""

    level: QcLevel
    analyte: Analyte
    period: Period
    filters: dict[str, list[str]]
    sizes: list[LevelSize]
    chosen: LevelSize | None
    members: list[Member]
    g_mean: float | None
    g_sd: float | None
    g_cv: float | None
    g_flagged: bool
    tea_pct: float | None
    unit: str
    options: dict[str, list[tuple[str, str, int]]]
    names: dict[str, dict[str, str]]

    @property
    def peer(self) -> LevelSize | None:
        """Return the size of the filtered group itself (the first level)."""
        return self.sizes[0] if self.sizes else None

    @property
    def empty(self) -> bool:
        """Return True when the filters match no system with results."""
        return self.peer is None or self.peer.n_systems == 0


def _match(frame: pd.DataFrame, filters: Mapping[str, Sequence[str]]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for dim, values in filters.items():
        mask &= frame[dim].astype("string").isin([str(v) for v in values]).fillna(False)
    return mask.astype(bool)


def _size(frame: pd.DataFrame, mask: pd.Series, level: str, description: str) -> LevelSize:
    part = frame[mask]
    n_labs, n_results = int(part["lab_id"].nunique()), int(part["n"].sum())
    return LevelSize(level, GROUP_LEVEL_LABELS[level], description, n_labs, int(len(part)),
                     n_results, qpeer.publishable(n_labs, n_results))


def lot_levels(region_id: int, filters: Mapping[str, Sequence[str]],
               frame: pd.DataFrame) -> tuple[list[LevelSize], dict[str, pd.Series]]:
    """Return the level sizes of a filter stack: the filtered group, its method, all."""
    masks = {"all": pd.Series(True, index=frame.index)}
    sizes = []
    if filters:
        masks["peer"] = _match(frame, filters)
        sizes.append(_size(frame, masks["peer"], "peer", describe(filters)))
        method_filters = {k: v for k, v in filters.items()
                          if k in METHOD_KEYS or k == "method_principle"}
        if method_filters and method_filters != dict(filters):
            masks["method"] = _match(frame, method_filters)
            sizes.append(_size(frame, masks["method"], "method", describe(method_filters)))
    sizes.append(_size(frame, masks["all"], "all", "同批号同水平全部实验室"))
    return sizes, masks


def lot_view(actor: User, region_id: int, level: QcLevel, analyte: Analyte, period: Period,
             filters: Mapping[str, list[str]], highlight_lab: int | None = None) -> LotView:
    """Return the lot comparison of one level × analyte for a filter stack (fallback included).

    The filtered group is the first level; when it is not publishable the method group (if
    a method is filtered on) and then all labs on the lot/level are tried
    (``choose_group_level``). Members of the chosen group are labelled by name only for
    viewers who may see identities (or their own labs), by anonymous code otherwise.
    """
    systems = systems_frame(region_id, analyte_ids=[analyte.id], lot_ids=[level.lot_id])
    frame = compute.system_stats(system_moments(systems, period, [level.id]))
    sizes, masks = lot_levels(region_id, filters, frame)
    # An empty filtered group is a filter that matches nothing: say so, do not fall back.
    choice = qpeer.choose_group_level({s.level: (s.n_labs, s.n_results) for s in sizes}) \
        if sizes[0].n_systems else None
    chosen = next((s for s in sizes if choice and s.level == choice.level), None)
    options, names = filter_options(systems, frame, filters)
    unit = _majority(frame["unit"]) if len(frame) else analyte.unit
    empty_view = LotView(level, analyte, period, dict(filters), sizes, chosen, [], None, None,
                         None, False, None, unit, options, names)
    if chosen is None:
        return empty_view
    part = frame[masks[chosen.level]].reset_index(drop=True)
    stats = compute.level_stats(part, [])
    part = pd.concat([part, stats], axis=1)
    specs = load_specs([analyte.id])
    compute.add_performance(part, specs)
    own = own_lab_ids(actor)
    sees = scopes.sees_identities(actor)
    highlight = ({highlight_lab} if highlight_lab else set()) if sees else own
    labels = _member_labels(part, own, sees)
    members = [Member(int(r["ts_id"]), int(r["lab_id"]), labels[i], int(r["lab_id"]) in highlight,
                      int(r["n"]), float(r["mean"]), _num(r["sd"]), _num(r["cv"]), _num(r["sdi"]),
                      _num(r["cvr"]), _num(r["bias_pct"]), _int(r["bias_rank"]), _grade(r["grade"]),
                      _num(r["sigma"]))
               for i, r in enumerate(part.to_dict("records"))]
    first = part.iloc[0]
    return replace(empty_view, members=members, g_mean=_num(first["g_mean"]),
                   g_sd=_num(first["g_sd"]), g_cv=_num(first["g_cv"]),
                   g_flagged=bool(first["g_flagged"]), tea_pct=_num(first["tea_pct"]))


def lot_size(region_id: int, level: QcLevel, analyte: Analyte, period: Period,
             filters: Mapping[str, list[str]]) -> LevelSize:
    """Return the size of the filtered group alone (the filter panel's live count)."""
    systems = systems_frame(region_id, analyte_ids=[analyte.id], lot_ids=[level.lot_id])
    frame = compute.system_stats(system_moments(systems, period, [level.id]))
    return lot_levels(region_id, filters, frame)[0][0]


def facet_values(region_id: int, dims: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Return the distinct (value, display name) of some filter dimensions in the region."""
    systems = systems_frame(region_id)
    names = value_names(systems)
    return {dim: [(v, names.get(dim, {}).get(v, v))
                  for v in sorted({str(x) for x in systems[dim].dropna()})] for dim in dims}


def _majority(values: pd.Series) -> str:
    counts = Counter(str(v) for v in values)
    return counts.most_common(1)[0][0]


def _member_labels(part: pd.DataFrame, own: set[int], sees: bool) -> list[str]:
    """Label each member: name (centre, own labs) or anonymous code; repeated labs get a suffix."""
    repeats = Counter(part["lab_id"])
    labels = []
    for r in part.to_dict("records"):
        named = sees or int(r["lab_id"]) in own
        label = r["hospital_name"] if named else r["anon_code"]
        if repeats[r["lab_id"]] > 1:
            label = f"{label}（{r['instrument_model']}）"
        labels.append(str(label))
    return labels


def filter_options(systems: pd.DataFrame, frame: pd.DataFrame,
                   filters: Mapping[str, Sequence[str]]
                   ) -> tuple[dict[str, list[tuple[str, str, int]]], dict[str, dict[str, str]]]:
    """Return each dimension's values with the lab count they would give (facet counts).

    The count of a value is the number of labs with results matching every *other*
    dimension's filter plus this value, so users see how the group would change.
    """
    names = value_names(systems)
    options: dict[str, list[tuple[str, str, int]]] = {}
    for dim in DIMENSIONS:
        others = {k: v for k, v in filters.items() if k != dim}
        base = frame[_match(frame, others)] if len(frame) else frame
        values = sorted({str(v) for v in systems[dim].dropna()} | set(filters.get(dim, [])))
        opts = []
        for v in values:
            count = int(base.loc[base[dim].astype("string") == v, "lab_id"].nunique()) \
                if len(base) else 0
            opts.append((v, names.get(dim, {}).get(v, v), count))
        if opts:
            options[dim] = opts
    return options, names


def value_names(systems: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Return display names of coded filter values (calibrator ids, method codes)."""
    names: dict[str, dict[str, str]] = {"calibrator": {}, "method": {}}
    for r in systems.to_dict("records"):
        if r.get("calibrator"):
            names["calibrator"][str(r["calibrator"])] = (
                f"{r['calibrator_maker']} {r['calibrator_name']}")
        if r.get("method"):
            names["method"][str(r["method"])] = str(r["method_name"])
    return names


def lot_choices(region_id: int) -> list[dict]:
    """Return the lots used in the region with their levels and analytes (for the pickers)."""
    lots = db.session.execute(
        select(QcLot, QcMaterial.name, func.count(func.distinct(TestSystem.lab_id)))
        .join(QcMaterial, QcMaterial.id == QcLot.material_id)
        .join(TestSystem, TestSystem.qc_lot_id == QcLot.id)
        .join(Lab, Lab.id == TestSystem.lab_id).join(Hospital, Hospital.id == Lab.hospital_id)
        .where(Hospital.region_id == region_id)
        .group_by(QcLot.id, QcMaterial.name).order_by(QcLot.id)).all()
    out = []
    for lot, material, n_labs in lots:
        analytes = list(db.session.scalars(
            select(Analyte).join(TestSystem, TestSystem.analyte_id == Analyte.id)
            .join(Lab, Lab.id == TestSystem.lab_id).join(Hospital, Hospital.id == Lab.hospital_id)
            .where(Hospital.region_id == region_id, TestSystem.qc_lot_id == lot.id)
            .distinct().order_by(Analyte.id)))
        out.append({"lot": lot, "material": material, "n_labs": n_labs,
                    "levels": list(lot.levels), "analytes": analytes})
    return out


def load_level(region_id: int, level_id: int | None, analyte_id: int | None,
               lot_id: int | None, default_ts: TestSystem | None) -> tuple[QcLevel, Analyte]:
    """Resolve the lot page's level and analyte (defaults: the viewer's first system)."""
    choices = lot_choices(region_id)
    if not choices:
        raise NotFound("本区域尚无使用质控品的检测系统", field="lot")
    if lot_id is not None:
        match = next((c for c in choices if c["lot"].id == lot_id), None)
        if match is None:
            raise NotFound("本区域没有使用该批号的实验室", field="lot")
    elif level_id is not None:
        level = db.session.get(QcLevel, level_id)
        match = next((c for c in choices if level and c["lot"].id == level.lot_id), None)
        if match is None:
            raise NotFound("质控水平不存在", field="level")
    else:
        lot = default_ts.qc_lot_id if default_ts else None
        match = next((c for c in choices if c["lot"].id == lot), choices[0])
    levels = {lv.id: lv for lv in match["levels"]}
    if level_id is not None and level_id not in levels:
        raise UserError("所选水平不属于该批号", field="level")
    level = levels[level_id] if level_id is not None else match["levels"][0]
    analytes = {a.id: a for a in match["analytes"]}
    if analyte_id is not None and analyte_id not in analytes:
        raise UserError("该批号在本区域没有此检验项目", field="analyte")
    if analyte_id is None:
        analyte_id = default_ts.analyte_id if default_ts and default_ts.analyte_id in analytes \
            else next(iter(analytes))
    return level, analytes[analyte_id]


def saved_groupings(region_id: int) -> list[SavedGrouping]:
    """Return the region's saved groupings by name."""
    return list(db.session.scalars(select(SavedGrouping).where(
        SavedGrouping.region_id == region_id).order_by(SavedGrouping.name)))


def load_grouping(region_id: int, grouping_id: int) -> SavedGrouping:
    """Return a saved grouping of the region, else 404."""
    grouping = db.session.get(SavedGrouping, grouping_id)
    if grouping is None or grouping.region_id != region_id:
        raise NotFound("分组方案不存在", field="grouping")
    return grouping


def trend_series(region_id: int, ts_id: int, level_id: int, today: date
                 ) -> tuple[list[str], dict[str, list[float | None]]]:
    """Return 12 months of SDI and CVR of one system × level (frozen months + live)."""
    months = recent_months(today, 12)
    series = history(region_id, [ts_id], months, today).get((ts_id, level_id), {})
    return months, {"SDI": [series.get(m, (None, None))[0] for m in months],
                    "CVR": [series.get(m, (None, None))[1] for m in months]}


# ------------------------------------------------------------------ the centre's views


def matrix(region_id: int, period: Period, *, lot_id: int | None = None,
           level_index: int | None = None, row_filters: Mapping[str, Sequence[str]] | None = None
           ) -> tuple[list[dict], list[Analyte], PeerSnapshot | None]:
    """Return labs × analytes cells (grade, SDI, CVR per level) for the centre.

    Statistics always use the full default grouping (so a cell equals the lab's own page);
    ``row_filters`` only choose which systems are shown.
    """
    rows, snap = region_results(region_id, period,
                                lot_ids=[lot_id] if lot_id is not None else None)
    systems = systems_frame(region_id, lot_ids=[lot_id] if lot_id is not None else None,
                            filters=row_filters or None)
    shown = set(systems["ts_id"].tolist())
    levels = {lv.id: lv for lv in db.session.scalars(select(QcLevel))}
    rows = [r for r in rows if r.ts_id in shown and (
        level_index is None or levels[r.qc_level_id].level_index == level_index)]
    lab_ids = {r.lab_id for r in rows}
    labs = {lab.id: lab for lab in db.session.scalars(
        select(Lab).where(Lab.id.in_(lab_ids)).order_by(Lab.id))} if lab_ids else {}
    analyte_ids = sorted({r.analyte_id for r in rows})
    analytes = list(db.session.scalars(select(Analyte).where(Analyte.id.in_(analyte_ids))
                                       .order_by(Analyte.id))) if analyte_ids else []
    instruments = dict(zip(systems["ts_id"], systems["instrument_model"], strict=True))
    table: dict[int, dict] = {}
    for r in rows:
        lab = labs[r.lab_id]
        entry = table.setdefault(lab.id, {"lab": lab, "cells": {}, "grades": []})
        entry["cells"].setdefault(r.analyte_id, []).append(
            {"row": r, "level": levels[r.qc_level_id], "instrument": instruments.get(r.ts_id)})
        if r.grade:
            entry["grades"].append(r.grade)
    out = []
    for entry in sorted(table.values(), key=lambda e: e["lab"].id):
        for cells in entry["cells"].values():
            cells.sort(key=lambda c: (c["row"].ts_id, c["level"].level_index))
        per_analyte = [compute.worst_grade(c["row"].grade for c in cells)
                       for cells in entry["cells"].values()]
        graded = [g for g in per_analyte if g]
        entry["overall"] = qpeer.lab_overall_grade(graded) if graded else None
        out.append(entry)
    return out, analytes, snap


@dataclass(frozen=True)
class NcclRow:
    """NCCL-style pass rates of one analyte × QC level."""

    analyte: Analyte
    level: QcLevel
    n: int
    cv_pass: int
    tea_third: int
    tea_quarter: int
    bias_pass: int
    passed: int
    allowable_cv: float | None
    allowable_bias: float | None
    tea_pct: float | None

    def rate(self, count: int) -> float | None:
        """Return ``count`` as a percentage of the assessed systems."""
        return 100.0 * count / self.n if self.n else None


def nccl_table(region_id: int, period: Period, lot_id: int | None = None) -> list[NcclRow]:
    """Return pass rates per analyte × level: CV vs allowable CV, TEa/3, TEa/4, bias, overall."""
    rows, _ = region_results(region_id, period,
                             lot_ids=[lot_id] if lot_id is not None else None)
    specs = load_specs({r.analyte_id for r in rows})
    levels = {lv.id: lv for lv in db.session.scalars(select(QcLevel))}
    analytes = {a.id: a for a in db.session.scalars(select(Analyte))}
    buckets: dict[tuple[int, int], list] = {}
    for r in rows:
        spec = specs.get(r.analyte_id)
        verdict = compute.nccl({"cv": r.cv, "bias_pct": r.bias_pct, "tea_pct": r.tea_pct},
                               spec) if r.publishable else None
        key = (r.analyte_id, levels[r.qc_level_id].level_index)
        buckets.setdefault(key, []).append((r, verdict))
    out = []
    for (analyte_id, _), items in sorted(buckets.items()):
        judged = [v for _, v in items if v is not None]
        spec = specs.get(analyte_id)
        teas = [r.tea_pct for r, _ in items if r.tea_pct is not None]
        out.append(NcclRow(
            analytes[analyte_id], levels[items[0][0].qc_level_id], len(judged),
            sum(v.cv_pass for v in judged), sum(v.cv_within_tea_third for v in judged),
            sum(v.cv_within_tea_quarter for v in judged), sum(v.bias_pass for v in judged),
            sum(v.passed for v in judged), spec.allowable_cv if spec else None,
            spec.allowable_bias if spec else None,
            sorted(teas)[len(teas) // 2] if teas else None))
    return out


KNOWN_UNITS = frozenset({
    "mmol/l", "µmol/l", "umol/l", "nmol/l", "pmol/l", "mol/l", "mg/dl", "g/dl", "g/l", "mg/l",
    "µg/l", "ug/l", "ng/ml", "pg/ml", "µg/dl", "ug/dl", "u/l", "iu/l", "mu/l", "miu/l",
    "uiu/ml", "µiu/ml", "miu/ml", "iu/ml", "ku/l", "%", "mmol/mol", "s", "sec", "inr",
    "10^9/l", "10^12/l", "fl", "pg", "mg/24h", "meq/l", "ratio",
})


def _unit_known(unit: str | None) -> bool:
    if not unit:
        return False
    return unit.strip().lower().replace("μ", "µ").replace(" ", "") in KNOWN_UNITS


@dataclass(frozen=True)
class ExceptionItem:
    """One suspicious test system (× level) for the centre to check."""

    kind: str
    lab: str
    ts_id: int
    lab_id: int
    analyte: str
    level: str | None
    detail: str


def exceptions(region_id: int, period: Period, min_n: int = 10,
               outlier_sd: float = 5.0) -> dict[str, list[ExceptionItem]]:
    """Return the exception report: unknown unit, unit ≠ group's, mean > 5 SD off, few results.

    The unit check compares each system with the most common unit of its lot × analyte; the
    outlier check uses the lot/level/analyte Algorithm A group of all labs (≥ 3 systems), so
    a system coded to the wrong analyte or reporting in another unit stands out.
    """
    systems = systems_frame(region_id)
    frame = compute.system_stats(system_moments(systems, period))
    levels = {lv.id: lv for lv in db.session.scalars(select(QcLevel))}
    analytes = {a.id: a for a in db.session.scalars(select(Analyte))}
    report: dict[str, list[ExceptionItem]] = {"unknown_unit": [], "unit_mismatch": [],
                                              "outlier": [], "few_results": []}

    def item(kind: str, r: Mapping, level_id: int | None, detail: str) -> ExceptionItem:
        level = levels[level_id].name if level_id is not None else None
        return ExceptionItem(kind, f"{r['hospital_name']}·{r['lab_name']}", int(r["ts_id"]),
                             int(r["lab_id"]), analytes[int(r["analyte_id"])].name, level, detail)

    majority = {key: _majority(part["unit"]) for key, part in
                systems.groupby(["lot_id", "analyte_id"])} if len(systems) else {}
    for r in systems.to_dict("records"):
        if not _unit_known(r["unit"]):
            report["unknown_unit"].append(item("unknown_unit", r, None,
                                               f"单位“{r['unit']}”不在常用单位表中"))
        group_unit = majority.get((r["lot_id"], r["analyte_id"]))
        if group_unit is not None and r["unit"] != group_unit:
            detail = f"本系统单位 {r['unit']}，同批号同项目多数为 {group_unit}"
            report["unit_mismatch"].append(item("unit_mismatch", r, None, detail))
    if len(frame):
        stats = compute.level_stats(frame, list(compute.BASE_KEYS))
        for r, g in zip(frame.to_dict("records"), stats.to_dict("records"), strict=True):
            sd, gm = g["g_sd"], g["g_mean"]
            if g["n_systems"] >= 3 and sd and math.isfinite(sd) and sd > 0 \
                    and abs(r["mean"] - gm) > outlier_sd * sd:
                report["outlier"].append(item(
                    "outlier", r, int(r["qc_level_id"]),
                    f"均值 {r['mean']:.4g}，全部实验室稳健均值 {gm:.4g}，"
                    f"偏离 {(r['mean'] - gm) / sd:+.1f} SD（疑似项目编码或单位错误）"))
    counts = {(int(r["ts_id"]), int(r["qc_level_id"])): int(r["n"])
              for r in frame.to_dict("records")} if len(frame) else {}
    active = systems[systems["active"].astype(bool)] if len(systems) else systems
    level_map = _system_levels(active["ts_id"].tolist()) if len(active) else {}
    for r in active.to_dict("records"):
        for level_id in level_map.get(int(r["ts_id"]), []):
            n = counts.get((int(r["ts_id"]), level_id), 0)
            if n < min_n:
                detail = f"{period.label}仅 {n} 个在控结果（少于 {min_n}）"
                report["few_results"].append(item("few_results", r, level_id, detail))
    return report


def _system_levels(ts_ids: Sequence[int]) -> dict[int, list[int]]:
    from qcwx.catalog.models import test_system_level

    rows = db.session.execute(select(test_system_level.c.test_system_id,
                                     test_system_level.c.qc_level_id).where(
        test_system_level.c.test_system_id.in_([int(i) for i in ts_ids]))).all()
    out: dict[int, list[int]] = {}
    for ts_id, level_id in rows:
        out.setdefault(ts_id, []).append(level_id)
    return out
