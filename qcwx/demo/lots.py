"""The demo's unified-lot change-over (统一批号): one lab half-way through its parallel runs.

The centre distributes Bio-Rad lot 26450 (the successor of 26440, the region's main lot) and
assigns it to the demo supervisor's lab and two other labs still on 26440. At the
supervisor's lab two test systems started parallel runs twelve days before the seed's end:
the new lot is entered every day beside the old one (through the one write path, as the
technician), so the lab page shows 平行检测中（12/20） and the centre sees who has started.
Deterministic: its own random stream, no clock but ``end``.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from sqlalchemy import select

from qcwx.catalog.models import Analyte, QcLot, QcMaterial, TestSystem
from qcwx.demo import data as d
from qcwx.extensions import db
from qcwx.iqc import services as iqc_services
from qcwx.lots import services
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.orgs.scopes import region_subtree
from qcwx.timeutil import local_today

PARALLEL_DAYS = 12
CHANGEOVER_ANALYTES = ("GLU", "TC")
MAKER_ANALYTES = ("GLU", "TC", "UREA", "CREA")
OTHER_LABS = 2
MAKER_CV = 0.04      # the maker's range is wider than a lab's own SD
LAB_CV = 0.018
SEED = 2026_12_06


def seed_lot_changeover(end: date | None = None) -> str:
    """Add the change-over to the seeded demo region; return a one-line summary.

    Runs after :func:`qcwx.demo.seed.seed` (``flask seed-demo`` calls both), so the base
    demo stays what its own tests describe; ``end`` defaults to its last day (yesterday).
    """
    region = db.session.scalar(select(Region).where(Region.code == d.REGION_CODE))
    users = {u.username: u for u in db.session.scalars(select(User).where(
        User.username.in_(["center", "supervisor", "tech"])))}
    end = end or local_today() - timedelta(days=1)
    return _changeover(region, users, end)


def _changeover(region: Region, users: dict[str, User], end: date) -> str:
    new_lot_def = next(lot for lot in d.LOTS if lot.key == d.LOT_NEW)
    new_lot = db.session.scalar(select(QcLot).join(QcMaterial).where(
        QcMaterial.maker == new_lot_def.maker, QcMaterial.name == new_lot_def.material,
        QcLot.lot_number == new_lot_def.lot_number))
    sup_lab = db.session.get(Lab, users["supervisor"].lab_id)
    targets = "\n".join(
        f"{code}, {i + 1}, {m:g}, {m * MAKER_CV:.3g}"
        for code in MAKER_ANALYTES for i, m in enumerate(_conc(code)))
    dlot = services.register_lot(
        users["center"], region_id=region.id, material_id=new_lot.material_id,
        lot_number=new_lot.lot_number, expiry=new_lot.expiry,
        levels="，".join(lv.name for lv in new_lot.levels), targets_text=targets,
        note="2027 年度全区统一批号，替换 26440")
    start = end - timedelta(days=PARALLEL_DAYS - 1)
    labs = [sup_lab.id, *_labs_on(region, new_lot, exclude=sup_lab.id)[:OTHER_LABS]]
    (assignment, *_) = services.assign_labs(users["center"], dlot.id, labs,
                                            start - timedelta(days=7))
    rng = np.random.default_rng(SEED)
    systems = _systems(sup_lab, new_lot)
    for ts in systems:
        co = services.start_parallel(users["supervisor"], assignment.id, ts.id, start)
        _parallel_runs(users["tech"], co.new_test_system, start, rng)
    return (f"统一批号 {new_lot.lot_number}：分配给 {len(labs)} 个实验室，{sup_lab.full_name} "
            f"{len(systems)} 个检测系统平行检测中（{PARALLEL_DAYS} 天）")


def _conc(code: str) -> tuple[float, float]:
    return next(a for a in d.ANALYTES if a.code == code).conc[d.LOT_NEW]


def _labs_on(region: Region, new_lot: QcLot, exclude: int) -> list[int]:
    """Return the region's other labs with a test system on the new lot's material, not on it."""
    stmt = (select(Lab.id).join(Hospital).join(TestSystem, TestSystem.lab_id == Lab.id)
            .join(QcLot, QcLot.id == TestSystem.qc_lot_id)
            .where(Hospital.region_id.in_(region_subtree(region.id)), Lab.id != exclude,
                   QcLot.material_id == new_lot.material_id, QcLot.id != new_lot.id)
            .distinct().order_by(Lab.id))
    return list(db.session.scalars(stmt))


def _systems(lab: Lab, new_lot: QcLot) -> list[TestSystem]:
    stmt = (select(TestSystem).join(Analyte).join(QcLot, QcLot.id == TestSystem.qc_lot_id)
            .where(TestSystem.lab_id == lab.id, TestSystem.active,
                   Analyte.code.in_(CHANGEOVER_ANALYTES),
                   QcLot.material_id == new_lot.material_id, QcLot.id != new_lot.id)
            .order_by(Analyte.code, TestSystem.id))
    seen: set[int] = set()
    out = []
    for ts in db.session.scalars(stmt):  # one analyser per analyte is enough for the demo
        if ts.analyte_id not in seen:
            seen.add(ts.analyte_id)
            out.append(ts)
    return out


def _parallel_runs(tech: User, ts: TestSystem, start: date, rng: np.random.Generator) -> None:
    conc, places = _conc(ts.analyte.code), ts.analyte.decimals
    for k in range(PARALLEL_DAYS):
        noise = 1 + LAB_CV * rng.standard_normal(len(ts.levels))
        values = {str(lv.level_index): f"{conc[i] * noise[i]:.{places}f}"
                  for i, lv in enumerate(ts.levels)}
        iqc_services.submit_run(tech, test_system_id=ts.id, run_date=start + timedelta(days=k),
                                values=values, client_id=f"demo-lot-{ts.id}-{k}",
                                notify=False)
