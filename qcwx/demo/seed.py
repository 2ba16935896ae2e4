"""Seed the demo region: 32 hospitals, their labs, users, catalogue and daily QC results.

Everything is drawn from one seeded ``numpy`` generator family, so the same call on an empty
database always stores the same values. The organisation and catalogue are created through
the ORM (and so audited row by row); runs, submissions and results (~54 000 runs and
~108 000 results for the default 120 days) go through the one write path every capture
channel takes (:func:`qcwx.iqc.services.prepare_runs` / ``store_runs``) and are judged there.

Simulation of one test system × level (QC_SPEC §2, §5): the QC material's true concentration
× (1 + method bias + lab bias) plus noise with the lab's CV (30 % of the variance shared by
both levels of a run), plus small steps at each recalibration. Lab bias and CV are drawn
around the analyte's WS/T 403-2024 allowable bias and CV. On top of that come the events
listed in :data:`INJECTED`: shifts, trends, single outliers and one lab biased throughout.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime

import numpy as np
from sqlalchemy import bindparam, func, select, text, update

from qcwx.audit.models import AuditLog
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
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc import services as iqc_services
from qcwx.iqc import targets
from qcwx.iqc.models import ControlLimit, CorrectiveAction, QcResult, QcRun, Submission
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.orgs.services import create_user
from qcwx.qcstats import limits as qclimits
from qcwx.qcstats import specs, westgard
from qcwx.timeutil import local_today, to_utc

__all__ = ["DEMO_PASSWORD", "DEMO_PASSWORDS", "INJECTED", "seed"]

log = logging.getLogger(__name__)

DEMO_PASSWORD = "qcwx-demo-2026"  # noqa: S105 - documented demo password
# username, display name, role; the scope is fixed in `_create_users`.
DEMO_USERS = (
    ("admin", "系统管理员", "admin"),
    ("center", "陈静", "center"),
    ("director", "李建国", "director"),
    ("supervisor", "张敏", "supervisor"),
    ("tech", "王芳", "technician"),
    ("tech2", "赵磊", "technician"),
)
DEMO_PASSWORDS: dict[str, str] = {username: DEMO_PASSWORD for username, _, _ in DEMO_USERS}

#: What the last :func:`seed` call injected, by event name (``shift_1``, ``outlier_3``, …):
#: lab code and anonymous code, analyte, instrument, test system id, kind, level, first day
#: (index and date), length in days, size (in SD of the control limit, or % for ``bias``) and
#: the rules expected to catch it.
INJECTED: dict[str, dict] = {}

SPEC_SET = specs.WST403_SOURCE
ESTABLISH_N = qclimits.MIN_RESULTS
ESTABLISHED_REASON = "前20天数据建立暂定靶值"
FIXED_REASON = "采用质控品说明书靶值"
FIXED_SD_FACTOR = 0.6        # fixed SD = 0.6 × allowable CV × mean
SHARED_VARIANCE = 0.3        # share of the noise variance common to both levels of a run
RECAL_STEP_SD = 0.1          # SD (in lab SDs) of the level change at each recalibration
TS_GAP_RATE = 0.01           # a single test system skips a day (reagent out, analyser down)
CUMULATIVE_AFTER = 10        # results beyond the provisional 20 before a cumulative update
LIMIT_ENTERED_AT = dtime(10, 0)
CLOSE_AFTER_DAYS = 7         # out-of-control records older than this are signed off
SUBMIT_AFTER_DAYS = 3        # … older than this are at least completed by the technician

HOSP1, TECH2_LAB, BIASED_LAB = 0, 8, 10   # hospital indexes with a fixed role in the demo
BIAS_PCT = 9.0               # the biased lab's creatinine reads this much above the truth
SYSTEMATIC_RULES = ("2-2s", "4-1s", "10x")
TREND_RULES = ("7T", "4-1s", "10x", "2-2s", "1-3s")


# ---------------------------------------------------------------------------- the plan
@dataclass
class LabPlan:
    """What one hospital's lab looks like in the demo (drawn before anything is stored)."""

    index: int
    name: str
    level: str
    type: str
    analysers: tuple[d.AnalyserModel, ...]
    channel: str
    weekend_off: bool
    gap_rate: float
    lot_key: str = d.LOT_MAIN
    third_party: str | None = None
    third_party_analytes: frozenset[str] = frozenset()
    quality: str = "good"
    limit_kind: str = "established"
    rules: str = "default"
    anon_code: str = ""
    lab: Lab | None = None
    instruments: list[Instrument] = field(default_factory=list)
    technician: User | None = None
    signer: User | None = None


