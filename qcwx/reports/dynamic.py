"""The dynamic QC report (动态质控报告): one lab's internal QC over a period, as plain data.

One section per test system: a Levey–Jennings chart per level (the chart page's own code
path, :func:`qcwx.iqc.reports.lj_level_charts`), a summary table per level for the period
and cumulatively for the QC lot, and the out-of-control records of the period.

Definitions (QC_SPEC §2, §3 "Per lab and period", §7):

* in-control rate = 1 − rejected runs / judged runs; runs not yet judged (no target yet,
  ``pending``) count neither way;
* n, mean, SD (ddof = 1) and CV% = 100·SD/|mean| of the current (non-superseded) results of
  judged runs that were not rejected (warnings count as in control);
* rules fired: per level, the runs whose active violations involve that level;
* 批号累积: every result of the lot and level up to the period's end (a test system's levels
  belong to its QC lot, so grouping by level is grouping by lot and level).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timezone

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from qcwx import charts
from qcwx.catalog.models import QcLot, TestSystem
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc.actions import ACTION_STATUS
from qcwx.iqc.models import CAUSE_CATEGORIES, CorrectiveAction, QcResult, QcRun, Violation
from qcwx.iqc.reports import lj_level_charts
from qcwx.orgs.models import Lab
from qcwx.qcstats import westgard
from qcwx.qcstats.limits import cv_percent
from qcwx.reports.document import Chart, Column, Figure, Report, Section, Table
from qcwx.reports.periods import ReportPeriod
from qcwx.timeutil import to_local, utcnow

__all__ = ["LevelStats", "Result", "build_dynamic", "level_stats", "results_until"]

#: In-control rate below which a figure or a summary row is flagged (QC_SPEC §7: 95 %).
IN_CONTROL_TARGET = 0.95
#: Longest share-card text (the WeChat card shows about this much).
DESCRIPTION_MAX = 120
CUMULATIVE = "批号累积"
ACTION_TONES = {"open": "bad", "submitted": "warn", "signed": "ok"}
FOOTNOTES = (
    "在控率 = 1 − 失控批数 / 已判定批数；未设靶值的待评价批次既不算在控也不算失控。",
    "n、均值、SD、CV% 仅统计已判定且未失控批次的当前结果（更正过的结果取最新版本）；"
    "CV% = SD / |均值| × 100。",
    "批号累积：该质控批号、该水平自首个结果至本报告周期末的全部结果。",
    "触发规则按水平统计：某批触发的规则涉及该水平即计 1 次（含警告规则）。",
    "时间均为北京时间。",
)
_SHEET_BAD = re.compile(r"[\[\]:*?/\\']")


@dataclass(frozen=True)
class LevelStats:
    """One level's figures over a set of results (a period, or the lot cumulatively)."""

    n: int
    mean: float | None
    sd: float | None
    cv: float | None
    judged: int
    rejected: int
    rules: dict[str, int]

    @property
    def rate(self) -> float | None:
        """Return the in-control rate, 1 − rejected / judged (None with nothing judged)."""
        return 1.0 - self.rejected / self.judged if self.judged else None

    @property
    def rules_text(self) -> str | None:
        """Return the rules fired as ``1-3s×1, 2-2s×2`` (rule-table order), None if none."""
        parts = [f"{code}×{self.rules[code]}" for code in westgard.RULE_CODES
                 if self.rules.get(code)]
        return ", ".join(parts) or None


@dataclass(frozen=True)
class Result:
    """One current result with its run's verdict and the rules fired involving its level."""

    run_id: int
    run_date: date
    status: str
    level_id: int
    value: float
    rules: tuple[str, ...]


