"""Find the header row of a QC spreadsheet and which column holds each field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .records import ParseError
from .tabular_cells import cell_text, fold_header

__all__ = ["ALIASES", "FIELDS", "HEADER_SCAN", "Layout", "check_mapping", "find_layout",
           "header_target", "no_header", "require_layout"]

#: Target field → (Chinese label, accepted header spellings, compared after folding).
FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "test_code": ("项目", ("项目", "检验项目", "检测项目", "项目代码", "项目编码", "项目名称",
                          "分析物", "analyte", "test_code", "testcode", "test", "item")),
    "value": ("结果", ("结果", "测定值", "检测值", "结果值", "测定结果", "检测结果", "质控结果",
                      "value", "result")),
    "date": ("检测日期", ("检测日期", "日期", "测定日期", "质控日期", "检验日期", "date",
                         "datetime", "measured_at")),
    "time": ("时间", ("时间", "检测时间", "测定时间", "time")),
    "run_no": ("批次", ("批次", "运行批次", "测定批次", "run", "run_no", "runno")),
    "level": ("水平", ("水平", "质控水平", "浓度水平", "质控品水平", "level")),
    "qc_lot": ("质控批号", ("质控批号", "批号", "质控品批号", "质控物批号", "qc_lot", "lot")),
    "unit": ("单位", ("单位", "unit", "units")),
    "instrument": ("仪器", ("仪器", "检测仪器", "仪器名称", "仪器型号", "仪器编号", "仪器序列号",
                          "序列号", "设备", "设备编号", "instrument", "analyzer", "analyser",
                          "serial", "serial_no")),
    "control_name": ("质控品", ("质控品", "质控品名称", "质控物", "质控物名称", "control",
                               "control_name")),
    "client_id": ("记录编号", ("记录编号", "编号", "记录id", "id", "client_id")),
    "target_mean": ("靶值", ("靶值", "均值", "目标均值", "target_mean", "mean")),
    "target_sd": ("标准差", ("标准差", "目标标准差", "sd", "target_sd")),
    "sample_id": ("样本号", ("样本号", "样本编号", "sample_id")),
}
HEADER_SCAN = 20

ALIASES = {fold_header(a): name for name, (_, aliases) in FIELDS.items() for a in aliases}



@dataclass(frozen=True)
class Layout:
    header_row: int
    columns: dict[str, int]
    labels: dict[str, str]


def find_layout(
    rows: Sequence[tuple[int, Sequence[Any]]], mapping: Mapping[str, str]
) -> Layout | None:
    wanted = {fold_header(src): target for target, src in mapping.items()}
    for number, row in rows:
        columns: dict[str, int] = {}
        labels: dict[str, str] = {}
        for index, cell in enumerate(row):
            key = fold_header(cell)
            target = wanted.get(key)
            if target is None:
                alias = ALIASES.get(key)
                target = alias if alias not in mapping else None
            if target and target not in columns:
                columns[target] = index
                labels[target] = cell_text(cell)
        if "test_code" in columns and "value" in columns:
            return Layout(number, columns, labels)
    return None


def check_mapping(options: Mapping[str, Any]) -> dict[str, str]:
    mapping = options.get("columns") or {}
    if not isinstance(mapping, Mapping):
        raise ParseError("选项 columns 必须是“目标字段 → 列名”的映射")
    unknown = [str(k) for k in mapping if k not in FIELDS]
    if unknown:
        raise ParseError(f"未知的目标字段：{'、'.join(unknown)}（可选：{'、'.join(FIELDS)}）")
    if not all(isinstance(v, str) and v.strip() for v in mapping.values()):
        raise ParseError("选项 columns 中的列名必须是非空文字")
    return dict(mapping)


def no_header(mapping: Mapping[str, str]) -> NoReturn:
    names = "、".join(mapping.values()) if mapping else "“项目”“结果”“检测日期”"
    raise ParseError(f"找不到表头行：前 {HEADER_SCAN} 行中没有包含 {names} 等列的行")


def require_layout(layout: Layout | None, mapping: Mapping[str, str]) -> Layout:
    if layout is None:
        no_header(mapping)
    missing_sources = [src for target, src in mapping.items() if target not in layout.columns]
    if missing_sources:
        raise ParseError(f"找不到列：{'、'.join(missing_sources)}")
    if "date" not in layout.columns and "time" not in layout.columns:
        raise ParseError("缺少必需的列：检测日期")
    return layout


def header_target(header: str) -> str | None:
    """Return the target field a header's usual spelling maps to (None if unknown)."""
    return ALIASES.get(fold_header(header))
