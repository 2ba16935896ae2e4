"""Two-step CSV import of test systems: upload → preview (dry run) → confirm (one commit).

The preview page carries the uploaded file back to the confirm step in a hidden field
(zlib-compressed, base64), so nothing is stored between the steps and the confirm step
re-checks every row against the database as it is then.
"""

from __future__ import annotations

import base64
import binascii
import logging
import zlib
from typing import Any
from urllib.parse import quote

from flask import Response, request
from flask_admin import BaseView, expose
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from qcwx.admin.views import AccessMixin
from qcwx.catalog.services import (
    IMPORT_COLUMNS,
    MAX_IMPORT_BYTES,
    import_test_systems,
    template_csv,
)
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.numbers import parse_id
from qcwx.orgs.models import Region
from qcwx.web.forms import current_actor

log = logging.getLogger(__name__)

TEMPLATE = "admin/import_test_systems.html"
TEMPLATE_FILENAME = "检测系统导入模板.csv"
EXPIRED_MESSAGE = "导入内容已失效，请重新上传文件"
# Werkzeug refuses form fields above 500 kB (max_form_memory_size); stay below it.
MAX_PAYLOAD_CHARS = 450_000


def pack(data: bytes) -> str:
    """Return ``data`` as compact text for a hidden form field."""
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def unpack(text: str) -> bytes:
    """Return the bytes :func:`pack` produced; refuse damaged or oversized content."""
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(base64.b64decode(text, validate=True), MAX_IMPORT_BYTES + 1)
    except (binascii.Error, ValueError, zlib.error):
        raise UserError(EXPIRED_MESSAGE, field="payload") from None
    if not data or inflater.unconsumed_tail or not inflater.eof:
        raise UserError(EXPIRED_MESSAGE, field="payload")
    return data


class ImportTestSystemsView(AccessMixin, BaseView):
    """Upload the region's test systems as CSV, preview row by row, then import."""

    def _regions(self) -> list[Region]:
        if current_actor().role != "admin":
            return []
        return list(db.session.scalars(select(Region).order_by(Region.code)))

    def _region_id(self) -> int | None:
        raw = (request.form.get("region_id") or "").strip()
        return parse_id(raw)

    def _page(self, status: int = 200, **context: Any) -> Any:
        context.setdefault("columns", IMPORT_COLUMNS)
        context.setdefault("regions", self._regions())
        context.setdefault("region_id", self._region_id())
        return self.render(TEMPLATE, **context), status

    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        """Show the upload form; on upload, preview what the import would do (nothing saved)."""
        if request.method == "GET":
            return self._page()
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return self._page(400, error="请选择要上传的 CSV 文件")
        data = upload.read(MAX_IMPORT_BYTES + 1)
        try:
            report = import_test_systems(current_actor(), data, region_id=self._region_id(),
                                         dry_run=True)
        except UserError as exc:
            db.session.rollback()
            return self._page(exc.status if exc.status != 404 else 400, error=exc.message)
        db.session.rollback()  # the preview must leave nothing behind, not even a transaction
        payload = pack(data)
        if len(payload) > MAX_PAYLOAD_CHARS:
            return self._page(400, error="文件内容过多，请分成几个文件分批导入")
        return self._page(report=report, payload=payload, filename=upload.filename)

    @expose("/confirm", methods=("POST",))
    def confirm(self) -> Any:
        """Import every valid row of the previewed file in one transaction."""
        try:
            data = unpack(request.form.get("payload", ""))
            report = import_test_systems(current_actor(), data, region_id=self._region_id())
            db.session.commit()
        except UserError as exc:
            db.session.rollback()
            return self._page(exc.status if exc.status != 404 else 400, error=exc.message)
        except SQLAlchemyError:
            db.session.rollback()
            log.exception("test-system import failed at commit")
            return self._page(500, error="导入失败，未写入任何数据，请稍后重试")
        return self._page(report=report, done=True)

    @expose("/template.csv")
    def template(self) -> Response:
        """Download the CSV template (Chinese headers, UTF-8 with BOM for Excel)."""
        return Response(template_csv(), mimetype="text/csv", headers={
            "Content-Disposition": "attachment; filename=test_systems.csv; "
                                   f"filename*=UTF-8''{quote(TEMPLATE_FILENAME)}",
        })