def results_until(ts_ids: Sequence[int], end: date) -> dict[int, list[Result]]:
    """Return per test system its current results up to ``end`` in run order (two queries)."""
    if not ts_ids:
        return {}
    rows = db.session.execute(
        select(QcRun.test_system_id, QcRun.id, QcRun.run_date, QcRun.status,
               QcResult.qc_level_id, QcResult.value)
        .join(QcResult, QcResult.run_id == QcRun.id)
        .where(QcRun.test_system_id.in_(ts_ids), QcRun.run_date <= end, QcResult.is_current)
        .order_by(QcRun.test_system_id, QcRun.run_date, QcRun.run_no)).all()
    fired: dict[tuple[int, int], list[str]] = {}
    for run_id, code, levels in db.session.execute(
            select(Violation.run_id, Violation.rule_code, Violation.levels)
            .join(QcRun, QcRun.id == Violation.run_id)
            .where(QcRun.test_system_id.in_(ts_ids), QcRun.run_date <= end, Violation.active)):
        for level_id in levels or ():
            fired.setdefault((run_id, int(level_id)), []).append(code)
    out: dict[int, list[Result]] = {}
    for ts_id, run_id, run_date, status, level_id, value in rows:
        out.setdefault(ts_id, []).append(Result(
            run_id, run_date, status, level_id, float(value),
            tuple(fired.get((run_id, level_id), ()))))
    return out


def level_stats(points: Sequence[Result]) -> LevelStats:
    """Summarise one level's current results (one per run) as QC_SPEC §3 "per lab and period".

    mean = Σx/n, SD = √(Σ(x − mean)²/(n − 1)), CV% = 100·SD/|mean| over results of judged,
    not rejected runs; in-control rate = 1 − rejected/judged runs (pending runs excluded).
    """
    judged = [p for p in points if p.status != "pending"]
    values = np.array([p.value for p in judged if p.status != "reject"], dtype=np.float64)
    mean = float(values.mean()) if values.size else None
    sd = float(values.std(ddof=1)) if values.size > 1 else None
    cv = cv_percent(mean, sd) if sd is not None else float("nan")
    return LevelStats(
        n=int(values.size), mean=mean, sd=sd, cv=float(cv) if np.isfinite(cv) else None,
        judged=len(judged), rejected=sum(p.status == "reject" for p in judged),
        rules=dict(Counter(code for p in points for code in p.rules)))


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class _Part:
    """One test system's section and the counts the headline adds up."""

    section: Section
    judged: int
    rejected: int
    rejected_signed: int
    open_records: int


def build_dynamic(lab: Lab, ts_ids: list[int] | None, period: ReportPeriod,
                  today: date) -> Report:
    """Build the dynamic QC report of ``lab`` (already access-checked) for ``period``.

    ``ts_ids`` None covers every active test system of the lab; given ids must all be the
    lab's (else :class:`UserError` on field ``ts``). ``params`` holds the ids only: the
    caller adds the period as the user chose it.
    """
    systems = _systems(lab, ts_ids)
    ids = [ts.id for ts in systems]
    history, records = results_until(ids, period.end), _records(ids, period)
    parts = [_part(lab, ts, period, today, history.get(ts.id, []), records.get(ts.id, []))
             for ts in systems]
    judged = sum(p.judged for p in parts)
    rejected = sum(p.rejected for p in parts)
    signed = sum(p.rejected_signed for p in parts)
    open_records = sum(p.open_records for p in parts)
    rate = 1.0 - rejected / judged if judged else None
    description = (f"{len(systems)} 个检测系统 · 在控率 {_pct(rate)} · "
                   f"失控 {rejected} 次（已处理 {signed}）")
    return Report(
        kind="dynamic", lab_id=lab.id, title=f"{lab.full_name} · {period.label} 动态质控报告",
        period_label=period.label, description=description[:DESCRIPTION_MAX],
        generated_at=utcnow().replace(tzinfo=timezone.utc).isoformat(timespec="seconds"),
        params={"ts_ids": None if ts_ids is None else sorted(ts.id for ts in systems)},
        figures=(
            Figure("检测系统", str(len(systems))),
            Figure("判定批数", str(judged), hint="不含未设靶值的待评价批次"),
            Figure("在控率", _pct(rate), tone=_rate_tone(rate), hint="1 − 失控批数 / 判定批数"),
            Figure("失控批数", str(rejected), tone="bad" if rejected else "ok",
                   hint=f"已签字处理 {signed} 批"),
            Figure("未关闭记录", str(open_records), tone="bad" if open_records else "ok",
                   hint="本周期失控处理记录中尚未审核签字的"),
        ),
        sections=tuple(p.section for p in parts), footnotes=FOOTNOTES)


