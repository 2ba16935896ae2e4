"""Read the de-identified rows of a region's judged QC results, in bounded chunks.

Rows are read lab by lab, each lab ordered by (run date, result id) with keyset paging, so
memory holds one chunk whatever the period's size, and a lab-month's rows arrive together
(one FHIR bundle is written while they stream). Everything constant per test system —
codes, makers, anonymous codes, LOINC/UCUM — is read once (:class:`Context`), and so are the
control-limit steps (the target in force on each run's date, as the judgement used).
A region's export covers its subtree (a city centre's districts). Only judged runs count
(accept · warning · reject); a pending run has no verdict to publish.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import and_, func, or_, select

from qcwx.catalog.codes import loinc_choices, pick_loinc, ucum_by_key
from qcwx.catalog.models import (
    Analyte,
    Instrument,
    Method,
    QcLevel,
    QcLot,
    QcMaterial,
    Reagent,
    TestSystem,
)
from qcwx.extensions import db
from qcwx.iqc.models import ControlLimit, QcResult, QcRun, Violation
from qcwx.orgs.models import Hospital, Lab, Region
from qcwx.orgs.scopes import region_subtree
from qcwx.peer.units import unit_key

JUDGED = ("accept", "warning", "reject")
CHUNK = 5000


def pseudonym(kind: str, ident: int, secret: str) -> str:
    """Return a stable keyed pseudonym (``H3F9A…``): nobody without the secret can reverse it."""
    digest = hmac.new(secret.encode("utf-8"), f"{kind}:{ident}".encode(), hashlib.sha256)
    return kind[0].upper() + digest.hexdigest()[:10].upper()


@dataclass
class Context:
    """What is constant per test system in one export, read once."""

    region_id: int
    secret: str
    labs: list[int] = field(default_factory=list)
    systems: dict[int, dict] = field(default_factory=dict)
    limits: dict[tuple[int, int], tuple[list[date], list[tuple[float, float]]]] = \
        field(default_factory=dict)
    levels: dict[int, int] = field(default_factory=dict)

    def target(self, ts_id: int, level_id: int, on: date) -> tuple[float | None, float | None]:
        """Return the (mean, SD) in force on ``on`` (the newest step on or before it)."""
        steps = self.limits.get((ts_id, level_id))
        if not steps:
            return None, None
        k = bisect.bisect_right(steps[0], on) - 1
        return steps[1][k] if k >= 0 else (None, None)

    def row(self, r, rules: dict[int, str]) -> dict:
        """Return one export row from a result row read by :func:`iter_chunks`."""
        mean, sd = self.target(r.test_system_id, r.qc_level_id, r.run_date)
        z = (r.value - mean) / sd if mean is not None and sd else None
        return {**self.systems[r.test_system_id], "result_id": r.id,
                "run_date": r.run_date.isoformat(), "run_no": r.run_no,
                "qc_level": self.levels.get(r.qc_level_id), "target_mean": mean,
                "target_sd": sd, "value": r.value, "z": None if z is None else round(z, 4),
                "run_status": r.status, "rules": rules.get(r.run_id, "")}


def build_context(region_id: int, secret: str) -> Context:
    """Read the region's labs, test systems (with codes) and control-limit steps."""
    ctx = Context(region_id, secret)
    choices, ucum = loinc_choices(), ucum_by_key()
    stmt = (select(TestSystem, Lab.anon_code, Lab.hospital_id, Hospital.level, Hospital.type,
                   Region.code.label("region_code"), Analyte.code.label("analyte_code"),
                   Instrument.maker, Instrument.model, Reagent.maker.label("reagent_maker"),
                   Method.code.label("method_code"), Method.principle, QcLot.lot_number,
                   QcMaterial.maker.label("material_maker"),
                   QcMaterial.name.label("material_name"))
            .join(Lab, TestSystem.lab_id == Lab.id).join(Hospital).join(Region)
            .join(Analyte, TestSystem.analyte_id == Analyte.id)
            .join(Instrument, TestSystem.instrument_id == Instrument.id)
            .outerjoin(Reagent, TestSystem.reagent_id == Reagent.id)
            .outerjoin(Method, TestSystem.method_id == Method.id)
            .join(QcLot, TestSystem.qc_lot_id == QcLot.id).join(QcMaterial)
            .where(Hospital.region_id.in_(region_subtree(region_id))).order_by(TestSystem.id))
    labs = set()
    for ts, *v in db.session.execute(stmt).all():
        (anon, hospital_id, level, h_type, region_code, analyte_code, maker, model, reagent,
         method, principle, lot, m_maker, m_name) = v
        code = ucum.get(unit_key(ts.unit))
        loinc = pick_loinc(choices.get(ts.analyte_id, []), method, code)
        labs.add(ts.lab_id)
        ctx.systems[ts.id] = {
            "region_code": region_code, "hospital_code": pseudonym("hospital", hospital_id, secret),
            "hospital_level": level, "hospital_type": h_type, "lab_code": anon,
            "analyte_code": analyte_code, "analyte_loinc": loinc.loinc if loinc else "",
            "loinc_display": loinc.display if loinc else "", "unit": ts.unit,
            "unit_ucum": code or "", "qc_material": f"{m_maker} {m_name}", "qc_lot": lot,
            "instrument_maker": maker, "instrument_model": model,
            "device_code": pseudonym("device", ts.instrument_id, secret),
            "reagent_maker": reagent or "", "method_code": method or "",
            "method_principle": principle or "", "temperature": ts.temperature,
            "_lab_id": ts.lab_id}  # for API cursors only; never written out
    ctx.labs = sorted(labs)
    _load_limits(ctx)
    return ctx


