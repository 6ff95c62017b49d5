"""GET /health end to end on moto: the real handler, the user table, and CloudWatch metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.helpers import EmittedMetric, FakeLambdaContext, WebhookDriver, authorize_bearer, emitted_metrics
from tests.reliability.support import unused_port
from usersync.runtime.aws import health_clients
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, mint_token, new_user_id, session_claims
from usersync_dev.emf import forward_emf_lines

NAMESPACE = "usersync-test"  # POWERTOOLS_METRICS_NAMESPACE in tests/conftest.py
SERVICE = "usersync"  # POWERTOOLS_SERVICE_NAME in tests/conftest.py


def put_sync_metrics(
    attempts: int, failures: int, *, source: str = "webhook", minutes_ago: float = 1, service: str = SERVICE
) -> None:
    """Publish counts the way CloudWatch stores what Powertools emits: dimensions {service, Source}."""
    timestamp = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    dimensions = [{"Name": "service", "Value": service}, {"Name": "Source", "Value": source}]
    data: list[dict[str, Any]] = [
        {
            "MetricName": name,
            "Dimensions": dimensions,
            "Timestamp": timestamp,
            "Value": value,
            "Unit": "Count",
        }
        for name, value in (("SyncAttempts", attempts), ("SyncFailures", failures))
        if value
    ]
    if data:
        boto3.client("cloudwatch").put_metric_data(Namespace=NAMESPACE, MetricData=data)  # type: ignore[arg-type]


@dataclass
class CallCounter:
    """Counts AWS API calls a client makes, through botocore's own event hooks."""

    calls: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


@dataclass
class HealthEndpoint:
    loader: Callable[[str], ModuleType]
    context: FakeLambdaContext
    module: ModuleType | None = None

    def load(self) -> ModuleType:
        """A cold start: settings read from the environment as it is now."""
        self.module = self.loader("health")
        return self.module

    def get(self) -> tuple[int, dict[str, Any]]:
        module = self.module or self.load()
        response = module.lambda_handler(http_api_event("GET", "/health"), self.context)
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def health(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> HealthEndpoint:
    return HealthEndpoint(function_loader, lambda_context)


def rate(body: dict[str, Any]) -> dict[str, Any]:
    indicator: dict[str, Any] = body["details"]["syncFailureRate"]
    return indicator


# ---------------------------------------------------------------- failure rate


# The failure-rate indicator with the default settings and no metrics in the window.
NO_TRAFFIC_RATE = {
    "status": "up",
    "failureRate": 0.0,
    "attempts": 0,
    "failures": 0,
    "threshold": 0.05,
    "minAttempts": 20,
    "windowMinutes": 15,
}


def test_no_traffic_is_up_with_zero_attempts(health: HealthEndpoint) -> None:
    status, body = health.get()
    assert status == 200
    assert body == {
        "status": "ok",
        "info": body["details"],
        "error": {},
        "details": {"userTable": {"status": "up"}, "syncFailureRate": NO_TRAFFIC_RATE},
    }


def test_four_percent_failures_is_up(health: HealthEndpoint) -> None:
    put_sync_metrics(100, 4)
    status, body = health.get()
    assert status == 200
    assert body["status"] == "ok"
    assert rate(body) | {} == body["info"]["syncFailureRate"]
    assert (rate(body)["status"], rate(body)["failureRate"], rate(body)["attempts"]) == ("up", 0.04, 100)
    assert "message" not in rate(body)


def test_six_percent_failures_is_503_down_with_a_message(health: HealthEndpoint) -> None:
    put_sync_metrics(100, 6)
    status, body = health.get()
    assert status == 503
    assert body["status"] == "error"
    assert set(body["error"]) == {"syncFailureRate"}
    assert set(body["info"]) == {"userTable"}
    down = body["error"]["syncFailureRate"]
    assert down == rate(body)
    assert (down["status"], down["failureRate"], down["attempts"], down["failures"]) == ("down", 0.06, 100, 6)
    assert "0.060" in down["message"]
    assert "threshold" in down["message"]


def test_high_rate_below_min_attempts_is_up(health: HealthEndpoint) -> None:
    put_sync_metrics(10, 5)
    status, body = health.get()
    assert status == 200
    assert (rate(body)["status"], rate(body)["failureRate"], rate(body)["attempts"]) == ("up", 0.5, 10)


def test_both_sources_are_added_up(health: HealthEndpoint) -> None:
    put_sync_metrics(60, 1, source="webhook")
    put_sync_metrics(40, 5, source="authorizer")
    status, body = health.get()
    assert status == 503
    assert (rate(body)["attempts"], rate(body)["failures"], rate(body)["failureRate"]) == (100, 6, 0.06)


def test_reconciliation_failures_count_where_it_is_deployed(
    health: HealthEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_sync_metrics(90, 1, source="webhook")
    put_sync_metrics(10, 9, source="reconcile")  # a nightly repair whose writes failed
    monkeypatch.setenv("RECONCILE_DEPLOYED", "true")
    status, body = health.get()
    assert status == 503
    assert (rate(body)["attempts"], rate(body)["failures"]) == (100, 10)


def test_reconciliation_is_not_queried_where_it_is_not_deployed(health: HealthEndpoint) -> None:
    put_sync_metrics(90, 1, source="webhook")
    put_sync_metrics(10, 9, source="reconcile")
    status, body = health.get()
    assert status == 200
    assert (rate(body)["attempts"], rate(body)["failures"]) == (90, 1)


def test_metrics_outside_the_window_are_not_counted(health: HealthEndpoint) -> None:
    put_sync_metrics(100, 50, minutes_ago=20)  # a past outage, 20 min ago: outside the 15-min window
    put_sync_metrics(30, 1, minutes_ago=14)
    put_sync_metrics(30, 0, minutes_ago=0)  # just now
    status, body = health.get()
    assert status == 200
    assert (rate(body)["attempts"], rate(body)["failures"]) == (60, 1)


def test_metrics_of_another_service_or_dimension_set_are_not_counted(health: HealthEndpoint) -> None:
    put_sync_metrics(100, 100, service="other-service")
    boto3.client("cloudwatch").put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": "SyncFailures",
                "Value": 50,
                "Dimensions": [{"Name": "Source", "Value": "webhook"}],
            }
        ],
    )
    put_sync_metrics(25, 0)
    status, body = health.get()
    assert status == 200
    assert (rate(body)["attempts"], rate(body)["failures"]) == (25, 0)


