"""The demo region's plan: labs, analysers, quality and the seeded random streams.

Drawn before anything is stored, so one seed value always gives the same region; the
other demo modules only turn this plan into rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import time as dtime

import numpy as np

from qcwx.catalog.models import (
    Instrument,
    TestSystem,
)
from qcwx.demo import data as d
from qcwx.orgs.models import Lab, User
from qcwx.qcstats import limits as qclimits
from qcwx.qcstats import specs

log = logging.getLogger(__name__)

DEMO_PASSWORD = "qcwx-demo-2026"  # noqa: S105 - documented demo password
# username, display name, role; the scope is fixed in `create_users`: center and expert at the
# city, center_a / center_b at its two districts.
DEMO_USERS = (
    ("admin", "系统管理员", "admin"),
    ("center", "陈静", "center"),
    ("center_a", "刘洋", "center"),
    ("center_b", "孙丽", "center"),
    ("expert", "吴志明", "expert"),
    ("director", "李建国", "director"),
    ("supervisor", "张敏", "supervisor"),
    ("tech", "王芳", "technician"),
    ("tech2", "赵磊", "technician"),
)
DEMO_PASSWORDS: dict[str, str] = {username: DEMO_PASSWORD for username, _, _ in DEMO_USERS}
#: Demo users bound to fake WeChat users (28-character openids, as WeChat's).
DEMO_OPENIDS = {"supervisor": "oQcwxDemoSupervisor000000001",
                "director": "oQcwxDemoDirector00000000001"}

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


def rngs(seed_value: int) -> dict[str, np.random.Generator]:
    names = ("plan", "params", "noise", "times", "events")
    children = np.random.SeedSequence(seed_value).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, children, strict=True)}


def plan_labs(rng: np.random.Generator) -> list[LabPlan]:
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


def plan_systems(labs: list[LabPlan], rng: np.random.Generator) -> list[SystemPlan]:
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
