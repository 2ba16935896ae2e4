"""Request every URL rule of the app as every actor, with in-scope and out-of-scope ids.

The probe only requests and records: :mod:`tests.security.matrix_expect` says what each
answer should be, and :mod:`tests.security.test_permission_matrix` compares. Each request runs
inside a savepoint that is rolled back afterwards, so a successful POST (a revoke, a delete,
a logout) never changes what the next request sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from flask import g

from qcwx.extensions import db
from qcwx.orgs.models import User
from tests.factories import PASSWORD
from tests.security.matrix_world import MatrixWorld

SKIPPED_ENDPOINTS = frozenset({"static", "admin.static"})
METHODS = ("GET", "POST")
ANONYMOUS = ("anonymous", "share_viewer")
# Callers with a credential instead of a session (lab A's technician's mini-program JWT, lab
# A's interface key, district A's research key): they probe the ``/api/`` rules only.
CREDENTIALS = ("jwt", "api_key", "research_key")

# URL argument -> object kind in :class:`matrix_world.Objects` (per endpoint where it differs).
ARG_KIND = {"ts_id": "ts", "run_id": "run", "result_id": "result", "action_id": "action",
            "alert_id": "alert", "delivery_id": "delivery", "published_id": "published",
            "link_id": "link", "comment_id": "comment", "override_id": "override",
            "lot_id": "lot", "assignment_id": "assignment", "changeover_id": "changeover",
            "export_id": "export", "key_id": "api_key", "mapping_id": "code_mapping",
            "grouping_id": "grouping", "invite_id": "invite", "proposal_id": "proposal",
            "lab_id": "lab", "token": "token", "kind": "kind", "fmt": "fmt",
            "digest": "digest", "comparison_id": "comparison", "item_id": "region_report"}
ENDPOINT_ARG_KIND = {("opendata.revoke_key", "key_id"): "research_key",
                     ("ingest.delete_columns", "mapping_id"): "column_mapping",
                     ("ingest.delete_mapping", "kind"): "mapping_kind",
                     ("labels.open_label", "token"): "label"}
FIXED_ARGS = {"target": "home", "export_type": "csv"}
# Flask-Admin names the row in the query string: these rules are probed with ``?id=`` of the
# in-scope / out-of-scope row (a centre manages only its subtree's labs, users, systems).
QUERY_ID = {f"{view}.{rule}": kind for view, kind in (
    ("lab", "lab"), ("hospital", "hospital"), ("user", "user"), ("testsystem", "ts"))
    for rule in ("details_view", "edit_view")}


@dataclass(frozen=True)
class Probe:
    """One request: a rule and method, an actor, and which object its ids point at."""

    endpoint: str
    rule: str
    method: str
    actor: str
    scope: str  # "in" (lab A's objects), "out" (the second region's), "-" (no ids)


def rules(app) -> list:
    """Return the rules the matrix covers (every rule but the static files)."""
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint not in SKIPPED_ENDPOINTS),
                  key=lambda r: (r.rule, r.endpoint))


def takes_ids(rule) -> bool:
    """Return whether the rule's URL names an object (so in/out of scope applies)."""
    return rule.endpoint in QUERY_ID or any(arg not in FIXED_ARGS for arg in rule.arguments)


def url_for_rule(app, rule, world: MatrixWorld, scope: str) -> str:
    """Build the rule's URL with the ids of lab A's objects (``in``) or lab Z's (``out``)."""
    objects = world.outside if scope == "out" else world.inside
    values = {}
    for arg in rule.arguments:
        if arg in FIXED_ARGS:
            values[arg] = FIXED_ARGS[arg]
            continue
        kind = ENDPOINT_ARG_KIND.get((rule.endpoint, arg), ARG_KIND[arg])
        values[arg] = objects.ids.get(kind, objects.strings.get(kind))
    with app.test_request_context():
        url = app.url_map.bind("localhost").build(rule.endpoint, values, force_external=False)
    kind = QUERY_ID.get(rule.endpoint)
    return f"{url}?id={objects.ids[kind]}" if kind else url


def probes(app, actors) -> Iterator[tuple[Probe, object]]:
    """Yield every (probe, rule) of the matrix: rule × method × actor × in/out object."""
    for rule in rules(app):
        for method in METHODS:
            if method not in rule.methods:
                continue
            scopes = ("in", "out") if takes_ids(rule) else ("-",)
            for actor in actors:
                if actor in CREDENTIALS and not rule.rule.startswith("/api/"):
                    continue  # without a session they are anonymous there
                for scope in scopes:
                    yield Probe(rule.endpoint, rule.rule, method, actor, scope), rule


class Clients:
    """One logged-in test client per actor (anonymous ones are never logged in)."""

    def __init__(self, app, world: MatrixWorld):
        self.app, self.world, self._clients, self._tokens = app, world, {}, {}

    def fresh(self, actor: str):
        """Return a new client logged in as ``actor`` (or anonymous)."""
        client = self.app.test_client()
        if actor in CREDENTIALS:
            return client
        if actor == "share_viewer":  # a guest who opened a share link, nothing more
            assert client.get(f"/r/{self.world.share_tokens['valid']}").status_code == 200
        elif actor != "anonymous":
            resp = client.post("/login", data={"username": self.world.usernames[actor],
                                               "password": PASSWORD})
            assert resp.status_code == 302, (actor, resp.status_code)
        return client

    def credential_headers(self, actor: str) -> dict[str, str]:
        """Return the Authorization header of a credential actor (none for the others)."""
        if actor == "jwt":
            if "jwt" not in self._tokens:
                from miniprogram_api.auth import issue_token

                user = db.session.get(User, self.world.user_ids["technician"])
                self._tokens["jwt"] = issue_token(user)["token"]
            return {"Authorization": f"Bearer {self._tokens['jwt']}"}
        if actor in ("api_key", "research_key"):
            return {"Authorization": f"Bearer {self.world.share_tokens[actor]}"}
        return {}

    def get(self, actor: str):
        """Return the actor's long-lived client."""
        if actor not in self._clients:
            self._clients[actor] = self.fresh(actor)
        return self._clients[actor]


# Requests that end or replace the client's session get a client of their own.
SESSION_CHANGING = frozenset({"orgs.logout", "orgs.login"})


def request(app, clients: Clients, probe: Probe, url: str):
    """Send one probe inside a savepoint that is rolled back; return the response."""
    client = (clients.fresh(probe.actor) if probe.endpoint in SESSION_CHANGING
              else clients.get(probe.actor))
    headers = clients.credential_headers(probe.actor)
    db.session.remove()  # the session's own savepoint must open inside ours, not around it
    g.pop("_login_user", None)  # requests share the module's app context: no cached user
    connection = db.engines[None]  # the module's outer connection (``rolled_back``)
    savepoint = connection.begin_nested()
    try:
        if probe.method == "POST" and "/api/" in probe.rule:  # JSON APIs: an empty object
            return client.open(url, method="POST", json={}, headers=headers)
        return client.open(url, method=probe.method, headers=headers,
                           data={} if probe.method == "POST" else None)
    finally:
        db.session.remove()
        if savepoint.is_active:
            savepoint.rollback()
