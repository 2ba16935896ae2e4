"""Peer-group statistics for inter-laboratory comparison (QC_SPEC §3).

Robust group mean and SD by ISO 13528 Algorithm A (or iterative 3-SD exclusion; both in
:mod:`qcwx.qcstats.robust` and re-exported here), CV%, SDI, CVR, bias, their bands, ranks,
NCCL-style pass, sigma grades, publishability and group fallback, a vectorised
:func:`group_statistics` for many peer groups at once, and the incremental helpers
(:class:`LabMoments`, :func:`update_lab_moments`, :func:`summarise_group`) a service uses when
one new result arrives. Each test system is one point of its group; "≥ 5 labs" counts
distinct labs (QC_SPEC §3 "Who counts once").

References
----------
ISO 13528:2022, *Statistical methods for use in proficiency testing by interlaboratory
comparison*, Annex C.3 (Algorithm A).
Westgard JO, Westgard SA. Sigma-metrics for grading analytical performance.

Summation note: every mean and SD in this module is accumulated with ``np.add.reduceat``
over values sorted ascending within a group, so a group's result does not depend on the other
groups computed with it: :func:`algorithm_a` and :func:`group_statistics` agree bit for bit.

This module is the one callers import; the code lives by concern in
:mod:`qcwx.qcstats.peer_metrics` (one lab against its group: metrics, bands, ranks, grades)
and :mod:`qcwx.qcstats.peer_groups` (group statistics, publication, incremental sums).
"""

from __future__ import annotations

from .peer_groups import (
    FALLBACK_ORDER,
    MIN_LABS,
    MIN_RESULTS,
    GroupLevelChoice,
    GroupStatistics,
    GroupSummary,
    LabMoments,
    choose_group_level,
    group_statistics,
    publishable,
    summarise_group,
    update_lab_moments,
)
from .peer_metrics import (
    CVR_BANDS,
    SDI_BANDS,
    ZERO_MEAN_TOL,  # noqa: F401 - importable from here, as before
    Band,
    GradeResult,
    NcclAssessment,
    OverallGrade,
    Ranking,
    bias_pct,
    cv_pct,
    cvr,
    cvr_band,
    grade,
    grade_performance,
    group_cv,
    lab_overall_grade,
    nccl_pass,
    rank_in_group,
    sdi,
    sdi_band,
)
from .robust import (
    ALGORITHM_A,
    ITERATIVE_3SD,
    RobustEstimate,
    algorithm_a,
    algorithm_a_groups,
    iterative_3sd,
)

__all__ = [
    "ALGORITHM_A",
    "CVR_BANDS",
    "FALLBACK_ORDER",
    "ITERATIVE_3SD",
    "MIN_LABS",
    "MIN_RESULTS",
    "SDI_BANDS",
    "Band",
    "GradeResult",
    "GroupLevelChoice",
    "GroupStatistics",
    "GroupSummary",
    "LabMoments",
    "NcclAssessment",
    "OverallGrade",
    "Ranking",
    "RobustEstimate",
    "algorithm_a",
    "algorithm_a_groups",
    "bias_pct",
    "choose_group_level",
    "cv_pct",
    "cvr",
    "cvr_band",
    "grade",
    "grade_performance",
    "group_cv",
    "group_statistics",
    "iterative_3sd",
    "lab_overall_grade",
    "nccl_pass",
    "publishable",
    "rank_in_group",
    "sdi",
    "sdi_band",
    "summarise_group",
    "update_lab_moments",
]
