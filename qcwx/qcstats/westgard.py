"""Evaluate Westgard multirules on control z-scores (QC_SPEC section 1).

A control result ``x`` of one QC level with target mean ``mu`` and SD ``sigma`` is
judged through ``z = (x - mu) / sigma``. The input of every function here is a float
array of shape ``(n_runs, n_levels)``, oldest run first, with NaN where a level was not
run. Two sequences are read from it:

* the **within-level sequence** of a level: its z in run order, NaN skipped;
* the **across-level sequence**: every non-NaN z in (run, level index) order.

A result is beyond a ``k`` SD limit when ``|z| >= k - TOLERANCE`` (for every ``k``):
a value typed exactly at ``mu + 3 sigma`` gives ``z = 2.9999999999999982`` in float64
(``(4.3 - 4.0) / 0.1``), and QC_SPEC 1.1 counts it as beyond. The sign tests use the same
tolerance: ``z >= TOLERANCE`` is above the mean, ``z <= -TOLERANCE`` below, and
``|z| < TOLERANCE`` counts as ``z == 0``, which breaks an ``n``-x run. ``7T`` counts a
step as a rise (fall) when it exceeds the tolerance.

A rule fires at run ``r`` when a window that satisfies it contains a result of run
``r`` and lies in a sequence named in the rule's scope. Runs are judged as they are
submitted, from the results of runs ``0..r`` only, so the windows that count for run
``r`` are those whose newest result belongs to run ``r``. Consequently the verdict of
a run never changes when later runs are added (prefix stability) and a window that
spans runs ``r - 1`` and ``r`` is reported at run ``r`` only. This reproduces the
published answer key of QC_SPEC section 1.3 (e.g. ``4-1s`` fires at run 40, not at
runs 37 to 39).

References
----------
.. [1] Westgard JO, Barry PL, Hunt MR, Groth T. A multi-rule Shewhart chart for quality
   control in clinical chemistry. Clin Chem. 1981;27(3):493-501.
.. [2] Westgard JO. "Westgard Rules" and "Multirules". https://www.westgard.com/mltirule.htm
.. [3] Westgard JO. "Westgard Sigma Rules". https://www.westgard.com/westgard-sigma-rules.htm
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MAX_LOOKBACK",
    "ROLES",
    "TOLERANCE",
    "RULE_CODES",
    "RULE_INFO",
    "Evaluation",
    "RuleInfo",
    "RunEvaluation",
    "Violation",
    "default_rule_set",
    "evaluate",
    "evaluate_last",
    "fired_matrix",
    "lookback_start",
    "rejudge_start",
    "rules_fired",
    "sigma_rule_set",
    "validate_rule_set",
]

logger = logging.getLogger(__name__)

RULE_CODES: tuple[str, ...] = (
    "1-2s", "1-2.5s", "1-3s", "1-3.5s", "2-2s", "R-4s", "2of3-2s", "3-1s", "4-1s",
    "6x", "7T", "8x", "9x", "10x", "12x",
)
"""Every rule code, in display order."""

ROLES: tuple[str, ...] = ("off", "warning", "reject")
"""Roles a rule can take in a rule set."""

MAX_LOOKBACK = 12
"""Longest window in results (``12x``): the newest run needs at most this many results
of each level present in it, i.e. 12 runs when no level is missing."""

TOLERANCE = 1e-9
"""Absolute tolerance on z for every limit and sign test (QC_SPEC 1.1): ``|z| >= k - 1e-9``
is beyond ``k`` SD, so values entered exactly at a limit are never missed to rounding."""

_STATUS = np.array(["accept", "warning", "reject"])

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
class RuleInfo:
    """Describe a rule to laboratory staff (Chinese, user-facing).

    Attributes
    ----------
    name : str
        Short Chinese name.
    error : str
        Kind of error the rule points to (random, systematic, trend, warning).
    explanation : str
        What the rule means and what to check.
    """

    name: str
    error: str
    explanation: str


_SHIFT_CHECK = "检查校准（是否到期、校准品批号）、试剂批号是否更换、仪器漂移（温度、光源、管路），必要时重新校准；也请核对靶值设定。"  # noqa: E501

RULE_INFO: dict[str, RuleInfo] = {
    "1-2s": RuleInfo(
        "单值超出2倍标准差", "警告",
        "一个质控结果超出均值±2倍标准差。在控状态下约有百分之五的结果也会如此，"
        "因此只作警告、不单独拒绝；请结合其他规则判断本批，并留意近期是否同向偏移。",
    ),
    "1-2.5s": RuleInfo(
        "单值超出2.5倍标准差", "随机误差或大的系统误差",
        "一个质控结果超出均值±2.5倍标准差。检查仪器、试剂、质控品复溶与保存、操作过程，"
        "纠正后重新测定质控，并评估本批患者结果。",
    ),
    "1-3s": RuleInfo(
        "单值超出3倍标准差", "随机误差或大的系统误差",
        "一个质控结果超出均值±3倍标准差。检查仪器（加样针、比色杯、光源、温度）、"
        "试剂（有效期、开瓶稳定期）、质控品复溶与保存、操作过程，纠正后重新测定质控，"
        "并评估本批患者结果。",
    ),
    "1-3.5s": RuleInfo(
        "单值超出3.5倍标准差", "随机误差或大的系统误差",
        "一个质控结果超出均值±3.5倍标准差。检查仪器、试剂、质控品复溶与保存、操作过程，"
        "纠正后重新测定质控，并评估本批患者结果。",
    ),
    "2-2s": RuleInfo(
        "连续两个结果超出同侧2倍标准差", "系统误差",
        "同一批内相邻两个水平，或同一水平连续两批，结果超出均值同一侧2倍标准差。"
        + _SHIFT_CHECK,
    ),
    "R-4s": RuleInfo(
        "批内极差超过4倍标准差", "随机误差",
        "同一批内各水平结果的最大值与最小值相差达到4倍标准差（例如一个高于正2倍、"
        "一个低于负2倍）。检查加样（气泡、堵针）、质控品与试剂是否混匀、复溶是否正确、"
        "质控品位置是否放错。",
    ),
    "2of3-2s": RuleInfo(
        "连续三个结果中两个超出同侧2倍标准差", "系统误差",
        "连续三个质控结果中有两个超出均值同一侧2倍标准差。" + _SHIFT_CHECK,
    ),
    "3-1s": RuleInfo(
        "连续三个结果超出同侧1倍标准差", "系统误差",
        "连续三个质控结果超出均值同一侧1倍标准差，提示较小的系统偏移。" + _SHIFT_CHECK,
    ),
    "4-1s": RuleInfo(
        "连续四个结果超出同侧1倍标准差", "系统误差",
        "同一水平连续四批，或跨水平连续四个结果，超出均值同一侧1倍标准差，提示较小的系统偏移。"
        + _SHIFT_CHECK,
    ),
    "6x": RuleInfo(
        "连续六个结果在均值同侧", "系统误差",
        "连续六个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
    "7T": RuleInfo(
        "连续七个结果单向变化", "趋势（渐进的系统误差）",
        "同一水平连续七个结果逐个升高或逐个降低。检查试剂或质控品降解（开瓶时间、保存温度）、"
        "光源老化、仪器部件磨损、校准漂移。",
    ),
    "8x": RuleInfo(
        "连续八个结果在均值同侧", "系统误差",
        "连续八个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
    "9x": RuleInfo(
        "连续九个结果在均值同侧", "系统误差",
        "连续九个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
    "10x": RuleInfo(
        "连续十个结果在均值同侧", "系统误差",
        "连续十个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
    "12x": RuleInfo(
        "连续十二个结果在均值同侧", "系统误差",
        "连续十二个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
}
"""Chinese name, error kind and advice for every code in `RULE_CODES`."""


@dataclass(frozen=True)
class Violation:
    """Record one rule firing at one run.

    Attributes
    ----------
    rule : str
        Rule code.
    role : str
        ``"warning"`` or ``"reject"``, from the rule set.
    run : int
        Index of the run the rule fires at.
    levels : tuple of int
        Sorted level indices of all points.
    points : tuple of (int, int)
        Sorted ``(run, level)`` of every result in the satisfying windows whose newest
        result belongs to ``run``.
    """

    rule: str
    role: str
    run: int
    levels: tuple[int, ...]
    points: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class RunEvaluation:
    """Hold the verdict of one run.

    Attributes
    ----------
    run : int
        Run index.
    status : str
        ``"accept"``, ``"warning"`` or ``"reject"``.
    violations : tuple of Violation
        Rules fired at this run, in `RULE_CODES` order.
    """

    run: int
    status: str
    violations: tuple[Violation, ...]

    @property
    def rules(self) -> frozenset[str]:
        """Return the codes fired at this run."""
        return frozenset(v.rule for v in self.violations)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Hold the verdicts of a series of runs; index it to get a `RunEvaluation`.

    Attributes
    ----------
    status : tuple of str
        Status of every run.
    violations : tuple of Violation
        All violations, sorted by run then by `RULE_CODES` order.
    first_run : int
        Run index of the first row of the evaluated array.
    """

    status: tuple[str, ...]
    violations: tuple[Violation, ...]
    first_run: int = 0
    _bounds: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64), repr=False)

    def __len__(self) -> int:
        """Return the number of runs."""
        return len(self.status)

    def __getitem__(self, i: int) -> RunEvaluation:
        """Return the verdict of row ``i`` (negative indices count from the end)."""
        n = len(self.status)
        if not -n <= i < n:
            raise IndexError(f"run {i} out of range for {n} runs")
        i %= n
        lo, hi = int(self._bounds[i]), int(self._bounds[i + 1])
        return RunEvaluation(self.first_run + i, self.status[i], self.violations[lo:hi])

    def __iter__(self) -> Iterator[RunEvaluation]:
        """Iterate over the runs, oldest first."""
        return (self[i] for i in range(len(self)))


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


