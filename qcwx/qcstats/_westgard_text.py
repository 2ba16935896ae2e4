"""Chinese names and advice for every Westgard rule code (user-facing data, no logic).

Kept apart from :mod:`qcwx.qcstats.westgard`, which re-exports `RuleInfo` and `RULE_INFO`,
so the rules read as rules; the keys are exactly `qcwx.qcstats.rulesets.RULE_CODES`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RULE_INFO", "RuleInfo"]


@dataclass(frozen=True)
class RuleInfo:
    """Describe a rule to laboratory staff (Chinese, user-facing).

    Attributes
    ----------
    name : str
        Short Chinese name.
    error : str
        Kind of error the rule points to (random, systematic, trend, warning).
    explanation : str
        What the rule means and what to check.
    """

    name: str
    error: str
    explanation: str


_SHIFT_CHECK = "检查校准（是否到期、校准品批号）、试剂批号是否更换、仪器漂移（温度、光源、管路），必要时重新校准；也请核对靶值设定。"  # noqa: E501

RULE_INFO: dict[str, RuleInfo] = {
    "1-2s": RuleInfo(
        "单值超出2倍标准差", "警告",
        "一个质控结果超出均值±2倍标准差。在控状态下约有百分之五的结果也会如此，"
        "因此只作警告、不单独拒绝；请结合其他规则判断本批，并留意近期是否同向偏移。",
    ),
    "1-2.5s": RuleInfo(
        "单值超出2.5倍标准差", "随机误差或大的系统误差",
        "一个质控结果超出均值±2.5倍标准差。检查仪器、试剂、质控品复溶与保存、操作过程，"
        "纠正后重新测定质控，并评估本批患者结果。",
    ),
    "1-3s": RuleInfo(
        "单值超出3倍标准差", "随机误差或大的系统误差",
        "一个质控结果超出均值±3倍标准差。检查仪器（加样针、比色杯、光源、温度）、"
        "试剂（有效期、开瓶稳定期）、质控品复溶与保存、操作过程，纠正后重新测定质控，"
        "并评估本批患者结果。",
    ),
    "1-3.5s": RuleInfo(
        "单值超出3.5倍标准差", "随机误差或大的系统误差",
        "一个质控结果超出均值±3.5倍标准差。检查仪器、试剂、质控品复溶与保存、操作过程，"
        "纠正后重新测定质控，并评估本批患者结果。",
    ),
    "2-2s": RuleInfo(
        "连续两个结果超出同侧2倍标准差", "系统误差",
        "同一批内相邻两个水平，或同一水平连续两批，结果超出均值同一侧2倍标准差。"
        + _SHIFT_CHECK,
    ),
    "R-4s": RuleInfo(
        "批内极差超过4倍标准差", "随机误差",
        "同一批内各水平结果的最大值与最小值相差达到4倍标准差（例如一个高于正2倍、"
        "一个低于负2倍）。检查加样（气泡、堵针）、质控品与试剂是否混匀、复溶是否正确、"
        "质控品位置是否放错。",
    ),
    "2of3-2s": RuleInfo(
        "连续三个结果中两个超出同侧2倍标准差", "系统误差",
        "连续三个质控结果中有两个超出均值同一侧2倍标准差。" + _SHIFT_CHECK,
    ),
    "3-1s": RuleInfo(
        "连续三个结果超出同侧1倍标准差", "系统误差",
        "连续三个质控结果超出均值同一侧1倍标准差，提示较小的系统偏移。" + _SHIFT_CHECK,
    ),
    "4-1s": RuleInfo(
        "连续四个结果超出同侧1倍标准差", "系统误差",
        "同一水平连续四批，或跨水平连续四个结果，超出均值同一侧1倍标准差，提示较小的系统偏移。"
        + _SHIFT_CHECK,
    ),
    "6x": RuleInfo(
        "连续六个结果在均值同侧", "系统误差",
        "连续六个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
    "7T": RuleInfo(
        "连续七个结果单向变化", "趋势（渐进的系统误差）",
        "同一水平连续七个结果逐个升高或逐个降低。检查试剂或质控品降解（开瓶时间、保存温度）、"
        "光源老化、仪器部件磨损、校准漂移。",
    ),
    "8x": RuleInfo(
        "连续八个结果在均值同侧", "系统误差",
        "连续八个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
    "9x": RuleInfo(
        "连续九个结果在均值同侧", "系统误差",
        "连续九个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
    "10x": RuleInfo(
        "连续十个结果在均值同侧", "系统误差",
        "连续十个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
    "12x": RuleInfo(
        "连续十二个结果在均值同侧", "系统误差",
        "连续十二个质控结果落在均值同一侧（等于均值时重新计数）。" + _SHIFT_CHECK,
    ),
}
"""Chinese name, error kind and advice for every code in `RULE_CODES`."""
