"""LOINC codes of analytes and UCUM codes of units: what makes the region's data reusable.

An analyte maps to one or more LOINC codes (the code names analyte, specimen, property and
sometimes method: glucose is 14749-6 in mmol/L and 2345-7 in mg/dL; albumin by BCG is
61151-7). :func:`pick_loinc` chooses the one that fits a test system: a method-specific code
only for that method, then the code whose UCUM unit is the system's, then the default.
A unit maps to one UCUM code, matched through :func:`qcwx.peer.units.unit_key`, so
``µmol/L`` and ``umol/L`` share a row.

The shipped mapping (``data/analyte_loinc.csv``, ``data/unit_ucum.csv``, each row with its
source) is loaded by :func:`apply_shipped_codes` for analytes that exist; it never overwrites
a row the centre has edited. Edits go through the admin (audited like every write).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.catalog.models import Analyte
from qcwx.extensions import db
from qcwx.peer.units import unit_key

DATA_DIR = Path(__file__).parent / "data"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"


class AnalyteLoinc(db.Model):
    """One LOINC code of an analyte, for a specimen/property/method and the UCUM unit it uses.

    ``method`` holds a :class:`~qcwx.catalog.models.Method` code when the LOINC code is
    method-specific (61151-7 albumin by BCG), else None.
    """

    __tablename__ = "analyte_loinc"
    __table_args__ = (UniqueConstraint("analyte_id", "loinc"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    analyte_id: Mapped[int] = mapped_column(ForeignKey("analyte.id"), index=True)
    loinc: Mapped[str] = mapped_column(String(10), index=True)
    display: Mapped[str] = mapped_column(String(200), default="")
    specimen: Mapped[str] = mapped_column(String(16), default="Ser/Plas")
    property: Mapped[str] = mapped_column(String(8), default="")
    method: Mapped[str | None] = mapped_column(String(32))
    ucum: Mapped[str] = mapped_column(String(32))
    is_default: Mapped[bool] = mapped_column(default=False)
    source: Mapped[str] = mapped_column(String(100), default="")
    analyte: Mapped[Analyte] = relationship()

    def __str__(self) -> str:
        return f"{self.loinc} {self.display}"


class UnitCode(db.Model):
    """The UCUM code of a unit as labs write it (``µmol/L`` → ``umol/L``)."""

    __tablename__ = "unit_code"
    id: Mapped[int] = mapped_column(primary_key=True)
    unit: Mapped[str] = mapped_column(String(32), unique=True)
    ucum: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(100), default="")

    def __str__(self) -> str:
        return f"{self.unit} → {self.ucum}"


@dataclass(frozen=True)
class LoincChoice:
    """A LOINC code as the exports use it (plain data, detached from the session)."""

    loinc: str
    display: str
    method: str | None
    ucum: str
    is_default: bool


def pick_loinc(rows: Sequence[LoincChoice], method_code: str | None,
               ucum: str | None) -> LoincChoice | None:
    """Return the LOINC code that fits a system's method and unit, or None when none applies.

    A method-specific code applies only to its method; among the rest the method match wins,
    then the code whose UCUM unit equals the system's, then the analyte's default.

    >>> mol = LoincChoice("14749-6", "", None, "mmol/L", True)
    >>> mass = LoincChoice("2345-7", "", None, "mg/dL", False)
    >>> pick_loinc([mol, mass], "HK", "mg/dL").loinc
    '2345-7'
    """
    fits = [r for r in rows if not r.method or r.method == method_code]
    if not fits:
        return None
    return max(fits, key=lambda r: (bool(r.method), r.ucum == ucum, r.is_default))


def loinc_choices() -> dict[int, list[LoincChoice]]:
    """Return every analyte's LOINC codes by analyte id (one query; the table is small)."""
    out: dict[int, list[LoincChoice]] = {}
    for r in db.session.scalars(select(AnalyteLoinc).order_by(AnalyteLoinc.id)):
        out.setdefault(r.analyte_id, []).append(
            LoincChoice(r.loinc, r.display, r.method or None, r.ucum, r.is_default))
    return out


def ucum_by_key() -> dict[str, str]:
    """Return UCUM codes by :func:`unit_key` of the unit as written."""
    return {unit_key(r.unit): r.ucum for r in db.session.scalars(select(UnitCode))}


def shipped_rows(name: str) -> list[dict[str, str]]:
    """Return the rows of a shipped mapping file (``analyte_loinc`` or ``unit_ucum``)."""
    with (DATA_DIR / f"{name}.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def apply_shipped_codes(analytes: Iterable[Analyte] | None = None) -> tuple[int, int]:
    """Add the shipped LOINC rows of existing analytes and the shipped UCUM rows; flush.

    Rows already present (same analyte and code, same unit) are left as they are, so a
    centre's edit survives a reload. Returns (LOINC rows added, unit rows added).
    """
    by_code = {a.code: a for a in (analytes if analytes is not None
                                   else db.session.scalars(select(Analyte)))}
    have = set(db.session.execute(select(AnalyteLoinc.analyte_id, AnalyteLoinc.loinc)).all())
    n_loinc = 0
    for row in shipped_rows("analyte_loinc"):
        analyte = by_code.get(row["analyte_code"])
        if analyte is None or (analyte.id, row["loinc"]) in have:
            continue
        db.session.add(AnalyteLoinc(
            analyte_id=analyte.id, loinc=row["loinc"], display=row["display"],
            specimen=row["specimen"], property=row["property"], method=row["method"] or None,
            ucum=row["ucum"], is_default=row["is_default"] == "1", source=row["source"]))
        have.add((analyte.id, row["loinc"]))
        n_loinc += 1
    units = {unit_key(u) for u in db.session.scalars(select(UnitCode.unit))}
    n_unit = 0
    for row in shipped_rows("unit_ucum"):
        if unit_key(row["unit"]) not in units:
            db.session.add(UnitCode(unit=row["unit"], ucum=row["ucum"], source=row["source"]))
            units.add(unit_key(row["unit"]))
            n_unit += 1
    db.session.flush()
    return n_loinc, n_unit
