"""Simulate the demo's daily QC values, their first limits and the injected events.

Pure numpy on the plan (QC_SPEC §2, §5): nothing here touches the database; the events
are sized by the limits in force and recorded in :data:`qcwx.demo.plan.INJECTED`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from qcwx.demo import data as d
from qcwx.demo.plan import (
    BIAS_PCT,
    BIASED_LAB,
    CUMULATIVE_AFTER,
    ESTABLISH_N,
    ESTABLISHED_REASON,
    FIXED_REASON,
    FIXED_SD_FACTOR,
    HOSP1,
    INJECTED,
    RECAL_STEP_SD,
    SHARED_VARIANCE,
    SYSTEMATIC_RULES,
    TECH2_LAB,
    TREND_RULES,
    TS_GAP_RATE,
    LabPlan,
    LimitVersion,
    SystemPlan,
)
from qcwx.qcstats import limits as qclimits

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- simulation
def simulate(systems: list[SystemPlan], labs: list[LabPlan], dates: list[date],
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


def rounded(sp: SystemPlan) -> np.ndarray:
    return np.round(sp.values, sp.spec.decimals)


def establish(systems: list[SystemPlan], dates: list[date]) -> None:
    """Set each test system's first limits: provisional from its earliest results, or fixed.

    Both apply from the first day of the period; provisional limits are entered the day the
    20th result is in (and then judge those 20 runs too).
    """
    for sp in systems:
        idx = np.flatnonzero(sp.present)
        sp.first_free = int(idx[ESTABLISH_N - 1]) + 1 if idx.size >= ESTABLISH_N else len(dates)
        if sp.lab.limit_kind == "established" and idx.size >= ESTABLISH_N:
            # QC_SPEC §2: the earliest results, one more whenever a ±3 SD drop leaves < 20.
            values = rounded(sp)[idx]
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


def cumulative_updates(systems: list[SystemPlan], dates: list[date]) -> None:
    """Add a monthly limit version from the lab's cumulative in-control results.

    From the first day of each month that follows at least `CUMULATIVE_AFTER` results beyond
    the provisional ones, as labs do (QC_SPEC §2): mean and SD of every earlier result except
    those of the injected events (the runs the lab itself had rejected).
    """
    starts = [k for k, day in enumerate(dates) if day.day == 1]
    for sp in systems:
        if sp.limits[0].kind != "established":
            continue
        values = rounded(sp)
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


def plan_events(labs: list[LabPlan], systems: list[SystemPlan],
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


def place_events(events: list[_Event], systems: list[SystemPlan],
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


def apply_events(placed: list[_Placed], dates: list[date]) -> None:
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
