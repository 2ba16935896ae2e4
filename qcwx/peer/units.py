"""Compare units as labs type them: one key per unit, whatever the spelling.

A test system's unit is free text (``TestSystem.unit``, ``Analyte.unit``, up to 32 characters)
typed by labs or read from LIS exports, so the same unit arrives as ``mmol/L``, ``mmol/l``,
``ｍｍｏｌ／Ｌ`` (full-width, from Chinese input methods), ``µmol/L`` (micro sign U+00B5),
``μmol/L`` (Greek mu U+03BC) or ``umol/L``. :func:`unit_key` folds these to one key so peer
groups never split over spelling and never pool different units (QC_SPEC §3: the unit is part
of every group level; mg/dL and mmol/L are never pooled). Keys are for grouping and
comparison only; pages keep showing the unit as the lab wrote it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = ["KNOWN_UNITS", "unit_key", "unit_keys", "unit_known"]

_SUPERSCRIPTS = str.maketrans({"⁰": "0", "¹": "1", "²": "2", "³": "3", "⁴": "4", "⁵": "5",
                               "⁶": "6", "⁷": "7", "⁸": "8", "⁹": "9", "⁻": "-"})
_SUPERSCRIPT_RUN = re.compile("([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)")
_MICRO = str.maketrans({"μ": "u", "µ": "u"})
_SPACES = re.compile(r"\s+")
_TIMES_TEN = re.compile(r"^[×x*]\s*(?=10\^)")

#: Units seen in clinical chemistry, immunoassay and haematology QC, as keys.
KNOWN_UNITS = frozenset({
    "mmol/l", "umol/l", "nmol/l", "pmol/l", "mol/l", "mg/dl", "g/dl", "g/l", "mg/l", "ug/l",
    "ng/ml", "pg/ml", "ug/dl", "u/l", "iu/l", "mu/l", "miu/l", "uiu/ml", "miu/ml", "iu/ml",
    "ku/l", "%", "mmol/mol", "s", "sec", "inr", "10^9/l", "10^12/l", "fl", "pg", "mg/24h",
    "meq/l", "ratio",
})


def unit_key(unit: str | None) -> str:
    """Return the comparison key of a unit: NFKC, micro → ``u``, no spaces, lower case.

    Superscript powers become ``^n`` first (``10⁹/L`` → ``10^9/l``, where NFKC alone would
    give ``109/l``) and a leading ``×`` before ``10^`` is dropped. A missing unit gives ``""``.

    Examples
    --------
    >>> [unit_key(u) for u in ("mmol/L", " mmol / l ", "ｍｍｏｌ／Ｌ")]
    ['mmol/l', 'mmol/l', 'mmol/l']
    >>> unit_key("µmol/L") == unit_key("μmol/L") == unit_key("umol/L")
    True
    >>> unit_key("×10⁹/L"), unit_key("mg/dL") == unit_key("mmol/L")
    ('10^9/l', False)
    """
    if unit is None or (isinstance(unit, float) and np.isnan(unit)):
        return ""
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group(1).translate(_SUPERSCRIPTS), str(unit))
    text = unicodedata.normalize("NFKC", text).translate(_MICRO)
    text = _SPACES.sub("", text).casefold()
    return _TIMES_TEN.sub("", text)


def unit_keys(units: Iterable) -> np.ndarray:
    """Return :func:`unit_key` of many units (normalising each distinct spelling once)."""
    codes, uniques = pd.factorize(pd.Series(list(units), dtype=object), use_na_sentinel=False)
    keys = np.array([unit_key(u) for u in uniques], dtype=object)
    return keys[codes] if len(codes) else np.array([], dtype=object)


def unit_known(unit: str | None) -> bool:
    """Return True when the unit is one of :data:`KNOWN_UNITS` (after normalisation)."""
    return unit_key(unit) in KNOWN_UNITS
