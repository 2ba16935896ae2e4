"""The Westgard Sigma Rules advisor (QC_SPEC §1.4) and its one-action apply.

Why: the rules page only offers "restore default"; a supervisor who knows the test system's
σ should get the rule set and number of controls that σ calls for, next to the set in force,
and adopt it with one action. Applying goes through the existing rule-set versioning
(:func:`qcwx.iqc.targets.set_rule_set`: role check, a new version with who/when/why, the
audit log at flush); like every rule change it judges the runs from now on, past verdicts
stay as they were judged. The design σ is the lowest σ of the system's levels — the
weakest level decides how much control the system needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from qcwx.analytics.sigma import LevelSigma
from qcwx.catalog.models import TestSystem
from qcwx.errors import Conflict, UserError
from qcwx.iqc import targets
from qcwx.iqc.models import RuleSet
from qcwx.orgs.models import User
from qcwx.qcstats import rulesets


@dataclass(frozen=True)
class Advice:
    """What the advisor recommends for one test system, or why it cannot."""

    sigma: float | None
    rules: dict[str, str] | None
    n_controls: int | None
    runs: int | None
    current: dict[str, str]
    message: str | None = None

    @property
    def codes(self) -> list[str]:
        """Return the recommended rule codes in display order."""
        return [c for c, role in (self.rules or {}).items() if role != "off"]

    @property
    def n_text(self) -> str:
        """Return N as shown: ``N=4`` (``N=4（R=2）`` below 4σ)."""
        if self.n_controls is None:
            return ""
        return f"N={self.n_controls}" + ("（R=2）" if self.runs == 2 else "")

    @property
    def reason(self) -> str | None:
        """Return the new version's reason, e.g. ``σ = 4.6 → 1-3s/2-2s/R-4s/4-1s, N=4``."""
        if self.rules is None or self.sigma is None:
            return None
        return f"σ = {self.sigma:.1f} → {'/'.join(self.codes)}, N={self.n_controls}"

    @property
    def differs(self) -> bool:
        """Return whether adopting the advice would change the rule set in force."""
        return self.rules is not None and self.rules != self.current


def controls_for(sigma: float) -> tuple[int, int]:
    """Return (N, R): control results per evaluation and runs they span (QC_SPEC §1.4).

    σ ≥ 5: N = 2 in one run; 4 ≤ σ < 5: N = 4 (2 levels × 2 runs, so 4-1s can see across runs);
    σ < 4: N = 4 over R = 2 runs, or more.
    """
    if sigma >= 5:
        return 2, 1
    if sigma >= 4:
        return 4, 1
    return 4, 2


def advise(ts: TestSystem, levels: list[LevelSigma]) -> Advice:
    """Return the sigma-based rule set for ``ts`` from its levels' σ (lowest level decides)."""
    current = targets.current_rule_set(ts)
    if len(ts.levels) != 2:
        return Advice(None, None, None, None, current,
                      "Westgard 西格玛规则适用于 2 个质控水平，"
                      f"本检测系统有 {len(ts.levels)} 个水平")
    sigmas = [lv.sigma for lv in levels if lv.ts_id == ts.id]
    if len(sigmas) < 2 or any(s is None for s in sigmas):
        missing = next((lv.note for lv in levels if lv.ts_id == ts.id and lv.sigma is None),
                       "本期缺少质控结果")
        return Advice(None, None, None, None, current, f"两个水平都有 σ 才能推荐规则：{missing}")
    sigma = min(sigmas)
    n, runs = controls_for(sigma)
    return Advice(sigma, rulesets.sigma_rule_set(sigma), n, runs, current)


def apply_advice(actor: User, ts: TestSystem, advice: Advice, expected: str | None) -> RuleSet:
    """Store the advised rule set as a new version with the advice as its reason.

    ``expected`` is the reason the page showed: when the data moved on since (another σ, so
    another advice) the supervisor must look again instead of adopting what they did not see.
    """
    targets.require_target_editor(actor, "修改质控规则")
    if advice.rules is None:
        raise UserError(advice.message or "暂无可采用的推荐规则", field="form")
    if expected is not None and expected.strip() != advice.reason:
        raise Conflict("数据已更新，推荐规则已变化，请查看后重试", field="form")
    if not advice.differs:
        raise UserError("当前规则已与推荐规则一致，无需修改", field="form")
    return targets.set_rule_set(actor, ts, advice.rules, advice.reason)
