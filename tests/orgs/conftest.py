"""Fixtures of the region-tree tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tree(session):
    """The small region tree of :mod:`tests.orgs.tree_world`, committed like ``world``."""
    from tests.orgs.tree_world import build_tree_world

    built = build_tree_world()
    session.commit()
    return built
