"""template.yaml is what users deploy, so it is tested like code: handlers, routes, least privilege, data.

The template is parsed with the CloudFormation-tag-aware loader (!Ref, !GetAtt, !Sub become dicts);
handlers are parsed with `ast`, never imported, so these checks need no AWS and no handler side effects.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.infrastructure.imports import runtime_imported_modules
from usersync_dev.template import REPO_ROOT, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
GLOBAL_FUNCTION: dict[str, Any] = TEMPLATE["Globals"]["Function"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
TABLE_ARN = {"Fn::GetAtt": ["UsersTable", "Arn"]}

# Least privilege, written down: every action each function may perform. Nothing else, no wildcards.
INTENDED_ACTIONS: dict[str, set[str]] = {
    # UpdateItem: the authorizer's profile write, and a Clerk record merged into a fresher token row.
    "WebhookFunction": {"dynamodb:PutItem", "dynamodb:UpdateItem", "secretsmanager:GetSecretValue"},
    "AuthorizerFunction": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
    "HealthFunction": {"dynamodb:DescribeTable", "cloudwatch:GetMetricData"},
    "MeFunction": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"},
    # BatchGetItem: a page's stored versions; Query: an organization's items (prune).
    "ReconcileFunction": {
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "secretsmanager:GetSecretValue",
    },
}
REQUIRED_FUNCTIONS = {"WebhookFunction", "AuthorizerFunction", "HealthFunction", "MeFunction"}
# (method, path) -> (function, authorizer); None means the API's default authorizer applies.
INTENDED_ROUTES: dict[tuple[str, str], tuple[str, str | None]] = {
    ("POST", "/webhooks/clerk"): ("WebhookFunction", "NONE"),
    ("GET", "/health"): ("HealthFunction", "NONE"),
    ("GET", "/me"): ("MeFunction", None),
}
# HTTP API integrations time out at 30 s; the authorizer must answer well before the API gives up.
MAX_TIMEOUTS = {"AuthorizerFunction": 5, "WebhookFunction": 10, "HealthFunction": 29, "MeFunction": 29}


def _effective(function: dict[str, Any], key: str) -> Any:
    return function["Properties"].get(key, GLOBAL_FUNCTION.get(key))


def _environment(function: dict[str, Any]) -> dict[str, Any]:
    variables = dict(GLOBAL_FUNCTION.get("Environment", {}).get("Variables", {}))
    variables.update(function["Properties"].get("Environment", {}).get("Variables", {}))
    return variables


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _is_table_arn(resource: Any) -> bool:
    return resource in (
        TABLE_ARN,
        {"Fn::Sub": "${UsersTable.Arn}"},
        {"Fn::GetAtt": ["OrganizationsTable", "Arn"]},
        {"Fn::Sub": "${OrganizationsTable.Arn}/index/UserOrganizationsIndex"},
    )


def _http_routes() -> dict[tuple[str, str], tuple[str, str | None]]:
    routes: dict[tuple[str, str], tuple[str, str | None]] = {}
    for name, function in FUNCTIONS.items():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            assert props.get("ApiId") == {"Ref": "UsersApi"}, f"{name}: route not on UsersApi"
            key = (props["Method"].upper(), props["Path"])
            assert key not in routes, f"route {key} defined twice"
            routes[key] = (name, props.get("Auth", {}).get("Authorizer"))
    return routes


# ---------------------------------------------------------------- handlers


def _exports(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return True
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def test_the_four_functions_are_defined() -> None:
    assert set(FUNCTIONS) >= REQUIRED_FUNCTIONS


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_handler_file_exists_and_exports_the_handler(name: str) -> None:
    props = FUNCTIONS[name]["Properties"]
    module, _, attribute = props["Handler"].rpartition(".")
    path = REPO_ROOT / props["CodeUri"] / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{name}: handler file {path.relative_to(REPO_ROOT)} is missing"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert _exports(tree, attribute), f"{name}: {path.relative_to(REPO_ROOT)} defines no `{attribute}`"


def test_every_function_directory_is_deployed() -> None:
    deployed = {Path(f["Properties"]["CodeUri"]).name for f in FUNCTIONS.values()}
    on_disk = {p.parent.name for p in (REPO_ROOT / "functions").glob("*/app.py")}
    assert on_disk <= deployed, f"handlers not in template.yaml: {sorted(on_disk - deployed)}"


# ---------------------------------------------------------------- routes and authorizer


def test_routes_methods_paths_and_auth() -> None:
    assert _http_routes() == INTENDED_ROUTES


def test_authorizer_is_the_default_and_configured_for_http_api_simple_responses() -> None:
    auth = RESOURCES["UsersApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "ClerkAuthorizer"
    authorizer = auth["Authorizers"]["ClerkAuthorizer"]
    # The function, or its SnapStart alias (tests/infrastructure/test_snapstart_template.py translates both).
    assert authorizer["FunctionArn"] == {
        "Fn::If": [
            "SnapStartOn",
            {"Ref": "AuthorizerFunction.Alias"},
            {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]},
        ]
    }
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableSimpleResponses"] is True
    # SAM's HttpApi creates no invoke permission for a Lambda authorizer unless asked (500 on /me).
    assert authorizer["EnableFunctionDefaultPermissions"] is True
    # Identity source and cache depend on AuthMode/AuthorizerCacheTtlSeconds: test_deploy_parameters.py
    # checks them on the translated template for each value.
    assert authorizer["Identity"]["Fn::If"][0] == "CookieAuth"


def test_api_has_access_logging_and_throttling() -> None:
    props = RESOURCES["UsersApi"]["Properties"]
    access = props["AccessLogSettings"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(access["Format"])  # the format is JSON with $context variables inside strings
    assert {"requestId", "routeKey", "status"} <= set(fields)
    throttling = props["DefaultRouteSettings"]
    assert throttling["ThrottlingBurstLimit"] > 0
    assert throttling["ThrottlingRateLimit"] > 0
    assert RESOURCES["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# ---------------------------------------------------------------- least privilege


def test_iam_actions_per_function_are_exactly_the_intended_ones() -> None:
    assert set(FUNCTIONS) <= set(INTENDED_ACTIONS), "a new function needs its row in INTENDED_ACTIONS"
    granted: dict[str, set[str]] = {}
    for name, function in FUNCTIONS.items():
        props = function["Properties"]
        assert "Role" not in props, f"{name}: an external role escapes this check"
        actions: set[str] = set()
        for policy in props.get("Policies", []):
            # Only inline statements: a managed policy or SAM policy template grants more than we list.
            assert isinstance(policy, dict), f"{name}: {policy}"
            assert set(policy) == {"Statement"}, f"{name}: {policy}"
            for statement in policy["Statement"]:
                assert statement["Effect"] == "Allow"
                actions |= set(_as_list(statement["Action"]))
        granted[name] = actions
    assert granted == {name: INTENDED_ACTIONS[name] for name in FUNCTIONS}
    assert not [a for actions in granted.values() for a in actions if "*" in a], "wildcard action"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_iam_resources_are_scoped(name: str) -> None:
    for policy in FUNCTIONS[name]["Properties"].get("Policies", []):
        for statement in policy["Statement"]:
            resources = _as_list(statement["Resource"])
            for action in _as_list(statement["Action"]):
                service = action.split(":", 1)[0]
                if action == "cloudwatch:GetMetricData":
                    continue  # supports no resource-level permissions: "*" is the only option
                for resource in resources:
                    if service == "dynamodb":
                        assert _is_table_arn(resource), f"{name}: {action} on {resource}"
                    elif service == "secretsmanager":
                        param = resource.get("Ref") if isinstance(resource, dict) else None
                        assert param in PARAMETERS, f"{name}: {action} on {resource}"
                        assert param.endswith("Arn"), f"{name}: {action} on {resource}"
                    else:
                        pytest.fail(f"{name}: unexpected service in {action}")


# ---------------------------------------------------------------- runtime, timeouts, configuration


def test_globals_python313_arm64_tracing_and_powertools() -> None:
    # python3.13: Lambda durable functions (reconciliation, CONTRACT §12) need python3.13+.
    assert GLOBAL_FUNCTION["Runtime"] == "python3.13"
    # One runtime everywhere: no function overrides it, and the layer's Makefile compiles for it.
    overrides = {n: f["Properties"]["Runtime"] for n, f in FUNCTIONS.items() if "Runtime" in f["Properties"]}
    assert set(overrides.values()) <= {"python3.13"}, overrides
    makefile = (REPO_ROOT / "layers" / "shared" / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^PYTHON_RUNTIME_VERSION := 3\.13$", makefile, re.MULTILINE)
    assert GLOBAL_FUNCTION["Architectures"] == ["arm64"]
    assert GLOBAL_FUNCTION["Tracing"] == "Active"
    assert GLOBAL_FUNCTION["Layers"] == [{"Ref": "SharedLayer"}]
    env = GLOBAL_FUNCTION["Environment"]["Variables"]
    assert env["USERS_TABLE_NAME"] == {"Ref": "UsersTable"}
    assert env["POWERTOOLS_SERVICE_NAME"] == "usersync"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == {"Fn::Sub": "usersync-${Stage}"}
    assert env["LOG_LEVEL"]
    for name, function in FUNCTIONS.items():
        for key in ("Runtime", "Architectures", "Layers"):
            assert key not in function["Properties"], f"{name} overrides Globals.{key}"


@pytest.mark.parametrize(("name", "limit"), sorted(MAX_TIMEOUTS.items()))
def test_timeouts(name: str, limit: int) -> None:
    assert 1 <= _effective(FUNCTIONS[name], "Timeout") <= limit
    assert _effective(FUNCTIONS[name], "MemorySize") >= 256


def test_each_function_gets_only_its_own_configuration() -> None:
    env = {name: _environment(f) for name, f in FUNCTIONS.items()}
    assert env["WebhookFunction"]["CLERK_WEBHOOK_SECRET_ARN"] == {"Ref": "ClerkWebhookSecretArn"}
    assert {"CLERK_JWKS_URL", "CLERK_JWT_KEY", "CLERK_ISSUER", "CLERK_AUTHORIZED_PARTIES"} <= set(
        env["AuthorizerFunction"]
    )
    assert {"SYNC_FAILURE_THRESHOLD", "SYNC_WINDOW_MINUTES", "SYNC_MIN_ATTEMPTS"} <= set(
        env["HealthFunction"]
    )
    for name in ("HealthFunction", "MeFunction", "AuthorizerFunction"):
        assert not [k for k in env[name] if "SECRET" in k], f"{name} must not see a Clerk secret"
    literals = [v for variables in env.values() for v in variables.values() if isinstance(v, str)]
    assert not [v for v in literals if v.startswith(("whsec_", "sk_live_", "sk_test_"))]


def test_parameters_hold_no_secret_and_the_webhook_secret_is_required() -> None:
    expected = {"Stage", "ClerkIssuer", "ClerkJwksUrl", "ClerkAuthorizedParties", "ClerkWebhookSecretArn"}
    assert expected | {"AlarmTopicArn", "LogRetentionDays"} <= set(PARAMETERS)
    webhook_secret = PARAMETERS["ClerkWebhookSecretArn"]
    assert "Default" not in webhook_secret, "the webhook secret ARN must be supplied at deploy time"
    assert webhook_secret["AllowedPattern"].startswith("^arn:")
    for name, parameter in PARAMETERS.items():
        if "secret" in name.lower():
            # Secrets are passed by reference (a Secrets Manager ARN), never as a value with a default.
            assert name.endswith("Arn"), name
            assert not parameter.get("Default"), f"{name} has a default"
    assert PARAMETERS["AlarmTopicArn"]["Default"] == ""


def test_each_function_logs_to_its_own_explicit_group_with_retention() -> None:
    groups = []
    for name, function in FUNCTIONS.items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        groups.append(group)
        log_group = RESOURCES[group]
        assert log_group["Type"] == "AWS::Logs::LogGroup"
        assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        # A name derived from the function would be created after it: Lambda could create it first.
        assert name not in json.dumps(log_group["Properties"]["LogGroupName"]), name
    assert len(groups) == len(set(groups))


# ---------------------------------------------------------------- data


def test_user_table_keys_protection_and_no_index() -> None:
    table = RESOURCES["UsersTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    # A generated name unless a retained table is adopted: a retained table of a deleted stack never
    # blocks redeploying the stage.
    assert props["TableName"] == {
        "Fn::If": ["AdoptsTable", {"Ref": "AdoptTableName"}, {"Ref": "AWS::NoValue"}]
    }
    assert PARAMETERS["AdoptTableName"]["Default"] == ""
    assert props["KeySchema"] == [{"AttributeName": "userId", "KeyType": "HASH"}]
    attributes = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert attributes == {"userId": "S"}
    # No reader queried the email index: it doubled the write cost of every user change
    # (docs/decisions/data-and-writes.md).
    assert "GlobalSecondaryIndexes" not in props
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["BillingMode"] == "PAY_PER_REQUEST"


# ---------------------------------------------------------------- the shared layer


def test_one_shared_layer_built_by_sam_for_python313_arm64() -> None:
    layers = {n: r for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::LayerVersion"}
    assert list(layers) == ["SharedLayer"]
    layer = layers["SharedLayer"]
    # SAM runs layers/shared/Makefile (build-SharedLayer): python/usersync/ plus the pinned requirements,
    # compiled to Python 3.13 bytecode (tests/infrastructure/test_sam_build.py builds it).
    assert layer["Properties"]["ContentUri"] == "layers/shared/"
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["CompatibleRuntimes"] == [GLOBAL_FUNCTION["Runtime"]]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_layer_source_holds_only_the_package_and_its_requirements() -> None:
    source = REPO_ROOT / "layers" / "shared"
    entries = {p.name for p in source.iterdir() if p.name != "__pycache__"}
    assert entries == {"Makefile", "requirements.txt", "usersync"}
    files = [p for p in (source / "usersync").rglob("*") if "__pycache__" not in p.parts and p.is_file()]
    dev_only = [
        p for p in files if p.name.startswith(("test_", "conftest")) or p.suffix not in (".py", ".typed")
    ]
    assert not dev_only


def _requirement_names(lines: list[str]) -> set[str]:
    return {Requirement(line).name.lower() for line in lines}


def _layer_requirements() -> list[str]:
    text = (REPO_ROOT / "layers" / "shared" / "requirements.txt").read_text(encoding="utf-8")
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def test_layer_requirements_are_the_project_dependencies_pinned_with_their_closure() -> None:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    layer = [Requirement(line) for line in _layer_requirements()]
    # Every direct dependency ships; every pin is exact (the layer is installed --no-deps).
    assert _requirement_names(project["dependencies"]) <= {r.name.lower() for r in layer}
    assert all(str(r.specifier).startswith("==") for r in layer)
    # svix is a dev dependency only: its API client is never imported by a handler.
    assert "svix" not in {r.name.lower() for r in layer} | _requirement_names(project["dependencies"])
    assert "standardwebhooks" in _requirement_names(project["dependencies"])


def _runtime_modules() -> set[str]:
    """Top-level modules of the layer's requirements and their dependencies (what `sam build` installs)."""
    by_distribution: dict[str, set[str]] = {}
    for module, distributions in metadata.packages_distributions().items():
        for distribution in distributions:
            by_distribution.setdefault(distribution.lower().replace("_", "-"), set()).add(module)
    pending = [Requirement(line) for line in _layer_requirements()]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for extra in requirement.extras or {""}:
            for spec in metadata.requires(name) or []:
                dependency = Requirement(spec)
                if dependency.marker is None or dependency.marker.evaluate({"extra": extra}):
                    pending.append(dependency)
    return {module for name in seen for module in by_distribution.get(name, set())}


