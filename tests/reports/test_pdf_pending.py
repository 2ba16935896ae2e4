"""A PDF that is not ready yet: a 202 progress page that reloads itself, one job queued."""

from __future__ import annotations

from qcwx.extensions import celery, db
from qcwx.reports import services, tasks
from qcwx.timeutil import local_today


def test_a_pdf_made_by_a_worker_shows_progress_and_is_queued_once(world, client, monkeypatch,
                                                                  tmp_path, app):
    created = services.share_report(None, world.lab_a, "dynamic", {
        "ts_ids": None, "period": {"kind": "this_month"}}, "7", local_today())
    db.session.commit()
    queued = []

    class _Result:
        def failed(self):
            return False

    monkeypatch.setitem(celery.conf, "task_always_eager", False)
    monkeypatch.setattr(tasks.render_pdf, "apply_async",
                        lambda args: queued.append(args) or _Result())
    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    for _ in range(2):
        res = client.get(created.path + ".pdf")
        assert res.status_code == 202
        assert res.headers["Refresh"] == "3" and res.headers["Cache-Control"] == "no-store"
        assert "正在生成 PDF" in res.get_data(as_text=True)
    assert len(queued) == 1  # the second request found the job pending
    html, fingerprint, title = queued[0]
    assert "qc-main" in html and title.endswith("动态质控报告")
    # The worker's file appears: the same URL now downloads it.
    (tmp_path / "reports" / f"{fingerprint}.pdf").write_bytes(b"%PDF-1.7 test")
    res = client.get(created.path + ".pdf")
    assert res.status_code == 200 and res.data.startswith(b"%PDF")
    assert "attachment" in res.headers["Content-Disposition"]


def test_a_pdf_that_cannot_be_queued_is_a_503_with_retry_after(world, client, monkeypatch,
                                                              tmp_path, app):
    """Regression: with the broker unreachable the download answered 500."""
    from kombu.exceptions import OperationalError as BrokerDown

    created = services.share_report(None, world.lab_a, "dynamic", {
        "ts_ids": None, "period": {"kind": "this_month"}}, "7", local_today())
    db.session.commit()

    def refuse(args):
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setitem(celery.conf, "task_always_eager", False)
    monkeypatch.setattr(tasks.render_pdf, "apply_async", refuse)
    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    res = client.get(created.path + ".pdf")
    assert res.status_code == 503, res.status_code
    assert res.headers.get("Retry-After") == "30", dict(res.headers)
    assert "PDF 生成服务暂时不可用" in res.get_data(as_text=True)
    assert not list((tmp_path / "reports").glob("*.pending"))  # the next try queues again
