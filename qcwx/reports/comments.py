"""Expert comments (专家组点评) on a lab's published evaluation report, and the lab's one reply.

The published report itself never changes (its numbers are frozen); a comment is a row of its
own that the report shows in a section placed right after the generated conclusions, so an
expert adds guidance without ever replacing what the numbers say (QC_SPEC §7). Every insert
and update is recorded by the automatic audit log (``qcwx.audit``); the lab's director and
supervisors are told through the alerts outbox, and the expert when the lab replies.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.alerts.delivery import dispatch_after_commit
from qcwx.alerts.models import OutboxMessage
from qcwx.audit.models import AuditLog
from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import User
from qcwx.reports.document import Conclusion, Report, Section
from qcwx.reports.models import PublishedReport
from qcwx.timeutil import to_local, utcnow
from qcwx.web.urls import public_url

#: Who writes comments, and who replies for the lab.
COMMENTER_ROLES = ("expert",)
REPLIER_ROLES = ("supervisor", "director")
#: Longest comment or reply (a page of guidance; the column is TEXT).
MAX_LENGTH = 2000
SECTION_TITLE = "专家点评"


class ExpertComment(db.Model):
    """One expert's comment on one published evaluation report, with the lab's reply."""

    __tablename__ = "expert_comment"
    id: Mapped[int] = mapped_column(primary_key=True)
    published_id: Mapped[int] = mapped_column(ForeignKey("published_report.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reply: Mapped[str | None] = mapped_column(Text)
    reply_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    replied_at: Mapped[datetime | None]
    # Which lab the comment concerns, copied from the report so scope checks need no join.
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="evaluation")
    published: Mapped[PublishedReport] = relationship()
    author: Mapped[User] = relationship(foreign_keys=[author_id])
    reply_by: Mapped[User | None] = relationship(foreign_keys=[reply_by_id])


def _text(raw, field: str, label: str) -> str:
    text = str(raw or "").strip()
    if not text:
        raise UserError(f"请填写{label}", field=field)
    if len(text) > MAX_LENGTH:
        raise UserError(f"{label}不能超过 {MAX_LENGTH} 字（现在 {len(text)} 字）", field=field)
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise UserError(f"{label}含有无效字符", field=field)
    return text


def comments_of(published_id: int) -> list[ExpertComment]:
    """Return a report's comments, oldest first."""
    return list(db.session.scalars(select(ExpertComment).where(
        ExpertComment.published_id == published_id).order_by(ExpertComment.id)))


def can_comment(actor: User, item: PublishedReport) -> bool:
    """Return whether ``actor`` may comment on ``item`` (an expert whose scope holds the lab)."""
    return (actor.role in COMMENTER_ROLES and item.kind == "evaluation"
            and item.lab_id is not None and scopes.can_access_lab(actor, item.lab_id))


def can_reply(actor: User, comment: ExpertComment) -> bool:
    """Return whether ``actor`` answers for the comment's lab (its supervisor or director)."""
    return actor.role in REPLIER_ROLES and scopes.can_access_lab(actor, comment.lab_id)


def _lab_recipients(lab_id: int) -> list[int]:
    from qcwx.orgs.models import Lab

    lab = db.session.get(Lab, lab_id)
    return list(db.session.scalars(select(User.id).where(User.active, (
        (User.lab_id == lab_id) & (User.role == "supervisor")) | (
        (User.hospital_id == lab.hospital_id) & (User.role == "director"))).order_by(User.id)))


def _notify(kind: str, comment: ExpertComment, user_ids: list[int], first: str) -> None:
    """Queue a template message (``fields`` + ``url``) for ``user_ids`` through the outbox."""
    item = comment.published
    url = public_url(f"/reports/labs/{item.lab_id}/evaluation?month={item.period}", shared=True)
    when = to_local(utcnow()).strftime("%Y-%m-%d %H:%M")
    text = comment.body if kind == "expert_comment" else (comment.reply or "")
    fields = {"first": first, "keyword1": item.title, "keyword2": text[:60],
              "keyword3": SECTION_TITLE, "keyword4": when, "remark": "点击查看报告与点评。"}
    outbox = OutboxMessage(kind=kind, lab_id=item.lab_id,
                           dedupe_key=f"{kind}:{comment.id}",
                           payload={"user_ids": user_ids, "fields": fields, "url": url})
    db.session.add(outbox)
    dispatch_after_commit(outbox)


