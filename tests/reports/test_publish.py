"""Publication: a month's evaluations are frozen once; the frozen report never changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from qcwx.extensions import db
from qcwx.peer.filters import month_end
from qcwx.peer.models import PeerSnapshot
from qcwx.reports import queries, services
from qcwx.reports.models import PublishedReport, ShareLink
from tests.peer.conftest import add_run
from tests.reports.evaluation_world import build_evaluation_world


@pytest.fixture
def eval_world(session):
    built = build_evaluation_world()
    session.commit()
    return built


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_publishing_a_month_freezes_it_and_publishes_every_lab_once(eval_world, session):
    w = eval_world
    done, existing = services.publish_month(w.month, w.today, commit=session.commit)
    n_labs = len(w.labs)
    assert (done, existing) == (n_labs, 0)
    assert db.session.scalar(select(PeerSnapshot).where(PeerSnapshot.month == w.month))
    assert _count(PublishedReport) == n_labs
    # Again: nothing new, nothing rebuilt.
    assert services.publish_month(w.month, w.today, commit=session.commit) == (0, n_labs)
    assert _count(PublishedReport) == n_labs


def test_a_published_report_never_changes_after_late_data(eval_world, session, client):
    w = eval_world
    lab = w.labs["r1"]
    item = services.publish_evaluation(lab, w.month, w.today)
    session.commit()
    frozen = services.frozen_report(item)
    assert frozen.frozen and frozen.published_at
    add_run(w.systems["r1"], month_end(w.month) - timedelta(days=1), {1: 6.40, 2: 18.40},
            run_no=9)
    session.commit()
    page = queries.report_for_page(lab, "evaluation", {"month": w.month}, w.today)
    assert page.to_dict() == frozen.to_dict()
    assert page.fingerprint() == item.fingerprint
    # A link to it may live forever; a live report's may not.
    created = services.share_report(None, lab, "evaluation", {"month": w.month}, "0", w.today)
    session.commit()
    assert created.link.published_id == item.id and created.link.expires_at is None
    html = client.get(created.path).get_data(as_text=True)
    assert 'id="report-frozen"' in html and "已发布" in html
    with pytest.raises(services.UserError):
        services.share_report(None, lab, "dynamic", {"ts_ids": None,
                                                     "period": {"kind": "this_month"}},
                              "0", w.today)
    assert _count(ShareLink) == 1


def test_only_a_finished_month_can_be_published(eval_world):
    w = eval_world
    with pytest.raises(services.UserError, match="已结束"):
        services.publish_evaluation(w.labs["r1"], w.today.strftime("%Y-%m"), w.today)


def test_the_publish_command_is_idempotent(eval_world, app, session):
    w = eval_world
    runner = app.test_cli_runner()
    first = runner.invoke(args=["reports", "publish", "--month", w.month, "--lab",
                                w.labs["r1"].code])
    assert first.exit_code == 0, first.output
    assert "1 evaluation report(s) published" in first.output
    again = runner.invoke(args=["reports", "publish", "--month", w.month, "--lab",
                                w.labs["r1"].code])
    assert "0 evaluation report(s) published, 1 already were" in again.output
    bad = runner.invoke(args=["reports", "publish", "--month", "2999-01"])
    assert bad.exit_code != 0 and "未来" in bad.output
