"""Exception-report items about codes: systems without LOINC/UCUM, and LOINC mismatches.

* ``no_loinc`` — a test system whose analyte has no LOINC code that applies to its method
  and unit (:func:`qcwx.catalog.codes.pick_loinc`): its results would leave the data set
  uncoded.
* ``no_ucum`` — a test system whose unit has no UCUM code.
* ``loinc_mismatch`` — an analyser sent a LOINC code (kept at import,
  :class:`qcwx.ingest.models.ReceivedLoinc`) that is none of the mapped analyte's codes:
  the channel is probably mapped to the wrong test system.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
from sqlalchemy import select

from qcwx.catalog.codes import loinc_choices, pick_loinc, ucum_by_key
from qcwx.extensions import db
from qcwx.ingest.models import ReceivedLoinc
from qcwx.peer.units import unit_key

KIND_TITLES = {
    "no_loinc": "项目缺少 LOINC 编码",
    "no_ucum": "单位缺少 UCUM 编码",
    "loinc_mismatch": "仪器 LOINC 与所映射项目不符",
}
KIND_SHORT = {"no_loinc": "缺 LOINC", "no_ucum": "缺 UCUM", "loinc_mismatch": "LOINC 不符"}


def code_exceptions(systems: pd.DataFrame, analyte_names: Mapping[int, str],
                    item: Callable) -> dict[str, list]:
    """Return the three code kinds for the region's systems (``systems`` as the report reads)."""
    out: dict[str, list] = {kind: [] for kind in KIND_TITLES}
    if not len(systems):
        return out
    choices, ucum = loinc_choices(), ucum_by_key()
    records = systems.to_dict("records")
    for r in records:
        code = ucum.get(unit_key(r["unit"]))
        if code is None:
            out["no_ucum"].append(item("no_ucum", r, None, f"单位“{r['unit']}”没有 UCUM 编码"))
        if pick_loinc(choices.get(int(r["analyte_id"]), []), r.get("method"), code) is None:
            name = analyte_names.get(int(r["analyte_id"]), "")
            method = f"（方法 {r['method']}）" if r.get("method") else ""
            out["no_loinc"].append(item("no_loinc", r, None,
                                        f"项目“{name}”{method}没有适用的 LOINC 编码"))
    by_ts = {int(r["ts_id"]): r for r in records}
    received = db.session.scalars(select(ReceivedLoinc).where(
        ReceivedLoinc.test_system_id.in_(list(by_ts))).order_by(ReceivedLoinc.id))
    for row in received:
        r = by_ts[row.test_system_id]
        own = [c.loinc for c in choices.get(int(r["analyte_id"]), [])]
        if row.loinc not in own:
            name = analyte_names.get(int(r["analyte_id"]), "")
            listed = "、".join(own) or "无"
            out["loinc_mismatch"].append(item("loinc_mismatch", r, None, (
                f"仪器以代码“{row.source_code}”发送 LOINC {row.loinc}，所映射项目“{name}”的 "
                f"LOINC 为 {listed}；请核对项目映射")))
    return out
