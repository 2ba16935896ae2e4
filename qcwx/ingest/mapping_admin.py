"""Maintain a lab's mappings and import settings (the 项目映射 page's services).

Test code → test system, level name → level index, analyser name → instrument, and the
lab's own QC sample-id pattern. Everyone in scope may read them; supervisors and above
edit. Lookups fold case and width (:func:`qcwx.ingest.mapping.fold_key`), so uniqueness
does too. Services flush, never commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from qcwx.catalog.models import Analyte, Instrument, TestSystem
from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.ingest.formats.dialects import compile_qc_pattern
from qcwx.ingest.formats.records import ParseError
from qcwx.ingest.mapping import fold_key as _fold
from qcwx.ingest.models import (
    IngestSetting,
    InstrumentMapping,
    LevelCodeMapping,
    TestCodeMapping,
)
from qcwx.numbers import parse_id
from qcwx.orgs.models import Lab, User
from qcwx.orgs.scopes import can_access_lab
from qcwx.timeutil import utcnow

__all__ = [
    "MAPPING_ROLES", "add_instrument_mapping", "add_level_mapping", "add_test_code_mapping",
    "delete_instrument_mapping", "delete_level_mapping", "delete_test_code_mapping",
    "instrument_mappings", "lab_instruments", "lab_qc_pattern", "lab_systems",
    "level_mappings", "qc_sample_pattern", "set_qc_sample_pattern", "test_code_mappings",
]

#: Roles that may edit a lab's code mappings (the lab's QC owner and those above it).
MAPPING_ROLES = {"supervisor", "director", "center", "admin"}


def _check_editor(actor: User, lab_id: int | None) -> Lab:
    if actor.role not in MAPPING_ROLES:
        raise Forbidden("只有质控主管及以上角色可以维护映射")
    lab = db.session.get(Lab, lab_id) if lab_id else None
    if lab is None or not can_access_lab(actor, lab.id):
        raise NotFound("实验室不存在或无权访问", field="lab_id")
    return lab


def test_code_mappings(actor: User, lab_id: int) -> list[TestCodeMapping]:
    """Return the lab's test code mappings (404 outside the actor's scope)."""
    if not can_access_lab(actor, lab_id):
        raise NotFound("实验室不存在或无权访问", field="lab_id")
    return list(db.session.scalars(
        select(TestCodeMapping).where(TestCodeMapping.lab_id == lab_id)
        .options(selectinload(TestCodeMapping.test_system).selectinload(TestSystem.analyte))
        .order_by(TestCodeMapping.source_code, TestCodeMapping.qc_lot_number)))


def level_mappings(actor: User, lab_id: int) -> list[LevelCodeMapping]:
    """Return the lab's level mappings (404 outside the actor's scope)."""
    if not can_access_lab(actor, lab_id):
        raise NotFound("实验室不存在或无权访问", field="lab_id")
    return list(db.session.scalars(select(LevelCodeMapping)
                                   .where(LevelCodeMapping.lab_id == lab_id)
                                   .order_by(LevelCodeMapping.source_level)))


def add_test_code_mapping(actor: User, lab_id: int, source_code: str, test_system_id,
                          qc_lot_number: str | None = None) -> TestCodeMapping:
    """Map an instrument/LIS code (optionally only for one QC lot) to a test system of the lab."""
    lab = _check_editor(actor, lab_id)
    code = (source_code or "").strip()
    if not code:
        raise UserError("请填写仪器/LIS 项目代码", field="source_code")
    if len(code) > 64:
        raise UserError("项目代码过长（最多64个字符）", field="source_code")
    lot = (qc_lot_number or "").strip()
    if len(lot) > 64:
        raise UserError("质控批号过长（最多64个字符）", field="qc_lot_number")
    ts_id = parse_id(test_system_id)
    if ts_id is None:
        raise UserError("请选择检测系统", field="test_system_id")
    ts = db.session.get(TestSystem, ts_id)
    if ts is None or ts.lab_id != lab.id:
        raise NotFound("检测系统不存在或不属于该实验室", field="test_system_id")
    taken = {(_fold(r.source_code), _fold(r.qc_lot_number)) for r in db.session.scalars(
        select(TestCodeMapping).where(TestCodeMapping.lab_id == lab.id))}
    if (_fold(code), _fold(lot)) in taken:  # lookups fold case, so must the uniqueness
        raise Conflict(f"项目代码“{code}”{'（批号 ' + lot + '）' if lot else ''}已有映射，"
                       "请先删除原映射", field="source_code")
    row = TestCodeMapping(lab_id=lab.id, source_code=code, qc_lot_number=lot, test_system_id=ts.id)
    db.session.add(row)
    db.session.flush()
    return row


def add_level_mapping(actor: User, lab_id: int, source_level: str, level_index) -> LevelCodeMapping:
    """Map a level name as the lab's instruments send it to a level index 1..3."""
    lab = _check_editor(actor, lab_id)
    text = (source_level or "").strip()
    if not text:
        raise UserError("请填写仪器发送的水平名称", field="source_level")
    if len(text) > 32:
        raise UserError("水平名称过长（最多32个字符）", field="source_level")
    try:
        index = int(level_index)
    except (TypeError, ValueError):
        raise UserError("水平序号必须是 1、2 或 3", field="level_index") from None
    if index not in (1, 2, 3):
        raise UserError("水平序号必须是 1、2 或 3", field="level_index")
    taken = {_fold(r.source_level) for r in db.session.scalars(
        select(LevelCodeMapping).where(LevelCodeMapping.lab_id == lab.id))}
    if _fold(text) in taken:
        raise Conflict(f"水平“{text}”已有映射，请先删除原映射", field="source_level")
    row = LevelCodeMapping(lab_id=lab.id, source_level=text, level_index=index)
    db.session.add(row)
    db.session.flush()
    return row


