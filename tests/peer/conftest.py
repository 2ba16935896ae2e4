"""A small comparison world built with factories, plus an independent re-computation.

Region 1 runs one glucose QC lot (2 levels) in eight labs:

* ``r1``–``r5``: Roche cobas c702, Roche reagent, hexokinase (HK) — a publishable peer group;
* ``b1``, ``b2``: Beckman AU5800, Beckman reagent, HK — too small, falls back to the method;
* ``s1``: Siemens, glucose-oxidase method (GOD) — alone in peer and method: falls back to all.

Region 2 has lab ``x`` on the same lot (it must never enter region 1's groups). Every system
has five runs on the 1st of the current month and five in the previous month; ``r1`` also
has a rejected run with an absurd value and ``r2`` a superseded version — neither may count.
Region 1's systems have (wide) targets from the previous month on, so runs submitted through
the real service are judged; a run without a target stays ``pending`` and never counts.

:func:`expected` recomputes the statistics from the raw rows with plain numpy and an
Algorithm A written here from ISO 13528 (not the service's code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from html.parser import HTMLParser

import numpy as np
import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.extensions import db
from qcwx.timeutil import local_today
from tests import factories as f

ROCHE, BECKMAN = ("罗氏", "cobas c702"), ("贝克曼库尔特", "AU5800")
SIEMENS = ("西门子", "Atellica CH")
# lab name -> (instrument, method code, lab bias as a fraction of the level value)
LABS = {
    "r1": (ROCHE, "HK", 0.010), "r2": (ROCHE, "HK", -0.004), "r3": (ROCHE, "HK", 0.002),
    "r4": (ROCHE, "HK", -0.012), "r5": (ROCHE, "HK", 0.006), "b1": (BECKMAN, "HK", 0.030),
    "b2": (BECKMAN, "HK", 0.024), "s1": (SIEMENS, "GOD", -0.020),
}
LEVEL_VALUES = {1: 5.50, 2: 15.80}
REJECTED_VALUE = 9.99
SUPERSEDED_VALUE = 8.88


def month_start(day: date) -> date:
    return day.replace(day=1)


def previous_month_start(day: date) -> date:
    return (month_start(day) - timedelta(days=1)).replace(day=1)


@dataclass
class PeerWorld:
    region: m.Region
    region2: m.Region
    lot: m.QcLot
    glu: m.Analyte
    labs: dict[str, m.Lab] = field(default_factory=dict)
    systems: dict[str, m.TestSystem] = field(default_factory=dict)
    users: dict[str, m.User] = field(default_factory=dict)
    today: date = field(default_factory=local_today)

    @property
    def month(self) -> str:
        return self.today.strftime("%Y-%m")

    @property
    def prev_month(self) -> str:
        return previous_month_start(self.today).strftime("%Y-%m")

    def level(self, index: int) -> m.QcLevel:
        return next(lv for lv in self.lot.levels if lv.level_index == index)


def add_run(ts: m.TestSystem, run_date: date, values: dict[int, float], *, run_no: int = 1,
            status: str = "accept") -> m.QcRun:
    """Store a run with its results directly (the statistics, not the rules, are under test)."""
    run = m.QcRun(test_system_id=ts.id, run_date=run_date, run_no=run_no, status=status)
    db.session.add(run)
    db.session.flush()
    for lv in ts.levels:
        if lv.level_index in values:
            value = values[lv.level_index]
            db.session.add(m.QcResult(run_id=run.id, qc_level_id=lv.id, version=1,
                                      is_current=True, value_text=f"{value:.2f}", value=value))
    db.session.flush()
    return run


def make_system(lab: m.Lab, glu: m.Analyte, lot: m.QcLot, instrument: tuple[str, str],
                method_code: str) -> m.TestSystem:
    ts = f.test_system(lab, glu, lot, maker=instrument[0], model=instrument[1])
    if method_code != "HK":
        method = db.session.scalar(select(m.Method).where(m.Method.code == method_code))
        if method is None:
            method = m.Method(code=method_code, name="葡萄糖氧化酶法", principle="酶法")
        ts.method = method
        db.session.flush()
    return ts


def fill(ts: m.TestSystem, bias: float, rng: np.random.Generator, today: date) -> None:
    """Five runs on the 1st of this month and five on days 1–5 of the previous month."""
    this_month, last_month = month_start(today), previous_month_start(today)
    for k in range(5):
        values = {i: round(v * (1 + bias) * (1 + rng.normal(0, 0.015)), 2)
                  for i, v in LEVEL_VALUES.items()}
        add_run(ts, this_month, values, run_no=k + 1)
        values = {i: round(v * (1 + bias) * (1 + rng.normal(0, 0.015)), 2)
                  for i, v in LEVEL_VALUES.items()}
        add_run(ts, last_month + timedelta(days=k), values)


def set_targets(ts: m.TestSystem, bias: float, since: date) -> None:
    """Give every level a wide target (±30 % SD) so submitted test runs are accepted."""
    for lv in ts.levels:
        value = LEVEL_VALUES[lv.level_index] * (1 + bias)
        db.session.add(m.ControlLimit(test_system_id=ts.id, qc_level_id=lv.id, version=1,
                                      kind="fixed", target_mean=value, target_sd=0.3 * value,
                                      effective_from=since, reason="比对测试靶值"))
    db.session.flush()


def build_peer_world() -> PeerWorld:
    today = local_today()
    rng = np.random.default_rng(7)
    r1, r2 = f.region("比对一区"), f.region("比对二区")
    glu = f.analyte()
    db.session.add(m.QualitySpec(analyte_id=glu.id, spec_set="WS/T 403-2024", allowable_cv=3.0,
                                 allowable_bias=2.0, tea_pct=7.0, tea_abs=0.21,
                                 tea_abs_unit="mmol/L", tea_threshold=3.0,
                                 source="WS/T 403-2024", version=1, active=True))
    lot = f.qc_lot(2)
    w = PeerWorld(r1, r2, lot, glu, today=today)
    for i, (name, (instrument, method, bias)) in enumerate(LABS.items()):
        hosp = f.hospital(r1, f"比对{name}医院", level="三级" if i < 4 else "二级")
        w.labs[name] = f.lab(hosp)
        w.systems[name] = make_system(w.labs[name], glu, lot, instrument, method)
        fill(w.systems[name], bias, rng, today)
        set_targets(w.systems[name], bias, previous_month_start(today))
    hx = f.hospital(r2, "外区医院")
    w.labs["x"] = f.lab(hx)
    w.systems["x"] = make_system(w.labs["x"], glu, lot, ROCHE, "HK")
    fill(w.systems["x"], 0.2, rng, today)  # a wild lab: would move region 1 if it leaked in
    add_run(w.systems["r1"], month_start(today), {1: REJECTED_VALUE, 2: 99.0}, run_no=9,
            status="reject")
    run = db.session.scalar(select(m.QcRun).where(
        m.QcRun.test_system_id == w.systems["r2"].id, m.QcRun.run_no == 1,
        m.QcRun.run_date == month_start(today)))
    current = next(r for r in run.results if r.level.level_index == 1)
    current.version = 2
    db.session.add(m.QcResult(run_id=run.id, qc_level_id=current.qc_level_id, version=1,
                              is_current=False, value_text=f"{SUPERSEDED_VALUE}",
                              value=SUPERSEDED_VALUE))
    db.session.flush()
    w.users = {
        "tech_r1": f.user("technician", lab_=w.labs["r1"]),
        "tech_b1": f.user("technician", lab_=w.labs["b1"]),
        "director_r1": f.user("director", hospital_=w.labs["r1"].hospital),
        "center": f.user("center", region_=r1),
        "center2": f.user("center", region_=r2),
        "admin": f.user("admin"),
    }
    return w


@pytest.fixture
def peer_world(session):
    built = build_peer_world()
    session.commit()  # see tests/conftest.py ``world``: survive a request's rollback
    return built


# ------------------------------------------------------------------ independent statistics


def algorithm_a_reference(values) -> tuple[float, float]:
    """ISO 13528 Annex C.3 Algorithm A, written out plainly for the tests."""
    x = sorted(float(v) for v in values)
    if len(x) == 1:
        return x[0], math.nan
    mid = np.median(x)
    s = 1.483 * float(np.median([abs(v - mid) for v in x]))
    if s == 0:
        return float(mid), float(np.std(x, ddof=1))
    for _ in range(1000):
        delta = 1.5 * s
        w = [min(max(v, mid - delta), mid + delta) for v in x]
        new_mid = sum(w) / len(w)
        new_s = 1.134 * math.sqrt(sum((v - new_mid) ** 2 for v in w) / (len(w) - 1))
        done = abs(new_mid - mid) < 1e-10 * max(1, abs(new_mid)) and abs(new_s - s) < 1e-10 * max(
            1, abs(new_mid))
        mid, s = new_mid, new_s
        if done:
            break
    return float(mid), float(s)


def raw_values(ts_ids, level_id: int, start: date, end: date) -> dict[int, list[float]]:
    """Read in-control current results straight from the tables (the test's own query).

    In control = a judged run that was not rejected: pending runs count neither way.
    """
    rows = db.session.execute(
        select(m.QcRun.test_system_id, m.QcResult.value)
        .join(m.QcResult, m.QcResult.run_id == m.QcRun.id)
        .where(m.QcRun.test_system_id.in_(list(ts_ids)), m.QcResult.qc_level_id == level_id,
               m.QcResult.is_current.is_(True),
               m.QcRun.status.in_(("accept", "warning")),
               m.QcRun.run_date >= start, m.QcRun.run_date <= end)).all()
    out: dict[int, list[float]] = {}
    for ts_id, value in rows:
        out.setdefault(ts_id, []).append(float(value))
    return out


@dataclass
class Expected:
    lab_mean: float
    lab_sd: float
    lab_cv: float
    n: int
    group_mean: float
    group_sd: float
    group_cv: float
    sdi: float
    cvr: float
    bias: float
    bias_rank: int
    rank_size: int
    n_labs: int


def expected(values: dict[int, list[float]], member_ids, ts_id: int) -> Expected:
    """Statistics of ``ts_id`` against the group ``member_ids`` from raw values, plain numpy."""
    means = {t: float(np.mean(values[t])) for t in member_ids}
    sds = {t: float(np.std(values[t], ddof=1)) for t in member_ids}
    cvs = {t: 100 * sds[t] / abs(means[t]) for t in member_ids}
    gm, gs = algorithm_a_reference(list(means.values()))
    gcv = float(np.mean(list(cvs.values())))
    biases = {t: 100 * (means[t] - gm) / gm for t in member_ids}
    mine = abs(biases[ts_id])
    rank = 1 + sum(1 for t in member_ids if abs(biases[t]) < mine)
    return Expected(means[ts_id], sds[ts_id], cvs[ts_id], len(values[ts_id]), gm, gs, gcv,
                    (means[ts_id] - gm) / gs, cvs[ts_id] / gcv, biases[ts_id], rank,
                    len(member_ids), len(member_ids))


# ------------------------------------------------------------------ HTML helpers


class _Collector(HTMLParser):
    """Record every element: tag, attributes, inner text and its ancestors' attributes."""

    VOID = {"input", "br", "img", "meta", "link", "hr", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict] = []
        self._stack: list[dict] = []

    def handle_starttag(self, tag, attrs):
        entry = {"tag": tag, "attrs": dict(attrs), "text": "",
                 "ancestors": [e["attrs"] for e in self._stack]}
        self.found.append(entry)
        if tag not in self.VOID:
            self._stack.append(entry)

    def handle_endtag(self, tag):
        while self._stack:
            if self._stack.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for entry in self._stack:
            entry["text"] += data


def elements(html: str, cls: str | None = None, attr: str | None = None) -> list[dict]:
    """Return the elements of ``html`` with class ``cls`` and/or attribute ``attr``."""
    parser = _Collector()
    parser.feed(html)
    return [e for e in parser.found
            if (cls is None or cls in (e["attrs"].get("class") or "").split())
            and (attr is None or attr in e["attrs"])]


def level_blocks(html: str) -> dict[tuple[int, int], dict]:
    """Return the lab page's level blocks by (ts id, level id): data-* and visible fields."""
    blocks = {(int(e["attrs"]["data-ts"]), int(e["attrs"]["data-level"])):
              {"attrs": e["attrs"], "fields": {}, "text": " ".join(e["text"].split())}
              for e in elements(html, "pe-level")}
    for e in elements(html, attr="data-field"):
        owner = next((a for a in reversed(e["ancestors"])
                      if "pe-level" in (a.get("class") or "").split()), None)
        if owner is not None:
            key = (int(owner["data-ts"]), int(owner["data-level"]))
            blocks[key]["fields"][e["attrs"]["data-field"]] = " ".join(e["text"].split())
    return blocks
