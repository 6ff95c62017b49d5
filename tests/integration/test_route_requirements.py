"""Who may call which route, end to end through the authorizer Lambda on moto (CONTRACT §5): role,
permission, feature and plan requirements, scoped and unscoped, alone and combined, in HTTP API, REST
TOKEN and REST REQUEST events; v1 and v2 tokens; no active organization; unnamed routes."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import FakeLambdaContext, LogCapture, metric_counts
from tests.session_tokens import ISSUER, ORIGIN, USER_ID, trust_pem
from usersync.runtime.settings import ConfigurationError
from usersync_dev.apigw import (
    http_api_authorizer_event,
    method_arn,
    rest_request_authorizer_event,
    rest_token_authorizer_event,
)
from usersync_dev.clerk import SigningKey, mint_token, session_claims

# A typical B2B API (docs/authorization.md shows the same file).
REQUIREMENTS = {
    "GET /admin": {"role": "org:admin"},
    "POST /invoices": {"permission": "org:invoices:create"},
    "DELETE /invoices/{id}": {"role": "admin", "permission": "invoices:void", "plan": "pro"},
    "GET /reports/{id}": {"feature": "o:reports"},
    "GET /beta": {"feature": "beta"},
    "GET /export": {"plan": "o:pro"},
    "ANY /settings/{proxy+}": {"feature": "u:settings"},
}
ORG = "org_2acme000000000000000000000"


@dataclass(frozen=True)
class Call:
    """A request: the route key API Gateway matched, its method and resource, and a concrete path."""

    route_key: str
    path: str

    @property
    def method(self) -> str:
        return self.route_key.split(" ")[0]

    @property
    def resource(self) -> str:
        return self.route_key.split(" ")[1]

    def concrete_method(self) -> str:
        return "PATCH" if self.method == "ANY" else self.method


ADMIN = Call("GET /admin", "/admin")
CREATE_INVOICE = Call("POST /invoices", "/invoices")
VOID_INVOICE = Call("DELETE /invoices/{id}", "/invoices/in_42")
REPORT = Call("GET /reports/{id}", "/reports/rep_7")
BETA = Call("GET /beta", "/beta")
EXPORT = Call("GET /export", "/export")
SETTINGS = Call("ANY /settings/{proxy+}", "/settings/profile/avatar")
ME = Call("GET /me", "/me")  # not named: any valid session


@dataclass(frozen=True)
class Caller:
    """A session token's authorization claims (v2 unless `version=1`)."""

    org_role: str | None = None  # an active organization with this role
    permissions: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()
    version: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def token(self, key: SigningKey) -> str:
        claims = session_claims(
            USER_ID,
            first_name="Ada",
            last_name="Lovelace",
            issuer=ISSUER,
            azp=ORIGIN,
            org_id=ORG if self.org_role else None,
            org_role=self.org_role or "org:member",
            org_slug="acme" if self.org_role else None,
            version=self.version,
            permissions=self.permissions,
            features=self.features,
            plans=self.plans,
        )
        return mint_token(key, claims | self.extra)


NO_ORG = Caller(features=("u:beta", "u:settings"), plans=("u:pro",))
MEMBER = Caller(
    org_role="member", permissions=("org:invoices:read",), features=("o:reports",), plans=("u:free",)
)
ADMIN_PRO = Caller(
    org_role="admin",
    permissions=("org:invoices:create", "org:invoices:void", "org:invoices:read"),
    plans=("u:free", "o:pro"),
)
ADMIN_FREE = Caller(
    org_role="admin", permissions=("org:invoices:create", "org:invoices:void"), plans=("o:free",)
)
V1_ADMIN = Caller(org_role="admin", permissions=("org:invoices:create",), version=1)
V1_MEMBER = Caller(org_role="member", permissions=("org:invoices:read",), version=1)

