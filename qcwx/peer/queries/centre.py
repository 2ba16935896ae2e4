"""The regional centre's views: the labs × analytes matrix and the NCCL pass-rate table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from qcwx.catalog.models import (
    Analyte,
    QcLevel,
)
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
from qcwx.peer.queries.frames import load_specs, systems_frame
from qcwx.peer.queries.lot import value_names
from qcwx.qcstats import peer as qpeer


def facet_values(region_id: int, dims: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Return the distinct (value, display name) of some filter dimensions in the region."""
    systems = systems_frame(region_id)
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


