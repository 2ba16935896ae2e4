"""The peer comparison world (tests/peer/conftest.py) plus the users the analytics pages need."""

from __future__ import annotations

import pytest

from tests import factories as f
from tests.peer.conftest import build_peer_world


@pytest.fixture
def aworld(session):
    """Region 1 of eight glucose labs (r1–r5 a publishable peer group) with every role."""
    w = build_peer_world()
    w.users["sup_r1"] = f.user("supervisor", lab_=w.labs["r1"])
    w.users["sup_b1"] = f.user("supervisor", lab_=w.labs["b1"])
    w.users["expert"] = f.user("expert", region_=w.region)  # the centre's expert group
    session.commit()
    return w
