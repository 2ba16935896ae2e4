"""Change what the centre distributes and how labs change over to it (flush, never commit).

Roles: the centre (its region) and the platform admin register lots and assign them; a lab's
supervisor, its hospital's director or the admin start the parallel runs and confirm the
switch. Every object is loaded through ``qcwx.orgs.scopes`` (outside scope: 404).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from qcwx.catalog.models import Analyte, QcLevel, QcLot, QcMaterial, TestSystem
from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.iqc import targets
from qcwx.iqc.validation import chinese_date
from qcwx.lots import parsing
from qcwx.lots.models import DistributedLot, LotAssignment, LotChangeover, MakerTarget
from qcwx.lots.queries import get_assignment, get_changeover, get_distributed_lot, manages
from qcwx.numbers import parse_id
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.orgs.scopes import can_access_lab, region_in_subtree
from qcwx.timeutil import local_today, utcnow

CENTRE_ROLES = {"center", "admin"}
LAB_MANAGERS = {"supervisor", "director", "admin"}
ESTABLISH_REASON = "统一批号换批：由平行检测结果确立靶值"
RULES_REASON = "统一批号换批：沿用原批号的质控规则"
MAKER_REASON = "统一批号换批：平行检测期间暂用厂商靶值"


def _require(actor: User, roles: set[str], what: str) -> None:
    if actor.role not in roles:
        raise Forbidden(f"当前角色不能{what}")


# ---------------------------------------------------------------- centre
def register_lot(actor: User, *, region_id, material_id, lot_number: str, expiry: date | None,
                 levels: str, targets_text: str = "", note: str = "") -> DistributedLot:
    """Register a lot for distribution in the actor's region (the catalogue lot is reused)."""
    _require(actor, CENTRE_ROLES, "登记统一批号质控品")
    region = _region(actor, region_id)
    material = _by_id(QcMaterial, material_id, "material_id", "质控品不存在")
    number = (lot_number or "").strip()
    if not number or len(number) > QcLot.lot_number.type.length:
        raise UserError("请填写批号（最多 64 个字符）", field="lot_number")
    if expiry is None:
        raise UserError("请填写有效期", field="expiry")
    if expiry < local_today():
        raise UserError(f"有效期 {chinese_date(expiry)} 已过，不能登记", field="expiry")
    lot = _catalogue_lot(material, number, expiry, parsing.level_names(levels))
    if db.session.scalar(select(DistributedLot.id).where(
            DistributedLot.region_id == region.id, DistributedLot.qc_lot_id == lot.id)):
        raise Conflict(f"批号 {number} 已在本区域登记", field="lot_number")
    row = DistributedLot(region=region, qc_lot=lot, note=(note or "").strip()[:200] or None,
                         registered_by_id=actor.id)
    db.session.add(row)
    for t in parsing.target_lines(targets_text):
        row.targets.append(_maker_target(lot, t))
    db.session.flush()
    return row


def _region(actor: User, region_id) -> Region:
    if actor.role == "center":
        return db.session.get(Region, actor.region_id)
    return _by_id(Region, region_id, "region_id", "请选择区域")


def _by_id(model, ident, field: str, message: str):
    ident = parse_id(ident)  # a form's text: 10**30 would overflow SQLite's INTEGER
    obj = None if ident is None else db.session.get(model, ident)
    if obj is None:
        raise UserError(message, field=field)
    return obj


def _catalogue_lot(material: QcMaterial, number: str, expiry: date, names: list[str]) -> QcLot:
    lot = db.session.scalar(select(QcLot).where(QcLot.material_id == material.id,
                                                QcLot.lot_number == number))
    if lot is None:
        lot = QcLot(material=material, lot_number=number, expiry=expiry)
        db.session.add(lot)
        for i, name in enumerate(names, start=1):
            db.session.add(QcLevel(lot=lot, level_index=i, name=name))
        db.session.flush()
        return lot
    if lot.expiry is not None and lot.expiry != expiry:
        raise UserError(f"批号 {number} 已登记有效期 {chinese_date(lot.expiry)}，与填写的不一致",
                        field="expiry")
    if [lv.name for lv in lot.levels] != names:
        have = "，".join(lv.name for lv in lot.levels)
        raise UserError(f"批号 {number} 已登记的水平为：{have}", field="levels")
    lot.expiry = expiry
    return lot


