"""The health check's parts: the rate rule, the CloudWatch query, the indicators, cache and deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from usersync.api.health import (
    HealthCheck,
    HealthReport,
    SyncCounts,
    check_sync_failure_rate,
    check_user_table,
    evaluate_failure_rate,
    read_sync_counts,
    sync_metric_queries,
)
from usersync.runtime.aws import health_clients
from usersync.runtime.budget import TimeBudget, time_budget
from usersync.runtime.settings import HealthSettings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef

TABLE = "usersync-test-users"


def settings(**overrides: str) -> HealthSettings:
    env = {
        "USERS_TABLE_NAME": TABLE,
        "POWERTOOLS_METRICS_NAMESPACE": "usersync-unit",
        "POWERTOOLS_SERVICE_NAME": "usersync",
    }
    return HealthSettings.from_env(env | overrides)


def put(metric: str, value: float, *, source: str = "webhook", minutes_ago: float = 1) -> None:
    boto3.client("cloudwatch").put_metric_data(
        Namespace="usersync-unit",
        MetricData=[
            {
                "MetricName": metric,
                "Value": value,
                "Timestamp": datetime.now(UTC) - timedelta(minutes=minutes_ago),
                "Dimensions": [{"Name": "service", "Value": "usersync"}, {"Name": "Source", "Value": source}],
            }
        ],
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Records the parameters of every API call a client makes (botocore event hook)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def record(client: Any) -> Recorder:
    recorder = Recorder()
    client.meta.events.register("provide-client-params.*.*", recorder)
    return recorder


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("attempts", "failures", "status", "rate"),
    [
        (0, 0, "up", 0.0),  # no traffic
        (100, 4, "up", 0.04),
        (100, 5, "up", 0.05),  # at the threshold is not above it
        (100, 6, "down", 0.06),
        (10, 5, "up", 0.5),  # too few attempts to judge
        (19, 19, "up", 1.0),
        (20, 2, "down", 0.1),  # exactly the minimum: judged
        (3000, 1000, "down", 0.333),  # rounded to 3 decimals
    ],
)
def test_failure_rate_rule(attempts: int, failures: int, status: str, rate: float) -> None:
    indicator = evaluate_failure_rate(SyncCounts(attempts, failures), settings())
    assert (indicator["status"], indicator["failureRate"]) == (status, rate)
    assert (indicator["attempts"], indicator["failures"]) == (attempts, failures)
    assert ("message" in indicator) is (status == "down")


def test_rule_uses_configured_threshold_and_minimum() -> None:
    configured = settings(SYNC_FAILURE_THRESHOLD="0.2", SYNC_MIN_ATTEMPTS="5", SYNC_WINDOW_MINUTES="60")
    assert evaluate_failure_rate(SyncCounts(100, 20), configured)["status"] == "up"
    down = evaluate_failure_rate(SyncCounts(5, 2), configured)
    assert down["status"] == "down"
    assert (down["threshold"], down["minAttempts"], down["windowMinutes"]) == (
        0.2,
        5,
        60,
    )
    assert "2 of 5 attempts" in down["message"]
    assert "60 minutes" in down["message"]


# ---------------------------------------------------------------- the CloudWatch query


def test_queries_are_plain_metric_stats_on_service_and_source() -> None:
    queries = sync_metric_queries(settings(POWERTOOLS_SERVICE_NAME="svc", POWERTOOLS_METRICS_NAMESPACE="ns"))
    # CloudWatch bills per metric requested: one MetricStat per (metric, source), no more (CONTRACT §7).
    assert len(queries) == 4
    assert len({query["Id"] for query in queries}) == 4
    seen: dict[tuple[str, str], list[list[str]]] = {}
    for query in queries:
        assert "Expression" not in query
        stat = query["MetricStat"]
        assert stat["Stat"] == "Sum"
        assert stat["Metric"]["Namespace"] == "ns"
        dimensions = stat["Metric"]["Dimensions"]
        by_name = {d["Name"]: d["Value"] for d in dimensions}
        assert set(by_name) == {"service", "Source"}
        assert by_name["service"] == "svc"
        seen.setdefault((stat["Metric"]["MetricName"], by_name["Source"]), []).append(
            [d["Name"] for d in dimensions]
        )
    # every (metric, source) pair once, its dimensions in one canonical order (by name, case-insensitive)
    assert seen == {
        (metric, source): [["service", "Source"]]
        for metric in ("SyncAttempts", "SyncFailures")
        for source in ("webhook", "authorizer")
    }


@pytest.mark.usefixtures("aws")
def test_datapoints_put_in_either_dimension_order_are_counted_once() -> None:
    cloudwatch = boto3.client("cloudwatch")
    dimension_orders: tuple[list[DimensionTypeDef], ...] = (
        [{"Name": "service", "Value": "usersync"}, {"Name": "Source", "Value": "webhook"}],
        [{"Name": "Source", "Value": "authorizer"}, {"Name": "service", "Value": "usersync"}],  # EMF order
    )
    for dimensions in dimension_orders:
        cloudwatch.put_metric_data(
            Namespace="usersync-unit",
            MetricData=[
                {"MetricName": "SyncAttempts", "Value": 7, "Dimensions": dimensions},
                {"MetricName": "SyncFailures", "Value": 1, "Dimensions": dimensions},
            ],
        )
    assert read_sync_counts(cloudwatch, settings(), datetime.now(UTC)) == SyncCounts(attempts=14, failures=2)


@pytest.mark.usefixtures("aws")
def test_without_a_service_name_the_query_matches_what_powertools_then_emits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given metrics emitted by Powertools with no POWERTOOLS_SERVICE_NAME (no `service` dimension)
    from aws_lambda_powertools import Metrics

    from tests.helpers import emitted_metrics

    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME")
    unnamed = Metrics(namespace="usersync-unit")
    unnamed.add_dimension(name="Source", value="webhook")
    unnamed.add_metric(name="SyncAttempts", unit="Count", value=9)
    unnamed.flush_metrics()
    (emitted,) = emitted_metrics(capsys.readouterr().out)
    assert emitted.dimensions == {"Source": "webhook"}
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_data(
        Namespace=emitted.namespace,
        MetricData=[
            {
                "MetricName": emitted.name,
                "Value": emitted.value,
                "Dimensions": [{"Name": name, "Value": value} for name, value in emitted.dimensions.items()],
            }
        ],
    )
    # When the check runs without a service name either, Then it reads them back
    unnamed_settings = HealthSettings.from_env(
        {"USERS_TABLE_NAME": TABLE, "POWERTOOLS_METRICS_NAMESPACE": "usersync-unit"}
    )
    assert read_sync_counts(cloudwatch, unnamed_settings, datetime.now(UTC)) == SyncCounts(9, 0)


@pytest.mark.usefixtures("aws")
def test_results_are_summed_per_metric_over_both_sources() -> None:
    # What CloudWatch answers (stubbed): every series of a metric adds up, each counted once.
    cloudwatch = boto3.client("cloudwatch")
    queries = sync_metric_queries(settings())
    values = {"SyncAttempts": [30.0, 20.0], "SyncFailures": [2.0]}
    results = [
        {
            "Id": query["Id"],
            "Label": query["Id"],
            "StatusCode": "Complete",
            "Timestamps": [datetime.now(UTC)] * len(values[query["MetricStat"]["Metric"]["MetricName"]]),
            "Values": values[query["MetricStat"]["Metric"]["MetricName"]],
        }
        for query in queries
    ]
    with Stubber(cloudwatch) as stubber:
        stubber.add_response("get_metric_data", {"MetricDataResults": results})
        counts = read_sync_counts(cloudwatch, settings(), datetime.now(UTC))
    assert counts == SyncCounts(attempts=100, failures=4)  # 50 + 50 and 2 + 2 over the two sources


@pytest.mark.usefixtures("aws")
def test_one_call_sums_every_minute_of_the_window_and_both_sources() -> None:
    for minutes_ago, value in ((0, 1), (1, 2), (7, 3), (14.5, 4)):
        put("SyncAttempts", value, minutes_ago=minutes_ago)
        put("SyncAttempts", 10 * value, source="authorizer", minutes_ago=minutes_ago)
    put("SyncFailures", 3, source="authorizer", minutes_ago=3)
    put("SyncAttempts", 500, minutes_ago=16)  # before the window
    put("SyncStale", 50)  # not an attempt
    cloudwatch = boto3.client("cloudwatch")
    recorder = record(cloudwatch)
    now = datetime.now(UTC)

    counts = read_sync_counts(cloudwatch, settings(), now)

    assert counts == SyncCounts(attempts=110, failures=3)
    assert recorder.names() == ["GetMetricData"]
    params = recorder.calls[0][1]
    assert len(params["MetricDataQueries"]) == 4  # one per (metric, source): what CloudWatch bills
    assert params["EndTime"] - params["StartTime"] == timedelta(minutes=15)
    assert now < params["EndTime"] <= now + timedelta(seconds=5)  # a datapoint stamped `now` is inside


@pytest.mark.usefixtures("aws")
def test_cloudwatch_error_is_a_down_indicator_not_an_exception() -> None:
    cloudwatch = boto3.client("cloudwatch")
    with Stubber(cloudwatch) as stubber:
        stubber.add_client_error("get_metric_data", "AccessDenied", "not allowed", 403)
        indicator = check_sync_failure_rate(cloudwatch, settings())
    assert indicator["status"] == "down"
    assert indicator["message"] == "CloudWatch GetMetricData call failed: AccessDenied"


def _results(attempts: float, failures: float) -> list[dict[str, Any]]:
    """A GetMetricData answer: `attempts` and `failures` on the webhook series, nothing elsewhere."""
    values = {"attemptsWebhook": [attempts], "failuresWebhook": [failures]}
    return [
        {"Id": query["Id"], "StatusCode": "Complete", "Values": values.get(query["Id"], [])}
        for query in sync_metric_queries(settings())
    ]


class Pauses:
    """Records the pauses the retry asks for instead of sleeping them (an injected clock, not a mock)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.mark.parametrize("code", ["ThrottlingException", "Throttling", "RequestLimitExceeded"])
