"""Fixtures of the open-data tests: a judged world, and no audit actor left over."""

from __future__ import annotations

import pytest

from qcwx.audit.services import set_actor
from tests.opendata import support


@pytest.fixture(autouse=True)
def _no_audit_actor():
    """A request's audit actor outlives it in this thread; rolled-back users break FKs."""
    set_actor(None)
    yield
    set_actor(None)


@pytest.fixture
def judged(world, session):
    """The world with codes, limits and six judged runs (see ``tests.opendata.support``)."""
    return support.build(world)