def _ids(ts_ids) -> list[int]:
    try:
        ids = sorted({int(i) for i in ts_ids})
    except (TypeError, ValueError):
        raise UserError("检测系统编号无效", field="ts") from None
    if not ids:
        raise UserError("请至少选择一个检测系统", field="ts")
    return ids


def _systems(lab: Lab, ts_ids) -> list[TestSystem]:
    """Return the lab's test systems (all active ones, or exactly ``ts_ids``) in page order."""
    stmt = (select(TestSystem).where(TestSystem.lab_id == lab.id)
            .options(joinedload(TestSystem.analyte), joinedload(TestSystem.instrument),
                     joinedload(TestSystem.qc_lot).joinedload(QcLot.material),
                     selectinload(TestSystem.levels))
            .order_by(TestSystem.analyte_id, TestSystem.id))
    if ts_ids is None:
        return list(db.session.scalars(stmt.where(TestSystem.active)).unique())
    ids = _ids(ts_ids)
    found = list(db.session.scalars(stmt.where(TestSystem.id.in_(ids))).unique())
    if len(found) != len(ids):
        raise UserError("所选检测系统不属于该实验室", field="ts")
    return found


@dataclass(frozen=True)
class _Record:
    action: CorrectiveAction
    run: QcRun
    rules: tuple[str, ...]


def _records(ts_ids: list[int], period: ReportPeriod) -> dict[int, list[_Record]]:
    """Return the out-of-control records of the period's runs per test system (two queries)."""
    if not ts_ids:
        return {}
    rows = db.session.execute(
        select(CorrectiveAction, QcRun).join(QcRun, QcRun.id == CorrectiveAction.run_id)
        .where(QcRun.test_system_id.in_(ts_ids), QcRun.run_date >= period.start,
               QcRun.run_date <= period.end)
        .options(joinedload(CorrectiveAction.signed_by))
        .order_by(QcRun.run_date, QcRun.run_no, CorrectiveAction.id)).all()
    fired: dict[int, set[str]] = {}
    if rows:
        for run_id, code in db.session.execute(
                select(Violation.run_id, Violation.rule_code).where(
                    Violation.run_id.in_([run.id for _, run in rows]), Violation.active)):
            fired.setdefault(run_id, set()).add(code)
    order = {code: i for i, code in enumerate(westgard.RULE_CODES)}
    out: dict[int, list[_Record]] = {}
    for action, run in rows:
        rules = tuple(sorted(fired.get(run.id, ()), key=lambda c: order.get(c, len(order))))
        out.setdefault(run.test_system_id, []).append(_Record(action, run, rules))
    return out


def _part(lab: Lab, ts: TestSystem, period: ReportPeriod, today: date,
          history: list[Result], records: list[_Record]) -> _Part:
    """Build one test system's section and its counts."""
    points = [p for p in history if p.run_date >= period.start]
    runs = {p.run_id: p.status for p in points}
    judged = sum(status != "pending" for status in runs.values())
    rejected = sum(status == "reject" for status in runs.values())
    signed = sum(r.run.status == "reject" and r.action.status == "signed" for r in records)
    rate = 1.0 - rejected / judged if judged else None
    chart_list, notes = _charts(ts, period)
    section = Section(
        title=ts_title(ts), anchor=f"ts-{ts.id}",
        note="；".join([_ts_note(ts), *notes]),
        figures=(Figure("判定批数", str(judged)),
                 Figure("在控率", _pct(rate), tone=_rate_tone(rate)),
                 Figure("失控", f"{rejected} 次", tone="bad" if rejected else "ok",
                        hint=f"已处理 {signed}")),
        charts=tuple(chart_list),
        tables=(_summary_table(ts, period, today, points, history),
                _records_table(lab, ts, records)))
    return _Part(section, judged, rejected, signed,
                 sum(r.action.status != "signed" for r in records))


def ts_title(ts: TestSystem) -> str:
    """Return a test system as the IQC pages name it: analyte, instrument, QC lot."""
    return (f"{ts.analyte.name} · {ts.instrument.maker} {ts.instrument.model}"
            f" · 批号 {ts.qc_lot.lot_number}")


def _ts_note(ts: TestSystem) -> str:
    serial = f"（{ts.instrument.serial}）" if ts.instrument.serial else ""
    return (f"{ts.analyte.code} · {ts.unit} · {ts.instrument.maker} {ts.instrument.model}"
            f"{serial} · {ts.qc_lot.material.name} 批号 {ts.qc_lot.lot_number}")


