"""events/env.json, the `sam local invoke --env-vars` file (CONTRACT §10): one entry per template
function (SAM CLI matches entries by logical id), exactly the variables the template declares (SAM CLI
ignores any other), and values under which the signed events and tokens beside it verify."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from svix.webhooks import Webhook

from usersync_dev.devstate import dev_secrets
from usersync_dev.sample_events import SAM_ENV_VARS_FILE, sam_local_env_vars
from usersync_dev.template import REPO_ROOT, load_template

EVENTS = REPO_ROOT / "events"
ENV_VARS_PATH = EVENTS / SAM_ENV_VARS_FILE


def env_vars_problems(template: dict[str, Any], document: dict[str, dict[str, str]]) -> list[str]:
    """Where an env-vars document and a template disagree (empty: `sam local invoke` gets every variable)."""
    globals_variables = template["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    functions = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    problems = [f"{name}: no entry (run `make events`)" for name in sorted(set(functions) - set(document))]
    problems += [f"{name}: not a function of the template" for name in sorted(set(document) - set(functions))]
    for name in sorted(set(functions) & set(document)):
        own = functions[name]["Properties"].get("Environment", {}).get("Variables", {})
        declared = set(globals_variables) | set(own)
        variables = document[name]
        problems += [f"{name}: {variable} missing" for variable in sorted(declared - set(variables))]
        problems += [
            f"{name}: {variable} is not declared in the template, so SAM CLI ignores it"
            for variable in sorted(set(variables) - declared)
        ]
        problems += [
            f"{name}: {variable} is not a string" for variable, v in variables.items() if type(v) is not str
        ]
    return problems


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict[str, str]]:
    document: dict[str, dict[str, str]] = json.loads(ENV_VARS_PATH.read_text(encoding="utf-8"))
    return document


def test_the_shipped_file_has_one_entry_per_function_with_exactly_its_declared_variables(
    shipped: dict[str, dict[str, str]],
) -> None:
    assert env_vars_problems(load_template(), shipped) == []


def test_a_function_added_without_an_entry_is_caught(shipped: dict[str, dict[str, str]]) -> None:
    template = copy.deepcopy(load_template())
    template["Resources"]["OrganizationsFunction"] = copy.deepcopy(template["Resources"]["MeFunction"])
    assert env_vars_problems(template, shipped) == ["OrganizationsFunction: no entry (run `make events`)"]


def test_a_variable_added_to_a_function_without_updating_the_file_is_caught(
    shipped: dict[str, dict[str, str]],
) -> None:
    template = copy.deepcopy(load_template())
    template["Resources"]["MeFunction"]["Properties"]["Environment"] = {"Variables": {"ME_EXTRA": "x"}}
    assert env_vars_problems(template, shipped) == ["MeFunction: ME_EXTRA missing"]


def test_the_generator_writes_what_is_shipped_apart_from_the_per_machine_dev_secrets(
    shipped: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    generated = sam_local_env_vars(dev_secrets(tmp_path))
    per_machine = {
        ("WebhookFunction", "CLERK_WEBHOOK_SIGNING_SECRET"),
        ("AuthorizerFunction", "CLERK_JWT_KEY"),
    }
    assert {name: set(variables) for name, variables in generated.items()} == {
        name: set(variables) for name, variables in shipped.items()
    }
    for name, variables in generated.items():
        for variable, value in variables.items():
            if (name, variable) not in per_machine:
                assert shipped[name][variable] == value, f"{name}.{variable}: run `make events`"
    # Locally the webhook secret is inline: an ARN would send the function to Secrets Manager.
    assert shipped["WebhookFunction"]["CLERK_WEBHOOK_SECRET_ARN"] == ""


def test_the_webhook_events_are_signed_with_the_shipped_secret(shipped: dict[str, dict[str, str]]) -> None:
    secret = shipped["WebhookFunction"]["CLERK_WEBHOOK_SIGNING_SECRET"]
    assert secret.startswith("whsec_")
    for path in sorted(EVENTS.glob("webhook-*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        headers = event["headers"]
        body = base64.b64decode(event["body"]).decode() if event.get("isBase64Encoded") else event["body"]
        sent_at = datetime.fromtimestamp(int(headers["svix-timestamp"]), tz=UTC)
        expected = Webhook(secret).sign(headers["svix-id"], sent_at, body)
        assert expected in headers["svix-signature"].split(" "), path.name


def test_the_session_tokens_verify_with_the_shipped_key(shipped: dict[str, dict[str, str]]) -> None:
    authorizer = shipped["AuthorizerFunction"]
    assert authorizer["CLERK_JWKS_URL"] == ""  # networkless: a SAM container cannot reach the local JWKS
    event = json.loads((EVENTS / "me.json").read_text(encoding="utf-8"))
    token = event["headers"]["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(
        token,
        authorizer["CLERK_JWT_KEY"],
        algorithms=["RS256"],
        issuer=authorizer["CLERK_ISSUER"],
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},  # events are regenerated
    )
    assert claims["azp"] in authorizer["CLERK_AUTHORIZED_PARTIES"].split(",")
