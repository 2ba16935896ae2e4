"""A published regional report is announced through the outbox to the fake WeChat.

The template message carries the report's share link to the region's centre users and
hospital directors who bound the official account; a region where nobody is bound ends
``unreachable`` and the centre's page says so.
"""

from __future__ import annotations

from sqlalchemy import select

from qcwx.alerts.delivery import dispatch
from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.peer.filters import month_period
from qcwx.reports import queries
from qcwx.reports import regional_publish as publish
from qcwx.timeutil import local_today
from tests.fixtures.alerts import TEMPLATE


def deliver(session, outbox_id: int) -> None:
    """Dispatch now: a no-op after the eager dispatch, needed if Celery was left non-eager."""
    dispatch(outbox_id)
    session.commit()
    session.expire_all()


def test_the_report_reaches_the_bound_centre_and_director_with_its_link(
        session, bound, fake_wechat, client):
    world = bound
    director = world.users["director"]
    director.wechat_openid = f"oDir{director.id:024d}"
    session.commit()
    today = local_today()
    done = publish.publish_region(world.region1, month_period(queries.previous_month(today),
                                                             today), today)
    session.commit()  # the outbox row is dispatched after the commit (eagerly here)
    deliver(session, done.outbox.id)
    outbox = session.get(OutboxMessage, done.outbox.id)
    assert outbox.status == "sent"
    sent = {m["touser"]: m for m in fake_wechat.messages}
    assert set(sent) == {world.users["center"].wechat_openid, director.wechat_openid}
    message = sent[director.wechat_openid]
    assert message["template_id"] == TEMPLATE
    assert message["url"] == outbox.payload["url"]
    assert message["url"].startswith("http://qc.example.cn/r/")
    assert message["data"]["first"]["value"] == f"{done.item.title}已发布"
    page = client.get(message["url"].removeprefix("http://qc.example.cn"))
    assert page.status_code == 200 and done.item.title in page.get_data(as_text=True)
    assert session.scalars(select(AlertDelivery.status)).all() == ["sent", "sent"]


def test_a_region_where_nobody_is_bound_is_a_visible_failure(session, bound, fake_wechat,
                                                              login):
    world = bound
    today = local_today()
    done = publish.publish_region(world.region2, month_period(
        queries.previous_month(today), today), today)
    session.commit()
    deliver(session, done.outbox.id)
    outbox = session.get(OutboxMessage, done.outbox.id)
    assert outbox.status == "unreachable" and fake_wechat.messages == []
    page = login(world.users["center2"]).get(f"/reports/region/{done.item.id}")
    html = page.get_data(as_text=True)
    assert 'data-status="unreachable"' in html and publish.NOBODY in html
