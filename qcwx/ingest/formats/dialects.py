"""Registry of the ways analysers mark a result as QC (Redash's ``register()`` pattern).

Instruments do not agree on where they say "this is a control": Mindray puts it in MSH-16,
PixCell's HemoScreen in OBR-4, ASTM senders in the header processing id, the order action
code or the specimen descriptor. Each documented marker is one :class:`QcMarker`, registered
once with the field it reads, the values meaning *QC* and the values meaning *patient*, and
the document it comes from. The parsers collect the fields named here (``MSH-16``,
``OBR-4``, ``H-12`` …) and ask :func:`classify`:

* any marker reading a QC value → QC (its name is kept on the record);
* else any marker reading a patient value → explicitly not QC (a sample-id pattern cannot
  turn it into QC);
* else undecided: the sample id is tested against the QC sample-id pattern (the parser's
  option, and at import time the lab's own pattern, :func:`apply_lab_pattern`).

Pure: no Flask, no database. New dialects plug in with :func:`register_marker`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qcwx.numbers import normalize_level

from .records import ParsedRecord, ParseError

__all__ = [
    "DEFAULT_QC_SAMPLE_ID", "MAX_PATTERN_LENGTH", "QcMarker", "SAMPLE_ID_MARKER", "Verdict",
    "apply_lab_pattern", "classify", "compile_qc_pattern", "markers", "register_marker",
    "sample_id_level",
]

#: Sample ids that name a control in most labs' habits (``QC1``, ``CTRL-H``, ``control``).
DEFAULT_QC_SAMPLE_ID = r"(?i)^(?:QC|CTRL|CONTROL)(?:[-_ ]|\d|$)"
#: Longest QC sample-id pattern a lab may declare.
MAX_PATTERN_LENGTH = 200
#: Marker name recorded when the sample-id pattern made a record QC.
SAMPLE_ID_MARKER = "sample_id_pattern"
#: Only this much of a sample id is searched (bounds the regex work per record).
_SAMPLE_ID_SCAN = 64
#: A quantified group that is itself quantified (``(a+)+``): catastrophic backtracking.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*(?:[+*]|\{\d*,)")


@dataclass(frozen=True)
class QcMarker:
    """One documented place where an analyser says QC (or patient).

    ``field`` is the key the parser fills (the standard's field name, first component,
    upper-case). ``qc_values`` None means any non-empty value marks QC. ``control_field``
    names a field holding the control's id (used as control name and level text);
    ``instrument_field`` one holding the analyser's identity in this dialect.
    """

    name: str
    protocol: str
    field: str
    source: str
    qc_values: frozenset[str] | None = None
    patient_values: frozenset[str] = frozenset()
    control_field: str | None = None
    instrument_field: str | None = None
    note: str = ""

    def decide(self, fields: Mapping[str, str]) -> bool | None:
        """Return True (QC), False (explicitly not QC) or None (this marker says nothing)."""
        value = (fields.get(self.field) or "").strip().upper()
        if not value:
            return None
        if self.qc_values is None or value in self.qc_values:
            return True
        return False if value in self.patient_values else None


@dataclass(frozen=True)
class Verdict:
    """What the markers of one protocol say about one record."""

    is_qc: bool | None
    marker: QcMarker | None = None

    @property
    def name(self) -> str | None:
        """Return the deciding marker's name (None when undecided)."""
        return self.marker.name if self.marker else None


_MARKERS: dict[str, QcMarker] = {}


def register_marker(marker: QcMarker) -> QcMarker:
    """Register (or replace) a QC marker; its ``protocol`` is ``hl7`` or ``astm``."""
    if not marker.name or marker.protocol not in ("hl7", "astm"):
        raise ValueError("a QC marker needs a name and the protocol hl7 or astm")
    if not marker.source:
        raise ValueError("a QC marker must name the document it comes from")
    _MARKERS[marker.name] = marker
    return marker


def markers(protocol: str | None = None) -> tuple[QcMarker, ...]:
    """Return the registered markers (of one protocol), in registration order."""
    return tuple(m for m in _MARKERS.values() if protocol in (None, m.protocol))


def classify(protocol: str, fields: Mapping[str, str]) -> Verdict:
    """Return the verdict of ``protocol``'s markers on ``fields`` (QC wins over patient)."""
    said_patient = None
    for marker in markers(protocol):
        decision = marker.decide(fields)
        if decision:
            return Verdict(True, marker)
        if decision is False and said_patient is None:
            said_patient = marker
    return Verdict(False, said_patient) if said_patient else Verdict(None)


