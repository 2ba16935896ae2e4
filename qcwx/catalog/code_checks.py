"""Checks of LOINC and UCUM code rows, pure (no database), for the catalogue flush check.

A LOINC code is ``<1–7 digits>-<check digit>``; the check digit is LOINC's mod-10 algorithm
(LOINC Users' Guide, appendix "Calculating Mod 10 check digits"): the digits in odd places
counted from the right form a number that is doubled, the even-place digits are written in
front of it, the digits of the result are summed, and the check digit brings the sum to the
next multiple of ten. A typing error in a code therefore cannot slip into an export.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["LOINC_PATTERN", "loinc_check_digit", "loinc_problems", "loinc_valid",
           "unit_code_problems"]

LOINC_PATTERN = re.compile(r"(\d{1,7})-(\d)")
# UCUM's printable ASCII alphabet (no spaces); a Chinese or µ character is not UCUM.
_UCUM = re.compile(r"[!-~]{1,32}")
Problems = list[tuple[str, str]]


def loinc_check_digit(body: str) -> int:
    """Return the mod-10 check digit of a LOINC code's number part (``"2345"`` → 7).

    >>> loinc_check_digit("2345"), loinc_check_digit("6690"), loinc_check_digit("718")
    (7, 2, 7)
    """
    digits = body[::-1]
    odd = digits[0::2][::-1]
    even = digits[1::2][::-1]
    total = sum(int(c) for c in even + str(int(odd) * 2))
    return (10 - total % 10) % 10


def loinc_valid(code: str | None) -> bool:
    """Return whether ``code`` is a well-formed LOINC code with a correct check digit."""
    match = LOINC_PATTERN.fullmatch((code or "").strip())
    return bool(match) and loinc_check_digit(match.group(1)) == int(match.group(2))


def _text(values: Mapping[str, Any], name: str) -> str:
    value = values.get(name)
    return value.strip() if isinstance(value, str) else ""


def loinc_problems(values: Mapping[str, Any]) -> Problems:
    """Check an analyte's LOINC row: a valid code, and the UCUM unit it is reported in."""
    problems: Problems = []
    code = _text(values, "loinc")
    if not code:
        problems.append(("loinc", "“LOINC 编码”不能为空"))
    elif not loinc_valid(code):
        problems.append(("loinc", f"LOINC 编码“{code[:20]}”格式或校验位错误（例：2345-7）"))
    problems += _ucum(values, "ucum")
    return problems


def unit_code_problems(values: Mapping[str, Any]) -> Problems:
    """Check a unit's UCUM row: the unit as labs write it and a UCUM code."""
    if not _text(values, "unit"):
        return [("unit", "“单位”不能为空")]
    return _ucum(values, "ucum")


def _ucum(values: Mapping[str, Any], name: str) -> Problems:
    code = _text(values, name)
    if not code:
        return [(name, "“UCUM 编码”不能为空")]
    if not _UCUM.fullmatch(code):
        return [(name, f"UCUM 编码“{code[:32]}”只能由英文字母、数字和符号组成（例：umol/L）")]
    return []
