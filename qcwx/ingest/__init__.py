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

This ``__init__`` only re-exports the pure parsers of :mod:`qcwx.ingest.formats`, so
``from qcwx.ingest import parse_bytes`` needs no app and no database; :func:`format_names`
lists the registered formats.

Layout (feature package: models · services · queries · views · schemas · formats/):

formats/         the pure parsers behind parse_bytes() (no Flask, no database; a test checks)
models.py        mapping rows, ingest settings, saved column mappings, upload batches
schemas.py       channel edges: parse results / JSON items → candidates; outcomes, reports out
engine.py        the import engine: map → deduplicate → iqc.services.prepare_runs/store_runs;
                 apart from services.py because it is one long algorithm (400-line limit)
services.py      writes: one call per upload page or API route, and the upload batch rows
queries.py       reads for the pages: labs a user may import into, recent batches
views.py         the upload, column, mapping and key pages (/ingest)
mapping.py       kept: LabMapper, the engine's map step (codes, levels, runs, client ids)
instruments.py   kept: pure analyser-name matching used by mapping.py (not a file format)
mapping_admin.py kept: the 项目映射 page's reads and writes, one concern of its own
apikeys.py       kept: issuing, revoking and authenticating lab-interface keys
uploads.py       kept: files waiting between preview and commit; saved column mappings
api.py           kept: the /api/ingest/v1 blueprint (API-key auth, no cookies, rate limit)
openapi.py       kept: the OpenAPI document of api.py (a test compares it with the routes)
"""

from .formats import (
    ParsedRecord,
    ParseError,
    ParseIssue,
    ParseResult,
    SourceRef,
    detect_format,
    format_names,
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
    "format_names",
    "parse_bytes",
    "register",
    "template_csv",
    "template_xlsx",
]
