"""Catalogue write services: test-system checks, code generation and the CSV import.

A region collects its labs' instruments and QC lots as one CSV file (a row per test system).
:func:`import_test_systems` reads it, reuses what already exists by natural key (hospital and
lab code or name, instrument maker/model/serial, reagent/calibrator/QC material maker+name,
lot number, level index) and creates the rest. Each row runs in its own savepoint, so a row
that turns out invalid half-way leaves nothing behind while the valid rows stay; the caller
commits once. A dry run (the preview) rolls everything back. Services flush, never commit.
"""

from __future__ import annotations

import csv
import io
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError

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
from qcwx.ingest.numbers import fold_text, parse_datetime
from qcwx.orgs.models import HOSPITAL_LEVELS, Hospital, Lab, Region, User

log = logging.getLogger(__name__)

__all__ = [
    "IMPORT_COLUMNS",
    "ImportReport",
    "ImportRow",
    "check_test_system",
    "generate_anon_code",
    "import_test_systems",
    "parse_test_system_csv",
    "template_csv",
]

MAX_IMPORT_BYTES = 2 * 1024 * 1024
MAX_IMPORT_ROWS = 5000
MAX_LEVELS = 6
DEFAULT_TEMPERATURE = "37℃"
IMPORTER_ROLES = ("admin", "center")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and on labels


@dataclass(frozen=True)
class ImportColumn:
    """One column of the import file: its Chinese header, row key, length limit, required."""

    header: str
    key: str
    max_len: int
    required: bool = False


IMPORT_COLUMNS: tuple[ImportColumn, ...] = (
    ImportColumn("医院编码", "hospital_code", 32),
    ImportColumn("医院名称", "hospital_name", 100, True),
    ImportColumn("医院等级", "hospital_level", 8),
    ImportColumn("实验室编码", "lab_code", 32),
    ImportColumn("实验室名称", "lab_name", 100, True),
    ImportColumn("项目代码", "analyte_code", 32, True),
    ImportColumn("仪器厂家", "instrument_maker", 64, True),
    ImportColumn("仪器型号", "instrument_model", 64, True),
    ImportColumn("仪器序列号", "instrument_serial", 64),
    ImportColumn("试剂厂家", "reagent_maker", 64),
    ImportColumn("试剂名称", "reagent_name", 100),
    ImportColumn("方法学", "method", 64),
    ImportColumn("校准品厂家", "calibrator_maker", 64),
    ImportColumn("校准品名称", "calibrator_name", 100),
    ImportColumn("单位", "unit", 32),
    ImportColumn("温度", "temperature", 16),
    ImportColumn("质控品厂家", "material_maker", 64, True),
    ImportColumn("质控品名称", "material_name", 100, True),
    ImportColumn("质控批号", "lot_number", 64, True),
    ImportColumn("有效期", "expiry", 32),
    ImportColumn("水平数", "level_count", 8),
    ImportColumn("水平名称", "level_names", 200),
)
_BY_HEADER = {c.header: c for c in IMPORT_COLUMNS}
LEVEL_HEADERS = ("水平数", "水平名称")

OUTCOME_LABELS = {
    "created": "新建",
    "updated": "已存在，更新水平",
    "exists": "已存在，不重复创建",
}


class RowError(ValueError):
    """A row cannot be imported; the message is Chinese and shown beside the row."""