@dataclass
class SystemPlan:
    """One test system: its parts, simulated performance and (later) its data."""

    lab: LabPlan
    slot: int
    analyte: d.AnalyteDef
    spec: specs.QualitySpec
    reagent_maker: str
    method_code: str
    bias: float = 0.0
    cv: np.ndarray = field(default_factory=lambda: np.zeros(2))
    ts: TestSystem | None = None
    present: np.ndarray | None = None
    values: np.ndarray | None = None
    limits: list[LimitVersion] = field(default_factory=list)
    first_free: int = 0
    events: list[str] = field(default_factory=list)
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def code(self) -> str:
        """Return the analyte code."""
        return self.analyte.code

    @property
    def true_conc(self) -> np.ndarray:
        """Return the lot's true concentrations read by this method (before lab bias)."""
        base = np.array(self.analyte.conc[self.lab.lot_key], dtype=float)
        return base * (1.0 + d.METHOD_BIAS.get((self.code, self.method_code), 0.0))

    def limit_at(self, day: int) -> LimitVersion:
        """Return the limit version in force on day index ``day``."""
        return [v for v in self.limits if v.start <= day][-1]


@dataclass(frozen=True)
class LimitVersion:
    """One control-limit version of both levels, in force from day index ``start``."""

    start: int
    kind: str
    mean: np.ndarray
    sd: np.ndarray
    n_used: tuple[int | None, int | None]
    reason: str
    created: int


def _rngs(seed_value: int) -> dict[str, np.random.Generator]:
    names = ("plan", "params", "noise", "times", "events")
    children = np.random.SeedSequence(seed_value).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, children, strict=True)}


def _plan_labs(rng: np.random.Generator) -> list[LabPlan]:
    """Draw analysers, channels, lots, quality, limit kind and rule sets of every lab."""
    labs = []
    for i, (name, level, kind) in enumerate(d.HOSPITALS):
        if level == "三级":
            analysers = d.TERTIARY_ANALYSERS[i % len(d.TERTIARY_ANALYSERS)]
            channel = "h5" if i == HOSP1 else "api"
        elif level == "二级":
            analysers = (d.SECONDARY_ANALYSERS[rng.integers(len(d.SECONDARY_ANALYSERS))],)
            channel = str(rng.choice(["h5", "h5", "scan", "upload"]))
        else:
            analysers = (d.PRIMARY_ANALYSERS[rng.integers(len(d.PRIMARY_ANALYSERS))],)
            channel = str(rng.choice(["h5", "mp"]))
        gap = {"三级": 0.005, "二级": 0.015, "一级": 0.03}[level]
        lab = LabPlan(i, name, level, kind, tuple(analysers), channel, level == "一级", gap)
        if level != "三级" and rng.random() < 0.5:
            makers = [m for m in d.THIRD_PARTY_REAGENTS if m != analysers[0].maker]
            lab.third_party = str(rng.choice(makers))
            k = int(rng.integers(3, len(d.THIRD_PARTY_ANALYTES) + 1))
            lab.third_party_analytes = frozenset(
                str(c) for c in rng.choice(d.THIRD_PARTY_ANALYTES, size=k, replace=False))
        labs.append(lab)
    _fix_biased_lab(labs[BIASED_LAB])
    _assign_roles(labs, rng)
    order = rng.permutation(len(labs))
    for lab, k in zip(labs, order, strict=True):
        lab.anon_code = f"L{int(k) + 1:03d}"
    return labs


def _fix_biased_lab(lab: LabPlan) -> None:
    """Keep the biased lab on an enzymatic creatinine method with its analyser's reagent."""
    if lab.analysers[0].maker == "贝克曼库尔特":
        lab.analysers = (d.ROCHE_C501,)
    lab.third_party_analytes = lab.third_party_analytes - {"CREA"}
    if lab.third_party == "科华":
        lab.third_party_analytes = lab.third_party_analytes - {"GLU"}


