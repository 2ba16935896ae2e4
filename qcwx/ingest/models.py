"""Per-lab mappings from what instruments and LIS exports say to qcwx's test systems.

Parsers (pure) return instrument test codes, level names and column headers as sent; these
tables translate them, per lab, into test systems and level indices after parsing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.catalog.models import Instrument, TestSystem
from qcwx.extensions import db
from qcwx.timeutil import utcnow


class TestCodeMapping(db.Model):
    """Instrument/LIS test code (optionally with a QC lot number) → test system of a lab."""

    __tablename__ = "test_code_mapping"
    __table_args__ = (UniqueConstraint("lab_id", "source_code", "qc_lot_number"),)
    __test__ = False
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    source_code: Mapped[str] = mapped_column(String(64))
    qc_lot_number: Mapped[str] = mapped_column(String(64), default="")
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    test_system: Mapped[TestSystem] = relationship()


class LevelCodeMapping(db.Model):
    """A level name as instruments send it (``H``, ``MEDIUM``, ``QC2``) → level index 1..3."""

    __tablename__ = "level_code_mapping"
    __table_args__ = (UniqueConstraint("lab_id", "source_level"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    source_level: Mapped[str] = mapped_column(String(32))
    level_index: Mapped[int]


class InstrumentMapping(db.Model):
    """An analyser as a lab's messages or files name it (``H500 910YOXH02826``) → instrument.

    Used by the mapping after code and QC lot, when one code and lot have test systems on
    several instruments and the sent name matches no serial, name or model by itself.
    """

    __tablename__ = "instrument_mapping"
    __table_args__ = (UniqueConstraint("lab_id", "source_instrument"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    source_instrument: Mapped[str] = mapped_column(String(128))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instrument.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    instrument: Mapped[Instrument] = relationship()


class IngestSetting(db.Model):
    """A lab's import settings: the sample-id pattern of QC from analysers that mark nothing."""

    __tablename__ = "ingest_setting"
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), unique=True)
    qc_sample_id_pattern: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ColumnMapping(db.Model):
    """A saved CSV/XLSX column mapping of a lab's LIS export format."""

    __tablename__ = "column_mapping"
    __table_args__ = (UniqueConstraint("lab_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    columns: Mapped[dict] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UploadBatch(db.Model):
    """One uploaded file or interface message batch, kept for traceability."""

    __tablename__ = "upload_batch"
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str | None] = mapped_column(String(255))
    file_hash: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(16))
    n_rows: Mapped[int] = mapped_column(default=0)
    n_stored: Mapped[int] = mapped_column(default=0)
    n_duplicate: Mapped[int] = mapped_column(default=0)
    n_errors: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReceivedLoinc(db.Model):
    """A LOINC code an analyser sent with a test code, kept with the test system it was stored in.

    Parsers read the code (ASTM ``^^^WBC^6690-2``, HL7 OBX-3 coded ``LN``); keeping it lets
    the mapping suggest test systems by LOINC and lets the centre's exception report flag a
    code that is not one of the mapped analyte's LOINC codes (a wrongly mapped channel).
    """

    __tablename__ = "received_loinc"
    __table_args__ = (UniqueConstraint("test_system_id", "source_code", "loinc"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"), index=True)
    source_code: Mapped[str] = mapped_column(String(64))
    loinc: Mapped[str] = mapped_column(String(10))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    test_system: Mapped[TestSystem] = relationship()
