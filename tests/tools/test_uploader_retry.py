"""Retrying what the server did not store: retryable items alone, busy answers, lost links.

The uploader runs against the real app served by werkzeug (as a subprocess with ``--once``
where the exit code and the final report matter, in-process otherwise). Two server-side
seams make the faults happen on cue, both inside the app's own code path: the ingest
service the API calls (to count requests, keep their bytes and answer the app's own
``Busy`` — 503 with ``Retry-After``), and the per-test-system store of the IQC service
(an ``IntegrityError`` there is what a concurrent writer causes; the service answers the
raced run's items ``retryable``).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from qcwx.errors import Busy, UserError
from qcwx.extensions import db
from qcwx.ingest import services as ingest_services
from qcwx.ingest.models import TestCodeMapping
from qcwx.iqc import services as iqc_services
from qcwx.iqc.models import QcResult, Submission
from qcwx.orgs.models import Lab
from qcwx.timeutil import local_today
from tests.browser.conftest import free_port
from tests.tools import test_uploader as base
from tests.tools.test_uploader import (
    FIXTURES,
    PROGRAM,
    Server,
    journal,
    load_program,
    make_site,
    stored,
    write_csv,
)

site, server = base.site, base.server  # a served app with lab A's GLU and a key


class Recorder:
    """Counts the API's calls into the ingest service, keeps their bytes, answers busy."""

    def __init__(self, monkeypatch, busy_first: int = 0, retry_after: int = 1,
                 unreadable: tuple = ()) -> None:
        self.calls: list[tuple[float, bytes]] = []
        real = ingest_services.commit_file

        def recorded(actor, lab, data, **kwargs):
            self.calls.append((time.monotonic(), bytes(data)))
            if len(self.calls) <= busy_first:
                raise Busy(retry_after=retry_after)  # the app's own 503 + Retry-After
            if len(self.calls) in unreadable:  # as the parser answers a file it cannot read
                raise UserError("未找到表头行", field="file")
            return real(actor, lab, data, **kwargs)

        monkeypatch.setattr(ingest_services, "commit_file", recorded)

    def text(self, n: int, encoding: str = "gbk") -> str:
        return self.calls[n][1].decode(encoding)


def race_first_call(monkeypatch, recorder: Recorder, day=None) -> None:
    """Make the first request's store of runs dated ``day`` (any, if None) lose a race."""
    real = iqc_services._store_system

    def racing(actor, channel, items, *args, **kwargs):  # other arguments passed through
        if len(recorder.calls) == 1 and any(day is None or p.input.run_date == day
                                            for p in items):
            raise IntegrityError("INSERT INTO qc_run …", {}, Exception("UNIQUE constraint"))
        return real(actor, channel, items, *args, **kwargs)

    monkeypatch.setattr(iqc_services, "_store_system", racing)


def run_once(folder, port: int, key: str, *extra: str) -> tuple[int, str]:
    env = dict(os.environ, QCWX_URL=f"http://127.0.0.1:{port}", QCWX_API_KEY=key,
               PYTHONIOENCODING="utf-8")
    proc = subprocess.run([sys.executable, str(PROGRAM), "--folder", str(folder), "--once",
                           "--settle", "0.1", "--max-backoff", "5", *extra],
                          env=env, capture_output=True, timeout=120)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def assert_nothing_doubled(app) -> None:
    """One current result per (run, level), one submission per client id."""
    with app.app_context():
        try:
            slots = db.session.execute(
                select(QcResult.run_id, QcResult.qc_level_id, func.count())
                .where(QcResult.is_current).group_by(QcResult.run_id, QcResult.qc_level_id)
            ).all()
            assert slots and all(n == 1 for *_, n in slots)
            ids = db.session.scalars(select(Submission.client_id)).all()
            assert len(ids) == len(set(ids))
        finally:
            db.session.remove()