def _assign_roles(labs: list[LabPlan], rng: np.random.Generator) -> None:
    """Choose lots, mediocre labs, fixed-target labs and custom rule sets, deterministically."""
    special = {HOSP1, TECH2_LAB, BIASED_LAB}
    others = [lab.index for lab in labs if lab.index not in special]
    free = [int(i) for i in rng.permutation(others)]
    for i in free[:8]:
        labs[i].lot_key = d.LOT_RANDOX
    for i in free[8:11]:
        labs[i].lot_key = d.LOT_NEW
    free = [int(i) for i in rng.permutation(free)]
    for i in free[:4]:
        labs[i].quality = "mediocre"
    for i in free[4:12]:
        labs[i].limit_kind = "fixed"
    labs[TECH2_LAB].rules = "trend"
    labs[free[12]].rules = "sigma"
    labs[free[13]].rules = "strict"


def _method_for(code: str, maker: str) -> str:
    return d.MAKER_METHOD.get(maker, {}).get(code, d.COMMON_METHOD[code])


def _plan_systems(labs: list[LabPlan], rng: np.random.Generator) -> list[SystemPlan]:
    """Return every test system with its reagent, method and simulated bias and CV."""
    systems = []
    for lab in labs:
        for slot, analyser in enumerate(lab.analysers):
            panel = [a for a in d.ANALYTES if slot == 0 or a.code in d.EMERGENCY_PANEL]
            for analyte in panel:
                maker = analyser.maker
                if slot == 0 and lab.third_party and analyte.code in lab.third_party_analytes:
                    maker = lab.third_party
                sp = SystemPlan(lab, slot, analyte, specs.get_spec(analyte.code), maker,
                                _method_for(analyte.code, maker))
                _draw_performance(sp, rng)
                if lab.index == BIASED_LAB and analyte.code == "CREA" and slot == 0:
                    sp.bias = BIAS_PCT / 100.0
                systems.append(sp)
    return systems


def _draw_performance(sp: SystemPlan, rng: np.random.Generator) -> None:
    """Draw bias and CV around the allowable bias and CV (good, fixed-target, mediocre)."""
    a_bias, a_cv = sp.spec.allowable_bias / 100.0, sp.spec.allowable_cv / 100.0
    u_bias, u_cv, sign = rng.random(), rng.random(), rng.choice([-1.0, 1.0])
    per_level = rng.uniform(0.9, 1.1, size=2)
    if sp.lab.quality == "mediocre":
        bias, cv = sign * (0.5 + 0.4 * u_bias), 0.9 + 0.4 * u_cv
    elif sp.lab.limit_kind == "fixed":
        bias, cv = (u_bias - 0.5) * 0.4, 0.45 + 0.15 * u_cv
    else:
        bias, cv = (u_bias - 0.5) * 0.9, 0.5 + 0.5 * u_cv
    sp.bias = bias * a_bias
    sp.cv = cv * a_cv * per_level


# ---------------------------------------------------------------------------- orgs & users
def _create_orgs(labs: list[LabPlan]) -> Region:
    region = Region(code=d.REGION_CODE, name=d.REGION_NAME)
    db.session.add(region)
    for lab in labs:
        hospital = Hospital(region=region, code=f"DEMO-H{lab.index + 1:02d}", name=lab.name,
                            level=lab.level, type=lab.type)
        lab.lab = Lab(hospital=hospital, code=f"DEMO-H{lab.index + 1:02d}-JY", name=d.LAB_NAME,
                      anon_code=lab.anon_code, timezone="Asia/Shanghai")
        db.session.add(lab.lab)
    db.session.flush()
    return region


def _create_users(region: Region, labs: list[LabPlan]) -> dict[str, User]:
    taken = set(db.session.scalars(select(User.username).where(
        User.username.in_(list(DEMO_PASSWORDS)))))
    if taken:
        raise UserError(f"示范用户已存在：{'、'.join(sorted(taken))}", status=409)
    h1, lab1, lab2 = labs[HOSP1].lab, labs[HOSP1].lab, labs[TECH2_LAB].lab
    scope = {"admin": {}, "center": {"region_id": region.id},
             "director": {"hospital_id": h1.hospital_id}, "supervisor": {"lab_id": lab1.id},
             "tech": {"lab_id": lab1.id}, "tech2": {"lab_id": lab2.id}}
    users = {username: create_user(username=username, display_name=name, password=DEMO_PASSWORD,
                                   role=role, **scope[username])
             for username, name, role in DEMO_USERS}
    labs[HOSP1].technician, labs[HOSP1].signer = users["tech"], users["supervisor"]
    labs[TECH2_LAB].technician = users["tech2"]
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


