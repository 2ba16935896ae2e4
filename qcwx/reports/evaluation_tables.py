"""The evaluation report's tables: the peer comparison per analyte and the §7 criteria.

Cells keep numbers as numbers (the unrounded float64 of the statistics); the column's
``decimals`` decide what the page and the Excel sheet show: the analyte's decimals for
concentrations (one more for SDs), 2 for SDI, CVR, bias%, CV%, σ and TEa.
"""

from __future__ import annotations

import math

from qcwx.catalog.models import Analyte
from qcwx.peer import compute
from qcwx.peer.queries import SystemResult
from qcwx.qcstats import conclusions
from qcwx.reports.document import Column, Table
from qcwx.reports.evaluation_data import EvaluationData

UNPUBLISHED_LABEL = "未发布"
_SDI_TONES = {"acceptable": "ok", "acceptable_investigate": "warn", "marginal": "warn",
              "unacceptable": "bad"}
_CVR_TONES = {"good": "ok", "acceptable": "ok", "investigate": "warn", "unacceptable": "bad"}
_TONE_ORDER = ("bad", "warn", "ok", "")


def number(value) -> float | None:
    """Return a finite float, None for missing or non-finite values (never NaN in a cell)."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def count(value) -> int | None:
    """Return an int count, None when missing."""
    return int(value) if value is not None else None


def row_tone(row: SystemResult) -> str:
    """Return a row's tone: the worse of its SDI and CVR bands; ``muted`` when unpublished."""
    if not row.publishable:
        return "muted"
    tones = []
    if row.sdi_band is not None:
        tones.append(_SDI_TONES[row.sdi_band.code])
    if row.cvr_band is not None:
        tones.append(_CVR_TONES[row.cvr_band.code])
    return next((t for t in _TONE_ORDER if t in tones), "")


def nccl_passed(row: SystemResult) -> bool | None:
    """Return the NCCL-style verdict of a published row (None when it cannot be judged)."""
    if not row.publishable:
        return None
    spec = compute.SpecInfo(None, row.allowable_cv, row.allowable_bias, row.tea_source or "")
    verdict = compute.nccl({"cv": row.cv, "bias_pct": row.bias_pct, "tea_pct": row.tea_pct},
                           spec)
    return None if verdict is None else bool(verdict.passed)


def rank_text(row: SystemResult) -> str | None:
    """Return ``第 k / N`` (rank of |bias| in the group), None without a rank."""
    if row.bias_rank is None or not row.rank_size:
        return None
    return f"第 {row.bias_rank} / {row.rank_size}"


def comparison_columns(analyte: Analyte, unit: str) -> tuple[Column, ...]:
    """Return the columns of one analyte's comparison table."""
    dec = analyte.decimals
    return (
        Column("水平"), Column("比对组"), Column("组内实验室数", 0),
        Column("组均值", dec, unit), Column("组SD", dec + 1, unit), Column("本室结果数", 0),
        Column("本室均值", dec, unit), Column("本室CV", 2, "%"), Column("SDI", 2),
        Column("CVR", 2), Column("偏倚", 2, "%"), Column("偏倚排名"), Column("NCCL 通过"),
        Column("σ", 2), Column("等级"), Column("TEa", 2, "%"), Column("TEa 来源"),
        Column("允许CV", 2, "%"), Column("允许偏倚", 2, "%"))


def _level_name(data: EvaluationData, row: SystemResult, several: bool) -> str:
    level = data.levels.get(row.qc_level_id)
    name = level.name if level is not None else str(row.qc_level_id)
    if several:
        ts = next((t for t in data.systems if t.id == row.ts_id), None)
        return f"{ts.instrument.model} {name}" if ts is not None else name
    return name


def comparison_row(row: SystemResult, level_name: str) -> tuple:
    """Return one comparison row (typed cells, in :func:`comparison_columns` order)."""
    published = row.publishable
    return (level_name, row.level_label if published else UNPUBLISHED_LABEL,
            count(row.n_labs), number(row.g_mean), number(row.g_sd), count(row.n),
            number(row.mean), number(row.cv), number(row.sdi), number(row.cvr),
            number(row.bias_pct), rank_text(row), nccl_passed(row), number(row.sigma),
            row.grade, number(row.tea_pct), row.tea_source, number(row.allowable_cv),
            number(row.allowable_bias))


def comparison_table(data: EvaluationData, analyte: Analyte) -> Table | None:
    """Return one analyte's peer-comparison table (a row per system × level), None if empty."""
    rows = data.rows_of(analyte.id)
    if not rows:
        return None
    several = len({r.ts_id for r in rows}) > 1
    names = [_level_name(data, r, several) for r in rows]
    groups = [f"{n}：{r.level_label}（{r.group_label}）" if r.publishable and r.group_label
              else f"{n}：{UNPUBLISHED_LABEL}" for n, r in zip(names, rows, strict=True)]
    return Table(
        key=f"比对 {analyte.code}", title=f"{analyte.name}（{rows[0].unit}）",
        columns=comparison_columns(analyte, rows[0].unit),
        rows=tuple(comparison_row(r, n) for r, n in zip(rows, names, strict=True)),
        tones=tuple(row_tone(r) for r in rows), note="比对组：" + "；".join(groups))


def comparison_tables(data: EvaluationData) -> tuple[Table, ...]:
    """Return the comparison table of every analyte with rows this month."""
    tables = (comparison_table(data, a) for a in data.analytes)
    return tuple(t for t in tables if t is not None)


# ------------------------------------------------------------------ the criteria table

CRITERIA_COLUMNS = (
    Column("项目"), Column("填报率", 1, "%"), Column("在控率", 1, "%"),
    Column("NCCL 通过月数"), Column("最新月等级"), Column("结论"), Column("未达标项"))


def unmet_text(rec: dict) -> str:
    """Return the failed and unassessed criteria of a recommendation in Chinese."""
    labels = conclusions.CRITERION_LABELS
    parts = [labels[c] for c in rec["failed"]]
    parts += [f"{labels[c]}（无法评价）" for c in rec["unassessed"]]
    return "、".join(parts) if parts else "—"


def criteria_table(data: EvaluationData) -> Table:
    """Return the §7 criteria of every analyte over the window, with the verdict."""
    rows, tones = [], []
    for analyte in data.analytes:
        rec = data.recommendations.get(analyte.id)
        if rec is None:
            continue
        rows.append((analyte.name, number(rec["submission_pct"]), number(rec["in_control_pct"]),
                     f"{rec['nccl_months_passed']}/{rec['nccl_months']}", rec["grade"],
                     rec["verdict"], unmet_text(rec)))
        tones.append(rec["tone"])
    first, last = data.window[0], data.window[-1]
    c = data.criteria
    return Table(
        key="互认评价", title=(f"互认评价指标（{conclusions.month_text(first)}～"
                           f"{conclusions.month_text(last)}）"),
        columns=CRITERIA_COLUMNS, rows=tuple(rows), tones=tuple(tones),
        note=(f"推荐条件：填报率 ≥ {c.min_submission_pct:g}%，在控率 ≥ {c.min_in_control_pct:g}%，"
              f"窗口内每月每个水平 NCCL 通过，最新月等级为 {'或'.join(c.passing_grades)}。"))