@pytest.mark.usefixtures("aws")
def test_a_throttled_get_metric_data_is_retried_once_and_then_counts(code: str) -> None:
    cloudwatch = health_clients().cloudwatch
    pauses = Pauses()
    with Stubber(cloudwatch) as stubber:
        stubber.add_client_error("get_metric_data", code, "Rate exceeded", 400)
        stubber.add_response("get_metric_data", {"MetricDataResults": _results(40, 1)})
        indicator = check_sync_failure_rate(cloudwatch, settings(), pause=pauses)
        stubber.assert_no_pending_responses()
    assert indicator["status"] == "up"
    assert (indicator["attempts"], indicator["failures"]) == (40, 1)
    assert len(pauses.seconds) == 1
    assert 0 < pauses.seconds[0] < 0.5


@pytest.mark.usefixtures("aws")
def test_throttled_twice_is_down_with_a_message_naming_the_throttling() -> None:
    cloudwatch = health_clients().cloudwatch
    pauses = Pauses()
    with Stubber(cloudwatch) as stubber:
        stubber.add_client_error("get_metric_data", "ThrottlingException", "Rate exceeded", 400)
        stubber.add_client_error("get_metric_data", "ThrottlingException", "Rate exceeded", 400)
        indicator = check_sync_failure_rate(cloudwatch, settings(), pause=pauses)
        stubber.assert_no_pending_responses()  # exactly two calls: one retry, no more
    assert indicator["status"] == "down"
    assert indicator["throttled"] is True
    assert "throttled" in indicator["message"]
    assert "ThrottlingException" in indicator["message"]
    assert "threshold" not in indicator["message"]  # not mistaken for a failure rate above it
    assert len(pauses.seconds) == 1


