"""Parse the centre's lot form: level names and the maker's target lines (no database).

Target lines are what a centre copies from the maker's insert, one per analyte and level:
``项目代码, 水平, 靶值, SD`` (commas, full-width commas, tabs or spaces), e.g.
``GLU, 1, 5.32, 0.16``. Each error names the field and the line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from qcwx.errors import UserError
from qcwx.iqc.validation import parse_value

MAX_LEVELS = 3
LEVEL_NAME_MAX = 32
_SPLIT = re.compile(r"[,，\t ]+")


@dataclass(frozen=True)
class TargetLine:
    """One maker target: analyte code, level (index 1..3 or name), mean and SD."""

    line: int
    analyte_code: str
    level: str
    mean: float
    sd: float


def level_names(text: str | None) -> list[str]:
    """Return 1–3 level names from ``水平1，水平2`` (comma, full-width comma or newline)."""
    names = [n.strip() for n in re.split(r"[,，\n、]+", text or "") if n.strip()]
    if not names:
        raise UserError("请填写水平名称，如：水平1，水平2", field="levels")
    if len(names) > MAX_LEVELS:
        raise UserError(f"最多 {MAX_LEVELS} 个水平", field="levels")
    if len(set(names)) != len(names):
        raise UserError("水平名称不能重复", field="levels")
    if any(len(n) > LEVEL_NAME_MAX for n in names):
        raise UserError(f"水平名称最多 {LEVEL_NAME_MAX} 个字符", field="levels")
    return names


def target_lines(text: str | None) -> list[TargetLine]:
    """Parse the maker's targets, one ``项目代码, 水平, 靶值, SD`` per line (may be empty)."""
    out: list[TargetLine] = []
    for no, raw in enumerate((text or "").splitlines(), start=1):
        if not raw.strip():
            continue
        parts = [p for p in _SPLIT.split(raw.strip()) if p]
        if len(parts) != 4:
            raise UserError(f"厂商靶值第 {no} 行应为“项目代码, 水平, 靶值, SD”四项",
                            field="targets")
        mean = parse_value(parts[2], "targets")
        sd = parse_value(parts[3], "targets")
        if not math.isfinite(sd) or sd <= 0:
            raise UserError(f"厂商靶值第 {no} 行的 SD 必须大于 0", field="targets")
        out.append(TargetLine(no, parts[0].upper(), parts[1], mean, sd))
    return out
