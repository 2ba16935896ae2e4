"""Checks of every catalogue value that reaches a computation, one place for every write path.

The admin forms, the CSV import, accepted proposals and any other ORM write end in the flush
check of ``qcwx.catalog.models``, which calls these functions; the admin forms call them first
to show the message beside the field. Each function takes plain values (a mapping of column
name to value, ``None`` for empty) and returns ``(field, Chinese message)`` pairs, empty when
the values are fine, so nothing here touches the database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from qcwx.catalog.code_checks import loinc_problems, unit_code_problems

__all__ = [
    "CHECKS",
    "DECIMALS_MAX",
    "LABELS",
    "LEVEL_INDEX_MAX",
    "PERCENT_MAX",
    "Problems",
    "analyte_problems",
    "clamp_decimals",
    "level_problems",
    "problems_for",
    "row_problems",
    "spec_problems",
    "system_problems",
]

DECIMALS_MAX = 6
LEVEL_INDEX_MAX = 3  # QC materials come in one to three levels (QC_SPEC §3)
PERCENT_MAX = 100.0  # an allowable CV, bias or TEa above 100 % judges nothing
VERSION_MAX = 10_000

Problems = list[tuple[str, str]]

LABELS = {
    "decimals": "小数位数",
    "plausible_low": "合理下限",
    "plausible_high": "合理上限",
    "allowable_cv": "允许CV(%)",
    "allowable_bias": "允许偏倚(%)",
    "tea_pct": "TEa(%)",
    "tea_abs": "TEa绝对值",
    "tea_abs_unit": "TEa绝对值单位",
    "tea_threshold": "绝对值适用上限",
    "version": "版本",
    "level_index": "水平序号",
    "label_version": "标签版本",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    if isinstance(value, bool) or not _is_number(value):
        return False
    return isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())


def _int_in(values: Mapping[str, Any], name: str, low: int, high: int,
            required: bool = True) -> Problems:
    value = values.get(name)
    if value is None:
        return [(name, f"“{LABELS[name]}”不能为空")] if required else []
    if not _is_int(value) or not low <= value <= high:
        return [(name, f"“{LABELS[name]}”须为 {low}～{high} 的整数")]
    return []


def _finite(values: Mapping[str, Any], name: str) -> Problems:
    value = values.get(name)
    if value is None:
        return []
    if not _is_number(value) or not math.isfinite(value):
        return [(name, f"“{LABELS[name]}”须为有限的数值")]
    return []


def _positive(values: Mapping[str, Any], name: str, high: float | None = None) -> Problems:
    value = values.get(name)
    if value is None:
        return []
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        return [(name, f"“{LABELS[name]}”须为大于 0 的数值")]
    if high is not None and value > high:
        return [(name, f"“{LABELS[name]}”不能超过 {high:g}")]
    return []


def analyte_problems(values: Mapping[str, Any]) -> Problems:
    """Check an analyte: decimals an integer 0–6; plausible limits finite, low below high."""
    problems = _int_in(values, "decimals", 0, DECIMALS_MAX)
    problems += _finite(values, "plausible_low") + _finite(values, "plausible_high")
    low, high = values.get("plausible_low"), values.get("plausible_high")
    if not problems and low is not None and high is not None and low >= high:
        problems.append(("plausible_high", "“合理上限”须大于“合理下限”"))
    return problems


def spec_problems(values: Mapping[str, Any]) -> Problems:
    """Check a quality specification (QC_SPEC §5).

    Allowable CV, bias and TEa are percentages in (0, 100]; a two-tier TEa needs its absolute
    limit (> 0), that limit's unit and the concentration threshold (> 0) together, plus the
    percentage that applies above the threshold. The version is a positive integer.
    """
    problems: Problems = []
    for name in ("allowable_cv", "allowable_bias", "tea_pct"):
        problems += _positive(values, name, PERCENT_MAX)
    problems += _positive(values, "tea_abs") + _positive(values, "tea_threshold")
    problems += _int_in(values, "version", 1, VERSION_MAX, required=False)
    tier = {name: values.get(name) for name in ("tea_abs", "tea_abs_unit", "tea_threshold")}
    if isinstance(tier["tea_abs_unit"], str) and not tier["tea_abs_unit"].strip():
        tier["tea_abs_unit"] = None
    given = [name for name, value in tier.items() if value is not None]
    if given and len(given) < len(tier):
        missing = next(name for name, value in tier.items() if value is None)
        problems.append((missing, "两段式 TEa 须同时填写“TEa绝对值”“TEa绝对值单位”和"
                                  "“绝对值适用上限”"))
    if given and values.get("tea_pct") is None:
        problems.append(("tea_pct", "两段式 TEa 须同时填写高于上限时适用的“TEa(%)”"))
    return problems


def level_problems(values: Mapping[str, Any]) -> Problems:
    """Check a QC level: its index orders the Westgard sequences, 1–3."""
    return _int_in(values, "level_index", 1, LEVEL_INDEX_MAX)


def system_problems(values: Mapping[str, Any]) -> Problems:
    """Check the numbers of a test system: the label version is a positive integer."""
    return _int_in(values, "label_version", 1, 1_000_000, required=False)

CHECKS: dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, Any]], Problems]]] = {
    "analyte": (("decimals", "plausible_low", "plausible_high"), analyte_problems),
    "quality_spec": (("allowable_cv", "allowable_bias", "tea_pct", "tea_abs", "tea_abs_unit",
                      "tea_threshold", "version"), spec_problems),
    "qc_level": (("level_index",), level_problems),
    "test_system": (("label_version",), system_problems),
    "analyte_loinc": (("loinc", "ucum"), loinc_problems),
    "unit_code": (("unit", "ucum"), unit_code_problems),
}


def problems_for(table: str, values: Mapping[str, Any]) -> Problems:
    """Return the problems of a row of ``table`` (a table name); none for unchecked tables."""
    check = CHECKS.get(table)
    return check[1](values) if check else []


def row_problems(obj: Any) -> Problems:
    """Return the problems of an ORM object of a checked table, read from its attributes."""
    check = CHECKS.get(getattr(obj, "__tablename__", ""))
    if check is None:
        return []
    names, function = check
    return function({name: _value_or_default(obj, name) for name in names})


def _value_or_default(obj: Any, name: str) -> Any:
    """Return the attribute, or the column's scalar default the INSERT will write for None."""
    value = getattr(obj, name, None)
    if value is None:
        default = getattr(obj.__table__.c[name].default, "arg", None)
        if default is not None and not callable(default):
            return default
    return value


def clamp_decimals(value: Any) -> int:
    """Return ``value`` as display decimals within 0–6 (2 when it is no number at all)."""
    if not _is_number(value) or not math.isfinite(value):
        return 2
    return int(min(max(int(value), 0), DECIMALS_MAX))
