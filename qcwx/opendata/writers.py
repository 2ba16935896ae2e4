"""Write the data set into one zip: CSV + data dictionary + a FHIR bundle per lab-month.

One pass over the rows (chunks from :func:`qcwx.opendata.dataset.iter_chunks`, or any
iterator of row chunks in the same lab/date order — the benchmark feeds a generator): the CSV
streams into a temporary file beside the zip, each lab-month's bundle streams into its own
zip member, and the CSV is copied in at the end. Nothing holds more than one chunk, so memory
stays flat however many rows a region-year has.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from qcwx.opendata import fhir
from qcwx.opendata.columns import DICTIONARY_HEADER, NAMES, dictionary_rows
from qcwx.opendata.fhir_text import observation_entry

CSV_NAME, DICTIONARY_NAME, README_NAME = "qc_results.csv", "data_dictionary.csv", "README.txt"
README = """区域室内质控去标识化数据集
qc_results.csv：每行一个已判定的质控结果（UTF-8，逗号分隔）；字段含义见 data_dictionary.csv。
fhir/<实验室匿名编码>-<年月>.json：FHIR R4 Bundle（collection），含 Observation、Device、
Organization；扩展字段 URL 前缀 urn:qcwx:fhir:，含义见 data_dictionary.csv 末尾。
不含任何医院、实验室、人员名称、微信 openid 或自由文本。
"""


@dataclass
class Summary:
    """What an export wrote: rows, bundles and how many FHIR resources were validated."""

    rows: int = 0
    bundles: int = 0
    resources: int = 0
    validated: int = 0


class _BundleStream:
    """The lab-month bundle being written: opened on its first row, closed on the next group."""

    def __init__(self, zf: zipfile.ZipFile, timestamp: str, validate_every: int,
                 summary: Summary) -> None:
        self.zf, self.timestamp, self.every, self.summary = zf, timestamp, validate_every, summary
        self.key: tuple[str, str] | None = None
        self.out: io.TextIOWrapper | None = None
        self.seen: set[str] = set()
        self.first = True

    def _emit(self, resource: dict | None = None, text: str | None = None) -> None:
        """Write one entry (a resource, or an entry's JSON text); validate every n-th."""
        s = self.summary
        text = text if text is not None else fhir.entry(resource)
        if self.every and s.resources % self.every == 0:
            fhir.validate(json.loads(text)["resource"])  # what is written, parsed back
            s.validated += 1
        s.resources += 1
        self.out.write(("" if self.first else ",") + text)
        self.first = False

    def add(self, row: dict) -> None:
        key = (row["lab_code"], row["run_date"][:7])
        if key != self.key:
            self.close()
            self.key, self.seen, self.first = key, set(), True
            raw = self.zf.open(f"fhir/{key[0]}-{key[1]}.json", "w", force_zip64=True)
            self.out = io.TextIOWrapper(raw, encoding="utf-8")
            self.out.write(fhir.bundle_head(key[0], key[1], self.timestamp))
            for org in fhir.organizations(row):
                self._emit(org)
            self.summary.bundles += 1
        if row["device_code"] not in self.seen:
            self.seen.add(row["device_code"])
            self._emit(fhir.device(row))
        self._emit(text=observation_entry(row))

    def close(self) -> None:
        if self.out is not None:
            self.out.write(fhir.BUNDLE_TAIL)
            self.out.close()
            self.out = None


def write_export(path: Path, chunks: Iterable[list[dict]], *, timestamp: str,
                 validate_every: int = 1,
                 progress: Callable[[int], None] | None = None) -> Summary:
    """Write the zip at ``path`` from row chunks; call ``progress(rows so far)`` per chunk.

    ``validate_every`` validates every n-th FHIR resource with ``fhir.resources`` (1: all,
    as the centre's exports do; 0: none).
    """
    summary = Summary()
    tmp_csv = path.with_suffix(".csv.part")
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                             allowZip64=True) as zf, \
                tmp_csv.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(NAMES)
            bundles = _BundleStream(zf, timestamp, validate_every, summary)
            for chunk in chunks:
                writer.writerows([row[name] for name in NAMES] for row in chunk)
                for row in chunk:
                    bundles.add(row)
                summary.rows += len(chunk)
                if progress is not None:
                    progress(summary.rows)
            bundles.close()
            fh.close()
            with tmp_csv.open("rb") as src, zf.open(CSV_NAME, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            zf.writestr(DICTIONARY_NAME, dictionary_text())
            zf.writestr(README_NAME, README)
    finally:
        tmp_csv.unlink(missing_ok=True)
    return summary


def dictionary_text() -> str:
    """Return the data dictionary CSV: one row per column, then the FHIR extensions."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(DICTIONARY_HEADER)
    writer.writerows(dictionary_rows())
    for name, meaning in fhir.EXTENSIONS.items():
        writer.writerow((fhir.BASE + name, f"FHIR 扩展：{meaning}", "extension", "", "FHIR R4"))
    return buf.getvalue()
