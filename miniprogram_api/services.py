"""What the mini-program's endpoints ask of the feature services beyond one plain call.

Identity (``code2session``, binding) is :mod:`qcwx.wechat.miniprogram`; runs, charts and
alerts are the ``iqc`` and ``alerts`` services and queries the views call directly. Here only
the scan: the request's own host counts as one of ours, then the labels service decides.
"""

from __future__ import annotations

from qcwx.catalog.models import TestSystem
from qcwx.errors import UserError
from qcwx.labels import services as labels
from qcwx.orgs.models import User
from qcwx.web.urls import base_url


def resolve_scan(actor: User, payload: str, request_origin: str) -> TestSystem:
    """Return the test system of a scanned label (its URL or bare token) for ``actor``.

    A label URL counts when it is on the public BASE_URL or the host the request came to;
    anything else is "not our label" (400). Foreign-scope and revoked labels answer 404 / 410
    as on the web (``qcwx.labels.services.resolve_label``).
    """
    origins = {labels.origin_of(base_url()), labels.origin_of(request_origin)}
    try:
        token = labels.find_label_token([payload], origins)
    except UserError:
        raise UserError("不是本平台的质控标签", field="payload") from None
    return labels.resolve_label(actor, token)
