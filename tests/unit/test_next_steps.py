"""`make deploy` ends with the next steps, filled with the deployed stack's real values: read from
CloudFormation (a moto stack here) and rendered by one pure function."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from usersync.clerk.session_claims import SessionClaims
from usersync_dev.cli import main
from usersync_dev.next_steps import (
    REQUIRED_OUTPUTS,
    SESSION_CLAIMS_TEMPLATE,
    DeployedStack,
    NextStepsError,
    describe_stack,
    render_next_steps,
    samconfig_target,
)
from usersync_dev.template import load_template

REGION = "eu-west-1"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:usersync/prod/clerk-webhook-AbCdEf"
API = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
OUTPUTS = {
    "ApiUrl": API,
    "WebhookUrl": f"{API}/webhooks/clerk",
    "HealthUrl": f"{API}/health",
    "UsersTableName": "usersync-prod-UsersTable-1A2B3C4D5E6F",
}


def _stack_template(parameters: dict[str, str]) -> str:
    """A plain CloudFormation template with usersync's outputs (moto does not run the SAM transform)."""
    return json.dumps(
        {
            "Parameters": {name: {"Type": "String"} for name in parameters},
            "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {name: {"Value": value} for name, value in OUTPUTS.items()},
        }
    )


@pytest.fixture
def cloudformation() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudformation", region_name=REGION)


def _deploy(client: Any, name: str, parameters: dict[str, str]) -> None:
    client.create_stack(
        StackName=name,
        TemplateBody=_stack_template(parameters),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
    )


def test_the_next_steps_carry_the_stack_values(cloudformation: Any) -> None:
    _deploy(cloudformation, "usersync-prod", {"ClerkWebhookSecretArn": SECRET_ARN, "AuthMode": "header"})
    text = render_next_steps(describe_stack(cloudformation, "usersync-prod", REGION))
    assert f"Endpoint URL: {OUTPUTS['WebhookUrl']}" in text
    subscribed = re.search(r"Subscribe to: (.+)", text)
    assert subscribed is not None
    assert {"user.created", "user.updated", "user.deleted"} <= set(subscribed[1].split(", "))
    assert {
        "organization.created",
        "organization.updated",
        "organization.deleted",
        "organizationMembership.created",
        "organizationMembership.updated",
        "organizationMembership.deleted",
    } <= set(subscribed[1].split(", "))
    assert f"--region {REGION}" in text
    assert f"--secret-id {SECRET_ARN}" in text
    assert "put-secret-value" in text
    assert "whsec_" in text
    assert f'-H "Authorization: Bearer $TOKEN" {API}/me' in text
    assert OUTPUTS["UsersTableName"] in text


def test_cookie_mode_shows_the_session_cookie_call(cloudformation: Any) -> None:
    _deploy(cloudformation, "usersync-web", {"ClerkWebhookSecretArn": SECRET_ARN, "AuthMode": "cookie"})
    text = render_next_steps(describe_stack(cloudformation, "usersync-web", REGION))
    assert f'--cookie "__session=$TOKEN" {API}/me' in text
    assert "Authorization: Bearer" not in text


def test_the_session_claims_json_is_exactly_what_the_authorizer_reads() -> None:
    text = render_next_steps(DeployedStack("s", REGION, OUTPUTS, {"ClerkWebhookSecretArn": SECRET_ARN}))
    (line,) = [line.strip() for line in text.splitlines() if line.strip().startswith("{")]
    claims = json.loads(line)
    assert claims == SESSION_CLAIMS_TEMPLATE
    readable = {field.alias or name for name, field in SessionClaims.model_fields.items()}
    # Clerk sets its default claims itself (sub, sid, iat; v2's v, sts, o, act; v1's org_*): every
    # other claim the model reads must come from the custom session-claims template (v2's fea and pla,
    # v1's org_permissions are Clerk's too).
    clerk_defaults = {
        "sub",
        "sid",
        "iat",
        "v",
        "sts",
        "o",
        "act",
        "fea",
        "pla",
        "org_id",
        "org_slug",
        "org_role",
        "org_permissions",
    }
    assert set(claims) == readable - clerk_defaults
    assert all(re.fullmatch(r"\{\{user\.[a-z_]+\}\}", shortcode) for shortcode in claims.values())


def test_a_stack_without_the_outputs_is_a_clear_error() -> None:
    outputs = {key: value for key, value in OUTPUTS.items() if key != "WebhookUrl"}
    with pytest.raises(NextStepsError, match="WebhookUrl"):
        render_next_steps(DeployedStack("other-stack", REGION, outputs, {}))


def test_an_unknown_stack_is_a_clear_error(cloudformation: Any) -> None:
    with pytest.raises(NextStepsError, match="cannot describe stack nope"):
        describe_stack(cloudformation, "nope", REGION)


def test_the_template_exports_every_output_the_next_steps_need() -> None:
    assert set(REQUIRED_OUTPUTS) <= set(load_template()["Outputs"])


def test_stack_name_and_region_default_to_samconfig() -> None:
    assert samconfig_target() == ("usersync-dev", "us-east-1")


def test_the_cli_prints_them_for_the_named_stack(capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        _deploy(boto3.client("cloudformation", region_name=REGION), "usersync-prod", {"AuthMode": "header"})
        status = main(["next-steps", "--stack-name", "usersync-prod", "--region", REGION])
    assert status == 0
    out = capsys.readouterr().out
    assert OUTPUTS["WebhookUrl"] in out
    assert "--secret-id '<ClerkWebhookSecretArn>'" in out  # no such parameter on this stack: a placeholder
