"""The user table: one conditional PutItem per change, never read-then-write.

A write lands only if it is new information: the item does not exist yet, or it is not a tombstone
and its `updatedAt` is strictly older. A tombstone lands unless an earlier tombstone is stored.
Everything else fails the condition and is reported as stale or duplicate, which is a success.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from usersync.models import UserRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

UPSERT_CONDITION = (
    "attribute_not_exists(userId) OR (attribute_not_exists(deletedAt) AND updatedAt < :updatedAt)"
)
# The earliest deletion wins, so any order of deliveries converges on the same tombstone.
TOMBSTONE_CONDITION = (
    "attribute_not_exists(userId) OR attribute_not_exists(deletedAt) OR deletedAt > :deletedAt"
)


class WriteOutcome(StrEnum):
    APPLIED = "applied"
    STALE = "stale"
    DUPLICATE = "duplicate"


class RepositoryError(Exception):
    """The table could not be read or written (throttled, unreachable, missing): retryable."""

    def __init__(self, operation: str, code: str) -> None:
        super().__init__(f"DynamoDB {operation} failed: {code}")
        self.operation = operation
        self.code = code


# Hand-written rather than boto3's TypeSerializer/TypeDeserializer: the table holds only strings and
# integers, and these two small functions avoid importing boto3 and cost a fraction per call.
def _to_item(attributes: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, value in attributes.items():
        if isinstance(value, str):
            item[name] = {"S": value}
        elif isinstance(value, int) and not isinstance(value, bool):
            item[name] = {"N": str(value)}
        else:
            raise TypeError(f"attribute {name} must be a string or an integer")
    return item


def _from_item(item: Mapping[str, Any]) -> UserRecord:
    """Strings and integers back from their DynamoDB form; attributes of other types are ignored."""
    plain: dict[str, str | int] = {}
    for name, value in item.items():
        if "S" in value:
            plain[name] = value["S"]
        elif "N" in value:
            plain[name] = int(value["N"])
    return UserRecord.model_validate(plain)


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


class UserRepository:
    """Reads and writes `UserRecord`s; every AWS failure surfaces as `RepositoryError`."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table_name = table_name

    @property
    def table_name(self) -> str:
        return self._table_name

    def save(self, record: UserRecord) -> WriteOutcome:
        """Write `record` if it is newer than what is stored; never resurrect a tombstone."""
        if record.is_tombstone:
            condition, values = TOMBSTONE_CONDITION, {":deletedAt": record.deleted_at}
        elif record.updated_at is None:
            raise ValueError("a live user record needs updatedAt to be ordered")
        else:
            condition, values = UPSERT_CONDITION, {":updatedAt": record.updated_at}
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item=_to_item(record.to_attributes()),
                ConditionExpression=condition,
                ExpressionAttributeValues=_to_item(values),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise RepositoryError("PutItem", _error_code(exc)) from exc
            response: dict[str, Any] = dict(exc.response)
            stored: dict[str, Any] = response.get("Item") or {}
            if record.last_event_id and stored.get("lastEventId") == {"S": record.last_event_id}:
                return WriteOutcome.DUPLICATE
            return WriteOutcome.STALE
        except BotoCoreError as exc:
            raise RepositoryError("PutItem", _error_code(exc)) from exc
        return WriteOutcome.APPLIED

    def get(self, user_id: str) -> UserRecord | None:
        try:
            response = self._client.get_item(
                TableName=self._table_name, Key={"userId": {"S": user_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise RepositoryError("GetItem", _error_code(exc)) from exc
        item = response.get("Item")
        return _from_item(dict(item)) if item else None
