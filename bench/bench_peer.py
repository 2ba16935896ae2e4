"""Benchmark peer-group statistics (qcwx.qcstats.peer).

Usage::

    .venv/bin/python bench/bench_peer.py [--quick] [--repeat N]

Builds a national-scale month with a fixed seed — 5,000 labs × 30 analytes × 2 levels ×
30 days = 9,000,000 results (``--quick``: 500 labs, 900,000 results) with per-lab biases and
CVs — then, in the same run:

1. times ``group_statistics(df, by=["analyte", "level"])`` (per-lab n/mean/SD/CV, Algorithm A
   per peer group, group CV, SDI/CVR/bias, ranks) against one
   ``df.groupby(["analyte", "level", "lab"]).value.agg(["mean", "std", "count"])`` and prints
   the ratio (target ≤ 3×), best of ``--repeat`` runs each;
2. prints peak memory: process max RSS and the tracemalloc peak of one recompute;
3. times the incremental path for one new result — update the lab's running sums
   (n, Σx, Σx²) and re-run Algorithm A on the affected group's lab means — for a group of
   50 labs and one of 5,000 labs, and prints that ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import best_of, maxrss_mb  # noqa: E402 (bench/ is on sys.path as a script)

from qcwx.qcstats.peer import (  # noqa: E402
    LabMoments,
    group_statistics,
    summarise_group,
    update_lab_moments,
)

SEED = 20240601
N_ANALYTES, N_LEVELS, N_DAYS = 30, 2, 30


def build_frame(n_labs: int, seed: int = SEED) -> pd.DataFrame:
    """Build one month of results in arrival order (day-major), fixed seed."""
    rng = np.random.default_rng(seed)
    targets = rng.uniform(1.0, 200.0, size=(N_ANALYTES, N_LEVELS))
    lab_bias = rng.normal(0.0, 0.02, size=(n_labs, N_ANALYTES, N_LEVELS))
    lab_cv = rng.uniform(0.01, 0.06, size=(n_labs, N_ANALYTES, N_LEVELS))
    per_day = n_labs * N_ANALYTES * N_LEVELS
    lab = np.repeat(np.arange(n_labs, dtype=np.int32), N_ANALYTES * N_LEVELS)
    analyte = np.tile(np.repeat(np.arange(N_ANALYTES, dtype=np.int8), N_LEVELS), n_labs)
    level = np.tile(np.arange(1, N_LEVELS + 1, dtype=np.int8), n_labs * N_ANALYTES)
    centre = (targets[None] * (1.0 + lab_bias)).ravel()
    spread = (centre * lab_cv.ravel())
    value = np.empty(per_day * N_DAYS)
    for d in range(N_DAYS):
        value[d * per_day:(d + 1) * per_day] = centre + spread * rng.standard_normal(per_day)
    names = [f"A{i:02d}" for i in range(N_ANALYTES)]
    return pd.DataFrame({
        "lab": np.tile(lab, N_DAYS),
        "analyte": pd.Categorical.from_codes(np.tile(analyte, N_DAYS), categories=names),
        "level": np.tile(level, N_DAYS),
        "day": np.repeat(np.arange(1, N_DAYS + 1, dtype=np.int8), per_day),
        "value": value,
    })




def bench_incremental(n_labs: int, seed: int = SEED) -> float:
    """Return seconds per incremental update for a group of n_labs labs."""
    rng = np.random.default_rng(seed + n_labs)
    data = 5.0 * (1 + rng.normal(0, 0.02, (n_labs, 1))) * (1 + rng.normal(0, 0.03, (n_labs, 30)))
    moments = [update_lab_moments(None, add=row) for row in data]
    means = np.array([m.mean for m in moments])
    cvs = np.array([m.cv for m in moments])
    ns = np.array([m.n for m in moments], dtype=np.int64)
    state = {"i": 0}

    def one_update() -> None:
        i = state["i"] % n_labs
        state["i"] += 1
        m: LabMoments = update_lab_moments(moments[i], add=5.0 + 0.01 * (i % 7))
        moments[i] = m
        means[i], cvs[i], ns[i] = m.mean, m.cv, m.n
        summarise_group(means, cvs, ns)

    number = max(20, 20000 // n_labs)
    return min(timeit.repeat(one_update, number=number, repeat=5)) / number


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 labs instead of 5,000")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per variant (best)")
    args = parser.parse_args(argv)
    n_labs = 500 if args.quick else 5000
    keys = ["analyte", "level", "lab"]

    t0 = time.perf_counter()
    df = build_frame(n_labs)
    print(f"frame: {len(df):,} rows ({n_labs:,} labs × {N_ANALYTES} analytes × {N_LEVELS} "
          f"levels × {N_DAYS} days), {df.memory_usage(deep=True).sum() / 2**20:.0f} MiB, "
          f"built in {time.perf_counter() - t0:.1f} s; max RSS {maxrss_mb():.0f} MiB")

    result = group_statistics(df, by=["analyte", "level"])
    assert len(result.groups) == N_ANALYTES * N_LEVELS
    assert len(result.labs) == n_labs * N_ANALYTES * N_LEVELS

    def baseline() -> None:
        df.groupby(keys).value.agg(["mean", "std", "count"])

    def full() -> None:
        group_statistics(df, by=["analyte", "level"])

    t_base, t_full = 0.0, 0.0
    t_base = best_of(baseline, args.repeat)
    t_full = best_of(full, args.repeat)
    ratio = t_full / t_base
    print(f"pandas groupby(lab keys).agg(mean,std,count): {t_base:.3f} s (best of {args.repeat})")
    print(f"group_statistics full recompute:              {t_full:.3f} s (best of {args.repeat})")
    print(f"ratio full / groupby: {ratio:.2f}x  (target <= 3x: {'OK' if ratio <= 3 else 'FAIL'})")
    g = result.groups
    print(f"groups: {len(g)}, Algorithm A iterations min/median/max "
          f"{g.iterations.min()}/{int(g.iterations.median())}/{g.iterations.max()}, "
          f"flagged {int(g.flagged.sum())}, not converged {int((~g.converged).sum())}")

    tracemalloc.start()
    group_statistics(df, by=["analyte", "level"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak memory: recompute (tracemalloc) {peak / 2**20:.0f} MiB; "
          f"process max RSS {maxrss_mb():.0f} MiB")

    t50, t5000 = bench_incremental(50), bench_incremental(5000)
    print(f"incremental update (moments + Algorithm A on the group): 50 labs {t50 * 1e3:.3f} ms, "
          f"5,000 labs {t5000 * 1e3:.3f} ms, ratio {t5000 / t50:.1f}x; "
          f"vs full recompute {t_full / t5000:.0f}x faster")
    return 0 if ratio <= 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