def _same_side(n: int) -> Callable[[_Context, _Seq], tuple[np.ndarray, int]]:
    """Window test: ``n`` consecutive results all above or all below the mean.

    ``k = 0`` makes `_flag` test ``z >= TOLERANCE`` / ``z <= -TOLERANCE``, so a result
    within the tolerance of the mean counts as 0 and breaks the run.
    """
    return _consecutive_beyond(0.0, n)


def _trend(w: int) -> Callable[[_Context, _Seq], tuple[np.ndarray, int]]:
    """Window test: ``w`` consecutive results, each strictly above (or below) the previous."""

    def test(ctx: _Context, seq: _Seq) -> tuple[np.ndarray, int]:
        hit = (ctx.streak(seq, "up") >= w - 1) | (ctx.streak(seq, "down") >= w - 1)
        return np.flatnonzero(hit) + 1, w

    return test


_TESTS: dict[str, Callable[[_Context, _Seq], tuple[np.ndarray, int]]] = {
    "1-2s": _beyond(2.0), "1-2.5s": _beyond(2.5), "1-3s": _beyond(3.0), "1-3.5s": _beyond(3.5),
    "2-2s": _consecutive_beyond(2.0, 2),
    "2of3-2s": _m_of_w_beyond(2.0, 2, 3),
    "3-1s": _consecutive_beyond(1.0, 3),
    "4-1s": _consecutive_beyond(1.0, 4),
    "6x": _same_side(6), "8x": _same_side(8), "9x": _same_side(9),
    "10x": _same_side(10), "12x": _same_side(12),
    "7T": _trend(7),
}


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


