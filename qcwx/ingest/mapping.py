"""Map what a lab's instruments and LIS send onto its own test systems, levels and runs.

Parsers return codes and level names exactly as sent (``GLU``, ``MEDIUM``, ``水平2``); this
module turns one such item into the identity ``submit_run`` needs — test system, level index,
lab-local run date, run number, value as text and a client id — using the lab's own
mappings first and a few unambiguous fallbacks after. Everything is resolved against data
loaded once per import (:class:`LabMapper`), so mapping 100,000 rows costs three queries.

Level defaults (when no :class:`LevelCodeMapping` and no level *name* of the lot matches):

====================  ===========  ==================  ===================
sent                  1-level lot  2-level lot         3-level lot
====================  ===========  ==================  ===================
1 / L / LOW / 低      1            1                   1
N / NORMAL / 正常     1            1 (normal = low)    2
M / MEDIUM / MID / 中 1            refused: ambiguous  2
H / HIGH / 高 / P     1            2 (the high level)  3
digit ``n``           ``n`` when the lot has level ``n``, else refused
====================  ===========  ==================  ===================

A 2-level lot has no "middle": ``MEDIUM`` there could mean either level, so it is refused
with a message asking for a level mapping instead of guessing (a wrong level silently
corrupts both levels' statistics). ``NORMAL`` is the low (normal-range) control in every
2-level chemistry material we know (Bio-Rad Level 1/2, Randox N/P), hence level 1.
"""

from __future__ import annotations

import copy
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from qcwx.catalog.models import Instrument, QcLot, TestSystem
from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.ingest.instruments import describe_instrument, match_instruments
from qcwx.ingest.loinc import clean_loinc, loinc_hint, systems_by_loinc
from qcwx.ingest.models import InstrumentMapping, LevelCodeMapping, TestCodeMapping
from qcwx.numbers import fold_text, normalize_level
from qcwx.orgs.models import Lab
from qcwx.timeutil import DEFAULT_TZ, to_utc

__all__ = ["Candidate", "LabMapper", "MappedRecord", "derive_client_id", "fold_key"]

MAX_CLIENT_ID = 64
_HIGH_WORDS = {"P", "PATH", "PATHOLOGICAL", "病理", "病理值"}
_NORMAL_WORDS = {"N", "NORMAL", "正常", "正常值"}


@dataclass(frozen=True)
class Candidate:
    """One QC value from any channel before mapping (a CSV row, an API item, an OBR level).

    ``position`` names the place in the user's words (``第 3 行``, ``第 2 条消息 …``);
    ``measured_at`` may be naive (lab-local wall time, as instruments send it) or aware;
    ``instrument`` is the analyser as the sender named it (serial, name or model).
    """

    index: int
    position: str
    value_text: str
    test_code: str | None = None
    test_system_id: int | None = None
    level: str | None = None
    qc_lot: str | None = None
    measured_at: datetime | None = None
    run_date: date | None = None
    run_no: str | int | None = None
    client_id: str | None = None
    row: int | None = None
    instrument: str | None = None
    loinc: str | None = None


@dataclass(frozen=True)
class MappedRecord:
    """A candidate resolved to the identity of a stored QC result."""

    candidate: Candidate
    test_system: TestSystem
    level_index: int
    run_date: date
    run_no: int
    value_text: str
    client_id: str
    measured_at: datetime | None  # naive UTC, the storage convention

    @property
    def run_key(self) -> tuple[int, date, int]:
        """Return (test system id, run date, run number): the records of one run share it."""
        return self.test_system.id, self.run_date, self.run_no

    @property
    def slot(self) -> tuple[int, date, int, int]:
        """Return the run key plus the level: at most one current result lives there."""
        return *self.run_key, self.level_index


@lru_cache(maxsize=8192)
def _fold_cached(text: str) -> str:
    return fold_text(text).strip().upper()


def fold_key(text: str | None) -> str:
    """Fold a code, level or name for lookups: width, case and surrounding blanks."""
    return _fold_cached(str(text or ""))


_fold = fold_key


