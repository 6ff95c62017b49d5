"""The reconciliation function in template.yaml: off by default, least privilege, durable (CONTRACT §12).

Conditions are evaluated with the parameters' defaults (and with overrides), so the assertions are
about what CloudFormation would deploy, not about how the YAML is spelled.
"""

from __future__ import annotations

from typing import Any

import pytest

from usersync_dev.template import load_template

TEMPLATE = load_template()
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:clerk-sk-AbCdEf"


def _resolve(node: Any, params: dict[str, str]) -> Any:
    """Evaluate the intrinsics conditions and these properties use (Ref to parameters, Equals, Not, If)."""
    if isinstance(node, list):
        return [_resolve(item, params) for item in node]
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((key, value),) = node.items()
    if key == "Ref" and value in params:
        return params[value]
    if key == "Fn::Equals":
        left, right = _resolve(value, params)
        return str(left) == str(right)
    if key == "Fn::Not":
        (inner,) = _resolve(value, params)
        return not inner
    if key == "Fn::If":
        condition, when_true, when_false = value
        chosen = when_true if _condition(condition, params) else when_false
        return _resolve(chosen, params)
    if key == "Condition":
        return _condition(value, params)
    return node


def _condition(name: str, params: dict[str, str]) -> bool:
    return bool(_resolve(TEMPLATE["Conditions"][name], params))


def _parameters(**overrides: str) -> dict[str, str]:
    params = {name: str(spec.get("Default", "")) for name, spec in TEMPLATE["Parameters"].items()}
    params.update(overrides)
    return params


def _function() -> dict[str, Any]:
    resource: dict[str, Any] = TEMPLATE["Resources"]["ReconcileFunction"]
    return resource


def _schedule() -> dict[str, Any]:
    (event,) = _function()["Properties"]["Events"].values()
    assert event["Type"] == "Schedule"
    properties: dict[str, Any] = event["Properties"]
    return properties


def test_the_daily_schedule_is_disabled_by_default() -> None:
    schedule = _schedule()
    assert schedule["Schedule"] == "rate(1 day)"
    assert TEMPLATE["Parameters"]["ReconcileScheduleEnabled"]["Default"] == "false"
    assert "Enabled" not in schedule  # SAM needs a literal boolean there; State takes the parameter
    assert _resolve(schedule["State"], _parameters(ClerkSecretKeyArn=SECRET_ARN)) == "DISABLED"


def test_the_schedule_parameter_turns_it_on() -> None:
    params = _parameters(ClerkSecretKeyArn=SECRET_ARN, ReconcileScheduleEnabled="true")
    assert _resolve(_schedule()["State"], params) == "ENABLED"


@pytest.mark.parametrize(("secret_arn", "deployed"), [("", False), (SECRET_ARN, True)])
def test_the_function_and_its_log_group_exist_only_with_a_clerk_secret(
    secret_arn: str, deployed: bool
) -> None:
    params = _parameters(ClerkSecretKeyArn=secret_arn)
    for name in ("ReconcileFunction", "ReconcileLogGroup"):
        assert _condition(TEMPLATE["Resources"][name]["Condition"], params) is deployed


def test_the_function_may_only_read_versions_put_scan_and_read_its_secret() -> None:
    statements = [
        statement for policy in _function()["Properties"]["Policies"] for statement in policy["Statement"]
    ]
    granted: dict[str, list[Any]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            granted.setdefault(action, []).append(statement["Resource"])
    users, organizations = (
        {"Fn::GetAtt": ["UsersTable", "Arn"]},
        {"Fn::GetAtt": ["OrganizationsTable", "Arn"]},
    )
    assert granted == {
        "dynamodb:BatchGetItem": [users, organizations],
        "dynamodb:PutItem": [users, organizations],
        "dynamodb:UpdateItem": [users],
        "dynamodb:Scan": [users, organizations],
        "dynamodb:Query": [organizations],
        "secretsmanager:GetSecretValue": [{"Ref": "ClerkSecretKeyArn"}],
    }


def test_the_function_is_configured_for_a_long_run_with_its_own_logs() -> None:
    properties = _function()["Properties"]
    assert properties["Timeout"] == 900
    # One full vCPU: the pass validates 500 users a page; below it, the page's CPU work sets the pace.
    assert properties["MemorySize"] == 1769
    assert properties["CodeUri"] == "functions/reconcile/"
    assert properties["Environment"]["Variables"]["CLERK_SECRET_KEY_ARN"] == {"Ref": "ClerkSecretKeyArn"}
    assert _resolve(properties["Environment"]["Variables"]["RECONCILE_PRUNE"], _parameters()) == "false"
    assert properties["LoggingConfig"]["LogGroup"] == {"Ref": "ReconcileLogGroup"}
    log_group = TEMPLATE["Resources"]["ReconcileLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_function_is_durable_and_invoked_through_its_alias() -> None:
    properties = _function()["Properties"]
    durable = properties["DurableConfig"]
    # An execution ends before the next daily schedule starts another; its history is kept two weeks.
    assert 3600 <= durable["ExecutionTimeout"] < 86400
    assert 1 <= durable["RetentionPeriodInDays"] <= 365
    # Durable functions are invoked by a qualified ARN: always an alias, which SAM's schedule targets.
    assert properties["AutoPublishAlias"] == "live"
    assert "SnapStart" not in properties
    # A failed execution is never restarted from scratch (the SDK retries steps instead).
    assert properties["EventInvokeConfig"]["MaximumRetryAttempts"] == 0


def test_the_rate_cap_is_a_parameter_passed_to_the_function() -> None:
    parameter = TEMPLATE["Parameters"]["ReconcileMaxRequestsPer10s"]
    assert parameter["Default"] == 200
    assert parameter["MaxValue"] == 1000
    variables = _function()["Properties"]["Environment"]["Variables"]
    assert variables["RECONCILE_MAX_REQUESTS_PER_10S"] == {"Ref": "ReconcileMaxRequestsPer10s"}
