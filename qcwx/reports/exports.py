"""Serve a report as Excel (at once) or PDF (cached per content; made by a Celery task).

The PDF is Chromium printing the same HTML as the page (``reports/print.html`` includes the
one body template), so the PDF cannot show other numbers than the page. A report's
``fingerprint`` (its content, not its generation time) keys the cache: a frozen evaluation is
printed once; a live report again only when its numbers changed.
"""

from __future__ import annotations

import logging
import time

from flask import Response, current_app, render_template, request, send_file
from kombu.exceptions import KombuError

from qcwx.errors import Busy, NotFound
from qcwx.extensions import celery
from qcwx.reports.document import Report

log = logging.getLogger(__name__)

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: A PDF job older than this without a file is assumed lost and queued again.
PENDING_SECONDS = 120


def download(report: Report, fmt: str) -> Response:
    """Return the report as ``xlsx`` or ``pdf`` (a progress page while a PDF is made)."""
    if fmt == "xlsx":
        from qcwx.reports.excel import report_xlsx

        return _attachment(report_xlsx(report), XLSX_MIME, report, "xlsx")
    if fmt == "pdf":
        return _pdf(report)
    raise NotFound("不支持的下载格式")


def filename(report: Report, ext: str) -> str:
    """Return a download name such as ``质控评测报告-2026-11.pdf``."""
    from qcwx.reports.models import REPORT_KINDS

    names = {**REPORT_KINDS, "record": "失控处理记录", "recognition": "互认名单"}
    period = (report.params.get("period") or report.params.get("month")
              or report.generated_at[:10])
    if report.kind == "record":
        period = f"{report.params.get('action_id')}"
    owner = report.lab_id or report.params.get("region_id", "")  # 0: a region's report
    return f"{names.get(report.kind, '报告')}-{owner}-{period}.{ext}"


def _attachment(data: bytes, mime: str, report: Report, ext: str) -> Response:
    import io

    return send_file(io.BytesIO(data), mimetype=mime, as_attachment=True,
                     download_name=filename(report, ext), max_age=0)


def print_html(report: Report) -> str:
    """Return the HTML Chromium prints: the report body without navigation or actions."""
    return render_template("reports/print.html", report=report)


def _pdf(report: Report) -> Response:
    from qcwx.reports import pdf, tasks

    fingerprint = report.fingerprint()
    path = pdf.pdf_path(fingerprint)
    if not path.exists():
        marker = path.with_suffix(".pending")
        fresh = marker.exists() and time.time() - marker.stat().st_mtime < PENDING_SECONDS
        if not fresh:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            try:
                result = tasks.render_pdf.apply_async(
                    args=[print_html(report), fingerprint, report.title])
            except KombuError as exc:  # Redis down: say so and let the reader retry
                marker.unlink(missing_ok=True)
                log.warning("PDF of %s not queued: %s", fingerprint, exc)
                raise Busy("PDF 生成服务暂时不可用，请稍后再试", retry_after=30) from exc
            if celery.conf.task_always_eager:
                marker.unlink(missing_ok=True)
                if result.failed():
                    log.error("PDF of %s failed: %s", fingerprint, result.result)
                    raise NotFound("PDF 生成失败，请稍后再试")
        if not path.exists():
            return _pending(report)
    return send_file(path, mimetype="application/pdf", as_attachment=True,
                     download_name=filename(report, "pdf"), max_age=0)


def _pending(report: Report) -> Response:
    """Return the 202 progress page that reloads itself until the PDF is ready."""
    body = render_template("reports/pdf_pending.html", report=report, url=request.full_path)
    current_app.logger.debug("PDF pending for %s", request.path)
    return Response(body, status=202, headers={"Refresh": "3", "Cache-Control": "no-store"})
