"""Admin views of the catalogue every region shares: the platform admin edits, centres read.

A centre sees analytes, quality specifications, reagents, calibrators, QC materials, methods
and QC lots, and proposes changes (``catalogue_proposals``); creating, editing and deleting
them is refused with 403 on the server, whatever the request looks like. The one exception:
a centre may register a new QC lot with its levels (its labs change lots every few months);
an existing lot it does not change. Every save runs the checks of
``qcwx.catalog.validation`` first, so a bad value comes back as a message beside the field.
"""

from __future__ import annotations

from typing import Any

from flask import abort, has_request_context
from flask_admin.contrib.sqla.form import AdminModelConverter
from flask_admin.model.form import converts
from flask_admin.model.template import EndpointLinkRowAction
from flask_login import current_user
from wtforms import fields

from qcwx.admin.views import QcModelView
from qcwx.catalog.models import QcLevel
from qcwx.catalog.validation import CHECKS, problems_for, row_problems
from qcwx.errors import Forbidden, UserError
from qcwx.extensions import db

READ_ONLY_MESSAGE = "共享目录由平台管理员维护；如需新增或修改，请提交修改建议"
WRITE_VIEWS = {"create_view": "create", "edit_view": "edit", "delete_view": "delete",
               "action_view": "delete", "ajax_update": "edit"}


class FloatModelConverter(AdminModelConverter):
    """Flask-Admin's converter plus FLOAT/DOUBLE columns.

    Since SQLAlchemy 2.1 ``Float`` no longer derives from ``Numeric``; Flask-Admin then finds
    no converter and silently leaves such columns (plausible limits, CV, bias, TEa) out of
    the form.
    """

    @converts("Float")  # includes Double
    def handle_float_types(self, field_args: dict[str, Any], **_extra: Any) -> Any:
        """Return a float input for a FLOAT/DOUBLE column."""
        return fields.FloatField(**field_args)


def _is_platform_admin() -> bool:
    return (has_request_context() and current_user.is_authenticated
            and current_user.role == "admin")


class SharedCatalogueView(QcModelView):
    """A shared catalogue table: writable for the platform admin only, checked on every save."""

    list_template = "admin/shared_list.html"
    model_form_converter = FloatModelConverter
    # The operations a centre may do here as well ("create" for QC lots).
    centre_operations: frozenset[str] = frozenset()

    def may(self, operation: str) -> bool:
        """Return whether the current user may ``create``, ``edit`` or ``delete`` rows here."""
        return _is_platform_admin() or operation in self.centre_operations

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        """Show and allow the create form only to those who may create."""
        return self.may("create")

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        """Show and allow the edit form only to those who may edit."""
        return self.may("edit")

    @property
    def can_delete(self) -> bool:  # type: ignore[override]
        """Show and allow deleting only to those who may delete."""
        return self.may("delete")

    @property
    def proposal_table(self) -> str:
        """Return the table name the proposal pages use for this view's model."""
        return self.model.__tablename__

    def _handle_view(self, name: str, **kwargs: Any) -> Any:
        """Refuse every write endpoint with 403 to those who may not write (forged posts too)."""
        refused = super()._handle_view(name, **kwargs)
        if refused is not None:
            return refused
        operation = WRITE_VIEWS.get(name)
        if operation is not None and not self.may(operation):
            abort(403, description=READ_ONLY_MESSAGE)
        return None

    def get_list_row_actions(self) -> list[Any]:
        """Add a "propose a change" link to each row for centres."""
        actions = super().get_list_row_actions()
        if not _is_platform_admin():
            actions.append(EndpointLinkRowAction(
                "fa fa-comment", "catalogue_proposals.new", title="建议修改",
                url_args={"table": self.proposal_table}))
        return actions

    def validate_form(self, form: Any) -> bool:
        """Validate as Flask-Admin does, then check the numbers and name the field at fault."""
        valid = super().validate_form(form)
        names = CHECKS.get(self.proposal_table, ((), None))[0]
        if not valid or not any(name in form for name in names):
            return valid
        values = {name: form[name].data for name in names if name in form}
        problems = problems_for(self.proposal_table, values)
        for name, message in problems:
            if name in form:
                form[name].errors = [*form[name].errors, message]
        return not problems

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        """Refuse the save to those who may not write; check the object before it is stored."""
        if not self.may("create" if is_created else "edit"):
            raise Forbidden(READ_ONLY_MESSAGE)
        with db.session.no_autoflush:
            problems = row_problems(model)
        if problems:
            raise UserError(problems[0][1], field=problems[0][0])

    def on_model_delete(self, model: Any) -> None:
        """Refuse the delete to those who may not delete."""
        if not self.may("delete"):
            raise Forbidden(READ_ONLY_MESSAGE)


