"""What the mini-program API answers, declared as models its OpenAPI document is built from.

The presenters (:mod:`miniprogram_api.presenters`) shape plain dicts; these models describe
those dicts for the document (``components.schemas``), and the tests and the schemathesis
run check every real answer against them. Every key is required (``null`` where a value may
be missing) and no other key is allowed, so a presenter that drops or adds one is caught.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from qcwx.orgs.models import ROLES
from qcwx.web.apischema import ResponseModel

RunStatus = Literal["accept", "warning", "reject", "pending"]
Role = Literal[tuple(ROLES)]  # type: ignore[valid-type]  # the roles as the orgs package has them


class Error(ResponseModel):
    """Every refusal: a Chinese message and the field at fault."""

    error: str
    field: str | None


class BindRequired(ResponseModel):
    """``/login`` with a WeChat account bound to nobody yet: bind with an invite code."""

    error: str
    field: str | None = None
    bind_required: bool
    openid_hint: str | None = None


class Lab(ResponseModel):
    """The user's lab."""

    id: int
    name: str
    full_name: str


class User(ResponseModel):
    """The logged-in user."""

    id: int
    username: str
    display_name: str
    role: Role
    role_label: str
    lab: Lab | None


class Session(ResponseModel):
    """A JWT and its user."""

    token: str
    expires_in: int
    user: User


class Me(ResponseModel):
    """The logged-in user."""

    user: User


class LevelTarget(ResponseModel):
    """A QC level and its targets in force."""

    id: int
    index: int
    name: str
    target_mean: float | None
    target_sd: float | None


class RunLevelValue(ResponseModel):
    """One level's value in a run list."""

    level_id: int
    level: str
    value: str
    z: float | None
    rules: list[str]


class RunSummary(ResponseModel):
    """A run with its verdict, as lists show it."""

    run_id: int
    run_date: date
    run_no: int
    status: RunStatus
    status_label: str
    values: list[RunLevelValue]
    rules: list[str]


class LabRef(ResponseModel):
    """The lab of a test system."""

    id: int
    full_name: str


class Analyte(ResponseModel):
    """What a test system measures."""

    code: str
    name: str
    unit: str
    decimals: int


class QcLot(ResponseModel):
    """The QC lot of a test system."""

    lot_number: str
    material: str
    expiry: date | None


class TestSystemContext(ResponseModel):
    """A scanned test system: what, on what, targets, and today's runs."""

    id: int
    lab: LabRef
    analyte: Analyte
    instrument: str
    qc_lot: QcLot
    levels: list[LevelTarget]
    today: date
    next_run_no: int
    today_runs: list[RunSummary]


class ScanAnswer(ResponseModel):
    """The answer of ``/scan``."""

    test_system: TestSystemContext


class LevelValue(ResponseModel):
    """One level's value in a verdict, with its target and z-score."""

    level_id: int
    level_name: str
    value_text: str
    value: float
    target_mean: float | None
    target_sd: float | None
    z: float | None


class FiredRule(ResponseModel):
    """A Westgard rule that fired, explained."""

    rule: str
    role: str
    name: str
    error: str
    explanation: str
    levels: list[str]


class Verdict(ResponseModel):
    """The verdict of a submitted run."""

    run_id: int
    test_system_id: int
    run_date: date
    run_no: int
    status: RunStatus
    status_label: str
    summary: str
    duplicate: bool
    action_id: int | None
    values: list[LevelValue]
    rules: list[FiredRule]


class RunHistory(ResponseModel):
    """The latest runs of a test system."""

    test_system_id: int
    runs: list[RunSummary]


class ChartLevel(ResponseModel):
    """One level's Levey–Jennings series."""

    level_id: int
    level: str
    mean: float | None
    sd: float | None
    labels: list[str]
    run_ids: list[int]
    values: list[float]
    z: list[float | None]
    status: list[str]
    rules: list[list[str]]


class ChartData(ResponseModel):
    """Levey–Jennings series per level of a period."""

    test_system_id: int
    analyte: str
    unit: str
    decimals: int
    start: date
    end: date
    levels: list[ChartLevel]


class Alert(ResponseModel):
    """An alert of the user's labs with its delivery and read state."""

    id: int
    kind: Literal["run_warning", "run_reject", "missing_submission", "daily_digest"]
    kind_label: str
    title: str
    run_id: int | None
    test_system_id: int | None
    rules: list[str]
    time: str | None
    created_at: datetime | None
    delivery_status: Literal["pending", "sent", "failed", "dead"]
    delivery_status_label: str
    acked: bool
    acked_at: datetime | None
    acked_by: str | None


class AlertList(ResponseModel):
    """The alerts, newest first."""

    alerts: list[Alert]


class AckAnswer(ResponseModel):
    """The alert just marked as read."""

    alert: Alert


class SubscriptionAnswer(ResponseModel):
    """Consents recorded now, and the unused ones per template."""

    recorded: int
    unused: dict[str, int]


RESPONSE_MODELS = (Error, BindRequired, Session, Me, ScanAnswer, Verdict, RunHistory,
                   ChartData, AlertList, AckAnswer, SubscriptionAnswer)
