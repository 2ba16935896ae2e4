"""The permission matrix: every URL rule × method × actor × in-scope / out-of-scope object.

Generated from ``app.url_map`` (issue 14): anonymous, a share-link viewer, every role, the
centres of a city and of its two districts, and a second region's centre and supervisor each
request every rule with lab A's ids and with the second region's; the answer's class must be
what :mod:`tests.security.matrix_expect` says. A rule without an entry fails, naming it. No
answer may be a 5xx, and no actor outside the second region sees its lab's names or codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from qcwx.audit.services import set_actor
from tests.fixtures.alerts import ALERT_SETTINGS
from tests.fixtures.app import build_app, rolled_back
from tests.security import matrix_probe as probe
from tests.security.matrix_expect import EXPECT, LAB_SCOPE, OVERRIDES, expected
from tests.security.matrix_world import ACTORS, build_matrix_world

ACTOR_NAMES = (*probe.ANONYMOUS, *ACTORS, *probe.CREDENTIALS)
ROLES = {name: role for name, (role, _) in ACTORS.items()}
# Pages that show the second region's lab by design to whoever holds the link.
SHOWS_ITS_LAB = frozenset({"reports.shared", "reports.shared_file"})
LINK_STATES = ("valid", "tampered", "revoked", "expired")


def classify(resp) -> str:
    """Return the answer's class (see ``matrix_expect``); 5xx is ``error``."""
    code = resp.status_code
    if code >= 500:
        return "error"
    if code in (301, 302, 303, 307) and urlsplit(resp.headers.get("Location", "")).path \
            .startswith("/login"):
        return "login"
    return {401: "unauth", 403: "denied", 404: "hidden"}.get(code, "ok")


@dataclass(frozen=True)
class Answer:
    """One probe's outcome."""

    probe: probe.Probe
    status: int
    cls: str
    leaked: tuple[str, ...]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Build one SQLite app and world for the module, send every probe; return the answers."""
    app = build_app("sqlite", tmp_path_factory, None, **ALERT_SETTINGS)
    answers, rules, seen = [], probe.rules(app), 0
    with rolled_back(app) as session:
        world = build_matrix_world()
        session.commit()
        clients = probe.Clients(app, world)
        for item, rule in probe.probes(app, ACTOR_NAMES):
            url = probe.url_for_rule(app, rule, world, "out" if item.scope == "out" else "in")
            resp = probe.request(app, clients, item, url)
            body = resp.get_data(as_text=True) if resp.mimetype.startswith(
                ("text/", "application/json")) else ""
            sees_far_lab = item.actor in LAB_SCOPE["out"] or item.endpoint in SHOWS_ITS_LAB
            named = tuple(s for s in world.secrets_out if s in body)
            seen += bool(named) and sees_far_lab
            answers.append(Answer(item, resp.status_code, classify(resp),
                                  () if sees_far_lab else named))
        tokens = {state: probe.request(app, clients, probe.Probe(
            "reports.shared", "/r/<token>", "GET", "anonymous", "-"), f"/r/{token}").status_code
            for state, token in world.share_tokens.items() if state in LINK_STATES}
    set_actor(None)  # a request's audit actor outlives it in this thread; its user is gone
    return {"rules": rules, "answers": answers, "tokens": tokens, "far_lab_named": seen}


def test_every_rule_has_an_entry(matrix):
    missing = sorted({f"{r.endpoint} {m} ({r.rule})" for r in matrix["rules"]
                      for m in probe.METHODS if m in r.methods and (r.endpoint, m) not in EXPECT})
    assert not missing, "rules without an entry in matrix_expect.EXPECT:\n" + "\n".join(missing)


def test_the_table_names_no_rule_that_is_gone(matrix):
    present = {(r.endpoint, m) for r in matrix["rules"] for m in r.methods}
    assert sorted(set(EXPECT) - present) == []


def test_no_probe_answers_a_server_error(matrix):
    errors = [(a.probe, a.status) for a in matrix["answers"] if a.cls == "error"]
    assert errors == []


def test_every_answer_matches_its_policy(matrix):
    wrong = []
    for a in matrix["answers"]:
        p = a.probe
        policy = EXPECT.get((p.endpoint, p.method))
        if policy is None:
            continue  # reported by test_every_rule_has_an_entry
        want = OVERRIDES.get((p.endpoint, p.method, p.actor, p.scope)) or expected(
            policy, p.method, p.actor, ROLES.get(p.actor), p.scope)
        if a.cls not in want:
            wrong.append(f"{p.method} {p.rule} as {p.actor} ({p.scope}): {a.status} "
                         f"{a.cls}, expected {sorted(want)}")
    assert not wrong, f"{len(wrong)} answers differ:\n" + "\n".join(wrong)


def test_the_matrix_is_exhaustive(matrix):
    answers = matrix["answers"]
    assert len({(a.probe.endpoint, a.probe.method) for a in answers}) == len(EXPECT)
    assert {a.probe.actor for a in answers} == set(ACTOR_NAMES)
    assert {a.probe.scope for a in answers} == {"-", "in", "out"}
    assert len(answers) > 4000


def test_no_answer_names_the_other_regions_lab(matrix):
    leaks = [(a.probe, a.leaked) for a in matrix["answers"] if a.leaked]
    assert leaks == []
    assert matrix["far_lab_named"] > 20  # the search finds the names where they belong


def test_share_links_valid_200_tampered_404_revoked_and_expired_410(matrix):
    assert matrix["tokens"] == {"valid": 200, "tampered": 404, "revoked": 410, "expired": 410}
