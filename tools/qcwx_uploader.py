#!/usr/bin/env python3
"""qcwx interface program: watch a folder on the LIS PC and send QC exports to qcwx.

The LIS (or an analyser's host software) writes QC exports into a folder; this program
sends each finished file to the qcwx lab-interface API and files it under ``sent/``.
Nothing is lost while the server or the network is down:

* a file is first *moved* into the spool (``.qcwx/spool/``, atomic), so the LIS may reuse
  the name at once; a journal (``.qcwx/journal.sqlite3``) records each spooled file and its
  state, and the program resumes from it after a crash or a reboot;
* sending is strictly first-in first-out (QC runs must arrive in time order); a failure
  that may heal (no connection, timeout, HTTP 5xx/429/401/408) is retried with exponential
  back-off, and later files wait behind it. So is an HTTP 200 whose items include
  refusals (``status: error``: *not stored* — an unmapped code, a missing level …): the
  refused items are logged and the file stays spooled until the lab fixes the cause
  (``duplicate`` items are stored already). After ``--item-retries`` attempts such a file
  moves to ``failed/`` with the items in ``<name>.error.txt``;
* a file refused for good (HTTP 400/404/413/415: unreadable, too big) moves to ``failed/``
  with the reason in ``<name>.error.txt``;
* re-sending is always safe: qcwx stores each result once.

CSV/XLSX go to ``POST /api/ingest/v1/files``, ASTM/HL7 to ``POST /api/ingest/v1/messages``
(``.txt`` is sniffed). One line per file with the counts (新增/重复/错误) goes to
``qcwx_uploader.log`` in the folder and to the console. Python 3.8+ standard library plus
``requests``; no qcwx code. See README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Optional

import requests

__version__ = "1.0.0"
LOG = logging.getLogger("qcwx_uploader")
EXTENSIONS = {".csv", ".xlsx", ".astm", ".hl7", ".txt"}
API_PATH = "/api/ingest/v1"
#: Answers that may heal by themselves: retry later, keep the file in the spool.
RETRY_STATUSES = {401, 403, 408, 409, 423, 425, 429, 500, 502, 503, 504}
STATE_DIR = ".qcwx"
SCHEMA = """CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, spool TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, last_error TEXT,
    result TEXT, added_at REAL NOT NULL, done_at REAL)"""


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


class Journal:
    """The spool's memory: one row per file taken in, in intake order."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL").execute(SCHEMA)

    def add(self, name: str, spool: Path, digest: str, size: int) -> None:
        """Record a file moved into the spool (ignored when already known)."""
        self.db.execute("INSERT OR IGNORE INTO files (name, spool, sha256, size, added_at)"
                        " VALUES (?, ?, ?, ?, ?)", (name, spool.name, digest, size, time.time()))

    def known(self) -> set:
        """Return the spool names the journal knows."""
        return {row[0] for row in self.db.execute("SELECT spool FROM files")}

    def pending(self) -> list:
        """Return pending rows (id, name, spool, attempts, next_try) in intake order."""
        return list(self.db.execute("SELECT id, name, spool, attempts, next_try FROM files"
                                    " WHERE state = 'pending' ORDER BY id"))

    def retry(self, row_id: int, attempts: int, next_try: float, error: str) -> None:
        """Remember a failed attempt and when to try again."""
        self.db.execute("UPDATE files SET attempts = ?, next_try = ?, last_error = ? WHERE id = ?",
                        (attempts, next_try, error[:1000], row_id))

    def finish(self, row_id: int, state: str, result: str, error: Optional[str] = None) -> None:
        """Mark a file sent (or refused for good)."""
        self.db.execute("UPDATE files SET state = ?, result = ?, last_error = ?, done_at = ?,"
                        " attempts = attempts + 1 WHERE id = ?",
                        (state, result[:20000], error, time.time(), row_id))


def file_digest(path: Path) -> str:
    """Return the SHA-256 of a file (kept in the journal to trace what was sent)."""
    h = sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def kind_of(path: Path, head: bytes) -> tuple:
    """Return (endpoint, format) for a file: ``files`` for CSV/XLSX, ``messages`` for the rest."""
    ext = path.suffix.lower()
    if ext in (".csv", ".xlsx"):
        return "files", None
    if ext in (".astm", ".hl7"):
        return "messages", ext[1:]
    text = head.lstrip(b"\xef\xbb\xbf\r\n\t ")
    if text.startswith((b"\x0bMSH", b"MSH|")):
        return "messages", "hl7"
    if text[:1] in (b"\x05", b"\x02") or text.startswith(b"H|") or text[1:3] == b"H|":
        return "messages", "astm"
    return "files", None


