"""Before/after comparison of two periods per test system × level, lab and region.

Why: the deck promises "通过软件应用前后数据对比客观反映质量改善效果" — before and after joining,
a corrective action or a reagent lot change. Each period is compared with the peer group of
that period (the same live statistics as the peer pages, :func:`compare_region`), so CV,
bias, SDI, σ, NCCL pass and grade mean the same as everywhere else. The change of each test
system × level comes with its significance from the summary statistics: the F-test of the
two variances and Welch's t of the two means (:mod:`.significance`), each with p and n.
A lab or region line summarises its rows (median CV and σ, mean |bias| and |SDI|, pass
rate = share of rows passing NCCL, A/B share) and tests the σ distributions with Welch's t.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from qcwx.analytics import significance
from qcwx.errors import UserError
from qcwx.iqc.validation import check_plausible_date
from qcwx.peer import compute
from qcwx.peer.filters import Period
from qcwx.peer.queries import compare_region, level_of
from qcwx.peer.queries.frames import load_specs

DEFAULT_DAYS = 30
MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class Span:
    """One compared period: its dates (lab-local, inclusive)."""

    start: date
    end: date

    @property
    def label(self) -> str:
        """Return ``2026-10-01～2026-10-31``."""
        return f"{self.start:%Y-%m-%d}～{self.end:%Y-%m-%d}"

    def period(self) -> Period:
        """Return the peer-statistics period of this span."""
        return Period("range", self.start, self.end)


def parse_date(text: str | None, field: str, default: date) -> date:
    """Return a YYYY-MM-DD argument (``default`` when empty), 400 naming ``field``."""
    if not text:
        return default
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"日期“{text[:20]}”格式无效，应为 YYYY-MM-DD", field=field) from None
    return check_plausible_date(day, field)  # 0001-01-01 minus the default 30 days: 500


def parse_spans(args, today: date) -> tuple[Span, Span]:
    """Return (before, after) from ``a_start a_end b_start b_end``; default 30 days each."""
    b_end = parse_date(args.get("b_end"), "b_end", today)
    b_start = parse_date(args.get("b_start"), "b_start", b_end - timedelta(days=DEFAULT_DAYS - 1))
    a_end = parse_date(args.get("a_end"), "a_end", b_start - timedelta(days=1))
    a_start = parse_date(args.get("a_start"), "a_start", a_end - timedelta(days=DEFAULT_DAYS - 1))
    for name, start, end in (("a", a_start, a_end), ("b", b_start, b_end)):
        if start > end:
            raise UserError("开始日期不能晚于结束日期", field=f"{name}_start")
        if end > today:
            raise UserError("不能选择未来的日期", field=f"{name}_end")
        if (end - start).days >= MAX_DAYS:
            raise UserError("每个时段最长 3 年", field=f"{name}_start")
    return Span(a_start, a_end), Span(b_start, b_end)


@dataclass(frozen=True)
class Side:
    """One period of one test system × level, as compared with that period's peer group."""

    n: int
    mean: float
    sd: float | None
    cv: float | None
    bias_pct: float | None
    sdi: float | None
    sigma: float | None
    grade: str | None
    passed: bool | None


@dataclass(frozen=True)
class RowChange:
    """One test system × level in both periods, with the change and its significance."""

    ts_id: int
    lab_id: int
    level_id: int
    analyte_id: int
    before: Side | None
    after: Side | None
    f: significance.FTest | None
    t: significance.WelchT | None

    def delta(self, name: str) -> float | None:
        """Return after − before of a metric, None when either is missing."""
        a = getattr(self.before, name, None) if self.before else None
        b = getattr(self.after, name, None) if self.after else None
        return None if a is None or b is None else b - a


