"""The SnapStart parameter through SAM: on, the API and its authorizer invoke the alias; off, nothing changes.

Translated offline by tests/infrastructure/cfn.py with the SAM CLI's own pipeline (its own venv, as
`sam validate` in test_sam_build.py): AWS::LanguageExtensions first (it resolves the parameter's !If),
then the Serverless transform.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.infrastructure.cfn import translate
from usersync_dev.template import load_template

# One worker starts the SAM CLI's translator (cfn.py) for every module that translates the template.
pytestmark = pytest.mark.xdist_group("sam-translator")

ALIAS = "live"
# Values for the parameters that have no default (the rest keep theirs).
REQUIRED = {"ClerkWebhookSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:clerk-webhook"}
FUNCTIONS = ("WebhookFunction", "AuthorizerFunction", "HealthFunction", "MeFunction")


def without_snapstart(template: dict[str, Any]) -> dict[str, Any]:
    """The template as it was before the parameter: no SnapStart parameter, condition or property."""
    bare = copy.deepcopy(template)
    del bare["Parameters"]["SnapStart"]
    del bare["Conditions"]["SnapStartOn"]
    for name, resource in bare["Resources"].items():
        # The durable reconcile function always has its alias (durable functions are invoked by a
        # qualified ARN) and never SnapStart: the parameter does not touch it.
        if resource["Type"] == "AWS::Serverless::Function" and name != "ReconcileFunction":
            properties = resource["Properties"]
            assert properties.pop("AutoPublishAlias") == {
                "Fn::If": ["SnapStartOn", ALIAS, {"Ref": "AWS::NoValue"}]
            }
            assert properties.pop("SnapStart") == {
                "Fn::If": ["SnapStartOn", {"ApplyOn": "PublishedVersions"}, {"Ref": "AWS::NoValue"}]
            }
    authorizer = bare["Resources"]["UsersApi"]["Properties"]["Auth"]["Authorizers"]["ClerkAuthorizer"]
    condition, _on, off = authorizer["FunctionArn"]["Fn::If"]
    assert condition == "SnapStartOn"
    authorizer["FunctionArn"] = off
    return bare


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def snapstart_on(template: dict[str, Any]) -> dict[str, Any]:
    return translate({**REQUIRED, "SnapStart": "true"}, template)


def _resources(translated: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in translated["Resources"].items() if r["Type"] == resource_type}


def _authorizer_uri_target(translated: dict[str, Any]) -> Any:
    schemes = translated["Resources"]["UsersApi"]["Properties"]["Body"]["components"]["securitySchemes"]
    uri = schemes["ClerkAuthorizer"]["x-amazon-apigateway-authorizer"]["authorizerUri"]["Fn::Sub"]
    return uri[1]["__FunctionArn__"]


def _authorizer_permission(translated: dict[str, Any]) -> dict[str, Any]:
    permission: dict[str, Any]
    (permission,) = (
        r["Properties"]
        for name, r in _resources(translated, "AWS::Lambda::Permission").items()
        if name.startswith("UsersApiClerkAuthorizer")
    )
    return permission


def test_on_the_authorizer_uri_and_its_permission_name_the_alias(snapstart_on: dict[str, Any]) -> None:
    aliases = _resources(snapstart_on, "AWS::Lambda::Alias")
    assert aliases["AuthorizerFunctionAliaslive"]["Properties"]["Name"] == ALIAS
    assert _authorizer_uri_target(snapstart_on) == {"Ref": "AuthorizerFunctionAliaslive"}
    permission = _authorizer_permission(snapstart_on)
    assert permission["FunctionName"] == {"Ref": "AuthorizerFunctionAliaslive"}
    assert permission["Principal"] == "apigateway.amazonaws.com"


def test_on_every_function_snapshots_published_versions_and_routes_invoke_the_alias(
    snapstart_on: dict[str, Any],
) -> None:
    functions = _resources(snapstart_on, "AWS::Lambda::Function")
    for name in FUNCTIONS:
        assert functions[name]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}, name
        assert f"{name}Alias{ALIAS}" in snapstart_on["Resources"], name
    paths = snapstart_on["Resources"]["UsersApi"]["Properties"]["Body"]["paths"]
    uris = {
        (path, method): operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "x-amazon-apigateway-integration" in operation
    }
    assert uris
    assert all(f"Alias{ALIAS}}}" in uri for uri in uris.values()), uris
    for name, permission in _resources(snapstart_on, "AWS::Lambda::Permission").items():
        target = permission["Properties"]["FunctionName"]
        assert isinstance(target, dict), name
        assert target.get("Ref", "").endswith(f"Alias{ALIAS}"), name


def test_off_translates_exactly_as_the_template_without_snapstart(template: dict[str, Any]) -> None:
    off = translate({**REQUIRED, "SnapStart": "false"}, template)
    before = translate(REQUIRED, without_snapstart(template))
    assert off["Resources"] == before["Resources"]
    assert off.get("Outputs") == before.get("Outputs")

    # and, said directly: no versions, no aliases, no snapshots, the authorizer is the function itself
    # (but the durable reconcile function's alias, which it always has: it is invoked through it)
    def not_reconcile(resources: dict[str, Any]) -> list[str]:
        return [name for name in resources if not name.startswith("ReconcileFunction")]

    assert not not_reconcile(_resources(off, "AWS::Lambda::Alias"))
    assert not not_reconcile(_resources(off, "AWS::Lambda::Version"))
    assert all("SnapStart" not in r["Properties"] for r in _resources(off, "AWS::Lambda::Function").values())
    assert _authorizer_uri_target(off) == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert _authorizer_permission(off)["FunctionName"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}


def test_default_is_off(template: dict[str, Any]) -> None:
    assert template["Parameters"]["SnapStart"]["Default"] == "false"
