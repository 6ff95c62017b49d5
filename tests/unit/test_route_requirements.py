"""CLERK_ROUTE_REQUIREMENTS parsing and route lookup (usersync.api.route_requirements), and the handlers'
`has()` over the authorizer context (usersync.api.access)."""

from __future__ import annotations

import json

import pytest

from tests.session_tokens import ISSUER, ORIGIN
from usersync.api.access import has
from usersync.api.route_requirements import RouteRequirements
from usersync.clerk.permissions import Requirement
from usersync.clerk.tokens import TokenVerifier, load_public_key
from usersync.runtime.settings import AuthorizerSettings, ConfigurationError
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import SigningKey, mint_token, session_claims

ROUTES = RouteRequirements.parse(
    json.dumps(
        {
            "GET /orgs/{id}": {"role": "org:admin"},
            "GET /orgs/public": {"feature": "u:x"},
            "ANY /orgs/{proxy+}": {"plan": "pro"},
            "GET /orgs/{id}/members/{member}": {"permission": "org:members:read"},
            "GET /": {"role": "root"},
            "$default": {"feature": "beta"},
        }
    )
)


def test_parsed_requirements_are_normalised_once() -> None:
    assert dict(ROUTES.items())["GET /orgs/{id}"] == Requirement(role="org:admin")
    assert dict(ROUTES.items())["ANY /orgs/{proxy+}"] == Requirement(plan=(None, "pro"))
    assert dict(ROUTES.items())["GET /"] == Requirement(role="org:root")
    assert len(ROUTES) == 6
    assert ROUTES
    assert not RouteRequirements.parse("{}")
    assert not RouteRequirements.parse("  ")


def test_settings_read_the_variable_raw_and_default_to_no_requirement() -> None:
    base = {"USERS_TABLE_NAME": "t", "CLERK_JWKS_URL": "https://clerk.example.com/.well-known/jwks.json"}
    assert AuthorizerSettings.from_env(base).route_requirements == "{}"
    raw = '{"GET /a": {"role": "admin"}}'
    assert AuthorizerSettings.from_env(base | {"CLERK_ROUTE_REQUIREMENTS": raw}).route_requirements == raw


@pytest.mark.parametrize(
    ("route_key", "expected"),
    [
        ("GET /orgs/{id}", "GET /orgs/{id}"),
        ("$default", "$default"),
        ("GET /orgs/1", None),
        ("POST /x", None),
    ],
)
def test_http_api_finds_the_route_key_exactly(route_key: str, expected: str | None) -> None:
    found = ROUTES.route_for_event({"version": "2.0", "routeKey": route_key}, None)
    assert (found[0] if found else None) == expected