def _lines(folder, name: str, rows: list[str]) -> None:
    path = folder / name
    path.write_text("\r\n".join(["检测日期,项目,水平,结果", *rows]) + "\r\n", encoding="gbk")
    old = time.time() - 5
    os.utime(path, (old, old))


# ---------------------------------------------------------------- retryable items
def test_retryable_items_are_resent_alone_and_stored_exactly_once(tmp_path, site, server,
                                                                   monkeypatch):
    app, key = site
    days = [local_today() - timedelta(days=k) for k in (9, 8, 7)]
    rec = Recorder(monkeypatch)
    race_first_call(monkeypatch, rec, days[1])
    server.start()
    folder = tmp_path / "export"
    folder.mkdir()
    write_csv(folder, "qc.csv", days)

    code, log = run_once(folder, server.port, key)

    assert code == 0, log
    assert len(rec.calls) == 2
    first, second = rec.text(0), rec.text(1)
    assert all(d.isoformat() in first for d in days)
    # only the raced run's two rows go again, at their own row numbers (header kept)
    assert second.splitlines()[0] == first.splitlines()[0]
    assert [n for n, line in enumerate(second.splitlines(), 1) if line] == [1, 4, 5]
    assert days[0].isoformat() not in second and days[2].isoformat() not in second
    assert "因同时写入未保存（可重试）" in log
    assert "已发送 qc.csv：新增 6 重复 0 错误 0" in log
    assert [r[1] for r in journal(folder)] == ["sent"]
    assert stored(app) == (3, 6, 2)  # two upload batches, every result once
    assert_nothing_doubled(app)


def test_refused_items_are_not_resent_within_the_pass_and_the_exit_code_says_unsent(
        tmp_path, site, server, monkeypatch):
    app, key = site
    d0, d1, d2 = (local_today() - timedelta(days=k) for k in (6, 5, 4))
    rec = Recorder(monkeypatch)
    race_first_call(monkeypatch, rec, d1)
    server.start()
    folder = tmp_path / "export"
    folder.mkdir()
    _lines(folder, "mix.csv", [f"{d0} 08:30,GLU,水平1,5.05", f"{d0} 08:30,GLU,水平2,15.2",
                               f"{d1} 08:30,GLU,水平1,5.10", f"{d1} 08:30,GLU,水平2,15.1",
                               f"{d2} 08:30,GLU-X,水平1,5.00"])

    code, log = run_once(folder, server.port, key)

    assert code == 3, log
    assert len(rec.calls) == 2
    second = rec.text(1)
    assert [n for n, line in enumerate(second.splitlines(), 1) if line] == [1, 4, 5]
    assert "GLU-X" not in second  # refused for a reason a resend cannot fix
    report = [line for line in log.splitlines() if "未发送 mix.csv" in line]
    assert len(report) == 1 and "1 条结果未保存" in report[0] and "第 6 行" in report[0]
    assert "可重试" not in report[0]
    [(name, state, attempts, _)] = journal(folder)
    assert (name, state, attempts) == ("mix.csv", "pending", 1)
    assert stored(app)[:2] == (2, 4)

    with app.app_context():  # the lab maps the code; the next pass sends row 6 alone
        lab = db.session.scalars(select(Lab).order_by(Lab.id)).first()
        ts_id = db.session.scalar(select(TestCodeMapping.test_system_id))
        db.session.add(TestCodeMapping(lab_id=lab.id, source_code="GLU-X", qc_lot_number="",
                                       test_system_id=ts_id))
        db.session.commit()
        db.session.remove()
    conn = sqlite3.connect(folder / ".qcwx" / "journal.sqlite3")
    conn.execute("UPDATE files SET next_try = 0")
    conn.commit()
    conn.close()

    code, log = run_once(folder, server.port, key)

    assert code == 0, log
    assert len(rec.calls) == 3
    assert [n for n, line in enumerate(rec.text(2).splitlines(), 1) if line] == [1, 6]
    assert "已发送 mix.csv：新增 1 重复 0 错误 0" in log
    assert stored(app)[:2] == (3, 5)
    assert_nothing_doubled(app)


