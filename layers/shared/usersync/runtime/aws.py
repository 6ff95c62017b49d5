"""AWS clients, created once per container and reused across invocations.

Every client has explicit connect/read timeouts and botocore's standard retry mode bounded to two
attempts, and checks the invocation's time budget (usersync.runtime.budget) before each attempt: an attempt
that could not finish before the budget runs out is not started; the call fails with
`TimeBudgetExhaustedError` (a BotoCoreError, so callers handle it like any other SDK failure) and the
function answers as the contract says for that dependency, instead of Lambda killing it mid-call.

Clients come from botocore directly: boto3 adds nothing we use (no resources, no S3 transfers)
and its import costs cold-start time. One botocore session per container loads the service models
once for every client.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from usersync.runtime.budget import current_budget

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

SECRET_CACHE_SECONDS = 300

# DynamoDB and Secrets Manager answer in milliseconds; a second without a byte is an outage, not a
# slow answer. Two attempts (standard mode: a throttled or dropped call is retried once, with jitter)
# and the budget check keep the worst case of a call to ~2 s, and never past the Lambda's deadline.
_CONFIG = Config(
    connect_timeout=0.5,
    read_timeout=1,
    retries={"mode": "standard", "total_max_attempts": 2},
)

# /health must answer even when a dependency hangs: same limits; its checks also run under a deadline.
_HEALTH_CONFIG = _CONFIG
# CloudWatch for /health: no SDK retry. Standard mode would back off up to 2 s on a throttled
# GetMetricData, past the check's deadline; usersync.api.health retries a throttle once itself, with a
# short pause and only inside the budget, and otherwise reports the throttling by name.
_HEALTH_CLOUDWATCH_CONFIG = _CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 1}))


# Error codes that mean "too much traffic, try later" (DynamoDB's and the SDK's common ones).
THROTTLING_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TransactionInProgressException",
        "SlowDown",
    }
)


class TimeBudgetExhaustedError(BotoCoreError):
    """Not enough of the invocation's time is left for another attempt of this call."""

    fmt = "Not enough time left for {operation}: {remaining:.2f} s left, an attempt may take {needed:.2f} s"


def error_code(exc: BaseException) -> str:
    """The AWS error code of a failed call (`ThrottlingException`...), or the exception's type name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def attempt_seconds(client: Any) -> float:
    """The longest one attempt of a call on `client` can take: connecting plus waiting for the answer."""
    config = client.meta.config
    return float(config.connect_timeout) + float(config.read_timeout)


def _budget_guard(attempt_limit: float) -> Any:
    """A botocore `before-send` hook: refuse an attempt that cannot end before the budget does."""

    def check(event_name: str = "", **_: Any) -> None:
        remaining = current_budget().remaining()
        if remaining < attempt_limit:
            operation = ".".join(event_name.split(".")[1:]) or "AWS call"
            raise TimeBudgetExhaustedError(operation=operation, remaining=remaining, needed=attempt_limit)

    return check


@cache
def _service_models(search_path: str | None) -> botocore.loaders.Loader:
    """botocore's loader caches the service models it read; it outlives `reset_clients` (the models
    never change), so a test's fresh session does not read and parse the JSON again (~70 ms a client)."""
    return botocore.loaders.create_loader(search_path)


@cache
def _session() -> botocore.session.Session:
    session = botocore.session.get_session()
    # As botocore's own default loader: the session's `data_path` (AWS_DATA_PATH) is searched first.
    session.register_component("data_loader", _service_models(session.get_config_variable("data_path")))
    return session


@cache
def _client(service_name: str, for_health: bool = False) -> Any:
    config = _CONFIG
    if for_health:
        config = _HEALTH_CLOUDWATCH_CONFIG if service_name == "cloudwatch" else _HEALTH_CONFIG
    client = _session().create_client(service_name, config=config)
    # Raised from a before-send handler, the error takes the path of a failed send: botocore does not
    # retry it (not a retryable error) and the call raises it.
    client.meta.events.register(
        f"before-send.{client.meta.service_model.service_id.hyphenize()}",
        _budget_guard(attempt_seconds(client)),
    )
    return client


def dynamodb_client() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


class HealthClients(NamedTuple):
    dynamodb: DynamoDBClient
    cloudwatch: CloudWatchClient


def health_clients() -> HealthClients:
    """DynamoDB and CloudWatch clients for the health check, by name (not by tuple position)."""
    return HealthClients(
        dynamodb=_client("dynamodb", for_health=True), cloudwatch=_client("cloudwatch", for_health=True)
    )


class SecretUnavailableError(Exception):
    """A secret could not be read from Secrets Manager (down, denied, out of time): retryable."""

    def __init__(self, code: str) -> None:
        super().__init__(f"secret unavailable: {code}")
        self.code = code


@cache
def _secrets_provider() -> Any:
    # Only functions configured with a secret ARN need Parameters: imported on first use.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    secrets: SecretsManagerClient = _client("secretsmanager")
    return SecretsProvider(boto3_client=secrets)


def secret_string(secret_arn: str) -> str:
    """A plain-string secret, through Powertools Parameters (cached SECRET_CACHE_SECONDS per container)
    on the budgeted Secrets Manager client. Raises SecretUnavailableError; never logs the value."""
    try:
        value = _secrets_provider().get(secret_arn, max_age=SECRET_CACHE_SECONDS)
    except Exception as exc:  # GetParameterError wraps every SDK failure; the cause names the AWS error
        raise SecretUnavailableError(error_code(exc.__cause__ or exc)) from exc
    return value.decode() if isinstance(value, bytes) else str(value)


def reset_clients() -> None:
    """Forget cached clients, the secret cache and the session (tests switch endpoints between cases)."""
    _secrets_provider.cache_clear()
    _client.cache_clear()
    _session.cache_clear()
