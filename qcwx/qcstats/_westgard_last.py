"""Judge the newest run of a short window in plain Python: the live submission's path.

Why a second form of the rules: the vectorised engine (``_westgard_windows``) is built for
series — thousands of runs judged at once. A live submission judges one run on a window of
about 12 runs, where the same engine made some 150 numpy calls of a few elements each:
300–600 µs, about 5 % of a submission's CPU under load (issue 14). Here each rule looks only
at the windows that end on the newest run, over plain floats: tens of µs.

The definitions are the engine's, word for word (QC_SPEC 1.1, 1.2; see
:mod:`qcwx.qcstats.westgard`): the same sequences and scopes (``_SCOPES``), ``|z| >= k -
TOLERANCE`` for a limit, ``z >= TOLERANCE`` / ``z <= -TOLERANCE`` for a side of the mean, a
step ``>= TOLERANCE`` for a trend, and a window counts for the run of its newest result.
``tests/qcstats/test_westgard.py`` checks by hypothesis that
:func:`qcwx.qcstats.westgard.evaluate_last` (this) equals ``evaluate(z)[-1]`` (the engine)
for any array, rule set and value at or near a limit.
"""

from __future__ import annotations

from ._westgard_windows import _SCOPES, RULE_TESTS, TOLERANCE

_R4S_EDGE = 4.0 - TOLERANCE

#: A sequence: its entries (z, run, level) in order.
Seq = list[tuple[float, int, int]]


def last_run_points(rows: list[list[float]], codes: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Return {rule code: sorted (run, level) points} of the rules that fire at the last row.

    ``rows``: z of each run (oldest first), NaN where a level was not run, all finite;
    ``codes``: the enabled rule codes. Points are those of every satisfying window whose
    newest result belongs to the last row, as ``_points`` gives them.
    """
    last = len(rows) - 1
    across: Seq = [(v, r, lv) for r, row in enumerate(rows) for lv, v in enumerate(row)
                   if v == v]
    levels = [[e for e in across if e[2] == lv] for lv in range(len(rows[-1]))]
    # positions of the across sequence that belong to the last run (its last entries)
    tail = [p for p in range(len(across) - 1, -1, -1) if across[p][1] == last][::-1]
    out: dict[str, list[tuple[int, int]]] = {}
    for code in codes:
        points: set[tuple[int, int]] = set()
        if code == "R-4s":
            _range_points(rows[-1], last, points)
        else:
            scopes = _SCOPES[code]
            test = RULE_TESTS[code]
            if "each" in scopes or "across" in scopes:
                for p in tail:
                    _add_window(across, p, test, points)
            elif "run" in scopes:  # within one run: the window may not reach an earlier run
                for p in tail:
                    start = p - test[3] + 1
                    if start >= 0 and across[start][1] == last:
                        _add_window(across, p, test, points)
            if "level" in scopes:
                for seq in levels:
                    if seq and seq[-1][1] == last:
                        _add_window(seq, len(seq) - 1, test, points)
        if points:
            out[code] = sorted(points)
    return out


def _add_window(seq: Seq, p: int, test: tuple[str, float, int, int],
                points: set[tuple[int, int]]) -> None:
    """Add the points of the window of ``seq`` ending at ``p`` when it satisfies ``test``."""
    kind, k, m, w = test
    if p < w - 1:
        return
    zs = [e[0] for e in seq[p - w + 1:p + 1]]
    if kind == "beyond":
        hit = abs(zs[0]) >= k - TOLERANCE
    elif kind == "trend":
        steps = [b - a for a, b in zip(zs, zs[1:])]  # noqa: B905 - one shorter by design
        hit = all(s >= TOLERANCE for s in steps) or all(s <= -TOLERANCE for s in steps)
    else:
        edge = k - TOLERANCE if k > 0 else TOLERANCE
        above = sum(z >= edge for z in zs)
        below = sum(z <= -edge for z in zs)
        hit = above >= m or below >= m
    if hit:
        points.update((e[1], e[2]) for e in seq[p - w + 1:p + 1])


def _range_points(row: list[float], run: int, points: set[tuple[int, int]]) -> None:
    """R-4s at ``run``: each result at least 4 SD from the run's lowest or highest result."""
    present = [v for v in row if v == v]
    if not present:
        return
    hi, lo = max(present), min(present)
    if hi - lo < _R4S_EDGE:
        return
    points.update((run, lv) for lv, z in enumerate(row)
                  if z == z and (hi - z >= _R4S_EDGE or z - lo >= _R4S_EDGE))
