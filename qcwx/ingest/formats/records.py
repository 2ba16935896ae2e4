"""Plain result records produced by every import format.

The parsers never touch the database: they turn bytes into :class:`ParsedRecord`
objects and :class:`ParseIssue` messages.  Mapping a record to a test system (analyte,
instrument, QC lot and level) happens later, outside this package.

Times are *naive* and exactly as the sender wrote them; the caller attaches the lab's
time zone (Asia/Shanghai) before converting to UTC for storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

__all__ = ["ParseError", "ParseIssue", "ParseResult", "ParsedRecord", "SourceRef", "RAW_LIMIT"]

#: Longest source text kept in :attr:`ParsedRecord.raw`.
RAW_LIMIT = 200


@dataclass(frozen=True)
class SourceRef:
    """Locate a record or issue in the uploaded bytes.

    ``message`` and ``index`` are 1-based: the n-th message (ASTM H…L block, HL7 MSH
    block) and the n-th record or segment inside it.  Tabular files use ``row`` (the row
    number the user sees in Excel, header = row 1) and ``sheet``.  ``frame`` is the
    1-based ordinal of an ASTM transport frame in the byte stream; ``repeat`` the 1-based
    level inside a segment that carries several QC levels.
    """

    format: str
    message: int | None = None
    index: int | None = None
    segment: str | None = None
    row: int | None = None
    sheet: str | None = None
    frame: int | None = None
    repeat: int | None = None

    def describe(self) -> str:
        """Return the position in the words a lab user reads (Chinese)."""
        parts: list[str] = []
        if self.sheet:
            parts.append(f"工作表“{self.sheet}”")
        if self.row is not None:
            parts.append(f"第 {self.row} 行")
        if self.frame is not None:
            parts.append(f"第 {self.frame} 帧")
        if self.message is not None:
            parts.append(f"第 {self.message} 条消息")
        if self.index is not None:
            kind = "段" if self.format == "hl7" else "个记录"
            name = f"（{self.segment}）" if self.segment else ""
            parts.append(f"第 {self.index} {kind}{name}")
        if self.repeat is not None:
            parts.append(f"第 {self.repeat} 个水平")
        return " ".join(parts) if parts else "文件"

    def __str__(self) -> str:
        """Return :meth:`describe`."""
        return self.describe()


@dataclass(frozen=True)
class ParsedRecord:
    """One result as the instrument or spreadsheet sent it.

    ``value_text`` is kept exactly as sent (stripped); ``value`` is its float, or None
    when the text is not a plain number.  ``censored`` is ``"<"`` or ``">"`` for values
    such as ``< 1.20`` (then ``value`` is None).  ``level`` is the level as sent
    (``MEDIUM``, ``H``, ``水平1``), ``level_norm`` a normalised token (``L``/``M``/``H``
    or a digit string) to help the mapping.  ``target_*`` are only filled for QC records
    (reference ranges of patient results stay in ``reference_range``).  ``measured_at``
    is naive local time as sent; a date without a time gives midnight. ``instrument`` is
    the analyser as the sender names it (serial, model or name; see each parser).
    ``qc_marker`` names the :mod:`qcwx.ingest.formats.dialects` marker that decided ``is_qc``
    (None when nothing did: a sample-id pattern may still make it QC at import).
    """

    test_code: str
    value_text: str
    source: SourceRef
    is_qc: bool
    value: float | None = None
    censored: str | None = None
    unit: str | None = None
    test_name: str | None = None
    loinc: str | None = None
    level: str | None = None
    level_norm: str | None = None
    qc_lot: str | None = None
    qc_expiry: date | None = None
    control_name: str | None = None
    measured_at: datetime | None = None
    target_mean: float | None = None
    target_sd: float | None = None
    target_low: float | None = None
    target_high: float | None = None
    reference_range: str | None = None
    abnormal_flag: str | None = None
    result_status: str | None = None
    instrument_flags: tuple[str, ...] = ()
    instrument: str | None = None
    reagent_lot: str | None = None
    sample_id: str | None = None
    run_no: str | None = None
    client_id: str | None = None
    qc_marker: str | None = None
    raw: str = ""


@dataclass(frozen=True)
class ParseIssue:
    """A problem with one frame, message, record or row; the rest of the file still counts."""

    position: SourceRef
    field: str | None
    message_zh: str

    def __str__(self) -> str:
        """Return the Chinese message (it already names the position)."""
        return self.message_zh


@dataclass(frozen=True)
class ParseResult:
    """Records and per-item issues of one upload, with the format that was used."""

    format: str
    records: tuple[ParsedRecord, ...] = field(default_factory=tuple)
    errors: tuple[ParseIssue, ...] = field(default_factory=tuple)

    @property
    def qc_records(self) -> tuple[ParsedRecord, ...]:
        """Return only the records that are QC results."""
        return tuple(r for r in self.records if r.is_qc)


class ParseError(ValueError):
    """The upload cannot be parsed at all; ``message_zh`` tells the user why (Chinese)."""

    def __init__(self, message_zh: str, *, internal: bool = False) -> None:
        super().__init__(message_zh)
        self.message_zh = message_zh
        #: True when a parser bug was turned into this error (it is logged with its trace).
        self.internal = internal


class IssueLog:
    """Collect issues for one upload, capped so hostile input cannot grow it without bound."""

    def __init__(self, fmt: str, limit: int = 500) -> None:
        self.format = fmt
        self.limit = limit
        self.items: list[ParseIssue] = []
        self._dropped = 0

    def add(self, position: SourceRef, field: str | None, message_zh: str) -> None:
        """Record an issue; the message is prefixed with the position in Chinese."""
        if len(self.items) >= self.limit:
            self._dropped += 1
            return
        self.items.append(ParseIssue(position, field, f"{position.describe()}：{message_zh}"))

    def result(self, records: list[ParsedRecord]) -> ParseResult:
        """Build the :class:`ParseResult` (adds a note when issues were dropped)."""
        items = list(self.items)
        if self._dropped:
            note = f"另有 {self._dropped} 个问题未列出"
            items.append(ParseIssue(SourceRef(self.format), None, note))
        return ParseResult(self.format, tuple(records), tuple(items))


def truncate_raw(text: str, limit: int = RAW_LIMIT) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