@dataclass
class ImportRow:
    """One data row: its number as the user sees it (header = row 1), values and verdict."""

    line: int
    values: dict[str, str]
    errors: list[str] = field(default_factory=list)
    outcome: str | None = None

    @property
    def ok(self) -> bool:
        """Return whether the row was (or in a preview would be) imported."""
        return not self.errors and self.outcome is not None

    @property
    def outcome_label(self) -> str:
        """Return the verdict in Chinese."""
        if self.errors:
            return "有错误，跳过"
        return OUTCOME_LABELS.get(self.outcome or "", "—")

    def get(self, key: str) -> str:
        """Return the cell for ``key`` ('' when the column is absent)."""
        return self.values.get(key, "")


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do), row by row."""

    rows: list[ImportRow]
    dry_run: bool
    created: Counter = field(default_factory=Counter)

    @property
    def valid_rows(self) -> list[ImportRow]:
        """Return the rows that import."""
        return [r for r in self.rows if r.ok]

    @property
    def error_rows(self) -> list[ImportRow]:
        """Return the rows that are skipped, each with its reasons."""
        return [r for r in self.rows if r.errors]

    def count(self, outcome: str) -> int:
        """Return how many rows ended with ``outcome`` (created / updated / exists)."""
        return sum(1 for r in self.rows if r.ok and r.outcome == outcome)


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


# ---------------------------------------------------------------------------- the CSV file


def template_csv() -> bytes:
    """Return the import template: the Chinese header row, UTF-8 with BOM (opens in Excel)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([c.header for c in IMPORT_COLUMNS])
    return buf.getvalue().encode("utf-8-sig")


def _decode(data: bytes) -> str:
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise UserError("这是 Excel 文件，请在 Excel 中“另存为 CSV（逗号分隔）”后再上传",
                        field="file")
    if b"\x00" in data:
        raise UserError("文件不是 CSV 文本文件，请保存为 UTF-8 或 GBK 编码的 CSV 后再上传",
                        field="file")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UserError("无法识别文件编码，请保存为 UTF-8 或 GBK 编码的 CSV", field="file")


def _clean_header(cell: str) -> str:
    text = cell.replace("\ufeff", "").strip().rstrip("*＊").strip()
    for bracket in ("（", "("):  # "有效期（YYYY-MM-DD）" → "有效期"
        text = text.split(bracket, 1)[0].strip()
    return text


def _read_header(first: list[str]) -> list[str]:
    header = [_clean_header(c) for c in first]
    known = [h for h in header if h in _BY_HEADER]
    dupes = sorted({h for h in known if known.count(h) > 1})
    if dupes:
        raise UserError(f"表头重复：{'、'.join(dupes)}", field="file")
    missing = [c.header for c in IMPORT_COLUMNS if c.required and c.header not in header]
    if not any(h in header for h in LEVEL_HEADERS):
        missing.append("水平数 或 水平名称")
    if missing:
        raise UserError(f"表头不正确，缺少：{'、'.join(missing)}。请下载模板，按模板的表头填写",
                        field="file")
    return header


def parse_test_system_csv(data: bytes) -> list[ImportRow]:
    """Read the import file into rows; raise ``UserError`` (Chinese) for a file that is unusable.

    UTF-8 (with or without BOM) and GBK/GB18030 are accepted, comma- or tab-separated. Blank
    lines are skipped; row numbers are those Excel shows (the header is row 1).
    """
    if not data or not data.strip():
        raise UserError("文件为空", field="file")
    if len(data) > MAX_IMPORT_BYTES:
        raise UserError(f"文件过大（上限 {MAX_IMPORT_BYTES // 1024 // 1024} MB），请分批导入",
                        field="file")
    text = _decode(data)
    first_line = text.lstrip("\ufeff").split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise UserError(f"CSV 格式错误：{exc}", field="file") from None
    numbered = [(i, r) for i, r in enumerate(records, start=1) if any(c.strip() for c in r)]
    if not numbered:
        raise UserError("文件为空", field="file")
    header = _read_header(numbered[0][1])
    body = numbered[1:]
    if not body:
        raise UserError("文件中没有数据行", field="file")
    if len(body) > MAX_IMPORT_ROWS:
        raise UserError(f"一次最多导入 {MAX_IMPORT_ROWS} 行，请分批导入", field="file")
    return [_make_row(line, header, cells) for line, cells in body]


def _make_row(line: int, header: list[str], cells: list[str]) -> ImportRow:
    values: dict[str, str] = {}
    for name, cell in zip(header, cells, strict=False):
        column = _BY_HEADER.get(name)
        if column is not None:
            values[column.key] = cell.strip()
    row = ImportRow(line=line, values=values)
    if any(c.strip() for c in cells[len(header):]):
        row.errors.append("本行的列数多于表头")
    return row


# ---------------------------------------------------------------------------- row checks


