"""Instrument comparison (WS/T 407, CLSI EP09; QC_SPEC §6): pairs in, verified statistics out.

Two analysers of one lab measuring one analyte are compared from

* **QC results**: the two test systems run the same QC lot; each day's mean of each level's
  in-control current results on one system is paired with the other's of the same day and
  level (the same material, so the difference is the analysers');
* **paired patient results**: an uploaded CSV/XLSX (parsed by :mod:`.pair_files`).

:func:`analyse` runs Passing–Bablok (CI), Deming (λ, jackknife CI), Pearson r, the bias at
each medical decision level against the allowable bias, the ≥ 80 % pair acceptance, and the
Bland–Altman mean difference and 95 % limits of agreement. All regression arithmetic is
:mod:`qcwx.qcstats.regression`; only Pearson r and Bland–Altman are one line of numpy each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from sqlalchemy import func, select

from qcwx.catalog.models import TestSystem
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc.models import QcResult, QcRun
from qcwx.peer.queries.frames import in_control
from qcwx.qcstats import regression

MIN_PAIRS = 10  # below this the CIs say nothing; EP09 asks for 40, WS/T 407 for 20 or more
MAX_PAIRS = 2000


@dataclass(frozen=True)
class BlandAltman:
    """Mean difference (y − x) and 95 % limits of agreement, absolute and in percent."""

    mean_diff: float
    sd_diff: float
    loa: tuple[float, float]
    mean_pct: float
    loa_pct: tuple[float, float]


@dataclass(frozen=True)
class Analysis:
    """Everything a comparison page and report show."""

    n: int
    pb: regression.PassingBablokResult
    deming: regression.DemingResult
    r: float
    levels_pb: tuple[regression.DecisionLevelBias, ...]
    levels_deming: tuple[regression.DecisionLevelBias, ...]
    acceptance: regression.PairAcceptance
    bland_altman: BlandAltman

    @property
    def accepted(self) -> bool:
        """Return the WS/T 407 verdict: ≥ 80 % of pairs and every decision level within limits."""
        return self.acceptance.accepted and all(lv.acceptable for lv in self.levels_pb)


def bland_altman(x: np.ndarray, y: np.ndarray) -> BlandAltman:
    """Return mean ± 1.96·SD of d = y − x and of 100·d/((x + y)/2) (Bland & Altman 1986)."""
    d = y - x
    pct = 100.0 * d / ((x + y) / 2.0)
    md, sd = float(d.mean()), float(d.std(ddof=1))
    mp, sp = float(pct.mean()), float(pct.std(ddof=1))
    return BlandAltman(md, sd, (md - 1.96 * sd, md + 1.96 * sd), mp,
                       (mp - 1.96 * sp, mp + 1.96 * sp))


def analyse(pairs: Sequence[Sequence], error_ratio: float, allowable_bias: float,
            decision_levels: Sequence[float]) -> Analysis:
    """Compute the comparison of ``pairs`` (``[x, y, …]``); ValueError for unusable data."""
    x = np.array([float(p[0]) for p in pairs], dtype=np.float64)
    y = np.array([float(p[1]) for p in pairs], dtype=np.float64)
    pb = regression.passing_bablok(x, y)
    dm = regression.deming(x, y, error_ratio=error_ratio)
    r = float(np.corrcoef(x, y)[0, 1])
    lv_pb = tuple(regression.bias_at_decision_level(pb.slope, pb.intercept, xc, allowable_bias)
                  for xc in decision_levels)
    lv_dm = tuple(regression.bias_at_decision_level(dm.slope, dm.intercept, xc, allowable_bias)
                  for xc in decision_levels)
    acc = regression.comparison_acceptance(x, y, allowable_bias)
    return Analysis(int(x.size), pb, dm, r, lv_pb, lv_dm, acc, bland_altman(x, y))


def check_analysable(pairs: Sequence[Sequence], error_ratio: float, allowable_bias: float,
                     decision_levels: Sequence[float]) -> Analysis:
    """Return :func:`analyse` or a 400 naming what is wrong (never a 500)."""
    if len(pairs) < MIN_PAIRS:
        raise UserError(f"配对结果只有 {len(pairs)} 对，至少需要 {MIN_PAIRS} 对", field="pairs")
    if len(pairs) > MAX_PAIRS:
        raise UserError(f"配对结果最多 {MAX_PAIRS} 对", field="pairs")
    if any(float(p[0]) <= 0 for p in pairs):
        raise UserError("参比仪器（X）的结果必须大于 0", field="pairs")
    try:
        return analyse(pairs, error_ratio, allowable_bias, decision_levels)
    except ValueError as exc:
        raise UserError(f"无法完成回归分析：{_reason(exc)}", field="pairs") from None


def _reason(exc: ValueError) -> str:
    text = str(exc)
    if "uncorrelated" in text:
        return "两台仪器结果不相关"
    if "coincide" in text or "distinct" in text:
        return "X 的不同取值太少"
    if "positive relationship" in text:
        return "两台仪器结果呈负相关"
    return "数据不适合回归"


def qc_pairs(x_ts: TestSystem, y_ts: TestSystem, start: date, end: date) -> list[list]:
    """Return ``[x, y, "YYYY-MM-DD 水平n"]`` of days both systems measured a level in control."""
    if x_ts.id == y_ts.id:
        raise UserError("请选择两台不同的仪器（检测系统）", field="y_ts")
    if x_ts.lab_id != y_ts.lab_id or x_ts.analyte_id != y_ts.analyte_id:
        raise UserError("两个检测系统必须属于同一实验室、同一检验项目", field="y_ts")
    if x_ts.qc_lot_id != y_ts.qc_lot_id:
        raise UserError("两个检测系统必须使用同一质控批号", field="y_ts")
    means = {ts.id: _day_means(ts.id, start, end) for ts in (x_ts, y_ts)}
    names = {lv.id: lv.name for lv in x_ts.levels}
    keys = sorted(set(means[x_ts.id]) & set(means[y_ts.id]))
    return [[means[x_ts.id][k], means[y_ts.id][k], f"{k[0]:%Y-%m-%d} {names.get(k[1], '')}"]
            for k in keys]


def _day_means(ts_id: int, start: date, end: date) -> dict[tuple[date, int], float]:
    rows = db.session.execute(
        select(QcRun.run_date, QcResult.qc_level_id, func.avg(QcResult.value))
        .join(QcResult, QcResult.run_id == QcRun.id)
        .where(QcRun.test_system_id == ts_id, QcResult.is_current, in_control(),
               QcRun.run_date >= start, QcRun.run_date <= end)
        .group_by(QcRun.run_date, QcResult.qc_level_id)).all()
    return {(d, int(lv)): float(v) for d, lv, v in rows}


def parse_levels(text: str | None, fallback: Sequence[float]) -> list[float]:
    """Return the decision levels typed as ``5.6, 7.0, 11.1`` (default ``fallback``)."""
    from qcwx.numbers import parse_number

    if not text or not text.strip():
        return [float(v) for v in fallback]
    out = []
    for part in text.replace("，", ",").replace("、", ",").split(","):
        if not part.strip():
            continue
        try:
            value = parse_number(part)
        except ValueError:
            raise UserError(f"医学决定水平“{part.strip()[:20]}”不是有效数字",
                            field="decision_levels") from None
        if not (math.isfinite(value) and value > 0):
            raise UserError("医学决定水平必须大于 0", field="decision_levels")
        out.append(value)
    if not out or len(out) > 10:
        raise UserError("请填写 1～10 个医学决定水平", field="decision_levels")
    return out
