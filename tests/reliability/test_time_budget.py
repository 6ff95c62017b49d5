"""Contract §6a: every function answers before Lambda kills it, whatever dependency hangs.

For each function and each of its dependencies, the dependency's endpoint is a real loopback socket
that either accepts connections and never answers (hang) or refuses them (refuse); the other
dependencies are moto (or a working JWKS/Clerk stand-in is not needed: the faulty one comes first).
The handler gets a Lambda context whose remaining time starts at the function's `Timeout` read from
template.yaml and runs down with the wall clock, as Lambda's does. Expected: the answer §6a gives
for that dependency, and a wall time below the `Timeout`.

These are real waits, bounded by the budgets under test. The one long wait, Clerk's API hanging through
its 10 s read timeout and the one retry, runs with a 0.5 s read timeout injected into the Backend API
client's default (the same code path: time out, retry once, stop cleanly); that the production 10 s
still fits reconciliation's Timeout is checked by arithmetic on the client's own constants below.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import bearer_authorizer_event, check_http_response, metric_counts
from tests.reliability.outages import OUTAGES, outage_endpoint
from tests.reliability.support import REPORT
from usersync.clerk import backend_api
from usersync.runtime.aws import reset_clients
from usersync.runtime.budget import TimeBudget
from usersync.sync.reconcile import ReconcileError
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, mint_token, session_claims, sign_delivery
from usersync_dev.local_aws import LocalLambdaContext
from usersync_dev.loopback_clerk import LoopbackClerk
from usersync_dev.template import load_template

TABLE = "usersync-test-users"
USER_ID = "user_2budgetBUDGETbudget000000"
ISSUER = "https://clerk.example.test"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:usersync-missing-AbCdEf"


def template_timeout(function: str) -> float:
    """The `Timeout` of functions/<function> in template.yaml (of `<Function>Function`, else Globals')."""
    document = load_template()
    properties = document["Resources"][f"{function.capitalize()}Function"]["Properties"]
    return float(properties.get("Timeout", document["Globals"]["Function"]["Timeout"]))


@dataclass
class TimedContext(LocalLambdaContext):
    """A Lambda context whose remaining time runs down from the function's Timeout."""

    def elapsed(self) -> float:
        return time.monotonic() - self._started


@contextmanager
def within_timeout(function: str) -> Iterator[TimedContext]:
    """A context for one invocation of `function`; the block must end before the function's Timeout."""
    timeout = template_timeout(function)
    context = TimedContext(timeout_seconds=timeout)
    yield context
    elapsed = context.elapsed()
    REPORT["time-budget cases tried"] += 1
    assert elapsed < timeout, f"{function} took {elapsed:.2f} s"
    REPORT["time-budget cases held"] += 1


@dataclass
class FaultyDependency:
    """One dependency at an endpoint that hangs or refuses, and the function under test, cold-started."""

    endpoint: str
    monkeypatch: pytest.MonkeyPatch
    loader: Callable[[str], ModuleType]

    def aws(self, service: str) -> None:
        """Point freshly built clients of one AWS service (`DYNAMODB`, ...) at the faulty endpoint."""
        self.monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", self.endpoint)
        reset_clients()

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Cold-start functions/<function> and invoke it; it must answer within its Timeout."""
        module = self.loader(function)
        with within_timeout(function) as context:
            return module.lambda_handler(event, context)

    def reconcile_stops(self, match: str) -> None:
        """A step of the durable reconcile function (what every invocation runs, page after page) must
        stop with a ReconcileError matching `match`, within the function's Timeout: the durable SDK then
        records the step's failure and retries it later (tests/integration/test_reconcile_durable.py)."""
        module = self.loader("reconcile")
        with within_timeout("reconcile") as context:
            settings = module.ReconcileSettings.from_env()
            invocation = module.Invocation(
                settings, TimeBudget.from_context(context), module.ReconcileOptions()
            )
            with pytest.raises(ReconcileError, match=match):  # the sources are built lazily, in the step
                invocation.step("users", invocation.start("users"))


@pytest.fixture(params=OUTAGES)
def faulty(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
) -> Iterator[FaultyDependency]:
    """A dependency that hangs or refuses connections (`aws(service)` or `endpoint` says which one)."""
    yield FaultyDependency(outage_endpoint(request, request.param), monkeypatch, function_loader)
    reset_clients()


def _bearer_token(key: SigningKey) -> str:
    return mint_token(key, session_claims(USER_ID, email="ada@example.com", issuer=ISSUER))


# ---------------------------------------------------------------- webhook (Svix retries any 5xx)


def _webhook_delivery(secret: str) -> dict[str, Any]:
    delivery = sign_delivery(secret, clerk_event("user.created", clerk_user(USER_ID, updated_at=1)))
    return http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers)


