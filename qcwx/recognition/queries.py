"""Read the mutual-recognition list: region facts, scope, filters, sorting and paging.

:func:`gather_region` computes the monthly facts (QC_SPEC §7) of every lab × analyte of a
region — or of some of its labs — in one pass: peer rows from
:func:`qcwx.peer.queries.labs.monthly_results` (frozen months from their snapshot, live ones
computed over the whole region), participation from the runs
(:func:`qcwx.reports.evaluation_data.system_participation`), the verdicts from
:func:`qcwx.qcstats.conclusions.recommend` with the region's thresholds. The evaluation
report of one lab reads the same functions, so the list and the report agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from qcwx.catalog.models import Analyte, TestSystem
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import HOSPITAL_LEVELS, Hospital, Lab, User
from qcwx.peer.filters import month_period, recent_months
from qcwx.peer.paging import Page, choice_arg, page_number, paginate
from qcwx.peer.queries.labs import monthly_results
from qcwx.qcstats import conclusions
from qcwx.qcstats.recognition import VERDICTS, RecognitionCriteria, gaps
from qcwx.recognition import services
from qcwx.recognition.models import RecognitionOverride
from qcwx.reports.evaluation_data import (
    Participation,
    level_frame,
    system_frame,
    system_participation,
)

#: Sort orders of the list, with their Chinese names.
SORTS = {"lab": "按医院", "verdict": "结论从差到好", "submission": "填报率从低到高",
         "in_control": "在控率从低到高", "analyte": "按项目"}


@dataclass(frozen=True)
class RegionFacts:
    """Every lab × analyte × month of a region (or some of its labs) with the verdicts."""

    region_id: int
    month: str
    months: tuple[str, ...]
    window: tuple[str, ...]
    criteria: RecognitionCriteria
    systems: tuple[TestSystem, ...]
    labs: dict[int, Lab]
    analytes: dict[int, Analyte]
    participation: dict[tuple[int, str], Participation]
    facts: pd.DataFrame
    recommendations: pd.DataFrame


def gather_region(region_id: int, month: str, today: date, *, months: int = 0,
                  lab_ids: Iterable[int] | None = None,
                  criteria: RecognitionCriteria | None = None) -> RegionFacts:
    """Return the facts of ``region_id``'s labs (or ``lab_ids`` among them) up to ``month``.

    ``months`` extends the facts back beyond the evaluation window (12 for trends).
    """
    month_period(month, today)  # a UserError naming ``month`` for a bad or future month
    criteria = criteria or services.criteria_for_region(region_id)
    count = max(months, criteria.window_months)
    span = tuple(recent_months(date.fromisoformat(month + "-01"), count))
    stmt = (select(TestSystem).join(Lab, TestSystem.lab_id == Lab.id)
            .join(Hospital, Lab.hospital_id == Hospital.id)
            .where(Hospital.region_id.in_(scopes.region_subtree(region_id)))
            .options(selectinload(TestSystem.analyte),
                     selectinload(TestSystem.lab).selectinload(Lab.hospital))
            .order_by(TestSystem.lab_id, TestSystem.analyte_id, TestSystem.id))
    if lab_ids is not None:
        stmt = stmt.where(TestSystem.lab_id.in_(list(lab_ids)))
    systems = tuple(db.session.scalars(stmt))
    trend = monthly_results(region_id, [ts.id for ts in systems], span, today)
    participation = system_participation(systems, span, today)
    facts = conclusions.monthly_facts(level_frame(systems, trend),
                                      system_frame(systems, participation), criteria)
    recs = conclusions.recommend(facts, month, criteria)
    return RegionFacts(
        region_id=region_id, month=month, months=span,
        window=conclusions.window_months(month, criteria.window_months), criteria=criteria,
        systems=systems, labs={ts.lab_id: ts.lab for ts in systems},
        analytes={ts.analyte_id: ts.analyte for ts in systems}, participation=participation,
        facts=facts, recommendations=recs)


# ------------------------------------------------------------------ the list


@dataclass(frozen=True)
class ListRow:
    """One lab × analyte of the list: the computed recommendation and any override."""

    lab: Lab
    analyte: Analyte
    rec: Mapping
    override: RecognitionOverride | None
    gaps: tuple[str, ...]

    @property
    def computed(self) -> str:
        """Return the verdict computed from the numbers."""
        return self.rec["verdict"]

    @property
    def verdict(self) -> str:
        """Return the verdict in force: the override's when there is one."""
        return self.override.verdict if self.override is not None else self.computed

    @property
    def tone(self) -> str:
        """Return the tone of the verdict in force."""
        return conclusions.VERDICT_TONES[self.verdict]

    @property
    def level(self) -> str:
        """Return the hospital level (一级/二级/三级)."""
        return self.lab.hospital.level


