"""Faults outside our code: DynamoDB errors and outages, CloudWatch down or hanging, JWKS down or slow.

AWS errors are injected with botocore's Stubber on the very client the handler uses
(`usersync.runtime.aws.dynamodb_client()` / `health_clients()` are cached per container): the Stubber stands
in for AWS, our code runs unchanged. Outages are real sockets on 127.0.0.1: a closed port (refused)
or a listener that never answers (hangs). Expected: the webhook answers 5xx so Svix retries and
counts a failure, nothing is written; the authorizer still allows a valid token and counts the
failure; /health answers 503 with a message; an unreachable JWKS denies, a cached key keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.helpers import (
    FakeLambdaContext,
    LogCapture,
    WebhookDriver,
    authorize_bearer,
    check_http_response,
    metric_counts,
)
from tests.jwks_server import JwksServer
from tests.reliability.counted import counted
from tests.reliability.outages import OUTAGES, outage_endpoint
from tests.reliability.support import scan_all
from usersync.runtime.aws import THROTTLING_ERROR_CODES, dynamodb_client, health_clients, reset_clients
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, mint_token, session_claims

TABLE = "usersync-test-users"
USER_ID = "user_2faultFAULTfault000000000"
ISSUER = "https://clerk.example.test"
T0 = 1_730_279_325_025

# Error codes DynamoDB returns for capacity and service trouble, with their HTTP status.
DYNAMODB_ERRORS = [
    ("ProvisionedThroughputExceededException", 400),
    ("ThrottlingException", 400),
    ("RequestLimitExceeded", 400),
    ("InternalServerError", 500),
    ("ServiceUnavailable", 503),
]

# Each fault test counts in the run report: a fault injected, and handled once the test passes.
fault_case = counted("faults injected", "faults handled")


def _update(updated_at: int = T0 + 5) -> dict[str, Any]:
    return clerk_event("user.updated", clerk_user(USER_ID, created_at=T0, updated_at=updated_at))


def _token(key: SigningKey, **overrides: Any) -> str:
    claims = session_claims(USER_ID, email="ada@example.com", first_name="Ada", issuer=ISSUER) | overrides
    return mint_token(key, claims)


def _seed(webhook: WebhookDriver) -> None:
    response = webhook.deliver(
        "msg_seed", clerk_event("user.created", clerk_user(USER_ID, created_at=T0, updated_at=T0))
    )
    assert response.status == 200


# ---------------------------------------------------------------- webhook


@pytest.mark.parametrize(("code", "http_status"), DYNAMODB_ERRORS)
@fault_case
def test_webhook_table_error_is_5xx_failure_counted_nothing_written(
    webhook: WebhookDriver,
    code: str,
    http_status: int,
    capsys: pytest.CaptureFixture[str],
    logs: LogCapture,
) -> None:
    _seed(webhook)
    before = scan_all(TABLE)
    capsys.readouterr()
    delivery = webhook.sign(_update())

    with Stubber(dynamodb_client()) as aws:
        aws.add_client_error("put_item", service_error_code=code, http_status_code=http_status)
        response = webhook.post(delivery)
        aws.assert_no_pending_responses()

    assert 500 <= response.status <= 599
    assert response.body["status"] == "error"
    counts = metric_counts(capsys.readouterr().out, "webhook")
    assert counts["SyncAttempts"] == 1
    assert counts["SyncFailures"] == 1
    assert scan_all(TABLE) == before
    errors = [record for record in logs.records if record["level"] == "ERROR"]
    assert errors
    assert errors[0]["errorCode"] == code
    assert delivery.headers["svix-signature"] not in logs.text
    assert webhook.secret not in logs.text
    # Svix retries: once the table is back, the same delivery is applied.
    assert webhook.post(webhook.sign(delivery.body, message_id=delivery.message_id)).body == {
        "status": "applied"
    }


class TestTableUnreachable:
    """The user table behind an endpoint that hangs or refuses: the suite's handler fixtures on it."""

    @pytest.fixture(params=OUTAGES)
    def users_table(self, request: pytest.FixtureRequest) -> str:
        """Overrides tests/conftest.py's moto table, for `webhook` and `pem_authorizer` in this class."""
        table: str = request.getfixturevalue(f"{request.param}_table")  # tests/reliability/conftest.py
        return table

    @fault_case
    def test_webhook_is_5xx_and_counts_the_failure(
        self, webhook: WebhookDriver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Hanging: read timeouts and bounded retries end in a 5xx (so Svix retries), as refused does."""
        capsys.readouterr()
        response = webhook.post(webhook.sign(_update()))
        assert 500 <= response.status <= 599
        assert response.body["status"] == "error"
        counts = metric_counts(capsys.readouterr().out, "webhook")
        assert counts["SyncAttempts"] == 1
        assert counts["SyncFailures"] == 1

    @fault_case
    def test_authorizer_still_allows_and_counts_the_failure(
        self, pem_authorizer: ModuleType, key: SigningKey, capsys: pytest.CaptureFixture[str]
    ) -> None:
        capsys.readouterr()
        response = authorize_bearer(pem_authorizer, FakeLambdaContext(), _token(key))
        assert response["isAuthorized"] is True
        assert metric_counts(capsys.readouterr().out, "authorizer")["SyncFailures"] == 1


def test_aws_clients_fail_fast() -> None:
    """A hanging table must end in a 5xx well inside Lambda/API Gateway limits (29 s), not in a
    timeout: short connect/read timeouts and bounded attempts (test_time_budget.py times every
    function against its template Timeout)."""
    reset_clients()
    try:
        for client, max_connect, max_read, max_attempts in (
            (dynamodb_client(), 0.5, 1, 2),
            (health_clients().dynamodb, 1, 1, 2),
            (health_clients().cloudwatch, 1, 1, 2),
        ):
            config: Any = client.meta.config  # botocore-stubs do not declare Config's options
            assert config.connect_timeout <= max_connect
            assert config.read_timeout <= max_read
            assert config.retries["total_max_attempts"] <= max_attempts
    finally:
        reset_clients()


# ---------------------------------------------------------------- authorizer


@pytest.mark.parametrize(("code", "http_status"), DYNAMODB_ERRORS)
@fault_case
def test_authorizer_table_error_still_allows_and_counts_failure(
    pem_authorizer: ModuleType,
    key: SigningKey,
    code: str,
    http_status: int,
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    with Stubber(dynamodb_client()) as aws:
        aws.add_client_error("get_item", service_error_code=code, http_status_code=http_status)
        aws.add_client_error("update_item", service_error_code=code, http_status_code=http_status)
        response = authorize_bearer(pem_authorizer, lambda_context, _token(key))
        aws.assert_no_pending_responses()
    assert response["isAuthorized"] is True
    assert response["context"]["userId"] == USER_ID
    counts = metric_counts(capsys.readouterr().out, "authorizer")
    assert counts["SyncAttempts"] == 1
    assert counts["SyncFailures"] == 1
    assert scan_all(TABLE) == []


@pytest.fixture
def jwks_authorizer(
    key: SigningKey,
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
) -> Iterator[tuple[ModuleType, JwksServer]]:
    monkeypatch.delenv("CLERK_JWT_KEY", raising=False)
    monkeypatch.delenv("CLERK_AUTHORIZED_PARTIES", raising=False)
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)
    with JwksServer(key) as server:
        monkeypatch.setenv("CLERK_JWKS_URL", server.url)
        yield function_loader("authorizer"), server


def _denied_reason(logs: LogCapture) -> str:
    denials = [record for record in logs.records if record["message"] == "authorizer denied"]
    assert len(denials) == 1, logs.text
    reason: str = denials[0]["reason"]
    return reason


@pytest.mark.parametrize(
    "fault",
    ["down", "http-503", "not-json", "slow-beyond-timeout"],
)
@fault_case
def test_jwks_unavailable_at_cold_start_denies(
    jwks_authorizer: tuple[ModuleType, JwksServer],
    key: SigningKey,
    fault: str,
    lambda_context: FakeLambdaContext,
    logs: LogCapture,
) -> None:
    module, server = jwks_authorizer
    if fault == "down":
        server.down()
    elif fault == "http-503":
        server.fail(503)
    elif fault == "not-json":
        server.serve_body(b"<html>maintenance</html>")
    else:
        server.slow(3.0)  # the authorizer's JWKS fetch gives up after 2 s
    token = _token(key)
    assert authorize_bearer(module, lambda_context, token) == {"isAuthorized": False}
    assert _denied_reason(logs) == "jwks_unavailable"
    assert token not in logs.text


@pytest.mark.parametrize("fault", ["down", "slow-beyond-timeout"])
@fault_case
def test_cached_jwks_key_keeps_working_when_endpoint_fails(
    jwks_authorizer: tuple[ModuleType, JwksServer],
    key: SigningKey,
    fault: str,
    lambda_context: FakeLambdaContext,
) -> None:
    module, server = jwks_authorizer
    assert authorize_bearer(module, lambda_context, _token(key))["isAuthorized"] is True
    fetched = server.request_count
    server.down() if fault == "down" else server.slow(3.0)
    for _ in range(3):
        assert authorize_bearer(module, lambda_context, _token(key))["isAuthorized"] is True
    assert server.request_count == fetched  # served from the cached key set


# ---------------------------------------------------------------- health


@pytest.fixture
def health(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> Callable[[], tuple[int, dict[str, Any]]]:
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "0")

    def get() -> tuple[int, dict[str, Any]]:
        module = function_loader("health")
        response = check_http_response(
            module.lambda_handler(http_api_event("GET", "/health"), lambda_context)
        )
        return response.status, response.body

    return get


def _assert_sync_rate_down(status: int, body: dict[str, Any]) -> None:
    assert status == 503
    assert body["status"] == "error"
    down = body["error"]["syncFailureRate"]
    assert down["status"] == "down"
    assert isinstance(down["message"], str)
    assert down["message"]
    assert body["details"]["userTable"] == {"status": "up"}


@pytest.mark.parametrize(
    ("code", "http_status"), [("InternalServiceError", 500), ("Throttling", 400), ("ServiceUnavailable", 503)]
)
@fault_case
def test_health_cloudwatch_error_is_503_with_message(
    health: Callable[[], tuple[int, dict[str, Any]]], code: str, http_status: int
) -> None:
    with Stubber(health_clients().cloudwatch) as aws:
        aws.add_client_error("get_metric_data", service_error_code=code, http_status_code=http_status)
        if code in THROTTLING_ERROR_CODES:  # a throttle is retried once (CONTRACT §7): throttled again
            aws.add_client_error("get_metric_data", service_error_code=code, http_status_code=http_status)
        status, body = health()
        aws.assert_no_pending_responses()
    _assert_sync_rate_down(status, body)
    assert code in body["error"]["syncFailureRate"]["message"]


@pytest.mark.parametrize("outage", OUTAGES)
@fault_case
def test_health_cloudwatch_outage_still_answers_503(
    health: Callable[[], tuple[int, dict[str, Any]]],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    outage: str,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", outage_endpoint(request, outage))
    reset_clients()
    try:
        status, body = health()
    finally:
        reset_clients()
    _assert_sync_rate_down(status, body)
