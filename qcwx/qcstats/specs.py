"""Default quality specifications as data (QC_SPEC §5).

Two sets are kept side by side and never mixed:

* :data:`WST403_2024` — WS/T 403-2024 allowable CV%, allowable bias% and TEa per analyte,
  as transcribed in QC_SPEC §5 (``verified=False``: check against the official text before
  publishing). TEa is either a percentage or two-tier "A (≤ c); B%": the absolute limit A
  applies at or below concentration c, B% above (see
  :func:`qcwx.qcstats.sigma.tea_at_concentration`).
* :data:`NCCL_EQA` — EQA acceptance limits (NCCL), plus the regional allowable CV% for
  haematology and coagulation.

Where no allowable CV is given, NCCL practice takes one third of the EQA limit
(:func:`one_third_rule`, :func:`effective_allowable_cv`). The tables are defaults; the
service stores editable copies that keep ``source`` and ``version``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NCCL_EQA",
    "WST403_2024",
    "WST403_SOURCE",
    "AllowableCv",
    "EqaLimit",
    "QualitySpec",
    "Tea",
    "UnknownAnalyteError",
    "effective_allowable_cv",
    "get_eqa_limit",
    "get_spec",
    "one_third_rule",
]

WST403_SOURCE = "WS/T 403-2024"
_WST403_VERSION = "2024"
_NCCL_SOURCE = "NCCL EQA"
_REGIONAL_SOURCE = "regional list"
_SPEC_VERSION = "QC_SPEC §5"


class UnknownAnalyteError(KeyError, ValueError):
    """Raised when an analyte code has no entry in the specification set."""


@dataclass(frozen=True)
class Tea:
    """Total allowable error: a percentage, or two-tier "abs_limit (≤ threshold); pct%".

    Attributes
    ----------
    pct : float
        TEa in percent (the whole range, or above ``threshold`` when two-tier).
    abs_limit : float or None
        Absolute TEa at or below ``threshold``, in ``abs_unit``.
    abs_unit : str or None
        Unit of ``abs_limit`` and ``threshold`` (the analyte's unit).
    threshold : float or None
        Concentration c up to which (inclusive) the absolute limit applies.
    """

    pct: float
    abs_limit: float | None = None
    abs_unit: str | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        """Check that the parts are positive and that a two-tier TEa is complete."""
        tier = (self.abs_limit, self.abs_unit, self.threshold)
        if any(v is None for v in tier) and any(v is not None for v in tier):
            raise ValueError("a two-tier TEa needs abs_limit, abs_unit and threshold")
        if self.pct <= 0 or (self.abs_limit is not None and self.abs_limit <= 0):
            raise ValueError("TEa limits must be positive")
        if self.threshold is not None and self.threshold <= 0:
            raise ValueError("threshold must be positive")

    @property
    def two_tier(self) -> bool:
        """Return True for an "A (≤ c); B%" specification."""
        return self.abs_limit is not None

    def __str__(self) -> str:
        """Render as in QC_SPEC, e.g. ``0.21 mmol/L (≤3); 7%``."""
        if not self.two_tier:
            return f"{self.pct:g}%"
        return f"{self.abs_limit:g} {self.abs_unit} (≤{self.threshold:g}); {self.pct:g}%"


@dataclass(frozen=True)
class QualitySpec:
    """One analyte's quality specification (allowable CV%, bias%, TEa)."""

    code: str
    name_zh: str
    unit: str
    decimals: int
    allowable_cv: float
    allowable_bias: float
    tea: Tea
    source: str = WST403_SOURCE
    version: str = _WST403_VERSION
    verified: bool = False


@dataclass(frozen=True)
class EqaLimit:
    """One analyte's EQA acceptance limit (±limit_pct), with an allowable CV if one is given."""

    code: str
    name_zh: str
    unit: str
    limit_pct: float
    allowable_cv: float | None = None
    cv_source: str | None = None
    source: str = _NCCL_SOURCE
    version: str = _SPEC_VERSION
    verified: bool = False


@dataclass(frozen=True)
class AllowableCv:
    """An allowable CV% and where it came from."""

    value: float
    source: str


def _pct(code, name, unit, dec, cv, bias, tea):
    return QualitySpec(code, name, unit, dec, cv, bias, Tea(tea))


def _tier(code, name, unit, dec, cv, bias, abs_limit, threshold, pct):
    return QualitySpec(code, name, unit, dec, cv, bias, Tea(pct, abs_limit, unit, threshold))


_MMOL, _UMOL, _UL = "mmol/L", "µmol/L", "U/L"

#: WS/T 403-2024 defaults (QC_SPEC §5), in the usual Chinese lab units.
WST403_2024: tuple[QualitySpec, ...] = (
    _tier("K", "钾", _MMOL, 2, 2.5, 2.0, 0.2, 3.3, 6.0),
    _pct("Na", "钠", _MMOL, 1, 1.5, 1.5, 4.0),
    _pct("Cl", "氯", _MMOL, 1, 1.5, 1.5, 4.0),
    _tier("Ca", "钙", _MMOL, 2, 2.0, 2.0, 0.1, 2.0, 5.0),
    _pct("P", "磷", _MMOL, 2, 4.0, 3.0, 10.0),
    _tier("Mg", "镁", _MMOL, 2, 5.5, 5.5, 0.12, 0.8, 15.0),
    _tier("GLU", "葡萄糖", _MMOL, 2, 3.0, 2.0, 0.21, 3.0, 7.0),
    _tier("UREA", "尿素", _MMOL, 2, 3.0, 3.0, 0.32, 4.0, 8.0),
    _pct("UA", "尿酸", _UMOL, 0, 4.5, 4.5, 12.0),
    _tier("CREA", "肌酐", _UMOL, 0, 4.0, 5.5, 6.0, 50.0, 12.0),
    _pct("TP", "总蛋白", "g/L", 1, 2.0, 2.0, 5.0),
    _pct("ALB", "白蛋白", "g/L", 1, 2.5, 2.0, 6.0),
    _pct("TC", "总胆固醇", _MMOL, 2, 3.0, 4.0, 9.0),
    _pct("TG", "甘油三酯", _MMOL, 2, 5.0, 5.0, 14.0),
    _tier("HDL-C", "高密度脂蛋白胆固醇", _MMOL, 2, 6.0, 8.0, 0.16, 0.8, 20.0),
    _tier("LDL-C", "低密度脂蛋白胆固醇", _MMOL, 2, 6.0, 8.0, 0.4, 2.0, 20.0),
    _tier("TBIL", "总胆红素", _UMOL, 1, 6.0, 5.0, 2.4, 16.0, 15.0),
    _tier("ALT", "丙氨酸氨基转移酶", _UL, 0, 6.0, 5.0, 6.0, 40.0, 15.0),
    _tier("AST", "天门冬氨酸氨基转移酶", _UL, 0, 6.0, 5.0, 6.0, 40.0, 15.0),
    _tier("ALP", "碱性磷酸酶", _UL, 0, 5.0, 10.0, 9.0, 50.0, 18.0),
    _tier("GGT", "γ-谷氨酰基转移酶", _UL, 0, 3.5, 5.5, 4.4, 40.0, 11.0),
    _pct("LDH", "乳酸脱氢酶", _UL, 0, 4.0, 4.0, 11.0),
    _pct("CK", "肌酸激酶", _UL, 0, 5.5, 5.5, 15.0),
    _tier("AMY", "淀粉酶", _UL, 0, 4.5, 7.5, 9.0, 60.0, 15.0),
    _tier("FE", "铁", _UMOL, 1, 6.5, 4.5, 2.1, 14.0, 15.0),
    _tier("HbA1c", "糖化血红蛋白", "%", 1, 2.0, 3.0, 0.4, 6.7, 6.0),
    _tier("HbA1c-IFCC", "糖化血红蛋白(IFCC)", "mmol/mol", 0, 3.0, 3.6, 4.3, 50.0, 8.6),
    _tier("TSH", "促甲状腺激素", "mU/L", 3, 7.0, 8.0, 0.1, 0.5, 20.0),
    _tier("FT4", "游离甲状腺素", "pmol/L", 2, 7.0, 8.0, 2.4, 12.0, 20.0),
)


def _eqa(code, name, unit, limit, cv=None):
    return EqaLimit(code, name, unit, limit, cv, None if cv is None else _REGIONAL_SOURCE)


#: NCCL EQA acceptance limits (±%) named in QC_SPEC §5; haematology and coagulation rows
#: also carry the regional allowable CV%.
NCCL_EQA: tuple[EqaLimit, ...] = (
    _eqa("ALT", "丙氨酸氨基转移酶", _UL, 16.0),
    _eqa("HDL-C", "高密度脂蛋白胆固醇", _MMOL, 30.0),
    _eqa("LDL-C", "低密度脂蛋白胆固醇", _MMOL, 30.0),
    _eqa("WBC", "白细胞计数", "10^9/L", 15.0, 6.0),
    _eqa("RBC", "红细胞计数", "10^12/L", 6.0, 2.5),
    _eqa("Hb", "血红蛋白", "g/L", 6.0, 2.0),
    _eqa("PLT", "血小板计数", "10^9/L", 20.0, 8.0),
    _eqa("PT", "凝血酶原时间", "s", 15.0, 6.5),
    _eqa("APTT", "活化部分凝血活酶时间", "s", 15.0, 6.5),
    _eqa("FIB", "纤维蛋白原", "g/L", 20.0, 9.0),
)


def _lookup(code: str, table):
    key = code.strip().casefold()
    for row in table:
        if row.code.casefold() == key:
            return row
    raise UnknownAnalyteError(f"no specification for analyte {code!r}")


def get_spec(code: str, table: tuple[QualitySpec, ...] = WST403_2024) -> QualitySpec:
    """Return the quality specification of an analyte code (case-insensitive).

    Examples
    --------
    >>> str(get_spec("glu").tea)
    '0.21 mmol/L (≤3); 7%'
    """
    return _lookup(code, table)


def get_eqa_limit(code: str, table: tuple[EqaLimit, ...] = NCCL_EQA) -> EqaLimit:
    """Return the EQA acceptance limit of an analyte code (case-insensitive).

    Examples
    --------
    >>> get_eqa_limit("ALT").limit_pct
    16.0
    """
    return _lookup(code, table)


def one_third_rule(eqa_limit_pct: float) -> float:
    """Return the allowable CV% taken as one third of the EQA limit (NCCL practice).

    Examples
    --------
    >>> one_third_rule(15.0)
    5.0
    """
    if not eqa_limit_pct > 0:
        raise ValueError("EQA limit must be positive")
    return eqa_limit_pct / 3.0


def effective_allowable_cv(code: str, specs: tuple[QualitySpec, ...] = WST403_2024,
                           eqa: tuple[EqaLimit, ...] = NCCL_EQA) -> AllowableCv:
    """Return the allowable CV% of an analyte and its source.

    Order: the quality specification's allowable CV (WS/T 403-2024) → the allowable CV given
    with the EQA row (regional list) → one third of the EQA limit.

    Examples
    --------
    >>> effective_allowable_cv("PLT")
    AllowableCv(value=8.0, source='regional list')
    """
    try:
        spec = get_spec(code, specs)
        return AllowableCv(spec.allowable_cv, spec.source)
    except UnknownAnalyteError:
        row = get_eqa_limit(code, eqa)
    if row.allowable_cv is not None:
        return AllowableCv(row.allowable_cv, row.cv_source or row.source)
    return AllowableCv(one_third_rule(row.limit_pct), f"1/3 of {row.source} limit")
