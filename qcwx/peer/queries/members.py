"""The members of the group a system was compared with, ready for the peer charts.

A display row (:class:`qcwx.peer.queries.SystemResult`, live or frozen) names its group by
level only (peer / method / all). Its members are the systems of the same QC level, analyte
and unit whose codes equal the row's system on that level's keys
(:data:`qcwx.peer.compute.DEFAULT_LEVEL_KEYS`; missing codes match each other, as in
:func:`qcwx.peer.compute.compare`). Each member is measured against *that* group (the row's
group mean, SD and CV), whatever group it is itself reported against. Given rows of a frozen
month, the members' means come from the same snapshot as the group statistics (membership
uses the systems' current codes).

:func:`chart_rows` turns members into the plain items the chart builders read (the lot page
and the evaluation report both draw from it).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from qcwx.peer import compute
from qcwx.peer.queries import SystemResult
from qcwx.peer.queries.frames import systems_frame
from qcwx.peer.queries.lot import Member, member_labels
from qcwx.qcstats import peer as qpeer

_ROW_FIELDS = ("ts_id", "qc_level_id", "n", "mean", "sd", "cv")


def chart_rows(members: Sequence[Member]) -> list[dict]:
    """Return the items ``lab_comparison``, ``sdi_cvr`` and ``bias_cv`` draw."""
    return [{"code": m.code, "mean": m.mean, "sdi": m.sdi, "cvr": m.cvr,
             "bias_pct": m.bias_pct, "cv_pct": m.cv, "highlight": m.highlight}
            for m in members]


def _frame(region_id: int, rows: Sequence[SystemResult], analyte_ids) -> pd.DataFrame:
    data = pd.DataFrame([[getattr(r, f) for f in _ROW_FIELDS] for r in rows],
                        columns=list(_ROW_FIELDS))
    systems = systems_frame(region_id, analyte_ids=analyte_ids)
    if not len(data) or not len(systems):
        return pd.DataFrame()
    return compute.with_unit_key(systems.merge(data, on="ts_id", how="inner"))


def _group_codes(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Return each row's group code at every level (missing codes group together)."""
    return {level: frame.groupby(list(keys), dropna=False, sort=False).ngroup().to_numpy()
            for level, keys in compute.DEFAULT_LEVEL_KEYS.items()}


def _versus(mean: np.ndarray, cv: np.ndarray, target: SystemResult) -> dict[str, np.ndarray]:
    """Return each member's SDI, CVR, bias% and |bias| rank against the target's group."""
    nan = np.full(mean.size, np.nan)
    gm, gs, gcv = target.g_mean, target.g_sd, target.g_cv
    sdi = np.atleast_1d(qpeer.sdi(mean, gm, gs)) if gs and gs > 0 else nan
    cvr = np.atleast_1d(qpeer.cvr(cv, gcv)) if gcv and gcv > 0 else nan
    bias = np.atleast_1d(qpeer.bias_pct(mean, gm)) if gm else nan
    return {"sdi": sdi, "cvr": cvr, "bias": bias, "rank": qpeer.rank_in_group(np.abs(bias)).rank}


def _num(value) -> float | None:
    if value is None or pd.isna(value):
        return None
    v = float(value)
    return v if np.isfinite(v) else None


def group_members(region_id: int, rows: Sequence[SystemResult],
                  targets: Sequence[SystemResult], *, highlight_lab: int | None = None,
                  named_labs: Collection[int] = ()) -> dict[tuple[int, int], list[Member]]:
    """Return ``{(ts, level): members}`` of each published target's group.

    ``rows`` are every display row the groups were computed from (a region's, for the
    targets' analytes and lots: :func:`qcwx.peer.queries.region_results`); ``targets`` the
    rows whose groups are wanted. Members are labelled by anonymous code except the labs in
    ``named_labs`` (hospital name); ``highlight_lab``'s systems are highlighted.
    """
    wanted = [t for t in targets if t.publishable]
    frame = _frame(region_id, rows, sorted({t.analyte_id for t in wanted})) if wanted else None
    out: dict[tuple[int, int], list[Member]] = {}
    if frame is None or not len(frame):
        return out
    named = set(named_labs)
    codes = _group_codes(frame)
    records = frame.to_dict("records")
    position = {(r["ts_id"], r["qc_level_id"]): i for i, r in enumerate(records)}
    mean = frame["mean"].to_numpy(np.float64)
    cv = pd.to_numeric(frame["cv"], errors="coerce").to_numpy(np.float64)
    for target in wanted:
        at = position.get((target.ts_id, target.qc_level_id))
        if at is None:
            continue
        level_codes = codes[target.group_level]
        rows = np.flatnonzero(level_codes == level_codes[at])
        rows = rows[np.lexsort((frame["ts_id"].to_numpy()[rows], mean[rows]))]
        part = [records[i] for i in rows]
        labels = member_labels(part, named, False)
        vs = _versus(mean[rows], cv[rows], target)
        out[(target.ts_id, target.qc_level_id)] = [
            Member(int(r["ts_id"]), int(r["lab_id"]), labels[k], int(r["lab_id"]) == highlight_lab,
                   int(r["n"]), float(r["mean"]), _num(r["sd"]), _num(r["cv"]),
                   _num(vs["sdi"][k]), _num(vs["cvr"][k]), _num(vs["bias"][k]),
                   int(vs["rank"][k]) if np.isfinite(vs["rank"][k]) else None, None, None)
            for k, r in enumerate(part)]
    return out
