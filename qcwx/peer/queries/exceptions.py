"""The centre's exception report: units, outliers and too few results, per QC lot/level.

* ``unit_mismatch`` — within one QC lot, level and analyte, systems whose unit (compared after
  :func:`qcwx.peer.units.unit_key`) differs from the one most labs use. They are compared only
  with their own unit (QC_SPEC §3: never pooled), so the centre must see them here.
* ``unknown_unit`` — a unit not in :data:`qcwx.peer.units.KNOWN_UNITS`.
* ``outlier`` — a system mean more than 5 SD from the Algorithm A mean of all labs on its
  lot/level in the same unit (≥ 3 systems): a system coded to the wrong analyte, or whose
  unit field does not match the numbers it reports.
* ``no_loinc`` · ``no_ucum`` · ``loinc_mismatch`` — codes missing for the open data set, or an
  analyser's LOINC that is not the mapped analyte's (:mod:`qcwx.opendata.code_gaps`).
* ``few_results`` — an active system × level with fewer in-control results than asked, judged
  only once the period has had time to collect them (:func:`few_results_due`): a calendar
  month from its 20th day on (a finished month always qualifies), rolling 30 days and lot
  cumulative always. On the 6th of a month every lab has "too few" results; that is no
  exception.

The page shows one kind at a time, sorted and paged on the server (:func:`report_page`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select

from qcwx.catalog.models import Analyte, QcLevel, test_system_level
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.opendata import code_gaps
from qcwx.peer import compute
from qcwx.peer.filters import CALENDAR_KINDS, Period
from qcwx.peer.paging import Page, paginate
from qcwx.peer.queries.frames import system_moments, systems_frame
from qcwx.peer.units import unit_key, unit_known

KINDS = ("unknown_unit", "unit_mismatch", "outlier", "few_results", *code_gaps.KIND_TITLES)
#: The kinds in the order the page offers them, with their Chinese titles.
KIND_TITLES = {
    "unit_mismatch": "同批号同水平单位不一致（不同单位不合并比对）",
    "outlier": "均值偏离同单位全部实验室 5 SD 以上（疑似编码或单位错误）",
    "unknown_unit": "未知单位",
    "few_results": "结果过少",
    **code_gaps.KIND_TITLES,
}
KIND_SHORT = {"unit_mismatch": "单位不一致", "outlier": "偏离 5 SD", "unknown_unit": "未知单位",
              "few_results": "结果过少", **code_gaps.KIND_SHORT}
#: Orders of one kind's list (query ``sort``).
SORTS = {"lab": "按实验室", "analyte": "按项目"}
#: A calendar month is checked for "too few results" from this many days on.
FEW_RESULTS_MIN_DAYS = 20


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


MakeItem = Callable[[str, Mapping, "int | None", str], ExceptionItem]


@dataclass(frozen=True)
class ExceptionPage:
    """One kind of the exception report, sorted and paged, with every kind's count."""

    kind: str
    sort: str
    counts: dict[str, int]
    page: Page[ExceptionItem]
    few_results_due: bool
    days_so_far: int | None


def days_so_far(period: Period) -> int | None:
    """Return the days the period covers up to now (None for a lot's open-ended cumulation)."""
    return (period.end - period.start).days + 1 if period.start is not None else None


def few_results_due(period: Period) -> bool:
    """Return whether "too few results" may be judged: the period has had time to collect.

    A calendar month, quarter or year qualifies from its :data:`FEW_RESULTS_MIN_DAYS`-th day
    (a finished month has at least 28); rolling 30 days and lot cumulative always do.
    """
    return (period.kind not in CALENDAR_KINDS
            or (days_so_far(period) or 0) >= FEW_RESULTS_MIN_DAYS)


def report_page(region_id: int, period: Period, *, min_n: int = 10, kind: str | None = None,
                sort: str = "lab", page: int = 1) -> ExceptionPage:
    """Return one kind of the report (default: the first kind with items), sorted and paged."""
    if kind is not None and kind not in KIND_TITLES:
        raise UserError(f"异常类型无效：{kind[:20]}", field="kind")
    if sort not in SORTS:
        raise UserError(f"排序方式无效：{sort[:20]}", field="sort")
    report = exceptions(region_id, period, min_n=min_n)
    counts = {k: len(report[k]) for k in KIND_TITLES}
    kind = kind or next((k for k in KIND_TITLES if counts[k]), next(iter(KIND_TITLES)))
    items = sorted(report[kind], key=(lambda i: (i.lab, i.analyte, i.level or "", i.ts_id))
                   if sort == "lab" else (lambda i: (i.analyte, i.level or "", i.lab, i.ts_id)))
    return ExceptionPage(kind, sort, counts, paginate(items, page), few_results_due(period),
                         days_so_far(period))


