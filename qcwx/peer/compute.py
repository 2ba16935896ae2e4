"""Turn per-system moments into peer-group statistics at the levels peer → method → all.

This is the one code path behind every peer number — live pages, frozen snapshots, the
centre's matrix and the national-scale benchmark — so the same inputs always give the same
numbers. It works on a *system frame*: one row per test system × QC level with its moments
(``n``, ``total`` = Σx, ``total_sq`` = Σx²) and the codes peers are grouped by (columns named
as :data:`qcwx.peer.filters.DIMENSIONS`). No database and no Flask here.

Statistics (QC_SPEC §3, via :mod:`qcwx.qcstats.peer`): per system n, mean, SD (n − 1) and
CV%; per group ISO 13528 Algorithm A over the member means (``algorithm_a_groups``,
vectorised across groups), group CV = mean of member CVs, SDI, CVR, bias%, min-ranks of
|bias| and of CV. A group is publishable with ≥ 5 distinct labs and ≥ 20 results; each
system is reported against the first publishable level (the vectorised equivalent of
``choose_group_level``). Sizes count distinct labs: a lab with two analysers on the same lot
is two points but one lab, so two analysers cannot make a group look bigger than it is.

The unit is part of every level, fallbacks included (QC_SPEC §3): rows are grouped by
``unit_key`` (:func:`qcwx.peer.units.unit_key` of ``unit``), so results in mg/dL and mmol/L
are never pooled, whatever level keys a caller passes, while ``mmol/L`` and ``ｍｍｏｌ／Ｌ`` are
one unit. The moments must be of in-control results only: judged runs (accept or warning),
never pending or rejected ones (QC_SPEC §3 "Who counts once").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qcwx.peer.filters import METHOD_KEYS, PEER_KEYS
from qcwx.peer.units import unit_key, unit_keys
from qcwx.qcstats import peer as qpeer
from qcwx.qcstats.sigma import tea_at_concentration
from qcwx.qcstats.specs import Tea

UNIT_KEY = "unit_key"
BASE_KEYS = ("qc_level_id", "analyte_id", UNIT_KEY)
LEVELS = qpeer.FALLBACK_ORDER  # ("peer", "method", "all")
DEFAULT_LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "peer": BASE_KEYS + tuple(k for k in PEER_KEYS if k != "unit"),
    "method": BASE_KEYS + METHOD_KEYS, "all": BASE_KEYS}
GRADE_BOUNDS = ((6.0, "A"), (4.0, "B"), (3.0, "C"))  # QC_SPEC §3; checked against qpeer.grade
STAT_COLUMNS = ("g_mean", "g_sd", "g_cv", "g_flagged", "n_labs", "n_systems", "n_results",
                "publishable", "sdi", "cvr", "bias_pct", "bias_rank", "cv_rank", "rank_size",
                "group")


def with_unit_key(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with a ``unit_key`` column (added from ``unit`` when missing)."""
    if UNIT_KEY in frame.columns or "unit" not in frame.columns:
        return frame
    out = frame.copy()
    out[UNIT_KEY] = unit_keys(out["unit"]) if len(out) else pd.Series(dtype=object)
    return out


def _with_unit(keys: Sequence[str], frame: pd.DataFrame) -> list[str]:
    """Return grouping keys with the unit key in them (replacing the raw ``unit``)."""
    out = [UNIT_KEY if k == "unit" else k for k in keys]
    if UNIT_KEY in frame.columns and UNIT_KEY not in out:
        out.append(UNIT_KEY)
    return list(dict.fromkeys(out))


def system_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``mean``, ``sd``, ``cv`` (and ``unit_key``) from the moments (n = 0 rows dropped).

    mean = Σx/n; SD = √(max(Σx² − (Σx)²/n, 0)/(n − 1)) (NaN for n < 2), the formula of
    :class:`qcwx.qcstats.peer.LabMoments`; CV% = 100·SD/|mean| (:func:`~qcwx.qcstats.peer.cv_pct`:
    never negative, NaN for a zero mean).
    """
    frame = with_unit_key(frame)
    out = frame[frame["n"].to_numpy() > 0].copy()
    n = out["n"].to_numpy(np.float64)
    total = out["total"].to_numpy(np.float64)
    total_sq = out["total_sq"].to_numpy(np.float64)
    mean = total / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(total_sq - total * total / n, 0.0) / (n - 1)
        sd = np.where(n >= 2, np.sqrt(var), np.nan)
    cv = np.asarray(qpeer.cv_pct(sd, mean), dtype=np.float64).reshape(-1)
    out["mean"], out["sd"], out["cv"] = mean, sd, cv
    return out.reset_index(drop=True)


def _codes(frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Return dense group codes 0..G−1 of the key combinations (missing codes group together)."""
    if not keys:
        return np.zeros(len(frame), dtype=np.int64)
    code = np.zeros(len(frame), dtype=np.int64)
    for key in keys:
        part, uniques = pd.factorize(frame[key], use_na_sentinel=False)
        code = code * max(len(uniques), 1) + part
    return pd.factorize(code, sort=True)[0].astype(np.int64)


