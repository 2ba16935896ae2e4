"""Parse uploads and instrument messages into plain QC records (no database, no Flask).

One entry point, :func:`parse_bytes`, detects the format — ASTM E1394 framed or bare,
HL7 v2 with or without MLLP, CSV, XLSX — and returns a :class:`ParseResult`.  Mapping
records to test systems happens after, in the services that own the database.  New
formats plug in with :func:`register` (Redash's registry pattern).

Times in records are naive, as sent; the caller attaches the lab's time zone
(Asia/Shanghai).

>>> from qcwx.ingest import parse_bytes
>>> result = parse_bytes(template_csv())
>>> result.format, result.records[0].test_code, result.records[0].value
('csv', 'GLU', 5.62)
"""

from .formats import (
    ParsedRecord,
    ParseError,
    ParseIssue,
    ParseResult,
    SourceRef,
    detect_format,
    formats,
    parse_bytes,
    register,
    template_csv,
    template_xlsx,
)

__all__ = [
    "ParseError",
    "ParseIssue",
    "ParseResult",
    "ParsedRecord",
    "SourceRef",
    "detect_format",
    "formats",
    "parse_bytes",
    "register",
    "template_csv",
    "template_xlsx",
]
