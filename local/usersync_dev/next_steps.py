"""What to do after `make deploy`, with the deployed stack's real values (`usersync-dev next-steps`).

Read from CloudFormation (DescribeStacks: the stack's outputs and the parameters it was deployed with),
rendered by `render_next_steps`, a pure function the tests feed with a dict or a moto stack.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usersync_dev.template import REPO_ROOT

# The session token's custom claims usersync reads (usersync.clerk.session_claims.SessionClaims), as
# Clerk shortcodes.
SESSION_CLAIMS_TEMPLATE = {
    "email": "{{user.primary_email_address}}",
    "firstName": "{{user.first_name}}",
    "lastName": "{{user.last_name}}",
    "imageUrl": "{{user.image_url}}",
}
REQUIRED_OUTPUTS = ("ApiUrl", "WebhookUrl", "HealthUrl", "UsersTableName")


class NextStepsError(RuntimeError):
    """The stack cannot be read or lacks what the next steps need; the message says which."""


@dataclass(frozen=True)
class DeployedStack:
    name: str
    region: str
    outputs: Mapping[str, str]
    parameters: Mapping[str, str]


def subscribed_events() -> list[str]:
    """The Clerk event types the webhook handles: the keys of its one event dispatch."""
    from usersync.sync.events import HANDLED_EVENT_TYPES

    return sorted(HANDLED_EVENT_TYPES)


def render_next_steps(stack: DeployedStack) -> str:
    """The post-deploy checklist: Clerk webhook endpoint, session token claims, the whsec_ secret, a test."""
    missing = [name for name in REQUIRED_OUTPUTS if not stack.outputs.get(name)]
    if missing:
        raise NextStepsError(
            f"stack {stack.name} has no output {', '.join(missing)}: is it a usersync stack?"
        )
    outputs, parameters = stack.outputs, stack.parameters
    secret_arn = parameters.get("ClerkWebhookSecretArn", "")
    cookie_mode = parameters.get("AuthMode") == "cookie"
    region = shlex.quote(stack.region)
    from usersync.runtime.aws import SECRET_CACHE_SECONDS

    cache_minutes = max(1, SECRET_CACHE_SECONDS // 60)
    secret_id = shlex.quote(secret_arn or "<ClerkWebhookSecretArn>")
    lines = [
        f"usersync is deployed: stack {stack.name} in {stack.region}, API {outputs['ApiUrl']}",
        "",
        "1. Clerk Dashboard → Webhooks → Add Endpoint:",
        f"     Endpoint URL: {outputs['WebhookUrl']}",
        f"     Subscribe to: {', '.join(subscribed_events())}",
        "2. Copy the endpoint's Signing Secret (whsec_...) into the secret the stack reads. Warm webhook",
        f"   containers re-read it within {cache_minutes} minutes; Svix retries rejected deliveries:",
        f"     aws secretsmanager put-secret-value --region {region} \\",
        f"       --secret-id {secret_id} --secret-string 'whsec_...'",
        "3. Clerk Dashboard → Sessions → Customize session token → Claims, paste:",
        f"     {json.dumps(SESSION_CLAIMS_TEMPLATE)}",
        "4. Check it:",
        f"     curl -sS {outputs['HealthUrl']}",
    ]
    if cookie_mode:
        lines.append(
            f'     curl -sS --cookie "__session=$TOKEN" {outputs["ApiUrl"]}/me'
            "   (AuthMode=cookie: the browser's __session cookie)"
        )
    else:
        lines.append(f'     curl -sS -H "Authorization: Bearer $TOKEN" {outputs["ApiUrl"]}/me')
    lines += [
        "   where TOKEN is a signed-in user's session token",
        "   (in the browser console of your app: await Clerk.session.getToken()).",
        f"   Users land in DynamoDB table {outputs['UsersTableName']}.",
    ]
    return "\n".join(lines)


def describe_stack(client: Any, stack_name: str, region: str) -> DeployedStack:
    """Outputs and parameters of a deployed stack (CloudFormation DescribeStacks)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        (described,) = client.describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise NextStepsError(f"cannot describe stack {stack_name} in {region}: {exc}") from None
    return DeployedStack(
        name=stack_name,
        region=region,
        outputs={item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])},
        parameters={
            item["ParameterKey"]: item.get("ResolvedValue", item.get("ParameterValue", ""))
            for item in described.get("Parameters", [])
        },
    )


def samconfig_target(
    config_env: str = "default", path: Path = REPO_ROOT / "samconfig.toml"
) -> tuple[str, str]:
    """(stack name, region) `sam deploy` uses for `config_env`, from samconfig.toml."""
    with path.open("rb") as handle:
        config = tomllib.load(handle)
    environment = config.get(config_env, {})
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):
        merged.update(environment.get(command, {}).get("parameters", {}))
    try:
        return str(merged["stack_name"]), str(merged["region"])
    except KeyError as exc:
        raise NextStepsError(
            f"samconfig.toml [{config_env}] sets no {exc.args[0]}: pass --{exc.args[0]}"
        ) from None


def print_next_steps(stack_name: str | None, region: str | None, config_env: str = "default") -> int:
    import boto3

    if stack_name is None or region is None:
        configured_name, configured_region = samconfig_target(config_env)
        stack_name, region = stack_name or configured_name, region or configured_region
    client = boto3.session.Session().client("cloudformation", region_name=region)
    print(render_next_steps(describe_stack(client, stack_name, region)))
    return 0