def _maker_target(lot: QcLot, t: parsing.TargetLine) -> MakerTarget:
    analyte = db.session.scalar(select(Analyte).where(Analyte.code == t.analyte_code))
    if analyte is None:
        raise UserError(f"厂商靶值第 {t.line} 行：项目代码 {t.analyte_code} 不存在",
                        field="targets")
    level = next((lv for lv in lot.levels if t.level in (str(lv.level_index), lv.name)), None)
    if level is None:
        raise UserError(f"厂商靶值第 {t.line} 行：水平“{t.level}”不属于该批号", field="targets")
    return MakerTarget(analyte=analyte, level=level, target_mean=t.mean, target_sd=t.sd)


def assign_labs(actor: User, lot_id: int, lab_ids, from_date: date) -> list[LotAssignment]:
    """Give the lot to labs of its region tree (in the actor's scope); given ones are kept."""
    _require(actor, CENTRE_ROLES, "分配统一批号质控品")
    dlot = get_distributed_lot(actor, lot_id)
    if not manages(actor, dlot):
        raise Forbidden("该批号由上级质控中心登记，本中心只能查看，不能分配")
    if not isinstance(from_date, date):
        raise UserError("请填写启用日期", field="from_date")
    ids = _lab_ids(lab_ids)
    have = {a.lab_id for a in dlot.assignments}
    out = []
    for lab_id in ids:
        lab = db.session.get(Lab, lab_id)
        if lab is None or not can_access_lab(actor, lab_id) or not region_in_subtree(
                dlot.region_id, db.session.get(Hospital, lab.hospital_id).region_id):
            raise NotFound("实验室不存在或不在本区域", field="lab_ids")
        if lab_id not in have:
            row = LotAssignment(lab_id=lab_id, from_date=from_date, assigned_by_id=actor.id)
            dlot.assignments.append(row)
            out.append(row)
    db.session.flush()
    return out


def _lab_ids(raw) -> list[int]:
    parsed = {parse_id(x) for x in raw or []}
    if None in parsed:
        raise UserError("实验室选择无效", field="lab_ids")
    ids = sorted(parsed)
    if not ids:
        raise UserError("请至少选择一个实验室", field="lab_ids")
    return ids


# ---------------------------------------------------------------- the lab
def start_parallel(actor: User, assignment_id: int, old_test_system_id, start: date
                   ) -> LotChangeover:
    """Open the new lot's test system beside the old one; parallel runs are entered from ``start``.

    The new system copies the old one's six codes and rules; the maker's targets, when the
    centre gave them, are its provisional fixed limits until targets are established.
    """
    _require(actor, LAB_MANAGERS, "开始平行检测")
    assignment = get_assignment(actor, assignment_id)
    new_lot = assignment.distributed_lot.qc_lot
    old = _old_system(assignment, old_test_system_id)
    _check_day(start, "parallel_start", old.lab, new_lot, earliest=None)
    levels = {lv.level_index: lv for lv in new_lot.levels}
    missing = [lv.name for lv in old.levels if lv.level_index not in levels]
    if missing:
        raise UserError(f"新批号缺少与原检测系统对应的水平：{'、'.join(missing)}",
                        field="old_test_system_id")
    new = TestSystem(lab_id=old.lab_id, analyte_id=old.analyte_id,
                     instrument_id=old.instrument_id, reagent_id=old.reagent_id,
                     method_id=old.method_id, calibrator_id=old.calibrator_id, unit=old.unit,
                     temperature=old.temperature, qc_lot=new_lot,
                     levels=[levels[lv.level_index] for lv in old.levels])
    db.session.add(new)
    row = LotChangeover(old_test_system=old, new_test_system=new, parallel_start=start,
                        started_by_id=actor.id)
    assignment.changeovers.append(row)
    db.session.flush()
    targets.set_rule_set(actor, new, targets.current_rule_set(old), RULES_REASON)
    for t in assignment.distributed_lot.targets:
        if t.analyte_id == new.analyte_id and t.level in new.levels:
            targets.set_control_limit(actor, new, t.level, mean=t.target_mean, sd=t.target_sd,
                                      kind="fixed", effective_from=start, reason=MAKER_REASON)
    return row


