"""Flask-Admin views: centre/admin only, region-scoped in the SQL, Chinese labels throughout."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView
from flask_login import current_user
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from wtforms import PasswordField

from qcwx.admin import queries
from qcwx.admin.accounts import admin_create_user, admin_update_user, resolve_scope
from qcwx.admin.scoping import may_maintain, scope_clause, scoped_query
from qcwx.catalog.models import Instrument, QcLevel, QcLot
from qcwx.catalog.services import check_test_system, generate_anon_code
from qcwx.errors import Forbidden, UserError
from qcwx.extensions import db
from qcwx.numbers import parse_id
from qcwx.orgs.models import (
    HOSPITAL_LEVELS,
    HOSPITAL_TYPES,
    REGION_LEVELS,
    ROLES,
    Hospital,
    Lab,
    Region,
    User,
)
from qcwx.orgs.scopes import region_in_subtree
from qcwx.web.forms import current_actor
from qcwx.web.helpers import localtime
from qcwx.web.urls import local_path

log = logging.getLogger(__name__)

ADMIN_ROLES = frozenset({"admin", "center"})
# Form fields whose dropdown lists only objects inside the actor's region.
SCOPED_FIELDS = {"region": Region, "hospital": Hospital, "lab": Lab, "instrument": Instrument}
CONFLICT_MESSAGE = "保存失败：与已有数据冲突（编码或名称重复，或仍被其他记录引用）"
# Validation messages Flask-Admin's fields raise without a Chinese translation.
UNTRANSLATED = {"Not a valid choice": "所选项无效或不在您的管理范围内"}


def _region_label(region: Region) -> str:
    return f"{region.name}（{region.code}）"


def _region_name(_view: Any, _context: Any, model: Any, _name: str) -> str:
    return model.region.name if model.region is not None else "—"


def _local_created_at(_view: Any, _context: Any, model: Any, name: str) -> str:
    return localtime(getattr(model, name))


class AccessMixin:
    """Let in only ``allowed_roles``; anonymous users go to the login page, others get 403."""

    allowed_roles = ADMIN_ROLES

    def is_accessible(self) -> bool:
        """Return whether the current user may open this view."""
        return current_user.is_authenticated and current_user.role in self.allowed_roles

    def _handle_view(self, name: str, **kwargs: Any) -> Any:
        """Refuse a return address (``url``) that is not a path on this site, with 400.

        Flask-Admin redirects to the ``url`` of a form or query after a save, delete or
        action; its own check ignores whitespace, so a ``url`` holding a newline reached the
        ``Location`` header and werkzeug's refusal was a 500 (issue 14, the form fuzzer).
        """
        refused = super()._handle_view(name, **kwargs)
        target = request.values.get("url")
        if refused is None and target and local_path(target) is None:
            raise UserError("返回地址 url 无效：只能是本站的页面路径", field="url")
        return refused

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        """Send anonymous users to log in; refuse everyone else with 403."""
        if not current_user.is_authenticated:
            return redirect(url_for("orgs.login", next=request.full_path.rstrip("?")))
        abort(403)


class QcIndexView(AccessMixin, AdminIndexView):
    """Admin home: the region's counts and links."""

    @expose("/")
    def index(self) -> Any:
        """Show how many hospitals, labs, users and test systems the region has."""
        actor = current_actor()
        region = actor.region if actor.role == "center" else None
        return self.render("admin/qc_index.html", counts=queries.region_counts(actor),
                           region=region)


MAX_LIST_PAGE = 10**6  # × page_size rows: far beyond any table here, well inside an OFFSET