def compile_qc_pattern(pattern: object) -> re.Pattern[str]:
    """Compile a QC sample-id pattern, refusing invalid, overlong or runaway ones.

    None gives :data:`DEFAULT_QC_SAMPLE_ID`. Raises :class:`ParseError` (Chinese message).
    """
    if pattern is None:
        pattern = DEFAULT_QC_SAMPLE_ID
    if not isinstance(pattern, str) or not pattern.strip():
        raise ParseError("质控样本号规则必须是非空的正则表达式")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ParseError(f"质控样本号规则过长（最多{MAX_PATTERN_LENGTH}个字符）")
    if _NESTED_QUANTIFIER.search(pattern):
        raise ParseError("质控样本号规则含有嵌套重复（如 (a+)+），可能导致匹配极慢，请简化")
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ParseError(f"质控样本号规则不是有效的正则表达式：{exc}") from exc
    if compiled.search(""):
        raise ParseError("质控样本号规则会匹配空样本号，请写得更具体（如 ^QC）")
    return compiled


def sample_id_level(pattern: re.Pattern[str], sample_id: str | None) -> tuple[bool, str | None]:
    """Return (matches, level text captured by a ``(?P<level>…)`` group, if any)."""
    if not sample_id:
        return False, None
    match = pattern.search(sample_id[:_SAMPLE_ID_SCAN])
    if match is None:
        return False, None
    level = match.groupdict().get("level") if "level" in pattern.groupindex else None
    return True, (level or None)


def apply_lab_pattern(records: Iterable[ParsedRecord], pattern: re.Pattern[str] | None
                      ) -> list[ParsedRecord]:
    """Mark undecided non-QC records whose sample id matches a lab's pattern as QC.

    Records a marker declared patient (``qc_marker`` set, ``is_qc`` False) stay patient.
    """
    out = []
    for rec in records:
        if pattern is not None and not rec.is_qc and rec.qc_marker is None:
            hit, level = sample_id_level(pattern, rec.sample_id)
            if hit:
                level = rec.level or level
                rec = dataclasses.replace(rec, is_qc=True, qc_marker=SAMPLE_ID_MARKER,
                                          level=level, level_norm=normalize_level(level))
        out.append(rec)
    return out


# ---------------------------------------------------------------- HL7 v2 dialects
register_marker(QcMarker(
    name="hl7.mindray_msh16", protocol="hl7", field="MSH-16",
    qc_values=frozenset({"2"}), patient_values=frozenset({"0", "1"}),
    instrument_field="OBR-4",
    source="Mindray BS-200E host interface manual (HL7 v2.3.1), MSH-16 result type: "
           "0 patient, 1 calibration, 2 QC; the QC data sit in OBR-13…21. Also used by "
           "Getein and other Chinese analysers.",
    note="1 (calibration) is not QC either; OBR-4 names maker^model"))
register_marker(QcMarker(
    name="hl7.hemoscreen_obr4", protocol="hl7", field="OBR-4",
    qc_values=frozenset({"LQC"}), patient_values=frozenset({"OBS", "PRF"}),
    control_field="PID-2", instrument_field="OBX-15",
    source="PixCell HemoScreen HL7 Connectivity Protocol (GEN-SW-HS-00001, HL7 v2.4): OBR-4 "
           "observation type OBS patient, LQC liquid quality control, PRF proficiency "
           "(EQA); PID-2 test identifier (the control's id); OBX-7 the control's range; "
           "OBX-15 the device serial.",
    note="PRF (external proficiency testing) is not internal QC"))
register_marker(QcMarker(
    name="hl7.specimen_role", protocol="hl7", field="SPM-11",
    qc_values=frozenset({"Q"}), patient_values=frozenset({"P"}),
    source="HL7 v2.5.1 chapter 7, SPM-11 specimen role, table 0369: Q control specimen, "
           "P patient"))

# ---------------------------------------------------------------- ASTM E1394 dialects
register_marker(QcMarker(
    name="astm.processing_id", protocol="astm", field="H-12", qc_values=frozenset({"Q"}),
    source="ASTM E1394-97 / CLSI LIS2-A2 §7.1.12 processing ID: P production, T training, "
           "D debugging, Q quality control (e.g. HORIBA Yumizen H500)"))
register_marker(QcMarker(
    name="astm.action_code", protocol="astm", field="O-12", qc_values=frozenset({"Q"}),
    source="ASTM E1394-97 / CLSI LIS2-A2 §8.4.12 action code: Q = treat specimen as a QC "
           "test specimen (e.g. Roche cobas c311 QC orders)"))
register_marker(QcMarker(
    name="astm.specimen_descriptor", protocol="astm", field="O-16",
    qc_values=frozenset({"CTRL", "QC", "CONTROL", "CONTROLS", "QCTRL"}),
    source="ASTM E1394-97 / CLSI LIS2-A2 §8.4.16 specimen descriptor; HORIBA Yumizen "
           "H500 output format sends CTRL^^CTRL <level> for a control"))
register_marker(QcMarker(
    name="astm.abbott_control_lot", protocol="astm", field="R-3.10",
    source="Abbott ARCHITECT ASTM interface manual: the 10th component of the universal "
           "test id carries the control lot of a control result"))