@pytest.mark.parametrize(
    ("published", "setting", "value", "status", "indicator"),
    [
        ((100, 50, 20), "WINDOW_MINUTES", 30, 503, {"attempts": 100, "windowMinutes": 30}),
        ((100, 6, 1), "FAILURE_THRESHOLD", 0.1, 200, {"status": "up", "failureRate": 0.06, "threshold": 0.1}),
        ((10, 5, 1), "MIN_ATTEMPTS", 5, 503, {"status": "down", "minAttempts": 5}),
    ],
    ids=["window", "threshold", "min-attempts"],
)
def test_setting_is_read_from_the_environment(
    health: HealthEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    published: tuple[int, int, float],
    setting: str,
    value: float,
    status: int,
    indicator: dict[str, Any],
) -> None:
    """`published` = (attempts, failures, minutes ago): judged otherwise under the default setting."""
    attempts, failures, minutes_ago = published
    put_sync_metrics(attempts, failures, minutes_ago=minutes_ago)
    monkeypatch.setenv(f"SYNC_{setting}", str(value))
    answered, body = health.get()
    assert answered == status
    assert {name: rate(body)[name] for name in indicator} == indicator


# ---------------------------------------------------------------- dependencies failing


def test_missing_table_is_503_with_user_table_down(health: HealthEndpoint) -> None:
    boto3.client("dynamodb").delete_table(TableName="usersync-test-users")
    status, body = health.get()
    assert status == 503
    assert body["status"] == "error"
    assert set(body["error"]) == {"userTable"}
    assert set(body["info"]) == {"syncFailureRate"}
    assert body["error"]["userTable"]["status"] == "down"
    assert "not found" in body["error"]["userTable"]["message"]


@pytest.mark.parametrize(
    ("service", "named", "down", "info"),
    [
        ("CLOUDWATCH", "CloudWatch", "syncFailureRate", {"userTable": {"status": "up"}}),
        ("DYNAMODB", "DynamoDB", "userTable", {"syncFailureRate": NO_TRAFFIC_RATE}),
    ],
    ids=["cloudwatch", "dynamodb"],
)
def test_unreachable_dependency_is_503_with_its_indicator_down(
    health: HealthEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    named: str,
    down: str,
    info: dict[str, Any],
) -> None:
    # Nothing listens there: every call is refused (moto only answers AWS hostnames).
    monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", f"http://127.0.0.1:{unused_port()}")
    status, body = health.get()
    assert status == 503
    assert set(body["error"]) == {down}
    assert body["info"] == info
    indicator = body["error"][down]
    assert indicator["status"] == "down"
    assert named in indicator["message"]
    assert "attempts" not in indicator  # no number is better than a made-up 0


def test_cloudwatch_error_response_is_down_with_its_code(health: HealthEndpoint) -> None:
    from botocore.stub import Stubber

    module = health.load()
    with Stubber(health_clients()[1]) as stubber:
        # Not a throttle (that one is retried once: tests/unit/test_health.py): one answer, one message.
        stubber.add_client_error("get_metric_data", "InternalServiceError", "Internal error", 500)
        status, body = health.get()
    assert module is health.module
    assert status == 503
    message = body["error"]["syncFailureRate"]["message"]
    assert message == "CloudWatch GetMetricData call failed: InternalServiceError"


# ---------------------------------------------------------------- cache


def test_second_call_is_served_from_the_cache(health: HealthEndpoint) -> None:
    put_sync_metrics(100, 6)
    health.load()
    counter = CallCounter()
    for client in health_clients():
        client.meta.events.register("before-call.*.*", counter)
    first = health.get()
    put_sync_metrics(900, 0)  # would make it healthy, but the cached answer is reused
    second = health.get()
    assert first == second
    assert first[0] == 503
    assert counter.count("GetMetricData") == 1
    assert counter.count("DescribeTable") == 1


