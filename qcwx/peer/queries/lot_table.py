"""The lot page's member table and chart axis: its orders and the members' short labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from qcwx.errors import UserError
from qcwx.peer.queries.lot import Member

#: Orders of the member table (query ``sort``): the chart's order, worst |SDI|, label.
MEMBER_SORTS = {"mean": "按均值", "sdi": "|SDI| 大优先", "name": "按名称"}


def sort_members(members: Sequence[Member], sort: str) -> list[Member]:
    """Return the members by mean (the chart's order), by |SDI| high → low, or by label."""
    if sort not in MEMBER_SORTS:
        raise UserError(f"排序方式无效：{sort[:20]}", field="sort")
    if sort == "sdi":
        return sorted(members, key=lambda m: (m.sdi is None, -abs(m.sdi or 0.0), m.code))
    if sort == "name":
        return sorted(members, key=lambda m: (m.code, m.ts_id))
    return sorted(members, key=lambda m: (m.mean, m.code))


def axis_labels(members: Sequence[Member]) -> dict[int, str]:
    """Return each member's short chart label by ``ts_id``: its anonymous code (else its label).

    A lab with several systems in the group gets ``-1``, ``-2`` … in ``ts_id`` order, so every
    label is unique and short enough to read on a phone's axis; names stay in the tooltip
    and the member table (which shows the same label beside each name).
    """
    base = {m.ts_id: m.anon_code or m.code for m in members}
    repeats = Counter(base.values())
    seen: Counter[str] = Counter()
    out = {}
    for ts_id in sorted(base):
        label = base[ts_id]
        if repeats[label] > 1:
            seen[label] += 1
            label = f"{label}-{seen[label]}"
        out[ts_id] = label
    return out
