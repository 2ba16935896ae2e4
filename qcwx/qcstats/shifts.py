"""Detect when a test system's bias shifted, and name the likely cause.

Detection is a two-sided tabular CUSUM (Page 1954; Montgomery, *Introduction to Statistical
Quality Control*, 8th ed., §9.1) on the daily mean z (the lab's SDI against its own target).
The series is first standardised by a baseline that a shift cannot inflate: the median of the
first ``baseline_n`` days as the in-control level and σ̂ = MR̄ / 1.128 (the average moving
range of consecutive days, as for an individuals chart), so a lab whose target is a little off
(a constant offset) or whose daily mean z is less spread than 1 (both levels averaged) is
judged on its own scatter.

Choice and trade-off: k = 1.0 (tuned to a 2 σ̂ shift, the size that makes a lab's results
disagree with its peers) and h = 5. By Siegmund's approximation, with known level and σ, the
one-sided in-control ARL is ≈ 10⁵ days, and a 2 σ̂ shift is found in ≈ 5.7 days, 1.5 σ̂ in ≈ 10
and 1 σ̂ in ≈ 38. With the level and σ̂ estimated from the series itself, simulated normal
series of 120 days give a false shift in ≈ 2.5 % of series (k = 0.75: 14 %; h = 6: 1.3 % but
slower), and a 2.5 σ̂ step is dated within ±3 days in 97 %. Real series carry recalibration
steps and heavier tails: the honest demo series are measured in ``bench/bench_shifts.py``.

After an alarm the change point is the last day the CUSUM statistic was zero (Montgomery
§9.1.3), the new level is re-estimated from the days since, and the CUSUM restarts centred
on it, so a shift that is later corrected shows as a second change back. The analysis is
retrospective, so the new level is the mean of at least ``LEVEL_DAYS`` days from the change
point (the days up to the alarm alone are few and noisy: re-centred on them, the CUSUM
would soon claim a spurious change back); a second alarm in the same direction within
``MERGE_DAYS`` still means the estimate was short, and the two are one shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

__all__ = [
    "Attribution", "ChangeEvent", "PeerSystem", "Shift", "attribute", "cusum", "detect_shifts",
    "moving_range_sigma", "nearby_changes",
]

#: Reference value and decision interval in units of σ̂ (see the module docstring).
K_DEFAULT = 1.0
H_DEFAULT = 5.0
BASELINE_N = 20
LEVEL_DAYS = 10  # the new level is the mean of at least this many days from the change
MERGE_DAYS = 7  # a same-direction alarm this soon after another is the same shift
D2 = 1.128  # E(|x_i − x_{i−1}|)/σ for normal data (d2 for n = 2)


@dataclass(frozen=True)
class Shift:
    """One detected change of level.

    ``start`` is the index of the first day at the new level, ``alarm`` the day the CUSUM
    crossed h; ``size`` is the change of mean z (in SD of the control limits, the unit labs
    read SDI in) between the segment before and the segment after; ``direction`` is ±1.
    """

    start: int
    alarm: int
    direction: int
    size: float
    before: float
    after: float
    n_after: int


def moving_range_sigma(x) -> float:
    """Return σ̂ = MR̄ / d2 with MR_i = |x_i − x_{i−1}| and d2 = 1.128 (individuals chart).

    Robust to a step change (only one moving range straddles it). NaN-free input expected.

    Examples
    --------
    >>> round(moving_range_sigma([0.0, 1.0, 0.0, 1.0]), 4)
    0.8865
    """
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        raise ValueError("need at least two values for a moving range")
    return float(np.mean(np.abs(np.diff(x)))) / D2


def cusum(x, k: float = K_DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """Return the upper and lower tabular CUSUM of standardised ``x`` (no reset).

    C⁺ᵢ = max(0, xᵢ − k + C⁺ᵢ₋₁), C⁻ᵢ = max(0, −xᵢ − k + C⁻ᵢ₋₁), C⁺₀ = C⁻₀ = 0
    (Montgomery eq. 9.2–9.3); an alarm is C > h (see :func:`detect_shifts`).

    Examples
    --------
    >>> up, lo = cusum([1.0, 2.0, -1.0], k=0.5)
    >>> up.tolist(), lo.tolist()
    ([0.5, 2.0, 0.5], [0.0, 0.0, 0.5])
    """
    x = np.asarray(x, dtype=float)
    up, lo = np.zeros(x.size), np.zeros(x.size)
    cu = cl = 0.0
    for i, v in enumerate(x):
        cu, cl = max(0.0, v - k + cu), max(0.0, -v - k + cl)
        up[i], lo[i] = cu, cl
    return up, lo


def detect_shifts(z, k: float = K_DEFAULT, h: float = H_DEFAULT,
                  baseline_n: int = BASELINE_N) -> list[Shift]:
    """Return the level shifts of a daily z series (see the module docstring for the method).

    Parameters
    ----------
    z : array_like
        Daily mean z in date order (days without QC left out, not NaN).
    k, h : float
        CUSUM reference value and decision interval, in units of σ̂.
    baseline_n : int
        Days whose median fixes the starting level.

    Returns
    -------
    list of Shift
        In time order; empty when the series is too short (< ``baseline_n`` + 2).
    """
    z = np.asarray(z, dtype=float)
    if np.isnan(z).any():
        raise ValueError("z must not contain NaN (leave days without QC out)")
    if z.size < baseline_n + 2:
        return []
    sigma = moving_range_sigma(z)
    if sigma <= 0:
        return []
    level = float(np.median(z[:baseline_n]))
    found: list[tuple[int, int, int]] = []
    cu = cl = 0.0
    last_zero_u = last_zero_l = seg_start = 0
    i = 0
    while i < z.size:
        s = (z[i] - level) / sigma
        cu, cl = max(0.0, s - k + cu), max(0.0, -s - k + cl)
        if cu == 0.0:
            last_zero_u = i + 1
        if cl == 0.0:
            last_zero_l = i + 1
        if cu > h or cl > h:
            direction = 1 if cu > h else -1
            start = max(last_zero_u if direction > 0 else last_zero_l, seg_start)
            if found and found[-1][2] == direction and start - found[-1][0] <= MERGE_DAYS:
                start = found.pop()[0]  # the first estimate of the new level was short
            found.append((start, i, direction))
            level = float(np.mean(z[start:max(i + 1, start + LEVEL_DAYS)]))
            cu = cl = 0.0
            seg_start = last_zero_u = last_zero_l = i + 1
        i += 1
    return _sized(z, found)


def _sized(z: np.ndarray, found: list[tuple[int, int, int]]) -> list[Shift]:
    """Size each change as mean(next segment) − mean(previous segment)."""
    bounds = [0] + [f[0] for f in found] + [z.size]
    out = []
    for j, (start, alarm, direction) in enumerate(found):
        before = float(np.mean(z[bounds[j]:start])) if start > bounds[j] else float(z[start])
        after = float(np.mean(z[start:bounds[j + 2]]))
        out.append(Shift(start, alarm, direction, after - before, before, after,
                         bounds[j + 2] - start))
    return out


# ------------------------------------------------------------------------------ attribution
@dataclass(frozen=True)
class PeerSystem:
    """A test system of the same analyte in the region, as attribution sees it.

    ``lots`` maps a lot kind (``reagent_lot``, ``calibrator_lot``, ``qc_lot``) to the lot in
    use around the shift date (None: not recorded); ``shift_dates`` are its detected change
    points with their directions.
    """

    system_id: int
    lab_id: int
    lots: dict[str, str | None]
    shifts: tuple[tuple[date, int], ...] = ()


@dataclass(frozen=True)
class ChangeEvent:
    """Something that changed in one test system: lot, calibration, limits, rules, upkeep."""

    day: date
    kind: str
    text: str


@dataclass(frozen=True)
class Attribution:
    """The likely cause of one shift.

    ``scope`` is ``shared`` (labs on one lot shifted together: ``lot_kind``/``lot`` name it,
    ``labs_shifted`` of ``labs_on_lot`` labs on that lot moved within the window) or ``local``
    (only this lab: ``changes`` lists what changed there near the date, nearest first).
    """

    scope: str
    lot_kind: str | None = None
    lot: str | None = None
    labs_shifted: int = 0
    labs_on_lot: int = 0
    shifted_labs: tuple[int, ...] = ()
    changes: tuple[tuple[int, ChangeEvent], ...] = field(default_factory=tuple)


LOT_KINDS = ("reagent_lot", "calibrator_lot", "qc_lot")


def attribute(system: PeerSystem, day: date, direction: int, peers: list[PeerSystem],
              changes: list[ChangeEvent], window_days: int = 7, min_labs: int = 3,
              min_share: float = 0.5) -> Attribution:
    """Name the likely cause of ``system``'s shift on ``day``.

    For each lot kind, the labs on the same lot as ``system`` (itself included) are counted,
    and those with a shift in the same direction within ±``window_days`` of ``day``. When
    at least ``min_labs`` labs and at least ``min_share`` of the lot's labs moved together,
    the lot is named (the kind with the highest share wins: a reagent lot shared by 4 of 4
    labs beats a QC lot shared by 4 of 30). Otherwise the shift is local and
    :func:`nearby_changes` lists what changed in this lab.
    """
    best: Attribution | None = None
    for kind in LOT_KINDS:
        lot = system.lots.get(kind)
        if not lot:
            continue
        on_lot = [p for p in peers if p.lots.get(kind) == lot and p.system_id != system.system_id]
        on_lot = [system, *on_lot]
        moved = {p.lab_id for p in on_lot if any(
            d == direction and abs((when - day).days) <= window_days for when, d in p.shifts)}
        moved.add(system.lab_id)
        labs = {p.lab_id for p in on_lot}
        share = len(moved) / len(labs)
        if len(moved) >= min_labs and share >= min_share and (
                best is None or share > best.labs_shifted / best.labs_on_lot):
            best = Attribution("shared", kind, lot, len(moved), len(labs), tuple(sorted(moved)))
    if best is not None:
        return best
    return Attribution("local", changes=tuple(nearby_changes(day, changes, window_days)))


def nearby_changes(day: date, changes: list[ChangeEvent], before_days: int = 7,
                   after_days: int = 2) -> list[tuple[int, ChangeEvent]]:
    """Return (days from the shift, change) within [day − before, day + after], nearest first.

    A change a few days *after* the detected change point is kept because the CUSUM's change
    point can land a day or two early on noisy data.
    """
    out = [((c.day - day).days, c) for c in changes
           if -before_days <= (c.day - day).days <= after_days]
    return sorted(out, key=lambda pair: (abs(pair[0]), pair[0] > 0))
