"""Deploy-time parameters, checked on what CloudFormation would create for each value: the template
after AWS::LanguageExtensions and the SAM translator (tests/infrastructure/cfn.py), and the `Rules`
that refuse a deploy that cannot work (CONTRACT §5 cache TTL, §10 refused deploys)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest

from tests.infrastructure.cfn import failed_assertions, translate
from usersync_dev.template import load_template

# One worker starts the SAM CLI's translator (cfn.py) for every module that translates the template.
pytestmark = pytest.mark.xdist_group("sam-translator")

PARAMETERS: dict[str, dict[str, Any]] = load_template()["Parameters"]
WEBHOOK_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:usersync/dev/clerk-AbCdEf"
JWKS_URL = "https://clerk.example.com/.well-known/jwks.json"
PEM = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----"
DEPLOYABLE = {"ClerkWebhookSecretArn": WEBHOOK_SECRET_ARN, "ClerkJwksUrl": JWKS_URL}
ORIGINS = "https://app.example.com,http://localhost:3000"


@cache
def _translated(items: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return translate(dict(items))


def deployed(**overrides: str) -> dict[str, Any]:
    """The translated template of a deploy with DEPLOYABLE values plus `overrides`."""
    return _translated(tuple(sorted({**DEPLOYABLE, **overrides}.items())))


def api_body(template: dict[str, Any]) -> dict[str, Any]:
    (api,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    body: dict[str, Any] = api["Properties"]["Body"]
    return body


def lambda_authorizer(template: dict[str, Any]) -> dict[str, Any]:
    schemes = api_body(template)["components"]["securitySchemes"]
    authorizer: dict[str, Any] = schemes["ClerkAuthorizer"]["x-amazon-apigateway-authorizer"]
    return authorizer


def route_security(template: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{method.upper()} {path}": operation.get("security")
        for path, operations in api_body(template)["paths"].items()
        for method, operation in operations.items()
    }


# ---------------------------------------------------------------- auth mode and cache TTL


def test_cache_ttl_parameter_is_0_to_60_with_a_default_of_at_most_30() -> None:
    ttl = PARAMETERS["AuthorizerCacheTtlSeconds"]
    assert (ttl["Type"], ttl["MinValue"], ttl["MaxValue"]) == ("Number", 0, 60)
    assert 0 <= ttl["Default"] <= 30
    assert PARAMETERS["AuthMode"]["AllowedValues"] == ["header", "cookie"]
    assert PARAMETERS["AuthMode"]["Default"] == "header"


@pytest.mark.parametrize("ttl", [None, "0", "15", "60"])
def test_header_mode_identity_source_is_the_authorization_header_cached_for_the_ttl(ttl: str | None) -> None:
    overrides = {} if ttl is None else {"AuthorizerCacheTtlSeconds": ttl}
    authorizer = lambda_authorizer(deployed(**overrides))
    assert authorizer["identitySource"] == ["$request.header.Authorization"]
    # The language extensions resolve the parameter's Ref: a Number parameter's value, as a string.
    expected = PARAMETERS["AuthorizerCacheTtlSeconds"]["Default"] if ttl is None else int(ttl)
    assert authorizer["authorizerResultTtlInSeconds"] == str(expected)
    assert authorizer["type"] == "request"
    assert (authorizer["authorizerPayloadFormatVersion"], authorizer["enableSimpleResponses"]) == (
        "2.0",
        True,
    )


@pytest.mark.parametrize("ttl", ["0", "60"])
def test_cookie_mode_has_no_identity_source_and_no_cache_whatever_the_ttl(ttl: str) -> None:
    authorizer = lambda_authorizer(deployed(AuthMode="cookie", AuthorizerCacheTtlSeconds=ttl))
    # No identity source: API Gateway passes cookie-only calls (the `__session` cookie) to the authorizer.
    assert authorizer["identitySource"] == []
    # A cache needs an identity source as its key: without one, every request is authorized afresh.
    assert authorizer["authorizerResultTtlInSeconds"] == 0


@pytest.mark.parametrize("mode", ["header", "cookie"])
def test_protected_and_public_routes_are_the_same_in_both_modes(mode: str) -> None:
    template = deployed(AuthMode=mode)
    security = route_security(template)
    assert security["GET /me"] == [{"ClerkAuthorizer": []}]
    # SAM marks a public route with its built-in NONE authorizer.
    assert security["POST /webhooks/clerk"] == [{"NONE": []}]
    assert security["GET /health"] == [{"NONE": []}]
    # API Gateway may invoke the authorizer function in both modes (else every protected route is 500).
    permissions = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert any(p["FunctionName"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]} for p in permissions)


# ---------------------------------------------------------------- CORS


def test_no_cors_configuration_without_origins() -> None:
    assert "x-amazon-apigateway-cors" not in api_body(deployed())
    assert "x-amazon-apigateway-cors" not in api_body(deployed(AuthMode="cookie"))


@pytest.mark.parametrize(("mode", "credentials"), [("header", False), ("cookie", True)])
def test_cors_allows_the_listed_origins_with_credentials_only_in_cookie_mode(
    mode: str, credentials: bool
) -> None:
    cors = api_body(deployed(AuthMode=mode, CorsAllowedOrigins=ORIGINS))["x-amazon-apigateway-cors"]
    assert cors["allowOrigins"] == ORIGINS.split(",")
    assert cors.get("allowCredentials", False) is credentials  # SAM omits a false flag
    assert {"authorization", "content-type"} <= {header.lower() for header in cors["allowHeaders"]}
    assert {"GET", "POST", "OPTIONS"} <= set(cors["allowMethods"])


def test_header_mode_may_allow_any_origin() -> None:
    cors = api_body(deployed(CorsAllowedOrigins="*"))["x-amazon-apigateway-cors"]
    assert (cors["allowOrigins"], cors.get("allowCredentials", False)) == (["*"], False)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("*", True),
        ("https://app.example.com", True),
        (ORIGINS, True),
        ("https://app.example.com/", False),  # an origin has no path
        ("https://app.example.com, https://b.example.com", False),  # no spaces
        ("*,https://app.example.com", False),
        ("app.example.com", False),
    ],
)
def test_cors_origins_parameter_pattern(value: str, accepted: bool) -> None:
    pattern = PARAMETERS["CorsAllowedOrigins"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"), [("", True), (JWKS_URL, True), ("http://clerk.example.com/jwks", False)]
)
def test_jwks_url_parameter_must_be_https(value: str, accepted: bool) -> None:
    pattern = PARAMETERS["ClerkJwksUrl"]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) is accepted


# ---------------------------------------------------------------- Rules: deploys that cannot work


def test_a_deploy_without_jwks_url_or_jwt_key_is_refused() -> None:
    failures = failed_assertions({"ClerkWebhookSecretArn": WEBHOOK_SECRET_ARN})
    assert len(failures) == 1
    assert "ClerkJwksUrl" in failures[0]
    assert "ClerkJwtKey" in failures[0]


@pytest.mark.parametrize(
    "keys", [{"ClerkJwksUrl": JWKS_URL}, {"ClerkJwtKey": PEM}, {"ClerkJwksUrl": JWKS_URL, "ClerkJwtKey": PEM}]
)
def test_a_deploy_with_a_jwks_url_or_a_jwt_key_goes_ahead(keys: dict[str, str]) -> None:
    assert failed_assertions({"ClerkWebhookSecretArn": WEBHOOK_SECRET_ARN, **keys}) == []


@pytest.mark.parametrize(
    ("overrides", "refused_for"),
    [
        ({"AuthMode": "cookie", "CorsAllowedOrigins": "*"}, "CorsAllowedOrigins"),
        ({"AuthMode": "cookie", "CorsAllowedOrigins": ORIGINS}, None),
        ({"AuthMode": "header", "CorsAllowedOrigins": "*"}, None),
        ({"ReconcileScheduleEnabled": "true"}, "ClerkSecretKeyArn"),
        ({"ReconcilePrune": "true"}, "ClerkSecretKeyArn"),
        ({"ReconcileScheduleEnabled": "true", "ClerkSecretKeyArn": WEBHOOK_SECRET_ARN}, None),
    ],
)
def test_other_combinations_that_cannot_work_are_refused(
    overrides: dict[str, str], refused_for: str | None
) -> None:
    failures = failed_assertions({**DEPLOYABLE, **overrides})
    if refused_for is None:
        assert failures == []
    else:
        assert len(failures) == 1
        assert refused_for in failures[0]


def test_every_rule_explains_itself_and_uses_only_parameters() -> None:
    rules = load_template()["Rules"]
    assert {"ClerkKeyGiven", "CookieCorsNeedsExplicitOrigins"} <= set(rules)
    for name, rule in rules.items():
        for assertion in rule["Assertions"]:
            assert len(str(assertion.get("AssertDescription", ""))) > 20, name
        # Rules may not reference resources or Conditions: every Ref names a parameter.
        refs = re.findall(r"'Ref': '([^']+)'", repr(rule))
        assert refs, name
        assert set(refs) <= set(PARAMETERS), name


def test_the_table_name_is_generated_unless_a_retained_table_is_adopted() -> None:
    table = deployed()["Resources"]["UsersTable"]
    assert "TableName" not in table["Properties"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    retained = "usersync-dev-UsersTable-1A2B3C4D"
    adopted = deployed(AdoptTableName=retained)["Resources"]["UsersTable"]
    assert adopted["Properties"]["TableName"] == retained