def start_parallel_many(actor: User, assignment_id: int, old_test_system_ids, start: date
                        ) -> list[LotChangeover]:
    """Start the parallel runs of several test systems at once (the lab page's checkboxes)."""
    ids = [i for i in (old_test_system_ids or []) if str(i).strip()]
    if not ids:
        raise UserError("请至少选择一个检测系统", field="old_test_system_id")
    return [start_parallel(actor, assignment_id, ts_id, start) for ts_id in ids]


def _old_system(assignment: LotAssignment, ts_id) -> TestSystem:
    ident = parse_id(ts_id)
    ts = db.session.get(TestSystem, ident) if ident is not None else None
    lot = assignment.distributed_lot.qc_lot
    if ts is None or ts.lab_id != assignment.lab_id:
        raise NotFound("检测系统不存在或无权访问", field="old_test_system_id")
    if not ts.active or ts.qc_lot_id == lot.id or ts.qc_lot.material_id != lot.material_id:
        raise UserError("该检测系统不能换用此批号（需在用、同一质控品的其他批号）",
                        field="old_test_system_id")
    if any(c.old_test_system_id == ts.id for c in assignment.changeovers):
        raise Conflict("该检测系统已开始换批", field="old_test_system_id")
    return ts


def _check_day(day: date, field: str, lab: Lab, lot: QcLot, earliest: date | None) -> None:
    if not isinstance(day, date):
        raise UserError("请填写日期", field=field)
    if day > local_today(lab.timezone):
        raise UserError("日期不能晚于今天", field=field)
    if earliest is not None and day < earliest:
        raise UserError(f"日期不能早于平行检测开始日期 {chinese_date(earliest)}", field=field)
    if lot.expiry is not None and day > lot.expiry:
        raise UserError(f"质控品批号 {lot.lot_number} 已于 {chinese_date(lot.expiry)} 过期",
                        field=field)


def confirm_switch(actor: User, changeover_id: int, switch_date: date) -> LotChangeover:
    """Establish the new lot's targets from the parallel runs and record the switch.

    Each level gets lab-established provisional limits (QC_SPEC §2, through
    :func:`qcwx.iqc.targets.establish_limits`) from the parallel runs up to the switch date,
    in force from the parallel start; the old test system is retired, so the old lot can no
    longer be entered. Too few parallel results: 400 with the counts, nothing stored.
    """
    _require(actor, LAB_MANAGERS, "确认切换")
    row = get_changeover(actor, changeover_id)
    if row.switch_date is not None:
        raise Conflict(f"已于 {chinese_date(row.switch_date)} 切换", field="switch_date")
    new = row.new_test_system
    _check_day(switch_date, "switch_date", new.lab, new.qc_lot, earliest=row.parallel_start)
    for level in new.levels:
        try:
            targets.establish_limits(actor, new, level, mode="provisional",
                                     effective_from=row.parallel_start, reason=ESTABLISH_REASON,
                                     until=switch_date)
        except UserError as exc:
            raise UserError(f"{level.name}：{exc.message}", field="switch_date") from None
    row.old_test_system.active = False
    now = utcnow()
    row.targets_established_at = row.switched_at = now
    row.switch_date, row.switched_by_id = switch_date, actor.id
    db.session.flush()
    return row