def _create_test_systems(labs: list[LabPlan], systems: list[SystemPlan], end: date,
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


# ---------------------------------------------------------------------------- simulation
def _simulate(systems: list[SystemPlan], labs: list[LabPlan], dates: list[date],
              rng: np.random.Generator) -> None:
    """Draw each test system's days present and raw values (before limits and events)."""
    n = len(dates)
    weekday = np.array([day.weekday() < 5 for day in dates])
    lab_days = {}
    for lab in labs:
        mask = rng.random(n) >= lab.gap_rate
        lab_days[lab.index] = mask & weekday if lab.weekend_off else mask
    for sp in systems:
        present = lab_days[sp.lab.index] & (rng.random(n) >= TS_GAP_RATE)
        mean = sp.true_conc * (1.0 + sp.bias)
        sd = mean * sp.cv
        shared = rng.standard_normal((n, 1))
        own = rng.standard_normal((n, 2))
        noise = math.sqrt(SHARED_VARIANCE) * shared + math.sqrt(1 - SHARED_VARIANCE) * own
        sp.present = present
        sp.values = mean + (noise + _recalibration_steps(n, rng)[:, None]) * sd


def _recalibration_steps(n: int, rng: np.random.Generator) -> np.ndarray:
    """Return the level offset (in lab SDs) that changes a little at each recalibration."""
    steps = np.zeros(n)
    day = int(rng.integers(5, 15))
    while day < n:
        steps[day:] = rng.normal(0.0, RECAL_STEP_SD)
        day += int(rng.integers(10, 21))
    return steps


def _rounded(sp: SystemPlan) -> np.ndarray:
    return np.round(sp.values, sp.spec.decimals)


def _establish(systems: list[SystemPlan], dates: list[date]) -> None:
    """Set each test system's first limits: provisional from its earliest results, or fixed.

    Both apply from the first day of the period; provisional limits are entered the day the
    20th result is in (and then judge those 20 runs too).
    """
    for sp in systems:
        idx = np.flatnonzero(sp.present)
        sp.first_free = int(idx[ESTABLISH_N - 1]) + 1 if idx.size >= ESTABLISH_N else len(dates)
        if sp.lab.limit_kind == "established" and idx.size >= ESTABLISH_N:
            # QC_SPEC §2: the earliest results, one more whenever a ±3 SD drop leaves < 20.
            values = _rounded(sp)[idx]
            est = [qclimits.provisional_limits(values[:, j], [dates[k] for k in idx])
                   for j in range(2)]
            sp.first_free = int(idx[max(e.n_taken for e in est) - 1]) + 1
            sp.limits = [LimitVersion(
                0, "established", np.array([e.mean for e in est]), np.array([e.sd for e in est]),
                (est[0].n_used, est[1].n_used), ESTABLISHED_REASON, sp.first_free - 1)]
        else:
            dec = sp.spec.decimals
            mean = np.round(sp.true_conc, dec)
            sd = np.round(FIXED_SD_FACTOR * sp.spec.allowable_cv / 100.0 * mean, dec + 1)
            sp.limits = [LimitVersion(0, "fixed", mean, np.maximum(sd, 10.0 ** -(dec + 1)),
                                      (None, None), FIXED_REASON, 0)]


def _cumulative_updates(systems: list[SystemPlan], dates: list[date]) -> None:
    """Add a monthly limit version from the lab's cumulative in-control results.

    From the first day of each month that follows at least `CUMULATIVE_AFTER` results beyond
    the provisional ones, as labs do (QC_SPEC §2): mean and SD of every earlier result except
    those of the injected events (the runs the lab itself had rejected).
    """
    starts = [k for k, day in enumerate(dates) if day.day == 1]
    for sp in systems:
        if sp.limits[0].kind != "established":
            continue
        values = _rounded(sp)
        excluded = np.zeros(len(dates), dtype=bool)
        for start, length in sp.windows:
            excluded[start:start + length] = True
        for k in (k for k in starts if k >= sp.first_free + CUMULATIVE_AFTER):
            idx = np.flatnonzero(sp.present[:k])
            est = [qclimits.cumulative_limits(values[idx, j], excluded[idx]) for j in range(2)]
            reason = (f"按截至{dates[k - 1]:%Y-%m-%d}的累积在控数据更新靶值"
                      f"（{est[0].n_used}个结果）")
            sp.limits.append(LimitVersion(
                k, "established", np.array([e.mean for e in est]), np.array([e.sd for e in est]),
                (est[0].n_used, est[1].n_used), reason, k))


# ---------------------------------------------------------------------------- injections
@dataclass(frozen=True)
class _Event:
    name: str
    kind: str
    lab: int
    analyte: str
    start_hint: float  # fraction of the period, or negative: days before the end
    length: int
    size: float
    note: str
    level: int | None = None


def _plan_events(labs: list[LabPlan], systems: list[SystemPlan],
                 rng: np.random.Generator) -> list[_Event]:
    """Choose where shifts, trends and outliers go (labs that run QC every day)."""
    daily = [lab.index for lab in labs if not lab.weekend_off and lab.rules == "default"
             and lab.index not in (HOSP1, TECH2_LAB, BIASED_LAB)]
    main = [i for i in daily if labs[i].lot_key == d.LOT_MAIN]
    randox = [i for i in daily if labs[i].lot_key == d.LOT_RANDOX]
    pick = [int(i) for i in rng.permutation(main)]
    shift_randox = int(rng.choice(randox)) if randox else pick[2]
    events = [
        _Event("shift_1", "shift", HOSP1, "GLU", -21, 12, 2.6, "更换试剂批号后未重新校准"),
        _Event("shift_2", "shift", pick[0], "ALT", 0.40, 15, -2.8, "校准品复溶误差致校准偏低"),
        _Event("shift_3", "shift", shift_randox, "K", 0.55, 18, 2.3, "ISE钾电极老化"),
        _Event("trend_1", "trend", TECH2_LAB, "TC", 0.70, 15, 3.5, "试剂开瓶后逐渐降解"),
        _Event("trend_2", "trend", pick[1], "ALB", 0.30, 15, -3.2, "光源灯老化，吸光度逐渐漂移"),
        _Event("outlier_1", "outlier", HOSP1, "CREA", -5, 1, 4.3, "质控品复溶时混匀不充分", 1),
    ]
    used = {(e.lab, e.analyte) for e in events}
    candidates = [(i, a.code) for i in daily for a in d.ANALYTES if (i, a.code) not in used]
    for k, j in enumerate(rng.choice(len(candidates), size=4, replace=False), start=2):
        lab_i, code = candidates[int(j)]
        size = float(rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 5.0))
        events.append(_Event(f"outlier_{k}", "outlier", lab_i, code, float(rng.uniform(0.25, 0.95)),
                             1, round(size, 2), "偶发误差（气泡、样本杯污染）",
                             int(rng.integers(0, 2))))
    events.append(_Event("bias_1", "bias", BIASED_LAB, "CREA", 0.0, 0, BIAS_PCT,
                         "校准品赋值偏高（全程正偏倚，室内质控在控，室间比对可见）"))
    return events


