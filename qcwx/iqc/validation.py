"""Check what a capture channel sends before anything is stored (one set of rules).

Used by :func:`qcwx.iqc.services.prepare_runs` for every channel and by the import preview,
so a row's error names its field in the same words wherever it was typed or sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload, load_only, selectinload

from qcwx.catalog.models import Analyte, QcLevel, TestSystem
from qcwx.errors import Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.numbers import MAX_ID, ascii_int
from qcwx.orgs.models import Lab, User
from qcwx.orgs.scopes import can_access_lab
from qcwx.timeutil import local_today
from qcwx.web.apischema import ApiModel, FiniteNumber, OptionalFormDate, RunNo
from qcwx.web.apischema import text as bounded_text

SUBMITTER_ROLES = {"technician", "supervisor", "director", "admin"}
CHANNELS = {"h5": "手机录入", "scan": "扫码录入", "upload": "文件导入", "api": "接口上传",
            "mp": "小程序"}
MAX_VALUE_TEXT = 32
MAX_CLIENT_ID = 64
#: Reasons (limit, rule set, correction) are ``String(255)`` columns; notes are ``Text``.
MAX_REASON = 255
MAX_NOTE = 2000
#: Dates a QC run or a limit may carry: earlier or later ones are typing errors, and
#: 0001-01-01 / 9999-12-31 overflow date arithmetic (a window ending a day later).
PLAUSIBLE_FIRST_DAY = date(1990, 1, 1)
PLAUSIBLE_LAST_DAY = date(2099, 12, 31)

# ---------------------------------------------------------------- JSON bodies
#: A level key: the level's index, its name or ``id:<level id>``.
LevelKey = bounded_text(64)
#: A level's result as typed (text keeps the decimals) or a JSON number; empty = not run.
LevelValue = bounded_text(MAX_VALUE_TEXT, min_length=0) | FiniteNumber | None


class RunValues(ApiModel):
    """The per-level results of one run, as every JSON channel that enters runs sends them."""

    values: dict[LevelKey, LevelValue] = Field(
        title="各水平结果", min_length=1, max_length=12,
        description="键为水平序号（1、2…）、水平名称或 id:<水平ID>；值为结果文字（保留小数位）")
    type_messages: ClassVar[dict[str, str]] = {"values": "请至少填写一个水平的结果",
                                               "run_no": "批次号必须是 1–99 的整数"}

    @classmethod
    def api_field(cls, loc: tuple) -> str:
        """Name a bad level value as the entry form does (``level_1``), else the key."""
        if len(loc) > 1 and loc[0] == "values":
            key = str(loc[1]).strip()
            return f"level_{key}" if key.isascii() and key.isdigit() else "values"
        return super().api_field(loc)

    def level_texts(self) -> dict[str, str | None]:
        """Return ``values`` as {level key: text}; a JSON number is taken as its text."""
        return {k: v if v is None or isinstance(v, str) else str(v)
                for k, v in self.values.items()}


def _form_int(raw: str) -> int | None:
    """Return the integer a form field holds (already checked to be 0–2 ASCII digits)."""
    return int(raw) if raw.strip() else None


class EntryRunSubmission(RunValues):
    """``POST /api/ts/<id>/runs``: the entry page's form sent as JSON (form fields are text).

    Unknown keys are ignored, as the form POST ignores unknown fields: a ``channel`` the
    page might send is never read (the route decides it), and it must not cost the run.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_date: OptionalFormDate = Field(None, title="检测日期")
    run_no: RunNo | Annotated[str, StringConstraints(
        strict=True, pattern=r"^ *[0-9]{0,2} *$"), AfterValidator(_form_int)] | None = Field(
        None, title="批次号")
    client_id: bounded_text(MAX_CLIENT_ID, min_length=0) | None = Field(None, title="记录编号")


# ---------------------------------------------------------------- validation
def clean_text(value, field: str, label: str, *, limit: int, required: bool = True
               ) -> str | None:
    """Return the trimmed text (None when optional and empty); refuse it over ``limit``.

    Checked before the database: MariaDB refuses a too-long value with an error (a 500),
    SQLite silently stores it.
    """
    text = ("" if value is None else str(value)).strip()
    if not text:
        if required:
            raise UserError(f"请填写{label}", field=field)
        return None
    if len(text) > limit:
        raise UserError(f"{label}过长（最多{limit}字）", field=field)
    return text


def check_submitter(actor: User) -> None:
    """Refuse (403) a role that may not enter QC results.

    JSON views call it right after the scope check and before they validate the body, so
    a role that may not submit hears 403 whatever it sent, as the permission matrix expects.
    """
    if actor.role not in SUBMITTER_ROLES:
        raise Forbidden("当前角色不能录入质控结果")


def check_plausible_date(day: date, field: str) -> date:
    """Return ``day`` when it lies in the plausible window, else refuse it naming ``field``."""
    if not PLAUSIBLE_FIRST_DAY <= day <= PLAUSIBLE_LAST_DAY:
        raise UserError(f"日期 {day.isoformat()} 不在合理范围内（{PLAUSIBLE_FIRST_DAY.year}–"
                        f"{PLAUSIBLE_LAST_DAY.year} 年）", field=field)
    return day