# (caller, call, the condition the log names as missing; None = allowed)
CASES: list[tuple[str, Caller, Call, str | None]] = [
    ("role, admin", ADMIN_PRO, ADMIN, None),
    ("role, member", MEMBER, ADMIN, "role=org:admin"),
    ("role, no organization", NO_ORG, ADMIN, "organization (none active) for role=org:admin"),
    ("role, v1 admin", V1_ADMIN, ADMIN, None),
    ("role, v1 member", V1_MEMBER, ADMIN, "role=org:admin"),
    ("permission, granted by fpm", ADMIN_PRO, CREATE_INVOICE, None),
    ("permission, another one of the feature", MEMBER, CREATE_INVOICE, "permission=org:invoices:create"),
    ("permission, v1 org_permissions", V1_ADMIN, CREATE_INVOICE, None),
    ("permission, v1 without it", V1_MEMBER, CREATE_INVOICE, "permission=org:invoices:create"),
    (
        "permission, no organization",
        NO_ORG,
        CREATE_INVOICE,
        "organization (none active) for permission=org:invoices:create",
    ),
    ("combined, all hold", ADMIN_PRO, VOID_INVOICE, None),
    ("combined, the plan misses", ADMIN_FREE, VOID_INVOICE, "plan=pro"),
    ("combined, the role misses", MEMBER, VOID_INVOICE, "role=org:admin"),
    ("feature o:, org feature", MEMBER, REPORT, None),
    ("feature o:, user feature only", Caller(features=("u:reports",)), REPORT, "feature=o:reports"),
    ("feature unscoped, user feature", NO_ORG, BETA, None),
    ("feature unscoped, org feature", Caller(org_role="member", features=("o:beta",)), BETA, None),
    ("feature unscoped, none", MEMBER, BETA, "feature=beta"),
    ("feature, v1 has no fea", V1_ADMIN, BETA, "feature=beta"),
    ("plan o:, org plan", ADMIN_PRO, EXPORT, None),
    ("plan o:, user plan only", NO_ORG, EXPORT, "plan=o:pro"),
    ("greedy route, feature u:", NO_ORG, SETTINGS, None),
    ("greedy route, missing", MEMBER, SETTINGS, "feature=u:settings"),
    ("unnamed route, no organization", NO_ORG, ME, None),
    ("unnamed route, v1", V1_MEMBER, ME, None),
]


def allowed_by_policy(policy: dict[str, Any], arn: str) -> bool:
    """IAM's evaluation of an authorizer policy for one method ARN: an explicit Deny wins, then Allow."""
    effects = set()
    for statement in policy["policyDocument"]["Statement"]:
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            if fnmatch.fnmatchcase(arn, resource):
                effects.add(statement["Effect"])
    return "Deny" not in effects and "Allow" in effects


class Authorizer:
    def __init__(self, module: ModuleType, context: FakeLambdaContext) -> None:
        self.module = module
        self.context = context

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.module.lambda_handler(event, self.context)
        return response

    def decide(self, event_format: str, token: str, call: Call) -> tuple[bool, dict[str, Any]]:
        """(allowed, response) as API Gateway would read the answer for `call`."""
        method = call.concrete_method()
        if event_format == "http-api":
            event = http_api_authorizer_event(
                method, call.path, headers={"authorization": f"Bearer {token}"}, route_key=call.route_key
            )
            response = self(event)
            return response["isAuthorized"] is True, response
        if event_format == "rest-token":
            response = self(rest_token_authorizer_event(f"Bearer {token}", method, call.path))
        else:
            event = rest_request_authorizer_event(
                method, call.path, headers={"Authorization": f"Bearer {token}"}, resource=call.resource
            )
            response = self(event)
        return allowed_by_policy(response, method_arn(method, call.path)), response


