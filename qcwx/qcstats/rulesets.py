"""Westgard rule codes, the roles a rule takes, and the rule sets of QC_SPEC 1.2 and 1.4.

A rule set maps every code of `RULE_CODES` to a role of `ROLES`. Re-exported by
:mod:`qcwx.qcstats.westgard`, which evaluates them.

References
----------
.. [1] Westgard JO, Barry PL, Hunt MR, Groth T. A multi-rule Shewhart chart for quality
   control in clinical chemistry. Clin Chem. 1981;27(3):493-501.
.. [2] Westgard JO, Westgard SA. Westgard Sigma Rules. https://www.westgard.com
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["ROLES", "RULE_CODES", "default_rule_set", "sigma_rule_set", "validate_rule_set"]

RULE_CODES: tuple[str, ...] = (
    "1-2s", "1-2.5s", "1-3s", "1-3.5s", "2-2s", "R-4s", "2of3-2s", "3-1s", "4-1s",
    "6x", "7T", "8x", "9x", "10x", "12x",
)
"""Every rule code, in display order."""

ROLES: tuple[str, ...] = ("off", "warning", "reject")
"""Roles a rule can take in a rule set."""


def _check_codes(rules: Iterable[str] | str | None) -> tuple[str, ...]:
    if rules is None:
        return RULE_CODES
    wanted = {rules} if isinstance(rules, str) else set(rules)
    unknown = wanted.difference(RULE_CODES)
    if unknown:
        shown = ", ".join(sorted(map(repr, unknown)))
        raise ValueError(f"unknown rule code(s) {shown}; known: {', '.join(RULE_CODES)}")
    return tuple(c for c in RULE_CODES if c in wanted)


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

