"""The catalogue: what is measured, with what, against which QC material.

A test system (检测系统) is the six-code test definition of QC_SPEC §3 — analyte, instrument,
reagent, method, unit, temperature (plus calibrator) — in one lab, with the QC lot and the
levels it runs. Peer groups are formed from these codes, so they are rows, not free text.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Double, ForeignKey, String, Table, UniqueConstraint, event
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, relationship
from sqlalchemy.orm.attributes import set_committed_value

from qcwx.catalog.validation import clamp_decimals, row_problems
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs.models import Lab, Region, User
from qcwx.timeutil import utcnow

log = logging.getLogger(__name__)


class Analyte(db.Model):
    """A measurand (检验项目) with its unit as labs write it and display decimals."""

    __tablename__ = "analyte"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(32))
    decimals: Mapped[int] = mapped_column(default=2)
    discipline: Mapped[str] = mapped_column(String(16), default="生化")
    # A value outside [plausible_low, plausible_high] is refused as a typing error.
    plausible_low: Mapped[float | None] = mapped_column(Double)
    plausible_high: Mapped[float | None] = mapped_column(Double)
    specs: Mapped[list[QualitySpec]] = relationship(back_populates="analyte")

    def __str__(self) -> str:
        return f"{self.name}（{self.code}）"


@event.listens_for(Analyte, "load")
def _clamp_legacy_decimals(target: Analyte, _context: Any) -> None:
    """Read a stored decimals outside 0–6 (written around the ORM) as the nearest valid one.

    Every page formats numbers with ``f"{v:.{decimals}f}"``; a negative value would make
    each of them fail. The row itself is left alone (an admin save writes a checked value).
    """
    if "decimals" not in target.__dict__:  # not loaded (deferred or not refreshed)
        return
    stored = target.__dict__["decimals"]
    fixed = clamp_decimals(stored)
    if stored != fixed:
        log.warning("analyte %s has invalid decimals %r; using %s", target.id, stored, fixed)
        set_committed_value(target, "decimals", fixed)


@event.listens_for(Analyte, "refresh")
def _clamp_refreshed_decimals(target: Analyte, context: Any, _attrs: Any) -> None:
    """Apply :func:`_clamp_legacy_decimals` when an expired analyte is read again."""
    _clamp_legacy_decimals(target, context)


class QualitySpec(db.Model):
    """An allowable CV / bias / TEa row, kept with its source and version.

    TEa is either a percentage, or two-tier: an absolute limit ``tea_abs`` (in ``tea_abs_unit``)
    at or below ``tea_threshold`` and ``tea_pct`` above it (QC_SPEC §5).
    """

    __tablename__ = "quality_spec"
    id: Mapped[int] = mapped_column(primary_key=True)
    analyte_id: Mapped[int] = mapped_column(ForeignKey("analyte.id"), index=True)
    spec_set: Mapped[str] = mapped_column(String(32))
    allowable_cv: Mapped[float | None] = mapped_column(Double)
    allowable_bias: Mapped[float | None] = mapped_column(Double)
    tea_pct: Mapped[float | None] = mapped_column(Double)
    tea_abs: Mapped[float | None] = mapped_column(Double)
    tea_abs_unit: Mapped[str | None] = mapped_column(String(32))
    tea_threshold: Mapped[float | None] = mapped_column(Double)
    source: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    analyte: Mapped[Analyte] = relationship(back_populates="specs")

    @property
    def tea_text(self) -> str:
        """Return TEa as the standard writes it, e.g. ``0.2 mmol/L (≤3.3)；6%``."""
        pct = f"{self.tea_pct:g}%" if self.tea_pct is not None else "—"
        if self.tea_abs is not None:  # an incomplete legacy row still renders
            threshold = f"{self.tea_threshold:g}" if self.tea_threshold is not None else "?"
            unit = self.tea_abs_unit or ""
            return f"{self.tea_abs:g} {unit} (≤{threshold})；{pct}"
        return pct


class Instrument(db.Model):
    """An analyser in a lab: maker and model group peers, the serial identifies the unit."""

    __tablename__ = "instrument"
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    maker: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(64))
    lab: Mapped[Lab] = relationship()

    def __str__(self) -> str:
        return f"{self.maker} {self.model}" + (f"（{self.serial}）" if self.serial else "")


class MakerNamed:
    """A catalogue product named by its maker and product name, unique as a pair."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple:  # one constraint object per table
        return (UniqueConstraint("maker", "name"),)

    maker: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))

    def __str__(self) -> str:
        return f"{self.maker} {self.name}"


class Reagent(MakerNamed, db.Model):
    """A reagent (试剂) by maker and name."""

    __tablename__ = "reagent"
    id: Mapped[int] = mapped_column(primary_key=True)


class Method(db.Model):
    """A measurement method (方法学), e.g. 己糖激酶法, grouped by principle."""

    __tablename__ = "method"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    principle: Mapped[str | None] = mapped_column(String(64))

    def __str__(self) -> str:
        return self.name


