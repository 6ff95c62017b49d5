"""Contract §6a: every function answers before Lambda kills it, whatever dependency hangs.

For each function and each of its dependencies, the dependency's endpoint is a real loopback socket
that either accepts connections and never answers (hang) or refuses them (refuse); the other
dependencies are moto (or a working JWKS/Clerk stand-in is not needed: the faulty one comes first).
The handler gets a Lambda context whose remaining time starts at the function's `Timeout` read from
template.yaml and runs down with the wall clock, as Lambda's does. Expected: the answer §6a gives
for that dependency, and a wall time below the `Timeout`.

These are real waits, bounded by the budgets under test (about 40 s in all, most of it the Clerk API
hang: 10 s read timeout, retried once).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import check_http_response, metric_counts
from tests.reliability.support import REPORT
from usersync.aws import reset_clients
from usersync.reconcile import ReconcileError
from usersync_dev.apigw import http_api_authorizer_event, http_api_event
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, mint_token, session_claims, sign_delivery
from usersync_dev.local_aws import LocalLambdaContext
from usersync_dev.template import load_template

TABLE = "usersync-test-users"
USER_ID = "user_2budgetBUDGETbudget000000"
ISSUER = "https://clerk.example.test"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:usersync-missing-AbCdEf"


def template_timeout(function: str) -> float:
    """The function's `Timeout` in template.yaml (its own, else the Globals one)."""
    document = load_template()
    properties = document["Resources"][f"{function}Function"]["Properties"]
    return float(properties.get("Timeout", document["Globals"]["Function"]["Timeout"]))


@dataclass
class TimedContext(LocalLambdaContext):
    """A Lambda context whose remaining time runs down from the function's Timeout."""

    def elapsed(self) -> float:
        return time.monotonic() - self._started


@pytest.fixture(params=["hang", "refuse"])
def faulty_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """A loopback endpoint that accepts and never answers, or one that refuses connections."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if request.param == "hang":
            listener.listen(64)
            yield f"http://127.0.0.1:{port}"
            return
    yield f"http://127.0.0.1:{port}"  # closed: connections are refused


@pytest.fixture
def endpoint_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Point one AWS service of freshly built clients at an endpoint."""

    def point(service: str, url: str) -> None:
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", url)
        reset_clients()

    yield point
    reset_clients()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("ins_budget_key")


def _context(function: str) -> TimedContext:
    return TimedContext(timeout_seconds=template_timeout(function))


def _within(context: TimedContext, function: str) -> None:
    elapsed = context.elapsed()
    REPORT["time-budget cases tried"] += 1
    assert elapsed < template_timeout(function), f"{function} took {elapsed:.2f} s"
    REPORT["time-budget cases held"] += 1


def _authorizer_event(key: SigningKey) -> dict[str, Any]:
    token = mint_token(key, session_claims(USER_ID, email="ada@example.com", issuer=ISSUER))
    return http_api_authorizer_event("GET", "/me", headers={"authorization": f"Bearer {token}"})


# ---------------------------------------------------------------- webhook (Svix retries any 5xx)


def _webhook_delivery(secret: str) -> dict[str, Any]:
    delivery = sign_delivery(secret, clerk_event("user.created", clerk_user(USER_ID, updated_at=1)))
    return http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers)