def add_comment(actor: User, published_id: int, body) -> ExpertComment:
    """Add an expert comment to a published evaluation report and notify the lab."""
    item = db.session.get(PublishedReport, published_id)
    if item is None or item.lab_id is None or not scopes.can_access_lab(actor, item.lab_id):
        raise NotFound()
    if not can_comment(actor, item):
        raise Forbidden("只有专家组成员可以点评评测报告")
    comment = ExpertComment(published_id=item.id, lab_id=item.lab_id, author_id=actor.id,
                            body=_text(body, "body", "点评内容"))
    db.session.add(comment)
    db.session.flush()
    _notify("expert_comment", comment, _lab_recipients(item.lab_id),
            f"{item.lab.full_name}：专家组点评了{item.title}")
    return comment


def add_reply(actor: User, comment_id: int, text) -> ExpertComment:
    """Record the lab's one reply to a comment and tell its author."""
    comment = db.session.get(ExpertComment, comment_id)
    if comment is None or not scopes.can_access_lab(actor, comment.lab_id):
        raise NotFound()
    if not can_reply(actor, comment):
        raise Forbidden("只有本实验室的质控主管或科主任可以回复点评")
    reply = _text(text, "reply", "回复内容")
    # One reply only: a conditional update, so two concurrent replies cannot both land. Core
    # updates escape the automatic audit listener, so the audit row is written here.
    now = utcnow()
    done = db.session.execute(
        ExpertComment.__table__.update()
        .where(ExpertComment.id == comment.id, ExpertComment.reply.is_(None))
        .values(reply=reply, reply_by_id=actor.id, replied_at=now)).rowcount
    if not done:
        raise Conflict("该点评已有回复，每条点评只能回复一次", field="reply")
    db.session.add(AuditLog(actor_id=actor.id, action="update", entity="expert_comment",
                            entity_id=str(comment.id),
                            changes={"reply": [None, reply], "reply_by_id": [None, actor.id],
                                     "replied_at": [None, now.isoformat()]}))
    db.session.refresh(comment)
    _notify("comment_reply", comment, [comment.author_id],
            f"{comment.published.lab.full_name}回复了您的点评")
    return comment


def _when(moment: datetime | None) -> str:
    return to_local(moment).strftime("%Y-%m-%d %H:%M") if moment else ""


def with_comments(report: Report, item: PublishedReport) -> Report:
    """Return ``report`` with its comments as a section right after the conclusions."""
    comments = comments_of(item.id)
    if not comments:
        return report
    entries = []
    for c in comments:
        reasons = [c.body]
        if c.reply:
            who = c.reply_by.display_name if c.reply_by else "实验室"
            reasons.append(f"实验室回复（{who} · {_when(c.replied_at)}）：{c.reply}")
        entries.append(Conclusion(heading=f"{c.author.display_name} · {_when(c.created_at)}",
                                  verdict="专家点评", tone="", reasons=tuple(reasons)))
    section = Section(title=SECTION_TITLE, anchor="expert-comments",
                      note="专家点评列在自动生成的结论之后，不替代结论。",
                      conclusions=tuple(entries))
    sections = list(report.sections)
    last = max((i for i, s in enumerate(sections) if s.conclusions), default=len(sections) - 1)
    sections.insert(last + 1, section)
    return replace(report, sections=tuple(sections))


def page_context(actor: User, item: PublishedReport | None) -> dict:
    """Return what the report page needs for the comment and reply forms."""
    if item is None:
        return {"published": None, "can_comment": False, "replyable": []}
    return {"published": item, "can_comment": can_comment(actor, item),
            "replyable": [c for c in comments_of(item.id)
                          if c.reply is None and can_reply(actor, c)]}
