"""Robust location and scale of a peer group: ISO 13528 Algorithm A, iterative 3-SD exclusion.

Split out of :mod:`qcwx.qcstats.peer` (which re-exports every public name), together with the
summation helpers both modules share. Every mean and SD here is accumulated with
``np.add.reduceat`` over values sorted ascending within a group, so a group's result does not
depend on the other groups computed with it: :func:`algorithm_a` and
:func:`algorithm_a_groups` agree bit for bit.

References
----------
ISO 13528:2022, *Statistical methods for use in proficiency testing by interlaboratory
comparison*, Annex C.3 (Algorithm A).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "ALGORITHM_A",
    "ITERATIVE_3SD",
    "RobustEstimate",
    "algorithm_a",
    "algorithm_a_groups",
    "iterative_3sd",
    "robust_estimate",
]

logger = logging.getLogger(__name__)


ALGORITHM_A = "algorithm_a"
ITERATIVE_3SD = "iterative_3sd"
_METHODS = (ALGORITHM_A, ITERATIVE_3SD)

_MAD_FACTOR = 1.483
_SD_FACTOR = 1.134
_WINSOR_FACTOR = 1.5
_REL_TOL = 1e-10
_MAX_ITERATIONS = 1000



@dataclass(frozen=True)
class RobustEstimate:
    """Location and scale of one group.

    Attributes
    ----------
    mean, sd : float
        x* and s* (Algorithm A) or the mean and SD after exclusion (iterative 3-SD).
    n : int
        Number of values used as input.
    iterations : int
        Updates performed (0 when the start values were already final).
    flagged : bool
        True when s* came out 0 and the classical SD replaced it (or when n = 1).
    method : str
        ``"algorithm_a"`` or ``"iterative_3sd"``.
    converged : bool
        False when the iteration limit was reached first.
    """

    mean: float
    sd: float
    n: int
    iterations: int
    flagged: bool
    method: str
    converged: bool = True

    @property
    def cv(self) -> float:
        """Return the robust CV% = 100·sd/|mean| (NaN when mean is 0)."""
        return 100.0 * self.sd / abs(self.mean) if self.mean != 0 else math.nan


# --------------------------------------------------------------------------- helpers


def _as_finite_1d(x, name: str, *, min_size: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size < min_size:
        raise ValueError(f"{name} needs at least {min_size} value(s), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain finite numbers only")
    return arr


def _seq_sum(v: np.ndarray) -> float:
    """Sum one vector exactly as a segment of ``np.add.reduceat`` sums it."""
    return float(np.add.reduceat(v, [0])[0])


def _median_sorted(s: np.ndarray) -> float:
    n = s.size
    return float((s[(n - 1) // 2] + s[n // 2]) / 2)


def _mean_sd(w: np.ndarray) -> tuple[float, float]:
    n = w.size
    mean = _seq_sum(w) / n
    d = w - mean
    return mean, float(np.sqrt(_seq_sum(d * d) / (n - 1)))


def _segment_nanmean(values: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Mean of the non-NaN values of each segment, summed ascending like :func:`_seq_sum`."""
    valid = ~np.isnan(values)
    v, s = values[valid], seg[valid]
    order = np.lexsort((v, s))
    counts = np.bincount(s, minlength=n_seg)
    out = np.full(n_seg, np.nan)
    nonempty = counts > 0
    if nonempty.any():
        out[nonempty] = np.add.reduceat(v[order], _starts(counts[nonempty])) / counts[nonempty]
    return out


