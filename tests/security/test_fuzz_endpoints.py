"""Hypothesis junk against every form and JSON endpoint of ``app.url_map``, as each role.

Every rule that accepts POST/PUT/PATCH/DELETE is sent generated junk — form fields and JSON
bodies built from the field names the code actually reads (scanned from the source, and
the fields of the declared pydantic bodies), with
values such as Unicode digits, 400-digit numbers, year-1 dates, floats and nested JSON —
anonymously and as each demo role (the mini-program role with its JWT, the lab interface
with its API key). No answer may be a 5xx, except 503 from an outside service (the WeChat
API is not running here). Bounded: a few examples per role, each posting to every rule once,
on SQLite and on MariaDB (its column lengths and strict types are where junk used to 500).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import miniprogram_api.schemas  # noqa: F401 - declares the mini-program's bodies
import qcwx.ingest.schemas  # noqa: F401 - declares the ingest items
from miniprogram_api.auth import issue_token
from qcwx.extensions import db
from qcwx.web.apischema import ApiModel
from tests.integration.test_ingest_support import limits_in_force, make_key

ROOT = Path(__file__).resolve().parents[2]
WRITE = {"POST", "PUT", "PATCH", "DELETE"}
SKIP = {"static", "orgs.logout"}  # logging out would end the role's session mid-run
ROLES = [None, "admin", "center", "director", "supervisor", "technician"]
#: Examples per role; ``QCWX_FUZZ_EXAMPLES=50`` digs deeper by hand.
EXAMPLES = int(os.environ.get("QCWX_FUZZ_EXAMPLES", "2"))


def _field_names() -> list[str]:
    """Return the request field names the code reads (``.get("x")`` / ``.getlist("x")`` /
    ``["x"]`` in views)."""
    names: set[str] = set()
    pattern = re.compile(r"""(?:form|args|values|data|body|item|request\.json)\s*"""
                         r"""(?:\.get\(|\.getlist\(|\[)\s*["']([a-z_][a-z0-9_]{1,40})["']""")
    for folder in ("qcwx", "miniprogram_api"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return sorted(names | _declared_fields(ApiModel) | READ_ELSEWHERE)


#: Fields read by a library rather than by our code: Flask-Admin reads the edit and delete
#: forms' ``id`` (``AdminView.get_one``). Until 7 Dec the scan found "id" only by chance, in
#: an unrelated ``values["id"]`` that a refactor removed.
READ_ELSEWHERE = {"id"}


def _declared_fields(model: type) -> set[str]:
    """Return the fields of every declared JSON body (read by pydantic, not by ``.get``)."""
    names = set(getattr(model, "model_fields", {}))
    for sub in model.__subclasses__():
        names |= _declared_fields(sub)
    return names


FIELDS = _field_names()
_NASTY = st.sampled_from(["²", "９", "9" * 400, "-1", "0", "1e400", "NaN", "Infinity", "",
                          "0001-01-01", "9999-12-31", "2026-02-30", "x" * 300,
                          "意" * 3000, "1", "2", "true", "on", "../etc", "<script>"])
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
_FORM_VALUE = st.one_of(_NASTY, _TEXT, st.integers(-2**70, 2**70).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr))
_JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | _NASTY | _TEXT,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_TEXT, kids, max_size=3),
    max_leaves=8)
_FORM = st.dictionaries(st.sampled_from(FIELDS), _FORM_VALUE, max_size=8)
_JSON = st.one_of(st.dictionaries(st.sampled_from(FIELDS), _JSON_VALUE, max_size=8),
                  _JSON_VALUE)
_ID = st.sampled_from([1, 2, 3, 7, 2**31 - 1, 2**31, 10**30])
_SEGMENT = st.sampled_from(["x", "abc", "0", "1", "..", "token-123", "品"])


def _rules(app, methods: set[str]) -> list:
    """The url map's rules answering any of ``methods`` (except :data:`SKIP`), by path."""
    return sorted((r for r in app.url_map.iter_rules()
                   if (r.methods or set()) & methods and r.endpoint not in SKIP),
                  key=lambda r: r.rule)


#: A sweep's hypothesis settings: few examples by default, slow and large draws allowed.
_SWEEP = settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow, HealthCheck.data_too_large])


