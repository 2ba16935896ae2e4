"""A report as plain data: sections of headline figures, charts, tables and conclusions.

Both reports (the dynamic QC report and the evaluation report) are built as a
:class:`Report`, and everything downstream reads only this shape: the page and the shared
page (one template, ``reports/_body.html``), the Excel export (one sheet per :class:`Table`),
the PDF (Chromium printing the shared page) and the frozen snapshot of a published
evaluation (``Report.to_dict()`` stored as JSON, rebuilt with :meth:`Report.from_dict`).

Charts are kept as their ECharts options (plain JSON), so a frozen report redraws exactly
the chart it was published with, without querying anything again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Tones a table row, a figure or a conclusion may carry (colours on the page, fills in Excel).
TONES = ("ok", "warn", "bad", "muted", "")


@dataclass(frozen=True)
class Column:
    """One table column: its title, and ``decimals`` for numbers (None: text)."""

    title: str
    decimals: int | None = None
    unit: str = ""


@dataclass(frozen=True)
class Table:
    """A table with typed cells: numbers stay numbers (float/int), text stays text, None is blank.

    ``key`` names the Excel sheet (≤ 31 characters, unique in a report); ``tones`` holds one
    tone per row (``ok``/``warn``/``bad``/``muted``/``""``) or is empty.
    """

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    tones: tuple[str, ...] = ()
    note: str = ""

    def cell_text(self, row: int, col: int) -> str:
        """Return a cell as the page shows it (numbers with the column's decimals)."""
        return format_cell(self.rows[row][col], self.columns[col].decimals)


@dataclass(frozen=True)
class Chart:
    """One chart: an id unique in the page, a caption and its ECharts options (plain JSON)."""

    chart_id: str
    title: str
    options: dict
    height: str = "320px"


@dataclass(frozen=True)
class Figure:
    """A headline figure (``在控率 98.2 %``) with an optional tone and hint."""

    label: str
    value: str
    tone: str = ""
    hint: str = ""


@dataclass(frozen=True)
class Conclusion:
    """A generated conclusion (QC_SPEC §7): heading (e.g. the analyte), verdict, reasons."""

    heading: str
    verdict: str
    tone: str
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """A block of the report: a heading, then figures, charts, tables and conclusions."""

    title: str
    note: str = ""
    figures: tuple[Figure, ...] = ()
    charts: tuple[Chart, ...] = ()
    tables: tuple[Table, ...] = ()
    conclusions: tuple[Conclusion, ...] = ()
    anchor: str = ""


@dataclass(frozen=True)
class Report:
    """A whole report: who and when it is about, the share card's text and its sections.

    ``params`` is what the report was built from (kind-specific, JSON) so that a share link
    or a PDF job can rebuild the same report; ``generated_at`` is an ISO UTC time.
    """

    kind: str
    lab_id: int
    title: str
    period_label: str
    description: str
    generated_at: str
    params: dict
    figures: tuple[Figure, ...] = ()
    sections: tuple[Section, ...] = ()
    frozen: bool = False
    published_at: str = ""
    footnotes: tuple[str, ...] = field(default=())

    @property
    def tables(self) -> list[Table]:
        """Return every table of the report in page order (the Excel sheets)."""
        return [t for s in self.sections for t in s.tables]

    @property
    def charts(self) -> list[Chart]:
        """Return every chart of the report in page order."""
        return [c for s in self.sections for c in s.charts]

    def to_dict(self) -> dict:
        """Return the report as JSON-ready data (the frozen snapshot's content)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        """Rebuild a report stored by :meth:`to_dict`."""
        sections = tuple(_section(s) for s in data.get("sections", ()))
        return cls(**{**data, "figures": _figures(data.get("figures", ())),
                      "sections": sections, "params": dict(data.get("params") or {}),
                      "footnotes": tuple(data.get("footnotes", ()))})

    def fingerprint(self) -> str:
        """Return a hash of the content (not the generation time): the PDF cache key."""
        body = {**self.to_dict(), "generated_at": ""}
        text = json.dumps(body, ensure_ascii=False, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _figures(items) -> tuple[Figure, ...]:
    return tuple(Figure(**f) for f in items)


def _section(data: dict) -> Section:
    tables = tuple(Table(key=t["key"], title=t["title"],
                         columns=tuple(Column(**c) for c in t["columns"]),
                         rows=tuple(tuple(r) for r in t["rows"]),
                         tones=tuple(t.get("tones", ())), note=t.get("note", ""))
                   for t in data.get("tables", ()))
    return Section(
        title=data["title"], note=data.get("note", ""), figures=_figures(data.get("figures", ())),
        charts=tuple(Chart(**c) for c in data.get("charts", ())), tables=tables,
        conclusions=tuple(Conclusion(**{**c, "reasons": tuple(c.get("reasons", ()))})
                          for c in data.get("conclusions", ())),
        anchor=data.get("anchor", ""))


def format_cell(value: Any, decimals: int | None) -> str:
    """Return a cell's text: ``—`` for blank, numbers rounded to ``decimals``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, (int, float)) and decimals is not None:
        return f"{value:.{decimals}f}"
    return str(value)
