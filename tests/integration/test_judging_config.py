"""The limits and the rule set a submission judges with come from one statement (issue 14).

:func:`qcwx.iqc.queries.judging_config`, and the store checks of a live submission that read
them too (:func:`qcwx.iqc.bulk.store_state`), must give exactly what the two separate reads give
(:func:`limit_timeline`, :func:`current_rule_set`), which the pages and re-judging after a
limit change still use: steps in force order (a later version of the same day after the
earlier), the newest rule set completed with "off", and the default without one.
"""

from __future__ import annotations

from datetime import date

import pytest

from qcwx.iqc import bulk, queries, targets
from qcwx.qcstats import westgard

from .test_submit_cost import counted

READERS = {
    "judging_config": queries.judging_config,
    "store_state": lambda ts: bulk.store_state(ts.lab_id, ["none"], ts, [date(2026, 6, 1)]).config,
}
reader = pytest.mark.parametrize("read", list(READERS.values()), ids=list(READERS))


def both(ts):
    return queries.limit_timeline(ts), queries.current_rule_set(ts)


@reader
def test_a_system_without_limits_or_rules_judges_with_nothing_and_the_default(session, world,
                                                                               read):
    ts = world.systems["a"]
    assert ts.levels  # loaded, as a submission has them, so only the read itself counts
    with counted() as seen:
        timeline, rules = read(ts)
    assert len(seen) == 1
    assert (timeline, rules) == both(ts) == ({}, westgard.default_rule_set(len(ts.levels)))


@reader
def test_versions_of_limits_and_rules_come_back_as_the_separate_reads_give_them(session, world,
                                                                                 read):
    ts, sup = world.systems["a"], world.users["supervisor"]
    l1, l2 = sorted(ts.levels, key=lambda lv: lv.level_index)
    for level, mean, sd, day in ((l1, 5.0, 0.2, date(2026, 3, 1)),
                                 (l2, 15.0, 0.5, date(2026, 3, 1)),
                                 (l1, 5.1, 0.25, date(2026, 5, 1)),
                                 (l1, 5.05, 0.22, date(2026, 5, 1)),  # same day, later version
                                 (l2, 14.8, 0.45, date(2026, 4, 10))):
        targets.set_control_limit(sup, ts, level, mean=mean, sd=sd, kind="fixed",
                                  effective_from=day, reason="新批号靶值")
    targets.set_rule_set(sup, ts, {"1-3s": "reject", "2-2s": "reject"}, "只用两条规则")
    targets.set_rule_set(sup, ts, {"1-2s": "warning", "1-3s": "reject", "R-4s": "reject"},
                         "恢复警告规则")
    assert ts.levels
    with counted() as seen:
        timeline, rules = read(ts)
    assert len(seen) == 1
    assert (timeline, rules) == both(ts)
    assert timeline[l1.id] == [(date(2026, 3, 1), 5.0, 0.2), (date(2026, 5, 1), 5.1, 0.25),
                               (date(2026, 5, 1), 5.05, 0.22)]
    assert timeline[l2.id] == [(date(2026, 3, 1), 15.0, 0.5), (date(2026, 4, 10), 14.8, 0.45)]
    assert rules["R-4s"] == "reject" and rules["2-2s"] == "off"  # the newest version only