def _plain_url(app, rule, ids: dict | None = None) -> str:
    """Build ``rule`` with each id argument from ``ids`` (else 1) and each other one "x"."""
    with app.test_request_context():
        return app.url_map.bind("localhost").build(rule.endpoint, {
            arg: ((ids or {}).get(arg, 1) if rule._converters[arg].regex == r"\d+" else "x")
            for arg in rule.arguments})


def _is_json_endpoint(rule) -> bool:
    return rule.rule.startswith("/api/")


def _auth_headers(rule, role, tokens) -> dict:
    if rule.rule.startswith("/api/mp/") and role == "technician":
        return {"Authorization": f"Bearer {tokens['mp']}"}
    if rule.rule.startswith("/api/ingest/") and role is not None:
        return {"Authorization": f"Bearer {tokens['ingest']}"}
    return {}


@pytest.fixture
def tokens(app, world, session):
    limits_in_force(world)
    tech = world.users["technician"]
    tech.mp_openid = f"oMpFuzz{tech.id:020d}"
    session.commit()
    return {"mp": issue_token(tech)["token"], "ingest": make_key(world, world.lab_a)}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "anonymous")
def test_junk_to_every_write_endpoint_never_answers_5xx(app, client, world, login, tokens,
                                                        role):
    rules = _rules(app, WRITE)
    assert len(rules) > 50, "the url map should hold every blueprint"

    @_SWEEP
    @given(data=st.data())
    def sweep(data):
        if role is not None:  # again per example: an earlier junk POST may have switched it
            login(world.users[role])
        for rule in rules:
            values = {arg: (data.draw(_ID) if rule._converters[arg].regex == r"\d+"
                            else data.draw(_SEGMENT)) for arg in rule.arguments}
            with app.test_request_context():
                url = app.url_map.bind("localhost").build(rule.endpoint, values)
            method = sorted((rule.methods or set()) & WRITE)[0]
            headers = _auth_headers(rule, role, tokens)
            if _is_json_endpoint(rule):
                body = json.dumps(data.draw(_JSON), allow_nan=True)
                resp = client.open(url, method=method, data=body, headers=headers,
                                   content_type="application/json")
            else:
                resp = client.open(url, method=method, data=data.draw(_FORM), headers=headers)
            assert resp.status_code < 500 or resp.status_code == 503, (
                role, method, url, resp.status_code, resp.get_data(as_text=True)[:300])
            db.session.rollback()  # leave nothing a failed request left open

    sweep()


ID_FIELDS = sorted(f for f in FIELDS if f in ("id", "ids", "rowid") or f.endswith(("_id", "_ids")))


@pytest.mark.parametrize("junk", ["9" * 30, "٣"], ids=["huge", "unicode-digit"])
@pytest.mark.parametrize("role", ["admin", "center", "supervisor"])
def test_every_id_field_of_every_form_at_once_never_answers_5xx(app, client, world, login,
                                                                 tokens, role, junk):
    """Every id-like field the code reads, all set to ``junk``, posted to every write rule.

    The sweep above draws at most 8 of the ~150 field names per request; this pins the
    fields that go to the database as ids (regression: the admin's ``id``, a lot's
    ``material_id`` / ``lab_ids`` and an export's ``region_id`` went through ``int()``,
    and 10**30 overflowed SQLite: 500).
    """
    assert "id" in ID_FIELDS and "region_id" in ID_FIELDS and "lab_ids" in ID_FIELDS
    login(world.users[role])
    form = {name: junk for name in ID_FIELDS}
    for rule in _rules(app, WRITE):
        url = _plain_url(app, rule)
        method = sorted((rule.methods or set()) & WRITE)[0]
        headers = _auth_headers(rule, role, tokens)
        if _is_json_endpoint(rule):
            resp = client.open(url, method=method, json=form, headers=headers)
        else:
            resp = client.open(url, method=method, data=form, headers=headers)
        assert resp.status_code < 500 or resp.status_code == 503, (
            role, method, url, resp.status_code, resp.get_data(as_text=True)[:300])
        db.session.rollback()


