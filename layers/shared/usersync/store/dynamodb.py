"""What every table module shares: the one place a botocore error becomes a
`RepositoryError`, the one conditional write, paging, BatchGetItem with retries, and DynamoDB's limits.

Writes follow one rule on every table: one conditional request, never read-then-write. A lost
condition is a success: the same delivery already applied (`DUPLICATE`, same svix-id) or a newer or
deleted copy is stored (`STALE`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from usersync.runtime.aws import attempt_seconds, error_code
from usersync.runtime.budget import current_budget
from usersync.store.codec import attributes_to_item
from usersync.store.errors import RepositoryError, UnstorableRecordError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        KeysAndAttributesUnionTypeDef,
        PutItemInputTypeDef,
        UpdateItemInputTypeDef,
    )

    from usersync.store.codec import Item

# DynamoDB limits: an item at most 400 KB; at most 100 keys per BatchGetItem.
MAX_ITEM_BYTES = 400 * 1024
BATCH_GET_LIMIT = 100
# Unprocessed keys mean DynamoDB throttled part of a batch: asked for again after a short, growing,
# jittered pause (AWS's advice for BatchGetItem), at most three rounds, and only while the invocation's
# budget leaves room for the pause and one more attempt.
BATCH_GET_ROUNDS = 3
_CONDITION_FAILED = "ConditionalCheckFailedException"


class WriteOutcome(StrEnum):
    APPLIED = "applied"
    MERGED = "merged"  # Clerk's createdAt/version joined a row whose token profile is newer
    STALE = "stale"
    DUPLICATE = "duplicate"


class TableRepository:
    """What every table module's repository holds: the client and its table's name."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table_name = table_name

    @property
    def table_name(self) -> str:
        return self._table_name


@contextmanager
def dynamodb_call(operation: str) -> Iterator[None]:
    """Any botocore failure inside the block (an API error, a timeout, an exhausted time budget) as a
    `RepositoryError` of `operation`: the one place the store translates AWS errors."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise RepositoryError(operation, error_code(exc)) from exc


def conditional_write(operation: str, write: Callable[[], object]) -> Item | None:
    """Run one conditional write: None when it landed, else the stored item it lost to (the response's
    `Item` when the request asked for ALL_OLD, `{}` otherwise); any other failure is a RepositoryError."""
    with dynamodb_call(operation):
        try:
            write()
        except ClientError as exc:
            if error_code(exc) != _CONDITION_FAILED:
                raise
            response: dict[str, Any] = dict(exc.response)
            stored: Item = dict(response.get("Item") or {})
            return stored
    return None


def put_if(
    client: DynamoDBClient,
    table_name: str,
    attributes: Mapping[str, object],
    condition: str,
    values: Mapping[str, object],
    names: Mapping[str, str] | None = None,
) -> Item | None:
    """One PutItem under `condition`: None when it landed, else the stored item it lost to (ALL_OLD).

    The one conditional put of every table; any other failure is a RepositoryError.
    """
    request: PutItemInputTypeDef = {
        "TableName": table_name,
        "Item": attributes_to_item(attributes),
        "ConditionExpression": condition,
        "ExpressionAttributeValues": attributes_to_item(values),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if names:
        request["ExpressionAttributeNames"] = dict(names)
    return conditional_write("PutItem", lambda: client.put_item(**request))


def update_if(
    client: DynamoDBClient,
    table_name: str,
    key: Mapping[str, object],
    expression: str,
    condition: str,
    values: Mapping[str, object],
    names: Mapping[str, str],
) -> bool:
    """One UpdateItem under `condition`: True when it landed, False when the condition failed; any
    other failure is a RepositoryError."""
    request: UpdateItemInputTypeDef = {
        "TableName": table_name,
        "Key": attributes_to_item(key),
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": dict(names),
        "ExpressionAttributeValues": attributes_to_item(values),
    }
    return conditional_write("UpdateItem", lambda: client.update_item(**request)) is None


def lost_write(event_id: str | None, stored: Mapping[str, object]) -> WriteOutcome:
    """Why a conditional write lost: the same delivery (svix-id) already applied, or a newer copy."""
    if event_id and stored.get("lastEventId") == {"S": event_id}:
        return WriteOutcome.DUPLICATE
    return WriteOutcome.STALE


def ensure_storable_item(attributes: Mapping[str, object], key_limits: Mapping[str, int], kind: str) -> None:
    """Raise UnstorableRecordError for an item DynamoDB would refuse on every retry: a key attribute
    over its byte limit, text that is no valid UTF-8 (a lone surrogate from a JSON `\\ud800` escape),
    or an item over 400 KB (attribute names plus values, numbers at most 21 bytes)."""
    size = 0
    for name, value in attributes.items():
        if isinstance(value, str):
            try:
                length = len(value.encode())
            except UnicodeEncodeError:
                raise UnstorableRecordError(f"{name} is not valid Unicode text") from None
            limit = key_limits.get(name)
            if limit is not None and length > limit:
                raise UnstorableRecordError(f"{name} is over DynamoDB's {limit}-byte key limit")
        else:
            length = 21
        size += len(name.encode()) + length
    if size > MAX_ITEM_BYTES:
        raise UnstorableRecordError(f"the {kind} item would be over DynamoDB's 400 KB item limit")


def query_items(client: DynamoDBClient, table_name: str, **query: Any) -> Iterator[Item]:
    """Every item of a Query, page after page (one request per 1 MB of items)."""
    while True:
        with dynamodb_call("Query"):
            response = client.query(TableName=table_name, **query)
        yield from (dict(item) for item in response.get("Items", []))
        last = response.get("LastEvaluatedKey")
        if not last:
            return
        query["ExclusiveStartKey"] = last


def scan_items(client: DynamoDBClient, table_name: str, **scan: Any) -> Iterator[Item]:
    """Every item of a paginated, eventually consistent Scan."""
    with dynamodb_call("Scan"):
        for page in client.get_paginator("scan").paginate(TableName=table_name, **scan):
            yield from (dict(item) for item in page.get("Items", []))


def batch_get(
    client: DynamoDBClient, request: Mapping[str, KeysAndAttributesUnionTypeDef], table_name: str
) -> list[Item]:
    """Every item of one BatchGetItem `request` on `table_name`; RepositoryError if some stay unread."""
    items: list[Item] = []
    for round_number in range(BATCH_GET_ROUNDS):
        if round_number:
            pause = random.uniform(0, 0.05 * 2**round_number)  # noqa: S311 - jitter, not a secret
            if not current_budget().allows(pause + attempt_seconds(client)):
                break
            time.sleep(pause)
        with dynamodb_call("BatchGetItem"):
            response = client.batch_get_item(RequestItems=request)
        items.extend(dict(item) for item in response.get("Responses", {}).get(table_name, []))
        request = dict(response.get("UnprocessedKeys") or {})
        if not request:
            return items
    raise RepositoryError("BatchGetItem", "UnprocessedKeys")
