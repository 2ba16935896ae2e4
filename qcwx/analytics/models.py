"""Saved instrument comparisons (WS/T 407): the inputs, who ran them and when.

Only the inputs are stored — the pairs, λ, the allowable bias and the decision levels — and
the statistics are recomputed from them by :mod:`qcwx.qcstats.regression` whenever shown, so
a saved comparison can never disagree with the verified code. Pairs are ``[x, y, label]``
(label: the sample number, or the date and level of QC results).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Double, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.catalog.models import Analyte, TestSystem
from qcwx.extensions import db
from qcwx.orgs.models import Lab, User
from qcwx.timeutil import utcnow

SOURCES = {"qc": "同日同批号质控结果", "upload": "上传的配对患者结果"}


class InstrumentComparison(db.Model):
    """One comparison of two analysers of a lab on one analyte (x reference, y compared)."""

    __tablename__ = "instrument_comparison"
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    analyte_id: Mapped[int] = mapped_column(ForeignKey("analyte.id"))
    source: Mapped[str] = mapped_column(String(8))
    x_label: Mapped[str] = mapped_column(String(120))
    y_label: Mapped[str] = mapped_column(String(120))
    x_ts_id: Mapped[int | None] = mapped_column(ForeignKey("test_system.id"))
    y_ts_id: Mapped[int | None] = mapped_column(ForeignKey("test_system.id"))
    period_start: Mapped[date | None]
    period_end: Mapped[date | None]
    error_ratio: Mapped[float] = mapped_column(Double, default=1.0)
    allowable_bias: Mapped[float] = mapped_column(Double)
    decision_levels: Mapped[list] = mapped_column(JSON)
    pairs: Mapped[list] = mapped_column(JSON)
    unit: Mapped[str] = mapped_column(String(32))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    lab: Mapped[Lab] = relationship()
    analyte: Mapped[Analyte] = relationship()
    x_ts: Mapped[TestSystem | None] = relationship(foreign_keys=[x_ts_id])
    y_ts: Mapped[TestSystem | None] = relationship(foreign_keys=[y_ts_id])
    created_by: Mapped[User | None] = relationship()

    @property
    def source_label(self) -> str:
        """Return where the pairs came from, in Chinese."""
        return SOURCES.get(self.source, self.source)
