"""What a spooled file is (endpoint, format) and how to resend only part of a CSV export.

Why blanking rather than cutting rows: the server names each item by its CSV record number
(header = row 1) and skips empty records, so a copy whose settled records are emptied keeps
every remaining record's number. The items resent are then reported at the same positions,
with the same content-derived client ids, and the server deduplicates them as usual.
"""

from __future__ import annotations

import time
from hashlib import sha256
from pathlib import Path
from typing import Collection

EXTENSIONS = {".csv", ".xlsx", ".astm", ".hl7", ".txt"}


def file_digest(path: Path) -> str:
    """Return the SHA-256 of a file (kept in the journal to trace what was sent)."""
    h = sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def kind_of(path: Path, head: bytes) -> tuple:
    """Return (endpoint, format) for a file: ``files`` for CSV/XLSX, ``messages`` for the rest."""
    ext = path.suffix.lower()
    if ext in (".csv", ".xlsx"):
        return "files", None
    if ext in (".astm", ".hl7"):
        return "messages", ext[1:]
    text = head.lstrip(b"\xef\xbb\xbf\r\n\t ")
    if text.startswith((b"\x0bMSH", b"MSH|")):
        return "messages", "hl7"
    if text[:1] in (b"\x05", b"\x02") or text.startswith(b"H|") or text[1:3] == b"H|":
        return "messages", "astm"
    return "files", None


def unique_target(folder: Path, name: str) -> Path:
    """Return a path in ``folder`` for ``name`` that does not exist yet (timestamp-prefixed)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = folder / f"{stamp}_{name}", 1
    while target.exists():
        target, n = folder / f"{stamp}_{n}_{name}", n + 1
    return target


def row_subsettable(name: str, data: bytes) -> bool:
    """Say whether rows of this file can be left out of a resend (a CSV in a byte encoding).

    XLSX, ASTM and HL7 are resent whole (the server answers the stored items as duplicates);
    UTF-16 text is too, because its line ends are not single bytes.
    """
    endpoint, _ = kind_of(Path(name), data[:64])
    if endpoint != "files" or data[:4] == b"PK\x03\x04" or data[:8].startswith(b"\xd0\xcf"):
        return False
    return not data.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\x00" not in data[:4096]


def without_rows(data: bytes, rows: Collection[int]) -> bytes:
    """Return the CSV ``data`` with the 1-based records in ``rows`` emptied (ends kept).

    Records are split as Python's ``csv`` module splits them: at CR, LF or CRLF outside a
    quoted field. In UTF-8 and GB18030 those bytes and the quote never occur inside a
    multi-byte character, so splitting bytes is splitting characters.
    """
    if not rows:
        return data
    out = bytearray()
    number, start, quoted, i, size = 1, 0, False, 0, len(data)
    while i < size:
        byte = data[i]
        if byte == 0x22:  # "
            quoted = not quoted
        elif byte in (0x0A, 0x0D) and not quoted:
            end = i + 2 if data[i:i + 2] == b"\r\n" else i + 1
            out += data[i:end] if number in rows else data[start:end]
            number, start, i = number + 1, end, end
            continue
        i += 1
    if start < size and number not in rows:
        out += data[start:]
    return bytes(out)