def _window(ev: _Event, sp: SystemPlan, n: int) -> tuple[int, int] | None:
    """Place an event after the limit-establishing results; None when it does not fit."""
    start = int(n + ev.start_hint) if ev.start_hint < 0 else int(ev.start_hint * n)
    start = max(start, sp.first_free)
    if start + ev.length > n:
        start = max(sp.first_free, n - ev.length)
    length = min(ev.length, n - start)
    minimum = {"shift": 6, "trend": 8, "outlier": 1}[ev.kind]
    return (start, length) if length >= minimum else None


_Placed = tuple[_Event, SystemPlan, int, int]


def _place_events(events: list[_Event], systems: list[SystemPlan],
                  dates: list[date]) -> list[_Placed]:
    """Fix each event's test system and days; the system runs QC on every day of it."""
    by_key = {(sp.lab.index, sp.code): sp for sp in systems if sp.slot == 0}
    n, placed = len(dates), []
    for ev in events:
        sp = by_key[(ev.lab, ev.analyte)]
        window = (0, n) if ev.kind == "bias" else _window(ev, sp, n)
        if window is None:
            log.info("demo seed: %s skipped (period too short)", ev.name)
            continue
        start, length = window
        if ev.kind != "bias":
            sp.present[start:start + length] = True
            sp.windows.append(window)
            sp.events.append(ev.name)
        placed.append((ev, sp, start, length))
    return placed