@pytest.fixture
def configured(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> Authorizer:
    trust_pem(monkeypatch, key, authorized_parties=ORIGIN)
    monkeypatch.setenv("CLERK_ROUTE_REQUIREMENTS", json.dumps(REQUIREMENTS))
    return Authorizer(function_loader("authorizer"), lambda_context)


FORMATS = ["http-api", "rest-token", "rest-request"]


@pytest.mark.parametrize(
    ("caller", "call", "missing"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_requirements_decide_in_every_event_format(
    configured: Authorizer,
    key: SigningKey,
    logs: LogCapture,
    capsys: pytest.CaptureFixture[str],
    caller: Caller,
    call: Call,
    missing: str | None,
) -> None:
    """Each case in the three formats through one cold start (a cold start per format would triple the
    module's time in `make check` for nothing: the decision does not depend on the container)."""
    token = caller.token(key)
    for event_format in FORMATS:
        seen = len(logs.records)
        allowed, response = configured.decide(event_format, token, call)

        assert allowed is (missing is None), (event_format, response)
        denials = [record for record in logs.records[seen:] if record.get("message") == "authorizer denied"]
        if missing is None:
            assert denials == [], event_format
        else:
            assert [
                (d["reason"], d["route"], d["missing"], d["userId"], d["eventFormat"]) for d in denials
            ] == [("forbidden", call.route_key, missing, USER_ID, event_format)]
            # counted once (the user's compare-first sync still ran: the session is valid)
            assert metric_counts(capsys.readouterr().out, "authorizer")["AuthorizerDenied"] == 1
        if event_format == "http-api" and missing is not None:
            assert response == {"isAuthorized": False}  # API Gateway answers 403
    assert token.split(".")[1] not in logs.text
    assert token.split(".")[2] not in logs.text


@pytest.mark.parametrize("event_format", ["rest-token", "rest-request"])
def test_a_rest_policy_cached_for_one_route_is_right_on_every_other_route(
    configured: Authorizer, key: SigningKey, event_format: str
) -> None:
    """API Gateway caches a REST policy per token and evaluates it for every route the token calls."""
    token = MEMBER.token(key)
    allowed, policy = configured.decide(event_format, token, ME)
    assert allowed

    for _name, caller, call, missing in CASES:
        if caller is MEMBER:
            arn = method_arn(call.concrete_method(), call.path)
            assert allowed_by_policy(policy, arn) is (missing is None), call
    # Routes no requirement names stay open, nested paths included
    assert allowed_by_policy(policy, method_arn("GET", "/reports"))
    assert allowed_by_policy(policy, method_arn("POST", "/me/anything"))
    assert policy["principalId"] == USER_ID
    assert policy["context"]["orgRole"] == "org:member"


def test_http_api_context_carries_the_decoded_authorization(configured: Authorizer, key: SigningKey) -> None:
    allowed, response = configured.decide("http-api", ADMIN_PRO.token(key), ADMIN)
    assert allowed
    context = response["context"]
    assert context["orgRole"] == "org:admin"
    assert context["orgPermissions"] == "org:invoices:create,org:invoices:void,org:invoices:read"
    assert context["features"] == "o:invoices"
    assert context["plan"] == "u:free,o:pro"
    assert all(isinstance(value, str) for value in context.values())


def test_the_clerk_example_token_decodes_into_the_context(configured: Authorizer, key: SigningKey) -> None:
    extra = {
        "fea": "o:repositories,o:projects",
        "o": {"id": ORG, "rol": "admin", "per": "read,create,update,delete,revoke", "fpm": "7,21"},
    }
    allowed, response = configured.decide("http-api", Caller(extra=extra).token(key), ADMIN)
    assert allowed
    assert response["context"]["orgPermissions"].split(",") == [
        "org:repositories:read",
        "org:repositories:create",
        "org:repositories:update",
        "org:projects:read",
        "org:projects:update",
        "org:projects:revoke",
    ]


def test_hostile_permission_claims_grant_nothing_and_do_not_deny_open_routes(
    configured: Authorizer, key: SigningKey
) -> None:
    hostile = Caller(
        extra={
            "fea": "o:invoices,nocolon",
            "pla": ["o:pro"],
            "o": {"id": ORG, "rol": "admin", "per": "create", "fpm": "9" * 4000},
        }
    )
    token = hostile.token(key)
    for event_format in FORMATS:
        assert configured.decide(event_format, token, ME)[0], event_format
        assert not configured.decide(event_format, token, CREATE_INVOICE)[0], event_format
        assert not configured.decide(event_format, token, EXPORT)[0], event_format
        assert configured.decide(event_format, token, ADMIN)[0], event_format  # the role is readable


@pytest.mark.usefixtures("users_table")
def test_no_requirements_keep_todays_rule(
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> None:
    trust_pem(monkeypatch, key, authorized_parties=ORIGIN)
    monkeypatch.setenv("CLERK_ROUTE_REQUIREMENTS", "{}")
    authorizer = Authorizer(function_loader("authorizer"), lambda_context)
    for event_format in FORMATS:
        allowed, response = authorizer.decide(event_format, MEMBER.token(key), ADMIN)
        assert allowed, event_format
        if event_format != "http-api":
            assert [s["Effect"] for s in response["policyDocument"]["Statement"]] == ["Allow"]


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ('{"GET /admin": {"rol": "org:admin"}}', ["GET /admin", "rol"]),
        ('{"GET /admin": {"permission": "billing"}}', ["GET /admin", "permission"]),
        ('{"POST /x": {"plan": "team:pro"}}', ["POST /x", "plan"]),
        ('{"FETCH /x": {"plan": "pro"}}', ["FETCH /x"]),
        ('{"GET /x": {}}', ["GET /x", "at least one"]),
        ("not json", ["not valid JSON"]),
    ],
)
@pytest.mark.usefixtures("users_table")
def test_a_malformed_value_stops_the_cold_start_naming_the_route_and_field(
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
    value: str,
    names: list[str],
) -> None:
    trust_pem(monkeypatch, key, authorized_parties=ORIGIN)
    monkeypatch.setenv("CLERK_ROUTE_REQUIREMENTS", value)
    with pytest.raises(ConfigurationError) as caught:
        function_loader("authorizer")
    assert "CLERK_ROUTE_REQUIREMENTS" in str(caught.value)
    for name in names:
        assert name in str(caught.value)