def unique_target(folder: Path, name: str) -> Path:
    """Return a path in ``folder`` for ``name`` that does not exist yet (timestamp-prefixed)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = folder / f"{stamp}_{name}", 1
    while target.exists():
        target, n = folder / f"{stamp}_{n}_{name}", n + 1
    return target


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
        #: Set by SIGINT/SIGTERM: finish the current file, then leave (never half-way).
        self.stopping = False
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
        """Return seconds to wait after ``attempts`` failures: 2, 4, 8 … capped, ±10 % jitter."""
        base = min(self.cfg.max_backoff, 2.0 ** attempts)
        return base * random.uniform(0.9, 1.1)  # jitter, not security

    def post(self, name: str, path: Path) -> requests.Response:
        """Send one spooled file to the endpoint its kind calls for."""
        endpoint, fmt = kind_of(Path(name), path.read_bytes()[:64])
        url = self.cfg.url.rstrip("/") + f"{API_PATH}/{endpoint}"
        timeout = (10, self.cfg.timeout)
        with path.open("rb") as fh:
            if endpoint == "files":
                return self.http.post(url, files={"file": (name, fh)}, timeout=timeout)
            return self.http.post(url, params={"format": fmt}, data=fh.read(), timeout=timeout,
                                  headers={"Content-Type": "application/octet-stream"})

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
            try:
                resp = self.post(name, path)
            except requests.RequestException as exc:
                self._retry(row_id, name, attempts, f"无法连接服务器：{type(exc).__name__}")
                break
            body = _body(resp) if resp.status_code == 200 else {}
            refused = [i for i in body.get("items") or [] if i.get("status") == "error"]
            if refused and attempts + 1 < self.cfg.item_retries:  # not stored: keep, retry
                self._retry(row_id, name, attempts, _items_text(refused))
                break
            if refused:
                self._refused(row_id, name, path, resp, _items_text(refused))
            elif resp.status_code == 200:
                self._done(row_id, name, path, body)
                sent += 1
            elif resp.status_code in RETRY_STATUSES or resp.status_code >= 500:
                self._retry(row_id, name, attempts, f"HTTP {resp.status_code}：{_message(resp)}")
                break
            else:
                self._refused(row_id, name, path, resp)
        return sent

    def _retry(self, row_id: int, name: str, attempts: int, error: str) -> None:
        wait = self.backoff(attempts + 1)
        self.journal.retry(row_id, attempts + 1, time.time() + wait, error)
        LOG.warning("发送失败 %s（第 %d 次）：%s；%.0f 秒后重试", name, attempts + 1, error, wait)

    def _done(self, row_id: int, name: str, path: Path, body: dict) -> None:
        counts = body.get("counts") or {}
        target = unique_target(self.sent, name)
        os.replace(path, target)
        if body.get("parse_errors"):  # unreadable rows: resending the same bytes cannot help
            report = {"counts": counts, "parse_errors": body["parse_errors"]}
            target.with_name(target.name + ".result.json").write_text(
                json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        self.journal.finish(row_id, "sent", json.dumps(counts, ensure_ascii=False))
        LOG.info("已发送 %s：新增 %s 重复 %s 错误 %s（导入记录 #%s）", name,
                 counts.get("stored", 0), counts.get("duplicate", 0), counts.get("error", 0),
                 body.get("batch_id"))

    def _refused(self, row_id: int, name: str, path: Path, resp: requests.Response,
                 message: str = "") -> None:
        message = message or f"HTTP {resp.status_code}：{_message(resp)}"
        target = unique_target(self.failed, name)
        os.replace(path, target)
        target.with_name(target.name + ".error.txt").write_text(message + "\n", encoding="utf-8")
        self.journal.finish(row_id, "failed", "", message)
        LOG.error("服务器拒收 %s：%s（已移至 failed/）", name, message)

    def run(self) -> None:
        """Take in and send until stopped (or once, with ``--once``)."""
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
        LOG.info("qcwx 接口程序停止；待发文件 %d 个", len(self.journal.pending()))


def _body(resp: requests.Response) -> dict:
    """Return the JSON object of an answer ({} when it is not one)."""
    with contextlib.suppress(ValueError):
        body = resp.json()
        if isinstance(body, dict):
            body["items"] = [i for i in body.get("items") or [] if isinstance(i, dict)]
            return body
    return {}


def _items_text(items: list) -> str:
    """Describe refused items for the log and the journal: where and why, one per item."""
    parts = [f"{i.get('position') or i.get('index')}：{i.get('error')}" for i in items[:20]]
    more = f"；另有 {len(items) - 20} 条" if len(items) > 20 else ""
    return f"{len(items)} 条结果未保存：" + "；".join(parts) + more


def _message(resp: requests.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(resp.json().get("error") or resp.reason)
    return (resp.text or resp.reason or "")[:300]


def parse_args(argv: Optional[list] = None) -> Config:
    """Read the configuration from arguments, falling back to QCWX_* environment variables."""
    env = os.environ
    parser = argparse.ArgumentParser(description="qcwx 质控数据接口程序（监视文件夹并上传）")
    for flag, kind, default, text in (
        ("--folder", str, env.get("QCWX_FOLDER"), "LIS 导出质控文件的文件夹（或 QCWX_FOLDER）"),
        ("--url", str, env.get("QCWX_URL"), "平台地址，如 https://qc.example.cn（或 QCWX_URL）"),
        ("--api-key", str, env.get("QCWX_API_KEY"),
         "实验室接口密钥 qcwx_…（或 QCWX_API_KEY；建议用环境变量）"),
        ("--interval", float, float(env.get("QCWX_INTERVAL", 10)), "扫描间隔秒数（默认 10）"),
        ("--settle", float, 2.0, "文件最后修改后等待多少秒才发送（默认 2，避免读到未写完的文件）"),
        ("--max-backoff", float, 300.0, "重试间隔上限秒数（默认 300）"),
        ("--timeout", float, 120.0, "单次上传超时秒数"),
        ("--item-retries", int, 50, "有结果未保存时重发的次数上限，之后移至 failed/（默认 50）"),
    ):
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--once", action="store_true", help="处理一轮后退出（供计划任务调用）")
    parser.add_argument("--verbose", action="store_true", help="输出调试信息")
    args = parser.parse_args(argv)
    missing = [n for n, v in (("--folder", args.folder), ("--url", args.url),
                              ("--api-key", args.api_key)) if not v]
    if missing:
        parser.error(f"缺少参数：{'、'.join(missing)}")
    if not args.url.startswith(("http://", "https://")):
        parser.error("--url 必须以 http:// 或 https:// 开头")
    folder = Path(args.folder).expanduser().resolve()
    if not folder.is_dir():
        parser.error(f"文件夹不存在：{folder}")
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return Config(folder, args.url, args.api_key.strip(), args.interval, args.settle,
                  args.max_backoff, args.timeout, args.once, max(1, args.item_retries))


def setup_logging(folder: Path) -> None:
    """Log to ``qcwx_uploader.log`` in the folder and to the console, one line per event."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    root = logging.getLogger()
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    for handler in (logging.FileHandler(folder / "qcwx_uploader.log", encoding="utf-8"),
                    logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        root.addHandler(handler)


@contextlib.contextmanager
def single_instance(state: Path):
    """Refuse a second copy on the same folder (two senders would break first-in first-out)."""
    state.mkdir(parents=True, exist_ok=True)
    fh = open(state / "lock", "a+")  # held for the process lifetime
    try:
        if os.name == "nt":
            import msvcrt
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise SystemExit(f"另一个接口程序正在处理 {state.parent}，本进程退出") from None
    try:
        yield
    finally:
        fh.close()


def main(argv: Optional[list] = None) -> int:
    """Run the program: parse the configuration, lock the folder, loop."""
    cfg = parse_args(argv)
    setup_logging(cfg.folder)
    with single_instance(cfg.folder / STATE_DIR):
        uploader = Uploader(cfg)

        def stop(_signum, _frame):
            uploader.stopping = True

        signal.signal(signal.SIGINT, stop)
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, stop)
        uploader.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