def _apply_events(placed: list[_Placed], dates: list[date]) -> None:
    """Add the events to the values, sized by the limits in force; record them in `INJECTED`.

    The bias is already in the values (the lab's bias was set before simulation).
    """
    INJECTED.clear()
    for ev, sp, start, length in placed:
        limit = sp.limit_at(start)
        window = slice(start, start + length)
        rules: tuple[str, ...] = ()
        if ev.kind == "shift":
            sp.values[window] += ev.size * limit.sd
            rules = SYSTEMATIC_RULES
        elif ev.kind == "trend":
            ramp = ev.size * np.arange(1, length + 1)[:, None] / length
            sp.values[window] += ramp * limit.sd
            rules = TREND_RULES
        elif ev.kind == "outlier":
            j = ev.level
            sp.values[start, j] = limit.mean[j] + ev.size * limit.sd[j]
            rules = ("1-3s",)
        _record(ev, sp, start, length, dates, rules)


def _record(ev: _Event, sp: SystemPlan, start: int, length: int, dates: list[date],
            rules: tuple[str, ...]) -> None:
    lab, inst = sp.lab, sp.lab.instruments[sp.slot]
    level = "both" if ev.level is None else d.LEVEL_NAMES[ev.level]
    INJECTED[ev.name] = {
        "kind": ev.kind, "lab_code": lab.lab.code, "anon_code": lab.anon_code,
        "hospital": lab.name, "analyte": ev.analyte, "instrument": f"{inst.maker} {inst.model}",
        "test_system_id": sp.ts.id, "level": level,
        "level_index": None if ev.level is None else ev.level + 1,
        "start_day": start, "start": dates[start], "days": length,
        "end": dates[start + length - 1],
        "size": ev.size, "size_unit": "%" if ev.kind == "bias" else "SD",
        "expected_rules": list(rules), "note": ev.note,
    }


# ---------------------------------------------------------------------------- limits & rules
def _store_limits(systems: list[SystemPlan], users: dict[str, User], dates: list[date]) -> int:
    """Store every limit version (audited like any ORM insert) in one flush.

    Rows are built directly rather than through ``targets.set_control_limit`` — ~3 000 calls
    with a query and a flush each — and carry what that service would: version, kind, who,
    why, from when.
    """
    rows = []
    for sp in systems:
        actor = sp.lab.signer or users["center"]
        for version, limit in enumerate(sp.limits, start=1):
            created = to_utc(datetime.combine(dates[limit.created], LIMIT_ENTERED_AT))
            rows += [ControlLimit(
                test_system_id=sp.ts.id, qc_level_id=level.id, version=version, kind=limit.kind,
                target_mean=float(limit.mean[j]), target_sd=float(limit.sd[j]),
                n_used=limit.n_used[j], effective_from=dates[limit.start], reason=limit.reason,
                created_by_id=actor.id, created_at=created)
                for j, level in enumerate(sp.ts.levels)]
    db.session.add_all(rows)
    db.session.flush()
    return len(rows)


def _custom_rules(kind: str) -> tuple[dict[str, str], str] | None:
    base = westgard.default_rule_set(2)
    if kind == "trend":
        return base | {"7T": "warning"}, "增加7T趋势规则，及早发现试剂降解等渐进性漂移"
    if kind == "sigma":
        return westgard.sigma_rule_set(5.5), "依据西格玛度量（5~6σ）采用Westgard西格玛规则"
    if kind == "strict":
        return (base | {"1-2.5s": "reject", "1-3s": "off"},
                "项目性能一般，采用1-2.5s提高误差检出率")
    return None


def _store_rule_sets(systems: list[SystemPlan], users: dict[str, User]) -> int:
    count = 0
    for sp in systems:
        custom = _custom_rules(sp.lab.rules)
        if custom is not None:
            targets.set_rule_set(sp.lab.signer or users["center"], sp.ts, custom[0], custom[1])
            count += 1
    return count


# ---------------------------------------------------------------------------- bulk rows
def _texts(values: np.ndarray, decimals: int) -> list[str]:
    return [f"{v:.{decimals}f}" for v in values]