def test_webhook_table_down_is_5xx_in_time(
    users_table: str,
    webhook_secret: str,
    faulty_endpoint: str,
    endpoint_for: Callable[[str, str], None],
    function_loader: Callable[[str], ModuleType],
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint_for("DYNAMODB", faulty_endpoint)
    module = function_loader("webhook")
    context = _context("Webhook")
    response = check_http_response(module.lambda_handler(_webhook_delivery(webhook_secret), context))
    _within(context, "Webhook")
    assert 500 <= response.status <= 599 and response.body["status"] == "error"
    counts = metric_counts(capsys.readouterr().out, "webhook")
    assert counts["SyncAttempts"] == 1 and counts["SyncFailures"] == 1


def test_webhook_secrets_manager_down_is_503_in_time(
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    faulty_endpoint: str,
    endpoint_for: Callable[[str, str], None],
    function_loader: Callable[[str], ModuleType],
) -> None:
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    monkeypatch.delenv("CLERK_WEBHOOK_SIGNING_SECRET", raising=False)
    monkeypatch.setenv("CLERK_WEBHOOK_SECRET_ARN", SECRET_ARN)
    endpoint_for("SECRETS_MANAGER", faulty_endpoint)
    module = function_loader("webhook")
    context = _context("Webhook")
    event = http_api_event("POST", "/webhooks/clerk", body=b"{}", headers={"svix-id": "msg_1"})
    response = check_http_response(module.lambda_handler(event, context))
    _within(context, "Webhook")
    assert response.status == 503 and response.body["message"] == "signing secret unavailable"


# ---------------------------------------------------------------- authorizer


@pytest.fixture
def pem_settings(key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    monkeypatch.delenv("CLERK_JWKS_URL", raising=False)
    monkeypatch.delenv("CLERK_AUTHORIZED_PARTIES", raising=False)
    monkeypatch.setenv("CLERK_JWT_KEY", key.public_pem())
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)


@pytest.mark.usefixtures("aws", "pem_settings")
def test_authorizer_table_down_still_allows_and_counts_in_time(
    key: SigningKey,
    faulty_endpoint: str,
    endpoint_for: Callable[[str, str], None],
    function_loader: Callable[[str], ModuleType],
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint_for("DYNAMODB", faulty_endpoint)
    module = function_loader("authorizer")
    context = _context("Authorizer")
    response = module.lambda_handler(_authorizer_event(key), context)
    _within(context, "Authorizer")
    assert response["isAuthorized"] is True and response["context"]["userId"] == USER_ID
    counts = metric_counts(capsys.readouterr().out, "authorizer")
    assert counts["SyncFailures"] == 1 and counts["SyncAttempts"] == 1


def test_authorizer_jwks_down_denies_in_time(
    users_table: str,
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    faulty_endpoint: str,
    function_loader: Callable[[str], ModuleType],
) -> None:
    monkeypatch.delenv("CLERK_JWT_KEY", raising=False)
    monkeypatch.delenv("CLERK_AUTHORIZED_PARTIES", raising=False)
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)
    monkeypatch.setenv("CLERK_JWKS_URL", f"{faulty_endpoint}/.well-known/jwks.json")
    module = function_loader("authorizer")
    context = _context("Authorizer")
    response = module.lambda_handler(_authorizer_event(key), context)
    _within(context, "Authorizer")
    assert response == {"isAuthorized": False}


# ---------------------------------------------------------------- /me


def test_me_table_down_is_503_in_time(
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    faulty_endpoint: str,
    endpoint_for: Callable[[str, str], None],
    function_loader: Callable[[str], ModuleType],
) -> None:
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    endpoint_for("DYNAMODB", faulty_endpoint)
    module = function_loader("me")
    context = _context("Me")
    event = http_api_event("GET", "/me", authorizer_context={"userId": USER_ID})
    response = check_http_response(module.lambda_handler(event, context))
    _within(context, "Me")
    assert response.status == 503 and response.body["status"] == "error"


# ---------------------------------------------------------------- /health


@pytest.mark.parametrize(
    ("service", "indicator"), [("DYNAMODB", "userTable"), ("CLOUDWATCH", "syncFailureRate")]
)
def test_health_dependency_down_is_503_with_a_message_in_time(
    users_table: str,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    indicator: str,
    faulty_endpoint: str,
    endpoint_for: Callable[[str, str], None],
    function_loader: Callable[[str], ModuleType],
) -> None:
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "0")
    endpoint_for(service, faulty_endpoint)
    module = function_loader("health")
    context = _context("Health")
    response = check_http_response(module.lambda_handler(http_api_event("GET", "/health"), context))
    _within(context, "Health")
    assert response.status == 503 and response.body["status"] == "error"
    assert response.body["error"][indicator]["status"] == "down"
    assert response.body["error"][indicator]["message"]


# ---------------------------------------------------------------- reconciliation (a clean stop)


@pytest.fixture
def reconcile_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    monkeypatch.delenv("CLERK_SECRET_KEY_ARN", raising=False)
    monkeypatch.setenv("CLERK_SECRET_KEY", "sk_test_budget")
    monkeypatch.delenv("RECONCILE_PRUNE", raising=False)


def _reconcile_stops_cleanly(module: ModuleType, match: str) -> None:
    context = _context("Reconcile")
    with pytest.raises(ReconcileError, match=match):
        module.lambda_handler({}, context)
    _within(context, "Reconcile")


@pytest.mark.usefixtures("aws", "reconcile_settings")
def test_reconcile_table_down_stops_cleanly_in_time(
    faulty_endpoint: str,
    endpoint_for: Callable[[str, str], None],
    function_loader: Callable[[str], ModuleType],
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint_for("DYNAMODB", faulty_endpoint)
    _reconcile_stops_cleanly(function_loader("reconcile"), "DynamoDB Scan failed")
    assert metric_counts(capsys.readouterr().out, "reconcile")["ReconcileFailed"] == 1


@pytest.mark.usefixtures("aws", "reconcile_settings")
def test_reconcile_secrets_manager_down_stops_cleanly_in_time(
    monkeypatch: pytest.MonkeyPatch,
    faulty_endpoint: str,
    endpoint_for: Callable[[str, str], None],
    function_loader: Callable[[str], ModuleType],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CLERK_SECRET_KEY")
    monkeypatch.setenv("CLERK_SECRET_KEY_ARN", SECRET_ARN)
    endpoint_for("SECRETS_MANAGER", faulty_endpoint)
    _reconcile_stops_cleanly(function_loader("reconcile"), "secret key unavailable")
    assert metric_counts(capsys.readouterr().out, "reconcile")["ReconcileFailed"] == 1


@pytest.mark.usefixtures("users_table", "reconcile_settings")
def test_reconcile_clerk_api_down_stops_cleanly_in_time(
    monkeypatch: pytest.MonkeyPatch,
    faulty_endpoint: str,
    function_loader: Callable[[str], ModuleType],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLERK_API_URL", faulty_endpoint)
    _reconcile_stops_cleanly(function_loader("reconcile"), "network error")
    assert metric_counts(capsys.readouterr().out, "reconcile")["ReconcileFailed"] == 1