class QcModelView(AccessMixin, ModelView):
    """Base model view: scope in every query, 404 outside it, Chinese errors, no SQL leaks."""

    can_view_details = True
    can_export = False
    can_set_page_size = False
    page_size = 50
    column_display_pk = False
    column_formatters = {"created_at": _local_created_at, "region": _region_name}
    column_type_formatters = dict(ModelView.column_type_formatters)
    column_type_formatters[type(None)] = lambda _view, _value, _name: "—"

    def _get_list_extra_args(self) -> Any:
        """Flask-Admin's list arguments, with a page number the database can take.

        ``?page=10**30`` became an OFFSET that overflowed SQLite's INTEGER, and a negative
        page a negative OFFSET that MariaDB refuses: both 500s. Such a page does not exist.
        """
        args = super()._get_list_extra_args()
        if not 0 <= args.page <= MAX_LIST_PAGE:
            abort(404)
        return args

    # -- scope: list, count, single object, dropdowns
    def get_query(self) -> Any:
        """Return the list query limited to the actor's region."""
        return scoped_query(current_actor(), self.model)

    def get_count_query(self) -> Any:
        """Return the count query with the same scope as the list."""
        return (db.session.query(func.count("*")).select_from(self.model)
                .filter(scope_clause(current_actor(), self.model)))

    def get_one(self, id: Any) -> Any:
        """Load one object inside the scope; anything else is 404 (same as missing)."""
        ident = parse_id(id)  # a form's "id" may be anything, 10**30 included (SQLite overflows)
        if ident is None:
            abort(404)
        obj = self.get_query().filter(self.model.id == ident).one_or_none()
        if obj is None:
            abort(404)
        return obj

    def _scope_form(self, form: Any) -> Any:
        actor = current_actor()
        for name, model in SCOPED_FIELDS.items():
            if name in form and hasattr(form[name], "query_factory"):
                form[name].query = scoped_query(actor, model)
        if "region" in form and hasattr(form.region, "get_label"):
            form.region.get_label = _region_label
        for field in form:
            if getattr(field, "allow_blank", False) and not getattr(field, "blank_text", None):
                field.blank_text = "（不选）"
        return form

    def create_form(self, obj: Any = None) -> Any:
        """Build the create form with region-scoped dropdowns."""
        return self._scope_form(super().create_form(obj))

    def edit_form(self, obj: Any = None) -> Any:
        """Build the edit form with region-scoped dropdowns."""
        return self._scope_form(super().edit_form(obj))

    def validate_form(self, form: Any) -> bool:
        """Validate as Flask-Admin does, then put the few untranslated messages in Chinese."""
        valid = super().validate_form(form)
        for field in form:
            if field.errors and isinstance(field.errors, list):
                field.errors[:] = [UNTRANSLATED.get(str(e), e) for e in field.errors]
        return valid

    # -- object-level guard and errors
    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        """Refuse to save an object outside the actor's region."""
        with db.session.no_autoflush:  # the new row is not complete yet
            allowed = may_maintain(current_actor(), model)
        if not allowed:
            raise Forbidden("只能维护本区域的机构、仪器和检测系统")

    def on_model_delete(self, model: Any) -> None:
        """Refuse to delete an object outside the actor's region."""
        if not may_maintain(current_actor(), model):
            raise Forbidden("只能维护本区域的机构、仪器和检测系统")

    def handle_view_exception(self, exc: Exception) -> bool:
        """Flash user errors and database conflicts in Chinese instead of raw SQL text."""
        if isinstance(exc, UserError):
            flash(exc.message, "error")
            return True
        if isinstance(exc, IntegrityError):
            log.warning("admin save refused by the database: %s", exc.orig)
            flash(CONFLICT_MESSAGE, "error")
            return True
        return super().handle_view_exception(exc)

    def _flash_failure(self, exc: Exception) -> None:
        if not self.handle_view_exception(exc):
            log.exception("admin save failed")
            flash("保存失败，请稍后重试", "error")


class RegionView(QcModelView):
    """Regions, a tree (省 → 市 → 区县): platform admins only create one under a parent."""

    allowed_roles = frozenset({"admin"})
    column_list = ("code", "name", "level", "parent")
    column_searchable_list = ("code", "name")
    column_filters = ("level",)
    form_columns = ("parent", "code", "name", "level")
    form_choices = {"level": list(REGION_LEVELS.items())}
    column_choices = form_choices
    column_formatters = {**QcModelView.column_formatters,
                         "parent": lambda _v, _c, m, _n: m.parent.name if m.parent else "—"}
    form_args = {"parent": {"description": "上级区域（省级区域不选）"}}
    column_labels = {"code": "区域编码", "name": "区域名称", "level": "级别", "parent": "上级区域"}

    def on_model_change(self, form: Any, model: Region, is_created: bool) -> None:
        """Refuse a parent that is the region itself or one of its descendants (a cycle)."""
        with db.session.no_autoflush:
            if model.parent is not None and model.id is not None and region_in_subtree(
                    model.id, model.parent.id):
                raise UserError("上级区域不能是本区域或其下级区域", field="parent")
        super().on_model_change(form, model, is_created)


