"""An HTTP 200 with refused items keeps the file: results that were not stored are not lost.

The uploader runs in-process (``Uploader.send_due``) against the real app served by werkzeug,
so the answer is the ingest API's own JSON (``ImportReport.to_dict``: per-item status).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

from sqlalchemy import select

from qcwx.extensions import db
from qcwx.ingest.models import TestCodeMapping
from qcwx.orgs.models import Lab
from qcwx.timeutil import local_today
from tests.tools import test_uploader as base
from tests.tools.test_uploader import journal, load_program, stored, write_csv

site, server = base.site, base.server  # the same fixtures: a served app and a lab key


def _csv_with_an_unmapped_code(folder, name: str) -> None:
    day = (local_today() - timedelta(days=6)).isoformat()
    path = folder / name
    path.write_text("检测日期,项目,水平,结果\r\n"
                    f"{day} 08:30,GLU,水平1,5.05\r\n"
                    f"{day} 08:30,GLU-X,水平2,15.2\r\n", encoding="utf-8")
    old = time.time() - 5
    os.utime(path, (old, old))


def test_refused_items_keep_the_file_for_retry_until_they_are_stored(tmp_path, site, server,
                                                                     caplog):
    app, key = site
    server.start()
    program = load_program()
    folder = tmp_path / "export"
    folder.mkdir()
    _csv_with_an_unmapped_code(folder, "qc.csv")
    cfg = program.Config(folder=folder, url=f"http://127.0.0.1:{server.port}", api_key=key,
                         settle=0.1, max_backoff=1)
    up = program.Uploader(cfg)
    up.take_in()
    with caplog.at_level(logging.WARNING, logger="qcwx_uploader"):
        assert up.send_due() == 0
    [(name, state, attempts, error)] = journal(folder)
    assert (name, state, attempts) == ("qc.csv", "pending", 1)
    assert "1 条结果未保存" in error and "GLU-X" in error and "第 3 行" in error
    assert "未保存" in caplog.text and "第 3 行" in caplog.text
    assert len(list((folder / ".qcwx" / "spool").iterdir())) == 1  # kept, not filed as sent
    assert not (folder / "sent").exists() or not list((folder / "sent").iterdir())
    assert stored(app)[1] == 1  # the good row is stored already

    with app.app_context():  # the lab fixes the cause: map the code
        lab = db.session.scalars(select(Lab).order_by(Lab.id)).first()
        ts_id = db.session.scalar(select(TestCodeMapping.test_system_id))
        db.session.add(TestCodeMapping(lab_id=lab.id, source_code="GLU-X", qc_lot_number="",
                                       test_system_id=ts_id))
        db.session.commit()
        db.session.remove()
    up.journal.db.execute("UPDATE files SET next_try = 0")
    assert up.send_due() == 1
    assert journal(folder)[0][1] == "sent"
    assert stored(app)[1] == 2  # the refused row is stored on the retry; the first is a duplicate


def test_an_item_that_never_heals_goes_to_failed_after_the_retry_limit(tmp_path, site, server):
    app, key = site
    server.start()
    program = load_program()
    folder = tmp_path / "export"
    folder.mkdir()
    _csv_with_an_unmapped_code(folder, "bad.csv")
    write_csv(folder, "next.csv", [local_today() - timedelta(days=5)])
    cfg = program.Config(folder=folder, url=f"http://127.0.0.1:{server.port}", api_key=key,
                         settle=0.1, max_backoff=1, item_retries=2)
    up = program.Uploader(cfg)
    up.take_in()
    assert up.send_due() == 0
    assert [r[1] for r in journal(folder)] == ["pending", "pending"]  # next.csv waits (FIFO)
    up.journal.db.execute("UPDATE files SET next_try = 0")
    assert up.send_due() == 1
    assert [r[1] for r in journal(folder)] == ["failed", "sent"]
    [report] = (folder / "failed").glob("*.error.txt")
    assert "GLU-X" in report.read_text("utf-8")
