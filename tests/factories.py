"""Factory helpers that build realistic objects with few arguments."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date

from qcwx import models as m
from qcwx.extensions import db
from qcwx.orgs.services import create_user

PASSWORD = "password123"
_seq = itertools.count(1)


def _n() -> int:
    return next(_seq)


def region(name: str = "测试区") -> m.Region:
    obj = m.Region(code=f"R{_n()}", name=name)
    db.session.add(obj)
    db.session.flush()
    return obj


def hospital(region_: m.Region, name: str | None = None, level: str = "三级") -> m.Hospital:
    k = _n()
    obj = m.Hospital(region=region_, code=f"H{k}", name=name or f"第{k}人民医院", level=level,
                     type="综合医院")
    db.session.add(obj)
    db.session.flush()
    return obj


def lab(hospital_: m.Hospital, name: str = "检验科") -> m.Lab:
    k = _n()
    obj = m.Lab(hospital=hospital_, code=f"L{k}", name=name, anon_code=f"Q{k:04d}")
    db.session.add(obj)
    db.session.flush()
    return obj


def user(role: str, *, lab_: m.Lab | None = None, hospital_: m.Hospital | None = None,
         region_: m.Region | None = None, name: str | None = None) -> m.User:
    k = _n()
    return create_user(
        username=f"{role}{k}", display_name=name or f"{role}{k}", password=PASSWORD, role=role,
        lab_id=lab_.id if lab_ else None, hospital_id=hospital_.id if hospital_ else None,
        region_id=region_.id if region_ else None,
    )


def analyte(code: str = "GLU", name: str = "葡萄糖", unit: str = "mmol/L",
            decimals: int = 2, low: float = 0.0, high: float = 50.0) -> m.Analyte:
    obj = db.session.query(m.Analyte).filter_by(code=code).one_or_none()
    if obj is None:
        obj = m.Analyte(code=code, name=name, unit=unit, decimals=decimals,
                        plausible_low=low, plausible_high=high)
        db.session.add(obj)
        db.session.flush()
    return obj


def qc_lot(levels: int = 2, lot_number: str | None = None) -> m.QcLot:
    material = m.QcMaterial(maker="Bio-Rad", name=f"Lyphochek 生化质控品 {_n()}")
    lot = m.QcLot(material=material, lot_number=lot_number or f"2610{_n()}",
                  expiry=date(2027, 12, 31))
    db.session.add(lot)
    for i in range(1, levels + 1):
        db.session.add(m.QcLevel(lot=lot, level_index=i, name=f"水平{i}"))
    db.session.flush()
    return lot


def test_system(lab_: m.Lab, analyte_: m.Analyte, lot: m.QcLot, *, maker: str = "Roche",
                model: str = "cobas c702") -> m.TestSystem:
    inst = m.Instrument(lab=lab_, maker=maker, model=model, serial=f"SN{_n()}")
    reagent = m.Reagent(maker=maker, name=f"{analyte_.name}试剂{_n()}")
    method = db.session.query(m.Method).filter_by(code="HK").one_or_none() or m.Method(
        code="HK", name="己糖激酶法", principle="酶法")
    ts = m.TestSystem(lab=lab_, analyte=analyte_, instrument=inst, reagent=reagent, method=method,
                      unit=analyte_.unit, temperature="37℃", qc_lot=lot)
    ts.levels = list(lot.levels)
    db.session.add(ts)
    db.session.flush()
    return ts


@dataclass
class World:
    """Two regions; region 1 has hospitals 1 and 2 (labs A, B), region 2 has lab C."""

    region1: m.Region
    region2: m.Region
    hosp1: m.Hospital
    hosp2: m.Hospital
    hosp3: m.Hospital
    lab_a: m.Lab
    lab_b: m.Lab
    lab_c: m.Lab
    users: dict[str, m.User] = field(default_factory=dict)
    systems: dict[str, m.TestSystem] = field(default_factory=dict)


def build_world() -> World:
    r1, r2 = region("一区"), region("二区")
    h1, h2, h3 = hospital(r1, "市第一人民医院"), hospital(r1, "市中医医院", "二级"), hospital(r2)
    la, lb, lc = lab(h1), lab(h2), lab(h3)
    w = World(r1, r2, h1, h2, h3, la, lb, lc)
    w.users = {
        "admin": user("admin"),
        "center": user("center", region_=r1),
        "center2": user("center", region_=r2),
        "director": user("director", hospital_=h1),
        "supervisor": user("supervisor", lab_=la),
        "technician": user("technician", lab_=la),
        "technician_b": user("technician", lab_=lb),
        "technician_c": user("technician", lab_=lc),
    }
    glu = analyte()
    lot = qc_lot(2)
    w.systems = {"a": test_system(la, glu, lot), "b": test_system(lb, glu, lot),
                 "c": test_system(lc, glu, lot)}
    return w
