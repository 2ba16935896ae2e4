"""Schemathesis against the mini-program and ingest OpenAPI documents, in-process (WSGI).

Every documented operation is sent bodies, parameters and headers generated from the
document itself — valid ones (positive) and ones that break it (negative) — as the caller
it is meant for: the mini-program technician with a JWT, the lab interface with its API key.
These checks hold for every answer: no 5xx (``not_a_server_error``); its status, content
type and body are the ones the document gives (``status_code_conformance``,
``content_type_conformance``, ``response_schema_conformance``); and a request that breaks the
document is refused with a 4xx (``negative_data_rejection``) — except a batch of ingest
results, which refuses broken items one by one inside its 200 report. Because the
request schemas are generated from the very models the views validate with, a mismatch here
is a real drift, not a stale document.

Bounded and repeatable: ``MAX_EXAMPLES`` cases per operation and mode, derandomized (the
same cases every run, no example database); about 35 s for both documents on SQLite and
MariaDB together.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from miniprogram_api.auth import issue_token
from qcwx.extensions import db
from qcwx.ingest.models import TestCodeMapping
from qcwx.timeutil import local_today
from tests.fixtures.alerts import ALERT_SETTINGS, MP_TEMPLATE
from tests.fixtures.app import app_fixture
from tests.integration.test_ingest_support import make_key

#: Cases per operation and mode; ``QCWX_SCHEMATHESIS_EXAMPLES=500`` digs deeper by hand.
MAX_EXAMPLES = int(os.environ.get("QCWX_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: Every request that breaks the document is refused with a 4xx — except a batch of
#: results, whose broken items are refused one by one inside its 200 report (by design).
PER_ITEM = {"POST /results"}
# Flask-Compress brotli/gzips large answers for clients that accept it, and the WSGI transport
# does not decode them: ask for the plain body the checks can read.
IDENTITY = {"Accept-Encoding": "identity"}
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]

# /login and /bind call code2session: the session's fake WeChat answers them, so a junk code
# is a 400 from WeChat's refusal and never a 503 from an unreachable server.
app = app_fixture("schemathesis", fake_wechat=True, **ALERT_SETTINGS)


@pytest.fixture
def callers(app, bound, session, fake_wechat):
    """Return the headers of each API's caller: the bound technician's JWT, lab A's key."""
    ts = bound.systems["a"]
    session.add(TestCodeMapping(lab_id=bound.lab_a.id, source_code="GLU", qc_lot_number="",
                                test_system_id=ts.id))
    session.commit()
    token = issue_token(bound.users["technician"])["token"]
    key = make_key(bound, bound.lab_a)
    return {"/api/mp/v1/openapi.json": {"Authorization": f"Bearer {token}"},
            "/api/ingest/v1/openapi.json": {"Authorization": f"Bearer {key}"}}


_DAYS = st.integers(0, 40).map(lambda d: (local_today() - timedelta(days=d)).isoformat())
_VALUES = st.sampled_from(["5.0", "5.1", "4.6", "5.9", "15.0", "14.2", "16.8", 5.05, 15])


def _aim(case, data, ts) -> None:
    """Point some generated cases at the caller's own test system, levels and recent days.

    Random ids and codes are refused at the first lookup (404, unmapped code); half of the
    positive cases get real ones, so the fuzzed values and dates reach the submission path.
    """
    if "ts_id" in (case.path_parameters or {}) and data.draw(st.booleans()):
        case.path_parameters["ts_id"] = ts.id
    body = case.body
    if not isinstance(body, dict) or not data.draw(st.booleans()):
        return
    if "template_ids" in body:
        answer = data.draw(st.sampled_from(["accept", "reject", "ban", "filter"]))
        body.update(template_ids=[MP_TEMPLATE], results={MP_TEMPLATE: answer})
    if "test_system_id" in body:
        body["test_system_id"] = ts.id
        if isinstance(body.get("values"), dict):
            body["values"] = {str(k): data.draw(_VALUES) for k in (1, 2)[:data.draw(
                st.integers(1, 2))]}
        body["run_date"] = data.draw(_DAYS)
    for item in body.get("items") if isinstance(body.get("items"), list) else []:
        if isinstance(item, dict):
            item.update(test_code="GLU", level=data.draw(st.sampled_from([1, "2", "L", "H"])),
                        run_date=data.draw(_DAYS), value=data.draw(_VALUES))


def _fuzz(app, path: str, headers: dict, ts) -> int:
    """Run every operation of the document at ``path``; return how many cases were sent."""
    schema = schemathesis.openapi.from_wsgi(path, app)
    sent = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        # Negative cases break a body or parameter; an operation without either has none.
        breakable = operation.body or operation.query or operation.path_parameters
        for mode in MODES if breakable else MODES[:1]:
            checks = CHECKS + ([] if operation.label in PER_ITEM else [negative_data_rejection])
            sent += _fuzz_operation(operation, mode, headers | IDENTITY, checks, ts)
    return sent


def _fuzz_operation(operation, mode, headers: dict, checks: list, ts) -> int:
    """Send ``MAX_EXAMPLES`` generated cases of one operation and mode; check each answer."""
    sent = 0

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers), data=st.data())
    def run(case, data):
        nonlocal sent
        if mode is schemathesis.GenerationMode.POSITIVE:
            _aim(case, data, ts)
        response = case.call()
        db.session.rollback()  # nothing a refused request left open carries over
        case.validate_response(response, checks=checks)
        sent += 1

    run()
    return sent


@pytest.mark.parametrize("path", ["/api/mp/v1/openapi.json", "/api/ingest/v1/openapi.json"])
def test_generated_requests_never_5xx_and_answers_match_the_document(app, bound, callers,
                                                                     path):
    assert _fuzz(app, path, callers[path], bound.systems["a"]) > 100
