"""Read the per-system frames peer statistics are computed from: codes, moments, specifications.

A *system frame* has one row per test system with every grouping code (columns named as
:data:`qcwx.peer.filters.DIMENSIONS`); :func:`moments` adds n, Σx, Σx² per system × level of
its in-control current results — from the ``peer_lab_day`` cache for cached systems, from raw
results for the rest, both aggregated in SQL. In-control means a *judged* run that was not
rejected (status ``accept`` or ``warning``): a run still ``pending`` (no target yet) counts
neither as in control nor as out of control (QC_SPEC §3 "Who counts once").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
from sqlalchemy import Select, String, and_, cast, func, select, true

from qcwx.catalog.models import (
    Calibrator,
    Instrument,
    Method,
    QualitySpec,
    Reagent,
    TestSystem,
)
from qcwx.extensions import db
from qcwx.iqc.models import QcResult, QcRun
from qcwx.orgs.models import Hospital, Lab
from qcwx.orgs.scopes import peer_regions, region_subtree
from qcwx.peer import compute
from qcwx.peer.filters import (
    Period,
)
from qcwx.peer.models import (
    PeerLabDay,
    PeerTsState,
)
from qcwx.qcstats.specs import WST403_SOURCE, Tea

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
#: Run statuses whose results are in-control results: judged and not rejected. ``pending``
#: (no target yet) counts neither as in control nor as out of control (QC_SPEC §3, §7).
IN_CONTROL_STATUSES = ("accept", "warning")


def in_control():
    """Return the SQL condition "the run was judged and not rejected" on ``QcRun.status``."""
    return QcRun.status.in_(IN_CONTROL_STATUSES)


# ------------------------------------------------------------------ system frames


def _systems_stmt(region_id: int, within_region: bool) -> Select:
    """Select the systems compared with ``region_id``'s (its peers), or only its own subtree's.

    The peers are every lab of the region's tree, or of all trees when they pool
    (:func:`qcwx.orgs.scopes.peer_regions`); ``within_region`` keeps the region and the
    regions below it (what a centre's page lists).
    """
    stmt = (select(*_SYSTEM_COLUMNS).select_from(TestSystem)
            .join(Lab, Lab.id == TestSystem.lab_id)
            .join(Hospital, Hospital.id == Lab.hospital_id)
            .join(Instrument, Instrument.id == TestSystem.instrument_id)
            .outerjoin(Reagent, Reagent.id == TestSystem.reagent_id)
            .outerjoin(Method, Method.id == TestSystem.method_id)
            .outerjoin(Calibrator, Calibrator.id == TestSystem.calibrator_id))
    regions = region_subtree(region_id) if within_region else peer_regions(region_id)
    return stmt if regions is None else stmt.where(Hospital.region_id.in_(regions))


def region_lab_ids(region_id: int) -> set[int]:
    """Return the labs of ``region_id`` and the regions below it."""
    return set(db.session.scalars(select(Lab.id).join(Hospital).where(
        Hospital.region_id.in_(region_subtree(region_id)))))


def filter_clause(filters: Mapping[str, Sequence[str]]):
    """Return the SQL condition of a filter stack (AND across dimensions, OR within one)."""
    parts = []
    for dim, values in filters.items():
        column = DIMENSION_COLUMNS[dim]
        parts.append(column.in_([int(v) for v in values] if dim == "calibrator" else values))
    return and_(true(), *parts)


def systems_frame(region_id: int, *, analyte_ids: Iterable[int] | None = None,
                  lot_ids: Iterable[int] | None = None,
                  filters: Mapping[str, Sequence[str]] | None = None,
                  within_region: bool = False) -> pd.DataFrame:
    """Return the test systems compared with the region's (one row each), every grouping code.

    ``within_region`` keeps only the region's own subtree (see :func:`_systems_stmt`).
    """
    stmt = _systems_stmt(region_id, within_region)
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
    (only judged runs that were not rejected, :func:`in_control`; superseded versions
    excluded). ``by_month`` splits
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
                       in_control(), *_period_where(QcRun.run_date, period))
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