def derive_client_id(lab_id: int, ts_id: int, run_date: date, run_no: int, level_index: int,
                     value_text: str) -> str:
    """Return a deterministic client id for a record that brought none of its own.

    Hashing the result's identity and value (lab, test system, date, run, level, value text)
    means the same file or message sent twice maps to the same id, so a re-upload is a
    duplicate rather than a second result.
    """
    body = f"{lab_id}|{ts_id}|{run_date.isoformat()}|{run_no}|{level_index}|{value_text}"
    return "h-" + hashlib.sha256(body.encode("utf-8")).hexdigest()[:48]


def _run_no(raw) -> int:
    """Parse a run number as spreadsheets and instruments send it (``1``, ``１``, ``2.0``)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return 1
    if isinstance(raw, bool):
        raise UserError("批次号必须是正整数", field="run_no")
    text = fold_text(str(raw)).strip()
    try:
        number = float(text)
    except ValueError:
        raise UserError(f"批次号“{raw}”必须是正整数", field="run_no") from None
    if not number.is_integer():
        raise UserError(f"批次号“{raw}”必须是正整数", field="run_no")
    if not 1 <= number <= 99:
        raise UserError("批次号必须在 1–99 之间", field="run_no")
    return int(number)


class LabMapper:
    """Resolve codes, lots, instruments and levels of one lab's records against data loaded once.

    Test code → candidate test systems: a :class:`TestCodeMapping` for the code *and* the
    record's QC lot, else one for the code alone (the mapped system, plus its siblings —
    same analyte and QC lot — on the lab's other instruments); else the lab's active test
    systems whose analyte code (or name) equals the code, case-insensitively, narrowed by
    the QC lot number. Then the **instrument** narrows them: the lab's
    :class:`InstrumentMapping` for the sent name, else its serial, name or model
    (:func:`qcwx.ingest.instruments.match_instruments`). A mapped system that survives wins;
    otherwise exactly one must remain. Anything still ambiguous is refused naming the test
    systems and instruments it could not tell apart, never guessed.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._memo: dict[tuple, object] = {}
        self.tz = lab.timezone or DEFAULT_TZ
        systems = db.session.scalars(
            select(TestSystem).where(TestSystem.lab_id == lab.id).options(
                selectinload(TestSystem.levels), selectinload(TestSystem.analyte),
                selectinload(TestSystem.instrument),
                selectinload(TestSystem.qc_lot).selectinload(QcLot.levels))).all()
        self.systems = {ts.id: ts for ts in systems}
        self.code_map: dict[tuple[str, str], int] = {}
        for row in db.session.scalars(select(TestCodeMapping)
                                      .where(TestCodeMapping.lab_id == lab.id)):
            self.code_map[(_fold(row.source_code), _fold(row.qc_lot_number))] = row.test_system_id
        self.level_map = {
            _fold(row.source_level): row.level_index
            for row in db.session.scalars(select(LevelCodeMapping)
                                          .where(LevelCodeMapping.lab_id == lab.id))}
        self.instruments = {i.id: i for i in db.session.scalars(
            select(Instrument).where(Instrument.lab_id == lab.id))}
        self.instrument_map = {
            _fold(" ".join(row.source_instrument.split())): row.instrument_id
            for row in db.session.scalars(select(InstrumentMapping)
                                          .where(InstrumentMapping.lab_id == lab.id))}
        self.by_analyte: dict[str, list[TestSystem]] = defaultdict(list)
        for ts in systems:
            if ts.active:
                for key in {_fold(ts.analyte.code), _fold(ts.analyte.name)}:
                    self.by_analyte[key].append(ts)
        self.by_loinc = systems_by_loinc(systems)

    # ------------------------------------------------------------ test system
    def _remember(self, key: tuple, resolve):
        """Resolve once per distinct input: a 100,000-row file repeats a few codes and levels."""
        if key not in self._memo:
            try:
                self._memo[key] = resolve()
            except UserError as exc:
                self._memo[key] = exc
        found = self._memo[key]
        if isinstance(found, UserError):
            raise copy.copy(found)  # a fresh instance: no traceback piles up on a shared one
        return found

    def test_system(self, code: str | None, qc_lot: str | None, ts_id: int | None = None,
                    instrument: str | None = None, loinc: str | None = None) -> TestSystem:
        """Return the lab's test system for an id, or for a code (QC lot, instrument, LOINC).

        The LOINC code an analyser sent is used only when the test code maps to nothing.
        """
        return self._remember(("ts", code, qc_lot, ts_id, instrument, loinc),
                              lambda: self._test_system(code, qc_lot, ts_id, instrument, loinc))

    def _test_system(self, code: str | None, qc_lot: str | None, ts_id: int | None,
                     instrument: str | None, loinc: str | None = None) -> TestSystem:
        if ts_id is not None:
            ts = self.systems.get(ts_id)
            if ts is None:  # another lab's, or none at all: the same answer on purpose
                raise NotFound("检测系统不存在或无权访问", field="test_system_id")
            return ts
        key = _fold(code)
        if not key:
            raise UserError("缺少项目代码", field="test_code")
        lot = _fold(qc_lot)
        mapped = self.code_map.get((key, lot)) if lot else None
        if mapped is None:
            mapped = self.code_map.get((key, ""))
        if mapped is not None and mapped in self.systems:
            chosen = self.systems[mapped]
            found = [chosen] + [ts for ts in self.by_analyte.get(_fold(chosen.analyte.code), [])
                                if ts is not chosen and ts.qc_lot_id == chosen.qc_lot_id]
            return self._by_instrument(code, qc_lot, instrument, found, chosen)
        return self._by_instrument(code, qc_lot, instrument,
                                   self._by_analyte(code, key, qc_lot, clean_loinc(loinc)))

    def _by_analyte(self, code: str | None, key: str, qc_lot: str | None,
                    loinc: str | None = None) -> list[TestSystem]:
        found = self.by_analyte.get(key, []) or self.by_loinc.get(loinc or "", [])
        if not found:
            raise UserError(f"项目代码“{code}”未对应到本实验室的检测系统，请先在“项目映射”中添加"
                            + loinc_hint(loinc), field="test_code")
        lot = _fold(qc_lot)
        if lot:
            narrowed = [ts for ts in found if _fold(ts.qc_lot.lot_number) == lot]
            if not narrowed:
                lots = "、".join(sorted({ts.qc_lot.lot_number for ts in found}))
                raise UserError(f"项目“{code}”的质控批号“{str(qc_lot).strip()}”与本实验室检测系统的"
                                f"批号（{lots}）不一致", field="qc_lot")
            found = narrowed
        return found

    def instruments_named(self, sent: str | None) -> list[Instrument]:
        """Return the lab's instruments a sent name means: saved mapping, serial, name, model."""
        return self._remember(("inst", sent), lambda: self._instruments_named(sent))

    def _instruments_named(self, sent: str | None) -> list[Instrument]:
        mapped = self.instrument_map.get(_fold(" ".join(sent.split()))) if sent else None
        if mapped is not None and mapped in self.instruments:
            return [self.instruments[mapped]]
        return match_instruments(sent, self.instruments.values())[0]

    def _by_instrument(self, code: str | None, qc_lot: str | None, sent: str | None,
                       found: list[TestSystem], preferred: TestSystem | None = None
                       ) -> TestSystem:
        sent = (sent or "").strip() or None
        named = self.instruments_named(sent) if sent else []
        if named:
            ids = {inst.id for inst in named}
            on = [ts for ts in found if ts.instrument_id in ids]
            if not on:
                raise UserError(f"项目“{code}”在仪器“{sent}”（{_instruments_text(named)}）上没有"
                                f"检测系统（本实验室该项目在：{_instruments_text(_on(found))}）",
                                field="instrument")
            found = on
        if preferred is not None and preferred in found:
            return preferred
        if len(found) == 1:
            return found[0]
        raise UserError(_ambiguous(code, qc_lot, sent, named, found),
                        field="instrument" if len(_on(found)) > 1 else "test_code")

    # ------------------------------------------------------------ level
    def level_index(self, ts: TestSystem, level: str | None) -> int:
        """Return the level index (1..3) of ``level`` in ``ts``; see the module table."""
        return self._remember(("level", ts.id, level), lambda: self._level_index(ts, level))

    def _level_index(self, ts: TestSystem, level: str | None) -> int:
        indices = sorted(lv.level_index for lv in ts.levels)
        if not indices:
            raise UserError("该检测系统未设置质控水平", field="level")
        raw = _fold(level)
        if not raw:
            if len(indices) == 1:
                return indices[0]
            raise UserError("缺少质控水平", field="level")
        index = self.level_map.get(raw)
        if index is None:
            index = next((lv.level_index for lv in ts.levels if _fold(lv.name) == raw), None)
        if index is None:
            index = self._default_level(raw, normalize_level(level), len(indices))
        if index not in indices:
            names = "、".join(lv.name for lv in ts.levels)
            raise UserError(f"水平“{level}”不属于该检测系统的质控批号（现有：{names}）",
                            field="level")
        return index

    @staticmethod
    def _default_level(raw: str, norm: str | None, n_levels: int) -> int:
        if norm and norm.isdigit():
            return int(norm)
        if raw in _HIGH_WORDS:
            norm = "H"
        if n_levels == 1 and norm in ("L", "M", "H"):
            return 1
        if norm == "L":
            return 1
        if norm == "H":
            return n_levels
        if norm == "M" and n_levels >= 3:
            return 2
        if norm == "M" and raw in _NORMAL_WORDS:
            return 1
        if norm == "M":
            raise UserError(f"水平“{raw}”在两水平质控批号中含义不明确，请在“水平映射”中指定",
                            field="level")
        raise UserError(f"无法识别的质控水平“{raw}”，请在“水平映射”中指定", field="level")

    # ------------------------------------------------------------ whole record
    def map(self, item: Candidate) -> MappedRecord:
        """Resolve one candidate; raise ``UserError`` naming the field that cannot be mapped."""
        ts = self.test_system(item.test_code, item.qc_lot, item.test_system_id, item.instrument,
                              item.loinc)
        level_index = self.level_index(ts, item.level)
        run_date, measured_utc = self._moment(item)
        run_no = _run_no(item.run_no)
        value_text = str(item.value_text or "").strip()
        client_id = (item.client_id or "").strip()
        if len(client_id) > MAX_CLIENT_ID:
            raise UserError(f"记录编号过长（最多{MAX_CLIENT_ID}个字符）", field="client_id")
        if not client_id:
            client_id = derive_client_id(self.lab.id, ts.id, run_date, run_no, level_index,
                                         value_text)
        return MappedRecord(item, ts, level_index, run_date, run_no, value_text, client_id,
                            measured_utc)

    def _moment(self, item: Candidate) -> tuple[date, datetime | None]:
        """Return the lab-local run date and the measurement time in naive UTC."""
        measured = item.measured_at
        try:
            if measured is not None and measured.tzinfo is not None:
                measured = measured.astimezone(ZoneInfo(self.tz)).replace(tzinfo=None)
            measured_utc = to_utc(measured, self.tz) if measured is not None else None
        except (OverflowError, ValueError):  # year 1 or 9999 shifted across a day boundary
            raise UserError("检测时间超出有效范围", field="measured_at") from None
        if item.run_date is not None:
            return item.run_date, measured_utc
        if measured is None:
            raise UserError("缺少检测日期", field="measured_at")
        return measured.date(), measured_utc


