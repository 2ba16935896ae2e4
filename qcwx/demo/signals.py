"""Seed what cause localisation and the integrity signals must find, plus honest lot history.

* Every main-analyser test system changes reagent lot every 4–6 weeks and is calibrated
  on each change and about monthly (dated ``TestSystemChange`` rows), so "what changed near
  the date" has realistic noise around the true cause.
* ``lot_shift``: several labs on one maker's reagent for one analyte switch to a new lot on
  the same day and all read +2.5 SD until they recalibrate — the shared lot is the cause.
* ``cal_shift``: one lab (hospital 1) reads −2.5 SD after a calibration — a local cause.
* ``smooth``: a lab types values around its target with a fifth of the real scatter.
* ``copied``: a lab copies another lab's values (same QC lot, same analyte) day by day.

Runs after :func:`qcwx.demo.simulate.apply_events` (values and limits exist, nothing is
stored yet) and records each signal in :data:`qcwx.demo.plan.INJECTED`.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from qcwx.demo import data as d
from qcwx.demo.plan import HOSP1, INJECTED, SYSTEMATIC_RULES, LabPlan, SystemPlan
from qcwx.demo.simulate import _Event, _record
from qcwx.extensions import db
from qcwx.insights.models import TestSystemChange
from qcwx.orgs.models import User

SHIFT_SD = 2.5
SHARED_LABS = 4
FABRICATED_DAYS = 45


def inject_signals(labs: list[LabPlan], systems: list[SystemPlan], dates: list[date],
                   rng: np.random.Generator, users: dict[str, User]) -> int:
    """Add lot history, the two shifts and the two fabricated series; return rows stored."""
    n = len(dates)
    main = [sp for sp in systems if sp.slot == 0]
    changes: list[TestSystemChange] = []
    for sp in main:
        changes += _history(sp, dates, rng, users)
    busy = {(sp.lab.index, sp.code) for sp in systems if sp.events}
    daily = [sp for sp in main if not sp.lab.weekend_off and (sp.lab.index, sp.code) not in busy]
    shared = _shared_group(daily, rng)
    start = max([int(0.62 * n)] + [sp.first_free + 20 for sp in shared])
    if shared and start + 8 <= n:
        lot = f"{shared[0].code}{dates[start]:%y%m}X"
        length = min(20, n - start)
        for k, sp in enumerate(shared):
            changes += _shift(sp, f"lot_shift_{k + 1}", start, length, dates, users,
                              ("reagent_lot", lot, "新批号试剂到货启用"),
                              "新批号试剂系统性偏高（同批号多家实验室同日偏移）")
    local = next((sp for sp in daily if sp.lab.index == HOSP1 and sp not in shared
                  and sp.code in ("UA", "TP", "ALB", "TG", "AST")), None)
    if local is not None:
        start = max(int(0.45 * n), local.first_free + 20)
        if start + 8 <= n:
            changes += _shift(local, "cal_shift", start, min(18, n - start), dates, users,
                              ("calibration", None, "定期校准"),
                              "校准后整体偏低（仅本实验室，校准品复溶误差）", -SHIFT_SD)
    taken = {id(sp) for sp in shared} | ({id(local)} if local else set())
    _fabricate(daily, taken, dates, rng)
    db.session.add_all(changes)
    db.session.flush()
    return len(changes)


def _actor(sp: SystemPlan, users: dict[str, User]) -> int:
    return (sp.lab.signer or users["center"]).id


def _history(sp: SystemPlan, dates: list[date], rng: np.random.Generator,
             users: dict[str, User]) -> list[TestSystemChange]:
    """Reagent lot changes every 28–45 days (lots named by the maker's release) + calibrations."""
    rows, day = [], 0
    while day < len(dates):
        lot = f"{sp.code}{(dates[day].toordinal() // 40) % 100:02d}{len(sp.reagent_maker)}"
        rows.append(_change(sp, "reagent_lot", dates[day], users, lot, "新批号试剂启用"))
        rows.append(_change(sp, "calibration", dates[day], users, None, "更换批号后校准"))
        mid = day + int(rng.integers(12, 20))
        if mid < len(dates):
            rows.append(_change(sp, "calibration", dates[mid], users, None, "定期校准"))
        day += int(rng.integers(28, 46))
    return rows


def _change(sp: SystemPlan, kind: str, day: date, users: dict[str, User], lot: str | None,
            note: str) -> TestSystemChange:
    return TestSystemChange(test_system_id=sp.ts.id, kind=kind, lot_number=lot, changed_on=day,
                            note=note, created_by_id=_actor(sp, users))


def _shared_group(daily: list[SystemPlan], rng: np.random.Generator) -> list[SystemPlan]:
    """Pick the analyte × reagent maker with most daily labs; take up to ``SHARED_LABS``.

    Hospital 1 is included when it is in the group, so the demo supervisor sees the case.
    """
    groups: dict[tuple[str, str], list[SystemPlan]] = {}
    for sp in daily:
        if sp.code in ("TC", "TG", "UA", "ALT", "AST", "TP", "ALB", "UREA"):
            groups.setdefault((sp.code, sp.reagent_maker), []).append(sp)
    if not groups:
        return []
    key = max(sorted(groups), key=lambda k: (any(s.lab.index == HOSP1 for s in groups[k]),
                                             len(groups[k])))
    members = groups[key]
    if len(members) < 3:
        return []
    first = [s for s in members if s.lab.index == HOSP1]
    rest = [s for s in members if s.lab.index != HOSP1]
    rest = [rest[int(i)] for i in rng.permutation(len(rest))]
    return (first + rest)[:SHARED_LABS]


def _shift(sp: SystemPlan, name: str, start: int, length: int, dates: list[date],
           users: dict[str, User], cause: tuple, note: str,
           size: float = SHIFT_SD) -> list[TestSystemChange]:
    """Shift both levels by ``size`` SD of the limits in force, from ``start`` for ``length``."""
    limit = sp.limit_at(start)
    window = slice(start, start + length)
    sp.present[window] = True
    sp.values[window] += size * limit.sd
    sp.windows.append((start, length))
    sp.events.append(name)
    ev = _Event(name, "shift", sp.lab.index, sp.code, 0.0, length, size, note)
    _record(ev, sp, start, length, dates, SYSTEMATIC_RULES)
    INJECTED[name]["cause"] = cause[0]
    INJECTED[name]["lot"] = cause[1]
    rows = [_change(sp, cause[0], dates[start], users, cause[1], cause[2])]
    if cause[0] == "reagent_lot":
        rows.append(_change(sp, "calibration", dates[start], users, None, "更换批号后校准"))
    if start + length < len(dates):
        rows.append(_change(sp, "calibration", dates[start + length], users, None,
                            "失控后重新校准，质控恢复"))
    return rows


def _fabricate(daily: list[SystemPlan], taken: set[int], dates: list[date],
               rng: np.random.Generator) -> None:
    """Make one series too smooth and copy one lab's series into another lab's."""
    free = [sp for sp in daily if id(sp) not in taken and sp.lab.index != HOSP1]
    n = len(dates)
    by_code: dict[tuple[str, str], list[SystemPlan]] = {}
    for sp in free:
        by_code.setdefault((sp.code, sp.lab.lot_key), []).append(sp)
    pairs = sorted(k for k, v in by_code.items() if len({s.lab.index for s in v}) >= 2
                   and k[1] == d.LOT_MAIN)
    if not pairs:
        return
    source, copier = by_code[pairs[0]][:2]
    start = max(n - FABRICATED_DAYS, copier.first_free, source.first_free)
    if start >= n:  # a demo too short to leave fabricated days (tests seed 2 days)
        return
    window = slice(start, n)
    copier.present[window] = source.present[window]
    copier.values[window] = source.values[window]
    _note("copied", copier, start, dates, f"抄袭{source.lab.lab.code}的质控结果",
          source_lab=source.lab.lab.code, source_test_system_id=source.ts.id)
    smooth = next((sp for sp in free if sp.lab.index not in (source.lab.index,
                                                              copier.lab.index)), None)
    if smooth is None:
        return
    start = max(n - FABRICATED_DAYS, smooth.first_free)
    if start >= n:
        return
    limit = smooth.limit_at(start)
    k = n - start
    smooth.present[start:] = True
    smooth.values[start:] = limit.mean + rng.normal(0.0, 0.2, (k, 2)) * limit.sd
    _note("smooth", smooth, start, dates, "按靶值编造结果，离散度仅为真实的五分之一")


def _note(name: str, sp: SystemPlan, start: int, dates: list[date], note: str,
          **extra) -> None:
    INJECTED[name] = {"kind": "fabricated", "lab_code": sp.lab.lab.code,
                      "anon_code": sp.lab.anon_code, "analyte": sp.code,
                      "test_system_id": sp.ts.id, "start": dates[start], "end": dates[-1],
                      "days": len(dates) - start, "note": note, **extra}