def _starts(counts: np.ndarray) -> np.ndarray:
    starts = np.zeros(counts.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _scalar_or_array(value: np.ndarray):
    return float(value) if np.ndim(value) == 0 else value


# --------------------------------------------------------------------------- robust estimates


def algorithm_a(x) -> RobustEstimate:
    """Estimate a robust mean and SD by ISO 13528 Algorithm A.

    Start with x* = median(x), s* = 1.483·median|xᵢ − x*|; repeat δ = 1.5·s*,
    wᵢ = min(max(xᵢ, x* − δ), x* + δ), x* = mean(w), s* = 1.134·SD(w) (n − 1), until both
    change by less than 1e-10·max(1, |x*|) (at most 1000 updates). If s* = 0 (the MAD is 0
    when more than half of the values are equal; then x* stays the median and no update is
    made), the classical SD replaces it and the result is flagged.

    Parameters
    ----------
    x : array_like
        Finite values (here: lab means of one peer group), at least one.

    Returns
    -------
    RobustEstimate
        ``n = 1`` gives mean = x, sd = NaN, flagged.

    References
    ----------
    ISO 13528:2022, Annex C.3.1.

    Examples
    --------
    >>> r = algorithm_a([5.02, 5.10, 4.95, 5.05, 5.20, 4.98, 5.01, 5.08, 4.90, 6.10, 5.03, 4.99])
    >>> round(r.mean, 4), round(r.sd, 4)
    (5.0413, 0.1009)
    """
    s = np.sort(_as_finite_1d(x, "x"))
    n = s.size
    if n == 1:
        return RobustEstimate(float(s[0]), math.nan, 1, 0, True, ALGORITHM_A)
    x_star = _median_sorted(s)
    s_star = _MAD_FACTOR * _median_sorted(np.sort(np.abs(s - x_star)))
    iterations, converged = 0, s_star == 0  # MAD = 0: the winsorised values are all x*
    while iterations < _MAX_ITERATIONS and not converged:
        iterations += 1
        delta = _WINSOR_FACTOR * s_star
        new_x, sd = _mean_sd(np.clip(s, x_star - delta, x_star + delta))
        new_s = _SD_FACTOR * sd
        tol = _REL_TOL * max(1.0, abs(new_x))
        converged = abs(new_x - x_star) < tol and abs(new_s - s_star) < tol
        x_star, s_star = new_x, new_s
    flagged = s_star == 0
    sd = _mean_sd(s)[1] if flagged else s_star
    if flagged:
        logger.debug("Algorithm A: s* = 0 for n=%s, classical SD used", n)
    return RobustEstimate(x_star, sd, n, iterations, bool(flagged), ALGORITHM_A, converged)


def _algorithm_a_segments(values: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Run Algorithm A on contiguous segments of ``values`` (each sorted ascending).

    All groups iterate together; a group leaves the active set once it has converged, so
    every group performs exactly the updates :func:`algorithm_a` performs on it.
    """
    g = counts.size
    starts = _starts(counts)
    mean = np.full(g, np.nan)
    sd = np.full(g, np.nan)
    iterations = np.zeros(g, dtype=np.int64)
    converged = np.ones(g, dtype=bool)
    single = counts == 1
    mean[single] = values[starts[single]]
    multi = np.flatnonzero(~single)
    if multi.size == 0:
        return {"mean": mean, "sd": sd, "iterations": iterations, "flagged": single,
                "converged": converged}
    keep = np.repeat(~single, counts)
    vals, cnt = values[keep], counts[multi]
    st = _starts(cnt)
    seg = np.repeat(np.arange(multi.size), cnt)
    x_star = (vals[st + (cnt - 1) // 2] + vals[st + cnt // 2]) / 2
    dev = np.abs(vals - x_star[seg])
    dev = dev[np.lexsort((dev, seg))]
    s_star = _MAD_FACTOR * ((dev[st + (cnt - 1) // 2] + dev[st + cnt // 2]) / 2)
    done = s_star == 0  # MAD = 0: the winsorised values are all x*, nothing to iterate
    its = np.zeros(multi.size, dtype=np.int64)
    active = np.flatnonzero(~done)
    a_vals, a_cnt = vals[np.repeat(~done, cnt)], cnt[~done]
    for it in range(1, _MAX_ITERATIONS + 1):
        if active.size == 0:
            break
        a_st = _starts(a_cnt)
        delta = _WINSOR_FACTOR * s_star[active]
        lo = np.repeat(x_star[active] - delta, a_cnt)
        hi = np.repeat(x_star[active] + delta, a_cnt)
        w = np.clip(a_vals, lo, hi)
        new_x = np.add.reduceat(w, a_st) / a_cnt
        d = w - np.repeat(new_x, a_cnt)
        new_s = _SD_FACTOR * np.sqrt(np.add.reduceat(d * d, a_st) / (a_cnt - 1))
        tol = _REL_TOL * np.maximum(1.0, np.abs(new_x))
        conv = (np.abs(new_x - x_star[active]) < tol) & (np.abs(new_s - s_star[active]) < tol)
        x_star[active], s_star[active], its[active] = new_x, new_s, it
        if conv.any():
            done[active[conv]] = True
            a_vals = a_vals[np.repeat(~conv, a_cnt)]
            active, a_cnt = active[~conv], a_cnt[~conv]
    flagged = s_star == 0
    if flagged.any():
        for i in np.flatnonzero(flagged):
            s_star[i] = _mean_sd(vals[st[i]:st[i] + cnt[i]])[1]
    mean[multi], sd[multi], iterations[multi], converged[multi] = x_star, s_star, its, done
    flags = single.copy()
    flags[multi] = flagged
    return {"mean": mean, "sd": sd, "iterations": iterations, "flagged": flags,
            "converged": converged}


def algorithm_a_groups(values, groups) -> pd.DataFrame:
    """Run Algorithm A for many groups at once (vectorised across groups).

    Same formula and stopping rule as :func:`algorithm_a`; each group's result is identical
    to ``algorithm_a(values[groups == g])``.

    Parameters
    ----------
    values : array_like
        Finite values (lab means).
    groups : array_like
        Group label of each value (any hashable labels), same length.

    Returns
    -------
    pandas.DataFrame
        Indexed by group label (sorted): ``mean, sd, n, iterations, flagged, converged``.

    References
    ----------
    ISO 13528:2022, Annex C.3.1.
    """
    vals = _as_finite_1d(values, "values")
    codes, labels = pd.factorize(np.asarray(groups), sort=True)
    if codes.size != vals.size:
        raise ValueError("values and groups must have the same length")
    if (codes < 0).any():
        raise ValueError("groups must not contain missing labels")
    order = np.lexsort((vals, codes))
    counts = np.bincount(codes, minlength=len(labels))
    res = _algorithm_a_segments(vals[order], counts)
    return pd.DataFrame({"mean": res["mean"], "sd": res["sd"], "n": counts,
                         "iterations": res["iterations"], "flagged": res["flagged"],
                         "converged": res["converged"]}, index=pd.Index(labels, name="group"))


def iterative_3sd(x, k: float = 3.0, max_iterations: int = 100) -> RobustEstimate:
    """Estimate mean and SD with iterative k-SD exclusion.

    Repeat: m = mean, s = SD (n − 1) of the kept values; drop every value with
    |xᵢ − m| ≥ k·s (QC_SPEC §1.1: "beyond" a limit includes the limit); stop when nothing is
    dropped, s = 0, or fewer than 3 values would remain.

    Parameters
    ----------
    x : array_like
        Finite values, at least two.
    k : float
        Exclusion multiple, default 3.
    max_iterations : int
        Safety limit on exclusion rounds.

    Returns
    -------
    RobustEstimate
        ``iterations`` counts exclusion rounds that removed values; ``n`` is the input size;
        flagged when the final SD is 0.

    Examples
    --------
    >>> r = iterative_3sd([5.0, 5.1, 4.9, 5.0, 5.1, 4.9, 5.0, 5.1, 4.9, 5.0, 9.0])
    >>> round(r.mean, 3), r.iterations
    (5.0, 1)
    """
    if k <= 0:
        raise ValueError("k must be positive")
    s = np.sort(_as_finite_1d(x, "x", min_size=2))
    kept, rounds = s, 0
    mean, sd = _mean_sd(kept)
    while rounds < max_iterations and sd > 0:
        keep = np.abs(kept - mean) < k * sd
        if keep.all() or keep.sum() < 3:
            break
        kept, rounds = kept[keep], rounds + 1
        mean, sd = _mean_sd(kept)
    converged = rounds < max_iterations
    return RobustEstimate(mean, sd, s.size, rounds, bool(sd == 0), ITERATIVE_3SD, converged)


def robust_estimate(x, method: str = ALGORITHM_A) -> RobustEstimate:
    """Return :func:`algorithm_a` or :func:`iterative_3sd` of ``x`` by method name."""
    if method == ALGORITHM_A:
        return algorithm_a(x)
    if method == ITERATIVE_3SD:
        return iterative_3sd(x)
    raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
