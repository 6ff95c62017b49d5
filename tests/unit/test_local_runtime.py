"""The local stack's reading of template.yaml: routes, authorizers and each function's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from usersync_dev.devstate import DEV_AUTHORIZED_PARTY, DEV_ISSUER, DevSecrets, dev_secrets
from usersync_dev.runtime import (
    TemplateError,
    TemplateValues,
    function_specs,
    http_api_routes,
    local_parameters,
)
from usersync_dev.template import TemplateDecodeError, load_template, template


@pytest.fixture
def secrets(tmp_path: Path) -> DevSecrets:
    return dev_secrets(tmp_path)


def test_routes_and_authorizers_follow_the_template_http_api_events() -> None:
    routes = {route.route_key: route for route in http_api_routes()}
    resources = template()["Resources"]
    expected = {
        f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}": name
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    }
    assert {key: route.function_id for key, route in routes.items()} == expected
    assert routes["POST /webhooks/clerk"].authorizer is None  # Auth: Authorizer: NONE
    assert routes["GET /health"].authorizer is None
    me = routes["GET /me"].authorizer  # the HttpApi's DefaultAuthorizer
    assert me is not None
    assert (me.function_id, me.payload_version, me.simple_responses) == ("AuthorizerFunction", "2.0", True)
    assert me.identity_headers == ("Authorization",)


def test_environment_is_globals_plus_function_with_local_values(secrets: DevSecrets) -> None:
    jwks_url = "http://127.0.0.1:9/.well-known/jwks.json"
    values = TemplateValues(local_parameters(secrets, jwks_url=jwks_url, overrides={"SyncMinAttempts": "3"}))
    specs = function_specs(values, secrets)

    webhook = specs["WebhookFunction"].environment
    # !Ref UsersTable without a TableName: a name generated from the stack and the logical id.
    assert webhook["USERS_TABLE_NAME"] == "usersync-local-UsersTable"
    assert webhook["POWERTOOLS_METRICS_NAMESPACE"] == "usersync-local"
    assert webhook["POWERTOOLS_SERVICE_NAME"] == "usersync"
    assert webhook["CLERK_WEBHOOK_SIGNING_SECRET"] == secrets.webhook_secret
    assert "CLERK_WEBHOOK_SECRET_ARN" not in webhook  # no Secrets Manager locally

    authorizer = specs["AuthorizerFunction"].environment
    assert authorizer["CLERK_JWKS_URL"] == jwks_url
    assert "CLERK_JWT_KEY" not in authorizer  # !If HasJwtKey → AWS::NoValue
    assert (authorizer["CLERK_ISSUER"], authorizer["CLERK_AUTHORIZED_PARTIES"]) == (
        DEV_ISSUER,
        DEV_AUTHORIZED_PARTY,
    )
    assert "CLERK_WEBHOOK_SIGNING_SECRET" not in authorizer

    health = specs["HealthFunction"].environment
    assert health["SYNC_MIN_ATTEMPTS"] == "3"  # the override wins over the template default
    assert health["SYNC_FAILURE_THRESHOLD"] == str(
        template()["Parameters"]["SyncFailureThreshold"]["Default"]
    )
    assert all(spec.environment["POWERTOOLS_TRACE_DISABLED"] == "true" for spec in specs.values())
    assert (
        specs["WebhookFunction"].timeout_seconds
        == template()["Resources"]["WebhookFunction"]["Properties"]["Timeout"]
    )


def test_without_a_gateway_the_authorizer_gets_the_dev_public_key(secrets: DevSecrets) -> None:
    specs = function_specs(TemplateValues(local_parameters(secrets, jwks_url=None)), secrets)
    authorizer = specs["AuthorizerFunction"].environment
    assert authorizer["CLERK_JWT_KEY"] == secrets.public_pem()
    assert not authorizer.get("CLERK_JWKS_URL")


def test_dev_secrets_are_generated_once_and_reused(tmp_path: Path) -> None:
    first, second = dev_secrets(tmp_path), dev_secrets(tmp_path)
    assert first.webhook_secret.startswith("whsec_")
    assert (first.webhook_secret, first.public_pem()) == (second.webhook_secret, second.public_pem())
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0  # owner-only
    assert dev_secrets(tmp_path / "other").webhook_secret != first.webhook_secret


def test_unsupported_intrinsics_fail_loudly(secrets: DevSecrets) -> None:
    values = TemplateValues(local_parameters(secrets, jwks_url=None))
    assert values.resolve({"Fn::Sub": "usersync-${Stage}-${AWS::Region}"}) == "usersync-local-us-east-1"
    with pytest.raises(TemplateError):
        values.resolve({"Fn::GetAtt": ["UsersTable", "Arn"]})
    with pytest.raises(TemplateError):
        values.resolve({"Ref": "NoSuchThing"})


def test_template_short_form_tags_decode_to_their_long_form(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n"
        "  Table:\n"
        "    Type: AWS::DynamoDB::Table\n"
        "    Properties:\n"
        "      TableName: !Sub 'users-${Stage}'\n"
        "      Arn: !GetAtt Other.Arn\n"
        "      Name: !Ref Stage\n"
    )
    properties = load_template(path)["Resources"]["Table"]["Properties"]
    assert properties == {
        "TableName": {"Fn::Sub": "users-${Stage}"},
        "Arn": {"Fn::GetAtt": ["Other", "Arn"]},
        "Name": {"Ref": "Stage"},
    }


def test_an_unreadable_template_fails_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("Resources: [unclosed\n")
    with pytest.raises(TemplateDecodeError, match=r"broken\.yaml"):
        load_template(path)
