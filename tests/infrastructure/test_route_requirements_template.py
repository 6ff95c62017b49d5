"""RouteRequirements on what CloudFormation would deploy (CONTRACT §5 "Who may call which route"):
with requirements the route joins the authorizer's cache key (or, in cookie mode, nothing is cached);
without them the translated template is exactly what it was before the parameter existed."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tests.infrastructure.cfn import failed_assertions, translate
from tests.infrastructure.test_deploy_parameters import DEPLOYABLE, deployed, lambda_authorizer
from usersync.api.route_requirements import RouteRequirements
from usersync.runtime.settings import ConfigurationError
from usersync_dev.template import load_template

B2B = json.dumps(
    {
        "GET /admin": {"role": "org:admin"},
        "ANY /billing/{proxy+}": {"permission": "org:billing:manage", "plan": "o:pro"},
    }
)
PARAMETER = load_template()["Parameters"]["RouteRequirements"]
# One SAM translator process per worker, shared with the other translating modules (docs/testing.md).
pytestmark = pytest.mark.xdist_group("sam-translator")


def without_route_requirements(template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml as it was before RouteRequirements: no parameter, condition or variable, and the
    header-mode identity of before (the Authorization header alone)."""
    bare = copy.deepcopy(template)
    del bare["Parameters"]["RouteRequirements"]
    del bare["Conditions"]["HasRouteRequirements"]
    authorizer = bare["Resources"]["AuthorizerFunction"]["Properties"]
    del authorizer["Environment"]["Variables"]["CLERK_ROUTE_REQUIREMENTS"]
    clerk = bare["Resources"]["UsersApi"]["Properties"]["Auth"]["Authorizers"]["ClerkAuthorizer"]
    cookie, when_cookie, header = clerk["Identity"]["Fn::If"]
    condition, _with_route, without_route = header["Fn::If"]
    assert condition == "HasRouteRequirements"
    clerk["Identity"] = {"Fn::If": [cookie, when_cookie, without_route]}
    return bare


def authorizer_environment(template: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = template["Resources"]["AuthorizerFunction"]["Properties"]["Environment"][
        "Variables"
    ]
    return variables


@pytest.mark.parametrize("ttl", ["30", "60"])
def test_with_requirements_the_route_key_joins_the_cache_key(ttl: str) -> None:
    translated = deployed(RouteRequirements=B2B, AuthorizerCacheTtlSeconds=ttl)
    authorizer = lambda_authorizer(translated)

    assert authorizer["identitySource"] == ["$request.header.Authorization", "$context.routeKey"]
    assert authorizer["authorizerResultTtlInSeconds"] == ttl
    assert authorizer_environment(translated)["CLERK_ROUTE_REQUIREMENTS"] == B2B


def test_with_requirements_in_cookie_mode_nothing_is_cached() -> None:
    translated = deployed(RouteRequirements=B2B, AuthMode="cookie")
    authorizer = lambda_authorizer(translated)

    assert authorizer["identitySource"] == []
    assert authorizer["authorizerResultTtlInSeconds"] == 0
    assert authorizer_environment(translated)["CLERK_ROUTE_REQUIREMENTS"] == B2B


def test_without_requirements_the_identity_is_the_header_alone_and_no_variable_is_set() -> None:
    translated = deployed()
    assert lambda_authorizer(translated)["identitySource"] == ["$request.header.Authorization"]
    assert "CLERK_ROUTE_REQUIREMENTS" not in authorizer_environment(translated)


@pytest.mark.parametrize("mode", ["header", "cookie"])
def test_without_requirements_the_translated_template_is_unchanged(mode: str) -> None:
    template = load_template()
    now = translate({**DEPLOYABLE, "AuthMode": mode}, template)
    before = translate({**DEPLOYABLE, "AuthMode": mode}, without_route_requirements(template))

    assert now["Resources"] == before["Resources"]
    assert now.get("Outputs") == before.get("Outputs")


def test_the_default_is_no_requirement_and_deploys() -> None:
    assert PARAMETER["Default"] == "{}"
    assert failed_assertions(DEPLOYABLE) == []
    assert failed_assertions({**DEPLOYABLE, "RouteRequirements": B2B}) == []


@pytest.mark.parametrize(
    ("value", "cloudformation_accepts"),
    [
        ("{}", True),
        (B2B, True),
        ('{\n  "GET /admin": {"role": "org:admin"}\n}\n', True),
        ("", False),
        ("[]", False),
        ("org:admin", False),
        ("{GET /admin: {role: org:admin}}", False),  # YAML-style, unquoted keys
        ("{'GET /admin': {'role': 'org:admin'}}", False),  # Python-style quotes
        ('"GET /admin"', False),
    ],
)
def test_the_parameter_refuses_what_cloudformation_can_tell_is_not_a_json_object(
    value: str, cloudformation_accepts: bool
) -> None:
    # CloudFormation matches AllowedPattern against the whole value (Java regex, as re.fullmatch here).
    assert (re.fullmatch(PARAMETER["AllowedPattern"], value) is not None) is cloudformation_accepts
    assert len(value) <= PARAMETER["MaxLength"]


@pytest.mark.parametrize(
    "value",
    [
        '{"GET /admin": {"rol": "org:admin"}}',
        '{"GET /admin": {}}',
        '{"GET admin": {"role": "org:admin"}}',
        '{"GET /admin": {"feature": "x:beta"}}',
        '{"GET /admin": {"role": "org:admin"}, "GET /admin": {"plan": "pro"}}',
    ],
)
def test_what_the_pattern_lets_through_the_authorizer_stops_at_cold_start(value: str) -> None:
    assert re.fullmatch(PARAMETER["AllowedPattern"], value) is not None
    with pytest.raises(ConfigurationError, match="CLERK_ROUTE_REQUIREMENTS"):
        RouteRequirements.parse(value)