def test_a_part_the_server_cannot_read_is_sent_whole_instead_of_failing_the_file(
        tmp_path, site, server, monkeypatch):
    app, key = site
    days = [local_today() - timedelta(days=k) for k in (9, 8)]
    rec = Recorder(monkeypatch, unreadable=(2,))
    race_first_call(monkeypatch, rec, days[1])
    server.start()
    folder = tmp_path / "export"
    folder.mkdir()
    write_csv(folder, "qc.csv", days)

    code, log = run_once(folder, server.port, key, "--attempts", "2")

    assert code == 0, log
    assert len(rec.calls) == 3  # the part, refused, does not use up the pass
    assert rec.calls[2][1] == rec.calls[0][1] != rec.calls[1][1]
    assert "改为重发整个文件" in log and "已发送 qc.csv：新增 4 重复 0 错误 0" in log
    assert not (folder / "failed").exists() or not list((folder / "failed").iterdir())
    assert stored(app) == (2, 4, 2)
    assert_nothing_doubled(app)


def test_a_message_with_retryable_items_is_resent_whole_and_stored_once(
        tmp_path, site, server, monkeypatch):
    app, key = site
    rec = Recorder(monkeypatch)
    race_first_call(monkeypatch, rec)
    server.start()
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "mindray.hl7").write_bytes((FIXTURES / "SYNTHETIC_mindray_two_levels.hl7")
                                         .read_bytes())
    old = time.time() - 5
    os.utime(folder / "mindray.hl7", (old, old))

    code, log = run_once(folder, server.port, key)

    assert code == 0, log
    assert len(rec.calls) == 2 and rec.calls[0][1] == rec.calls[1][1]
    assert "已发送 mindray.hl7：新增 2 重复 0 错误 0" in log
    assert stored(app) == (1, 2, 2)
    assert_nothing_doubled(app)


def test_items_still_retryable_after_the_last_attempt_keep_the_file(tmp_path, site, server,
                                                                    monkeypatch):
    app, key = site
    rec = Recorder(monkeypatch)

    def always_racing(*args, **kwargs):
        raise IntegrityError("INSERT INTO qc_run …", {}, Exception("UNIQUE constraint"))

    monkeypatch.setattr(iqc_services, "_store_system", always_racing)
    server.start()
    folder = tmp_path / "export"
    folder.mkdir()
    write_csv(folder, "qc.csv", [local_today() - timedelta(days=3)])

    code, log = run_once(folder, server.port, key, "--attempts", "3")

    assert code == 3, log
    assert len(rec.calls) == 3  # bounded: the first send and two resends
    assert "未发送 qc.csv：2 条结果未保存" in log and "（可重试）" in log
    assert [r[1] for r in journal(folder)] == ["pending"]
    assert stored(app)[1] == 0


# ---------------------------------------------------------------- busy and unreachable
def test_a_503_with_retry_after_is_honoured_then_the_file_is_stored_once(
        tmp_path, site, server, monkeypatch):
    app, key = site
    rec = Recorder(monkeypatch, busy_first=1, retry_after=1)
    server.start()
    folder = tmp_path / "export"
    folder.mkdir()
    write_csv(folder, "qc.csv", [local_today() - timedelta(days=k) for k in (4, 3)])

    code, log = run_once(folder, server.port, key)

    assert code == 0, log
    assert len(rec.calls) == 2 and rec.calls[0][1] == rec.calls[1][1]
    assert rec.calls[1][0] - rec.calls[0][0] >= 1.0  # not before Retry-After
    assert "服务器繁忙" in log and "HTTP 503" in log
    assert "已发送 qc.csv：新增 4 重复 0 错误 0" in log
    assert stored(app) == (2, 4, 1)
    assert_nothing_doubled(app)


