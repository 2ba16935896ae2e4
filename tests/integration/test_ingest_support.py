"""Shared helpers of the ingest tests (imported by the test_ingest_* modules; no tests here)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import func, select

from qcwx import models as m
from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.iqc import targets
from qcwx.iqc.models import QcResult, QcRun, Submission
from qcwx.numbers import fold_text
from qcwx.timeutil import local_today
from tests import factories

FIXTURES = Path(__file__).resolve().parents[1] / "ingest" / "fixtures"


def fixture_bytes(name: str) -> bytes:
    """Return the bytes of a fixture copied from /work/shared/samples (see its README)."""
    return (FIXTURES / name).read_bytes()


def analyte(code: str, name: str, unit: str, high: float, decimals: int = 2) -> m.Analyte:
    return factories.analyte(code=code, name=name, unit=unit, decimals=decimals, low=0.0,
                             high=high)


def lot(levels: int, number: str, expiry: date | None = date(2027, 12, 31)) -> m.QcLot:
    material = m.QcMaterial(maker="Bio-Rad", name=f"质控品 {number} {factories._n()}")
    row = m.QcLot(material=material, lot_number=number, expiry=expiry)
    db.session.add(row)
    names = {1: ["水平1"], 2: ["水平1", "水平2"], 3: ["低值", "中值", "高值"]}[levels]
    for i, name in enumerate(names, start=1):
        db.session.add(m.QcLevel(lot=row, level_index=i, name=name))
    db.session.flush()
    return row


def system(lab: m.Lab, analyte_: m.Analyte, lot_: m.QcLot, model: str = "BS-200E") -> m.TestSystem:
    return factories.test_system(lab, analyte_, lot_, maker="Mindray", model=model)


def set_limits(ts: m.TestSystem, actor: m.User, means: dict[int, float], sds: dict[int, float],
               start: date) -> None:
    for lv in ts.levels:
        if lv.level_index in means:
            targets.set_control_limit(actor, ts, lv, mean=means[lv.level_index],
                                      sd=sds[lv.level_index], kind="fixed", effective_from=start,
                                      reason="说明书靶值")


def limits_in_force(world) -> m.TestSystem:
    """Give every test system fixed limits (GLU-like) from 90 days ago; return lab A's one."""
    start = local_today() - timedelta(days=90)
    for ts in world.systems.values():
        set_limits(ts, world.users["supervisor"], {1: 5.0, 2: 15.0}, {1: 0.2, 2: 0.5}, start)
    db.session.commit()
    return world.systems["a"]


def make_key(world, lab: m.Lab, name: str = "LIS 接口机") -> str:
    actor = world.users["admin"] if lab.hospital.region_id != world.region1.id else \
        world.users["center"]
    _, raw = apikeys.create_key(actor, lab.id, name)
    db.session.commit()
    return raw


def auth(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


def counts() -> tuple[int, int, int]:
    """Return (runs, current results, submissions) stored so far."""
    return (db.session.scalar(select(func.count()).select_from(QcRun)),
            db.session.scalar(select(func.count()).select_from(QcResult)),
            db.session.scalar(select(func.count()).select_from(Submission)))


def run_signature(run: QcRun) -> tuple:
    """Return what must be identical between channels: date, run, status, rules, values."""
    db.session.refresh(run)
    index = {lv.id: lv.level_index for lv in run.test_system.levels}
    rules = sorted((v.rule_code, v.role, tuple(sorted(index[i] for i in v.levels)))
                   for v in run.violations if v.active)
    values = sorted((index[r.qc_level_id], fold_text(r.value_text), r.value)
                    for r in run.results if r.is_current)
    return run.run_date, run.run_no, run.status, tuple(rules), tuple(values)


def signatures(ts: m.TestSystem) -> list[tuple]:
    runs = db.session.scalars(select(QcRun).where(QcRun.test_system_id == ts.id)
                              .order_by(QcRun.run_date, QcRun.run_no)).all()
    return [run_signature(r) for r in runs]
