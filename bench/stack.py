"""Start and stop the real processes of the e2e tests and the load/fault benches, by pid.

Why one module: the e2e tests (``tests/e2e``) and the scripts in ``bench/`` (load, faults)
run the same stack — the app (werkzeug or gunicorn), a Celery worker, private Redis and
MariaDB servers — and a second copy of this start/stop code would drift from the first.
Everything started is a child process in its own session, logged to a file, and stopped by
its pid (SIGTERM, then SIGKILL): the shared services on 3306/6379 are never touched, so
the fault scripts stop and start only their *private* ``redis-server`` and ``mariadbd``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import redis as redis_lib
import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CELERY = str(BIN / "celery")
GUNICORN = str(BIN / "gunicorn")
START_TIMEOUT = 60


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Proc:
    """A child process with its log file; ``stop`` ends it by pid (SIGTERM, then SIGKILL)."""

    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL the process (a crash: no shutdown code runs) and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def kill_group(self) -> None:
        """SIGKILL the process and its children (its own session: pgid = pid), and reap it.

        For throw-away stacks only: a graceful stop of gunicorn, the worker and mariadbd took
        ~13 s on two cores, for data that is deleted anyway.
        """
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(10)


def _alive(proc: Proc) -> bool:
    if proc.popen.poll() is not None:
        raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                             f"{proc.text()[-3000:]}")
    return True


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds ``pid`` has used (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """Return ``pid`` and its children (a gunicorn master and its workers)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return [pid, *kids]


def pids_named(name: str) -> list[int]:
    """Return the pids whose command name is ``name`` (``mariadbd``)."""
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


def pings(client: redis_lib.Redis) -> bool:
    """Return whether the Redis server behind ``client`` answers."""
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


def answers(url: str) -> bool:
    """Return whether ``url`` answers 2xx within a second."""
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@dataclass
class Stack:
    """Start and stop the child processes of one test or bench run; all are stopped."""

    tmp: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env or self.env or None, stdout=handle,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        handle.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def redis(self, port: int) -> Proc:
        """Start a private, non-persistent redis-server on ``port`` and wait until it answers."""
        proc = self.spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no"])
        client = redis_lib.Redis(port=port, socket_connect_timeout=1)
        wait_for(lambda: _alive(proc) and pings(client), 20, f"redis-server on port {port}")
        return proc

    def worker(self, pool: str = "solo", wait: bool = True) -> Proc:
        """Start a Celery worker (``-P solo`` by default) and wait for its ``ready`` line.

        ``wait=False`` returns at once (start the web app meanwhile, then
        :meth:`wait_worker`): on two cores each takes ~15 s to import the app.
        """
        proc = self.spawn("worker", [CELERY, "-A", "workers.celery_app", "worker", "-P", pool,
                                     "-l", "info", "-n", f"e2e-{os.getpid()}-{time.time_ns()}@%h",
                                     "--without-gossip", "--without-mingle"])
        return self.wait_worker(proc) if wait else proc

    @staticmethod
    def wait_worker(proc: Proc) -> Proc:
        wait_for(lambda: _alive(proc) and " ready." in proc.text(), START_TIMEOUT,
                 "the Celery worker to be ready")
        return proc

    def web(self) -> tuple[Proc, str]:
        """Start the app (``tests.e2e.live_server``, threaded werkzeug); return it and its URL."""
        port = free_port()
        proc = self.spawn("web", [sys.executable, "-m", "tests.e2e.live_server", str(port)])
        return proc, self._wait_web(proc, port)

    def gunicorn(self, workers: int = 4) -> tuple[Proc, str]:
        """Start ``gunicorn wsgi:app`` with ``workers`` sync workers; return it and its URL."""
        port = free_port()
        proc = self.spawn("gunicorn", [GUNICORN, "-w", str(workers), "-b", f"127.0.0.1:{port}",
                                       "--backlog", "2048", "--timeout", "60", "wsgi:app"])
        return proc, self._wait_web(proc, port)

    def _wait_web(self, proc: Proc, port: int) -> str:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _alive(proc) and answers(f"{url}/api/mp/v1/openapi.json"),
                 START_TIMEOUT, f"the web app ({proc.name})")
        return url

    def stop_all(self, show: bool = True, fast: bool = False) -> None:
        for proc in reversed(self.procs):
            proc.kill_group() if fast else proc.stop()
        if show:
            for proc in self.procs:  # captured output: pytest shows it when the test failed
                print(f"----- {proc.name} (exit {proc.popen.returncode}) {proc.log.name}\n"
                      f"{proc.text()[-4000:]}")


class PrivateMariaDB:
    """A throw-away ``mariadbd`` in ``<tmp>/mariadb`` on its own port (never the shared one).

    ``--no-defaults`` keeps the machine's ``/etc/mysql`` out of it, root has no password, and
    ``stop()``/``start()`` restart the same data directory — the MariaDB-restart fault.
    """

    def __init__(self, stack: Stack, port: int | None = None):
        self.stack = stack
        self.port = port or free_port()
        self.dir = stack.tmp / "mariadb"
        self.proc: Proc | None = None

    def install(self) -> PrivateMariaDB:
        """Create the system tables in a fresh data directory (about 3 s)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "install.log").open("wb") as log:
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.dir / 'data'}",
                            "--auth-root-authentication-method=normal", "--skip-test-db",
                            "--user=root"], stdout=log, stderr=subprocess.STDOUT, check=True)
        return self

    def start(self) -> PrivateMariaDB:
        """Start ``mariadbd`` on the data directory and wait until it accepts connections."""
        self.proc = self.stack.spawn("mariadb", [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults",
            f"--datadir={self.dir / 'data'}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.dir / 'mysqld.sock'}",
            f"--pid-file={self.dir / 'mysqld.pid'}", "--user=root", "--skip-log-bin",
            "--innodb-buffer-pool-size=128M", "--max-connections=500",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci"])
        wait_for(lambda: _alive(self.proc) and self.answers(), 60,
                 f"the private mariadbd on port {self.port}", interval=0.2)
        return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM: a clean shutdown, as a restart does)."""
        if self.proc is not None:
            self.proc.stop(timeout=60)

    def answers(self) -> bool:
        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                            connect_timeout=1).close()
            return True
        except pymysql.MySQLError:
            return False

    def create_database(self, name: str) -> str:
        """Create database ``name`` (utf8mb4) and return its SQLAlchemy URL."""
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                        "COLLATE utf8mb4_unicode_ci")
        conn.close()
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{name}?charset=utf8mb4"


def base_env(database_url: str, fake_url: str, redis_url: str | None,
             settings: dict[str, str], **extra: str) -> dict[str, str]:
    """Return the environment of the web and worker processes (configured as in production).

    ``settings`` are config keys without the prefix (the WeChat appids, the base URL);
    ``extra`` likewise, for what a bench changes (e.g. ``RATELIMIT_DEFAULT``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("QCWX_")}
    env.update({f"QCWX_{k}": str(v) for k, v in settings.items()})
    env.update({"QCWX_ENV": "development", "QCWX_DATABASE_URL": database_url,
                "QCWX_WECHAT_API_BASE": fake_url, "QCWX_SECRET_KEY": "e2e-secret-" + "x" * 24,
                "QCWX_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    env.update({f"QCWX_{k}": str(v) for k, v in extra.items()})
    if redis_url:
        env["QCWX_REDIS_URL"] = redis_url
    return env
