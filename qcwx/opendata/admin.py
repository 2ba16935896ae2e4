"""Admin pages of the LOINC and UCUM mappings: the centre keeps them, every edit is audited.

Unlike the rest of the shared catalogue (which a centre only proposes changes to), codes
are the centre's to maintain: it is the one that publishes the region's data set. The
rows go through the same flush check as every catalogue row (:mod:`qcwx.catalog.code_checks`:
LOINC check digit, UCUM alphabet) and through the audit log like every write.
"""

from __future__ import annotations

from typing import Any

from qcwx.admin.catalogue import SharedCatalogueView


class CodeView(SharedCatalogueView):
    """A code table the centre may create, edit and delete rows of."""

    centre_operations = frozenset({"create", "edit", "delete"})

    def get_list_row_actions(self) -> list[Any]:
        """Offer no "propose a change" link: the centre edits codes directly."""
        return super(SharedCatalogueView, self).get_list_row_actions()


class AnalyteLoincView(CodeView):
    """LOINC codes of analytes (several per analyte: specimen, property, method)."""

    column_list = ("analyte", "loinc", "display", "specimen", "property", "method", "ucum",
                   "is_default", "source")
    column_searchable_list = ("loinc", "display", "analyte.code", "analyte.name")
    column_filters = ("analyte.code", "specimen", "is_default")
    form_columns = column_list
    form_args = {"method": {"description": "仅当该 LOINC 编码限定方法学时填写方法编码（如 BCG）"},
                 "ucum": {"description": "该编码对应的 UCUM 单位（如 mmol/L）"}}
    column_labels = {"analyte": "检验项目", "loinc": "LOINC 编码", "display": "LOINC 名称",
                     "specimen": "标本", "property": "属性", "method": "方法编码",
                     "ucum": "UCUM 单位", "is_default": "默认", "source": "来源",
                     "analyte.code": "项目代码", "analyte.name": "项目名称"}


class UnitCodeView(CodeView):
    """UCUM codes of units as labs write them."""

    column_list = ("unit", "ucum", "source")
    column_searchable_list = ("unit", "ucum")
    form_columns = column_list
    column_labels = {"unit": "单位（实验室写法）", "ucum": "UCUM 编码", "source": "来源"}
