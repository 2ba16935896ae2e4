"""Create the demo region's organisations, users, catalogue rows and test systems.

Everything here goes through the ORM (and so the audit log) row by row: it is small.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from sqlalchemy import select

from qcwx.catalog.codes import apply_shipped_codes
from qcwx.catalog.models import (
    Analyte,
    Calibrator,
    Instrument,
    Method,
    QcLevel,
    QcLot,
    QcMaterial,
    QualitySpec,
    Reagent,
    TestSystem,
)
from qcwx.demo import data as d
from qcwx.demo.plan import (
    DEMO_OPENIDS,
    DEMO_PASSWORD,
    DEMO_PASSWORDS,
    DEMO_USERS,
    HOSP1,
    SPEC_SET,
    TECH2_LAB,
    LabPlan,
    SystemPlan,
)
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.orgs.services import create_user
from qcwx.qcstats import specs


# ---------------------------------------------------------------------------- orgs & users
def create_orgs(labs: list[LabPlan]) -> Region:
    """Create the city, its two districts and the hospitals split between them; return the city."""
    region = Region(code=d.REGION_CODE, name=d.REGION_NAME, level="city")
    districts = [Region(code=code, name=name, level="district", parent=region)
                 for code, name in d.DISTRICTS]
    db.session.add_all([region, *districts])
    for lab in labs:
        hospital = Hospital(region=districts[lab.index % len(districts)],
                            code=f"DEMO-H{lab.index + 1:02d}", name=lab.name,
                            level=lab.level, type=lab.type)
        lab.lab = Lab(hospital=hospital, code=f"DEMO-H{lab.index + 1:02d}-JY", name=d.LAB_NAME,
                      anon_code=lab.anon_code, timezone="Asia/Shanghai")
        db.session.add(lab.lab)
    db.session.flush()
    return region


def create_users(region: Region, labs: list[LabPlan]) -> dict[str, User]:
    taken = set(db.session.scalars(select(User.username).where(
        User.username.in_(list(DEMO_PASSWORDS)))))
    if taken:
        raise UserError(f"示范用户已存在：{'、'.join(sorted(taken))}", status=409)
    h1, lab1, lab2 = labs[HOSP1].lab, labs[HOSP1].lab, labs[TECH2_LAB].lab
    district = {r.code: r.id for r in region.children}
    scope = {"admin": {}, "center": {"region_id": region.id}, "expert": {"region_id": region.id},
             "center_a": {"region_id": district[d.DISTRICTS[0][0]]},
             "center_b": {"region_id": district[d.DISTRICTS[1][0]]},
             "director": {"hospital_id": h1.hospital_id}, "supervisor": {"lab_id": lab1.id},
             "tech": {"lab_id": lab1.id}, "tech2": {"lab_id": lab2.id}}
    users = {username: create_user(username=username, display_name=name, password=DEMO_PASSWORD,
                                   role=role, **scope[username])
             for username, name, role in DEMO_USERS}
    labs[HOSP1].technician, labs[HOSP1].signer = users["tech"], users["supervisor"]
    labs[TECH2_LAB].technician = users["tech2"]
    for username, openid in DEMO_OPENIDS.items():  # their alerts reach the local fake WeChat
        users[username].wechat_openid = openid
    return users


# ---------------------------------------------------------------------------- catalogue
class _Catalog:
    """Get-or-create for catalogue rows by natural key, so an existing catalogue is reused."""

    def __init__(self) -> None:
        self.analytes: dict[str, Analyte] = {}
        self.methods: dict[str, Method] = {}
        self.reagents: dict[tuple[str, str], Reagent] = {}
        self.calibrators: dict[tuple[str, str], Calibrator] = {}
        self.lots: dict[str, QcLot] = {}

    def analyte(self, a: d.AnalyteDef) -> Analyte:
        if a.code not in self.analytes:
            spec = specs.get_spec(a.code)
            row = db.session.scalar(select(Analyte).where(Analyte.code == a.code))
            if row is None:
                row = Analyte(code=a.code, name=spec.name_zh, unit=spec.unit,
                              decimals=spec.decimals, discipline="生化",
                              plausible_low=a.plausible[0], plausible_high=a.plausible[1])
                db.session.add(row)
                db.session.flush()
            self._spec(row, spec)
            self.analytes[a.code] = row
        return self.analytes[a.code]

    @staticmethod
    def _spec(analyte: Analyte, spec: specs.QualitySpec) -> None:
        exists = db.session.scalar(select(QualitySpec.id).where(
            QualitySpec.analyte_id == analyte.id, QualitySpec.spec_set == SPEC_SET,
            QualitySpec.active))
        if exists is not None:
            return
        tea = spec.tea
        source = f"{spec.source}（{spec.version}版）"
        if not spec.verified:
            source += "，按QC_SPEC §5转录待核对"
        db.session.add(QualitySpec(
            analyte_id=analyte.id, spec_set=SPEC_SET, allowable_cv=spec.allowable_cv,
            allowable_bias=spec.allowable_bias, tea_pct=tea.pct, tea_abs=tea.abs_limit,
            tea_abs_unit=tea.abs_unit, tea_threshold=tea.threshold, source=source, version=1,
            active=True))

    def method(self, code: str) -> Method:
        if code not in self.methods:
            row = db.session.scalar(select(Method).where(Method.code == code))
            if row is None:
                name, principle = d.METHODS[code]
                row = Method(code=code, name=name, principle=principle)
                db.session.add(row)
            self.methods[code] = row
        return self.methods[code]

    def _maker_name(self, model, cache: dict, maker: str, name: str):
        key = (maker, name)
        if key not in cache:
            row = db.session.scalar(select(model).where(model.maker == maker, model.name == name))
            if row is None:
                row = model(maker=maker, name=name)
                db.session.add(row)
            cache[key] = row
        return cache[key]

    def reagent(self, maker: str, analyte: Analyte, method: Method) -> Reagent:
        return self._maker_name(Reagent, self.reagents, maker,
                                f"{analyte.name}测定试剂盒（{method.name}）")

    def calibrator(self, maker: str, ise: bool) -> Calibrator:
        name = d.ISE_CALIBRATOR if ise else d.CALIBRATORS[maker]
        return self._maker_name(Calibrator, self.calibrators, maker, name)

    def lot(self, lot: d.LotDef, end: date) -> QcLot:
        if lot.key not in self.lots:
            material = self._maker_name(QcMaterial, {}, lot.maker, lot.material)
            db.session.flush()
            row = db.session.scalar(select(QcLot).where(QcLot.material_id == material.id,
                                                        QcLot.lot_number == lot.lot_number))
            if row is None:
                row = QcLot(material=material, lot_number=lot.lot_number,
                            expiry=_month_end(end + timedelta(days=lot.expiry_offset_days)))
                db.session.add(row)
            have = {lv.level_index for lv in row.levels}
            for k, name in enumerate(d.LEVEL_NAMES, start=1):
                if k not in have:
                    db.session.add(QcLevel(lot=row, level_index=k, name=name))
            db.session.flush()
            self.lots[lot.key] = row
        return self.lots[lot.key]


def _month_end(day: date) -> date:
    nxt = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def create_test_systems(labs: list[LabPlan], systems: list[SystemPlan], end: date,
                         rng: np.random.Generator) -> None:
    """Create instruments and test systems (with both levels of the lab's QC lot)."""
    cat = _Catalog()
    lots = {lot.key: cat.lot(lot, end) for lot in d.LOTS}
    for lab in labs:
        for slot, model in enumerate(lab.analysers):
            year = int(rng.integers(2016, 2025))
            lab.instruments.append(Instrument(
                lab=lab.lab, maker=model.maker, model=model.model,
                serial=f"{model.serial_prefix}{year}{int(rng.integers(10000, 99999))}",
                name="生化分析仪" if slot == 0 else "急诊生化分析仪"))
    for sp in systems:
        analyte = cat.analyte(sp.analyte)
        method = cat.method(sp.method_code)
        instrument = sp.lab.instruments[sp.slot]
        lot = lots[sp.lab.lot_key]
        sp.ts = TestSystem(
            lab=sp.lab.lab, analyte=analyte, instrument=instrument,
            reagent=cat.reagent(sp.reagent_maker, analyte, method), method=method,
            calibrator=cat.calibrator(sp.reagent_maker, sp.code in d.ISE_ANALYTES),
            unit=analyte.unit, temperature="37℃", qc_lot=lot)
        sp.ts.levels = list(lot.levels)
        db.session.add(sp.ts)
    db.session.flush()
    apply_shipped_codes(cat.analytes.values())  # LOINC/UCUM: the demo month exports coded
