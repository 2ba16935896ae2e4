"""What a capture channel shows after a submission: the verdict of one run, in one shape.

Kept apart from :mod:`qcwx.iqc.evaluation` (which judges and stores) so that module stays
about judging; both the just-judged path and :func:`qcwx.iqc.evaluation.verdict_for` (a
stored run read back) assemble their answer with :func:`verdict_from`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from qcwx.catalog.models import TestSystem
from qcwx.iqc.models import STATUS_LABEL, QcRun
from qcwx.qcstats import westgard

STATUS_SUMMARY = {
    "accept": "质控在控，可以发出本批患者报告。",
    "warning": "出现警告规则，请复核质控结果与近期趋势后再决定是否发出报告。",
    "reject": "质控失控！请暂停发出本批患者报告，查找原因并填写失控处理记录。",
    "pending": "尚未设定靶值和标准差，无法进行规则判断，请联系质控主管设定靶值。",
}


# ---------------------------------------------------------------- verdict objects
@dataclass(frozen=True)
class FiredRule:
    """A rule that fired, explained for the technician."""

    rule: str
    role: str
    name: str
    error: str
    explanation: str
    levels: tuple[str, ...]


@dataclass(frozen=True)
class LevelValue:
    """One level's stored value with its target and z (None without a target)."""

    level_id: int
    level_name: str
    value_text: str
    value: float
    target_mean: float | None
    target_sd: float | None
    z: float | None


@dataclass(frozen=True)
class RunVerdict:
    """What a capture channel shows after a submission."""

    run_id: int
    test_system_id: int
    run_date: date
    run_no: int
    status: str
    status_label: str
    summary: str
    values: tuple[LevelValue, ...]
    rules: tuple[FiredRule, ...] = field(default_factory=tuple)
    duplicate: bool = False
    action_id: int | None = None

    def to_dict(self) -> dict:
        """Return the verdict as JSON-ready data (APIs and the entry page's fetch)."""
        return {
            "run_id": self.run_id, "test_system_id": self.test_system_id,
            "run_date": self.run_date.isoformat(), "run_no": self.run_no,
            "status": self.status, "status_label": self.status_label, "summary": self.summary,
            "duplicate": self.duplicate, "action_id": self.action_id,
            "values": [v.__dict__ for v in self.values],
            "rules": [r.__dict__ | {"levels": list(r.levels)} for r in self.rules],
        }


def verdict_from(ts: TestSystem, run: QcRun, current, fired, steps, action_id,
                 duplicate: bool = False) -> RunVerdict:
    """Assemble a :class:`RunVerdict`: the one place a verdict's shape is decided.

    ``current`` is (level name, level id, text, value) in level order, ``fired`` is
    (rule, role, level names) in stored order (shown in rule-code order).
    """
    values = []
    for name, level_id, text, value in current:
        mean = sd = z = None
        for start, m, s in steps.get(level_id, []):
            if start <= run.run_date:
                mean, sd = m, s
        if mean is not None:
            z = (value - mean) / sd
        values.append(LevelValue(level_id, name, text, value, mean, sd, z))
    order = {c: i for i, c in enumerate(westgard.RULE_CODES)}
    rules = []
    for code, role, names in sorted(fired, key=lambda f: order[f[0]]):
        info = westgard.RULE_INFO[code]
        rules.append(FiredRule(code, role, info.name, info.error, info.explanation,
                               tuple(names)))
    return RunVerdict(run.id, ts.id, run.run_date, run.run_no, run.status,
                      STATUS_LABEL[run.status], STATUS_SUMMARY[run.status], tuple(values),
                      tuple(rules), duplicate, action_id)
