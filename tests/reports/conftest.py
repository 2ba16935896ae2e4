"""Report tests: ``app``, ``session``, ``world`` and ``login`` come from ``tests/fixtures``
(through ``tests/conftest.py``); each test module builds its own data with
``tests.factories`` and the real IQC services."""

from __future__ import annotations

import pytest


@pytest.fixture
def eval_world(session):
    """The evaluation world (tests/reports/evaluation_world.py) plus a supervisor of r1.

    test_evaluation.py defines its own ``eval_world`` (without the supervisor), which wins
    there.
    """
    from tests import factories as f
    from tests.reports.evaluation_world import build_evaluation_world

    built = build_evaluation_world()
    built.users["supervisor_r1"] = f.user("supervisor", lab_=built.labs["r1"])
    session.commit()  # survive a request's rollback (as tests/peer/conftest.py)
    return built