def parse_value(text: str, field_name: str) -> float:
    """Parse a value as typed on a phone: full-width digits and commas, spaces; finite only."""
    if text is None or not str(text).strip():
        raise UserError("请填写结果", field=field_name)
    raw = str(text).strip()
    if len(raw) > MAX_VALUE_TEXT:
        raise UserError("结果过长", field=field_name)
    norm = raw.translate(str.maketrans("０１２３４５６７８９．－＋，", "0123456789.-+,")).replace(
        ",", ".").replace(" ", "")
    try:
        value = float(norm)
    except ValueError:
        raise UserError(f"结果“{raw}”不是有效数字", field=field_name) from None
    if not math.isfinite(value):
        raise UserError(f"结果“{raw}”不是有效数字", field=field_name)
    return value


def check_plausible(ts: TestSystem, value: float, field_name: str) -> None:
    a = ts.analyte
    if (a.plausible_low is not None and value < a.plausible_low) or (
            a.plausible_high is not None and value > a.plausible_high):
        low = "" if a.plausible_low is None else f"{a.plausible_low:g}"
        high = "" if a.plausible_high is None else f"{a.plausible_high:g}"
        raise UserError(f"结果 {value:g} 超出{a.name}的合理范围（{low}–{high} {a.unit}），"
                        "请核对是否录入错误", field=field_name)


@functools.cache
def _levels_option() -> tuple:
    return (selectinload(TestSystem.levels),)


def load_test_system(actor: User, ts_id: int) -> TestSystem:
    """Return the test system if in the actor's scope, else 404 (existence is not revealed)."""
    ts_id = ascii_int(ts_id, 1, MAX_ID)
    if ts_id is None:
        raise NotFound("检测系统不存在或无权访问", field="test_system_id")
    ts = db.session.get(TestSystem, ts_id, options=_levels_option())
    if ts is None or not can_access_lab(actor, ts.lab_id):
        raise NotFound("检测系统不存在或无权访问", field="test_system_id")
    return ts


_SCOPE_KEY = "qcwx.iqc.test_systems_in_scope"


def load_for_submission(actor: User, ts_id) -> TestSystem:
    """Return the test system if in the actor's scope, else 404 (existence is not revealed).

    The scope rule is :func:`load_test_system`'s; this adds two savings
    a submission needs (issue 14: the view and :func:`prepare_runs` both load the system).
    The first load brings the lab, QC lot, analyte and levels in one statement instead of
    four lazy loads, and the answer is remembered for this actor until the transaction ends,
    so the second load costs no statement at all.
    """
    ts_key = ascii_int(ts_id, 1, MAX_ID)
    txn = db.session().get_transaction()
    memo = db.session.info.get(_SCOPE_KEY)
    if memo is None or memo[0] is not txn:
        memo = db.session.info[_SCOPE_KEY] = (txn, set())
    if txn is not None and ts_key is not None and (actor.id, ts_key) in memo[1]:
        found = db.session.get(TestSystem, ts_key)
        if found is not None:
            return found
    held = None  # a strong reference: the identity map alone would let it be collected
    if ts_key is not None and db.session.identity_map.get(
            db.session.identity_key(TestSystem, ts_key)) is None:
        held = db.session.scalars(_system_statement(), {"ts": ts_key}).unique().first()
    ts = load_test_system(actor, ts_id)
    del held
    txn = db.session().get_transaction()  # the first statement may have begun it
    db.session.info[_SCOPE_KEY] = (txn, memo[1] if memo[0] is txn else set())
    db.session.info[_SCOPE_KEY][1].add((actor.id, ts.id))
    return ts


def preload_submission(user_id: int, ts_id) -> tuple | None:
    """Read a bearer's user and the test system its submission names, in one statement.

    Only warms the session (issue 14: the user's read was a round trip of every mini-program
    submission, before :func:`load_for_submission`'s own): the bearer check then finds the
    user in the identity map, and :func:`load_for_submission` the system with its lab, QC
    lot, analyte and levels, and each checks them exactly as before; nothing is decided
    here. Returns the (user, system or None) row, which the caller holds for the request
    (the identity map alone would let the objects go), or None when the id is no id.
    """
    ts_key = ascii_int(ts_id, 1, MAX_ID)
    if ts_key is None:
        return None
    return db.session.execute(_preload_statement(), {"uid": user_id, "ts": ts_key}
                              ).unique().first()