def _load_limits(ctx: Context) -> None:
    ids = list(ctx.systems)
    steps: dict[tuple[int, int], list] = {}
    for i in range(0, len(ids), 500):
        for row in db.session.scalars(select(ControlLimit).where(
                ControlLimit.test_system_id.in_(ids[i:i + 500])).order_by(
                ControlLimit.effective_from, ControlLimit.version)):
            steps.setdefault((row.test_system_id, row.qc_level_id), []).append(
                (row.effective_from, row.target_mean, row.target_sd))
    for key, rows in steps.items():
        by_day = {d: (m, s) for d, m, s in rows}  # the newest version of a day wins
        days = sorted(by_day)
        ctx.limits[key] = (days, [by_day[d] for d in days])
    ctx.levels = dict(db.session.execute(select(QcLevel.id, QcLevel.level_index)).all())


def _base(start: date, end: date):
    return (select(QcResult.id, QcResult.value, QcResult.qc_level_id, QcRun.id.label("run_id"),
                   QcRun.test_system_id, QcRun.run_date, QcRun.run_no, QcRun.status)
            .join(QcRun, QcResult.run_id == QcRun.id)
            .join(TestSystem, QcRun.test_system_id == TestSystem.id)
            .where(QcResult.is_current, QcRun.status.in_(JUDGED),
                   QcRun.run_date >= start, QcRun.run_date <= end))


def count_rows(region_id: int, start: date, end: date) -> int:
    """Return how many rows an export of the region and period holds (for progress)."""
    inner = _base(start, end).join(Lab, TestSystem.lab_id == Lab.id).join(Hospital).where(
        Hospital.region_id.in_(region_subtree(region_id))).subquery()
    return int(db.session.scalar(select(func.count()).select_from(inner)) or 0)


def iter_chunks(ctx: Context, start: date, end: date, chunk: int = CHUNK,
                lab_ids: Sequence[int] | None = None,
                after: tuple[date, int] | None = None) -> Iterator[list[dict]]:
    """Yield the export rows in chunks: lab by lab, by (run date, result id) within a lab."""
    for lab_id in (lab_ids if lab_ids is not None else ctx.labs):
        last = after
        while True:
            stmt = _base(start, end).where(TestSystem.lab_id == lab_id)
            if last is not None:
                stmt = stmt.where(or_(QcRun.run_date > last[0], and_(
                    QcRun.run_date == last[0], QcResult.id > last[1])))
            rows = db.session.execute(stmt.order_by(QcRun.run_date, QcResult.id)
                                      .limit(chunk)).all()
            if not rows:
                break
            rules = _rules({r.run_id for r in rows})
            yield [ctx.row(r, rules) for r in rows]
            last = (rows[-1].run_date, rows[-1].id)
            if len(rows) < chunk:
                break
        after = None


def _rules(run_ids: set[int]) -> dict[int, str]:
    """Return the active Westgard rule codes of each run, sorted, joined with ``;``."""
    found: dict[int, set[str]] = {}
    for run_id, code in db.session.execute(select(Violation.run_id, Violation.rule_code).where(
            Violation.run_id.in_(sorted(run_ids)), Violation.active)).all():
        found.setdefault(run_id, set()).add(code)
    return {run_id: ";".join(sorted(codes)) for run_id, codes in found.items()}
