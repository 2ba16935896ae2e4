"""The QC-lot comparison page: one level × analyte, a stackable filter stack, its fallbacks.

Every level of the page — the filtered group, its method group, all labs on the lot/level — is
taken within one unit (QC_SPEC §3): the unit filtered on, else the unit of the viewer's own
system, else the unit most labs report in. Labs in another unit are counted and named on the
page but never pooled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

import pandas as pd
from sqlalchemy import func, select

from qcwx.catalog.models import Analyte, QcLevel, QcLot, QcMaterial, TestSystem
from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Hospital, Lab, User
from qcwx.peer import compute
from qcwx.peer.filters import (
    DIMENSIONS,
    METHOD_KEYS,
    Period,
    describe,
    recent_months,
)
from qcwx.peer.models import GROUP_LEVEL_LABELS, SavedGrouping
from qcwx.peer.queries import grade_or_none, int_or_none, num, own_lab_ids
from qcwx.peer.queries.frames import load_specs, system_moments, systems_frame
from qcwx.peer.queries.labs import history
from qcwx.peer.units import unit_key
from qcwx.qcstats import peer as qpeer

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
    #: The lab's anonymous code (the chart's short axis label); "" when not loaded.
    anon_code: str = ""


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
    #: Other units reported on this lot/level: (unit as written, labs) — never pooled.
    other_units: tuple[tuple[str, int], ...] = ()
    #: Members' labs the viewer may open (``peer.lab``): the centre all, a lab its own.
    linkable: frozenset[int] = frozenset()

    @property
    def peer(self) -> LevelSize | None:
        """Return the size of the filtered group itself (the first level)."""
        return self.sizes[0] if self.sizes else None

    @property
    def empty(self) -> bool:
        """Return True when the filters match no system with results."""
        return self.peer is None or self.peer.n_systems == 0


def _match(frame: pd.DataFrame, filters: Mapping[str, Sequence[str]]) -> pd.Series:
    """Return the rows matching every dimension (units compared by :func:`unit_key`)."""
    mask = pd.Series(True, index=frame.index)
    for dim, values in filters.items():
        if dim == "unit":
            mask &= frame[compute.UNIT_KEY].isin({unit_key(v) for v in values})
        else:
            mask &= frame[dim].astype("string").isin([str(v) for v in values]).fillna(False)
    return mask.astype(bool)


def choose_unit(frame: pd.DataFrame, filters: Mapping[str, Sequence[str]], analyte: Analyte,
                preferred_labs: set[int]) -> str:
    """Return the unit key the page compares in (QC_SPEC §3: one unit at every level).

    The unit filtered on (several spellings of one unit are fine; two units are refused);
    else the unit of the viewer's own (or highlighted) labs' systems; else the unit most labs
    report in, ties going to the analyte's own unit.
    """
    wanted = {unit_key(v) for v in filters.get("unit", [])}
    if len(wanted) > 1:
        raise UserError("单位只能选择一种：不同单位的结果不能合并比对", field="unit")
    if wanted:
        return wanted.pop()
    own = unit_key(analyte.unit)
    if not len(frame):
        return own
    mine = frame[frame["lab_id"].isin(preferred_labs)]
    labs = (mine if len(mine) else frame).groupby(compute.UNIT_KEY)["lab_id"].nunique()
    return min(labs.index, key=lambda k: (-labs[k], k != own, k))


def _unit_frame(region_id: int, level: QcLevel, analyte: Analyte, period: Period,
                filters: Mapping[str, Sequence[str]], preferred_labs: set[int]):
    systems = systems_frame(region_id, analyte_ids=[analyte.id], lot_ids=[level.lot_id])
    systems = compute.with_unit_key(systems)
    frame = compute.system_stats(system_moments(systems, period, [level.id]))
    return systems, frame, choose_unit(frame, filters, analyte, preferred_labs)


def _preferred_labs(actor: User | None, highlight_lab: int | None) -> set[int]:
    if highlight_lab:
        return {highlight_lab}
    return own_lab_ids(actor) if actor is not None else set()


def _size(frame: pd.DataFrame, mask: pd.Series, level: str, description: str) -> LevelSize:
    part = frame[mask]
    n_labs, n_results = int(part["lab_id"].nunique()), int(part["n"].sum())
    return LevelSize(level, GROUP_LEVEL_LABELS[level], description, n_labs, int(len(part)),
                     n_results, qpeer.publishable(n_labs, n_results))


def lot_levels(region_id: int, filters: Mapping[str, Sequence[str]],
               frame: pd.DataFrame, unit: str) -> tuple[list[LevelSize], dict[str, pd.Series]]:
    """Return the level sizes of a filter stack: the filtered group, its method, all.

    Every level is taken within the unit key ``unit`` (see :func:`choose_unit`).
    """
    same_unit = frame[compute.UNIT_KEY] == unit if len(frame) else pd.Series(
        True, index=frame.index)
    masks = {"all": same_unit}
    sizes = []
    if filters:
        masks["peer"] = _match(frame, filters) & same_unit
        sizes.append(_size(frame, masks["peer"], "peer", describe(filters)))
        method_filters = {k: v for k, v in filters.items()
                          if k in METHOD_KEYS or k == "method_principle"}
        if method_filters and method_filters != dict(filters):
            masks["method"] = _match(frame, method_filters) & same_unit
            sizes.append(_size(frame, masks["method"], "method", describe(method_filters)))
    shown = _majority(frame.loc[same_unit, "unit"]) if same_unit.any() else unit
    sizes.append(_size(frame, masks["all"], "all", f"同批号同水平全部实验室（{shown}）"))
    return sizes, masks


def lot_view(actor: User, region_id: int, level: QcLevel, analyte: Analyte, period: Period,
             filters: Mapping[str, list[str]], highlight_lab: int | None = None) -> LotView:
    """Return the lot comparison of one level × analyte for a filter stack (fallback included).

    The filtered group is the first level; when it is not publishable the method group (if
    a method is filtered on) and then all labs on the lot/level are tried
    (``choose_group_level``), all within one unit (:func:`choose_unit`). Members of the chosen
    group are labelled by name only for viewers who may see identities (or their own labs),
    by anonymous code otherwise.
    """
    systems, frame, unit_key_ = _unit_frame(region_id, level, analyte, period, filters,
                                            _preferred_labs(actor, highlight_lab))
    sizes, masks = lot_levels(region_id, filters, frame, unit_key_)
    # An empty filtered group is a filter that matches nothing: say so, do not fall back.
    choice = qpeer.choose_group_level({s.level: (s.n_labs, s.n_results) for s in sizes}) \
        if sizes[0].n_systems else None
    chosen = next((s for s in sizes if choice and s.level == choice.level), None)
    options, names = filter_options(systems, frame, filters, unit_key_)
    same = frame[frame[compute.UNIT_KEY] == unit_key_] if len(frame) else frame
    unit = _majority(same["unit"]) if len(same) else analyte.unit
    empty_view = LotView(level, analyte, period, dict(filters), sizes, chosen, [], None, None,
                         None, False, None, unit, options, names, _other_units(frame, unit_key_))
    if chosen is None:
        return empty_view
    part = frame[masks[chosen.level]].reset_index(drop=True)
    stats = compute.level_stats(part, [])
    part = pd.concat([part, stats], axis=1)
    specs = load_specs([analyte.id])
    compute.add_performance(part, specs)
    own = own_lab_ids(actor)
    # Names: the labs in the actor's scope (a centre's subtree), every lab for the admin only;
    # a centre highlights the lab it came from, a lab user its own labs.
    sees = scopes.sees_identities(actor)
    highlight = (({highlight_lab} if highlight_lab else set())
                 if scopes.is_centre_reader(actor) else own)
    records = part.to_dict("records")
    labels = member_labels(records, own, sees)
    members = [Member(int(r["ts_id"]), int(r["lab_id"]), labels[i], int(r["lab_id"]) in highlight,
                      int(r["n"]), float(r["mean"]), num(r["sd"]), num(r["cv"]), num(r["sdi"]),
                      num(r["cvr"]), num(r["bias_pct"]), int_or_none(r["bias_rank"]),
                      grade_or_none(r["grade"]), num(r["sigma"]), str(r["anon_code"] or ""))
               for i, r in enumerate(records)]
    first = part.iloc[0]
    return replace(empty_view, members=members, g_mean=num(first["g_mean"]),
                   g_sd=num(first["g_sd"]), g_cv=num(first["g_cv"]),
                   g_flagged=bool(first["g_flagged"]), tea_pct=num(first["tea_pct"]),
                   linkable=_linkable(actor, {m.lab_id for m in members}))


def _linkable(actor: User, lab_ids: set[int]) -> frozenset[int]:
    """Return the labs of ``lab_ids`` inside the actor's scope (their pages may be linked)."""
    if not lab_ids:
        return frozenset()
    stmt = scopes.lab_ids_in_scope(actor).where(Lab.id.in_(sorted(lab_ids)))
    return frozenset(int(i) for i in db.session.scalars(stmt))


