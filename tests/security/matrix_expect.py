"""What every endpoint answers each actor: one policy per endpoint (and method), from intent.

An answer is compared by class, not exact status (see :func:`classify`): ``ok`` (2xx, 3xx
other than to the login page, or a 400/409/410 for the junk body the probe sends — the actor
got past authorisation and scope), ``login`` (redirect to the login page), ``unauth`` (401),
``denied`` (403), ``hidden`` (404). A 5xx is never expected.

A :class:`Policy` names who may pass: ``roles`` (None = every logged-in role), whether the URL's
object must be in the actor's scope (``scope``: ``lab`` = the object's lab, via
``scopes.lab_ids_in_scope``; ``region`` = the object's own region exactly, for a centre's own
saved things), what an anonymous client gets, and whether the read-only expert's POST passes.
A role that may not use the endpoint gets ``denied`` or ``hidden`` (both reveal nothing; views
check scope or role first as suits them); an allowed role out of scope gets ``hidden``.
"""

from __future__ import annotations

from dataclasses import dataclass

CREDENTIALS = ("jwt", "api_key", "research_key")
ALL = None
CENTRE = frozenset({"admin", "center"})
CENTRE_READERS = CENTRE | {"expert"}
LAB_WRITERS = frozenset({"admin", "director", "supervisor", "technician"})
SUPERVISING = frozenset({"admin", "center", "director", "supervisor"})
WRITERS = SUPERVISING | {"technician"}

# Which actors have lab A's objects ("in") / the second region's ("out") in scope.
LAB_SCOPE = {"in": {"admin", "center_city", "center_a", "expert", "director", "supervisor",
                    "technician"},
             "out": {"admin", "center2", "supervisor2"}}
# A centre's own saved things (groupings, catalogue proposals) belong to one region exactly
# (the admin reviews every proposal; groupings are the centres' alone, see their policy).
REGION_SCOPE = {"in": {"admin", "center_a"}, "out": {"admin", "center2"}}


@dataclass(frozen=True)
class Policy:
    """Who passes an endpoint; see the module docstring."""

    roles: frozenset | None = ALL
    scope: str | None = None  # "lab", "region" or None
    anonymous: str = "login"
    expert_writes: bool = False  # a POST by the read-only expert reaches the view
    junk_404: bool = False  # an allowed actor's junk request is a 404 (a missing form id)
    everyone: str | None = None  # every actor, logged in or not, gets this class
    credential: str | None = None  # the credential actor (``matrix_probe.CREDENTIALS``) it takes


PUBLIC = Policy(anonymous="ok", expert_writes=True)
LOGGED_IN = Policy()
# API key / JWT endpoints: a session is no credential; the matching credential passes (lab A's
# JWT and interface key see lab A's objects, never the second region's).
MP_API = Policy(anonymous="unauth", everyone="unauth", credential="jwt")
MP_SCOPED = Policy(anonymous="unauth", everyone="unauth", credential="jwt", scope="lab")
INGEST_API = Policy(anonymous="unauth", everyone="unauth", credential="api_key")
RESEARCH_API = Policy(anonymous="unauth", everyone="unauth", credential="research_key")
SCOPED = Policy(scope="lab")


def scoped(roles, **kw) -> Policy:
    """Return a lab-scoped policy for ``roles``."""
    return Policy(roles=roles, scope="lab", **kw)


def only(roles, **kw) -> Policy:
    """Return an unscoped policy for ``roles``."""
    return Policy(roles=roles, **kw)


ADMIN = frozenset({"admin"})
CENTRE_ADMIN_VIEWS = ("analyteloinc", "hospital", "instrument", "lab", "testsystem", "unitcode",
                      "user")  # a centre manages these within its region (qcwx.admin.scoping)
CATALOGUE_VIEWS = ("analyte", "calibrator", "method", "qcmaterial", "qualityspec", "reagent",
                   "qclot")  # shared catalogue: a centre reads (and may add lots), admin edits
READ_ADMIN = ("index_view", "details_view", "export", "ajax_lookup")