class HospitalView(QcModelView):
    """Hospitals of the region."""

    column_list = ("code", "name", "level", "type", "region")
    column_searchable_list = ("code", "name")
    column_filters = ("level", "type", "region.name")
    column_sortable_list = ("code", "name", "level", "type")
    form_columns = ("region", "code", "name", "level", "type")
    form_choices = {
        "level": [(v, v) for v in HOSPITAL_LEVELS],
        "type": [(v, v) for v in HOSPITAL_TYPES],
    }
    column_choices = form_choices
    column_labels = {"code": "医院编码", "name": "医院名称", "level": "等级", "type": "类型",
                     "region": "区域", "region.name": "区域名称"}


class LabView(QcModelView):
    """Labs of the region; the anonymous code is generated, never typed."""

    column_list = ("hospital", "code", "name", "anon_code", "timezone")
    column_searchable_list = ("code", "name", "anon_code", "hospital.name")
    column_filters = ("hospital.name", "hospital.level", "name")
    column_sortable_list = (("hospital", "hospital.name"), "code", "name", "anon_code")
    form_columns = ("hospital", "code", "name", "timezone")
    column_labels = {"hospital": "医院", "code": "实验室编码", "name": "实验室名称",
                     "anon_code": "匿名编码", "timezone": "时区", "hospital.name": "医院名称",
                     "hospital.level": "医院等级"}

    def on_model_change(self, form: Any, model: Lab, is_created: bool) -> None:
        """Give a new lab a random anonymous code (not derived from its name)."""
        if not model.anon_code:
            with db.session.no_autoflush:
                model.anon_code = generate_anon_code()
        super().on_model_change(form, model, is_created)


class UserView(QcModelView):
    """Users of the region; passwords are hashed, the hash never shown."""

    can_delete = False  # deactivate instead: results and audit rows keep the user's id
    column_list = ("username", "display_name", "role", "region", "hospital", "lab", "phone",
                   "active", "created_at")
    column_details_list = column_list + ("wechat_openid",)
    column_searchable_list = ("username", "display_name", "phone")
    column_filters = ("role", "active", "hospital.name", "lab.name")
    column_sortable_list = ("username", "display_name", "role", "active", "created_at")
    column_choices = {"role": list(ROLES.items())}
    form_columns = ("username", "display_name", "password", "role", "region", "hospital", "lab",
                    "phone", "active")
    form_extra_fields = {
        "password": PasswordField(
            "密码", description="新建时必填，至少 8 位；编辑时留空表示不修改"),
    }
    form_choices = {"role": list(ROLES.items())}
    form_args = {
        "region": {"description": "质控中心用户、专家组成员必填"},
        "hospital": {"description": "科主任必填"},
        "lab": {"description": "质控主管、检验技师必填（医院与区域随实验室确定）"},
    }
    column_labels = {"username": "用户名", "display_name": "姓名", "role": "角色", "region": "区域",
                     "hospital": "医院", "lab": "实验室", "phone": "手机号", "active": "启用",
                     "created_at": "创建时间", "wechat_openid": "微信 OpenID", "password": "密码",
                     "hospital.name": "医院名称", "lab.name": "实验室名称"}

    def _scope_form(self, form: Any) -> Any:
        form = super()._scope_form(form)
        if current_actor().role != "admin":
            form.role.choices = [(k, v) for k, v in ROLES.items() if k != "admin"]
        return form

    def _fields(self, form: Any) -> dict[str, Any]:
        scope = resolve_scope(current_actor(), form.role.data, form.region.data,
                              form.hospital.data, form.lab.data)
        return {"username": (form.username.data or "").strip(),
                "display_name": (form.display_name.data or "").strip(),
                "password": form.password.data or "", "scope": scope,
                "phone": (form.phone.data or "").strip(), "active": bool(form.active.data)}

    def create_model(self, form: Any) -> Any:
        """Create the user through ``create_user`` so role and scope rules hold."""
        try:
            user = admin_create_user(current_actor(), **self._fields(form))
            db.session.commit()
        except Exception as exc:  # noqa: BLE001 - Flask-Admin's own pattern: flash, roll back
            db.session.rollback()
            self._flash_failure(exc)
            return False
        self.after_model_change(form, user, True)
        return user

    def update_model(self, form: Any, model: User) -> bool:
        """Apply the edit with the same rules; a blank password keeps the old hash."""
        try:
            if model.role == "admin" and current_actor().role != "admin":
                raise Forbidden("质控中心不能修改平台管理员")
            admin_update_user(model, **self._fields(form))
            db.session.commit()
        except Exception as exc:  # noqa: BLE001 - Flask-Admin's own pattern: flash, roll back
            db.session.rollback()
            self._flash_failure(exc)
            return False
        self.after_model_change(form, model, False)
        return True


