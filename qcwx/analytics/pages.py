"""Page data of the sigma pages: what each view renders, assembled from the queries.

Kept apart from the views so they stay thin (parse, check, call one function, render) and
from :mod:`.sigma` so the statistics gathering stays free of chart building.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from qcwx import charts
from qcwx.analytics import design, periods
from qcwx.analytics.sigma import SIGMA_BANDS, LevelSigma, region_distribution, systems_sigma
from qcwx.catalog.models import TestSystem
from qcwx.charts import sigma as sigma_charts
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Hospital, Lab
from qcwx.peer.filters import Period


@dataclass(frozen=True)
class SystemPage:
    """One test system's σ page: its levels with inputs and the advisor."""

    ts: TestSystem
    levels: list[LevelSigma]
    advice: design.Advice


def system_page(ts: TestSystem, period: Period, basis: str, today: date) -> SystemPage:
    """Return the σ rows of ``ts`` and the sigma-rules advice from them."""
    levels = systems_sigma(ts.lab.hospital.region_id, [ts], period, basis, today)
    return SystemPage(ts, levels, design.advise(ts, levels))


@dataclass(frozen=True)
class LabPage:
    """One lab's σ table (every test system × level) and its normalised decision chart."""

    lab: Lab
    rows: list[LevelSigma]
    chart: object | None


def lab_page(lab: Lab, period: Period, basis: str, today: date) -> LabPage:
    """Return every active test system's σ of ``lab`` and the normalised decision chart."""
    systems = lab_systems(lab)
    rows = systems_sigma(lab.hospital.region_id, systems, period, basis, today)
    points = [{"code": r.label, "bias_pct": 100 * r.bias_pct / r.tea.pct,
               "cv_pct": 100 * r.cv / r.tea.pct, "highlight": False}
              for r in rows if r.sigma is not None]
    chart = None
    if points:
        chart = charts.render(charts.bias_cv(points, 100.0, chart_id="an-lab-decision",
                                             title="归一化方法决定图（TEa = 100%）"))
    return LabPage(lab, rows, chart)


def region_page(region_id: int, period: Period):
    """Return the region's sigma counts, the per-analyte table and the band chart."""
    total, per_analyte = region_distribution(region_id, period)
    chart = None
    if sum(total.values()):
        chart = charts.render(sigma_charts.sigma_bands(
            [(label, total[key]) for key, label, _, _ in SIGMA_BANDS], chart_id="an-region-bands",
            title="全区 σ 分布（检测系统 × 水平）"))
    return total, per_analyte, chart


@dataclass(frozen=True)
class PeriodsPage:
    """The before/after page: its scope, the two spans, rows and summaries."""

    scope: str
    title: str
    before: periods.Span
    after: periods.Span
    rows: list[periods.RowChange]
    groups: list[periods.GroupChange]
    systems: dict[int, TestSystem]
    levels: dict[int, str]


def periods_page(scope: str, title: str, region_id: int, systems: list[TestSystem],
                 before: periods.Span, after: periods.Span, labs: dict[int, str]) -> PeriodsPage:
    """Compare ``systems`` over the two spans; summarise per lab (region scope) and overall."""
    rows = periods.compare_spans(region_id, [ts.id for ts in systems], before, after)
    groups = []
    if scope == "region":
        for lab_id, name in labs.items():
            mine = [r for r in rows if r.lab_id == lab_id]
            if mine:
                groups.append(periods.group_change(name, mine))
    overall = periods.group_change(title, rows)
    levels = {lv.id: lv.name for ts in systems for lv in ts.levels}
    return PeriodsPage(scope, title, before, after, rows if scope != "region" else [],
                       [overall, *groups], {ts.id: ts for ts in systems}, levels)


def region_systems(region_id: int) -> list[TestSystem]:
    """Return the active test systems of the labs of a region and the regions below it."""
    return list(db.session.scalars(select(TestSystem).join(Lab).join(Hospital).where(
        Hospital.region_id.in_(scopes.region_subtree(region_id)), TestSystem.active)
        .order_by(TestSystem.id)))


def lab_systems(lab: Lab) -> list[TestSystem]:
    """Return the active test systems of a lab."""
    return list(db.session.scalars(select(TestSystem).where(
        TestSystem.lab_id == lab.id, TestSystem.active).order_by(TestSystem.id)))