def _check_codes(rules: Iterable[str] | str | None) -> tuple[str, ...]:
    if rules is None:
        return RULE_CODES
    wanted = {rules} if isinstance(rules, str) else set(rules)
    unknown = wanted.difference(RULE_CODES)
    if unknown:
        shown = ", ".join(sorted(map(repr, unknown)))
        raise ValueError(f"unknown rule code(s) {shown}; known: {', '.join(RULE_CODES)}")
    return tuple(c for c in RULE_CODES if c in wanted)


def fired_matrix(z: object, rules: Iterable[str] | str | None = None) -> np.ndarray:
    """Return a boolean matrix: which rule fires at which run.

    Parameters
    ----------
    z : array_like, shape (n_runs, n_levels) or (n_runs,)
        Control z-scores, oldest run first, NaN where a level was not run.
    rules : iterable of str, optional
        Rule codes; default all of `RULE_CODES`.

    Returns
    -------
    numpy.ndarray of bool, shape (n_runs, n_rules)
        Column ``j`` is the ``j``-th requested code in `RULE_CODES` order.

    Raises
    ------
    ValueError
        On an unknown rule code, a bad shape or an infinite z.
    """
    codes = _check_codes(rules)
    ctx = _Context(_check_finite(_as_z(z)))
    out = np.zeros((ctx.n_runs, len(codes)), dtype=bool, order="F")
    for j, code in enumerate(codes):
        for seq, ends, _ in _windows(ctx, code):
            out[seq.run[ends], j] = True
    return out