def lot_size(region_id: int, level: QcLevel, analyte: Analyte, period: Period,
             filters: Mapping[str, list[str]], actor: User | None = None,
             highlight_lab: int | None = None) -> LevelSize:
    """Return the size of the filtered group alone (the filter panel's live count)."""
    _, frame, unit = _unit_frame(region_id, level, analyte, period, filters,
                                 _preferred_labs(actor, highlight_lab))
    return lot_levels(region_id, filters, frame, unit)[0][0]


def _other_units(frame: pd.DataFrame, unit: str) -> tuple[tuple[str, int], ...]:
    """Return the other units on the page's lot/level with their lab counts, most labs first."""
    if not len(frame):
        return ()
    other = frame[frame[compute.UNIT_KEY] != unit]
    found = [(_majority(part["unit"]), int(part["lab_id"].nunique()))
             for _, part in other.groupby(compute.UNIT_KEY)]
    return tuple(sorted(found, key=lambda u: (-u[1], u[0])))


def _majority(values: pd.Series) -> str:
    counts = Counter(str(v) for v in values)
    return counts.most_common(1)[0][0]


def member_labels(records: Sequence[Mapping], own: set[int], sees: bool) -> list[str]:
    """Label each member: name (centre, own labs) or anonymous code; repeated labs get a suffix."""
    repeats = Counter(r["lab_id"] for r in records)
    labels = []
    for r in records:
        named = sees or int(r["lab_id"]) in own
        label = r["hospital_name"] if named else r["anon_code"]
        if repeats[r["lab_id"]] > 1:
            label = f"{label}（{r['instrument_model']}）"
        labels.append(str(label))
    return labels