def delete_test_code_mapping(actor: User, mapping_id: int) -> None:
    """Delete one test code mapping of a lab in scope (404 otherwise)."""
    row = db.session.get(TestCodeMapping, mapping_id)
    if row is None:
        raise NotFound("映射不存在或无权访问")
    _check_editor(actor, row.lab_id)
    db.session.delete(row)  # through the ORM, so the audit log records it
    db.session.flush()


def delete_level_mapping(actor: User, mapping_id: int) -> None:
    """Delete one level mapping of a lab in scope (404 otherwise)."""
    row = db.session.get(LevelCodeMapping, mapping_id)
    if row is None:
        raise NotFound("映射不存在或无权访问")
    _check_editor(actor, row.lab_id)
    db.session.delete(row)
    db.session.flush()


def lab_systems(lab_id: int) -> Iterable[TestSystem]:
    """Return a lab's test systems for mapping forms, by analyte code."""
    return db.session.scalars(select(TestSystem).join(Analyte)
                              .where(TestSystem.lab_id == lab_id)
                              .order_by(Analyte.code, TestSystem.id))


def lab_instruments(lab_id: int) -> Iterable[Instrument]:
    """Return a lab's instruments for mapping forms, by maker, model and serial."""
    return db.session.scalars(select(Instrument).where(Instrument.lab_id == lab_id)
                              .order_by(Instrument.maker, Instrument.model, Instrument.serial))


def _check_reader(actor: User, lab_id: int) -> None:
    if not can_access_lab(actor, lab_id):
        raise NotFound("实验室不存在或无权访问", field="lab_id")


def instrument_mappings(actor: User, lab_id: int) -> list[InstrumentMapping]:
    """Return the lab's instrument mappings (404 outside the actor's scope)."""
    _check_reader(actor, lab_id)
    return list(db.session.scalars(
        select(InstrumentMapping).where(InstrumentMapping.lab_id == lab_id)
        .options(selectinload(InstrumentMapping.instrument))
        .order_by(InstrumentMapping.source_instrument)))


def add_instrument_mapping(actor: User, lab_id: int, source_instrument: str,
                           instrument_id) -> InstrumentMapping:
    """Map an analyser name as the lab's messages or files send it to one of its instruments."""
    lab = _check_editor(actor, lab_id)
    text = " ".join((source_instrument or "").split())
    if not text:
        raise UserError("请填写仪器发送的名称（如 ASTM 消息头中的仪器名）",
                        field="source_instrument")
    if len(text) > 128:
        raise UserError("仪器名称过长（最多128个字符）", field="source_instrument")
    ident = parse_id(instrument_id)
    if ident is None:
        raise UserError("请选择仪器", field="instrument_id")
    inst = db.session.get(Instrument, ident)
    if inst is None or inst.lab_id != lab.id:
        raise NotFound("仪器不存在或不属于该实验室", field="instrument_id")
    taken = {_fold(r.source_instrument) for r in db.session.scalars(
        select(InstrumentMapping).where(InstrumentMapping.lab_id == lab.id))}
    if _fold(text) in taken:
        raise Conflict(f"仪器名称“{text}”已有映射，请先删除原映射", field="source_instrument")
    row = InstrumentMapping(lab_id=lab.id, source_instrument=text, instrument_id=inst.id)
    db.session.add(row)
    db.session.flush()
    return row


def delete_instrument_mapping(actor: User, mapping_id: int) -> None:
    """Delete one instrument mapping of a lab in scope (404 otherwise)."""
    row = db.session.get(InstrumentMapping, mapping_id)
    if row is None:
        raise NotFound("映射不存在或无权访问")
    _check_editor(actor, row.lab_id)
    db.session.delete(row)
    db.session.flush()


def qc_sample_pattern(actor: User, lab_id: int) -> str:
    """Return the lab's own QC sample-id pattern ('' when it has none)."""
    _check_reader(actor, lab_id)
    row = db.session.scalar(select(IngestSetting).where(IngestSetting.lab_id == lab_id))
    return (row.qc_sample_id_pattern or "") if row else ""


def set_qc_sample_pattern(actor: User, lab_id: int, pattern: str | None) -> IngestSetting:
    """Set (or clear, with '') the sample-id pattern of QC from analysers that mark nothing.

    The pattern is a Python regular expression searched in the sample id, at most 200
    characters, refused when invalid, when it matches an empty id or nests repeats; a
    named group ``level`` supplies the level (``^QC-(?P<level>[LH])``).
    """
    lab = _check_editor(actor, lab_id)
    text = (pattern or "").strip()
    if text:
        try:
            compile_qc_pattern(text)
        except ParseError as exc:
            raise UserError(exc.message_zh, field="qc_sample_id_pattern") from None
    row = db.session.scalar(select(IngestSetting).where(IngestSetting.lab_id == lab.id))
    if row is None:
        row = IngestSetting(lab_id=lab.id)
        db.session.add(row)
    row.qc_sample_id_pattern, row.updated_at = text or None, utcnow()
    db.session.flush()
    return row


def lab_qc_pattern(lab_id: int) -> re.Pattern[str] | None:
    """Return the lab's compiled QC sample-id pattern for imports (None when unset or bad)."""
    text = db.session.scalar(select(IngestSetting.qc_sample_id_pattern)
                             .where(IngestSetting.lab_id == lab_id))
    if not text:
        return None
    try:
        return compile_qc_pattern(text)
    except ParseError:  # saved before a stricter check: ignore rather than break imports
        return None
