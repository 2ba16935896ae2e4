"""Data-integrity signals of a region's QC series, for the centre (and experts).

Each test system × level over the last ``days`` is checked by :mod:`qcwx.qcstats.integrity`
against the honest model; the references come from the data itself: the median SD of the
other labs on the same QC lot and level (the peer), the series' own SD before the window
(its history) and the target SD in force (what honest scatter should be).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from qcwx.catalog.models import QcLevel, TestSystem
from qcwx.extensions import db
from qcwx.insights import queries
from qcwx.orgs.models import User
from qcwx.orgs.scopes import lab_label
from qcwx.qcstats import integrity as ig
from qcwx.timeutil import DEFAULT_TZ

WINDOWS = (30, 60, 90)
HISTORY_DAYS = 90  # the series' own history: up to this many days before the window
TITLES = {"sd_low": "离散度异常偏小", "identical_run": "连续相同结果",
          "digit_preference": "末位数字偏好", "on_target": "结果总落在靶值",
          "copied": "疑似抄袭其他实验室", "backdated": "集中补录历史结果"}


@dataclass
class SeriesFlags:
    """The raised flags of one test system × level, strongest first."""

    ts: TestSystem
    level: QcLevel
    lab_name: str
    flags: list[tuple[str, ig.Flag, str]] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Return the strongest flag's score."""
        return max((f.score for _, f, _ in self.flags), default=0.0)


def _resolution(texts) -> float:
    decimals = max((len(t.split(".", 1)[1]) if "." in t else 0 for t in texts), default=0)
    return 10.0 ** -decimals


def _p(p: float) -> str:
    return "—" if math.isnan(p) else (f"{p:.1e}" if p < 0.001 else f"{p:.3f}")


def report(actor: User, region_id: int, today: date, days: int = 30) -> list[SeriesFlags]:
    """Return the flagged series of the region in the actor's scope, strongest first.

    The window is the ``days`` up to the region's latest result on or before ``today``.
    """
    every = queries.region_systems(region_id)
    scoped = {ts.id for ts in queries.scoped_region_systems(actor, region_id)}
    frame = queries.results([ts.id for ts in every],
                            today - timedelta(days=days + HISTORY_DAYS), detail=True)
    frame = frame[frame["run_date"] <= today].copy()
    if frame.empty:
        return []
    start = frame["run_date"].max() - timedelta(days=days - 1)
    frame["entered_local"] = (pd.to_datetime(frame["entered_at"]).dt.tz_localize("UTC")
                              .dt.tz_convert(DEFAULT_TZ).dt.tz_localize(None)
                              .dt.to_pydatetime())
    window = frame[frame["run_date"] >= start]
    systems = {ts.id: ts for ts in every}
    analyte_of = {ts.id: ts.analyte_id for ts in every}
    levels = {lv.id: lv for lv in db.session.query(QcLevel).filter(
        QcLevel.id.in_(window["level_id"].unique().tolist()))} if len(window) else {}
    sds = window.groupby(["ts_id", "level_id"])["value"].std(ddof=1)
    # a QC level belongs to one lot: peers are the other series on it of the same analyte
    by_level: dict[int, list[tuple[int, float]]] = {}
    for (t, lv), sd in sds.items():
        if not np.isnan(sd):
            by_level.setdefault(lv, []).append((t, sd))
    before = frame[frame["run_date"] < start].groupby(["ts_id", "level_id"])["value"]
    hist_sd, hist_n = before.std(ddof=1), before.size()
    out: dict[tuple[int, int], SeriesFlags] = {}

    def entry(key):
        if key not in out:
            ts = systems[key[0]]
            out[key] = SeriesFlags(ts, levels[key[1]], lab_label(actor, ts.lab))
        return out[key]

    cols = {c: window[c].to_numpy() for c in (
        "run_date", "value", "value_text", "target", "target_sd", "entered_local")}
    for (ts_id, level_id), rows in window.groupby(["ts_id", "level_id"]).indices.items():
        part = {c: v[rows] for c, v in cols.items()}
        if ts_id not in scoped:
            continue
        history = (float(hist_sd.get((ts_id, level_id), np.nan)),
                   int(hist_n.get((ts_id, level_id), 0)))
        peer = [sd for t, sd in by_level.get(level_id, [])
                if t != ts_id and analyte_of[t] == analyte_of[ts_id]]
        for code, flag, text in _series_flags(part, history, peer):
            entry((ts_id, level_id)).flags.append((code, flag, text))
    wide = window.groupby(["level_id", "run_date", "ts_id"])["value"].first().unstack("ts_id")
    for level_id in wide.index.get_level_values(0).unique():
        block = wide.loc[level_id].dropna(axis=1, how="all")
        for analyte in {analyte_of[t] for t in block.columns}:
            matrix = block[[t for t in block.columns if analyte_of[t] == analyte]]
            for pair in ig.copied_pairs(matrix):
                for me, other in ((pair.a, pair.b), (pair.b, pair.a)):
                    if me in scoped:
                        entry((me, level_id)).flags.append(
                            ("copied", pair.flag, _copy_text(pair, systems[other], actor)))
    found = [s for s in out.values() if s.flags]
    for s in found:
        s.flags.sort(key=lambda f: -f[1].score)
    return sorted(found, key=lambda s: (-s.score, s.ts.id, s.level.level_index))