def _admin_views() -> dict[tuple[str, str], Policy]:
    """Flask-Admin's nine rules per model view (ajax lookups without a name are a 404)."""
    table = {}
    rules = {"index_view": "GET", "details_view": "GET", "export": "GET", "ajax_lookup": "GET",
             "create_view": "GET POST", "edit_view": "GET POST", "delete_view": "POST",
             "action_view": "POST", "ajax_update": "POST"}
    for view in (*CENTRE_ADMIN_VIEWS, *CATALOGUE_VIEWS, "region"):
        for rule, methods in rules.items():
            if view == "region":
                roles = ADMIN  # the region tree is the platform's
            elif view in CENTRE_ADMIN_VIEWS or rule in READ_ADMIN:
                roles = CENTRE
            elif view == "qclot" and rule == "create_view":
                roles = CENTRE  # a centre registers the lots it distributes
            else:
                roles = ADMIN
            junk = rule in ("ajax_lookup", "ajax_update")
            for method in methods.split():
                row = view in ("lab", "hospital", "user", "testsystem") \
                    and rule in ("details_view", "edit_view")  # ?id= of a row: its lab's scope
                table[(f"{view}.{rule}", method)] = (scoped if row else only)(roles,
                                                                             junk_404=junk)
    return table


EXPECT: dict[tuple[str, str], Policy] = {
    **_admin_views(),
    ("admin.index", "GET"): only(CENTRE),
    ("import_test_systems.index", "GET"): only(CENTRE),
    ("import_test_systems.index", "POST"): only(CENTRE),
    ("import_test_systems.confirm", "POST"): only(CENTRE),
    ("import_test_systems.template", "GET"): only(CENTRE),
    ("catalogue_proposals.index", "GET"): only(CENTRE),
    ("catalogue_proposals.new", "GET"): only(CENTRE),
    ("catalogue_proposals.new", "POST"): only(CENTRE),
    ("catalogue_proposals.detail", "GET"): Policy(roles=CENTRE, scope="region"),
    ("catalogue_proposals.decide", "POST"): only(ADMIN),
    # alerts: the centre's failed-delivery list
    ("alerts.failed", "GET"): only(CENTRE),
    ("alerts.retry", "POST"): scoped(CENTRE),
    # analytics
    ("analytics.periods_view", "GET"): LOGGED_IN,
    ("analytics.sigma_lab", "GET"): SCOPED,  # also the rule without a lab id (one's own)
    ("analytics.sigma_system", "GET"): SCOPED,
    ("analytics.sigma_region", "GET"): only(CENTRE_READERS),
    ("analytics.sigma_apply", "POST"): scoped(SUPERVISING),
    ("analytics.comparisons", "GET"): LOGGED_IN,  # the saved comparisons in one's scope
    ("analytics.comparisons", "POST"): only(SUPERVISING, junk_404=True),  # no test system
    ("analytics.comparison_detail", "GET"): SCOPED,
    # shift timelines and data-integrity signals
    ("insights.timeline", "GET"): scoped(SUPERVISING),
    ("insights.record_change", "POST"): scoped(frozenset({"admin", "supervisor"})),
    ("insights.shifts", "GET"): only(CENTRE),
    ("insights.integrity_page", "GET"): only(CENTRE_READERS),
    # centre dashboard
    **{(f"dashboard.{name}", "GET"): only(CENTRE_READERS)
       for name in ("index", "month_list", "peer_flags", "records", "today_list")},
    # capture: uploads (lab data entry), mappings, keys
    ("ingest.batches", "GET"): LOGGED_IN,
    ("ingest.upload", "GET"): only(LAB_WRITERS),
    ("ingest.upload", "POST"): only(LAB_WRITERS),
    ("ingest.columns", "GET"): only(LAB_WRITERS),  # <digest> is the actor's own upload
    ("ingest.columns", "POST"): only(LAB_WRITERS),
    ("ingest.commit", "POST"): only(LAB_WRITERS),
    ("ingest.delete_columns", "POST"): scoped(LAB_WRITERS),
    ("ingest.mappings", "GET"): only(WRITERS),
    ("ingest.mappings", "POST"): only(SUPERVISING),
    ("ingest.delete_mapping", "POST"): scoped(SUPERVISING),
    ("ingest.keys", "GET"): only(CENTRE),
    ("ingest.keys", "POST"): only(CENTRE, junk_404=True),  # no lab_id: "lab not found"
    ("ingest.revoke_key", "POST"): scoped(CENTRE),
    ("ingest.template_csv_file", "GET"): LOGGED_IN,
    ("ingest.template_xlsx_file", "GET"): LOGGED_IN,
    ("ingest_api.openapi_json", "GET"): PUBLIC,
    ("ingest_api.me", "GET"): INGEST_API,
    ("ingest_api.files", "POST"): INGEST_API,
    ("ingest_api.messages", "POST"): INGEST_API,
    ("ingest_api.results", "POST"): INGEST_API,
    # IQC
    ("iqc.actions", "GET"): LOGGED_IN,
    ("iqc.action", "GET"): SCOPED,
    ("iqc.action", "POST"): scoped(frozenset({"director", "supervisor", "technician"})),
    ("iqc.action_pdf", "GET"): SCOPED,
    ("iqc.chart", "GET"): SCOPED,
    ("iqc.summary", "GET"): SCOPED,
    ("iqc.run", "GET"): SCOPED,
    ("iqc.entry", "GET"): SCOPED,
    ("iqc.entry", "POST"): scoped(LAB_WRITERS),
    ("iqc.submit_json", "POST"): scoped(LAB_WRITERS),
    ("iqc.correct", "POST"): scoped(LAB_WRITERS),
    ("iqc.limits", "GET"): SCOPED,
    ("iqc.limits", "POST"): scoped(WRITERS),
    ("iqc.rules", "GET"): SCOPED,
    ("iqc.rules", "POST"): scoped(SUPERVISING),
    # QR labels
    ("labels.index", "GET"): LOGGED_IN,
    ("labels.scan", "GET"): LOGGED_IN,
    ("labels.decode", "POST"): only(WRITERS),
    ("labels.open_label", "GET"): SCOPED,
    ("labels.qr_png", "GET"): SCOPED,
    ("labels.sheet", "GET"): SCOPED,
    ("labels.regenerate", "POST"): scoped(SUPERVISING),
    # unified lots (a lot's scope is its lab's region subtree, as for its assignments)
    ("lots.index", "GET"): only(CENTRE_READERS | {"director", "supervisor"}),
    ("lots.lab", "GET"): only(frozenset({"admin", "director", "supervisor"})),
    ("lots.new", "GET"): only(CENTRE),
    ("lots.new", "POST"): only(CENTRE),
    ("lots.detail", "GET"): scoped(CENTRE_READERS),
    ("lots.detail", "POST"): scoped(CENTRE),
    ("lots.start", "POST"): scoped(WRITERS),
    ("lots.switch", "POST"): scoped(frozenset({"admin", "director", "supervisor"})),
    # mini-program (JWT); login and bind take a wx.login code, no credential
    ("mp.openapi", "GET"): PUBLIC,
    ("mp.login", "POST"): Policy(anonymous="ok"),
    ("mp.bind", "POST"): Policy(anonymous="ok"),
    **{(f"mp.{name}", method): MP_API for name, method in (
        ("alerts", "GET"), ("me", "GET"), ("scan", "POST"), ("submit_run", "POST"),
        ("subscriptions", "POST"))},
    ("mp.ack", "POST"): MP_SCOPED,
    ("mp.chart_data", "GET"): MP_SCOPED,
    ("mp.runs", "GET"): MP_SCOPED,
    # open data (centre); an export without a finished file downloads as 404 for everyone
    ("opendata.index", "GET"): only(CENTRE),
    ("opendata.create_export", "POST"): only(CENTRE),
    ("opendata.create_key", "POST"): only(CENTRE, junk_404=True),  # admin: no region named
    ("opendata.export_status", "GET"): scoped(CENTRE),
    ("opendata.download", "GET"): Policy(roles=frozenset(), scope="lab"),
    ("opendata.revoke_key", "POST"): scoped(CENTRE),
    ("research_api.openapi_json", "GET"): PUBLIC,
    ("research_api.dictionary", "GET"): RESEARCH_API,
    ("research_api.results", "GET"): RESEARCH_API,
    # accounts
    ("orgs.login", "GET"): PUBLIC,
    ("orgs.login", "POST"): PUBLIC,
    ("orgs.logout", "POST"): Policy(everyone="login", expert_writes=True),  # back to login
    ("orgs.me", "GET"): LOGGED_IN,
    # peer comparison
    ("peer.index", "GET"): LOGGED_IN,
    ("peer.centre", "GET"): only(CENTRE_READERS),
    ("peer.exceptions", "GET"): only(CENTRE_READERS),
    ("peer.nccl", "GET"): only(CENTRE_READERS),
    ("peer.freeze", "POST"): only(CENTRE),
    ("peer.save_grouping", "POST"): only(CENTRE),
    ("peer.delete_grouping", "POST"): Policy(roles=frozenset({"center"}), scope="region"),
    ("peer.lab", "GET"): SCOPED,
    # with no lot named the page opens the region's first lot: none there is a 404
    ("peer.lot", "GET"): Policy(junk_404=True),
    ("peer.lot_size", "GET"): Policy(junk_404=True),
    # mutual recognition
    ("recognition.index", "GET"): LOGGED_IN,
    ("recognition.export", "GET"): LOGGED_IN,
    ("recognition.criteria", "GET"): only(CENTRE),
    ("recognition.save_criteria", "POST"): only(CENTRE),
    ("recognition.override", "POST"): only(CENTRE),
    ("recognition.withdraw", "POST"): scoped(CENTRE),
    # reports and share links (the link's creator is an operator: only centres manage it)
    ("reports.mine", "GET"): LOGGED_IN,
    ("reports.links", "GET"): LOGGED_IN,
    ("reports.link_created", "GET"): LOGGED_IN,  # only a token held in one's session shows
    ("reports.report", "GET"): SCOPED,
    ("reports.report_file", "GET"): SCOPED,
    ("reports.share", "POST"): only(WRITERS),
    ("reports.revoke", "POST"): scoped(CENTRE),
    ("reports.add_comment", "POST"): scoped(frozenset({"expert"}), expert_writes=True),
    ("reports.reply", "POST"): scoped(frozenset({"director", "supervisor"})),
    # regional reports: a published one belongs to its region (visible to the centres above)
    ("reports.region_reports", "GET"): only(CENTRE_READERS),
    ("reports.region_report", "GET"): scoped(CENTRE_READERS),
    ("reports.region_report_file", "GET"): scoped(CENTRE_READERS),
    ("reports.region_share", "POST"): scoped(CENTRE),
    ("reports.region_publish", "POST"): only(CENTRE),
    ("reports.shared", "GET"): PUBLIC,  # the token is the credential (tested on its own)
    ("reports.shared_file", "GET"): PUBLIC,
    # shell
    ("web.home", "GET"): LOGGED_IN,
    ("web.healthz", "GET"): PUBLIC,
    ("web.favicon", "GET"): PUBLIC,
    # WeChat
    ("wechat.callback", "GET"): Policy(everyone="denied"),  # WeChat's signature, not a login
    ("wechat.callback", "POST"): Policy(everyone="denied"),
    ("wechat.oauth_start", "GET"): PUBLIC,
    ("wechat.oauth_callback", "GET"): PUBLIC,
    ("wechat.bind", "GET"): PUBLIC,
    ("wechat.bind", "POST"): Policy(anonymous="ok"),
    ("wechat.unbind", "POST"): Policy(expert_writes=True),
    ("wechat.go", "GET"): LOGGED_IN,
    ("wechat.jssdk_config", "GET"): Policy(anonymous="unauth"),
    ("wechat.invites", "GET"): only(SUPERVISING),
    ("wechat.invites", "POST"): only(SUPERVISING),
    ("wechat.invite", "GET"): scoped(SUPERVISING),
    ("wechat.invite_qr", "GET"): scoped(SUPERVISING),
}