class InstrumentView(QcModelView):
    """Analysers of the region's labs."""

    column_list = ("lab", "maker", "model", "serial", "name")
    column_searchable_list = ("maker", "model", "serial", "lab.name")
    column_filters = ("maker", "model", "lab.name")
    column_sortable_list = (("lab", "lab.name"), "maker", "model", "serial")
    form_columns = ("lab", "maker", "model", "serial", "name")
    column_labels = {"lab": "实验室", "maker": "厂家", "model": "型号", "serial": "序列号",
                     "name": "名称/编号", "lab.name": "实验室名称"}


class TestSystemView(QcModelView):
    """Test systems (检测系统) of the region's labs, with their QC lot and levels."""

    column_list = ("lab", "analyte", "instrument", "reagent", "method", "calibrator", "unit",
                   "temperature", "qc_lot", "levels", "active")
    column_details_list = column_list + ("label_version", "created_at")
    column_searchable_list = ("analyte.code", "analyte.name", "lab.name", "instrument.serial",
                              "qc_lot.lot_number")
    column_filters = ("lab.name", "analyte.code", "analyte.name", "instrument.maker",
                      "instrument.model", "qc_lot.lot_number", "active")
    column_sortable_list = (("lab", "lab.name"), ("analyte", "analyte.code"),
                            ("instrument", "instrument.maker"), ("qc_lot", "qc_lot.lot_number"),
                            "unit", "active")
    form_columns = ("lab", "analyte", "instrument", "reagent", "method", "calibrator", "unit",
                    "temperature", "qc_lot", "levels", "active")
    form_args = {"levels": {"description": "须属于所选质控批号"},
                 "instrument": {"description": "须属于所选实验室"}}
    column_labels = {
        "lab": "实验室", "analyte": "检验项目", "instrument": "仪器", "reagent": "试剂",
        "method": "方法学", "calibrator": "校准品", "unit": "单位", "temperature": "温度",
        "qc_lot": "质控批号", "levels": "质控水平", "active": "启用",
        "label_version": "标签版本", "created_at": "创建时间",
        "lab.name": "实验室名称", "analyte.code": "项目代码", "analyte.name": "项目名称",
        "instrument.maker": "仪器厂家", "instrument.model": "仪器型号",
        "instrument.serial": "仪器序列号", "qc_lot.lot_number": "质控批号",
    }

    def _scope_form(self, form: Any) -> Any:
        form = super()._scope_form(form)
        if "levels" in form:
            form.levels.query = (db.session.query(QcLevel).join(QcLot)
                                 .order_by(QcLot.lot_number, QcLevel.level_index))
        return form

    def validate_form(self, form: Any) -> bool:
        """Check that the instrument is in the lab and the levels belong to the lot."""
        valid = super().validate_form(form)
        if not valid or "levels" not in form or "qc_lot" not in form:
            return valid
        problems = check_test_system(form.lab.data, form.instrument.data, form.qc_lot.data,
                                     list(form.levels.data or []))
        for name, message in problems:
            form[name].errors = [*form[name].errors, message]
        return not problems

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        """Re-check the parts on the object itself before it is stored."""
        super().on_model_change(form, model, is_created)
        with db.session.no_autoflush:
            problems = check_test_system(model.lab, model.instrument, model.qc_lot, model.levels)
        if problems:
            raise UserError("；".join(message for _, message in problems))