def test_a_retry_after_longer_than_the_pass_waits_defers_the_file(tmp_path, site, server,
                                                                  monkeypatch):
    app, key = site
    rec = Recorder(monkeypatch, busy_first=99, retry_after=40)
    server.start()
    program = load_program()
    folder = tmp_path / "export"
    folder.mkdir()
    write_csv(folder, "qc.csv", [local_today() - timedelta(days=2)])
    cfg = program.Config(folder=folder, url=f"http://127.0.0.1:{server.port}", api_key=key,
                         settle=0.1, max_backoff=5, once=True)
    up = program.Uploader(cfg)
    before = time.time()
    assert up.run() == 1  # one file left unsent
    assert len(rec.calls) == 1
    next_try = up.journal.db.execute("SELECT next_try FROM files").fetchone()[0]
    assert next_try >= before + 40
    [(name, state, attempts, error)] = journal(folder)
    assert (state, attempts) == ("pending", 1) and "HTTP 503" in error
    assert stored(app) == (0, 0, 0)


def test_retry_after_zero_still_backs_off(tmp_path, site, server, monkeypatch):
    """Regression: "Retry-After: 0" (a server rounding down) made zero pauses in a row."""
    app, key = site
    rec = Recorder(monkeypatch, busy_first=2, retry_after=0)
    server.start()
    folder = tmp_path / "export"
    folder.mkdir()
    write_csv(folder, "qc.csv", [local_today() - timedelta(days=4)])

    code, log = run_once(folder, server.port, key)

    assert code == 0, log
    assert len(rec.calls) == 3
    waits = [float(m) for m in re.findall(r"HTTP 503：[^；]*；([0-9.]+) 秒后重试", log)]
    assert len(waits) == 2 and min(waits) >= 0.2
    assert rec.calls[1][0] - rec.calls[0][0] >= 0.25 and rec.calls[2][0] - rec.calls[1][0] >= 0.5
    assert stored(app) == (1, 2, 1)


def test_a_429_from_the_rate_limiter_is_waited_out(tmp_path):
    """Regression: the limiter rounds Retry-After down, to 0 in the window's last second;
    waiting exactly that spent every attempt of the pass within one second."""
    app, key = make_site(tmp_path, RATELIMIT_ENABLED=True, RATELIMIT_HEADERS_ENABLED=True,
                         INGEST_API_RATELIMIT="1 per 4 second")
    srv = Server(app, free_port())
    srv.start()
    try:
        folder = tmp_path / "export"
        folder.mkdir()
        write_csv(folder, "a.csv", [local_today() - timedelta(days=6)])
        write_csv(folder, "b.csv", [local_today() - timedelta(days=5)])
        code, log = run_once(folder, srv.port, key, "--max-backoff", "10")
    finally:
        srv.stop()
        with app.app_context():
            db.engine.dispose()
    assert code == 0, log
    waits = [float(m) for m in re.findall(r"HTTP 429：[^；]*；([0-9.]+) 秒后重试", log)]
    assert waits and min(waits) >= 0.2  # never a hot loop on "Retry-After: 0"
    assert [r[1] for r in journal(folder)] == ["sent", "sent"]
    assert stored(app) == (2, 4, 2)


def test_a_connection_refused_is_retried_within_the_pass(tmp_path, site, server, caplog):
    app, key = site
    program = load_program()
    folder = tmp_path / "export"
    folder.mkdir()
    write_csv(folder, "qc.csv", [local_today() - timedelta(days=k) for k in (3, 2)])
    cfg = program.Config(folder=folder, url=f"http://127.0.0.1:{server.port}", api_key=key,
                         settle=0.1, max_backoff=1, attempts=8)
    up = program.Uploader(cfg)
    up.take_in()
    threading.Timer(0.3, server.start).start()  # the server comes up during the pass
    with caplog.at_level(logging.WARNING, logger="qcwx_uploader"):
        assert up.send_due() == 1
    assert "无法连接服务器" in caplog.text
    assert [r[1:3] for r in journal(folder)] == [("sent", 1)]
    assert stored(app) == (2, 4, 1)
