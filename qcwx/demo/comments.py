"""The demo's expert comment: last month's evaluation of the demo lab, commented and answered.

Runs after the peer statistics exist (``make run`` calls it in the background after
``flask reports publish``), because a published report needs them. Idempotent: a report that
already has a comment is left alone. Goes through the same services as the pages, so the
comment, the reply, their audit rows and the outbox notices are the real ones.
"""

from __future__ import annotations

from sqlalchemy import select

from qcwx.audit.services import acting_as
from qcwx.extensions import db
from qcwx.orgs.models import Lab, User
from qcwx.reports import comments, queries, services
from qcwx.timeutil import local_today

DEMO_LAB = "DEMO-H01-JY"
COMMENT = ("本月多数项目 SDI 与 CVR 在可接受范围内。请关注被判为“需改进”或“不合格”的项目："
           "先核对校准品批号与最近一次校准日期，再比较同批号同方法实验室的均值；"
           "如偏倚持续两个月以上，建议联系试剂厂家核查试剂批号。")
REPLY = "已安排下周对相关项目重新校准，并在失控处理记录中登记原因与结果。"


def seed_expert_comment() -> str:
    """Publish the demo lab's last-month evaluation if needed and add the demo comment."""
    lab = db.session.scalar(select(Lab).where(Lab.code == DEMO_LAB))
    expert = db.session.scalar(select(User).where(User.username == "expert"))
    supervisor = db.session.scalar(select(User).where(User.username == "supervisor"))
    if lab is None or expert is None or supervisor is None:
        return "demo lab or demo expert missing: no expert comment seeded"
    today = local_today()
    month = queries.previous_month(today)
    item = services.published_evaluation(lab.id, month) or services.publish_evaluation(
        lab, month, today)
    if comments.comments_of(item.id):
        return f"demo expert comment already on {item.title}"
    with acting_as(expert.id):  # the audit log names who wrote, as on the pages
        comment = comments.add_comment(expert, item.id, COMMENT)
    with acting_as(supervisor.id):
        comments.add_reply(supervisor, comment.id, REPLY)
    return f"demo expert comment added to {item.title}"


