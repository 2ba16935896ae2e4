"""Catalogue write services: test-system checks, code generation and the CSV import.

The file itself (columns, parsing, per-row checks) is read by ``qcwx.catalog.csv_file``.

A region collects its labs' instruments and QC lots as one CSV file (a row per test system).
:func:`import_test_systems` reads it, reuses what already exists by natural key (hospital and
lab code or name, instrument maker/model/serial, reagent/calibrator/QC material maker+name,
lot number, level index) and creates the rest. Each row runs in its own savepoint, so a row
that turns out invalid half-way leaves nothing behind while the valid rows stay; the caller
commits once. A dry run (the preview) rolls everything back. Services flush, never commit.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError

from qcwx.catalog.csv_file import (
    IMPORT_COLUMNS,
    MAX_IMPORT_BYTES,
    ImportReport,
    ImportRow,
    RowData,
    RowError,
    check_row,
    parse_test_system_csv,
    template_csv,
)
from qcwx.catalog.models import (
    Analyte,
    Calibrator,
    Instrument,
    Method,
    QcLevel,
    QcLot,
    QcMaterial,
    Reagent,
    TestSystem,
)
from qcwx.errors import Forbidden, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Hospital, Lab, Region, User

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = "37℃"
IMPORTER_ROLES = ("admin", "center")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and on labels

__all__ = [
    "IMPORT_COLUMNS",
    "MAX_IMPORT_BYTES",
    "ImportReport",
    "ImportRow",
    "check_test_system",
    "generate_anon_code",
    "import_test_systems",
    "parse_test_system_csv",
    "template_csv",
]


# ---------------------------------------------------------------------------- checks, codes


def check_test_system(
    lab: Lab | None, instrument: Instrument | None, qc_lot: QcLot | None, levels: list[QcLevel]
) -> list[tuple[str, str]]:
    """Return (field, Chinese message) pairs for a test system whose parts do not fit together.

    The instrument must stand in the chosen lab, at least one level must be chosen, and every
    level must belong to the chosen QC lot.
    """
    errors: list[tuple[str, str]] = []
    if lab is not None and instrument is not None and instrument.lab_id != lab.id:
        errors.append(("instrument", f"仪器“{instrument}”不属于实验室“{lab}”"))
    if not levels:
        errors.append(("levels", "请至少选择一个质控水平"))
    elif qc_lot is not None:
        foreign = [str(lv) for lv in levels if lv.lot_id != qc_lot.id]
        if foreign:
            errors.append(("levels", f"所选水平必须属于质控批号“{qc_lot.lot_number}”："
                                     f"{'、'.join(foreign)} 不属于该批号"))
    return errors


def _random_code(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(length))


def _unique_code(column: Any, prefix: str, length: int = 6) -> str:
    for _ in range(50):
        code = _random_code(prefix, length)
        if db.session.scalar(select(column).where(column == code)) is None:
            return code
    raise RuntimeError(f"could not find a free code for {column}")  # pragma: no cover


def generate_anon_code() -> str:
    """Return a new unique anonymous lab code (``Q`` + 6 random characters, not from names)."""
    return _unique_code(Lab.anon_code, "Q")


# ---------------------------------------------------------------------------- import


def import_test_systems(
    actor: User, data: bytes, *, region_id: int | None = None, dry_run: bool = False
) -> ImportReport:
    """Import test systems from a CSV file; return the per-row report. Flushes, never commits.

    A centre imports into its own region; a platform admin names the region for hospitals
    that do not exist yet (``region_id``). Valid rows are imported, invalid rows are reported
    with their reasons. ``dry_run`` (the preview) rolls every change back before returning.
    """
    if actor.role not in IMPORTER_ROLES:
        raise Forbidden()
    region = _target_region(actor, region_id)
    rows = parse_test_system_csv(data)
    report = ImportReport(rows=rows, dry_run=dry_run)
    outer = db.session.begin_nested() if dry_run else None
    try:
        for row in rows:
            _import_row(actor, region, row, report)
    finally:
        if outer is not None:
            outer.rollback()
    log.info("test-system import by user %s: %s rows, %s invalid, dry_run=%s",
             actor.id, len(rows), len(report.error_rows), dry_run)
    return report


def _target_region(actor: User, region_id: int | None) -> Region | None:
    if actor.role == "center":
        if region_id not in (None, actor.region_id):
            raise Forbidden("只能导入本区域的数据")
        region = db.session.get(Region, actor.region_id) if actor.region_id else None
        if region is None:
            raise UserError("当前账号未指定所属区域，无法导入")
        return region
    if region_id is None:
        return None
    region = db.session.get(Region, region_id)
    if region is None:
        raise UserError("所选区域不存在", field="region_id")
    return region


def _import_row(actor: User, region: Region | None, row: ImportRow, report: ImportReport) -> None:
    checked = None if row.errors else check_row(row)
    if checked is None:
        return
    analyte = db.session.scalar(select(Analyte).where(Analyte.code == row.get("analyte_code")))
    if analyte is None:
        row.errors.append(f"未知项目代码“{row.get('analyte_code')}”，请先在“检验项目”中添加")
        return
    created: Counter = Counter()
    savepoint = db.session.begin_nested()
    try:
        row.outcome = _apply_row(actor, region, row, checked, analyte, created)
    except RowError as exc:
        savepoint.rollback()
        row.errors.append(str(exc))
        return
    except IntegrityError:
        savepoint.rollback()
        log.warning("import row %s clashed with stored data", row.line, exc_info=True)
        row.errors.append("与已有数据冲突（编码或名称重复），未导入")
        return
    savepoint.commit()
    report.created.update(created)


def _add(obj: Any, label: str, created: Counter) -> Any:
    db.session.add(obj)
    db.session.flush()
    created[label] += 1
    return obj


def _eq(column: Any, value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _apply_row(actor: User, region: Region | None, row: ImportRow, checked: RowData,
               analyte: Analyte, created: Counter) -> str:
    hospital = _hospital(actor, region, row, checked, created)
    lab = _lab(hospital, row, created)
    instrument = _instrument(lab, row, created)
    reagent = _maker_name(Reagent, row.get("reagent_maker"), row.get("reagent_name"), "试剂",
                          created)
    calibrator = _maker_name(Calibrator, row.get("calibrator_maker"),
                             row.get("calibrator_name"), "校准品", created)
    method = _method(row.get("method"), created)
    material = _maker_name(QcMaterial, row.get("material_maker"), row.get("material_name"),
                           "质控品", created)
    lot = _lot(material, row.get("lot_number"), checked.expiry, created)
    levels = _levels(lot, checked, created)
    return _test_system(
        created, lab=lab, analyte=analyte, instrument=instrument, reagent=reagent,
        method=method, calibrator=calibrator, unit=row.get("unit") or analyte.unit,
        temperature=row.get("temperature") or DEFAULT_TEMPERATURE, qc_lot=lot, levels=levels,
    )


def _hospital(actor: User, region: Region | None, row: ImportRow, checked: RowData,
              created: Counter) -> Hospital:
    code, name = row.get("hospital_code"), row.get("hospital_name")
    if code:
        hospital = db.session.scalar(select(Hospital).where(Hospital.code == code))
        if hospital is not None and hospital.name != name:
            raise RowError(f"医院编码“{code}”已登记为“{hospital.name}”，与“{name}”不一致")
    else:
        stmt = select(Hospital).where(Hospital.name == name)
        if region is not None:  # the region and every region below it
            stmt = stmt.where(Hospital.region_id.in_(scopes.region_subtree(region.id)))
        found = db.session.scalars(stmt.limit(2)).all()
        if len(found) > 1:
            raise RowError(f"有多家医院名为“{name}”，请填写医院编码")
        hospital = found[0] if found else None
    if hospital is not None:
        if actor.role == "center" and not scopes.region_in_scope(actor, hospital.region_id):
            raise RowError(f"医院“{name}”属于其他区域，不能导入")
        return hospital
    if region is None:
        raise RowError(f"医院“{name}”尚未登记；平台管理员导入新医院时须选择所属区域")
    if checked.hospital_level is None:
        raise RowError(f"新医院“{name}”须填写医院等级（一级、二级或三级）")
    return _add(Hospital(region=region, code=code or _unique_code(Hospital.code, "H"), name=name,
                         level=checked.hospital_level, type="综合医院"), "医院", created)


def _lab(hospital: Hospital, row: ImportRow, created: Counter) -> Lab:
    code, name = row.get("lab_code"), row.get("lab_name")
    if code:
        lab = db.session.scalar(select(Lab).where(Lab.code == code))
        if lab is not None and lab.hospital_id != hospital.id:
            raise RowError(f"实验室编码“{code}”已属于其他医院（{lab.hospital.name}）")
        if lab is not None and lab.name != name:
            raise RowError(f"实验室编码“{code}”已登记为“{lab.name}”，与“{name}”不一致")
    else:
        lab = db.session.scalar(
            select(Lab).where(Lab.hospital_id == hospital.id, Lab.name == name).limit(1))
    if lab is not None:
        return lab
    return _add(Lab(hospital=hospital, code=code or _unique_code(Lab.code, "L"), name=name,
                    anon_code=generate_anon_code()), "实验室", created)


def _instrument(lab: Lab, row: ImportRow, created: Counter) -> Instrument:
    maker, model = row.get("instrument_maker"), row.get("instrument_model")
    serial = row.get("instrument_serial") or None
    stmt = select(Instrument).where(Instrument.lab_id == lab.id, Instrument.maker == maker,
                                    Instrument.model == model, _eq(Instrument.serial, serial))
    instrument = db.session.scalar(stmt.limit(1))
    if instrument is not None:
        return instrument
    return _add(Instrument(lab=lab, maker=maker, model=model, serial=serial), "仪器", created)


def _maker_name(model: Any, maker: str, name: str, label: str, created: Counter) -> Any:
    if not maker:
        return None
    obj = db.session.scalar(select(model).where(model.maker == maker, model.name == name))
    return obj if obj is not None else _add(model(maker=maker, name=name), label, created)


def _method(name: str, created: Counter) -> Method | None:
    if not name:
        return None
    method = db.session.scalar(select(Method).where(Method.name == name).limit(1))
    if method is None:
        method = db.session.scalar(select(Method).where(Method.code == name))
    if method is not None:
        return method
    return _add(Method(code=_unique_code(Method.code, "M"), name=name), "方法学", created)


def _lot(material: QcMaterial, lot_number: str, expiry: date | None, created: Counter) -> QcLot:
    lot = db.session.scalar(select(QcLot).where(QcLot.material_id == material.id,
                                                QcLot.lot_number == lot_number))
    if lot is None:
        return _add(QcLot(material=material, lot_number=lot_number, expiry=expiry), "质控批号",
                    created)
    if expiry is not None and lot.expiry is not None and lot.expiry != expiry:
        raise RowError(f"质控批号“{lot_number}”已登记有效期 {lot.expiry:%Y-%m-%d}，"
                       f"与本行的 {expiry:%Y-%m-%d} 不一致")
    if expiry is not None and lot.expiry is None:
        lot.expiry = expiry
    return lot


def _levels(lot: QcLot, checked: RowData, created: Counter) -> list[QcLevel]:
    existing = {lv.level_index: lv for lv in lot.levels}
    levels = []
    for index, name in enumerate(checked.level_names, start=1):
        level = existing.get(index)
        if level is None:
            level = _add(QcLevel(lot=lot, level_index=index, name=name), "质控水平", created)
        elif checked.explicit_level_names and level.name != name:
            raise RowError(f"质控批号“{lot.lot_number}”的第 {index} 个水平已名为“{level.name}”，"
                           f"与“{name}”不一致")
        levels.append(level)
    return levels


def _test_system(created: Counter, **parts: Any) -> str:
    levels = parts.pop("levels")
    problems = check_test_system(parts["lab"], parts["instrument"], parts["qc_lot"], levels)
    if problems:
        raise RowError("；".join(message for _, message in problems))
    ids = {
        TestSystem.lab_id: parts["lab"].id,
        TestSystem.analyte_id: parts["analyte"].id,
        TestSystem.instrument_id: parts["instrument"].id,
        TestSystem.reagent_id: parts["reagent"].id if parts["reagent"] else None,
        TestSystem.method_id: parts["method"].id if parts["method"] else None,
        TestSystem.calibrator_id: parts["calibrator"].id if parts["calibrator"] else None,
        TestSystem.unit: parts["unit"],
        TestSystem.temperature: parts["temperature"],
        TestSystem.qc_lot_id: parts["qc_lot"].id,
    }
    stmt = select(TestSystem).where(*(_eq(col, value) for col, value in ids.items()))
    system = db.session.scalar(stmt.limit(1))
    if system is None:
        system = TestSystem(**parts)
        system.levels = levels
        _add(system, "检测系统", created)
        return "created"
    if {lv.id for lv in system.levels} == {lv.id for lv in levels}:
        return "exists"
    system.levels = levels
    db.session.flush()
    return "updated"
