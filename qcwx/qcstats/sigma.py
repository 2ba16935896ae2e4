"""Performance metrics: total error, sigma, TEa at a concentration, MU (QC_SPEC §4).

All bias, CV and TEa values are percentages of the concentration unless said otherwise.

References
----------
Westgard JO. *Six Sigma Quality Design and Control*, 2nd ed., Westgard QC (2006): sigma
metric σ = (TEa − |bias|)/CV and the method decision chart.
Westgard JO, Carey RN, Wold S. Criteria for judging precision and accuracy in method
development and evaluation. Clin Chem 1974;20:825–833 (total error TE = |bias| + k·CV).
ISO/TS 20914:2019 and Nordtest TR 537: u_Rw, u_bias and U = 2·u_c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .specs import Tea

__all__ = [
    "DECISION_MULTIPLIERS",
    "TE_FACTORS",
    "DecisionLine",
    "MeasurementUncertainty",
    "TeaAtConcentration",
    "decision_chart_lines",
    "measurement_uncertainty",
    "sigma_metric",
    "tea_at_concentration",
    "total_error",
]

TE_FACTORS = (1.65, 1.96, 2.0)
DECISION_MULTIPLIERS = (2, 3, 4, 5, 6)


@dataclass(frozen=True)
class TeaAtConcentration:
    """TEa that applies at one concentration, in percent and in the analyte's unit."""

    concentration: float
    pct: float
    absolute: float
    tier: str  # "absolute" (at or below the threshold) or "percent"


@dataclass(frozen=True)
class DecisionLine:
    """One line |bias| + m·CV = TEa of a method decision chart (x = CV%, y = |bias|%).

    The line runs from (0, TEa) to (TEa/m, 0); points below it have σ > m.
    """

    m: int
    label: str
    cv_intercept: float
    bias_intercept: float

    @property
    def points(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Return the two end points ((0, TEa), (TEa/m, 0)) as (x, y) pairs."""
        return ((0.0, self.bias_intercept), (self.cv_intercept, 0.0))


@dataclass(frozen=True)
class MeasurementUncertainty:
    """Top-down measurement uncertainty (percent): u_Rw, u_bias, u_c and U (k = 2)."""

    u_rw: float
    u_bias: float
    u_c: float
    expanded: float
    k: float = 2.0
    n_bias: int = 0


def _finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number")
    return v


def total_error(bias: float, cv: float, k: float = 1.65) -> float:
    """Return the total error TE% = |Bias%| + k·CV%.

    Parameters
    ----------
    bias, cv : float
        Bias% and CV% (CV ≥ 0).
    k : float
        Coverage factor, one of 1.65 (default), 1.96, 2.

    Examples
    --------
    >>> round(total_error(1.5, 1.8), 2)
    4.47
    """
    bias, cv = _finite("bias", bias), _finite("cv", cv)
    if cv < 0:
        raise ValueError("cv must not be negative")
    if k not in TE_FACTORS:
        raise ValueError(f"k must be one of {TE_FACTORS}, got {k!r}")
    return abs(bias) + k * cv


def sigma_metric(tea: float, bias: float, cv: float) -> float:
    """Return the sigma metric σ = (TEa% − |Bias%|)/CV%.

    Examples
    --------
    >>> round(sigma_metric(7.0, 1.5, 1.8), 2)
    3.06
    """
    tea, bias, cv = _finite("tea", tea), _finite("bias", bias), _finite("cv", cv)
    if tea <= 0:
        raise ValueError("tea must be positive")
    if cv <= 0:
        raise ValueError("cv must be positive for a sigma metric")
    return (tea - abs(bias)) / cv


def tea_at_concentration(spec: Tea, concentration: float) -> TeaAtConcentration:
    """Return the TEa that applies at a concentration (e.g. the control level's mean).

    For a two-tier specification "A (≤ c); B%", the absolute limit A applies when
    concentration ≤ c (TEa% = 100·A/concentration), B% above it (absolute = B·conc/100).
    ``concentration`` must be in the specification's unit.

    Examples
    --------
    >>> t = tea_at_concentration(Tea(7.0, 0.21, "mmol/L", 3.0), 3.0)
    >>> t.tier, round(t.pct, 6), t.absolute
    ('absolute', 7.0, 0.21)
    """
    conc = _finite("concentration", concentration)
    if conc <= 0:
        raise ValueError("concentration must be positive")
    if spec.two_tier and conc <= spec.threshold:
        return TeaAtConcentration(conc, 100.0 * spec.abs_limit / conc, spec.abs_limit,
                                  "absolute")
    return TeaAtConcentration(conc, spec.pct, spec.pct * conc / 100.0, "percent")


def decision_chart_lines(
    tea: float, multipliers: Sequence[int] = DECISION_MULTIPLIERS
) -> tuple[DecisionLine, ...]:
    """Return the method decision chart lines |bias| + m·CV = TEa for m = 2…6.

    Examples
    --------
    >>> [line.cv_intercept for line in decision_chart_lines(12.0)]
    [6.0, 4.0, 3.0, 2.4, 2.0]
    """
    tea = _finite("tea", tea)
    if tea <= 0:
        raise ValueError("tea must be positive")
    if any(m <= 0 for m in multipliers):
        raise ValueError("multipliers must be positive")
    return tuple(DecisionLine(int(m), f"{m}σ", tea / m, tea) for m in multipliers)


def measurement_uncertainty(cv_cumulative: float, biases) -> MeasurementUncertainty:
    """Estimate measurement uncertainty top-down from IQC and peer bias.

    u_Rw = cumulative IQC CV%; u_bias = √(Σ biasᵢ²/n) (RMS of the bias% vs peer);
    u_c = √(u_Rw² + u_bias²); U = 2·u_c.

    Examples
    --------
    >>> mu = measurement_uncertainty(3.0, [4.0, -4.0])
    >>> mu.u_bias, mu.u_c, mu.expanded
    (4.0, 5.0, 10.0)
    """
    u_rw = _finite("cv_cumulative", cv_cumulative)
    if u_rw < 0:
        raise ValueError("cv_cumulative must not be negative")
    b = np.asarray(biases, dtype=np.float64).ravel()
    if b.size == 0 or not np.all(np.isfinite(b)):
        raise ValueError("biases must be one or more finite numbers")
    u_bias = math.sqrt(float(np.mean(b * b)))
    u_c = math.hypot(u_rw, u_bias)
    return MeasurementUncertainty(u_rw, u_bias, u_c, 2.0 * u_c, 2.0, int(b.size))