def rules_fired(z: object, rules: Iterable[str] | str | None = None) -> list[frozenset[str]]:
    """Return the set of Westgard rules that fire at each run.

    A rule fires at run ``r`` when a window satisfying it contains a result of run ``r``
    and lies in a sequence of its scope; windows are taken over the results of runs
    ``0..r``, so a window counts for the run of its newest result (QC_SPEC 1.2).
    Beyond a ``k`` SD limit means ``|z| >= k - TOLERANCE``; ``|z| < TOLERANCE`` counts as
    ``z == 0`` and breaks an ``n``-x run.

    ========  ==========================================  ===============================
    code      fires when                                  scope
    ========  ==========================================  ===============================
    1-ks      one result with ``|z| >= k``                each result (k = 2, 2.5, 3, 3.5)
    2-2s      2 consecutive ``z >= 2`` (or ``<= -2``)     within run across levels;
                                                          within level across 2 runs
    R-4s      ``max z - min z >= 4`` in one run           within run only
    2of3-2s   2 of 3 consecutive beyond the same 2 SD     within run, level; across levels
    3-1s      3 consecutive beyond the same 1 SD          within run, level; across levels
    4-1s      4 consecutive beyond the same 1 SD          within level; across levels
    nx        n consecutive on one side of the mean       within level; across levels
    7T        7 consecutive, each strictly above (or      within level only
              below) the previous one
    ========  ==========================================  ===============================

    Parameters
    ----------
    z : array_like, shape (n_runs, n_levels) or (n_runs,)
        Control z-scores ``(x - mu) / sigma``, oldest run first, NaN where a level was
        not run; a 1-D array is one level. 1 to 3 levels.
    rules : iterable of str, optional
        Rule codes to evaluate; default all of `RULE_CODES`.

    Returns
    -------
    list of frozenset of str
        One set per run.

    Raises
    ------
    ValueError
        On an unknown rule code, a bad shape or an infinite z.

    References
    ----------
    .. [1] Westgard JO, Barry PL, Hunt MR, Groth T. A multi-rule Shewhart chart for
       quality control in clinical chemistry. Clin Chem. 1981;27(3):493-501.
    .. [2] Westgard JO. "Westgard Rules". https://www.westgard.com/mltirule.htm

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[0.5, -0.3], [2.1, 2.4], [0.2, 1.1]])
    >>> [sorted(s) for s in rules_fired(z, ["1-2s", "2-2s", "R-4s"])]
    [[], ['1-2s', '2-2s'], []]
    >>> [sorted(s) for s in rules_fired([1.2, 1.5, -0.1, 1.1, 1.3, 1.0, 1.4], ["4-1s"])]
    [[], [], [], [], [], [], ['4-1s']]
    """
    codes = _check_codes(rules)
    fired = fired_matrix(z, codes)
    keys = np.zeros(fired.shape[0], dtype=np.int32)
    for j in range(len(codes)):
        keys |= fired[:, j].astype(np.int32) << j
    sets = np.empty(1 << len(codes), dtype=object)
    for key in np.flatnonzero(np.bincount(keys, minlength=1)).tolist():
        sets[key] = frozenset(c for j, c in enumerate(codes) if key >> j & 1)
    return sets[keys].tolist()


def validate_rule_set(rule_set: Mapping[str, str]) -> dict[str, str]:
    """Check a rule set and return it completed with ``"off"`` for absent codes.

    Parameters
    ----------
    rule_set : mapping of str to str
        Rule code to role (``"off"``, ``"warning"`` or ``"reject"``).

    Returns
    -------
    dict of str to str
        Every code of `RULE_CODES` with its role.

    Raises
    ------
    ValueError
        If a code is unknown, a role is invalid or no rule is enabled.
    """
    if not isinstance(rule_set, Mapping):
        raise ValueError(f"rule set must be a mapping of rule code to role, got {rule_set!r}")
    _check_codes(rule_set.keys())
    bad = {c: r for c, r in rule_set.items() if r not in ROLES}
    if bad:
        raise ValueError(f"invalid role(s) {bad}; a role is one of {', '.join(ROLES)}")
    if all(r == "off" for r in rule_set.values()):
        raise ValueError("rule set enables no rule; set at least one to warning or reject")
    return {c: rule_set.get(c, "off") for c in RULE_CODES}