@pytest.mark.usefixtures("users_table")
def test_webhook_table_down_is_5xx_in_time(
    webhook_secret: str, faulty: FaultyDependency, capsys: pytest.CaptureFixture[str]
) -> None:
    faulty.aws("DYNAMODB")
    response = check_http_response(faulty.invoke("webhook", _webhook_delivery(webhook_secret)))
    assert 500 <= response.status <= 599
    assert response.body["status"] == "error"
    counts = metric_counts(capsys.readouterr().out, "webhook")
    assert counts["SyncAttempts"] == 1
    assert counts["SyncFailures"] == 1


@pytest.mark.usefixtures("aws")
def test_webhook_secrets_manager_down_is_503_in_time(
    monkeypatch: pytest.MonkeyPatch, faulty: FaultyDependency
) -> None:
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    monkeypatch.delenv("CLERK_WEBHOOK_SIGNING_SECRET", raising=False)
    monkeypatch.setenv("CLERK_WEBHOOK_SECRET_ARN", SECRET_ARN)
    faulty.aws("SECRETS_MANAGER")
    event = http_api_event("POST", "/webhooks/clerk", body=b"{}", headers={"svix-id": "msg_1"})
    response = check_http_response(faulty.invoke("webhook", event))
    assert response.status == 503
    assert response.body["message"] == "signing secret unavailable"


# ---------------------------------------------------------------- authorizer


@pytest.mark.usefixtures("aws")
def test_authorizer_table_down_still_allows_and_counts_in_time(
    pem_authorizer_env: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    faulty: FaultyDependency,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    faulty.aws("DYNAMODB")
    response = faulty.invoke("authorizer", bearer_authorizer_event(_bearer_token(pem_authorizer_env)))
    assert response["isAuthorized"] is True
    assert response["context"]["userId"] == USER_ID
    counts = metric_counts(capsys.readouterr().out, "authorizer")
    assert counts["SyncFailures"] == 1
    assert counts["SyncAttempts"] == 1


@pytest.mark.usefixtures("users_table")
def test_authorizer_jwks_down_denies_in_time(
    key: SigningKey, monkeypatch: pytest.MonkeyPatch, faulty: FaultyDependency
) -> None:
    monkeypatch.delenv("CLERK_JWT_KEY", raising=False)
    monkeypatch.delenv("CLERK_AUTHORIZED_PARTIES", raising=False)
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)
    monkeypatch.setenv("CLERK_JWKS_URL", f"{faulty.endpoint}/.well-known/jwks.json")
    response = faulty.invoke("authorizer", bearer_authorizer_event(_bearer_token(key)))
    assert response == {"isAuthorized": False}


# ---------------------------------------------------------------- /me


@pytest.mark.usefixtures("aws")
def test_me_table_down_is_503_in_time(monkeypatch: pytest.MonkeyPatch, faulty: FaultyDependency) -> None:
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    faulty.aws("DYNAMODB")
    event = http_api_event("GET", "/me", authorizer_context={"userId": USER_ID})
    response = check_http_response(faulty.invoke("me", event))
    assert response.status == 503
    assert response.body["status"] == "error"


# ---------------------------------------------------------------- /health