def _store_results(systems: list[SystemPlan], dates: list[date], rng: np.random.Generator,
                   admin: User) -> tuple[int, int]:
    """Store every lab's runs through the one write path, as the labs would have sent them.

    ``prepare_runs`` checks them and ``store_runs`` writes runs, submissions and results
    with Core inserts and judges each test system once from its first run — the same code
    a phone entry or an upload takes, with the entry times the simulation drew. Labs
    without a named technician are entered by the platform admin (the demo loader).
    """
    midnight = [to_utc(datetime(day.year, day.month, day.day)) for day in dates]
    by_lab: dict[int, tuple[LabPlan, list]] = {}
    n_results = 0
    for sp in systems:
        idx = np.flatnonzero(sp.present)
        rounded = _rounded(sp)[idx]
        texts = [_texts(rounded[:, j], sp.spec.decimals) for j in range(2)]
        start = 390 if sp.slot else 450  # emergency analysers run QC earlier
        minutes = rng.uniform(start, start + 100, size=idx.size)
        delay = rng.uniform(3, 40, size=idx.size)
        api = sp.lab.channel == "api"
        rows = by_lab.setdefault(id(sp.lab), (sp.lab, []))[1]
        for k, day in enumerate(idx):
            measured = midnight[day] + timedelta(minutes=float(minutes[k]))
            entered = measured + timedelta(minutes=1.0 if api else float(delay[k]))
            rows.append(iqc_services.RunInput(
                sp.ts.id, dates[day], {"1": texts[0][k], "2": texts[1][k]}, 1,
                f"demo-{sp.ts.id}-{dates[day]:%Y%m%d}-1", measured, entered))
            n_results += 2
    n_runs = 0
    for lab, rows in by_lab.values():
        actor = lab.technician or admin
        prepared = iqc_services.prepare_runs(actor, lab.channel, rows)
        refused = [p.error for p in prepared if p.error is not None]
        if refused:
            raise RuntimeError(f"demo rows refused: {refused[0].message}")
        iqc_services.store_runs(actor, lab.channel, prepared)
        n_runs += len(rows)
    _refresh_statistics()
    return n_runs, n_results


def _refresh_statistics() -> None:
    """Let SQLite's planner see the new row counts for the pages that read them next.

    Without statistics SQLite reads ``qc_result`` through the barely selective
    ``is_current`` index instead of ``run_id`` (17 ms instead of 0.3 ms per test system).
    (``ANALYZE TABLE`` on MariaDB would commit implicitly, so no.)
    """
    if db.session.get_bind().dialect.name == "sqlite":
        for table in (QcRun.__tablename__, QcResult.__tablename__, Submission.__tablename__):
            db.session.execute(text(f"ANALYZE {table}"))


_CAUSES = {
    "shift": ("calibration", "更换试剂批号或校准后出现系统偏移", "重新校准，复测质控两个水平均在控",
              "回顾失控期间的患者结果，对偏差超过允许总误差的标本重新检测并通知临床"),
    "trend": ("reagent", "质控结果逐日同向漂移，试剂开瓶时间过长或光源老化",
              "更换新开瓶试剂并重新校准，复测在控", "抽查失控期间的患者标本复测，差异在允许范围内"),
    "outlier": ("control", "单个水平偶发超限，质控品复溶或混匀不充分", "重新复溶质控品后复测在控",
                "无影响（复测在控，本批结果可发出）"),
    "random": ("random", "偶发随机误差", "重新检测质控品，结果在控", "无影响"),
}


def _close_old_actions(systems: list[SystemPlan], end: date) -> Counter:
    """Complete and sign the out-of-control records of earlier days, as the labs would have."""
    by_ts = {sp.ts.id: sp for sp in systems}
    kinds = {name: INJECTED[name] for sp in systems for name in sp.events if name in INJECTED}
    rows = db.session.execute(
        select(CorrectiveAction.id, QcRun.test_system_id, QcRun.run_date, QcRun.created_at)
        .join(QcRun, QcRun.id == CorrectiveAction.run_id)
        .where(QcRun.test_system_id.in_(list(by_ts)), CorrectiveAction.status == "open")).all()
    updates, done = [], Counter()
    table = CorrectiveAction.__table__
    if rows:  # a record opens when its run was judged, not when the demo was loaded
        db.session.execute(update(table).where(table.c.id == bindparam("_id")),
                           [{"_id": r[0], "opened_at": r[3]} for r in rows])
    for action_id, ts_id, run_date, created in rows:
        age = (end - run_date).days
        if age < SUBMIT_AFTER_DAYS:
            continue
        sp = by_ts[ts_id]
        cause = "random"
        for name in sp.events:
            ev = kinds.get(name)
            if ev and ev["start"] <= run_date <= ev["end"]:
                cause = ev["kind"]
        category, description, taken, impact = _CAUSES[cause]
        signed = age >= CLOSE_AFTER_DAYS
        completer = sp.lab.technician or sp.lab.signer
        updates.append({
            "_id": action_id, "status": "signed" if signed else "submitted",
            "cause_category": category, "description": description, "action_taken": taken,
            "rerun_result": "复测在控", "patient_impact": impact,
            "completed_by_id": completer.id if completer else None,
            "completed_at": created + timedelta(hours=2),
            "signed_by_id": sp.lab.signer.id if signed and sp.lab.signer else None,
            "signed_at": created + timedelta(days=1) if signed else None,
            "sign_comment": "同意" if signed else None})
        done["signed" if signed else "submitted"] += 1
    if updates:
        db.session.execute(update(table).where(table.c.id == bindparam("_id")), updates)
    return done


