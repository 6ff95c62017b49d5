"""The local stack (`make run` = `usersync-dev serve`) over real HTTP, as a developer uses it.

Each test starts the stack as a subprocess on free ports with its own state folder (dev key, dev
secret), so a developer's running `make run` is never touched, and always stops it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.dev_stack import dev_token, http, local_stack, run_cli, send_webhook, stack_environment
from tests.session_tokens import b64url, nested_json
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, new_user_id
from usersync_dev.template import REPO_ROOT, create_users_table

pytestmark = pytest.mark.slow


def test_signed_webhook_then_me_with_a_token_then_health(tmp_path: Path) -> None:
    with local_stack(tmp_path) as stack:
        # Given a user created through a signed Clerk webhook over real HTTP
        user_id = new_user_id()
        user = clerk_user(user_id, email="grace@example.com", first_name="Grace", last_name="Hopper")
        assert send_webhook(stack, clerk_event("user.created", user)) == (200, {"status": "applied"})

        # When the user calls the protected route with a session token from the dev key
        token = dev_token(stack, user_id, "grace@example.com", first_name="Grace", last_name="Hopper")
        status, profile = http("GET", f"{stack.gateway_url}/me", headers={"Authorization": f"Bearer {token}"})

        # Then the authorizer let the call through with its context, and /me returns the stored profile
        assert status == 200
        assert (profile["userId"], profile["email"]) == (user_id, "grace@example.com")
        assert (profile["firstName"], profile["lastName"]) == ("Grace", "Hopper")

        # And the gateway behaves as API Gateway: no Authorization → 401 before the authorizer runs,
        # a token from another key → 403 from the authorizer, unknown route → 404
        assert http("GET", f"{stack.gateway_url}/me") == (401, {"message": "Unauthorized"})
        forged = dev_token(stack, user_id, "grace@example.com", key=SigningKey.generate("ins_other"))
        denied = http("GET", f"{stack.gateway_url}/me", headers={"Authorization": f"Bearer {forged}"})
        assert denied == (403, {"message": "Forbidden"})
        assert http("GET", f"{stack.gateway_url}/nowhere")[0] == 404

        # Hostile input is an answer, never a 500: the header bomb is a denial (403), a signed
        # body nested 10,000 deep a 400
        bomb = f"{b64url(nested_json(1500))}.e30.c2ln"
        assert http("GET", f"{stack.gateway_url}/me", headers={"Authorization": f"Bearer {bomb}"}) == (
            403,
            {"message": "Forbidden"},
        )
        status, rejected = send_webhook(stack, nested_json(10_000))
        assert status == 400
        assert rejected["message"]

        status, health = http("GET", f"{stack.gateway_url}/health")
        assert status == 200
        assert health["status"] == "ok"
        assert (
            health["details"]["syncFailureRate"]["attempts"] >= 1
        )  # the webhook's metric reached CloudWatch

    # One log line per request: method, path, status, time
    assert any(line.startswith("GET /me 200 ") and line.endswith("ms") for line in stack.output)
    assert any(line.startswith("POST /webhooks/clerk 200 ") for line in stack.output)


def test_health_turns_503_once_sync_failures_cross_the_threshold(tmp_path: Path) -> None:
    min_attempts = 4
    with local_stack(tmp_path, f"SyncMinAttempts={min_attempts}") as stack:
        assert http("GET", f"{stack.gateway_url}/health")[0] == 200

        # Given the table disappears (through the stack's moto endpoint), so every webhook write fails
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=stack.moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        dynamodb.delete_table(TableName=stack.table_name)
        for _ in range(min_attempts):
            status, body = send_webhook(stack, clerk_event("user.created", clerk_user(new_user_id())))
            assert status == 500  # a 5xx, so Svix would retry
            assert body["status"] == "error"

        # And the table is back, so only the failure rate can be down
        create_users_table(dynamodb, stack.table_name)

        # Then /health reports the failures the handlers emitted (it may cache a few seconds: poll)
        deadline = time.monotonic() + 30
        status, health = http("GET", f"{stack.gateway_url}/health")
        while status != 503 and time.monotonic() < deadline:
            time.sleep(0.5)
            status, health = http("GET", f"{stack.gateway_url}/health")
        assert status == 503, health
        assert health["status"] == "error"
        assert health["details"]["userTable"]["status"] == "up"
        rate = health["details"]["syncFailureRate"]
        assert rate["status"] == "down"
        assert rate["message"]
        assert rate["failures"] == min_attempts
        assert rate["attempts"] == min_attempts


def test_printed_examples_work_when_pasted(tmp_path: Path) -> None:
    assert shutil.which("curl") is not None, "the printed examples use curl"
    with local_stack(tmp_path) as stack:
        banner = stack.banner()
        start = next(i for i, line in enumerate(banner) if line.startswith("Try it"))
        commands = [line[4:] for line in banner[start:] if line.startswith("    ")]
        # user, organization and membership webhooks, token, /me, organization token, /me, /health
        assert len(commands) == 8, banner

        # Paste them, in order, into one shell from the repo root, noting each exit status
        script = "\n".join(f'{command}\necho "::exit=$?"' for command in commands)
        result = subprocess.run(  # noqa: S603 - our own printed commands
            ["bash", "-c", script],  # noqa: S607
            cwd=REPO_ROOT,
            env=stack_environment(stack.home),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    statuses = [line for line in result.stdout.splitlines() if line.startswith("::exit=")]
    assert statuses == ["::exit=0"] * len(commands), result.stdout + result.stderr
    outputs = [line for line in result.stdout.splitlines() if not line.startswith("::exit=")]
    *webhook_outputs, me_output, org_me_output, health_output = outputs
    assert webhook_outputs == ['200 {"status":"applied"}'] * 3
    for output in (me_output, org_me_output):
        profile = json.loads(output)
        assert profile["userId"] == "user_2dev0ada0lovelace0000000"
        assert profile["email"] == "ada@example.com"
        # The membership reached /me, with the organization's name and the role
        assert profile["organizations"] == [
            {
                "orgId": "org_2dev0analytical0engines00",
                "slug": "analytical-engines",
                "name": "Analytical Engines",
                "role": "org:admin",
            }
        ]
    assert json.loads(health_output)["status"] == "ok"


def test_invoke_runs_a_handler_against_the_running_stack(tmp_path: Path) -> None:
    environment = stack_environment(tmp_path)
    events = tmp_path / "events"
    with local_stack(tmp_path) as stack:
        assert "webhook-user-created.json" in run_cli(environment, "events", "--out", str(events)).stdout

        def invoke(function: str, event: str) -> Any:
            return json.loads(run_cli(environment, "invoke", function, str(events / event)).stdout)

        # A signed event from events/ applied by the webhook handler lands in the running stack's table
        created = invoke("webhook", "webhook-user-created.json")
        assert (created["statusCode"], json.loads(created["body"])) == (200, {"status": "applied"})
        token = dev_token(stack, "user_2dev0ada0lovelace0000000", "ada@example.com")
        status, profile = http("GET", f"{stack.gateway_url}/me", headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        assert profile["userId"] == "user_2dev0ada0lovelace0000000"

        # The REST TOKEN authorizer event is allowed with the fresh dev token it carries
        policy = invoke("authorizer", "authorizer-rest-token.json")
        assert {statement["Effect"] for statement in policy["policyDocument"]["Statement"]} == {"Allow"}
        assert invoke("me", "me.json")["statusCode"] == 200


def test_invoke_without_a_stack_uses_an_in_process_moto(tmp_path: Path) -> None:
    environment = stack_environment(tmp_path)
    events = tmp_path / "events"
    run_cli(environment, "events", "--out", str(events))
    result = run_cli(environment, "invoke", "webhook", str(events / "webhook-user-created.json"))
    response = json.loads(result.stdout)  # stdout is the response alone: logs go to stderr
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"status": "applied"})
    assert "in-process moto" in result.stderr
    me = run_cli(environment, "invoke", "me", str(events / "me.json"))
    assert json.loads(me.stdout)["statusCode"] == 404  # a fresh moto each time: nothing stored yet


def test_reconcile_subcommand_delegates_to_the_reconcile_command(tmp_path: Path) -> None:
    environment = stack_environment(tmp_path)
    shown = run_cli(environment, "reconcile", "--help")
    assert "--dry-run" in shown.stdout
    assert "CLERK_SECRET_KEY" in shown.stdout
    refused = run_cli(environment, "reconcile", "--table", "t", check=False)
    assert refused.returncode != 0
    assert "CLERK_SECRET_KEY" in refused.stderr