@dataclass(frozen=True)
class _RowData:
    """The checked, typed content of one row."""

    hospital_level: str | None
    expiry: date | None
    level_names: tuple[str, ...]
    explicit_level_names: bool


def _check_row(row: ImportRow) -> _RowData | None:
    """Check one row without the database; append Chinese errors and return None when bad."""
    for column in IMPORT_COLUMNS:
        value = row.get(column.key)
        if column.required and not value:
            row.errors.append(f"“{column.header}”不能为空")
        elif len(value) > column.max_len:
            row.errors.append(f"“{column.header}”超过 {column.max_len} 个字符")
    for maker, name, label in (("reagent_maker", "reagent_name", "试剂"),
                               ("calibrator_maker", "calibrator_name", "校准品")):
        if bool(row.get(maker)) != bool(row.get(name)):
            row.errors.append(f"{label}厂家和{label}名称须同时填写（或同时留空）")
    level = _hospital_level(row)
    expiry = _expiry(row)
    names, explicit = _level_names(row)
    if row.errors:
        return None
    return _RowData(level, expiry, names, explicit)


def _hospital_level(row: ImportRow) -> str | None:
    raw = fold_text(row.get("hospital_level")).strip()
    if not raw:
        return None
    for level in HOSPITAL_LEVELS:
        if raw.startswith(level) or raw.startswith(level[0] + "甲") or raw == level[0]:
            return level
    row.errors.append(f"医院等级“{raw}”无效，应为 一级、二级 或 三级")
    return None


def _expiry(row: ImportRow) -> date | None:
    raw = row.get("expiry")
    if not raw:
        return None
    try:
        return parse_datetime(raw).date()
    except ValueError as exc:
        row.errors.append(f"有效期：{exc}")
        return None


def _level_names(row: ImportRow) -> tuple[tuple[str, ...], bool]:
    raw_names = fold_text(row.get("level_names")).replace("、", "/").strip()
    raw_count = fold_text(row.get("level_count")).strip()
    names: tuple[str, ...] = ()
    if raw_names:
        names = tuple(n.strip() for n in raw_names.split("/"))
        if any(not n or len(n) > 32 for n in names) or len(set(names)) != len(names):
            row.errors.append("水平名称应以“/”分隔，不能为空或重复，每个不超过 32 个字符")
            return (), True
    count = None
    if raw_count:
        if not raw_count.isdigit() or not 1 <= int(raw_count) <= MAX_LEVELS:
            row.errors.append(f"水平数应为 1～{MAX_LEVELS} 的整数")
            return (), bool(names)
        count = int(raw_count)
    if not names and count is None:
        row.errors.append("“水平数”或“水平名称”须填写其一")
        return (), False
    if names and count is not None and count != len(names):
        row.errors.append(f"水平数 {count} 与水平名称的个数 {len(names)} 不一致")
    if len(names) > MAX_LEVELS:
        row.errors.append(f"水平最多 {MAX_LEVELS} 个")
    if names:
        return names, True
    return tuple(f"水平{i}" for i in range(1, (count or 0) + 1)), False


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
    checked = None if row.errors else _check_row(row)
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


def _apply_row(actor: User, region: Region | None, row: ImportRow, checked: _RowData,
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


def _hospital(actor: User, region: Region | None, row: ImportRow, checked: _RowData,
              created: Counter) -> Hospital:
    code, name = row.get("hospital_code"), row.get("hospital_name")
    if code:
        hospital = db.session.scalar(select(Hospital).where(Hospital.code == code))
        if hospital is not None and hospital.name != name:
            raise RowError(f"医院编码“{code}”已登记为“{hospital.name}”，与“{name}”不一致")
    else:
        stmt = select(Hospital).where(Hospital.name == name)
        if region is not None:
            stmt = stmt.where(Hospital.region_id == region.id)
        found = db.session.scalars(stmt.limit(2)).all()
        if len(found) > 1:
            raise RowError(f"有多家医院名为“{name}”，请填写医院编码")
        hospital = found[0] if found else None
    if hospital is not None:
        if actor.role == "center" and hospital.region_id != actor.region_id:
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


def _levels(lot: QcLot, checked: _RowData, created: Counter) -> list[QcLevel]:
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
