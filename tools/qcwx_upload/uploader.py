"""Take finished exports into the spool and send them, first in, first out.

Why first-in first-out with a journal: QC runs must be judged in time order, and a file
must survive a crash or a reboot between being taken from the LIS folder and being
answered. Each pending file gets a bounded pass (:func:`delivery.deliver`); what is still
unsent afterwards stays spooled with its settled rows remembered, and later files wait.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import requests

from . import __version__
from .delivery import Delivery, Policy, deliver
from .files import EXTENSIONS, file_digest, row_subsettable, unique_target, without_rows
from .journal import Journal
from .transport import RETRY_STATUSES, items_text, message_of, post

LOG = logging.getLogger("qcwx_uploader")
STATE_DIR = ".qcwx"


@dataclass
class Config:
    """Where to watch, where to send, how to pace retries."""

    folder: Path
    url: str
    api_key: str
    interval: float = 10.0
    settle: float = 2.0
    max_backoff: float = 300.0
    timeout: float = 120.0
    once: bool = False
    item_retries: int = 50
    #: Requests per file and pass: the first send plus resends of retryable items and of
    #: busy or unreachable answers.
    attempts: int = 5


class Uploader:
    """Take finished files into the spool and send them, first in, first out."""

    def __init__(self, cfg: Config, session: Optional[requests.Session] = None) -> None:
        self.cfg = cfg
        self.state = cfg.folder / STATE_DIR
        self.spool = self.state / "spool"
        self.sent = cfg.folder / "sent"
        self.failed = cfg.folder / "failed"
        for d in (self.spool, self.sent, self.failed):
            d.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.state / "journal.sqlite3")
        self.http = session or requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {cfg.api_key}",
                                  "User-Agent": f"qcwx-uploader/{__version__}"})
        self.policy = Policy(attempts=max(1, cfg.attempts), cap=min(30.0, cfg.max_backoff))
        #: Set by SIGINT/SIGTERM: finish the current file, then leave (never half-way).
        self.stopping = False
        #: Files moved to failed/ by this process: reported as unsent at exit.
        self.failed_now: list = []
        self.recover()

    def recover(self) -> None:
        """Journal spool files a crash left unrecorded (moved, but not yet written down)."""
        known = self.journal.known()
        for path in sorted(self.spool.iterdir()):
            if path.is_file() and path.name not in known:
                name = path.name.split("_", 1)[1] if "_" in path.name else path.name
                self.journal.add(name, path, file_digest(path), path.stat().st_size)
                LOG.info("恢复未登记的待发文件 %s", name)

    def ready_files(self) -> list:
        """Return exports that are complete: known extension, untouched for ``settle`` s."""
        now = time.time()
        out = []
        for path in self.cfg.folder.iterdir():
            if (not path.is_file() or path.name.startswith((".", "~$"))
                    or path.suffix.lower() not in EXTENSIONS):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            if now - stat.st_mtime >= self.cfg.settle and stat.st_size > 0:
                out.append((stat.st_mtime, path.name, path))
        return [p for _, _, p in sorted(out)]

    def take_in(self) -> int:
        """Move finished files into the spool and journal them; return how many."""
        taken = 0
        for path in self.ready_files():
            target = self.spool / f"{time.time_ns()}_{path.name}"
            try:
                os.replace(path, target)  # atomic on one disk: the LIS may reuse the name now
            except OSError as exc:  # still open by the LIS on Windows: next round
                LOG.debug("cannot take %s yet: %s", path.name, exc)
                continue
            self.journal.add(path.name, target, file_digest(target), target.stat().st_size)
            taken += 1
            LOG.info("已接收 %s，等待发送", path.name)
        return taken

    # ------------------------------------------------------------ sending
    def backoff(self, attempts: int) -> float:
        """Return seconds before a file's next pass after ``attempts`` failed passes.

        2, 4, 8 … capped by ``--max-backoff``, ±10 % jitter: a long outage costs few requests.
        """
        base = min(self.cfg.max_backoff, 2.0 ** attempts)
        return base * random.uniform(0.9, 1.1)  # jitter, not security

    def send_due(self) -> int:
        """Send pending files in intake order; stop at the first that must wait. Return sent."""
        sent = 0
        for row_id, name, spool_name, attempts, next_try in self.journal.pending():
            if self.stopping or next_try > time.time():
                break  # FIFO: later files wait behind the one being retried
            path = self.spool / spool_name
            if not path.exists():
                self.journal.finish(row_id, "failed", "", "spool file missing")
                LOG.error("待发文件 %s 已不在暂存目录，跳过", name)
                continue
            d = self.deliver(row_id, name, path)
            resp = d.response
            if d.answered:
                unsent = d.unsent
                if not unsent:
                    self._done(row_id, name, path, d)
                    sent += 1
                    continue
                if attempts + 1 < self.cfg.item_retries:  # not stored: keep, retry later
                    self._retry(row_id, name, attempts, items_text(unsent))
                    break
                self._refused(row_id, name, path, items_text(unsent))
            elif resp is None or resp.status_code in RETRY_STATUSES or resp.status_code >= 500:
                error = d.error or f"HTTP {resp.status_code}：{message_of(resp)}"
                self._retry(row_id, name, attempts, error, d.wait)
                break
            else:
                self._refused(row_id, name, path, f"HTTP {resp.status_code}：{message_of(resp)}")
        return sent

    def deliver(self, row_id: int, name: str, path: Path) -> Delivery:
        """Run one bounded pass for a file and remember the rows it settled.

        Pauses inside the pass are at most the policy's cap (30 s): a longer ``Retry-After``
        defers the file instead, so intake of new exports never stalls for long.
        """
        data = path.read_bytes()
        partial = row_subsettable(name, data)

        def send(leave_out: set) -> requests.Response:
            payload = without_rows(data, leave_out) if partial else data
            return post(self.http, self.cfg.url, name, payload, self.cfg.timeout)

        d = deliver(name, send, self.journal.settled(row_id) if partial else set(),
                    self.policy, lambda: self.stopping, max_wait=self.policy.cap)
        if partial and d.settled:
            self.journal.settle(row_id, d.settled)
        return d

    def _retry(self, row_id: int, name: str, attempts: int, error: str,
               wait: Optional[float] = None) -> None:
        wait = self.backoff(attempts + 1) if wait is None else wait
        self.journal.retry(row_id, attempts + 1, time.time() + wait, error)
        LOG.warning("发送失败 %s（第 %d 次）：%s；%.0f 秒后重试", name, attempts + 1, error, wait)

    def _done(self, row_id: int, name: str, path: Path, d: Delivery) -> None:
        counts, body = d.counts(), d.body
        target = unique_target(self.sent, name)
        os.replace(path, target)
        if body.get("parse_errors"):  # unreadable rows: resending the same bytes cannot help
            report = {"counts": counts, "parse_errors": body["parse_errors"]}
            target.with_name(target.name + ".result.json").write_text(
                json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        self.journal.finish(row_id, "sent", json.dumps(counts, ensure_ascii=False))
        LOG.info("已发送 %s：新增 %s 重复 %s 错误 %s（导入记录 #%s）", name,
                 counts["stored"], counts["duplicate"], counts["error"], body.get("batch_id"))

    def _refused(self, row_id: int, name: str, path: Path, message: str) -> None:
        target = unique_target(self.failed, name)
        os.replace(path, target)
        target.with_name(target.name + ".error.txt").write_text(message + "\n", encoding="utf-8")
        self.journal.finish(row_id, "failed", "", message)
        self.failed_now.append((name, message))
        LOG.error("服务器拒收 %s：%s（已移至 failed/）", name, message)

    def unsent(self) -> list:
        """Return (file, why) for everything this process leaves unsent.

        Still spooled, or moved to failed/ by this process (earlier runs reported theirs).
        """
        return self.journal.pending_errors() + self.failed_now

    def run(self) -> int:
        """Take in and send until stopped (or once); report what stayed unsent.

        Returns the number of files left unsent (the exit code is non-zero when any is).
        """
        cfg = self.cfg
        LOG.info("qcwx 接口程序 %s 启动：监视 %s，发送到 %s", __version__, cfg.folder, cfg.url)
        while not self.stopping:
            self.take_in()
            self.send_due()
            if cfg.once:
                break
            deadline = time.monotonic() + cfg.interval
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, cfg.interval))
        unsent = self.unsent()
        for name, why in unsent:
            LOG.error("未发送 %s：%s", name, why or "尚未发送")
        LOG.info("qcwx 接口程序停止；待发文件 %d 个，本次移至 failed/ %d 个",
                 len(self.journal.pending()), len(self.failed_now))
        return len(unsent)
