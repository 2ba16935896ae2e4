"""Peer-comparison tables: saved groupings, frozen monthly snapshots and the moments cache.

* ``SavedGrouping`` — a named filter stack the regional centre keeps (e.g. "罗氏 c702 酶法").
* ``PeerSnapshot`` + ``PeerSnapshotLab`` — a month's statistics frozen once the month is
  over. Reports and grades refer to these rows; nothing recomputes them silently, so a late
  submission changes the live numbers but never a published month.
* ``PeerLabDay`` + ``PeerTsState`` — a derived cache: per test system, level and day the
  moments n, Σx, Σx² of its in-control current results. Any period (calendar month, rolling
  30 days, cumulative) is one indexed ``SUM … GROUP BY`` over it instead of a three-table
  join over every raw result, which is what keeps national-size groups fast. A test system
  without a ``PeerTsState`` row has never been cached and is read from raw results instead,
  so correctness never depends on the cache having been built. Cache rows are written with
  Core statements (not audited): they are a pure function of audited rows.

Statistics columns are ``Double`` so MariaDB keeps float64 (``Float`` is 4-byte there).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Double, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.extensions import db
from qcwx.orgs.models import Region, User
from qcwx.timeutil import utcnow

#: Group levels in fallback order, with the label every statistic is shown with.
GROUP_LEVEL_LABELS = {"peer": "同组", "method": "同方法", "all": "全部"}


class SavedGrouping(db.Model):
    """A named peer-group filter stack of one region (chosen by the QC centre)."""

    __tablename__ = "peer_saved_grouping"
    __table_args__ = (UniqueConstraint("region_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # {dimension: [value, …]} as parsed by qcwx.peer.filters (only known dimensions).
    filters: Mapped[dict] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    region: Mapped[Region] = relationship()
    created_by: Mapped[User | None] = relationship()


class PeerSnapshot(db.Model):
    """One region's frozen month: the header the per-system rows hang below."""

    __tablename__ = "peer_snapshot"
    __table_args__ = (UniqueConstraint("region_id", "month"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    month: Mapped[str] = mapped_column(String(7))  # "YYYY-MM", lab-local calendar month
    method: Mapped[str] = mapped_column(String(16), default="algorithm_a")
    n_systems: Mapped[int] = mapped_column(default=0)
    n_results: Mapped[int] = mapped_column(default=0)
    frozen_at: Mapped[datetime] = mapped_column(default=utcnow)
    frozen_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    region: Mapped[Region] = relationship()
    frozen_by: Mapped[User | None] = relationship()


class PeerSnapshotLab(db.Model):
    """One test system × QC level of a frozen month, with the group it was compared with.

    ``group_level`` is ``peer``/``method``/``all`` (the first publishable level) or None when
    no level had ≥ 5 labs and ≥ 20 results — then the group columns stay empty on purpose.
    """

    __tablename__ = "peer_snapshot_lab"
    __table_args__ = (UniqueConstraint("snapshot_id", "test_system_id", "qc_level_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("peer_snapshot.id"), index=True)
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"), index=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    analyte_id: Mapped[int] = mapped_column(ForeignKey("analyte.id"))
    qc_level_id: Mapped[int] = mapped_column(ForeignKey("qc_level.id"))
    unit: Mapped[str] = mapped_column(String(32))
    n: Mapped[int]
    mean: Mapped[float] = mapped_column(Double)
    sd: Mapped[float | None] = mapped_column(Double)
    cv: Mapped[float | None] = mapped_column(Double)
    group_level: Mapped[str | None] = mapped_column(String(8))
    group_label: Mapped[str | None] = mapped_column(String(255))
    group_n_labs: Mapped[int | None]
    group_n_systems: Mapped[int | None]
    group_n_results: Mapped[int | None]
    group_mean: Mapped[float | None] = mapped_column(Double)
    group_sd: Mapped[float | None] = mapped_column(Double)
    group_cv: Mapped[float | None] = mapped_column(Double)
    group_flagged: Mapped[bool] = mapped_column(default=False)
    sdi: Mapped[float | None] = mapped_column(Double)
    cvr: Mapped[float | None] = mapped_column(Double)
    bias_pct: Mapped[float | None] = mapped_column(Double)
    bias_rank: Mapped[int | None]
    cv_rank: Mapped[int | None]
    rank_size: Mapped[int | None]
    tea_pct: Mapped[float | None] = mapped_column(Double)
    tea_source: Mapped[str | None] = mapped_column(String(100))
    allowable_cv: Mapped[float | None] = mapped_column(Double)
    allowable_bias: Mapped[float | None] = mapped_column(Double)
    sigma: Mapped[float | None] = mapped_column(Double)
    grade: Mapped[str | None] = mapped_column(String(1))
    snapshot: Mapped[PeerSnapshot] = relationship()


class PeerLabDay(db.Model):
    """Cached moments of one test system × level × run date (in-control, current results)."""

    __tablename__ = "peer_lab_day"
    # (system, day): a refresh re-reads one system's days from a date on, which the primary
    # key (system, level, day) cannot bound past the system
    __table_args__ = (Index("ix_peer_lab_day_level_day", "qc_level_id", "day"),
                      Index("ix_peer_lab_day_ts_day", "test_system_id", "day"))
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"), primary_key=True)
    qc_level_id: Mapped[int] = mapped_column(ForeignKey("qc_level.id"), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    n: Mapped[int]
    total: Mapped[float] = mapped_column(Double)
    total_sq: Mapped[float] = mapped_column(Double)


class PeerTsState(db.Model):
    """Marks a test system whose ``PeerLabDay`` rows are maintained (and when last refreshed)."""

    __tablename__ = "peer_ts_state"
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"), primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)
    n_results: Mapped[int] = mapped_column(default=0)