def test_without_cache_every_call_reads_cloudwatch(
    health: HealthEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "0")
    put_sync_metrics(100, 6)
    health.load()
    counter = CallCounter()
    health_clients()[1].meta.events.register("before-call.cloudwatch.GetMetricData", counter)
    assert health.get()[0] == 503
    put_sync_metrics(900, 0)
    status, body = health.get()
    assert status == 200
    assert rate(body)["attempts"] == 1000
    assert counter.count("GetMetricData") == 2


# ---------------------------------------------------------------- what the functions really emit


@dataclass
class EmittingHandlers:
    """The real webhook and authorizer handlers, whose printed EMF is read back and sent to CloudWatch."""

    health: HealthEndpoint
    webhook_secret: str
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def load(self, function: str) -> ModuleType:
        return self.health.loader(function)

    def load_with_missing_table(self, function: str) -> ModuleType:
        """A cold start whose user table does not exist: every write of this copy fails."""
        self.monkeypatch.setenv("USERS_TABLE_NAME", "usersync-test-missing")
        module = self.load(function)
        self.monkeypatch.setenv("USERS_TABLE_NAME", "usersync-test-users")
        return module

    def deliver_user_created(self, module: ModuleType, **user: Any) -> int:
        """A signed `user.created` of a new user through the webhook `module`; its HTTP status."""
        webhook = WebhookDriver(module, self.webhook_secret, self.health.context)
        return webhook.send(clerk_event("user.created", clerk_user(new_user_id(), **user))).status

    def authorize_new_user(self, module: ModuleType, key: SigningKey) -> bool:
        """A session token of a new user, signed by `key`, through the authorizer `module`: allowed?"""
        token = mint_token(key, session_claims(new_user_id(), email="ada@example.com"))
        allowed: bool = authorize_bearer(module, self.health.context, token)["isAuthorized"]
        return allowed

    def printed(self) -> tuple[str, list[EmittedMetric]]:
        """What the handlers printed since the last call, and the sync metrics in it."""
        stdout = self.capsys.readouterr().out
        return stdout, [m for m in emitted_metrics(stdout) if m.name in ("SyncAttempts", "SyncFailures")]


@pytest.fixture
def handlers(
    health: HealthEndpoint,
    webhook_secret: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> EmittingHandlers:
    return EmittingHandlers(health, webhook_secret, monkeypatch, capsys)


def test_reads_back_exactly_what_the_webhook_emits(
    health: HealthEndpoint, handlers: EmittingHandlers
) -> None:
    """Real signed webhooks through the real handler; their EMF output goes to CloudWatch unchanged."""
    webhook = handlers.load("webhook")
    broken_webhook = handlers.load_with_missing_table("webhook")
    handlers.printed()

    assert [handlers.deliver_user_created(webhook, email="ada@example.com") for _ in range(20)] == [200] * 20
    assert [handlers.deliver_user_created(broken_webhook, email="ada@example.com") for _ in range(2)] == [
        500
    ] * 2
    stdout, sync_metrics = handlers.printed()

    assert {(m.namespace, tuple(sorted(m.dimensions.items()))) for m in sync_metrics} == {
        (NAMESPACE, (("Source", "webhook"), ("service", SERVICE)))
    }
    assert forward_emf_lines(stdout, boto3.client("cloudwatch")) >= 24

    status, body = health.get()
    assert (rate(body)["attempts"], rate(body)["failures"], rate(body)["failureRate"]) == (22, 2, 0.091)
    assert status == 503
    assert rate(body)["status"] == "down"


def test_reads_back_exactly_what_the_authorizer_emits_together_with_the_webhook(
    health: HealthEndpoint, handlers: EmittingHandlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real tokens through the real authorizer (writes on first sight of a user), plus webhooks."""
    key = SigningKey.generate("ins_health_key")
    monkeypatch.delenv("CLERK_JWKS_URL", raising=False)
    monkeypatch.setenv("CLERK_JWT_KEY", key.public_pem())
    authorizer = handlers.load("authorizer")
    broken_authorizer = handlers.load_with_missing_table("authorizer")
    webhook = handlers.load("webhook")
    handlers.printed()

    # A failed sync never denies a valid token: the failure only shows in the metrics.
    assert all(handlers.authorize_new_user(authorizer, key) for _ in range(12))
    assert all(handlers.authorize_new_user(broken_authorizer, key) for _ in range(3))
    assert [handlers.deliver_user_created(webhook) for _ in range(5)] == [200] * 5
    stdout, sync_metrics = handlers.printed()

    assert {tuple(sorted(m.dimensions.items())) for m in sync_metrics} == {
        (("Source", source), ("service", SERVICE)) for source in ("authorizer", "webhook")
    }
    forward_emf_lines(stdout, boto3.client("cloudwatch"))

    status, body = health.get()
    assert (rate(body)["attempts"], rate(body)["failures"], rate(body)["failureRate"]) == (20, 3, 0.15)
    assert status == 503
    assert rate(body)["status"] == "down"
