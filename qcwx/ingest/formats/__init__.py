"""The pure parsers: bytes in, plain QC records out (no Flask, no database).

One entry point, :func:`parse_bytes`, detects the format — ASTM E1394 framed or bare,
HL7 v2 with or without MLLP, CSV, XLSX — and returns a :class:`ParseResult`.  New formats
plug in with :func:`register` (Redash's registry pattern); importing this package
registers the built-in ones.  ``tests/ingest/test_purity.py`` checks that nothing here
imports the web stack, the database or any other part of qcwx except :mod:`qcwx.numbers`.

astm.py astm_transport.py   ASTM E1394 records; LIS2-A2 framing (ENQ/STX/ETB/ETX, checksums)
hl7v2.py hl7_segments.py    HL7 v2 ORU/OUL messages; MLLP, separators, OBX values
tabular*.py                 CSV/XLSX: header aliases, cells, layout detection, templates
dialects.py                 each analyser's QC marker (which records are QC), with its source
registry.py records.py      the format registry and parse_bytes(); the plain record types
"""

from . import astm, hl7v2, tabular  # noqa: F401  (importing registers the formats)
from .records import ParsedRecord, ParseError, ParseIssue, ParseResult, SourceRef
from .registry import detect_format, format_names, parse_bytes, register
from .tabular import template_csv, template_xlsx

__all__ = [
    "ParseError",
    "ParseIssue",
    "ParseResult",
    "ParsedRecord",
    "SourceRef",
    "detect_format",
    "format_names",
    "parse_bytes",
    "register",
    "template_csv",
    "template_xlsx",
]