class AnalyteView(SharedCatalogueView):
    """Analytes (检验项目), shared by every region."""

    column_list = ("code", "name", "unit", "decimals", "discipline", "plausible_low",
                   "plausible_high")
    column_searchable_list = ("code", "name")
    column_filters = ("discipline",)
    form_columns = column_list
    form_args = {"decimals": {"description": "0～6 的整数"}}
    column_labels = {"code": "项目代码", "name": "项目名称", "unit": "单位", "decimals": "小数位数",
                     "discipline": "专业", "plausible_low": "合理下限",
                     "plausible_high": "合理上限"}


class QualitySpecView(SharedCatalogueView):
    """Quality specifications (允许 CV / 偏倚 / TEa) with source and version."""

    column_list = ("analyte", "spec_set", "allowable_cv", "allowable_bias", "tea_pct", "tea_abs",
                   "tea_abs_unit", "tea_threshold", "source", "version", "active")
    column_details_list = column_list + ("created_at",)
    column_searchable_list = ("spec_set", "source", "analyte.code", "analyte.name")
    column_filters = ("analyte.code", "spec_set", "active")
    form_columns = column_list
    form_args = {"tea_abs": {"description": "两段式 TEa：与单位、适用上限同时填写"}}
    column_labels = {"analyte": "检验项目", "spec_set": "规范集", "allowable_cv": "允许CV(%)",
                     "allowable_bias": "允许偏倚(%)", "tea_pct": "TEa(%)", "tea_abs": "TEa绝对值",
                     "tea_abs_unit": "TEa绝对值单位", "tea_threshold": "绝对值适用上限",
                     "source": "来源", "version": "版本", "active": "启用",
                     "created_at": "创建时间", "analyte.code": "项目代码",
                     "analyte.name": "项目名称"}


class MakerNameView(SharedCatalogueView):
    """Reagents, calibrators and QC materials: maker and name."""

    column_list = ("maker", "name")
    column_searchable_list = ("maker", "name")
    column_filters = ("maker",)
    form_columns = ("maker", "name")
    column_labels = {"maker": "厂家", "name": "名称"}


class MethodView(SharedCatalogueView):
    """Measurement methods (方法学)."""

    column_list = ("code", "name", "principle")
    column_searchable_list = ("code", "name", "principle")
    form_columns = column_list
    column_labels = {"code": "方法编码", "name": "方法名称", "principle": "原理"}


class QcLotView(SharedCatalogueView):
    """QC lots with their levels edited inline; a centre may register a new lot."""

    centre_operations = frozenset({"create"})
    column_list = ("material", "lot_number", "expiry", "levels")
    column_searchable_list = ("lot_number", "material.name", "material.maker")
    column_filters = ("material.maker", "material.name", "lot_number", "expiry")
    column_sortable_list = (("material", "material.name"), "lot_number", "expiry")
    form_columns = ("material", "lot_number", "expiry")
    inline_models = [(QcLevel, {
        "form_columns": ("id", "level_index", "name"),
        "column_labels": {"level_index": "序号（1～3）", "name": "水平名称"},
        "form_label": "质控水平",
    })]
    column_labels = {"material": "质控品", "lot_number": "批号", "expiry": "有效期",
                     "levels": "质控水平", "material.maker": "质控品厂家",
                     "material.name": "质控品名称"}

    def validate_form(self, form: Any) -> bool:
        """Also check each inline level's index (1–3)."""
        valid = super().validate_form(form)
        if not valid or "levels" not in form:
            return valid
        for entry in form.levels.entries:
            field = getattr(entry.form, "level_index", None)
            problems = problems_for("qc_level", {"level_index": field.data}) if field else []
            if problems:
                field.errors = [*field.errors, problems[0][1]]
                valid = False
        return valid

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        """Check the lot and each of its levels before they are stored."""
        super().on_model_change(form, model, is_created)
        with db.session.no_autoflush:
            problems = [p for level in model.levels for p in row_problems(level)]
        if problems:
            raise UserError(problems[0][1], field=problems[0][0])


__all__ = ["AnalyteView", "MakerNameView", "MethodView", "QcLotView", "QualitySpecView",
           "SharedCatalogueView"]