def _on(systems: list[TestSystem]) -> list[Instrument]:
    """Return the distinct instruments of ``systems`` in their order."""
    return list({ts.instrument_id: ts.instrument for ts in systems}.values())


def _instruments_text(instruments: list[Instrument]) -> str:
    return "、".join(describe_instrument(i) for i in instruments)


def _ambiguous(code: str | None, qc_lot: str | None, sent: str | None,
               named: list[Instrument], found: list[TestSystem]) -> str:
    """Say which test systems (and instruments) a record could not be told apart among."""
    lot = f"（质控批号 {str(qc_lot).strip()}）" if qc_lot and str(qc_lot).strip() else ""
    systems = "；".join(f"{ts.analyte.name} · {describe_instrument(ts.instrument)}"
                       for ts in found)
    head = f"项目代码“{code}”{lot}对应多个检测系统：{systems}。"
    if len(_on(found)) == 1:
        return head + "它们在同一台仪器上，请在“项目映射”中指定"
    if not sent:
        return head + ("记录中没有仪器信息，无法区分；请在文件中填写“仪器”列"
                       "（序列号、名称或型号），或在“仪器映射”中指定")
    if not named:
        return head + f"仪器“{sent}”与本实验室的仪器都对不上；请在“仪器映射”中把“{sent}”" \
                      "对应到一台仪器"
    return head + f"仪器“{sent}”同时匹配 {_instruments_text(named)}；请使用仪器序列号，" \
                  "或在“仪器映射”中指定"
