"""The columns of the de-identified data set: one list feeds the CSV, its dictionary and the API.

Each column says what it means (Chinese, for the data dictionary), its type, unit and code
system. Nothing here names a lab, hospital, person, instrument serial or free text: labs
appear by their anonymous code, hospitals and devices by keyed pseudonyms
(:func:`qcwx.opendata.dataset.pseudonym`), QC levels by their index.
"""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "LOINC (http://loinc.org)"
UCUM = "UCUM (http://unitsofmeasure.org)"


@dataclass(frozen=True)
class Column:
    """One column of the data set as the data dictionary describes it."""

    name: str
    meaning: str
    type: str
    unit: str = ""
    code_system: str = ""


COLUMNS: tuple[Column, ...] = (
    Column("result_id", "结果编号（数据集内唯一，用于分页与引用）", "integer"),
    Column("region_code", "区域代码", "string", code_system="qcwx 区域代码"),
    Column("hospital_code", "医院匿名编码（按密钥生成的假名，不可反推医院）", "string"),
    Column("hospital_level", "医院等级（三级/二级/一级）", "string"),
    Column("hospital_type", "医院类型（综合医院、中医医院等）", "string"),
    Column("lab_code", "实验室匿名编码（与室间比对页面所用匿名编码相同）", "string"),
    Column("run_date", "检测日期（实验室当地日期）", "date", code_system="ISO 8601"),
    Column("run_no", "当日批次号", "integer"),
    Column("analyte_code", "检验项目本地代码", "string", code_system="qcwx 项目代码"),
    Column("analyte_loinc", "检验项目 LOINC 编码（按标本、属性、方法学选定）", "string",
           code_system=LOINC),
    Column("loinc_display", "LOINC 名称", "string", code_system=LOINC),
    Column("unit", "结果单位（实验室写法）", "string"),
    Column("unit_ucum", "结果单位 UCUM 编码", "string", code_system=UCUM),
    Column("qc_material", "质控品（厂家 名称）", "string"),
    Column("qc_lot", "质控品批号", "string"),
    Column("qc_level", "质控水平序号（1～3）", "integer"),
    Column("target_mean", "检测当日生效的靶值（均值）", "decimal", "同 unit_ucum", UCUM),
    Column("target_sd", "检测当日生效的标准差", "decimal", "同 unit_ucum", UCUM),
    Column("value", "质控结果", "decimal", "同 unit_ucum", UCUM),
    Column("z", "z 分数 =（结果 − 靶值）/ 标准差", "decimal", "1"),
    Column("run_status", "批次判定：accept 在控 · warning 警告 · reject 失控", "code",
           code_system="qcwx 批次判定"),
    Column("rules", "触发的 Westgard 规则（以 ; 分隔，如 1-3s;R-4s）", "string",
           code_system="Westgard 多规则代码"),
    Column("instrument_maker", "仪器厂家", "string"),
    Column("instrument_model", "仪器型号", "string"),
    Column("device_code", "仪器匿名编码（按密钥生成的假名，不含序列号）", "string"),
    Column("reagent_maker", "试剂厂家", "string"),
    Column("method_code", "方法学代码", "string", code_system="qcwx 方法学代码"),
    Column("method_principle", "方法学原理", "string"),
    Column("temperature", "反应温度", "string"),
)
NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
DICTIONARY_HEADER = ("name", "meaning", "type", "unit", "code_system")


def dictionary_rows() -> list[tuple[str, str, str, str, str]]:
    """Return the data dictionary: one row per column (name, meaning, type, unit, system)."""
    return [(c.name, c.meaning, c.type, c.unit, c.code_system) for c in COLUMNS]
