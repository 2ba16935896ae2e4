"""Sigma, total error and measurement uncertainty of test systems, with their inputs.

Why a module of its own: the peer pages show σ and the grade, but a supervisor designing QC
needs every input beside it — the lab's CV and mean, the reference the bias is taken against
(the peer group's consensus mean, or the configured target of the control limit in force),
the TEa that applies at that concentration (two-tier specifications switch from absolute to
percent, QC_SPEC §4) and its source — and the measurement uncertainty (u_Rw = cumulative CV,
u_bias = RMS of the monthly bias over the last 12 months, U = 2·u_c). All arithmetic is the
verified :mod:`qcwx.qcstats.sigma`; this module only gathers the inputs, in scope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import select

from qcwx.catalog.models import Analyte, TestSystem
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc.queries import limits_in_force
from qcwx.peer import compute
from qcwx.peer.filters import Period
from qcwx.peer.queries import UNPUBLISHED, compare_region, level_of
from qcwx.peer.queries.frames import load_specs
from qcwx.qcstats import sigma as qsigma

BASES = {"peer": "比对组均值", "target": "设定靶值"}
TE_FACTOR = 1.65  # QC_SPEC §4 default coverage factor of TE
MU_MONTHS = 12  # months of bias entering u_bias


@dataclass(frozen=True)
class LevelSigma:
    """Sigma and its inputs for one test system × level (None where an input is missing)."""

    ts_id: int
    lab_id: int
    level_id: int
    level_name: str
    analyte_name: str
    unit: str
    decimals: int
    n: int
    mean: float
    cv: float | None
    basis: str
    reference: float | None
    reference_note: str
    bias_pct: float | None
    tea: qsigma.TeaAtConcentration | None
    tea_source: str | None
    te_pct: float | None
    sigma: float | None
    mu: qsigma.MeasurementUncertainty | None
    note: str | None = None

    @property
    def label(self) -> str:
        """Return e.g. ``葡萄糖 水平1`` (the point's name on the decision chart)."""
        return f"{self.analyte_name} {self.level_name}"

    @property
    def grade(self) -> str | None:
        """Return the grade of QC_SPEC §3 from σ (A ≥ 6, B ≥ 4, C ≥ 3, else D)."""
        if self.sigma is None:
            return None
        return next((g for bound, g in compute.GRADE_BOUNDS if self.sigma >= bound), "D")


def check_basis(value: str | None) -> str:
    """Return the bias basis (``peer`` default or ``target``), 400 for anything else."""
    basis = (value or "peer").strip()
    if basis not in BASES:
        raise UserError(f"偏倚基准无效：{basis[:20]}", field="basis")
    return basis


def _compared(region_id: int, period: Period, analyte_ids=None, lot_ids=None,
              by_month: bool = False) -> pd.DataFrame:
    return compare_region(region_id, period, analyte_ids=analyte_ids, lot_ids=lot_ids,
                          by_month=by_month)


def _reference(row: dict, basis: str, limits: dict) -> tuple[float | None, str]:
    """Return the value the bias is taken against and how it was found (Chinese)."""
    if basis == "target":
        limit = limits.get(int(row["qc_level_id"]))
        if limit is None:
            return None, "尚未设定靶值"
        return float(limit.target_mean), f"靶值第 {limit.version} 版（{limit.reason}）"
    if level_of(row.get("group_level")) is None:
        return None, UNPUBLISHED
    return float(row["g_mean"]), f"{row.get('group_label') or ''}（{int(row['n_labs'])} 家实验室）"


def _tea(spec: compute.SpecInfo | None, unit: str, conc: float | None):
    """Return the TEa at ``conc`` through the peer module's unit check, else None."""
    if conc is None or compute.tea_pct_at(spec, unit, conc) is None:
        return None
    return qsigma.tea_at_concentration(spec.tea, conc)


def _bias_pct(mean: float, ref: float | None) -> float | None:
    if ref is None or ref == 0 or not math.isfinite(mean):
        return None
    return 100.0 * (mean - ref) / ref


def _num(value) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def level_sigma(row: dict, ts: TestSystem, basis: str, limits: dict,
                spec: compute.SpecInfo | None, mu_inputs: tuple | None) -> LevelSigma:
    """Build one level's sigma from a compared row (see :func:`system_sigma`)."""
    ref, ref_note = _reference(row, basis, limits)
    mean, cv = float(row["mean"]), _num(row.get("cv"))
    bias = _bias_pct(mean, ref)
    tea = _tea(spec, str(row["unit"]), ref)
    note = None
    te = sigma = None
    if cv is None or cv <= 0:
        note = "结果不足 2 个或 CV 为 0，无法计算"
    elif bias is None:
        note = ref_note
    elif tea is None:
        note = "该项目未配置适用的允许总误差（TEa）"
    else:
        te = qsigma.total_error(bias, cv, TE_FACTOR)
        sigma = qsigma.sigma_metric(tea.pct, bias, cv)
    mu = None
    if mu_inputs is not None and mu_inputs[0] is not None and mu_inputs[1]:
        mu = qsigma.measurement_uncertainty(mu_inputs[0], mu_inputs[1])
    level = next((lv for lv in ts.levels if lv.id == int(row["qc_level_id"])), None)
    return LevelSigma(ts.id, ts.lab_id, int(row["qc_level_id"]), level.name if level else "",
                      ts.analyte.name, str(row["unit"]), ts.analyte.decimals, int(row["n"]), mean,
                      cv, basis, ref, ref_note, bias, tea, spec.source if spec and tea else None,
                      te, sigma, mu, note)


def mu_window(today: date) -> Period:
    """Return the period of the measurement-uncertainty inputs: the last 12 months."""
    first = (today.replace(day=1) - timedelta(days=MU_MONTHS * 31)).replace(day=1)
    return Period("cum", first, today)


def mu_inputs(region_id: int, systems: list[TestSystem], basis: str, today: date,
              limits: dict[int, dict]) -> dict[tuple[int, int], tuple]:
    """Return {(ts, level): (cumulative CV, [monthly bias%…])} for the uncertainty.

    u_Rw is the CV of all in-control results of the window; u_bias the RMS of each month's
    bias against the same reference as σ (months without one are left out).
    """
    window = mu_window(today)
    ids = {ts.id for ts in systems}
    analytes = sorted({ts.analyte_id for ts in systems})
    lots = sorted({ts.qc_lot_id for ts in systems})
    whole = _compared(region_id, window, analytes, lots)
    months = _compared(region_id, window, analytes, lots, by_month=True)
    out: dict[tuple[int, int], tuple] = {}
    for row in whole[whole["ts_id"].isin(ids)].to_dict("records"):
        out[(int(row["ts_id"]), int(row["qc_level_id"]))] = (_num(row.get("cv")), [])
    for row in months[months["ts_id"].isin(ids)].to_dict("records"):
        key = (int(row["ts_id"]), int(row["qc_level_id"]))
        ref, _ = _reference(row, basis, limits.get(key[0], {}))
        bias = _bias_pct(float(row["mean"]), ref)
        if key in out and bias is not None:
            out[key][1].append(bias)
    return out


def systems_sigma(region_id: int, systems: list[TestSystem], period: Period, basis: str,
                  today: date) -> list[LevelSigma]:
    """Return σ with inputs for every level of ``systems`` (all of one region) in ``period``."""
    if not systems:
        return []
    by_id = {ts.id: ts for ts in systems}
    analytes = sorted({ts.analyte_id for ts in systems})
    frame = _compared(region_id, period, analytes, sorted({ts.qc_lot_id for ts in systems}))
    frame = frame[frame["ts_id"].isin(list(by_id))]
    specs = load_specs(analytes)
    limits = {ts.id: limits_in_force(ts, period.end) for ts in systems}
    mus = mu_inputs(region_id, systems, basis, today, limits)
    out = []
    for row in frame.to_dict("records"):
        ts = by_id[int(row["ts_id"])]
        out.append(level_sigma(row, ts, basis, limits[ts.id], specs.get(ts.analyte_id),
                               mus.get((ts.id, int(row["qc_level_id"])))))
    order = {(ts.id, lv.id): (ts.analyte.name, ts.id, lv.level_index)
             for ts in systems for lv in ts.levels}
    return sorted(out, key=lambda r: order.get((r.ts_id, r.level_id), ("", 0, 0)))


SIGMA_BANDS = (("lt3", "< 3σ", None, 3.0), ("3to4", "3–4σ", 3.0, 4.0),
               ("4to5", "4–5σ", 4.0, 5.0), ("5to6", "5–6σ", 5.0, 6.0), ("ge6", "≥ 6σ", 6.0, None))


def band_of(sigma: float) -> str:
    """Return the key of the sigma band holding ``sigma`` (lower bound inclusive)."""
    for key, _, lo, hi in SIGMA_BANDS:
        if (lo is None or sigma >= lo) and (hi is None or sigma < hi):
            return key
    raise ValueError(f"sigma must be a number, got {sigma!r}")


@dataclass(frozen=True)
class AnalyteDistribution:
    """The sigma distribution of one analyte's test system × levels across a region."""

    analyte_id: int
    analyte_name: str
    counts: dict[str, int]
    n: int
    median: float | None
    share_ge4: float | None


def region_distribution(region_id: int, period: Period
                        ) -> tuple[dict[str, int], list[AnalyteDistribution]]:
    """Return the region's sigma counts by band and per analyte (peer-mean bias, §3–§4)."""
    frame = compare_region(region_id, period)
    total = dict.fromkeys((b[0] for b in SIGMA_BANDS), 0)
    rows: list[AnalyteDistribution] = []
    if not len(frame):
        return total, rows
    frame = frame[pd.notna(frame["sigma"])]
    names = dict(db.session.execute(select(Analyte.id, Analyte.name).where(
        Analyte.id.in_([int(a) for a in frame["analyte_id"].unique()]))).all())
    for analyte_id, part in frame.groupby("analyte_id", sort=True):
        values = [float(s) for s in part["sigma"]]
        counts = dict.fromkeys((b[0] for b in SIGMA_BANDS), 0)
        for v in values:
            counts[band_of(v)] += 1
            total[band_of(v)] += 1
        series = pd.Series(values)
        name = str(names.get(int(analyte_id), analyte_id))
        rows.append(AnalyteDistribution(int(analyte_id), name,
                                        counts, len(values), float(series.median()),
                                        float((series >= 4).mean())))
    return total, sorted(rows, key=lambda r: r.analyte_name)
