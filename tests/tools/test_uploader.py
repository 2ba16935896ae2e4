"""The interface program against a real server: spool while it is down, catch up, once each.

The program runs as a real subprocess (``tools/qcwx_uploader.py``, as a lab runs it) against
the app served by werkzeug in a thread on its own SQLite file with real commits.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.ingest.models import TestCodeMapping, UploadBatch
from qcwx.iqc import targets
from qcwx.iqc.models import QcResult, QcRun
from qcwx.timeutil import local_today
from tests.browser.conftest import free_port
from tests.factories import build_world
from tests.fixtures.app import make_test_app

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "tools" / "qcwx_uploader.py"
FIXTURES = ROOT / "tests" / "ingest" / "fixtures"


def load_program():
    spec = importlib.util.spec_from_file_location("qcwx_uploader", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def site(tmp_path):
    """A migrated app on its own SQLite file: lab A with GLU limits, a mapping and a key."""
    app, key = make_site(tmp_path)
    yield app, key
    with app.app_context():
        db.engine.dispose()


def make_site(tmp_path, **config):
    """Build the app of :func:`site` with extra configuration; return (app, key)."""
    app = make_test_app(f"sqlite:///{tmp_path / 'server.sqlite3'}", **config)
    with app.app_context():
        world = build_world()
        ts = world.systems["a"]
        for lv in ts.levels:
            targets.set_control_limit(world.users["supervisor"], ts, lv,
                                      mean={1: 5.0, 2: 15.0}[lv.level_index],
                                      sd={1: 0.2, 2: 0.5}[lv.level_index], kind="fixed",
                                      effective_from=date(2026, 1, 1), reason="说明书靶值")
        # the synthetic Mindray message sends GLU with lots 1111 (level L) and 2222 (level H)
        for lot_number in ("1111", "2222"):
            db.session.add(TestCodeMapping(lab_id=world.lab_a.id, source_code="GLU",
                                           qc_lot_number=lot_number, test_system_id=ts.id))
        _, key = apikeys.create_key(world.users["center"], world.lab_a.id, "LIS 接口机")
        db.session.commit()
        db.session.remove()
    return app, key


class Server:
    """The app on a fixed port, started when the test says so."""

    def __init__(self, app, port: int) -> None:
        self.app, self.port, self.server = app, port, None

    def start(self) -> None:
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def server(site):
    srv = Server(site[0], free_port())
    yield srv
    srv.stop()


def start_program(folder: Path, port: int, key: str) -> subprocess.Popen:
    env = dict(os.environ, QCWX_URL=f"http://127.0.0.1:{port}", QCWX_API_KEY=key,
               PYTHONIOENCODING="utf-8")
    return subprocess.Popen(
        [sys.executable, str(PROGRAM), "--folder", str(folder), "--interval", "0.2",
         "--settle", "0.2", "--max-backoff", "1"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)


def stop_program(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stderr.read().decode("utf-8", "replace")


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def journal(folder: Path) -> list[tuple]:
    path = folder / ".qcwx" / "journal.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=10)
    try:
        return conn.execute("SELECT name, state, attempts, last_error FROM files "
                            "ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the program is still creating its journal
        return []
    finally:
        conn.close()


def write_csv(folder: Path, name: str, days: list[date]) -> None:
    lines = ["检测日期,项目,水平,结果"]
    for d in days:
        lines += [f"{d.isoformat()} 08:30,GLU,水平1,5.05", f"{d.isoformat()} 08:30,GLU,水平2,15.2"]
    path = folder / name
    path.write_text("\r\n".join(lines) + "\r\n", encoding="gbk")
    old = time.time() - 5  # finished writing a while ago
    os.utime(path, (old, old))


def stored(app) -> tuple[int, int, int]:
    with app.app_context():
        try:
            return (db.session.scalar(select(func.count()).select_from(QcRun)),
                    db.session.scalar(select(func.count()).select_from(QcResult)),
                    db.session.scalar(select(func.count()).select_from(UploadBatch)))
        finally:
            db.session.remove()


def test_program_spools_while_the_server_is_down_resumes_after_restart_and_sends_once(
        tmp_path, site, server):
    app, key = site
    folder = tmp_path / "lis-export"
    folder.mkdir()
    days = [local_today() - timedelta(days=k) for k in (9, 8, 7)]
    write_csv(folder, "qc-1.csv", days[:2])
    (folder / "mindray.hl7").write_bytes((FIXTURES / "SYNTHETIC_mindray_two_levels.hl7")
                                         .read_bytes())
    (folder / "patient.astm").write_bytes((FIXTURES / "senaite_sysmex_xn550.astm").read_bytes())
    for name in ("mindray.hl7", "patient.astm"):
        old = time.time() - 5
        os.utime(folder / name, (old, old))

    first = start_program(folder, server.port, key)  # server down: connection refused
    try:
        wait_for(lambda: [r for r in journal(folder) if r[2] >= 2], what="retries while down")
        assert not any(p.is_file() for p in folder.glob("*.*") if p.name != "qcwx_uploader.log")
        assert {r[1] for r in journal(folder)} == {"pending"}
        assert "无法连接服务器" in journal(folder)[0][3]
    finally:
        log_first = stop_program(first)  # the PC reboots while the server is still down
    assert "发送失败" in log_first and stored(app) == (0, 0, 0)

    server.start()
    write_csv(folder, "qc-1.csv", days[2:])  # the LIS reuses the name for the next export
    second = start_program(folder, server.port, key)
    try:
        wait_for(lambda: len(journal(folder)) == 4 and all(r[1] == "sent"
                                                          for r in journal(folder)),
                 what="catch-up after restart")
    finally:
        log_second = stop_program(second)
    runs, results, batches = stored(app)
    # 3 CSV days x 2 levels + the Mindray message's 2 levels (one run); patient file: nothing
    assert (runs, results, batches) == (4, 8, 4)
    assert [r[0] for r in journal(folder)] == ["qc-1.csv", "mindray.hl7", "patient.astm",
                                               "qc-1.csv"]  # first in, first out
    sent = sorted(p.name for p in (folder / "sent").iterdir())
    assert len([n for n in sent if not n.endswith(".json")]) == 4
    assert "已发送 mindray.hl7：新增 2 重复 0 错误 0" in log_second
    log_file = (folder / "qcwx_uploader.log").read_text("utf-8")
    assert log_file.count("已发送 ") == 4

    # the same export dropped again: sent, but nothing new is stored
    write_csv(folder, "again.csv", days)
    third = start_program(folder, server.port, key)
    try:
        wait_for(lambda: len(journal(folder)) == 5 and journal(folder)[-1][1] == "sent",
                 what="re-sent file")
    finally:
        log_third = stop_program(third)
    assert "已发送 again.csv：新增 0 重复 6 错误 0" in log_third
    assert stored(app)[:2] == (4, 8)


def test_refused_files_go_to_failed_and_a_revoked_key_keeps_files_spooled(
        tmp_path, site, server):
    app, key = site
    server.start()
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "notes.csv").write_text("这不是质控文件\n只有一列\n", encoding="utf-8")
    old = time.time() - 5
    os.utime(folder / "notes.csv", (old, old))
    proc = start_program(folder, server.port, key)
    try:
        wait_for(lambda: journal(folder) and journal(folder)[0][1] == "failed",
                 what="refusal")
    finally:
        log = stop_program(proc)
    failed = sorted(p.name for p in (folder / "failed").iterdir())
    assert len(failed) == 2 and failed[1].endswith(".error.txt")
    assert "HTTP 400" in (folder / "failed" / failed[1]).read_text("utf-8")
    assert "服务器拒收 notes.csv" in log

    with app.app_context():
        from qcwx.orgs.models import ApiKey, User

        row = db.session.scalars(select(ApiKey)).one()
        apikeys.revoke_key(db.session.scalars(select(User).where(User.role == "admin")).first(),
                           row.id)
        db.session.commit()
        db.session.remove()
    write_csv(folder, "qc.csv", [local_today() - timedelta(days=3)])
    proc = start_program(folder, server.port, key)
    try:
        wait_for(lambda: len(journal(folder)) == 2 and journal(folder)[1][2] >= 2,
                 what="401 retries")
    finally:
        stop_program(proc)
    name, state, _attempts, error = journal(folder)[1]
    assert (name, state) == ("qc.csv", "pending") and "HTTP 401" in error
    assert "已吊销" in error
    assert len(list((folder / ".qcwx" / "spool").iterdir())) == 1
    assert stored(app)[1] == 0


def test_a_second_copy_on_the_same_folder_refuses_to_run(tmp_path, site):
    folder = tmp_path / "f"
    folder.mkdir()
    first = start_program(folder, free_port(), site[1])
    try:
        wait_for(lambda: (folder / ".qcwx" / "journal.sqlite3").exists(), what="first copy")
        second = start_program(folder, free_port(), site[1])
        assert second.wait(timeout=15) != 0
        assert "另一个接口程序" in second.stderr.read().decode("utf-8")
    finally:
        stop_program(first)


# ---------------------------------------------------------------- pure parts
def test_kinds_are_chosen_by_extension_or_by_sniffing_txt():
    program = load_program()
    kind = program.kind_of
    assert kind(Path("a.CSV"), b"x") == ("files", None)
    assert kind(Path("a.xlsx"), b"PK") == ("files", None)
    assert kind(Path("a.astm"), b"") == ("messages", "astm")
    assert kind(Path("a.hl7"), b"") == ("messages", "hl7")
    assert kind(Path("a.txt"), b"\x0bMSH|^~\\&|") == ("messages", "hl7")
    assert kind(Path("a.txt"), b"\xef\xbb\xbfMSH|^~") == ("messages", "hl7")
    assert kind(Path("a.txt"), b"\x05") == ("messages", "astm")
    assert kind(Path("a.txt"), b"\x021H|\\^&") == ("messages", "astm")
    assert kind(Path("a.txt"), b"H|\\^&|||") == ("messages", "astm")
    assert kind(Path("a.txt"), "日期,项目".encode()) == ("files", None)


def test_backoff_doubles_and_is_capped(tmp_path):
    program = load_program()
    cfg = program.Config(folder=tmp_path, url="http://127.0.0.1:9", api_key="k",
                         max_backoff=60)
    up = program.Uploader(cfg)
    waits = [up.backoff(n) for n in range(1, 10)]
    assert 1.8 <= waits[0] <= 2.2 and 3.6 <= waits[1] <= 4.4
    assert all(w <= 66 for w in waits) and waits[-1] >= 54


def test_a_crash_between_spooling_and_journaling_is_recovered(tmp_path):
    program = load_program()
    cfg = program.Config(folder=tmp_path, url="http://127.0.0.1:9", api_key="k")
    program.Uploader(cfg)
    orphan = tmp_path / ".qcwx" / "spool" / "1700000000000000000_qc.csv"
    orphan.write_text("日期,项目,水平,结果\n", encoding="utf-8")
    up = program.Uploader(cfg)
    assert [row[1] for row in up.journal.pending()] == ["qc.csv"]


def test_missing_configuration_is_a_clear_error(tmp_path, capsys, monkeypatch):
    program = load_program()
    for var in ("QCWX_URL", "QCWX_API_KEY", "QCWX_FOLDER"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SystemExit):
        program.parse_args(["--folder", str(tmp_path)])
    assert "--url" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        program.parse_args(["--folder", str(tmp_path / "nope"), "--url", "http://x",
                            "--api-key", "k"])
    assert "文件夹不存在" in capsys.readouterr().err