def filter_options(systems: pd.DataFrame, frame: pd.DataFrame,
                   filters: Mapping[str, Sequence[str]], unit: str | None = None
                   ) -> tuple[dict[str, list[tuple[str, str, int]]], dict[str, dict[str, str]]]:
    """Return each dimension's values with the lab count they would give (facet counts).

    The count of a value is the number of labs with results matching every *other*
    dimension's filter plus this value (within the page's unit ``unit``, except for the unit
    dimension itself), so users see how the group would change. Spellings of one unit are
    offered once.
    """
    names = value_names(systems)
    options: dict[str, list[tuple[str, str, int]]] = {}
    for dim in DIMENSIONS:
        others = {k: v for k, v in filters.items() if k != dim}
        if unit is not None and dim != "unit":
            others["unit"] = [unit]
        base = frame[_match(frame, others)] if len(frame) else frame
        values = sorted({str(v) for v in systems[dim].dropna()} | set(filters.get(dim, [])))
        if dim == "unit":
            values = list({unit_key(v): v for v in reversed(values)}.values())[::-1]
        opts = []
        for v in values:
            count = int(base.loc[_match(base, {dim: [v]}), "lab_id"].nunique()) \
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
        .where(Hospital.region_id.in_(scopes.region_subtree(region_id)))
        .group_by(QcLot.id, QcMaterial.name).order_by(QcLot.id)).all()
    out = []
    for lot, material, n_labs in lots:
        analytes = list(db.session.scalars(
            select(Analyte).join(TestSystem, TestSystem.analyte_id == Analyte.id)
            .join(Lab, Lab.id == TestSystem.lab_id).join(Hospital, Hospital.id == Lab.hospital_id)
            .where(Hospital.region_id.in_(scopes.region_subtree(region_id)),
                   TestSystem.qc_lot_id == lot.id)
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