def test_layer_package_imports_only_runtime_dependencies() -> None:
    # snapshot_restore_py: provided by Lambda's Python runtime (SnapStart hooks), imported guarded.
    allowed = set(sys.stdlib_module_names) | {"usersync", "snapshot_restore_py"} | _runtime_modules()
    assert {"aws_lambda_powertools", "jwt", "standardwebhooks", "pydantic", "boto3"} <= allowed
    offenders = {}
    for path in sorted((REPO_ROOT / "layers" / "shared" / "usersync").rglob("*.py")):
        imported = runtime_imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        extra = {name.split(".")[0] for name in imported} - allowed
        if extra:
            offenders[path.name] = sorted(extra)
    assert offenders == {}, "the layer would import dev-only or uninstalled modules"


# ---------------------------------------------------------------- monitoring and outputs


def test_alarm_is_failures_over_attempts_on_the_emitted_dimension_set() -> None:
    alarm = RESOURCES["SyncFailureRateAlarm"]["Properties"]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == {"Ref": "SyncFailureThreshold"}
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }
    namespace = GLOBAL_FUNCTION["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    service = GLOBAL_FUNCTION["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    stats = set()
    for query in queries.values():
        if "MetricStat" not in query:
            continue
        metric = query["MetricStat"]["Metric"]
        assert metric["Namespace"] == namespace
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        # Powertools emits exactly {service, Source}: any other set matches no metric at all.
        assert set(dimensions) == {"service", "Source"}
        assert dimensions["service"] == service
        assert query["MetricStat"]["Stat"] == "Sum"
        assert query["MetricStat"]["Period"] * alarm["EvaluationPeriods"] == 15 * 60
        stats.add((metric["MetricName"], dimensions["Source"]))
    sources = ("webhook", "authorizer", "reconcile")  # reconciliation's writes count too (CONTRACT §11)
    assert stats == {(m, s) for m in ("SyncAttempts", "SyncFailures") for s in sources}
    (result,) = [q for q in queries.values() if q.get("ReturnData")]
    for query in queries.values():
        expression = query.get("Expression")
        if expression is None:
            continue
        text = expression["Fn::Sub"] if isinstance(expression, dict) else expression
        # Metric-math ids start lowercase; functions (FILL, IF) are uppercase. Every id must exist.
        ids = set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", re.sub(r"\$\{[^}]*\}", "", text)))
        assert ids <= set(queries), f"{query['Id']} references unknown ids {ids - set(queries)}"
    result_text = json.dumps(result["Expression"])
    assert "failures / attempts" in result_text
    assert "${SyncMinAttempts}" in result_text


