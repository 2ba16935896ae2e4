"""Refuse an XLSX decompression bomb before openpyxl opens it.

Why: an XLSX is a zip; a 411 KB upload expanded to hundreds of MB in openpyxl (shared
strings are read whole even in read-only mode, and a sheet of repeated rows compresses
about 1000:1), and the 20 MB upload cap allowed several GB. The zip's central directory
declares each member's uncompressed size, and :mod:`zipfile` never inflates a member past
its declared size (a lie ends in ``BadZipFile``), so summing the declared sizes bounds what
parsing can read. Rows are bounded separately (``max_rows``, :data:`MAX_COLUMNS`).
"""

from __future__ import annotations

import io
import zipfile

from .records import ParseError

#: Everything the workbook may expand to (a 100,000-row QC export is about 30 MB of XML).
MAX_UNCOMPRESSED = 64 * 1024 * 1024
#: The shared-strings table, which openpyxl loads whole before the first row.
MAX_SHARED_STRINGS = 16 * 1024 * 1024
#: Members in the container: a workbook has a dozen or two; thousands only cost time.
MAX_MEMBERS = 1000
#: Columns read per row: a QC export has a few dozen; a cell at XFD would pad every row.
MAX_COLUMNS = 256
_TOO_BIG = "XLSX 文件解压后过大（上限 {mb} MB），请删除无关工作表或拆分文件后再上传"


def check_container(data: bytes) -> None:
    """Raise ``ParseError`` when the zip would expand past the caps (or is not a zip)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ParseError("无法读取 XLSX 文件，文件可能已损坏或不是 Excel 工作簿") from exc
    if len(members) > MAX_MEMBERS:
        raise ParseError("XLSX 文件包含的部件过多，文件可能已损坏")
    if sum(m.file_size for m in members) > MAX_UNCOMPRESSED:
        raise ParseError(_TOO_BIG.format(mb=MAX_UNCOMPRESSED // 2**20))
    shared = sum(m.file_size for m in members if m.filename.lower().endswith(
        "sharedstrings.xml"))
    if shared > MAX_SHARED_STRINGS:
        raise ParseError(_TOO_BIG.format(mb=MAX_SHARED_STRINGS // 2**20))