def list_rows(data: RegionFacts) -> list[ListRow]:
    """Return every lab × analyte with a recommendation, with its override and gaps."""
    overrides = services.active_overrides(data.labs, data.month)
    out = []
    for rec in data.recommendations.to_dict("records"):
        lab, analyte = data.labs[int(rec["lab"])], data.analytes[int(rec["analyte"])]
        out.append(ListRow(lab, analyte, rec, overrides.get((lab.id, analyte.id)),
                           gaps(rec, data.criteria)))
    return sort_rows(out, "lab")


def _rate_key(value) -> float:
    number = conclusions.finite(value)
    return number if number is not None else -1.0


def sort_rows(rows: Sequence[ListRow], sort: str) -> list[ListRow]:
    """Return the rows in one of :data:`SORTS`' orders (ties by hospital, lab, analyte)."""
    base = sorted(rows, key=lambda r: (r.lab.hospital.code, r.lab.code, r.analyte.code))
    if sort == "verdict":
        return sorted(base, key=lambda r: -VERDICTS.index(r.verdict))
    if sort == "submission":
        return sorted(base, key=lambda r: _rate_key(r.rec["submission_pct"]))
    if sort == "in_control":
        return sorted(base, key=lambda r: _rate_key(r.rec["in_control_pct"]))
    if sort == "analyte":
        return sorted(base, key=lambda r: r.analyte.code)
    return base


@dataclass(frozen=True)
class ListFilters:
    """The list's filters as chosen (None = all) and its sort order."""

    level: str | None = None
    analyte_id: int | None = None
    verdict: str | None = None
    sort: str = "lab"

    def keep(self, row: ListRow) -> bool:
        """Return whether ``row`` passes the filters (the verdict in force is filtered)."""
        return ((self.level is None or row.level == self.level)
                and (self.analyte_id is None or row.analyte.id == self.analyte_id)
                and (self.verdict is None or row.verdict == self.verdict))


def parse_filters(args: Mapping) -> ListFilters:
    """Return the filters from query arguments; anything not understood is a 400 naming it."""
    level = str(args.get("level") or "").strip() or None
    if level is not None and level not in HOSPITAL_LEVELS:
        raise UserError(f"医院等级无效：{level[:10]}", field="level")
    verdict = str(args.get("verdict") or "").strip() or None
    if verdict is not None and verdict not in VERDICTS:
        raise UserError(f"结论无效：{verdict[:10]}", field="verdict")
    raw = str(args.get("analyte") or "").strip()
    if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise UserError(f"项目参数无效：{raw[:20]}", field="analyte")
    sort = choice_arg(args, "sort", SORTS, "lab", "排序")
    return ListFilters(level, int(raw) if raw else None, verdict, sort)


@dataclass(frozen=True)
class RecognitionList:
    """What the list page shows: the window, the thresholds, the page of rows and counts."""

    region_id: int
    month: str
    window: tuple[str, ...]
    criteria: RecognitionCriteria
    version: int | None
    filters: ListFilters
    rows: list[ListRow]
    page: Page[ListRow]
    counts: dict[str, int]
    analytes: list[Analyte]


def region_for(actor: User, requested: int | None) -> int:
    """Return the region whose list ``actor`` reads (an admin may pick; others their own)."""
    from qcwx.peer.queries import region_id_for

    return region_id_for(actor, requested)


def recognition_list(actor: User, region_id: int, month: str, today: date,
                     filters: ListFilters, page: int = 1) -> RecognitionList:
    """Return the list as ``actor`` may see it: the centre its region, a lab its own rows."""
    in_scope = set(db.session.scalars(scopes.lab_ids_in_scope(actor)))
    region_labs = set(db.session.scalars(select(Lab.id).join(Hospital).where(
        Hospital.region_id.in_(scopes.region_subtree(region_id)))))
    data = gather_region(region_id, month, today, lab_ids=sorted(in_scope & region_labs))
    rows = list_rows(data)
    counts = dict.fromkeys(VERDICTS, 0)
    for row in rows:
        counts[row.verdict] += 1
    kept = sort_rows([r for r in rows if filters.keep(r)], filters.sort)
    version = services.latest_version(region_id)
    return RecognitionList(
        region_id=region_id, month=month, window=data.window, criteria=data.criteria,
        version=version.version if version else None, filters=filters, rows=kept,
        page=paginate(kept, page), counts=counts,
        analytes=sorted(data.analytes.values(), key=lambda a: a.code))


def page_args(args) -> int:
    """Return the requested page (a 400 naming ``page`` when malformed)."""
    return page_number(args)


def computed_verdict(actor: User, lab: Lab, analyte_id: int, month: str, today: date) -> str:
    """Return the list's computed verdict of one row (404 when the row is not on the list)."""
    from qcwx.errors import NotFound

    if not scopes.can_access_lab(actor, lab.id):
        raise NotFound()
    data = gather_region(lab.hospital.region_id, month, today, lab_ids=[lab.id])
    recs = data.recommendations
    found = recs[(recs["lab"] == lab.id) & (recs["analyte"] == analyte_id)]
    if not len(found):
        raise NotFound("该实验室在评价窗口内没有此项目的数据", field="analyte")
    return str(found.iloc[0]["verdict"])
