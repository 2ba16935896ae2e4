"""The peer world (tests/peer/conftest.py) with three complete months of daily QC added.

:func:`tests.peer.conftest.build_peer_world` gives region 1's eight glucose labs (r1–r5 a
peer group, b1/b2 falling back to the method, s1 to all labs) and lab x in region 2. Here
every region-1 lab also runs QC every day (run 2) of the three months before the current one
— the evaluation window of last month's report — with 1 % noise around its bias, except:

* ``r4`` drifts +6 % from the middle month on: a systematic error that started then;
* ``r5`` submits nothing on days 11–25 of the latest month: participation;
* ``s1`` has four rejected runs in each month: frequent rejections (all window long).

Statuses are set directly (the statistics and the report are under test, not the rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from qcwx import models as m
from qcwx.extensions import db
from qcwx.peer.filters import month_end
from tests.peer.conftest import LABS, LEVEL_VALUES, PeerWorld, build_peer_world, month_start

DRIFT_LAB, DRIFT = "r4", 0.06
GAP_LAB, GAP_DAYS = "r5", range(11, 26)
REJECT_LAB, REJECTS_PER_MONTH = "s1", 4
DAILY_RUN_NO = 2


def months_before(day: date, count: int) -> list[str]:
    """Return the ``count`` months before ``day``'s month, oldest first."""
    out, first = [], month_start(day)
    for _ in range(count):
        first = (first - timedelta(days=1)).replace(day=1)
        out.append(first.strftime("%Y-%m"))
    return out[::-1]


@dataclass
class EvaluationWorld:
    peer: PeerWorld
    window: list[str]

    @property
    def month(self) -> str:
        """The evaluated month: the last complete one."""
        return self.window[-1]

    def __getattr__(self, name):
        if name == "peer":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.peer, name)


def _value(name: str, month: str, window: list[str], level: int, rng) -> float:
    bias = LABS[name][2] + (DRIFT if name == DRIFT_LAB and month >= window[1] else 0.0)
    return round(LEVEL_VALUES[level] * (1 + bias) * (1 + rng.normal(0, 0.01)), 2)


def add_daily_runs(w: PeerWorld, window: list[str]) -> None:
    """Add one run a day for every region-1 lab over ``window`` (see the module docstring)."""
    rng = np.random.default_rng(11)
    runs, values = [], []
    for name in LABS:
        ts = w.systems[name]
        for month in window:
            day, last, rejected = date.fromisoformat(month + "-01"), month_end(month), 0
            while day <= last:
                skip = name == GAP_LAB and month == window[-1] and day.day in GAP_DAYS
                if not skip:
                    status = "accept"
                    if name == REJECT_LAB and day.day % 7 == 3 and rejected < REJECTS_PER_MONTH:
                        status, rejected = "reject", rejected + 1
                    runs.append(m.QcRun(test_system_id=ts.id, run_date=day, run_no=DAILY_RUN_NO,
                                        status=status))
                    values.append({lv.id: _value(name, month, window, lv.level_index, rng)
                                   for lv in ts.levels})
                day += timedelta(days=1)
    db.session.add_all(runs)
    db.session.flush()
    db.session.add_all([m.QcResult(run_id=run.id, qc_level_id=level_id, version=1,
                                   is_current=True, value_text=f"{value:.2f}", value=value)
                        for run, per in zip(runs, values, strict=True)
                        for level_id, value in per.items()])
    db.session.flush()


def build_evaluation_world() -> EvaluationWorld:
    peer = build_peer_world()
    window = months_before(peer.today, 3)
    add_daily_runs(peer, window)
    return EvaluationWorld(peer, window)