class Calibrator(MakerNamed, db.Model):
    """A calibrator (校准品) by maker and name."""

    __tablename__ = "calibrator"
    id: Mapped[int] = mapped_column(primary_key=True)


class QcMaterial(MakerNamed, db.Model):
    """A QC material (质控品) by maker and name; lots hang below it."""

    __tablename__ = "qc_material"
    id: Mapped[int] = mapped_column(primary_key=True)
    lots: Mapped[list[QcLot]] = relationship(back_populates="material")


class QcLot(db.Model):
    """One lot (批号) of a QC material; labs on the same lot form the comparison."""

    __tablename__ = "qc_lot"
    __table_args__ = (UniqueConstraint("material_id", "lot_number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("qc_material.id"), index=True)
    lot_number: Mapped[str] = mapped_column(String(64))
    expiry: Mapped[date | None]
    material: Mapped[QcMaterial] = relationship(back_populates="lots")
    levels: Mapped[list[QcLevel]] = relationship(
        back_populates="lot", order_by="QcLevel.level_index"
    )

    def __str__(self) -> str:
        return f"{self.material.name} 批号 {self.lot_number}"


class QcLevel(db.Model):
    """A level (水平) of a lot; ``level_index`` 1..3 orders levels in Westgard sequences."""

    __tablename__ = "qc_level"
    __table_args__ = (UniqueConstraint("lot_id", "level_index"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("qc_lot.id"), index=True)
    level_index: Mapped[int]
    name: Mapped[str] = mapped_column(String(32))
    lot: Mapped[QcLot] = relationship(back_populates="levels")

    def __str__(self) -> str:
        return f"{self.lot.lot_number} {self.name}"


test_system_level = Table(
    "test_system_level",
    db.metadata,
    Column("test_system_id", ForeignKey("test_system.id"), primary_key=True),
    Column("qc_level_id", ForeignKey("qc_level.id"), primary_key=True),
)


class TestSystem(db.Model):
    """A test system (检测系统): the six codes in one lab plus the QC lot and levels it runs."""

    __tablename__ = "test_system"
    __test__ = False  # not a pytest class despite the name
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    analyte_id: Mapped[int] = mapped_column(ForeignKey("analyte.id"), index=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instrument.id"), index=True)
    reagent_id: Mapped[int | None] = mapped_column(ForeignKey("reagent.id"))
    method_id: Mapped[int | None] = mapped_column(ForeignKey("method.id"))
    calibrator_id: Mapped[int | None] = mapped_column(ForeignKey("calibrator.id"))
    unit: Mapped[str] = mapped_column(String(32))
    temperature: Mapped[str] = mapped_column(String(16), default="37℃")
    qc_lot_id: Mapped[int] = mapped_column(ForeignKey("qc_lot.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    # Bumped to revoke printed QR labels (the label token carries it).
    label_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    lab: Mapped[Lab] = relationship()
    analyte: Mapped[Analyte] = relationship()
    instrument: Mapped[Instrument] = relationship()
    reagent: Mapped[Reagent | None] = relationship()
    method: Mapped[Method | None] = relationship()
    calibrator: Mapped[Calibrator | None] = relationship()
    qc_lot: Mapped[QcLot] = relationship()
    levels: Mapped[list[QcLevel]] = relationship(
        secondary=test_system_level, order_by="QcLevel.level_index"
    )

    @property
    def title(self) -> str:
        """Return the short Chinese title users recognise: analyte · instrument."""
        return f"{self.analyte.name} · {self.instrument.maker} {self.instrument.model}"

    def __str__(self) -> str:
        return f"{self.title}（{self.qc_lot.lot_number}）"


PROPOSAL_STATUSES = {"pending": "待审核", "accepted": "已采纳", "rejected": "未采纳"}


class CatalogueProposal(db.Model):
    """A centre's proposed new row or change of a shared catalogue row, for the platform admin.

    ``proposed_values`` holds the proposed column values as JSON (only the changed ones for
    an edit). Accepting applies them through the same checks as the admin forms.
    """

    __tablename__ = "catalogue_proposal"
    id: Mapped[int] = mapped_column(primary_key=True)
    table_name: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(8))  # create · update
    row_id: Mapped[int | None]
    proposed_values: Mapped[dict] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"), index=True)
    proposed_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(String(500))
    region: Mapped[Region | None] = relationship()
    proposed_by: Mapped[User] = relationship(foreign_keys=[proposed_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    @property
    def status_label(self) -> str:
        """Return the status in Chinese."""
        return PROPOSAL_STATUSES.get(self.status, self.status)


@event.listens_for(Session, "before_flush")
def _check_catalogue_rows(session: Session, _ctx: Any, _instances: Any) -> None:
    """Refuse to store a catalogue row whose numbers would break a computation.

    Every write path flushes, so this is the one check none of them can miss; the admin
    forms run the same checks earlier to show the message beside the field.
    """
    changed = [o for o in session.dirty if session.is_modified(o, include_collections=False)]
    for obj in [*session.new, *changed]:
        problems = row_problems(obj)
        if problems:
            field, message = problems[0]
            raise UserError(message, field=field)
