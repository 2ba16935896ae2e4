"""Celery lives in qcwx: the app never imports ``workers``; the entry point sees every task.

The worker entry point must find every task and beat entry by its registered name.

Run in a fresh interpreter (a subprocess), so no module imported by other tests hides an
import cycle or a task module that only registers because a test imported it first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from qcwx.config import PROJECT_ROOT

TASKS = {
    "qcwx.ping", "qcwx.followups.run",
    "qcwx.alerts.dispatch", "qcwx.alerts.sweep", "qcwx.alerts.missing_submission_reminder",
    "qcwx.alerts.daily_digest",
    "qcwx.peer.refresh", "qcwx.peer.refresh_pending", "qcwx.peer.rebuild",
    "qcwx.peer.freeze_month", "qcwx.peer.freeze_previous_month",
    "qcwx.reports.render_pdf", "qcwx.reports.publish_previous_month",
    "qcwx.opendata.build_export",
}
BEAT = {
    "alerts-sweep": "qcwx.alerts.sweep",
    "alerts-missing-submission-reminder": "qcwx.alerts.missing_submission_reminder",
    "alerts-daily-digest": "qcwx.alerts.daily_digest",
    "peer-refresh-pending": "qcwx.peer.refresh_pending",
    "peer-rebuild-nightly": "qcwx.peer.rebuild",
    "peer-freeze-monthly": "qcwx.peer.freeze_previous_month",
    "reports-publish-monthly": "qcwx.reports.publish_previous_month",
}
PROBE = """
import json, sys
import qcwx
from qcwx import create_app
create_app()
web_imported_workers = any(m == "workers" or m.startswith("workers.") for m in sys.modules)
import workers.celery_app
app = workers.celery_app.app
print(json.dumps({
    "web_imported_workers": web_imported_workers,
    "tasks": sorted(n for n in app.tasks if not n.startswith("celery.")),
    "beat": {k: v["task"] for k, v in app.conf.beat_schedule.items()},
    "include": list(app.conf.include),
    "task_class": [c.__name__ for c in type(app.tasks["qcwx.ping"]).__mro__],
}))
"""


def probe(tmp_path) -> dict:
    """Import qcwx, then workers.celery_app, in a fresh interpreter; return what it saw."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QCWX_")}
    env.update({"QCWX_ENV": "testing",
                "QCWX_DATABASE_URL": f"sqlite:///{tmp_path / 'layout.sqlite3'}"})
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_worker_entry_point_registers_every_task_and_beat_entry_without_a_cycle(tmp_path):
    seen = probe(tmp_path)
    assert seen["web_imported_workers"] is False  # qcwx never imports the entry point
    assert set(seen["tasks"]) == TASKS
    assert seen["beat"] == BEAT
    assert seen["include"] == ["qcwx.web.tasks", "qcwx.followups", "qcwx.alerts.tasks",
                               "qcwx.peer.tasks",
                               "qcwx.reports.tasks", "qcwx.opendata.tasks"]
    assert "FlaskTask" in seen["task_class"]  # tasks run inside the Flask app context