# Per-actor exceptions to an endpoint's policy, each with its reason.
OVERRIDES: dict[tuple[str, str, str, str], set[str]] = {
    # the invite of lab Z is for supervisor2 itself: one may always see one's own invite
    ("wechat.invite", "GET", "supervisor2", "out"): {"ok"},
    ("wechat.invite_qr", "GET", "supervisor2", "out"): {"ok"},
}


def expected(policy: Policy, method: str, actor: str, role: str | None, scope: str) -> set[str]:
    """Return the answer classes ``actor`` may get from an endpoint under ``policy``."""
    if actor in CREDENTIALS:
        if policy.credential != actor:
            return {policy.anonymous}  # to any other endpoint it is a stranger
        if policy.scope and scope != "-":
            return {"ok"} if scope == "in" else {"hidden"}
        return {"ok"}
    if policy.everyone:
        return {policy.everyone} if not (role == "expert" and method == "POST") else {
            policy.everyone, "denied"}
    if role is None:
        return {policy.anonymous}
    if role == "expert" and method == "POST" and not policy.expert_writes:
        return {"denied"}  # scopes.refuse_read_only_writes, before any view
    ok = {"ok", "hidden"} if policy.junk_404 else {"ok"}
    allowed = policy.roles is None or role in policy.roles
    if policy.scope and scope != "-":
        inside = actor in (LAB_SCOPE if policy.scope == "lab" else REGION_SCOPE)[scope]
        if not inside:
            return {"hidden"} if allowed else {"denied", "hidden"}
    return ok if allowed else {"denied", "hidden"}


__all__ = ["EXPECT", "OVERRIDES", "Policy", "expected"]