def _min_rank(values: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Rank ascending within groups, ties sharing the minimum rank; NaN is not ranked.

    The vectorised form of :func:`qcwx.qcstats.peer.rank_in_group` for many groups at once.
    """
    by_value = np.argsort(values, kind="stable")  # NaN last
    order = by_value[np.argsort(code[by_value], kind="stable")]
    sv, sc = values[order], code[order]
    pos = np.arange(sv.size)
    group_start = np.searchsorted(sc, sc, side="left")
    new = np.ones(sv.size, dtype=bool)
    new[1:] = (sc[1:] != sc[:-1]) | (sv[1:] != sv[:-1])
    run_start = np.maximum.accumulate(np.where(new, pos, 0))
    ranked = (run_start - group_start + 1).astype(np.float64)
    ranked[np.isnan(sv)] = np.nan
    out = np.empty_like(ranked)
    out[order] = ranked
    return out


def _sizes(frame: pd.DataFrame, code: np.ndarray) -> dict[str, np.ndarray]:
    """Return row-aligned group sizes: distinct labs, systems, results, publishable."""
    size = int(code.max()) + 1
    lab_code = pd.factorize(frame["lab_id"])[0].astype(np.int64)
    width = int(lab_code.max()) + 1
    pairs = pd.unique(code * width + lab_code)
    n_labs = np.bincount(pairs // width, minlength=size)[code]
    n_results = np.bincount(code, frame["n"].to_numpy(np.float64), minlength=size)[code]
    return {"n_labs": n_labs, "n_systems": np.bincount(code, minlength=size)[code],
            "n_results": n_results.astype(np.int64),
            "publishable": (n_labs >= qpeer.MIN_LABS) & (n_results >= qpeer.MIN_RESULTS)}


def _group_stats(frame: pd.DataFrame, code: np.ndarray) -> dict[str, np.ndarray]:
    """Return row-aligned Algorithm A mean/SD, group CV, SDI, CVR, bias and ranks."""
    code = pd.factorize(code, sort=True)[0].astype(np.int64)
    size = int(code.max()) + 1
    mean = frame["mean"].to_numpy(np.float64)
    cv = frame["cv"].to_numpy(np.float64)
    est = qpeer.algorithm_a_groups(mean, code)
    gm = est["mean"].to_numpy()[code]
    gs = est["sd"].to_numpy()[code]
    has_cv = ~np.isnan(cv)
    with np.errstate(invalid="ignore", divide="ignore"):
        g_cv = (np.bincount(code[has_cv], cv[has_cv], minlength=size)
                / np.bincount(code[has_cv], minlength=size))[code]
        sdi = np.where((gs > 0) & np.isfinite(gs), (mean - gm) / gs, np.nan)
        cvr = np.where(g_cv > 0, cv / g_cv, np.nan)
        bias = np.where(gm != 0, 100.0 * (mean - gm) / np.abs(gm), np.nan)
    abs_bias = np.abs(bias)
    ranked = ~np.isnan(abs_bias)
    return {"g_mean": gm, "g_sd": gs, "g_cv": g_cv, "g_flagged": est["flagged"].to_numpy()[code],
            "sdi": sdi, "cvr": cvr, "bias_pct": bias, "bias_rank": _min_rank(abs_bias, code),
            "cv_rank": _min_rank(cv, code),
            "rank_size": np.bincount(code[ranked], minlength=size)[code]}


def level_stats(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Return the group statistics of every row for the grouping ``keys`` (row-aligned).

    Groups are the distinct combinations of ``keys`` plus the unit (missing codes group
    together); with no keys each unit of the frame is one group. Columns:
    :data:`STAT_COLUMNS`. Per-group sums use ``np.bincount`` on dense codes: no Python per
    group.
    """
    if len(frame) == 0:
        return pd.DataFrame(columns=list(STAT_COLUMNS), index=frame.index)
    frame = with_unit_key(frame)
    code = _codes(frame, _with_unit(keys, frame))
    return pd.DataFrame({**_sizes(frame, code), **_group_stats(frame, code), "group": code},
                        index=frame.index)[list(STAT_COLUMNS)]


def compare(frame: pd.DataFrame,
            level_keys: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Compare every system with its groups; report it against the first publishable level.

    ``frame`` holds moments (see :func:`system_stats`); ``level_keys`` maps each level of
    :data:`LEVELS` to its grouping columns (default :data:`DEFAULT_LEVEL_KEYS`); the unit key
    is added to every level's columns (a raw ``unit`` column is replaced by it). Returns the
    system rows with ``mean``/``sd``/``cv``, per level the sizes (``<level>_n_labs``,
    ``<level>_n_results``, ``<level>_publishable``), and the chosen level's statistics
    (:data:`STAT_COLUMNS`, NaN when no level is publishable) plus ``group_level`` and
    ``group_key`` (an integer unique across levels, −1 when unpublished).

    Sizes are computed for every level (cheap counts); Algorithm A and the ranks only for the
    groups some member is reported against — all their members, whatever level those report
    at — which is what keeps a national recompute near the cost of one ``groupby``.
    """
    labs = system_stats(frame)
    level_keys = {lv: _with_unit(k, labs) for lv, k in (level_keys or DEFAULT_LEVEL_KEYS).items()}
    n = len(labs)
    levels = [lv for lv in LEVELS if lv in level_keys]
    codes = {lv: _codes(labs, level_keys[lv]) for lv in levels} if n else {}
    sizes = {lv: _sizes(labs, codes[lv]) for lv in levels} if n else {}
    chosen = np.full(n, None, dtype=object)
    for lv in reversed(levels):
        if n:
            chosen = np.where(sizes[lv]["publishable"], lv, chosen)
    out = {col: np.full(n, np.nan) for col in STAT_COLUMNS}
    group_key = np.full(n, -1, dtype=np.int64)
    for k, lv in enumerate(levels if n else []):
        labs[f"{lv}_n_labs"] = sizes[lv]["n_labs"]
        labs[f"{lv}_n_results"] = sizes[lv]["n_results"]
        labs[f"{lv}_publishable"] = sizes[lv]["publishable"]
        mine = chosen == lv
        if not mine.any():
            continue
        relevant = np.isin(codes[lv], np.unique(codes[lv][mine]))
        stats = _group_stats(labs[relevant], codes[lv][relevant])
        take = mine[relevant]
        rows = np.flatnonzero(relevant)[take]
        for col, values in stats.items():
            out[col][rows] = np.asarray(values, dtype=np.float64)[take]
        for col in ("n_labs", "n_systems", "n_results", "publishable"):
            out[col][rows] = np.asarray(sizes[lv][col], dtype=np.float64)[rows]
        out["group"][rows] = codes[lv][rows]
        group_key[rows] = k * (n + 1) + codes[lv][rows]
    for col in STAT_COLUMNS:
        labs[col] = out[col]
    labs["group_level"] = chosen
    labs["group_key"] = group_key
    return labs


# ------------------------------------------------------------------ quality specifications


@dataclass(frozen=True)
class SpecInfo:
    """The quality specification an analyte is judged against (from an active QualitySpec)."""

    tea: Tea | None
    allowable_cv: float | None
    allowable_bias: float | None
    source: str


def tea_pct_at(spec: SpecInfo | None, unit: str, concentration: float) -> float | None:
    """Return TEa% at ``concentration`` (``tea_at_concentration``), None when not applicable.

    A two-tier TEa's absolute limit is in the specification's unit; a system reporting in
    another unit cannot be judged by it, so it gets no TEa (and no grade) rather than a wrong one.
    """
    if spec is None or spec.tea is None or not math.isfinite(concentration) or concentration <= 0:
        return None
    if spec.tea.two_tier and unit_key(unit) != unit_key(spec.tea.abs_unit):
        return None
    return tea_at_concentration(spec.tea, concentration).pct


def add_performance(labs: pd.DataFrame, specs: Mapping[int, SpecInfo]) -> pd.DataFrame:
    """Add ``tea_pct``, ``sigma`` and ``grade`` to compared rows (in place; returns ``labs``).

    TEa applies at the chosen group's mean (the consensus concentration of the QC level);
    σ = (TEa − |bias|)/CV with the bias against that group (QC_SPEC §3–§4); A σ ≥ 6,
    B ≥ 4, C ≥ 3, else D. Rows without a publishable group, a CV or a TEa get none.
    """
    n = len(labs)
    tea = np.full(n, np.nan)
    if n:
        conc = labs["g_mean"].to_numpy(np.float64)
        keys = pd.DataFrame({"a": labs["analyte_id"].to_numpy(), "u": labs["unit"].to_numpy(),
                             "c": conc})
        for (a, u, c), pos in keys.groupby(["a", "u", "c"], sort=False).indices.items():
            value = tea_pct_at(specs.get(int(a)), str(u), float(c))
            if value is not None:
                tea[pos] = value
    bias = labs["bias_pct"].to_numpy(np.float64) if n else np.zeros(0)
    cv = labs["cv"].to_numpy(np.float64) if n else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.where((cv > 0) & np.isfinite(tea) & np.isfinite(bias),
                         (tea - np.abs(bias)) / cv, np.nan)
    grade = np.full(n, None, dtype=object)
    valid = np.isfinite(sigma)
    grade[valid] = "D"
    for bound, letter in reversed(GRADE_BOUNDS):
        grade[valid & (sigma >= bound)] = letter
    labs["tea_pct"], labs["sigma"], labs["grade"] = tea, sigma, grade
    return labs


def nccl(row, spec: SpecInfo | None) -> qpeer.NcclAssessment | None:
    """Return the NCCL-style assessment of one compared row, None when it cannot be judged."""
    values = (row.get("cv"), row.get("bias_pct"), row.get("tea_pct"))
    if spec is None or any(v is None or not math.isfinite(v) for v in values):
        return None
    cv, bias, tea = (float(v) for v in values)
    if tea <= 0:
        return None
    return qpeer.nccl_pass(cv, bias, spec.allowable_cv, spec.allowable_bias, tea)


def worst_grade(grades) -> str | None:
    """Return the worst of several grades (D worst), None when there is none."""
    present = [g for g in grades if g]
    return max(present) if present else None


def _dense(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (codes, uniques) of a key column: offsets for small-range integers, else hashing."""
    if np.issubdtype(values.dtype, np.integer) and values.size:
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < 1 << 24:
            return (values - lo).astype(np.int64), np.arange(lo, hi + 1)
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64), np.asarray(uniques)


def results_to_moments(results: pd.DataFrame, by: Sequence[str] = ("ts_id", "qc_level_id"),
                       value: str = "value") -> pd.DataFrame:
    """Return n, Σx, Σx² per ``by`` from raw in-control results (the frame twin of the SQL).

    What ``frames.moments`` asks the database for, for callers that already hold results
    in memory (the national-scale benchmark, batch imports): dense key codes and
    ``np.bincount`` sums — one pass over the results, no Python per row or group.
    """
    v = results[value].to_numpy(np.float64)
    combined = np.zeros(len(results), dtype=np.int64)
    parts = []
    for key in by:
        codes, uniques = _dense(results[key].to_numpy())
        parts.append(uniques)
        combined = combined * max(len(uniques), 1) + codes
    span = int(np.prod([max(len(u), 1) for u in parts], dtype=np.float64))
    if span <= 4 * len(results) + 1024:
        counts = np.bincount(combined, minlength=span)
        keys = np.flatnonzero(counts)
        out = {"n": counts[keys].astype(np.int64),
               "total": np.bincount(combined, v, minlength=span)[keys],
               "total_sq": np.bincount(combined, v * v, minlength=span)[keys]}
    else:
        gid, keys = pd.factorize(combined)
        keys = np.asarray(keys, dtype=np.int64)
        out = {"n": np.bincount(gid).astype(np.int64), "total": np.bincount(gid, v),
               "total_sq": np.bincount(gid, v * v)}
    decoded = {}
    rest = keys
    for key, uniques in zip(reversed(list(by)), reversed(parts), strict=True):
        rest, code = np.divmod(rest, max(len(uniques), 1))
        decoded[key] = uniques[code]
    return pd.DataFrame({**{k: decoded[k] for k in by}, **out})