@pytest.mark.parametrize(
    ("method", "resource", "expected"),
    [
        ("GET", "/orgs/{id}", "GET /orgs/{id}"),
        ("POST", "/orgs/{proxy+}", "ANY /orgs/{proxy+}"),  # an ANY method: the event has the real verb
        ("GET", "/orgs/{proxy+}", "ANY /orgs/{proxy+}"),
        ("POST", "/orgs/{id}", None),
    ],
)
def test_rest_request_finds_method_and_resource_then_any(
    method: str, resource: str, expected: str | None
) -> None:
    event = {"type": "REQUEST", "httpMethod": method, "resource": resource, "methodArn": "arn"}
    found = ROUTES.route_for_event(event, "arn:aws:execute-api:r:1:api/prod/X/unused")
    assert (found[0] if found else None) == expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/orgs/org_1", "GET /orgs/{id}"),  # {param} before {proxy+}
        ("GET", "/orgs/public", "GET /orgs/public"),  # a literal before {param}
        ("DELETE", "/orgs/org_1", "ANY /orgs/{proxy+}"),  # exact method first, then ANY
        ("GET", "/orgs/org_1/members/u_2", "GET /orgs/{id}/members/{member}"),
        ("GET", "/orgs/org_1/members", "ANY /orgs/{proxy+}"),
        ("GET", "/orgs", None),  # a greedy segment needs one segment at least
        ("GET", "/", "GET /"),
        ("GET", "/elsewhere", None),  # $default is an HTTP API route: no REST resource matches it
    ],
)
def test_rest_token_matches_the_method_arn_against_resource_templates(
    method: str, path: str, expected: str | None
) -> None:
    arn = f"arn:aws:execute-api:us-east-1:123456789012:api/prod/{method}{path}"
    found = ROUTES.route_for_event({"type": "TOKEN", "authorizationToken": "x"}, arn)
    assert (found[0] if found else None) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1]", "must be a JSON object"),
        ("{", "not valid JSON"),
        ('{"GET /a": {"role": "admin"}, "GET /a": {"plan": "pro"}}', "'GET /a' appears twice"),
        ('{"get /a": {"role": "admin"}}', "route 'get /a': invalid route key"),
        ('{"GET /a/": {"role": "admin"}}', "empty segment"),
        ('{"GET /a b": {"role": "admin"}}', "no spaces"),
        ('{"GET /{proxy+}/x": {"role": "admin"}}', "must be the last"),
        ('{"GET /a": {"role": "admin", "plans": "pro"}}', "field 'plans': unknown field"),
        ('{"GET /a": {"role": ["admin"]}}', "field 'role'"),
        ('{"GET /a": {"role": ""}}', "field 'role'"),
        ('{"GET /a": {"permission": "org:a"}}', "field 'permission'"),
        ('{"GET /a": {"feature": "team:a"}}', "field 'feature'"),
        ('{"GET /a": {"plan": "o:"}}', "field 'plan'"),
        ('{"GET /a": null}', "route 'GET /a'"),
    ],
)
def test_malformed_values_are_configuration_errors_naming_route_and_field(value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RouteRequirements.parse(value)
    assert "CLERK_ROUTE_REQUIREMENTS" in str(caught.value)
    assert message in str(caught.value)


# ---------------------------------------------------------------- has() in a handler


def context_of(key: SigningKey, claims: dict[str, object]) -> dict[str, str]:
    verifier = TokenVerifier(public_key=load_public_key(key.public_pem()), issuer=ISSUER)
    return verifier.verify(mint_token(key, claims)).context()


@pytest.fixture
def admin_context(key: SigningKey) -> dict[str, str]:
    claims = session_claims(
        "user_1",
        issuer=ISSUER,
        azp=ORIGIN,
        org_id="org_1",
        org_role="admin",
        permissions=["org:invoices:read", "org:invoices:void"],
        features=["u:beta"],
        plans=["o:pro"],
    )
    return context_of(key, claims)


def test_has_in_a_handler_reads_the_http_api_context(admin_context: dict[str, str]) -> None:
    event = http_api_event("GET", "/invoices", authorizer_context=admin_context)
    assert has(event, role="org:admin")
    assert has(event, role="admin")
    assert has(event, permission="org:invoices:void")
    assert not has(event, permission="org:invoices:create")
    assert has(event, feature="u:beta")
    assert has(event, feature="invoices")
    assert not has(event, feature="u:invoices")
    assert has(event, plan="o:pro")
    assert not has(event, plan="u:pro")
    assert has(event, role="org:admin", permission="org:invoices:read", plan="pro")
    assert not has(event, role="org:admin", plan="enterprise")
    assert not has(event)


def test_has_in_a_handler_reads_the_rest_context(admin_context: dict[str, str]) -> None:
    event = {"requestContext": {"authorizer": dict(admin_context, principalId="user_1")}}
    assert has(event, permission="invoices:read")
    assert not has(event, permission="invoices:create")


def test_has_without_an_authorizer_or_organization_is_false(key: SigningKey) -> None:
    assert not has(http_api_event("GET", "/x"), feature="beta")
    personal = context_of(key, session_claims("user_1", issuer=ISSUER, azp=ORIGIN, features=["u:beta"]))
    event = http_api_event("GET", "/x", authorizer_context=personal)
    assert has(event, feature="beta")
    assert not has(event, role="org:member")
    assert "orgPermissions" not in personal
    assert "plan" not in personal
