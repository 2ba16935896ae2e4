"""Expert comments (专家组点评) on a published evaluation report and the lab's one reply.

The comment shows after the generated conclusions (never replacing them) on the page, the
share link and the PDF's source; the lab's director and supervisor are notified through the
outbox; one reply per comment; every write is audited; every endpoint checks role and scope.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from qcwx.alerts.models import OutboxMessage
from qcwx.audit.models import AuditLog
from qcwx.extensions import db
from qcwx.reports import comments, services
from qcwx.reports.comments import ExpertComment
from tests import factories as f
from tests.reports.evaluation_world import build_evaluation_world


@pytest.fixture
def world(session):
    w = build_evaluation_world()
    lab = w.labs["r1"]
    w.item = services.publish_evaluation(lab, w.month, w.today)
    w.users["expert"] = f.user("expert", region_=w.region, name="王专家")
    w.users["expert2"] = f.user("expert", region_=w.region2, name="外区专家")
    w.users["sup_r1"] = f.user("supervisor", lab_=lab, name="李主管")
    w.users["sup_r2"] = f.user("supervisor", lab_=w.labs["r2"])
    session.commit()
    return w


def _page(client, w) -> str:
    return client.get(f"/reports/labs/{w.labs['r1'].id}/evaluation?month={w.month}").get_data(
        as_text=True)


def _post_comment(client, w, body="肌酐 SDI 连续偏高，建议核对校准。"):
    return client.post(f"/reports/published/{w.item.id}/comments", data={"body": body})


def test_an_expert_comment_shows_after_the_conclusions_and_notifies_the_lab(world, login):
    w = world
    before = services.frozen_report(w.item)
    resp = _post_comment(login(w.users["expert"]), w)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("#expert-comments")
    report = services.frozen_report(w.item)
    titles = [s.title for s in report.sections]
    conclusions = max(i for i, s in enumerate(report.sections) if s.conclusions
                      and s.title != comments.SECTION_TITLE)
    assert titles[conclusions + 1] == comments.SECTION_TITLE
    # The generated sections are untouched, only one section was added.
    assert [s for s in report.sections if s.title != comments.SECTION_TITLE] == list(
        before.sections)
    assert report.fingerprint() != before.fingerprint()  # the PDF cache follows the comment
    html = _page(login(w.users["sup_r1"]), w)
    assert "肌酐 SDI 连续偏高" in html and "王专家" in html
    outbox = db.session.scalar(select(OutboxMessage).where(
        OutboxMessage.kind == "expert_comment"))
    expected = {w.users["sup_r1"].id, w.users["director_r1"].id}
    assert set(outbox.payload["user_ids"]) == expected
    assert outbox.payload["url"].endswith(f"/reports/labs/{w.labs['r1'].id}/evaluation"
                                          f"?month={w.month}")
    # Anyone holding a share link of the published report sees the comment too.
    link = services.share_report(None, w.labs["r1"], "evaluation", {"month": w.month}, "0",
                                 w.today)
    db.session.commit()
    from flask import current_app

    anon = current_app.test_client()
    assert "肌酐 SDI 连续偏高" in anon.get(link.path).get_data(as_text=True)


def test_the_lab_replies_once_and_the_expert_is_told(world, login):
    w = world
    _post_comment(login(w.users["expert"]), w)
    comment = db.session.scalar(select(ExpertComment))
    client = login(w.users["sup_r1"])
    assert f'data-reply-for="{comment.id}"' in _page(client, w)
    resp = client.post(f"/reports/comments/{comment.id}/reply",
                       data={"reply": "已更换校准品批号。"})
    assert resp.status_code == 302
    again = login(w.users["director_r1"]).post(
        f"/reports/comments/{comment.id}/reply", data={"reply": "第二次回复"},
        headers={"Accept": "application/json"})
    assert again.status_code == 409 and again.get_json()["field"] == "reply"
    db.session.expire_all()
    comment = db.session.get(ExpertComment, comment.id)
    assert comment.reply == "已更换校准品批号。" and comment.reply_by_id == w.users["sup_r1"].id
    reply_box = db.session.scalar(select(OutboxMessage).where(
        OutboxMessage.kind == "comment_reply"))
    assert reply_box.payload["user_ids"] == [w.users["expert"].id]
    assert "已更换校准品批号" in _page(client, w)
    assert f'data-reply-for="{comment.id}"' not in _page(client, w)
    audited = {(a.action, a.actor_id) for a in db.session.scalars(select(AuditLog).where(
        AuditLog.entity == "expert_comment", AuditLog.entity_id == str(comment.id)))}
    assert audited == {("insert", w.users["expert"].id), ("update", w.users["sup_r1"].id)}


@pytest.mark.parametrize("who, status", [
    ("tech_r1", 403), ("sup_r1", 403), ("director_r1", 403), ("center", 403), ("admin", 403),
    ("expert2", 404),  # another region's expert: the report is out of scope
])
def test_only_an_expert_in_scope_may_comment(world, login, who, status):
    resp = _post_comment(login(world.users[who]), world)
    assert resp.status_code == status
    assert db.session.scalar(select(func.count()).select_from(ExpertComment)) == 0


def test_anonymous_cannot_comment_or_reply(world, client):
    assert _post_comment(client, world).status_code in (302, 401)
    assert db.session.scalar(select(func.count()).select_from(ExpertComment)) == 0


@pytest.mark.parametrize("who, status", [
    ("tech_r1", 403), ("expert", 403), ("center", 403), ("sup_r2", 404),
    ("expert2", 403),  # every write of a read-only role is refused before any lookup
])
def test_only_the_labs_supervisor_or_director_may_reply(world, login, who, status):
    w = world
    _post_comment(login(w.users["expert"]), w)
    comment = db.session.scalar(select(ExpertComment))
    resp = login(w.users[who]).post(f"/reports/comments/{comment.id}/reply",
                                    data={"reply": "回复"})
    assert resp.status_code == status
    db.session.expire_all()
    assert db.session.get(ExpertComment, comment.id).reply is None


@pytest.mark.parametrize("body, field", [("", "body"), ("   ", "body"), ("长" * 2001, "body")])
def test_bad_comment_text_is_a_400_naming_the_field(world, login, body, field):
    resp = login(world.users["expert"]).post(
        f"/reports/published/{world.item.id}/comments", data={"body": body},
        headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == field


def test_a_missing_report_is_a_404(world, login):
    resp = login(world.users["expert"]).post("/reports/published/999999/comments",
                                             data={"body": "x"})
    assert resp.status_code == 404


def test_the_comment_form_shows_only_to_an_expert(world, login):
    w = world
    assert 'id="comment-form"' in _page(login(w.users["expert"]), w)
    assert 'id="comment-form"' not in _page(login(w.users["sup_r1"]), w)