def default_rule_set(n_levels: int) -> dict[str, str]:
    """Return the default rule set of QC_SPEC 1.2 for a test system.

    1 level: ``1-2s`` warning; ``1-3s 2-2s 4-1s 10x`` reject. 2 levels: ``1-2s``
    warning; ``1-3s 2-2s R-4s 4-1s 10x`` reject. 3 levels: ``1-2s`` warning;
    ``1-3s 2of3-2s R-4s 3-1s 6x`` reject. Every other code is ``"off"``.

    Parameters
    ----------
    n_levels : int
        Number of QC levels, 1 to 3.

    Returns
    -------
    dict of str to str
        Every code of `RULE_CODES` with its role.

    Raises
    ------
    ValueError
        If ``n_levels`` is not 1, 2 or 3.
    """
    reject = {
        1: ("1-3s", "2-2s", "4-1s", "10x"),
        2: ("1-3s", "2-2s", "R-4s", "4-1s", "10x"),
        3: ("1-3s", "2of3-2s", "R-4s", "3-1s", "6x"),
    }
    if n_levels not in reject:
        raise ValueError(f"a test system has 1, 2 or 3 levels, got {n_levels!r}")
    out = dict.fromkeys(RULE_CODES, "off") | dict.fromkeys(reject[n_levels], "reject")
    out["1-2s"] = "warning"
    return out


def sigma_rule_set(sigma: float) -> dict[str, str]:
    """Return the Westgard Sigma Rules set for 2 levels (QC_SPEC 1.4).

    ``sigma >= 6``: ``1-3s`` (N = 2); ``5 <= sigma < 6``: ``1-3s 2-2s R-4s`` (N = 2);
    ``4 <= sigma < 5``: ``1-3s 2-2s R-4s 4-1s`` (N = 4); ``sigma < 4``:
    ``1-3s 2-2s R-4s 4-1s 8x`` (N = 4 over R = 2 runs, or more). All listed rules reject;
    there is no ``1-2s`` warning. N is the number of control results per evaluation.

    Parameters
    ----------
    sigma : float
        Sigma metric ``(TEa% - |bias%|) / CV%``.

    Returns
    -------
    dict of str to str
        Every code of `RULE_CODES` with its role.

    Raises
    ------
    ValueError
        If ``sigma`` is NaN.

    References
    ----------
    .. [1] Westgard JO, Westgard SA. Westgard Sigma Rules. https://www.westgard.com
    """
    if np.isnan(sigma):
        raise ValueError("sigma must be a number, got NaN")
    codes = ["1-3s"]
    if sigma < 6:
        codes += ["2-2s", "R-4s"]
    if sigma < 5:
        codes.append("4-1s")
    if sigma < 4:
        codes.append("8x")
    return dict.fromkeys(RULE_CODES, "off") | dict.fromkeys(codes, "reject")


def evaluate(z: object, rule_set: Mapping[str, str]) -> Evaluation:
    """Evaluate a rule set on a series of runs: status and violations of every run.

    The status of a run is ``"reject"`` if an enabled reject rule fires, else
    ``"warning"`` if a warning rule fires, else ``"accept"``. Results of rejected runs
    stay in later windows (QC_SPEC 1.2). See `rules_fired` for the rules.

    Parameters
    ----------
    z : array_like, shape (n_runs, n_levels) or (n_runs,)
        Control z-scores, oldest run first, NaN where a level was not run.
    rule_set : mapping of str to str
        Rule code to ``"off"``, ``"warning"`` or ``"reject"``; absent codes are off.

    Returns
    -------
    Evaluation
        Index it with a run to get its `RunEvaluation`.

    Raises
    ------
    ValueError
        On a bad rule set, a bad shape or an infinite z.
    """
    return _evaluate(_check_finite(_as_z(z)), validate_rule_set(rule_set), 0, last_only=False)


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