@functools.cache
def _preload_statement():
    """:func:`preload_submission`'s read: the user, and the system if it exists, built once.

    Only the columns a submission reads (33 of 50): PyMySQL parses every column's
    description in Python, for every statement, and that was half of this read's CPU. A
    column left out loads when read, as a deferred column does: never a wrong value.
    """
    return (select(User, TestSystem)
            .outerjoin(TestSystem, TestSystem.id == bindparam("ts"))
            .where(User.id == bindparam("uid"))
            .options(load_only(User.id, User.role, User.region_id, User.hospital_id,
                               User.lab_id, User.mp_openid, User.active, User.session_version),
                     load_only(TestSystem.id, TestSystem.lab_id, TestSystem.analyte_id,
                               TestSystem.qc_lot_id, TestSystem.unit, TestSystem.active),
                     joinedload(TestSystem.lab).load_only(Lab.id, Lab.hospital_id, Lab.name,
                                                          Lab.timezone),
                     joinedload(TestSystem.qc_lot), joinedload(TestSystem.levels),
                     joinedload(TestSystem.analyte).defer(Analyte.discipline)))


@functools.cache
def _system_statement():
    """The system with its lab, QC lot, analyte and levels, in one statement built once.

    Its loader options cost a submission more to build than the statement costs to run.
    """
    return select(TestSystem).where(TestSystem.id == bindparam("ts")).options(
        joinedload(TestSystem.lab), joinedload(TestSystem.qc_lot),
        joinedload(TestSystem.analyte), joinedload(TestSystem.levels))


def level_keys(ts: TestSystem) -> dict[str, QcLevel]:
    by_key: dict[str, QcLevel] = {}
    for lv in ts.levels:
        by_key.update({f"id:{lv.id}": lv, str(lv.level_index): lv, lv.name: lv})
    return by_key


def resolve_levels(ts: TestSystem, values: Mapping, keys: Mapping[str, QcLevel] | None = None
                   ) -> dict[QcLevel, tuple[str, float]]:
    """Map submitted keys (level id, level index or level name) to the test system's levels."""
    if not values or not isinstance(values, Mapping):
        raise UserError("请至少填写一个水平的结果", field="values")
    by_key = keys if keys is not None else level_keys(ts)
    out: dict[QcLevel, tuple[str, float]] = {}
    for key, text in values.items():
        key_s = str(key).strip()
        level = by_key.get(key_s)
        if level is None:
            raise UserError(f"水平“{key_s}”不属于该检测系统的质控批号 {ts.qc_lot.lot_number}",
                            field="level")
        if text is None or str(text).strip() == "":
            continue  # a level not run today
        fname = f"level_{level.level_index}"
        value = parse_value(str(text), fname)
        check_plausible(ts, value, fname)
        if level in out:
            raise UserError(f"{level.name}重复填写", field=fname)
        out[level] = (str(text).strip(), value)
    if not out:
        raise UserError("请至少填写一个水平的结果", field="values")
    return out


def check_run_date(ts: TestSystem, run_date: date) -> None:
    """Refuse a run date in the lab's future or after the QC lot's expiry."""
    if not isinstance(run_date, date) or isinstance(run_date, datetime):
        raise UserError("检测日期无效", field="run_date")
    check_plausible_date(run_date, "run_date")
    if run_date > local_today(ts.lab.timezone):
        raise UserError("检测日期不能晚于今天", field="run_date")
    check_lot_expiry(ts, run_date)


def chinese_date(day: date) -> str:
    """Return ``day`` as written in Chinese, e.g. 2026年11月30日 (no zero padding)."""
    return f"{day.year}年{day.month}月{day.day}日"


def check_lot_expiry(ts: TestSystem, run_date: date) -> None:
    """Refuse a run measured after the last day of its QC lot (400, field ``qc_lot``).

    The expiry is the last usable day *in the lab's own calendar*: a run is a lab-local date
    (QC_SPEC 1.1, ARCHITECTURE rule 6), so the expiry day itself is accepted up to the lab's
    midnight and the next day is refused, whatever the server's clock zone. A run measured
    while the lot was still valid may still be entered afterwards (back-dated entry).
    """
    expiry = ts.qc_lot.expiry
    if expiry is not None and run_date > expiry:
        raise UserError(f"质控品批号 {ts.qc_lot.lot_number} 已于 {chinese_date(expiry)} 过期，"
                        "不能录入结果", field="qc_lot")


def check_run_no(run_no) -> int:
    """Return the run number (1 when not given); 1–99."""
    if run_no in (None, ""):
        return 1
    if isinstance(run_no, float) and run_no.is_integer():
        run_no = int(run_no)  # 2.0 from a JSON client; Infinity and NaN are refused below
    n = ascii_int(run_no, -MAX_ID, MAX_ID)
    if n is None:
        raise UserError("批次号必须是正整数", field="run_no")
    if not 1 <= n <= 99:
        raise UserError("批次号必须在 1–99 之间", field="run_no")
    return n


def payload_hash(ts_id: int, run_date: date | None, run_no: int, values: dict) -> str:
    """Return the digest that tells a resend (same payload) from a reused client id.

    ``run_date`` None: the client sent no date (the server's today, which a resend after
    midnight would change).
    """
    body = json.dumps({"ts": ts_id, "d": run_date and run_date.isoformat(), "n": run_no,
                       "v": sorted((lv.id, t) for lv, (t, _) in values.items())},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()
