"""Find the windows that satisfy each Westgard rule, and how far back they reach.

The engine behind :mod:`qcwx.qcstats.westgard` (see its module docstring for the sequences,
scopes and the tolerance): every rule is a vectorised test over the within-level and
across-level sequences of a z array, returning the positions where satisfying windows end.
`lookback_start` and `rejudge_start` say which rows an evaluation depends on. The public
names here are re-exported by westgard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_LOOKBACK", "TOLERANCE", "lookback_start", "rejudge_start"]

MAX_LOOKBACK = 12
"""Longest window in results (``12x``): the newest run needs at most this many results
of each level present in it, i.e. 12 runs when no level is missing."""

TOLERANCE = 1e-9
"""Absolute tolerance on z for every limit and sign test (QC_SPEC 1.1): ``|z| >= k - 1e-9``
is beyond ``k`` SD, so values entered exactly at a limit are never missed to rounding."""

# Scope names: "each" every single result; "run" consecutive results of the
# across-level sequence that belong to one run; "level" the within-level sequence;
# "across" the across-level sequence (windows may span runs).
_SCOPES: dict[str, tuple[str, ...]] = {
    "1-2s": ("each",), "1-2.5s": ("each",), "1-3s": ("each",), "1-3.5s": ("each",),
    "2-2s": ("run", "level"),
    "R-4s": ("run",),
    "2of3-2s": ("run", "level", "across"),
    "3-1s": ("run", "level", "across"),
    "4-1s": ("level", "across"),
    "6x": ("level", "across"), "8x": ("level", "across"), "9x": ("level", "across"),
    "10x": ("level", "across"), "12x": ("level", "across"),
    "7T": ("level",),
}


@dataclass(frozen=True)
class _Seq:
    """A sequence of z values with the run and level of each entry."""

    z: np.ndarray
    run: np.ndarray
    level: np.ndarray


# A set of satisfying windows: the sequence, the positions where they end, their width.
_Windows = tuple[_Seq, np.ndarray, int]


def _streak(flag: np.ndarray) -> np.ndarray:
    """Return, at each position, the number of consecutive True values ending there."""
    idx = np.arange(1, flag.size + 1, dtype=np.int32 if flag.size < 2**31 - 1 else np.int64)
    last_false = idx * ~flag
    np.maximum.accumulate(last_false, out=last_false)
    return np.subtract(idx, last_false, out=last_false)


class _Context:
    """Sequences of one z array and a cache of their streak arrays."""

    def __init__(self, z: np.ndarray) -> None:
        self.n_runs, self.n_levels = z.shape
        self.z = z
        flat = z.ravel()
        pos = np.flatnonzero(~np.isnan(flat))
        self.across = _Seq(flat[pos], *np.divmod(pos, self.n_levels))
        self.levels = tuple(self._level(lv) for lv in range(self.n_levels))
        self._cache: dict[tuple[int, str, float], np.ndarray] = {}

    def _level(self, lv: int) -> _Seq:
        runs = np.flatnonzero(~np.isnan(self.z[:, lv]))
        return _Seq(self.z[runs, lv], runs, np.full(runs.size, lv))

    def streak(self, seq: _Seq, kind: str, k: float = 0.0) -> np.ndarray:
        """Return the cached streak of ``z >= k`` (ge), ``z <= -k`` (le) or rises/falls."""
        key = (id(seq), kind, k)
        if key not in self._cache:
            self._cache[key] = _streak(_flag(seq.z, kind, k))
        return self._cache[key]


def _flag(z: np.ndarray, kind: str, k: float) -> np.ndarray:
    """Return where ``z`` is beyond ``+k`` (ge) or ``-k`` (le), or rises / falls, with tolerance.

    ``k`` is a limit in SD (the tolerance is subtracted) or 0 for the sign tests, where
    ``z >= TOLERANCE`` is above the mean.
    """
    edge = k - TOLERANCE if k > 0 else TOLERANCE
    if kind == "ge":
        return z >= edge
    if kind == "le":
        return z <= -edge
    if kind == "up":
        return np.diff(z) >= TOLERANCE
    return np.diff(z) <= -TOLERANCE  # "down"


def _beyond(k: float) -> Callable[[_Context, _Seq], tuple[np.ndarray, int]]:
    """Window test: one result with ``|z| >= k`` (within `TOLERANCE`)."""
    return lambda ctx, seq: (np.flatnonzero(np.abs(seq.z) >= k - TOLERANCE), 1)


def _consecutive_beyond(k: float, w: int) -> Callable[[_Context, _Seq], tuple[np.ndarray, int]]:
    """Window test: ``w`` consecutive results ``>= k`` or ``w`` consecutive ``<= -k``."""

    def test(ctx: _Context, seq: _Seq) -> tuple[np.ndarray, int]:
        hit = (ctx.streak(seq, "ge", k) >= w) | (ctx.streak(seq, "le", k) >= w)
        return np.flatnonzero(hit), w

    return test


def _m_of_w_beyond(k: float, m: int, w: int) -> Callable[[_Context, _Seq], tuple[np.ndarray, int]]:
    """Window test: at least ``m`` of ``w`` consecutive results beyond the same ``k`` limit."""

    def test(ctx: _Context, seq: _Seq) -> tuple[np.ndarray, int]:
        hit = ((_window_count(_flag(seq.z, "ge", k), w) >= m)
               | (_window_count(_flag(seq.z, "le", k), w) >= m))
        return np.flatnonzero(hit) + (w - 1), w

    return test


def _window_count(flag: np.ndarray, w: int) -> np.ndarray:
    """Return the count of True in each full window of width ``w`` (one per window end)."""
    cs = np.concatenate(([0], np.cumsum(flag, dtype=np.int32)))
    return cs[w:] - cs[:-w] if cs.size > w else np.zeros(0, np.int64)


def _trend(w: int) -> Callable[[_Context, _Seq], tuple[np.ndarray, int]]:
    """Window test: ``w`` consecutive results, each strictly above (or below) the previous."""

    def test(ctx: _Context, seq: _Seq) -> tuple[np.ndarray, int]:
        hit = (ctx.streak(seq, "up") >= w - 1) | (ctx.streak(seq, "down") >= w - 1)
        return np.flatnonzero(hit) + 1, w

    return test


#: Each rule's window test, as data: (kind, k, m, w). "beyond": one ``|z| >= k``; "run": ``w``
#: consecutive beyond the same ``k`` (``k = 0``: on one side of the mean); "m_of_w": ``m`` of
#: ``w`` consecutive beyond the same ``k``; "trend": ``w`` consecutive, each step up (or down).
#: With ``k = 0`` `_flag` tests ``z >= TOLERANCE`` / ``z <= -TOLERANCE``, so a result within
#: the tolerance of the mean counts as 0 and breaks an n-x run.
#: R-4s is read by itself (`_range_windows`). The one table both the vectorised tests below
#: and the newest-run judge (``_westgard_last``) are built from.
RULE_TESTS: dict[str, tuple[str, float, int, int]] = {
    "1-2s": ("beyond", 2.0, 1, 1), "1-2.5s": ("beyond", 2.5, 1, 1),
    "1-3s": ("beyond", 3.0, 1, 1), "1-3.5s": ("beyond", 3.5, 1, 1),
    "2-2s": ("run", 2.0, 2, 2), "2of3-2s": ("m_of_w", 2.0, 2, 3),
    "3-1s": ("run", 1.0, 3, 3), "4-1s": ("run", 1.0, 4, 4),
    "6x": ("run", 0.0, 6, 6), "8x": ("run", 0.0, 8, 8), "9x": ("run", 0.0, 9, 9),
    "10x": ("run", 0.0, 10, 10), "12x": ("run", 0.0, 12, 12),
    "7T": ("trend", 0.0, 7, 7),
}
_MAKERS = {"beyond": lambda k, m, w: _beyond(k), "run": lambda k, m, w: _consecutive_beyond(k, w),
           "m_of_w": _m_of_w_beyond, "trend": lambda k, m, w: _trend(w)}
_TESTS: dict[str, Callable[[_Context, _Seq], tuple[np.ndarray, int]]] = {
    code: _MAKERS[kind](k, m, w) for code, (kind, k, m, w) in RULE_TESTS.items()}


def _range_windows(ctx: _Context) -> list[_Windows]:
    """Find R-4s: results of a run with ``max z - min z >= 4`` among that run's levels.

    Each result that is at least 4 SD from the run's minimum or maximum is reported as
    a window of width 1, so the run is the run of its points.
    """
    edge = 4.0 - TOLERANCE
    rows = np.flatnonzero(np.fmax.reduce(ctx.z, axis=1) - np.fmin.reduce(ctx.z, axis=1) >= edge)
    z = ctx.z[rows]
    hi, lo = np.fmax.reduce(z, axis=1)[:, None], np.fmin.reduce(z, axis=1)[:, None]
    fired_row, lv = np.nonzero((hi - z >= edge) | (z - lo >= edge))
    runs = rows[fired_row]
    seq = _Seq(z[fired_row, lv], runs, lv)
    return [(seq, np.arange(runs.size), 1)]


def _windows(ctx: _Context, code: str) -> list[_Windows]:
    """Return every satisfying window of ``code`` in the sequences of its scope."""
    if code == "R-4s":
        return _range_windows(ctx)
    scopes = set(_SCOPES[code])
    if "across" in scopes:
        # Same-run windows are consecutive in the across-level sequence: already covered.
        scopes.discard("run")
    test, out = _TESTS[code], []
    if scopes & {"each", "across"}:
        out.append((ctx.across, *test(ctx, ctx.across)))
    if "run" in scopes:
        ends, w = test(ctx, ctx.across)
        run = ctx.across.run
        out.append((ctx.across, ends[run[ends] == run[ends - (w - 1)]], w))
    if "level" in scopes:
        out.extend((seq, *test(ctx, seq)) for seq in ctx.levels)
    return out


def _as_z(z: object) -> np.ndarray:
    """Convert ``z`` to a float64 array of shape (n_runs, n_levels), without copying."""
    try:
        arr = np.asarray(z, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"z must be an array of numbers: {exc}") from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or not 1 <= arr.shape[1] <= 3:
        raise ValueError(
            f"z must have shape (n_runs, n_levels) with 1 to 3 levels, got {arr.shape}"
            " (is it transposed?)"
        )
    return arr


def _check_finite(z: np.ndarray) -> np.ndarray:
    if np.isinf(z).any():
        raise ValueError("z must not contain infinite values (is a target SD zero?)")
    return z


def lookback_start(z: object) -> int:
    """Return the first row the evaluation of the newest run depends on.

    The windows of the newest run hold at most `MAX_LOOKBACK` results of each level
    that is present in that run, so the rows from the `MAX_LOOKBACK`-th last result of
    each such level suffice (12 rows when no level is missing). The search reads the
    array backwards in doubling chunks, so it costs O(rows needed), not O(history).

    Parameters
    ----------
    z : array_like, shape (n_runs, n_levels) or (n_runs,)
        Control z-scores, oldest run first.

    Returns
    -------
    int
        Row index; 0 when the whole history is needed.
    """
    arr = _as_z(z)
    n = arr.shape[0]
    if n == 0:
        return 0
    present = np.flatnonzero(~np.isnan(arr[-1]))
    size = MAX_LOOKBACK
    while True:
        start = max(0, n - size)
        seen = ~np.isnan(arr[start:, present])
        counts = seen.sum(axis=0)
        if start == 0 or (counts >= MAX_LOOKBACK).all():
            break
        size *= 2
    if present.size == 0:
        return n - 1
    # Row of the MAX_LOOKBACK-th last result of each present level.
    from_end = np.cumsum(seen[::-1], axis=0)
    rows = [np.argmax(from_end[:, j] >= MAX_LOOKBACK) if counts[j] >= MAX_LOOKBACK else None
            for j in range(present.size)]
    if any(r is None for r in rows):
        return start
    return n - 1 - int(max(rows))


def rejudge_start(z: object, first: int) -> int:
    """Return the first row the evaluations of rows ``first`` … ``n - 1`` all depend on.

    Re-judging from ``first`` (a correction, a back-dated run, a limit change) must equal
    judging from scratch for *every* re-judged row, not only for ``first`` and the newest
    (QC_SPEC 1.2). A row's windows hold at most `MAX_LOOKBACK` results of each level present
    in it, and a level's earliest occurrence at or after ``first`` needs the most history of
    that level, so the answer is the minimum over levels of the row of the `MAX_LOOKBACK`-th
    last result of the level up to that occurrence. A level run once a week therefore pulls
    in weeks of history, however many daily runs lie between.

    Parameters
    ----------
    z : array_like, shape (n_runs, n_levels) or (n_runs,)
        Control z-scores, oldest run first, NaN where a level was not run or has no target.
    first : int
        Index of the first row to re-judge.

    Returns
    -------
    int
        Row index ``<= first``; 0 when the rows given may not reach back far enough (the
        caller then reads more history, or all of it).

    Examples
    --------
    >>> nan = float("nan")
    >>> z = [[0.1, 2.2]] + [[0.1, nan]] * 13 + [[0.1, 2.3]]
    >>> rejudge_start(z, 13)  # the sparse level's previous result is at row 0
    0
    >>> rejudge_start([[0.1]] * 30, 25)
    14
    """
    arr = _as_z(z)
    n = arr.shape[0]
    if not 0 <= first <= n:
        raise ValueError(f"first must be within 0..{n}, got {first}")
    start = first
    for j in range(arr.shape[1]):
        rows = np.flatnonzero(~np.isnan(arr[:, j]))
        k = int(np.searchsorted(rows, first))  # this level's first occurrence >= first
        if k == rows.size:
            continue  # the level does not occur in the re-judged rows
        if k < MAX_LOOKBACK - 1:
            return 0  # fewer earlier results than a window may need: read everything
        start = min(start, int(rows[k - (MAX_LOOKBACK - 1)]))
    return start