def exceptions(region_id: int, period: Period, min_n: int = 10,
               outlier_sd: float = 5.0) -> dict[str, list[ExceptionItem]]:
    """Return the exception report: unknown unit, unit mismatch, mean > 5 SD off, few results.

    Few results are listed only when :func:`few_results_due` (else the list is empty).

    A unit mismatch is reported per system × QC level: within the lot/level/analyte the
    reference unit is the one the most labs report in (ties: the analyte's own unit, then
    alphabetical); the outlier check uses the lot/level/analyte/unit Algorithm A group of all
    labs (≥ 3 systems).
    """
    systems = systems_frame(region_id, within_region=True)
    frame = compute.system_stats(system_moments(systems, period))
    levels = {lv.id: lv for lv in db.session.scalars(select(QcLevel))}
    analytes = {a.id: a for a in db.session.scalars(select(Analyte))}

    def item(kind: str, r: Mapping, level_id: int | None, detail: str) -> ExceptionItem:
        level = levels[level_id].name if level_id is not None else None
        return ExceptionItem(kind, f"{r['hospital_name']}·{r['lab_name']}", int(r["ts_id"]),
                             int(r["lab_id"]), analytes[int(r["analyte_id"])].name, level, detail)

    level_map = _system_levels(systems["ts_id"].tolist()) if len(systems) else {}
    order = {lv_id: lv.level_index for lv_id, lv in levels.items()}
    for ts_levels in level_map.values():
        ts_levels.sort(key=lambda lv_id: order.get(lv_id, lv_id))
    own_units = {a_id: unit_key(a.unit) for a_id, a in analytes.items()}
    return {
        "unknown_unit": [item("unknown_unit", r, None, f"单位“{r['unit']}”不在常用单位表中")
                         for r in systems.to_dict("records") if not unit_known(r["unit"])],
        "unit_mismatch": unit_mismatches(systems, level_map, own_units, item),
        "outlier": _outliers(frame, outlier_sd, item),
        "few_results": _few_results(systems, frame, level_map, period, min_n, item)
        if few_results_due(period) else [],
        **code_gaps.code_exceptions(systems, {a_id: a.name for a_id, a in analytes.items()},
                                    item),
    }


def unit_mismatches(systems: pd.DataFrame, level_map: Mapping[int, Sequence[int]],
                    own_units: Mapping[int, str], item: MakeItem) -> list[ExceptionItem]:
    """Return one item per system × level whose unit differs from its lot/level's reference."""
    rows = [{**r, "qc_level_id": lv, "key": unit_key(r["unit"])}
            for r in systems.to_dict("records") for lv in level_map.get(int(r["ts_id"]), [])]
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    out = []
    for (_, level_id, analyte_id), part in frame.groupby(["lot_id", "qc_level_id", "analyte_id"]):
        labs = part.groupby("key")["lab_id"].nunique()
        if len(labs) < 2:
            continue
        own = own_units.get(int(analyte_id))
        ref = min(labs.index, key=lambda k: (-labs[k], k != own, k))
        ref_unit = _majority(part.loc[part["key"] == ref, "unit"])
        for r in part[part["key"] != ref].sort_values("ts_id").to_dict("records"):
            out.append(item("unit_mismatch", r, int(level_id), (
                f"本系统单位 {r['unit']}（{labs[r['key']]} 家），同批号同水平 {labs[ref]} 家为 "
                f"{ref_unit}；不同单位不合并统计，仅与同单位实验室比对")))
    return sorted(out, key=lambda i: (i.ts_id, i.level or ""))


def _outliers(frame: pd.DataFrame, outlier_sd: float, item: MakeItem) -> list[ExceptionItem]:
    if not len(frame):
        return []
    out = []
    stats = compute.level_stats(frame, list(compute.BASE_KEYS))
    for r, g in zip(frame.to_dict("records"), stats.to_dict("records"), strict=True):
        sd, gm = g["g_sd"], g["g_mean"]
        if g["n_systems"] >= 3 and sd and math.isfinite(sd) and sd > 0 \
                and abs(r["mean"] - gm) > outlier_sd * sd:
            out.append(item(
                "outlier", r, int(r["qc_level_id"]),
                f"均值 {r['mean']:.4g} {r['unit']}，同单位全部实验室稳健均值 {gm:.4g}，"
                f"偏离 {(r['mean'] - gm) / sd:+.1f} SD（疑似项目编码或单位错误）"))
    return out


def _few_results(systems: pd.DataFrame, frame: pd.DataFrame,
                 level_map: Mapping[int, Sequence[int]], period: Period, min_n: int,
                 item: MakeItem) -> list[ExceptionItem]:
    counts = {(int(r["ts_id"]), int(r["qc_level_id"])): int(r["n"])
              for r in frame.to_dict("records")} if len(frame) else {}
    active = systems[systems["active"].astype(bool)] if len(systems) else systems
    out = []
    for r in active.to_dict("records"):
        for level_id in level_map.get(int(r["ts_id"]), []):
            n = counts.get((int(r["ts_id"]), level_id), 0)
            if n < min_n:
                detail = f"{period.label}仅 {n} 个在控结果（少于 {min_n}）"
                out.append(item("few_results", r, level_id, detail))
    return out


def _majority(values: pd.Series) -> str:
    return Counter(str(v) for v in values).most_common(1)[0][0]


def _system_levels(ts_ids: Sequence[int]) -> dict[int, list[int]]:
    rows = db.session.execute(select(test_system_level.c.test_system_id,
                                     test_system_level.c.qc_level_id).where(
        test_system_level.c.test_system_id.in_([int(i) for i in ts_ids]))).all()
    out: dict[int, list[int]] = {}
    for ts_id, level_id in rows:
        out.setdefault(ts_id, []).append(level_id)
    return out