@pytest.mark.parametrize("junk", ["9" * 30, "²", "0001-01-01", "NaN", "x" * 300])
@pytest.mark.parametrize("role", ["admin", "supervisor"])
def test_every_query_field_of_every_page_at_once_never_answers_5xx(app, client, world, login,
                                                                    tokens, role, junk):
    """Every field name the code reads, all set to ``junk``, as the query of every GET rule
    (of a test system and a lab the role may see).

    Regression: ``/admin/<model>/?page=10**30`` (an OFFSET SQLite cannot hold),
    ``/ts/<id>/summary?month=NaN`` (pandas' NaT) and ``/analytics/periods?b_end=0001-01-01``
    (its default start 29 days earlier) were 500s.
    """
    login(world.users[role])
    ids = {"ts_id": world.systems["a"].id, "lab_id": world.lab_a.id}
    query = {name: junk for name in FIELDS}
    rules = _rules(app, {"GET"})
    for rule in rules:
        url = _plain_url(app, rule, ids)
        resp = client.get(url, query_string=query, headers=_auth_headers(rule, role, tokens))
        assert resp.status_code < 500 or resp.status_code == 503, (
            role, url, resp.status_code, resp.get_data(as_text=True)[:300])
        db.session.rollback()


@pytest.mark.parametrize("role", ["admin", "center", "supervisor", "technician"])
def test_junk_queries_to_every_page_never_answer_5xx(app, client, world, login, tokens, role):
    """A few drawn query fields of drawn junk, to every GET rule, as each role.

    The test above sets every field at once, so the first field a page refuses hides the
    rest behind its 400; here each request carries only a few, so a field read after
    another one's check gets junk of its own.
    """
    ids = {"ts_id": world.systems["a"].id, "lab_id": world.lab_a.id}
    rules = _rules(app, {"GET"})
    urls = [(rule, _plain_url(app, rule, ids)) for rule in rules]

    @_SWEEP
    @given(data=st.data())
    def sweep(data):
        login(world.users[role])
        for rule, url in urls:
            query = data.draw(st.dictionaries(st.sampled_from(FIELDS), _FORM_VALUE, max_size=3))
            resp = client.get(url, query_string=query,
                              headers=_auth_headers(rule, role, tokens))
            assert resp.status_code < 500 or resp.status_code == 503, (
                role, url, query, resp.status_code, resp.get_data(as_text=True)[:300])
            db.session.rollback()

    sweep()


ADMIN_JUNK = ["9" * 30, "-1", "²", "", "NaN", "1.5e308", "\\", "0001-01-01", "2026-02-30",
              "__None", "a" * 300, "意" * 3000]


@pytest.mark.parametrize("page", ["new", "edit"])
def test_junk_in_every_field_of_every_admin_form_never_answers_5xx(app, client, world, login,
                                                                    page):
    """Each Flask-Admin create and edit form, as the platform admin, with junk in each of its
    own fields alone and in all of them at once.

    The sweeps above draw field names from what our code reads; Flask-Admin's forms are
    built from the models, so their fields (names, codes, lengths, dates, the ``__None`` of
    an empty choice) are posted here by name.
    """
    login(world.users["admin"])
    posted = []
    for view in app.extensions["admin"][0]._views:
        if not getattr(view, "can_create" if page == "new" else "can_edit", False):
            continue
        with app.test_request_context():
            names = [f.name for f in view.create_form() if f.name != "csrf_token"]
        url = f"/admin/{view.endpoint}/{page}/"
        if page == "edit":
            obj = db.session.query(view.model).order_by(view.model.id.desc()).first()
            if obj is None:
                continue
            url += f"?id={obj.id}"
        posted.append(view.endpoint)
        for junk in ADMIN_JUNK:
            for form in ({n: junk for n in names}, *({n: junk} for n in names)):
                resp = client.post(url, data=form)
                assert resp.status_code < 500, (url, sorted(form)[:3], junk[:20],
                                                resp.status_code)
                db.session.rollback()
    assert {"user", "lab", "testsystem", "hospital"} <= set(posted)
