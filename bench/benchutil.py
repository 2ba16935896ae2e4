"""Timing helpers shared by the benchmarks (run as scripts: ``python bench/bench_*.py``)."""

from __future__ import annotations

import gc
import resource
import time


def best_of(fn, repeat: int) -> float:
    """Return the fastest of ``repeat`` timed calls of ``fn`` (seconds), after a GC each."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def maxrss_mb() -> float:
    """Return the process's peak resident memory in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