# ---------------------------------------------------------------------------- entry point
def seed(days: int = 120, *, seed_value: int = 20261125, end: date | None = None) -> str:
    """Create the demo region with ``days`` days of daily QC ending ``end``; return a summary.

    ``end`` defaults to yesterday in Asia/Shanghai, so today's QC can still be entered by
    hand. Flushes, never commits. Refuses to run twice (the region code ``DEMO`` exists).
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if db.session.scalar(select(Region.id).where(Region.code == d.REGION_CODE)) is not None:
        raise UserError("示范区域已存在，不能重复生成示范数据", status=409)
    end = end or local_today() - timedelta(days=1)
    dates = [end - timedelta(days=days - 1 - k) for k in range(days)]
    rngs = _rngs(seed_value)
    clock = _Clock()
    labs = _plan_labs(rngs["plan"])
    systems = _plan_systems(labs, rngs["params"])
    region = _create_orgs(labs)
    users = _create_users(region, labs)
    _create_test_systems(labs, systems, end, rngs["plan"])
    clock.lap("orgs, users, catalogue")
    _simulate(systems, labs, dates, rngs["noise"])
    _establish(systems, dates)
    placed = _place_events(_plan_events(labs, systems, rngs["events"]), systems, dates)
    _cumulative_updates(systems, dates)
    _apply_events(placed, dates)
    n_limits = _store_limits(systems, users, dates)
    custom = _store_rule_sets(systems, users)
    clock.lap("simulation, limits")
    n_runs, n_results = _store_results(systems, dates, rngs["times"], users["admin"])
    clock.lap("store and judge runs")
    actions = _close_old_actions(systems, end)
    status = Counter(dict(db.session.execute(
        select(QcRun.status, func.count()).join(TestSystem, TestSystem.id == QcRun.test_system_id)
        .join(Lab, Lab.id == TestSystem.lab_id).join(Hospital, Hospital.id == Lab.hospital_id)
        .where(Hospital.region_id == region.id).group_by(QcRun.status)).all()))
    counts = {"hospitals": len(labs), "labs": len(labs), "test_systems": len(systems),
              "control_limits": n_limits, "runs": n_runs, "results": n_results,
              "reject": status["reject"], "warning": status["warning"], "custom_rule_sets": custom,
              "actions_signed": actions["signed"], "actions_submitted": actions["submitted"]}
    db.session.add(AuditLog(action="seed", entity="demo", entity_id=d.REGION_CODE, changes={
        "seed_value": seed_value, "days": days, "start": dates[0].isoformat(),
        "end": end.isoformat(), **counts, "injected": sorted(INJECTED),
        "note": "示范数据批量导入：批次、提交记录与结果为批量写入，未逐条记审计"}))
    db.session.flush()
    db.session.expire_all()  # bulk updates bypassed the identity map
    clock.lap("close actions, audit")
    log.info("demo seed timings: %s", clock.summary())
    return (f"示范数据已生成 demo seeded: {d.REGION_NAME} {len(labs)} 家医院/实验室、"
            f"{len(systems)} 个检测系统、{n_runs} 批次、{n_results} 个质控结果"
            f"（{dates[0]}～{end}，{days} 天）；"
            f"失控 {status['reject']} 批、警告 {status['warning']} 批；"
            f"注入事件 {len(INJECTED)} 个；用时 {clock.total():.1f} s")


class _Clock:
    """Lap timer for the seed's log line."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self.last))
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start

    def summary(self) -> str:
        return ", ".join(f"{name} {secs:.2f}s" for name, secs in self.laps)
