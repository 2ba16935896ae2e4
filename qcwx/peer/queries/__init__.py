"""Read peer statistics for the pages: scoped, anonymised, live or frozen.

The comparison universe is the actor's region: a lab is compared with every lab of its region
on the same QC lot and level, but below ``center`` it sees other labs only by anonymous code
and only as per-lab aggregates (never their raw results). Which labs count as "own" (named,
highlighted) comes from :func:`qcwx.orgs.scopes.lab_ids_in_scope`; names from
:func:`qcwx.orgs.scopes.sees_identities`. Objects outside the region answer 404.

Per-system moments come from :mod:`qcwx.peer.queries.frames` (the ``peer_lab_day`` cache, or raw
results of judged, non-rejected runs); :mod:`qcwx.peer.compute` does the statistics. This
module holds the region and scope, the compared rows and the lab page; the lot page is in
:mod:`qcwx.peer.queries.lot`, the centre's matrix and NCCL table in
:mod:`qcwx.peer.queries.centre`, the exception report in :mod:`qcwx.peer.queries.exceptions`,
the members of a row's group (for its charts) in :mod:`qcwx.peer.queries.members`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import select

from qcwx.catalog.models import (
    TestSystem,
)
from qcwx.errors import NotFound
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.peer import compute
from qcwx.peer.filters import (
    Period,
)
from qcwx.peer.models import (
    GROUP_LEVEL_LABELS,
    PeerSnapshot,
    PeerSnapshotLab,
)
from qcwx.peer.queries.frames import load_specs, system_moments, systems_frame
from qcwx.qcstats import peer as qpeer

UNPUBLISHED = "比对组实验室不足 5 家或结果不足 20 个，暂不发布统计"

# ------------------------------------------------------------------ region and scope


def region_id_for(actor: User, requested: int | None = None) -> int:
    """Return the region whose labs the actor looks at (admins pick any, centres one of theirs).

    A centre or expert may pick a region of its subtree; anything else answers 404.
    """
    if actor.role == "admin":
        if requested is not None:
            if db.session.get(Region, requested) is None:
                raise NotFound("区域不存在", field="region")
            return requested
        first = db.session.scalar(select(Region.id).order_by(Region.id).limit(1))
        if first is None:
            raise NotFound("尚未建立任何区域", field="region")
        return first
    if actor.role in scopes.REGION_ROLES and actor.region_id is not None:
        if requested is not None and requested != actor.region_id:
            if not scopes.region_in_scope(actor, requested):
                raise NotFound("区域不存在", field="region")
            return requested
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


# ------------------------------------------------------------------ compared rows


def group_label(row: Mapping, level: str | None) -> str:
    """Return the Chinese description of a default-grouping group from a member row.

    Every level names its unit: no level pools units (QC_SPEC §3).
    """
    if level == "peer":
        parts = [f"{row.get('instrument_maker') or '未登记'}仪器",
                 f"{row.get('reagent_maker') or '未登记'}试剂",
                 row.get("method_name") or "未登记方法", row.get("unit"),
                 row.get("temperature")]
        return " · ".join(str(p) for p in parts if p)
    if level == "method":
        return f"{row.get('method_name') or '未登记方法'} · {row.get('unit')}"
    if level == "all":
        return f"同批号同水平全部实验室 · {row.get('unit')}"
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


def num(value) -> float | None:
    if value is None:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def level_of(value) -> str | None:
    """Return a group level (``peer``/``method``/``all``), None for missing (None, NaN, NA)."""
    return value if isinstance(value, str) and value in GROUP_LEVEL_LABELS else None


def grade_or_none(value) -> str | None:
    return value if isinstance(value, str) else None


def int_or_none(value) -> int | None:
    v = num(value)
    return int(v) if v is not None else None


def result_from_row(row: Mapping, specs: Mapping[int, compute.SpecInfo]) -> SystemResult:
    """Build a display row from a :func:`compare_region` record (live statistics)."""
    spec = specs.get(int(row["analyte_id"]))
    level = level_of(row.get("group_level"))
    published = level is not None
    return SystemResult(
        ts_id=int(row["ts_id"]), lab_id=int(row["lab_id"]), qc_level_id=int(row["qc_level_id"]),
        analyte_id=int(row["analyte_id"]), n=int(row["n"]), mean=float(row["mean"]),
        sd=num(row["sd"]), cv=num(row["cv"]), unit=str(row["unit"]),
        group_level=level, group_label=row.get("group_label") if published else None,
        n_labs=int_or_none(row.get("n_labs")), n_systems=int_or_none(row.get("n_systems")),
        n_results=int_or_none(row.get("n_results")),
        g_mean=num(row.get("g_mean")) if published else None,
        g_sd=num(row.get("g_sd")) if published else None,
        g_cv=num(row.get("g_cv")) if published else None,
        g_flagged=bool(row.get("g_flagged")) if published else False,
        sdi=num(row.get("sdi")) if published else None,
        cvr=num(row.get("cvr")) if published else None,
        bias_pct=num(row.get("bias_pct")) if published else None,
        bias_rank=int_or_none(row.get("bias_rank")) if published else None,
        cv_rank=int_or_none(row.get("cv_rank")) if published else None,
        rank_size=int_or_none(row.get("rank_size")) if published else None,
        tea_pct=num(row.get("tea_pct")), tea_source=spec.source if spec else None,
        allowable_cv=spec.allowable_cv if spec else None,
        allowable_bias=spec.allowable_bias if spec else None,
        sigma=num(row.get("sigma")), grade=grade_or_none(row.get("grade")))


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