def test_outputs_give_the_api_webhook_url_and_table() -> None:
    outputs = TEMPLATE["Outputs"]
    assert "${UsersApi}" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
    webhook_url = outputs["WebhookUrl"]["Value"]["Fn::Sub"]
    assert "${UsersApi}" in webhook_url
    assert webhook_url.endswith("/webhooks/clerk")
    assert outputs["UsersTableName"]["Value"] == {"Ref": "UsersTable"}


# ---------------------------------------------------------------- samconfig.toml


def test_samconfig_deploy_defaults() -> None:
    with (REPO_ROOT / "samconfig.toml").open("rb") as handle:
        config = tomllib.load(handle)
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"] == "usersync-dev"
    assert default["global"]["parameters"]["region"]
    deploy = default["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert deploy["confirm_changeset"] is True
    assert deploy["resolve_s3"] is True
    assert default["validate"]["parameters"]["lint"] is True
    overrides = dict(pair.split("=", 1) for pair in shlex.split(deploy["parameter_overrides"]))
    assert overrides["Stage"] == "dev"
    assert set(overrides) <= set(PARAMETERS), "parameter_overrides names a parameter the template lacks"
    assert not [v for v in overrides.values() if v.startswith(("whsec_", "sk_"))], (
        "a secret value in samconfig"
    )
