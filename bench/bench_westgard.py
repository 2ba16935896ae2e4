"""Benchmark the vectorised Westgard evaluation against a per-run Python loop.

Run: ``.venv/bin/python bench/bench_westgard.py [--quick]``.

1. All rules on 1,000,000 results (500,000 runs x 2 levels, fixed seed) with
   ``rules_fired``, against ``reference_rules_fired`` below (a straightforward loop over
   runs that checks the windows ending in each run). The loop is timed on a prefix and
   scaled linearly to the full size; both must agree on that prefix.
2. The incremental cost of judging one new run (``evaluate_last``) with 10 and with
   100,000 prior runs: min and median over many repetitions, and their ratio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qcwx.qcstats.westgard import (  # noqa: E402
    RULE_CODES,
    default_rule_set,
    evaluate,
    evaluate_last,
    rules_fired,
)

SEED = 20240611

# Reference: one pass over the runs, each rule checked on the windows ending in run r.
_EACH = (("1-2s", 2.0), ("1-2.5s", 2.5), ("1-3s", 3.0), ("1-3.5s", 3.5))
_NX = (("6x", 6), ("8x", 8), ("9x", 9), ("10x", 10), ("12x", 12))
TOL = 1e-9  # QC_SPEC 1.1: |z| >= k - 1e-9 is beyond k SD; |z| < 1e-9 counts as 0


def _all_beyond(win, k):
    return all(v >= k - TOL for v in win) or all(v <= -(k - TOL) for v in win)


def _two_of_three(win):
    return sum(v >= 2 - TOL for v in win) >= 2 or sum(v <= -2 + TOL for v in win) >= 2


def _same_side(win):
    return all(v >= TOL for v in win) or all(v <= -TOL for v in win)


def _trend(win):
    pairs = list(zip(win[:-1], win[1:], strict=True))
    return all(b - a >= TOL for a, b in pairs) or all(a - b >= TOL for a, b in pairs)


def _sequence_rules(win_of, fired, scope):
    """Check the windows ending at one position; win_of(w) is that window or None."""
    checks = [("2of3-2s", 3, _two_of_three), ("3-1s", 3, lambda w: _all_beyond(w, 1))]
    checks += [("4-1s", 4, lambda w: _all_beyond(w, 1))]
    checks += [(code, n, _same_side) for code, n in _NX]
    if scope == "level":
        checks += [("2-2s", 2, lambda w: _all_beyond(w, 2)), ("7T", 7, _trend)]
    for code, width, check in checks:
        win = win_of(width)
        if win is not None and check(win):
            fired.add(code)


def reference_rules_fired(z):
    """Return the rules fired at each run, with a plain loop over runs (QC_SPEC 1.2)."""
    z = np.asarray(z, dtype=float)
    z = z[:, None] if z.ndim == 1 else z
    n_levels = z.shape[1]
    by_level = [[] for _ in range(n_levels)]
    across, across_run = [], []
    out = []
    for r, row in enumerate(z.tolist()):
        present = [(lv, v) for lv, v in enumerate(row) if not math.isnan(v)]
        fired = set()
        for _, v in present:
            fired.update(code for code, k in _EACH if abs(v) >= k - TOL)
        values = [v for _, v in present]
        if len(values) >= 2 and max(values) - min(values) >= 4 - TOL:
            fired.add("R-4s")
        for lv, v in present:
            by_level[lv].append(v)
            across.append(v)
            across_run.append(r)
            seq = by_level[lv]
            _sequence_rules(lambda w, s=seq: s[-w:] if len(s) >= w else None, fired, "level")
            _sequence_rules(lambda w: across[-w:] if len(across) >= w else None, fired, "across")
            if len(across) >= 2 and across_run[-2] == r and _all_beyond(across[-2:], 2):
                fired.add("2-2s")  # within run across levels
        out.append(frozenset(fired))
    return out


def _time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def _series(n_runs, n_levels, rng):
    """Make in-control z with occasional shifts, so that every rule fires somewhere."""
    z = rng.standard_normal((n_runs, n_levels))
    shift = np.repeat(rng.choice([0.0, 0.0, 0.0, 1.5, -1.5], n_runs // 50 + 1), 50)[:n_runs]
    z += shift[:, None]
    z[rng.random((n_runs, n_levels)) < 0.02] = np.nan
    z[rng.random((n_runs, n_levels)) < 0.01] = 0.0
    return z


def bench_full(n_runs, n_ref, n_eval, rng):
    z = _series(n_runs, 2, rng)
    t_vec, _ = _time(lambda: rules_fired(z), 3)
    all_reject = dict.fromkeys(RULE_CODES, "reject")
    t_eval, _ = _time(lambda: evaluate(z[:n_eval], all_reject), 1)
    n_violations = len(evaluate(z[:n_eval], all_reject).violations)
    t0 = time.perf_counter()
    ref = reference_rules_fired(z[:n_ref])
    t_ref = (time.perf_counter() - t0) * n_runs / n_ref
    fired = rules_fired(z)
    if ref != fired[:n_ref]:
        bad = next(i for i, (a, b) in enumerate(zip(ref, fired[:n_ref], strict=True)) if a != b)
        raise SystemExit(f"MISMATCH at run {bad}: reference {ref[bad]} vectorised {fired[bad]}")
    counts = {c: sum(c in s for s in fired) for c in RULE_CODES}
    return t_vec, (t_eval, n_violations), t_ref, counts


def bench_incremental(priors, repeat, rng):
    z = _series(max(priors) + 1, 2, rng)
    z[-1] = [2.5, 2.2]  # the newest run fires rules, so violations are built
    rule_set = default_rule_set(2)
    out = {}
    for n in priors:
        recent = z[-(n + 1):]
        if evaluate_last(recent, rule_set, first_run=0).run != n:
            raise SystemExit("incremental evaluation returned the wrong run")
        out[n] = _time(lambda r=recent: evaluate_last(r, rule_set), repeat)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args(argv)
    n_runs, n_ref, n_eval, repeat = (
        (50_000, 5_000, 10_000, 300) if args.quick else (500_000, 20_000, 50_000, 2_000)
    )
    priors = (10, 100_000)
    rng = np.random.default_rng(SEED)

    t_vec, (t_eval, n_violations), t_ref, counts = bench_full(n_runs, n_ref, n_eval, rng)
    print(f"Westgard all {len(RULE_CODES)} rules, {n_runs:,} runs x 2 levels "
          f"= {2 * n_runs:,} results (seed {SEED})")
    print(f"  {'implementation':<44}{'seconds':>10}")
    print(f"  {'vectorised rules_fired (min of 3)':<44}{t_vec:>10.3f}")
    print(f"  {f'per-run loop, {n_ref:,} runs scaled x{n_runs / n_ref:g}':<44}{t_ref:>10.3f}")
    print(f"  agreement on the first {n_ref:,} runs: identical")
    print(f"  speed ratio loop / vectorised: {t_ref / t_vec:.0f}x (target >= 50x)")
    print("  runs fired per rule: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    print(f"  evaluate() with violations and points, first {n_eval:,} runs, all rules reject: "
          f"{t_eval:.3f} s ({n_violations:,} Violation objects; not part of the ratio)")

    inc = bench_incremental(priors, repeat, rng)
    print(f"\nIncremental evaluate_last, default 2-level rule set, {repeat:,} repetitions")
    print(f"  {'prior runs':>12}{'min us':>10}{'median us':>12}")
    for n, (t_min, t_med) in inc.items():
        print(f"  {n:>12,}{t_min * 1e6:>10.1f}{t_med * 1e6:>12.1f}")
    lo, hi = inc[priors[0]], inc[priors[1]]
    print(f"  ratio {priors[1]:,} / {priors[0]} prior runs: min {hi[0] / lo[0]:.2f}, "
          f"median {hi[1] / lo[1]:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