@pytest.mark.usefixtures("aws")
def test_a_throttle_is_not_retried_when_the_budget_has_no_room() -> None:
    cloudwatch = health_clients().cloudwatch
    pauses = Pauses()
    # Less time left than one more attempt can take (connect + read timeouts, 1.5 s).
    with Stubber(cloudwatch) as stubber, time_budget(TimeBudget(time.monotonic() + 0.5)):
        stubber.add_client_error("get_metric_data", "ThrottlingException", "Rate exceeded", 400)
        indicator = check_sync_failure_rate(cloudwatch, settings(), pause=pauses)
        stubber.assert_no_pending_responses()
    assert indicator["status"] == "down"
    assert "throttled" in indicator["message"]
    assert pauses.seconds == []


@pytest.mark.usefixtures("aws")
def test_other_cloudwatch_errors_are_not_retried() -> None:
    cloudwatch = health_clients().cloudwatch
    pauses = Pauses()
    with Stubber(cloudwatch) as stubber:
        stubber.add_client_error("get_metric_data", "InternalServiceError", "oops", 500)
        indicator = check_sync_failure_rate(cloudwatch, settings(), pause=pauses)
    assert indicator["message"] == "CloudWatch GetMetricData call failed: InternalServiceError"
    assert "throttled" not in indicator
    assert pauses.seconds == []