@pytest.mark.parametrize(
    ("service", "indicator"), [("DYNAMODB", "userTable"), ("CLOUDWATCH", "syncFailureRate")]
)
@pytest.mark.usefixtures("users_table")
def test_health_dependency_down_is_503_with_a_message_in_time(
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    indicator: str,
    faulty: FaultyDependency,
) -> None:
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "0")
    faulty.aws(service)
    response = check_http_response(faulty.invoke("health", http_api_event("GET", "/health")))
    assert response.status == 503
    assert response.body["status"] == "error"
    assert response.body["error"][indicator]["status"] == "down"
    assert response.body["error"][indicator]["message"]


# ---------------------------------------------------------------- reconciliation (a clean stop)


# What the Clerk API client waits for an answer in these tests (production: READ_TIMEOUT_SECONDS, 10 s).
TEST_READ_TIMEOUT_SECONDS = 0.5
PRODUCTION_READ_TIMEOUT_SECONDS = backend_api.READ_TIMEOUT_SECONDS  # read before any test patches it


@pytest.mark.usefixtures("reconcile_settings")  # loading the function reads its settings
def test_reconcile_production_clerk_hang_fits_its_timeout(
    function_loader: Callable[[str], ModuleType],
) -> None:
    """Every attempt (connect + read) of a hanging Clerk API, retried, fits in the time a reconcile
    step starts with, which fits in the template's Timeout: what the shortened wait stands for."""
    attempt = backend_api.CONNECT_TIMEOUT_SECONDS + PRODUCTION_READ_TIMEOUT_SECONDS
    assert PRODUCTION_READ_TIMEOUT_SECONDS > TEST_READ_TIMEOUT_SECONDS
    worst = (1 + backend_api.MAX_NETWORK_RETRIES) * attempt
    step_reserve = function_loader("reconcile").STEP_RESERVE_SECONDS
    assert worst < step_reserve < template_timeout("reconcile")


@pytest.fixture
def reconcile_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The function builds its Clerk client with the client's default timeouts: a short read, injected.
    monkeypatch.setattr(backend_api, "READ_TIMEOUT_SECONDS", TEST_READ_TIMEOUT_SECONDS)
    monkeypatch.setenv("USERS_TABLE_NAME", TABLE)
    monkeypatch.delenv("CLERK_SECRET_KEY_ARN", raising=False)
    monkeypatch.setenv("CLERK_SECRET_KEY", "sk_test_budget")
    monkeypatch.delenv("RECONCILE_PRUNE", raising=False)


@pytest.mark.parametrize(
    ("dependency", "match"),
    [
        ("DYNAMODB", "DynamoDB BatchGetItem failed"),
        ("SECRETS_MANAGER", "secret key unavailable"),
        ("CLERK_API", "network error"),
    ],
    ids=["table", "secrets-manager", "clerk-api"],
)
@pytest.mark.usefixtures("aws", "reconcile_settings")
def test_reconcile_dependency_down_stops_cleanly_in_time(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    faulty: FaultyDependency,
    dependency: str,
    match: str,
) -> None:
    # Clerk answers (a loopback stand-in with one user) unless Clerk is the dependency that is down.
    clerk = LoopbackClerk(secret_key="sk_test_budget")
    clerk.add_user(clerk_user(USER_ID, updated_at=1))
    with clerk.serve():
        if dependency == "CLERK_API":  # the table works (moto), Clerk's API does not answer
            request.getfixturevalue("users_table")
            monkeypatch.setenv("CLERK_API_URL", faulty.endpoint)
        else:
            monkeypatch.setenv("CLERK_API_URL", clerk.url)
            if dependency == "SECRETS_MANAGER":  # the Clerk secret key is read from Secrets Manager
                monkeypatch.delenv("CLERK_SECRET_KEY")
                monkeypatch.setenv("CLERK_SECRET_KEY_ARN", SECRET_ARN)
            faulty.aws(dependency)
        faulty.reconcile_stops(match)
