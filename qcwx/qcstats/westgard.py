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

The rule codes and rule sets live in :mod:`qcwx.qcstats.rulesets`, the Chinese advice in
``_westgard_text`` and the window tests in ``_westgard_windows``; every public name is
re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ._westgard_last import last_run_points
from ._westgard_text import RULE_INFO, RuleInfo
from ._westgard_windows import (
    MAX_LOOKBACK,
    TOLERANCE,
    _as_z,
    _check_finite,
    _Context,
    _Seq,
    _windows,
    lookback_start,
    rejudge_start,
)
from .rulesets import (
    ROLES,
    RULE_CODES,
    _check_codes,
    default_rule_set,
    sigma_rule_set,
    validate_rule_set,
)

__all__ = [
    "MAX_LOOKBACK", "ROLES", "TOLERANCE", "RULE_CODES", "RULE_INFO", "Evaluation", "RuleInfo",
    "RunEvaluation", "Violation", "default_rule_set", "evaluate", "evaluate_last", "fired_matrix",
    "lookback_start", "rejudge_start", "rules_fired", "sigma_rule_set", "validate_rule_set",
]

logger = logging.getLogger(__name__)

_STATUS = np.array(["accept", "warning", "reject"])


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
    return _code_sets(fired_matrix(z, codes), codes)


def _code_sets(fired: np.ndarray, codes: tuple[str, ...]) -> list[frozenset[str]]:
    """Return the codes of each row of ``fired``; rows alike share one frozenset."""
    keys = np.zeros(fired.shape[0], dtype=np.int32)
    for j in range(len(codes)):
        keys |= fired[:, j].astype(np.int32) << j
    sets = np.empty(1 << len(codes), dtype=object)
    for key in np.flatnonzero(np.bincount(keys, minlength=1)).tolist():
        sets[key] = frozenset(c for j, c in enumerate(codes) if key >> j & 1)
    return sets[keys].tolist()


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
    return _evaluate(_check_finite(_as_z(z)), validate_rule_set(rule_set), 0)


def evaluate_last(
    z_recent: object, rule_set: Mapping[str, str], *, first_run: int = 0
) -> RunEvaluation:
    """Evaluate only the newest run, reading only the rows it depends on.

    Equals ``evaluate(z_full, rule_set)[-1]`` when ``z_recent`` holds the last rows of
    ``z_full`` (at least from `lookback_start`, i.e. the last 12 runs when no level is
    missing) and ``first_run`` is the index of its first row in ``z_full``. Earlier rows
    are not read, so the cost does not grow with the history. The rules are applied in
    plain Python (``_westgard_last``): on a dozen rows that is ten times faster than the
    vectorised engine, whose answer it must equal (tested by hypothesis).

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
    rule_set = validate_rule_set(rule_set)
    offset = first_run + start
    fired = last_run_points(tail.tolist(), [c for c in RULE_CODES if rule_set[c] != "off"])
    roles = {rule_set[c] for c in fired}
    status = "reject" if "reject" in roles else "warning" if roles else "accept"
    return RunEvaluation(offset + tail.shape[0] - 1, status, tuple(
        Violation(code, rule_set[code], offset + tail.shape[0] - 1,
                  tuple(sorted({lv for _, lv in points})),
                  tuple((r + offset, lv) for r, lv in points))
        for code, points in fired.items()))


def _evaluate(z: np.ndarray, rule_set: dict[str, str], offset: int) -> Evaluation:
    """Evaluate the enabled rules at every row of ``z`` (its first row is run ``offset``)."""
    ctx = _Context(z)
    n_runs = ctx.n_runs
    enabled = [c for c in RULE_CODES if rule_set[c] != "off"]
    fired = np.zeros((n_runs, len(RULE_CODES)), dtype=bool)
    parts = []
    for code in enabled:
        j = RULE_CODES.index(code)
        for seq, ends, w in _windows(ctx, code):
            if ends.size:  # most windows fire nowhere: their empty points cost ~7 µs each
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