def _charts(ts: TestSystem, period: ReportPeriod) -> tuple[list[Chart], list[str]]:
    """Return the LJ chart of each level with data, and a note for each level without."""
    out, notes = [], []
    for item in lj_level_charts(ts, period.start, period.end):
        if not item.points:
            notes.append(f"{item.level.name}：本周期无质控结果")
        elif item.chart is None:
            notes.append(f"{item.level.name}：未设定靶值，无法绘制质控图")
        else:
            out.append(Chart(chart_id=f"lj-{ts.id}-{item.level.id}", title=item.heading,
                             options=charts.options_dict(item.chart), height="340px"))
    return out, notes


def _period_name(period: ReportPeriod, today: date) -> str:
    if period.month and period.month == today.strftime("%Y-%m"):
        return "本月"
    return period.label if period.month else "所选周期"


def _summary_table(ts: TestSystem, period: ReportPeriod, today: date,
                   points: list[Result], history: list[Result]) -> Table:
    """Return per level the period's and the lot-cumulative n, mean, SD, CV%, rate, rules."""
    dec = ts.analyte.decimals
    name = _period_name(period, today)
    rows, tones = [], []
    for lv in ts.levels:
        for scope, chosen in ((name, points), (CUMULATIVE, history)):
            s = level_stats([p for p in chosen if p.level_id == lv.id])
            rows.append((lv.name, scope, s.n, s.mean, s.sd, s.cv, s.judged, s.rejected,
                         None if s.rate is None else 100.0 * s.rate, s.rules_text))
            tones.append("muted" if not s.judged else _rate_tone(s.rate))
    return Table(
        key=_sheet_key(ts, "统计"), title=f"{ts_title(ts)} 质控统计",
        columns=(Column("水平"), Column("范围"), Column("n", 0),
                 Column("均值", dec, ts.unit), Column("SD", dec + 1, ts.unit), Column("CV", 2, "%"),
                 Column("判定批数", 0), Column("失控批数", 0), Column("在控率", 1, "%"),
                 Column("触发规则")),
        rows=tuple(rows), tones=tuple(tones),
        note="均值、SD、CV% 为已判定且未失控批次的当前结果；在控率不含待评价批次")


def _records_table(lab: Lab, ts: TestSystem, records: list[_Record]) -> Table:
    """Return the out-of-control records of the period (open: bad, awaiting: warn, signed: ok)."""
    rows = []
    for r in records:
        a = r.action
        signed_at = to_local(a.signed_at, lab.timezone or "Asia/Shanghai")
        rows.append((
            r.run.run_date.isoformat(), r.run.run_no, ", ".join(r.rules) or None,
            ACTION_STATUS.get(a.status, a.status), _cause(a), a.action_taken or None,
            a.signed_by.display_name if a.signed_by is not None else None,
            signed_at.strftime("%Y-%m-%d %H:%M") if signed_at is not None else None))
    return Table(
        key=_sheet_key(ts, "失控"), title=f"{ts_title(ts)} 失控处理记录",
        columns=(Column("日期"), Column("批次", 0), Column("触发规则"), Column("状态"),
                 Column("原因"), Column("纠正措施"), Column("签字人"), Column("签字时间")),
        rows=tuple(rows), tones=tuple(ACTION_TONES.get(r.action.status, "") for r in records),
        note="" if records else "本周期无失控处理记录")


def _cause(action: CorrectiveAction) -> str | None:
    category = CAUSE_CATEGORIES.get(action.cause_category or "")
    parts = [p for p in (category, action.description) if p]
    return "：".join(parts) or None


def _sheet_key(ts: TestSystem, suffix: str) -> str:
    """Return an Excel sheet name (≤ 31 characters, unique per test system and table)."""
    name = _SHEET_BAD.sub("", ts.analyte.name)[:12]
    return f"{name}-{ts.id}-{suffix}"[:31]


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{100.0 * rate:.1f}%"


def _rate_tone(rate: float | None) -> str:
    if rate is None:
        return "muted"
    return "ok" if rate >= IN_CONTROL_TARGET else "warn"
