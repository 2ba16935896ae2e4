"""Desktop admin pages for the regional QC centre (Flask-Admin at /admin), limited to its region.

Endpoints: ``admin.index`` (overview), one ``<model>.index_view`` per maintained entity
(``hospital``, ``lab``, ``user``, ``instrument``, ``testsystem``, ``analyte``, …), the CSV
import ``import_test_systems.index`` and the catalogue proposals ``catalogue_proposals.index``.
Only the ``admin`` and ``center`` roles get in; the shared catalogue (``qcwx.admin.catalogue``)
only the platform admin changes, a centre proposes changes.
"""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from qcwx.extensions import db

ADMIN_NAME = "区域质控中心管理"


def configure_babel(app: Flask) -> None:
    """Initialise flask-babel once so Flask-Admin's own strings come out in Chinese."""
    if "babel" not in app.extensions:
        from flask_babel import Babel

        Babel(app)


def init_admin(app: Flask) -> Admin:
    """Mount the admin at /admin with one view per maintained entity and the CSV import."""
    from qcwx import models as m
    from qcwx.admin import catalogue as c
    from qcwx.admin import views as v
    from qcwx.admin.importing import ImportTestSystemsView
    from qcwx.admin.proposals import CatalogueProposalsView
    from qcwx.opendata.admin import AnalyteLoincView, UnitCodeView

    configure_babel(app)
    admin = Admin(
        app,
        name=ADMIN_NAME,
        index_view=v.QcIndexView(name="概览", url="/admin", endpoint="admin"),
        theme=Bootstrap4Theme(base_template="admin/qc_base.html", fluid=True),
    )
    org, catalogue = "机构与用户", "目录"
    for view in (
        v.RegionView(m.Region, db, name="区域", category=org),
        v.HospitalView(m.Hospital, db, name="医院", category=org),
        v.LabView(m.Lab, db, name="实验室", category=org),
        v.UserView(m.User, db, name="用户", category=org),
        v.TestSystemView(m.TestSystem, db, name="检测系统"),
        v.InstrumentView(m.Instrument, db, name="仪器", category=catalogue),
        c.AnalyteView(m.Analyte, db, name="检验项目", category=catalogue),
        c.QualitySpecView(m.QualitySpec, db, name="质量规范", category=catalogue),
        c.MakerNameView(m.Reagent, db, name="试剂", category=catalogue),
        c.MethodView(m.Method, db, name="方法学", category=catalogue),
        c.MakerNameView(m.Calibrator, db, name="校准品", category=catalogue),
        c.MakerNameView(m.QcMaterial, db, name="质控品", category=catalogue),
        c.QcLotView(m.QcLot, db, name="质控批号与水平", category=catalogue),
        AnalyteLoincView(m.AnalyteLoinc, db, name="LOINC 编码", category=catalogue),
        UnitCodeView(m.UnitCode, db, name="UCUM 单位编码", category=catalogue),
        CatalogueProposalsView(name="目录修改建议", endpoint="catalogue_proposals",
                               url="/admin/proposals", category=catalogue),
        ImportTestSystemsView(name="批量导入", endpoint="import_test_systems",
                              url="/admin/import-test-systems"),
    ):
        admin.add_view(view)
    return admin
