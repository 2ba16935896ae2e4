"""Send one file until every item is settled, within a bounded number of attempts.

Why: the server stores each item on its own and says per item what happened. ``stored`` and
``duplicate`` items are done; an ``error`` item marked ``retryable`` was *not stored* because
another writer held the same run at that moment — sending it again shortly will work; any
other ``error`` needs a person (an unmapped code, a conflicting value) and is not resent
within the pass. Whole-request failures that heal within seconds (no connection, timeout,
429/503 and other busy answers) are retried too, honouring ``Retry-After``. A CSV resend
leaves every other row out (see :func:`files.without_rows`); other formats are resent whole
and the server answers what it already holds as ``duplicate`` — client ids are derived from
the content, so they are the same and nothing is stored twice.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import requests

from .transport import SOON_STATUSES, body_of, message_of, retry_after

LOG = logging.getLogger("qcwx_uploader")


@dataclass
class Policy:
    """How hard one pass tries: attempts, the first pause, the longest pause."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Return the pause after failed attempt ``attempt`` (0-based): capped, with jitter.

        "Equal jitter": half the capped exponential step, plus a random part of the other
        half, so several uploaders that failed together do not come back together.
        """
        step = min(self.cap, self.base * 2.0 ** attempt)
        return step / 2 + random.uniform(0, step / 2)  # jitter, not security


@dataclass
class Delivery:
    """What sending one file came to: the last answer and every item's latest outcome."""

    settled: set = field(default_factory=set)
    response: Optional[requests.Response] = None
    error: str = ""
    #: The server asked for a pause longer than a pass waits: try the file again after it.
    wait: Optional[float] = None
    attempts: int = 0
    items: dict = field(default_factory=dict)
    stored: set = field(default_factory=set)
    first: Optional[dict] = None
    #: The server could not read a part of the file: send it whole from now on.
    whole: bool = False

    @property
    def answered(self) -> bool:
        """Say whether the last attempt got a 200 with per-item outcomes."""
        return self.response is not None and self.response.status_code == 200 and not self.error

    @property
    def unsent(self) -> list:
        """Return the items not stored (refused, or still retryable after the last attempt)."""
        return [i for i in self.items.values() if i.get("status") == "error"]

    @property
    def retryable(self) -> list:
        """Return the unsent items the server marked worth sending again."""
        return [i for i in self.unsent if i.get("retryable") is True]

    @property
    def body(self) -> dict:
        """Return the first answer (batch id, unreadable rows) or {}."""
        return self.first or {}

    def counts(self) -> dict:
        """Return {stored, duplicate, error} over every attempt of this pass.

        An item stored by one of our requests counts as stored even when a later whole-file
        resend calls it a duplicate.
        """
        duplicate = sum(1 for k, i in self.items.items()
                        if i.get("status") == "duplicate" and k not in self.stored)
        parse_errors = len(self.body.get("parse_errors") or [])
        return {"stored": len(self.stored), "duplicate": duplicate,
                "error": len(self.unsent) + parse_errors}

    def absorb(self, body: dict) -> None:
        """Merge one 200 answer: newer outcomes replace older ones of the same item."""
        if self.first is None:
            self.first = body
            for issue in body.get("parse_errors") or []:  # resending cannot make them readable
                if isinstance(issue, dict) and isinstance(issue.get("row"), int):
                    self.settled.add(issue["row"])
        for item in body.get("items") or []:
            key = (str(item.get("position") or item.get("index")), item.get("client_id"))
            self.items[key] = item
            if item.get("status") == "stored":
                self.stored.add(key)
        self.settled |= done_rows(self.items.values())

    def rows_to_leave_out(self) -> set:
        """Return the CSV rows an in-pass resend leaves out: all but the retryable ones."""
        keep = {i.get("row") for i in self.retryable}
        return self.settled | {i.get("row") for i in self.unsent if i.get("row") not in keep}


def done_rows(items) -> set:
    """Return rows whose every item is stored or duplicate (never to be sent again)."""
    by_row: dict = {}
    for item in items:
        if isinstance(item.get("row"), int):
            by_row.setdefault(item["row"], []).append(item.get("status"))
    return {row for row, states in by_row.items()
            if all(s in ("stored", "duplicate") for s in states)}


def pause(seconds: float, stopping: Callable[[], bool]) -> bool:
    """Sleep ``seconds`` in small steps; return False as soon as the program is stopping."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stopping():
            return False
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return not stopping()


def deliver(name: str, send: Callable[[set], requests.Response], settled: set, policy: Policy,
            stopping: Callable[[], bool], max_wait: float) -> Delivery:
    """Send a file (``send(rows_left_out)``) until its items are settled or attempts run out.

    ``max_wait`` is the longest pause taken inside the pass; a longer ``Retry-After`` ends
    the pass and is handed to the caller as :attr:`Delivery.wait`.
    """
    d = Delivery(settled=set(settled))
    wait, budget = 0.0, max(1, policy.attempts)
    while d.attempts < budget:
        attempt = d.attempts
        if attempt and not pause(wait, stopping):
            break
        d.attempts += 1
        leave_out = set() if d.whole else (d.rows_to_leave_out() if d.first is not None
                                           else d.settled)
        try:
            resp = send(leave_out)
        except requests.RequestException as exc:
            d.response, d.error = None, f"无法连接服务器：{type(exc).__name__}"
            wait = policy.backoff(attempt)
            LOG.warning("发送 %s 失败：%s；%.1f 秒后重试", name, d.error, wait)
            continue
        d.response, d.error = resp, ""
        if resp.status_code in SOON_STATUSES:
            d.error = f"HTTP {resp.status_code}：{message_of(resp)}"
            asked = retry_after(resp)
            if asked is not None and asked > max_wait:
                d.wait = asked
                break
            # Honour Retry-After (never earlier) but never below the back-off: servers round
            # it down to whole seconds, so "0" means "under a second", and a hot loop of
            # zero pauses would spend the pass in that second (the rate limiter does this).
            wait = policy.backoff(attempt)
            if asked is not None:
                wait = max(wait, asked + random.uniform(0, 0.1 * asked + 0.05))
            LOG.warning("服务器繁忙 %s（%s）；%.1f 秒后重试", name, d.error, wait)
            continue
        if resp.status_code != 200:
            if leave_out and not d.whole:  # a part refused must not fail the whole export
                d.whole, wait, budget = True, 0.0, budget + 1
                LOG.warning("服务器无法读取 %s 的部分行（%s）；改为重发整个文件", name,
                            f"HTTP {resp.status_code}：{message_of(resp)}")
                continue
            break  # the caller decides: refused for good, or tried again in a later pass
        d.absorb(body_of(resp))
        if not d.retryable:
            break
        wait = policy.backoff(attempt)
        LOG.warning("%s 有 %d 条结果因同时写入未保存（可重试）；%.1f 秒后只重发这些结果",
                    name, len(d.retryable), wait)
    return d
