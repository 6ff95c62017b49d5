"""AWS clients, created once per container and reused across invocations.

Timeouts are short and retries bounded: a Lambda behind API Gateway has seconds, not minutes, and
a caller that must retry (Svix) is better served by a fast 5xx than by a slow one.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient

_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "total_max_attempts": 3},
)


@cache
def _client(service_name: str) -> Any:
    return boto3.session.Session().client(service_name, config=_CONFIG)  # type: ignore[call-overload]


def dynamodb_client() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def cloudwatch_client() -> CloudWatchClient:
    client: CloudWatchClient = _client("cloudwatch")
    return client


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints and credentials between cases)."""
    _client.cache_clear()
