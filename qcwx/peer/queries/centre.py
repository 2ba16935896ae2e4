"""The regional centre's views: the labs × analytes matrix and the NCCL pass-rate table.

The matrix ranks its labs (:func:`rank_labs`): share of analytes graded A or B, highest first;
equal shares by mean |SDI| over the lab's published rows (rounded to 2 decimals, as shown),
lowest first; labs without any grade are not ranked. Equal keys share a rank ("1224").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from qcwx.catalog.models import (
    Analyte,
    QcLevel,
)
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs.models import Lab
from qcwx.peer import compute
from qcwx.peer.filters import (
    Period,
)
from qcwx.peer.models import (
    PeerSnapshot,
)
from qcwx.peer.queries import region_results
from qcwx.peer.queries.frames import load_specs, region_lab_ids, systems_frame
from qcwx.peer.queries.lot import value_names
from qcwx.qcstats import peer as qpeer

#: Orders of the matrix (query ``sort``); ``a<analyte id>`` sorts by one analyte's column.
MATRIX_SORTS = {"rank": "综合排名", "attention": "需关注优先", "code": "匿名代码"}
#: Orders of the NCCL table (query ``sort``).
NCCL_SORTS = {"analyte": "按项目", "pass": "达标率低优先"}
_ANALYTE_SORT = re.compile(r"^a([0-9]{1,9})$")
_GRADES = "ABCD"


def facet_values(region_id: int, dims: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Return the distinct (value, display name) of some filter dimensions in the region."""
    systems = systems_frame(region_id, within_region=True)
    names = value_names(systems)
    return {dim: [(v, names.get(dim, {}).get(v, v))
                  for v in sorted({str(x) for x in systems[dim].dropna()})] for dim in dims}


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
                            filters=row_filters or None, within_region=True)
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
        sdis = [abs(c["row"].sdi) for cells in entry["cells"].values() for c in cells
                if c["row"].sdi is not None and math.isfinite(c["row"].sdi)]
        entry["mean_abs_sdi"] = sum(sdis) / len(sdis) if sdis else None
        out.append(entry)
    rank_labs(out)
    return out, analytes, snap


def _rank_key(entry: Mapping) -> tuple[float, float]:
    sdi = entry["mean_abs_sdi"]
    return -entry["overall"].share_ab, round(sdi, 2) if sdi is not None else math.inf


def rank_labs(entries: Sequence[dict]) -> None:
    """Set each matrix entry's ``rank``: A/B share high → low, then mean |SDI| low → high.

    Labs without a grade get ``None``; equal (share, rounded mean |SDI|) share a rank.
    """
    ranked = sorted((e for e in entries if e["overall"] is not None),
                    key=lambda e: (*_rank_key(e), e["lab"].anon_code))
    previous, rank = None, 0
    for position, entry in enumerate(ranked, start=1):
        key = _rank_key(entry)
        rank = rank if key == previous else position
        entry["rank"], previous = rank, key
    for entry in entries:
        entry.setdefault("rank", None)


def check_matrix_sort(sort: str) -> str:
    """Return ``sort`` if it names a matrix order or an analyte column, else ``UserError``."""
    if sort in MATRIX_SORTS or _ANALYTE_SORT.match(sort):
        return sort
    raise UserError(f"排序方式无效：{sort[:20]}", field="sort")


def sort_labels(sort: str, analytes: Sequence[Analyte]) -> dict[str, str]:
    """Return the matrix's sort chips: :data:`MATRIX_SORTS` plus the analyte sorted by, if any."""
    match = _ANALYTE_SORT.match(sort)
    chosen = next((a for a in analytes if match and a.id == int(match.group(1))), None)
    return {**MATRIX_SORTS, **({sort: f"{chosen.name}差者在前"} if chosen else {})}


def _by_rank(entry: Mapping) -> tuple:
    return (entry["rank"] is None, entry["rank"] or 0, entry["lab"].anon_code)


def _severity(cells: Sequence[Mapping], metric: str) -> float:
    """Return how bad one analyte's cell is (higher = worse; −1 when nothing is graded)."""
    if metric == "grade":
        grade = compute.worst_grade(c["row"].grade for c in cells)
        return float(_GRADES.index(grade)) if grade else -1.0
    values = [c["row"].sdi if metric == "sdi" else c["row"].cvr for c in cells]
    values = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return max(values) if values else -1.0


def sort_matrix(entries: Sequence[dict], sort: str, metric: str = "grade") -> list[dict]:
    """Return the matrix rows in the order ``sort`` asks for (see :data:`MATRIX_SORTS`).

    ``rank``: ranked labs first by rank; ``attention``: the reverse (lowest rank first, the
    unranked still last); ``code``: anonymous code; ``a<id>``: that analyte's worst cell
    first under the shown ``metric`` (grade D→A, |SDI| or CVR high→low), labs without the
    analyte last, ties by rank.
    """
    check_matrix_sort(sort)
    if sort == "code":
        return sorted(entries, key=lambda e: e["lab"].anon_code)
    if sort == "attention":
        return sorted(entries, key=lambda e: (e["rank"] is None, -(e["rank"] or 0),
                                              e["lab"].anon_code))
    match = _ANALYTE_SORT.match(sort)
    if match:
        analyte_id = int(match.group(1))
        return sorted(entries, key=lambda e: (
            analyte_id not in e["cells"],
            -_severity(e["cells"].get(analyte_id, []), metric), *_by_rank(e)))
    return sorted(entries, key=_by_rank)


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

    @property
    def pass_rate(self) -> float | None:
        """Return the overall pass rate in percent (None when nothing was assessed)."""
        return self.rate(self.passed)


def sort_nccl(rows: Sequence[NcclRow], sort: str) -> list[NcclRow]:
    """Return the NCCL rows by analyte (as built) or by overall pass rate, lowest first."""
    if sort not in NCCL_SORTS:
        raise UserError(f"排序方式无效：{sort[:20]}", field="sort")
    if sort == "analyte":
        return list(rows)
    return sorted(rows, key=lambda r: (r.pass_rate is None, r.pass_rate or 0.0,
                                       r.analyte.id, r.level.level_index))


def nccl_table(region_id: int, period: Period, lot_id: int | None = None) -> list[NcclRow]:
    """Return pass rates per analyte × level: CV vs allowable CV, TEa/3, TEa/4, bias, overall."""
    rows, _ = region_results(region_id, period, lab_ids=region_lab_ids(region_id),
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


