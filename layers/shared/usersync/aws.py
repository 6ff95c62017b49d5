"""AWS clients, created once per container and reused across invocations.

Timeouts are short and retries bounded: a Lambda behind API Gateway has seconds, not minutes, and
a caller that must retry (Svix) is better served by a fast 5xx than by a slow one.

Clients come from botocore directly: boto3 adds nothing we use (no resources, no S3 transfers)
and its import costs cold-start time. One botocore session per container loads the service models
once for every client.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient

_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "total_max_attempts": 3},
)

# /health must answer within 3 s even when a dependency hangs: sub-second connect, 1 s read, one retry
# at most (standard-mode backoff before it is under 1 s). The monitor's next poll is the real retry.
_HEALTH_CONFIG = Config(
    connect_timeout=0.5,
    read_timeout=1,
    retries={"mode": "standard", "total_max_attempts": 2},
)


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def _client(service_name: str, for_health: bool = False) -> Any:
    return _session().create_client(service_name, config=_HEALTH_CONFIG if for_health else _CONFIG)


def dynamodb_client() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def cloudwatch_client() -> CloudWatchClient:
    client: CloudWatchClient = _client("cloudwatch")
    return client


def health_clients() -> tuple[DynamoDBClient, CloudWatchClient]:
    """DynamoDB and CloudWatch clients with the health check's tighter time budget."""
    dynamodb: DynamoDBClient = _client("dynamodb", for_health=True)
    cloudwatch: CloudWatchClient = _client("cloudwatch", for_health=True)
    return dynamodb, cloudwatch


def reset_clients() -> None:
    """Forget cached clients and the session (tests switch endpoints and credentials between cases)."""
    _client.cache_clear()
    _session.cache_clear()
