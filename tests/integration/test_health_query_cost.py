"""What one uncached GET /health asks CloudWatch for: one GetMetricData call of at most 4 metrics.

CloudWatch bills GetMetricData per metric requested, so the query list is the bill (CONTRACT §7: at
most one MetricStat per metric and source). Asserted on the request the real handler makes (the
parameters botocore serializes, through its own event hook), against moto with datapoints put in the
order Powertools writes them ({Source, service}), which the same 4 queries must still find.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.helpers import FakeLambdaContext
from usersync.runtime.aws import health_clients
from usersync_dev.apigw import http_api_event

NAMESPACE = "usersync-test"  # POWERTOOLS_METRICS_NAMESPACE in tests/conftest.py


class GetMetricDataRequests:
    """The parameters of every GetMetricData request a client sends (botocore `provide-client-params`)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        self.requests.append(params)


def put_in_powertools_order(metric: str, source: str, value: float) -> None:
    boto3.client("cloudwatch").put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "Source", "Value": source}, {"Name": "service", "Value": "usersync"}],
                "Timestamp": datetime.now(UTC) - timedelta(minutes=1),
                "Value": value,
                "Unit": "Count",
            }
        ],
    )


@pytest.fixture
def health_module(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    function_loader: Callable[[str], ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> ModuleType:
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "0")  # every call uncached: each one is billed
    return function_loader("health")


def test_one_uncached_health_call_is_one_get_metric_data_of_at_most_four_metric_stats(
    health_module: ModuleType, lambda_context: FakeLambdaContext
) -> None:
    put_in_powertools_order("SyncAttempts", "webhook", 70)
    put_in_powertools_order("SyncFailures", "webhook", 5)
    put_in_powertools_order("SyncAttempts", "authorizer", 30)
    put_in_powertools_order("SyncFailures", "authorizer", 1)
    requests = GetMetricDataRequests()
    for client in health_clients():
        client.meta.events.register("provide-client-params.cloudwatch.GetMetricData", requests)

    response = health_module.lambda_handler(http_api_event("GET", "/health"), lambda_context)

    rate = json.loads(response["body"])["details"]["syncFailureRate"]
    assert (rate["attempts"], rate["failures"], rate["status"]) == (100, 6, "down")
    (request,) = requests.requests
    queries = request["MetricDataQueries"]
    stats = [query["MetricStat"] for query in queries if "MetricStat" in query]
    assert len(stats) <= 4
    series = {
        (
            stat["Metric"]["MetricName"],
            frozenset((d["Name"], d["Value"]) for d in stat["Metric"]["Dimensions"]),
        )
        for stat in stats
    }
    assert len(series) == len(stats), "a series asked for twice is paid for twice"
    assert all("Expression" not in query or "SEARCH" not in query["Expression"] for query in queries)


def test_a_second_uncached_call_is_again_one_request(
    health_module: ModuleType, lambda_context: FakeLambdaContext
) -> None:
    requests = GetMetricDataRequests()
    health_clients()[1].meta.events.register("provide-client-params.cloudwatch.GetMetricData", requests)
    for _ in range(2):
        health_module.lambda_handler(http_api_event("GET", "/health"), lambda_context)
    assert [len(request["MetricDataQueries"]) for request in requests.requests] == [4, 4]