def evaluate_last(
    z_recent: object, rule_set: Mapping[str, str], *, first_run: int = 0
) -> RunEvaluation:
    """Evaluate only the newest run, reading only the rows it depends on.

    Equals ``evaluate(z_full, rule_set)[-1]`` when ``z_recent`` holds the last rows of
    ``z_full`` (at least from `lookback_start`, i.e. the last 12 runs when no level is
    missing) and ``first_run`` is the index of its first row in ``z_full``. Earlier rows
    are not read, so the cost does not grow with the history.

    Parameters
    ----------
    z_recent : array_like, shape (n_runs, n_levels) or (n_runs,)
        Recent control z-scores, oldest run first, the newest run last.
    rule_set : mapping of str to str
        Rule code to ``"off"``, ``"warning"`` or ``"reject"``.
    first_run : int, optional
        Run index of ``z_recent[0]`` in the full history (default 0).

    Returns
    -------
    RunEvaluation
        The verdict of the newest run, with run indices of the full history.

    Raises
    ------
    ValueError
        On a bad rule set, a bad shape, no run, or an infinite z in the rows read.
    """
    arr = _as_z(z_recent)
    if arr.shape[0] == 0:
        raise ValueError("z_recent holds no run")
    start = lookback_start(arr)
    tail = _check_finite(arr[start:])
    return _evaluate(tail, validate_rule_set(rule_set), first_run + start, last_only=True)[-1]


def _evaluate(
    z: np.ndarray, rule_set: dict[str, str], offset: int, *, last_only: bool
) -> Evaluation:
    """Evaluate enabled rules; with ``last_only`` build violations of the last row only."""
    ctx = _Context(z)
    n_runs = ctx.n_runs
    enabled = [c for c in RULE_CODES if rule_set[c] != "off"]
    fired = np.zeros((n_runs, len(RULE_CODES)), dtype=bool)
    parts = []
    for code in enabled:
        j = RULE_CODES.index(code)
        for seq, ends, w in _windows(ctx, code):
            if last_only:
                ends = ends[seq.run[ends] == n_runs - 1]
            fired[seq.run[ends], j] = True
            parts.append(_points(seq, ends, w, j))
    roles = np.array([rule_set[c] for c in RULE_CODES])
    code = np.where(fired[:, roles == "reject"].any(axis=1), 2,
                    fired[:, roles == "warning"].any(axis=1).astype(np.int64))
    violations, bounds = _violations(parts, n_runs, ctx.n_levels, roles, offset)
    logger.debug("evaluated %s runs, %s violations", n_runs, len(violations))
    return Evaluation(tuple(_STATUS[code].tolist()), violations, offset, bounds)


def _points(seq: _Seq, ends: np.ndarray, w: int, j: int) -> np.ndarray:
    """Return rows (rule, attributed run, point run, point level) for windows at ``ends``."""
    pos = (ends[:, None] - np.arange(w)[None, :]).ravel()
    attr = np.repeat(seq.run[ends], w)
    return np.stack([np.full(pos.size, j), attr, seq.run[pos], seq.level[pos]]).astype(np.int64)


def _violations(
    parts: list[np.ndarray], n_runs: int, n_levels: int, roles: np.ndarray, offset: int
) -> tuple[tuple[Violation, ...], np.ndarray]:
    """Group point rows into one `Violation` per (run, rule) and the per-run bounds."""
    n_rules = len(RULE_CODES)
    rule, attr, prun, plev = np.concatenate(parts, axis=1) if parts else np.zeros((4, 0), int)
    key = np.sort(((attr * n_rules + rule) * n_runs + prun) * n_levels + plev)
    if key.size == 0:
        return (), np.zeros(n_runs + 1, dtype=np.int64)
    key = key[np.r_[True, key[1:] != key[:-1]]]
    group, point = np.divmod(key, n_runs * n_levels)
    attr, rule = np.divmod(group, n_rules)
    prun, plev = np.divmod(point, n_levels)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    stops = np.r_[starts[1:], key.size].tolist()
    level_sets = np.bitwise_or.reduceat(np.left_shift(1, plev), starts).tolist()
    level_tuples = [tuple(lv for lv in range(n_levels) if m >> lv & 1) for m in range(8)]
    points = list(zip((prun + offset).tolist(), plev.tolist(), strict=True))
    role_of = [str(r) for r in roles]
    out = [
        Violation(RULE_CODES[j], role_of[j], r + offset, level_tuples[m], tuple(points[a:b]))
        for j, r, m, a, b in zip(rule[starts].tolist(), attr[starts].tolist(), level_sets,
                                 starts.tolist(), stops, strict=True)
    ]
    bounds = np.searchsorted(attr[starts], np.arange(n_runs + 1), side="left")
    return tuple(out), bounds