def _num(value) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _side(row: dict, specs) -> Side:
    published = level_of(row.get("group_level")) is not None
    verdict = compute.nccl(row, specs.get(int(row["analyte_id"]))) if published else None
    grade = row.get("grade")
    return Side(int(row["n"]), float(row["mean"]), _num(row.get("sd")), _num(row.get("cv")),
                _num(row.get("bias_pct")) if published else None,
                _num(row.get("sdi")) if published else None, _num(row.get("sigma")),
                grade if isinstance(grade, str) else None,
                None if verdict is None else bool(verdict.passed))


def _rows(region_id: int, span: Span, ts_ids: set[int]) -> dict[tuple[int, int], tuple]:
    frame = compare_region(region_id, span.period())
    frame = frame[frame["ts_id"].isin(list(ts_ids))]
    specs = load_specs(frame["analyte_id"].unique() if len(frame) else [])
    return {(int(r["ts_id"]), int(r["qc_level_id"])): (r, _side(r, specs))
            for r in frame.to_dict("records")}


def _tests(a: Side | None, b: Side | None):
    if a is None or b is None or a.sd is None or b.sd is None or a.n < 2 or b.n < 2:
        return None, None
    f = significance.f_test(a.n, a.sd, b.n, b.sd) if a.sd > 0 else None
    t = significance.welch_t(a.n, a.mean, a.sd, b.n, b.mean, b.sd) if a.sd + b.sd > 0 else None
    return f, t


def compare_spans(region_id: int, ts_ids: Iterable[int], before: Span, after: Span
                  ) -> list[RowChange]:
    """Return every test system × level of ``ts_ids`` present in either period, compared."""
    ids = {int(i) for i in ts_ids}
    a, b = _rows(region_id, before, ids), _rows(region_id, after, ids)
    out = []
    for key in sorted(set(a) | set(b)):
        row = (a.get(key) or b.get(key))[0]
        sa, sb = (a.get(key) or (None, None))[1], (b.get(key) or (None, None))[1]
        out.append(RowChange(key[0], int(row["lab_id"]), key[1], int(row["analyte_id"]), sa, sb,
                             *_tests(sa, sb)))
    return out


@dataclass(frozen=True)
class Summary:
    """The rows of a lab or region in one period, summarised."""

    n_rows: int
    median_cv: float | None
    mean_abs_bias: float | None
    mean_abs_sdi: float | None
    median_sigma: float | None
    pass_rate: float | None
    share_ab: float | None
    sigmas: tuple[float, ...]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise(sides: Sequence[Side]) -> Summary:
    """Summarise one period's rows (``None`` metrics are left out of each statistic)."""
    cvs = [s.cv for s in sides if s.cv is not None]
    bias = [abs(s.bias_pct) for s in sides if s.bias_pct is not None]
    sdi = [abs(s.sdi) for s in sides if s.sdi is not None]
    sig = [s.sigma for s in sides if s.sigma is not None]
    judged = [s.passed for s in sides if s.passed is not None]
    grades = [s.grade for s in sides if s.grade]
    return Summary(len(sides), _median(cvs), _mean(bias), _mean(sdi), _median(sig),
                   sum(judged) / len(judged) if judged else None,
                   sum(g in ("A", "B") for g in grades) / len(grades) if grades else None,
                   tuple(sig))


@dataclass(frozen=True)
class GroupChange:
    """A lab's or the region's summary in both periods, with Welch's t on the σ values."""

    label: str
    before: Summary
    after: Summary
    t: significance.WelchT | None


def group_change(label: str, rows: Sequence[RowChange]) -> GroupChange:
    """Return the summary change of ``rows`` (a lab or the region)."""
    a = summarise([r.before for r in rows if r.before])
    b = summarise([r.after for r in rows if r.after])
    t = None
    if len(a.sigmas) >= 2 and len(b.sigmas) >= 2:
        sa, sb = statistics.stdev(a.sigmas), statistics.stdev(b.sigmas)
        if sa + sb > 0:
            t = significance.welch_t(len(a.sigmas), statistics.fmean(a.sigmas), sa,
                                     len(b.sigmas), statistics.fmean(b.sigmas), sb)
    return GroupChange(label, a, b, t)