@pytest.mark.usefixtures("aws")
def test_the_health_cloudwatch_client_leaves_the_one_retry_to_the_check() -> None:
    """botocore's standard mode would back off up to 2 s before its own retry, past the deadline."""
    cloudwatch: Any = health_clients().cloudwatch.meta.config  # botocore's Config is untyped here
    dynamodb: Any = health_clients().dynamodb.meta.config
    assert cloudwatch.retries["total_max_attempts"] == 1
    assert dynamodb.retries["total_max_attempts"] == 2


# ---------------------------------------------------------------- the table


def test_active_table_is_up(users_table: str) -> None:
    assert check_user_table(boto3.client("dynamodb"), users_table) == {"status": "up"}


@pytest.mark.usefixtures("aws")
def test_table_not_active_is_down() -> None:
    dynamodb = boto3.client("dynamodb")
    with Stubber(dynamodb) as stubber:
        stubber.add_response("describe_table", {"Table": {"TableName": TABLE, "TableStatus": "CREATING"}})
        indicator = check_user_table(dynamodb, TABLE)
    assert indicator == {"status": "down", "message": "user table is CREATING, not ACTIVE"}


@pytest.mark.usefixtures("aws")
def test_missing_table_is_down() -> None:
    indicator = check_user_table(boto3.client("dynamodb"), "no-such-table")
    assert indicator == {"status": "down", "message": "user table not found"}


# ---------------------------------------------------------------- report, cache, deadline


def test_report_splits_up_and_down_indicators() -> None:
    report = HealthReport({"a": {"status": "up"}, "b": {"status": "down", "message": "why"}})
    assert not report.healthy
    assert report.to_dict() == {
        "status": "error",
        "info": {"a": {"status": "up"}},
        "error": {"b": {"status": "down", "message": "why"}},
        "details": {"a": {"status": "up"}, "b": {"status": "down", "message": "why"}},
    }
    assert HealthReport({"a": {"status": "up"}}).to_dict()["status"] == "ok"


@pytest.mark.usefixtures("users_table")
def test_cached_report_is_reused_until_it_expires() -> None:
    clock = Clock()
    dynamodb, cloudwatch = health_clients()
    recorders = [record(dynamodb), record(cloudwatch)]
    check = HealthCheck(settings(), dynamodb, cloudwatch, cache_seconds=5, clock=clock)

    put("SyncAttempts", 100)
    put("SyncFailures", 10)
    first = check.run()
    put("SyncAttempts", 900)
    clock.now += 4.9
    cached = check.run()
    clock.now += 0.2
    fresh = check.run()

    assert cached is first
    assert not first.healthy
    assert fresh.healthy
    assert fresh.indicators["syncFailureRate"]["attempts"] == 1000
    assert [call for recorder in recorders for call in recorder.names()] == [
        "DescribeTable",
        "DescribeTable",
        "GetMetricData",
        "GetMetricData",
    ]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.usefixtures("users_table")
def test_a_hanging_dependency_is_down_after_the_deadline(
    black_hole: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usersync.runtime.aws import reset_clients

    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", black_hole)
    reset_clients()
    check = HealthCheck(settings(), *health_clients(), cache_seconds=0, deadline_seconds=0.2)
    report = check.run()
    assert report.indicators["userTable"] == {"status": "down", "message": "no answer within 0.2 s"}
    assert report.indicators["syncFailureRate"]["status"] == "up"


@pytest.mark.usefixtures("aws")
def test_an_unexpected_error_in_a_check_is_down_not_raised() -> None:
    dynamodb, cloudwatch = health_clients()
    check = HealthCheck(settings(), dynamodb, cloudwatch, cache_seconds=0)
    with Stubber(dynamodb) as stubber:
        stubber.add_response("describe_table", {})  # valid per the API model, but no Table
        report = check.run()
    assert report.indicators["userTable"] == {"status": "down", "message": "check failed: KeyError"}
