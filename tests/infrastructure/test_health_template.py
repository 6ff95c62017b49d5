"""template.yaml, health side: the public route, least privilege, the alarm and the dashboard read
exactly the metrics the functions emit ({service, Source}) and the query /health makes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from usersync.api.health import sync_metric_queries
from usersync.runtime.metrics import SyncMetric
from usersync.runtime.settings import HealthSettings
from usersync_dev.template import load_template

PARAMETER_VALUES = {
    "AWS::Region": "us-east-1",
    "Stage": "dev",
    "SyncFailureThreshold": "0.05",
    "SyncMinAttempts": "20",
    "SyncFailureRateAlarm.Arn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:usersync-dev-sync",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def substitute(value: Any) -> Any:
    """Resolve a `!Sub` string with the values above (fails on anything else)."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    assert isinstance(text, str)
    return re.sub(r"\$\{([^}]+)\}", lambda match: PARAMETER_VALUES[match.group(1)], text)


def emitted_identity(template: dict[str, Any]) -> tuple[str, str]:
    """(namespace, service) the functions emit under, from the Globals environment."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    return substitute(variables["POWERTOOLS_METRICS_NAMESPACE"]), variables["POWERTOOLS_SERVICE_NAME"]


# ---------------------------------------------------------------- the function


def test_health_route_is_public_get(template: dict[str, Any]) -> None:
    events = template["Resources"]["HealthFunction"]["Properties"]["Events"]
    (event,) = events.values()
    assert event["Type"] == "HttpApi"
    properties = event["Properties"]
    assert (properties["Method"], properties["Path"]) == ("GET", "/health")
    assert properties["ApiId"] == {"Ref": "UsersApi"}
    assert properties["Auth"] == {"Authorizer": "NONE"}


def test_get_health_has_its_own_low_route_throttle(template: dict[str, Any]) -> None:
    """The public route costs a GetMetricData per uncached answer: its own stage RouteSettings, keyed
    by exactly the route key its event declares, from parameters whose defaults sit well below the
    stage default (100/s, burst 200)."""
    api = template["Resources"]["UsersApi"]["Properties"]
    (event,) = template["Resources"]["HealthFunction"]["Properties"]["Events"].values()
    route_key = f"{event['Properties']['Method']} {event['Properties']['Path']}"
    assert route_key == "GET /health"
    health = api["RouteSettings"][route_key]
    assert health == {
        "ThrottlingRateLimit": {"Ref": "HealthThrottleRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "HealthThrottleBurstLimit"},
    }
    parameters = template["Parameters"]
    rate = parameters["HealthThrottleRateLimit"]["Default"]
    burst = parameters["HealthThrottleBurstLimit"]["Default"]
    assert 1 <= rate <= 10
    assert rate <= burst
    default = api["DefaultRouteSettings"]
    assert rate < default["ThrottlingRateLimit"]
    assert burst < default["ThrottlingBurstLimit"]
    assert set(api["RouteSettings"]) == {route_key}  # the other routes keep the stage default


def test_health_iam_actions_are_exactly_describe_table_and_get_metric_data(template: dict[str, Any]) -> None:
    statements = [
        statement
        for policy in template["Resources"]["HealthFunction"]["Properties"]["Policies"]
        for statement in policy["Statement"]
    ]
    granted: dict[str, Any] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            granted[action] = statement["Resource"]
    assert set(granted) == {"dynamodb:DescribeTable", "cloudwatch:GetMetricData"}
    assert granted["dynamodb:DescribeTable"] == {"Fn::GetAtt": ["UsersTable", "Arn"]}


def test_health_settings_come_from_the_parameters_with_the_same_defaults(template: dict[str, Any]) -> None:
    properties = template["Resources"]["HealthFunction"]["Properties"]
    variables = properties["Environment"]["Variables"]
    parameters = {
        "SYNC_FAILURE_THRESHOLD": "SyncFailureThreshold",
        "SYNC_WINDOW_MINUTES": "SyncWindowMinutes",
        "SYNC_MIN_ATTEMPTS": "SyncMinAttempts",
    }
    assert {name: variables[name] for name in parameters} == {
        name: {"Ref": parameter} for name, parameter in parameters.items()
    }
    assert not any(name.startswith("CLERK_") for name in variables)  # no secret for a public endpoint
    defaults = {name: str(template["Parameters"][p]["Default"]) for name, p in parameters.items()}
    code = HealthSettings.from_env(
        {"USERS_TABLE_NAME": "t", "POWERTOOLS_METRICS_NAMESPACE": "n"}
        | defaults
        | {"POWERTOOLS_SERVICE_NAME": "s"}
    )
    assert (code.failure_threshold, code.window_minutes, code.min_attempts) == (0.05, 15, 20)
    assert properties["Timeout"] > 3  # the check's own deadline (2.5 s) fits inside


# ---------------------------------------------------------------- the alarm


def alarm_metrics(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    alarm = template["Resources"]["SyncFailureRateAlarm"]
    return {query["Id"]: query for query in alarm["Properties"]["Metrics"]}


def test_alarm_math_is_failures_over_attempts_with_a_minimum_attempts_guard(template: dict[str, Any]) -> None:
    properties = template["Resources"]["SyncFailureRateAlarm"]["Properties"]
    assert properties["ComparisonOperator"] == "GreaterThanThreshold"
    assert properties["Threshold"] == {"Ref": "SyncFailureThreshold"}
    assert properties["TreatMissingData"] == "notBreaching"
    metrics = alarm_metrics(template)
    returned = [query_id for query_id, query in metrics.items() if query.get("ReturnData", True)]
    assert returned == ["failureRate"]
    rate = metrics["failureRate"]["Expression"]
    assert rate == {"Fn::Sub": "IF(attempts >= ${SyncMinAttempts}, failures / attempts, 0)"}
    for metric in ("attempts", "failures"):
        assert metrics[metric]["Expression"] == (
            f"FILL({metric}Webhook, 0) + FILL({metric}Authorizer, 0) + FILL({metric}Reconcile, 0)"
        )


def metric_stat_keys(queries: list[dict[str, Any]]) -> set[tuple[str, str, frozenset[tuple[str, str]]]]:
    keys = set()
    for query in queries:
        if "MetricStat" not in query:
            continue
        metric = query["MetricStat"]["Metric"]
        dimensions = frozenset((d["Name"], d["Value"]) for d in metric["Dimensions"])
        keys.add((substitute(metric["Namespace"]), metric["MetricName"], dimensions))
    return keys


def test_alarm_reads_exactly_what_health_reads_on_service_and_source(template: dict[str, Any]) -> None:
    namespace, service = emitted_identity(template)
    alarm_queries = list(alarm_metrics(template).values())
    for query in alarm_queries:
        if "MetricStat" in query:
            stat = query["MetricStat"]
            assert stat["Stat"] == "Sum"
            assert {d["Name"] for d in stat["Metric"]["Dimensions"]} == {"service", "Source"}
    # The alarm always reads reconciliation's writes too (0 without the function); /health reads them
    # only where the function is deployed (RECONCILE_DEPLOYED), so a stack without it pays for 4.
    environment = {
        "USERS_TABLE_NAME": "t",
        "POWERTOOLS_METRICS_NAMESPACE": namespace,
        "POWERTOOLS_SERVICE_NAME": service,
    }

    def expected(*sources: str) -> set[tuple[str, str, frozenset[tuple[str, str]]]]:
        return {
            (namespace, metric, frozenset({("service", service), ("Source", source)}))
            for metric in ("SyncAttempts", "SyncFailures")
            for source in sources
        }

    with_reconcile = HealthSettings.from_env(environment | {"RECONCILE_DEPLOYED": "true"})
    without = HealthSettings.from_env(environment)
    assert metric_stat_keys(alarm_queries) == expected("webhook", "authorizer", "reconcile")
    assert metric_stat_keys([dict(q) for q in sync_metric_queries(with_reconcile)]) == expected(
        "webhook", "authorizer", "reconcile"
    )
    without_queries = [dict(q) for q in sync_metric_queries(without)]
    assert metric_stat_keys(without_queries) == expected("webhook", "authorizer")


def test_health_counts_reconciliation_exactly_where_the_template_deploys_it(template: dict[str, Any]) -> None:
    variable = template["Resources"]["HealthFunction"]["Properties"]["Environment"]["Variables"]
    assert variable["RECONCILE_DEPLOYED"] == {"Fn::If": ["HasClerkSecretKey", "true", "false"]}
    assert template["Resources"]["ReconcileFunction"]["Condition"] == "HasClerkSecretKey"


def test_alarm_notifies_the_optional_topic(template: dict[str, Any]) -> None:
    properties = template["Resources"]["SyncFailureRateAlarm"]["Properties"]
    for key in ("AlarmActions", "OKActions"):
        assert properties[key] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""


# ---------------------------------------------------------------- the dashboard


def test_dashboard_is_optional_and_off_by_default(template: dict[str, Any]) -> None:
    dashboard = template["Resources"]["SyncDashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    assert dashboard["Condition"] == "WantsDashboard"
    assert template["Conditions"]["WantsDashboard"] == {"Fn::Equals": [{"Ref": "CreateDashboard"}, "true"]}
    assert template["Parameters"]["CreateDashboard"]["Default"] == "false"


def test_dashboard_shows_every_sync_metric_on_the_emitted_dimensions(template: dict[str, Any]) -> None:
    namespace, service = emitted_identity(template)
    body = json.loads(substitute(template["Resources"]["SyncDashboard"]["Properties"]["DashboardBody"]))
    shown: set[tuple[str, str]] = set()
    alarms: list[str] = []
    for widget in body["widgets"]:
        alarms += widget["properties"].get("alarms", [])
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):  # a math expression row
                continue
            names = [item for item in row if isinstance(item, str)]
            assert names[0] == namespace
            dimensions = dict(zip(names[2::2], names[3::2], strict=True))
            assert dimensions.keys() == {"service", "Source"}
            assert dimensions["service"] == service
            shown.add((names[1], dimensions["Source"]))
    metric_names = {name for name, _ in shown}
    assert metric_names == {
        SyncMetric.ATTEMPTS,
        SyncMetric.FAILURES,
        SyncMetric.STALE,
        SyncMetric.WEBHOOK_REJECTED,
        SyncMetric.AUTHORIZER_DENIED,
    }
    assert ("WebhookRejected", "webhook") in shown
    assert ("AuthorizerDenied", "authorizer") in shown
    for metric in ("SyncAttempts", "SyncFailures", "SyncStale"):
        assert {(metric, "webhook"), (metric, "authorizer")} <= shown
    assert alarms == [PARAMETER_VALUES["SyncFailureRateAlarm.Arn"]]