def _copy_text(pair: ig.CopyPair, other: TestSystem, actor: User) -> str:
    ev = pair.flag.evidence
    return (f"与 {lab_label(actor, other.lab)} 的结果在共同的 {ev['n']} 天中 "
            f"{ev['identical']} 天完全相同；逐日变化相关系数 r = {ev['r']:.2f}")


def _series_flags(part: dict[str, np.ndarray], history: tuple[float, int], peer: list[float]):
    """Yield (code, flag, Chinese evidence) for one series' raised flags.

    ``part`` holds the series' columns as arrays in date order; ``history`` is its (SD, n)
    before the window; ``peer`` the other labs' SDs on the same QC level.
    """
    texts = [str(t) for t in part["value_text"]]
    values = part["value"].astype(float)
    res = _resolution(texts)
    judged = ~np.isnan(part["target_sd"].astype(float))
    # one value has no sample SD: unknown (NaN), said without numpy's warning
    sigma = (float(np.median(part["target_sd"][judged])) if judged.any()
             else float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"))
    if len(peer) >= 3:
        ref = float(np.median(peer))
        f = ig.sd_too_low(values, ref, "peer")
        hist = ig.sd_too_low(values, history[0], "history") \
            if history[1] >= ig.MIN_N and history[0] > 0 else None
        if f.raised and (hist is None or hist.raised):
            score = f.score if hist is None else min(f.score, hist.score)
            text = (f"SD {f.evidence['sd']:.4g}，同组实验室 SD 中位数 {ref:.4g}"
                    f"（仅其 {f.evidence['ratio']:.0%}，p = {_p(f.p_value)}）")
            text += (f"；本实验室既往 SD {hist.evidence['reference_sd']:.4g}" if hist
                     else "；无既往数据可比")
            yield "sd_low", ig.Flag("sd_low", f.p_value, score, f.evidence), text
    f = ig.identical_runs(texts, sigma, res)
    if f.raised:
        yield "identical_run", f, (f"连续 {f.evidence['length']} 天结果完全相同"
                                   f"（{f.evidence['value']}），随机出现的概率约 {_p(f.p_value)}")
    f = ig.digit_preference(texts, sigma, res)
    if f.raised:
        yield "digit_preference", f, (
            f"末位数字分布不均（χ² = {f.evidence['chi2']:.1f}，p = {_p(f.p_value)}），"
            f"数字 {f.evidence['top_digit']} 占 {f.evidence['top_share']:.0%}（应约 10%）")
    if judged.any():
        f = ig.on_target(values[judged], part["target"][judged], part["target_sd"][judged], res)
        if f.raised:
            yield "on_target", f, (
                f"{f.evidence['hits']}/{f.evidence['n']} 个结果恰好等于靶值"
                f"（{f.evidence['share']:.0%}，真实数据约 {f.evidence['expected_share']:.0%}）")
    f = ig.backdated_batches(list(part["run_date"]), list(part["entered_local"]))
    if f.raised:
        yield "backdated", f, (f"{f.evidence['entered']:%Y-%m-%d %H:%M} 前后一次性补录了 "
                               f"{f.evidence['days']} 天（{f.evidence['first']}～"
                               f"{f.evidence['last']}）的 {f.evidence['results']} 个结果")
