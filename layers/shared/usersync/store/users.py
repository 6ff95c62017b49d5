"""The user table: every read and every write of it, one conditional request per change.

Writes never read first. Three writers share the table (contract §3, "Three writers, one outcome"):

- webhook and reconciliation write Clerk's record (`save_clerk_record`, one PutItem): it lands when
  the item is absent, or is not a tombstone and holds an older Clerk version (`clerkUpdatedAt`; for
  rows written before that attribute existed, `updatedAt` unless the authorizer wrote it) and nothing
  newer at all (`updatedAt` older, or an authorizer row whose token is not newer than the record);
- the authorizer writes what a token says (`save_token_profile`, one UpdateItem): only the profile,
  `updatedAt` = token `iat`, `source`, `syncedAt`, when the item is absent, or is not a tombstone and
  its `updatedAt` is older. It never touches `createdAt`, `clerkUpdatedAt` or `lastEventId`;
- a Clerk record that loses to a fresher token (the authorizer row's `iat` is newer) is merged
  instead (`_merge_into_token_row`, one conditional UpdateItem): it sets `createdAt`,
  `clerkUpdatedAt`, `lastEventId` and keeps the token's profile, so an authorizer row never locks out
  Clerk's own record;
- a tombstone (`deletedAt`) is a PutItem that lands unless an earlier tombstone is stored, and no
  write above lands on a tombstone.

Every order of the same writes therefore ends with: the tombstone if any delete was applied, else
`createdAt` from Clerk, and the profile of the newest of (Clerk's newest `updated_at`, the newest token
`iat`), Clerk winning a tie. Bookkeeping (`syncedAt`, `source`, `updatedAt`, `lastEventId`) may differ.

Reading is tolerant (contract §3): the table is shared with the application, backfills and the
console. See `item_to_record`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from usersync.clerk.users import UserProfile
from usersync.runtime.aws import error_code
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import logger
from usersync.store.records import UserRecord, utc_now_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# DynamoDB limits: a partition key value is at most 2,048 bytes (UTF-8), an item at most 400 KB.
MAX_KEY_BYTES = 2048
MAX_ITEM_BYTES = 400 * 1024

# The stored Clerk version is older than :updatedAt. A row written before `clerkUpdatedAt` existed
# holds Clerk's version in `updatedAt`, unless the authorizer wrote it (then it holds none).
_STORED_CLERK_VERSION_OLDER = (
    "(clerkUpdatedAt < :updatedAt OR (attribute_not_exists(clerkUpdatedAt) AND "
    "(#source = :authorizer OR attribute_not_exists(updatedAt) OR updatedAt < :updatedAt)))"
)
CLERK_RECORD_CONDITION = (
    "attribute_not_exists(userId) OR (attribute_not_exists(deletedAt) AND "
    f"{_STORED_CLERK_VERSION_OLDER} AND "
    "(attribute_not_exists(updatedAt) OR updatedAt < :updatedAt OR "
    "(#source = :authorizer AND updatedAt <= :updatedAt)))"
)
# A Clerk record merged into a live authorizer row whose token is newer: only if no newer Clerk
# version got there first.
MERGE_CONDITION = (
    "attribute_exists(userId) AND attribute_not_exists(deletedAt) AND "
    "(clerkUpdatedAt < :clerkUpdatedAt OR (attribute_not_exists(clerkUpdatedAt) AND #source = :authorizer))"
)
AUTHORIZER_CONDITION = (
    "attribute_not_exists(userId) OR (attribute_not_exists(deletedAt) AND "
    "(attribute_not_exists(updatedAt) OR updatedAt < :updatedAt))"
)
# The earliest deletion wins, so any order of deliveries converges on the same tombstone.
TOMBSTONE_CONDITION = (
    "attribute_not_exists(userId) OR attribute_not_exists(deletedAt) OR deletedAt > :deletedAt"
)

# `source` is a DynamoDB reserved word: expressions name it through a placeholder.
_SOURCE_NAME = {"#source": "source"}

# A record field's table attribute (its alias): `UserProfile` keys are the record's field names.
_ATTRIBUTE_OF = {field: info.alias or field for field, info in UserRecord.model_fields.items()}
PROFILE_ATTRIBUTES = tuple(_ATTRIBUTE_OF[field] for field in UserProfile.__annotations__)
# Attributes whose value the code needs: present but unreadable makes the item uninterpretable.
_STRING_ATTRIBUTES = ("userId", *PROFILE_ATTRIBUTES)
_INTEGER_ATTRIBUTES = ("createdAt", "updatedAt", "clerkUpdatedAt")


class WriteOutcome(StrEnum):
    APPLIED = "applied"
    MERGED = "merged"  # Clerk's createdAt/version joined a row whose token profile is newer
    STALE = "stale"
    DUPLICATE = "duplicate"


class RepositoryError(Exception):
    """The table could not be read or written (throttled, unreachable, out of time), or an item
    could not be interpreted: the caller answers as for an unavailable table."""

    def __init__(self, operation: str, code: str) -> None:
        super().__init__(f"DynamoDB {operation} failed: {code}")
        self.operation = operation
        self.code = code


class UninterpretableItemError(RepositoryError):
    """A stored item whose key or a needed attribute has a type or value we cannot read."""

    CODE = "UninterpretableItem"

    def __init__(self, operation: str, problem: str) -> None:
        super().__init__(operation, self.CODE)
        self.problem = problem


class UnstorableRecordError(ValueError):
    """The record can never be stored (key over 2,048 bytes, item over 400 KB): retrying cannot help."""


# Hand-written rather than boto3's TypeSerializer/TypeDeserializer: the table holds only strings and
# integers, and these small functions avoid importing boto3 and cost a fraction per call.
def attributes_to_item(attributes: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, value in attributes.items():
        if isinstance(value, str):
            item[name] = {"S": value}
        elif isinstance(value, int) and not isinstance(value, bool):
            item[name] = {"N": str(value)}
        else:
            raise TypeError(f"attribute {name} must be a string or an integer")
    return item


def _integer(value: Mapping[str, Any]) -> int | None:
    """An integral `N`, else None (decimals, other types, garbage)."""
    raw = value.get("N") if isinstance(value, Mapping) else None
    if not isinstance(raw, str):
        return None
    try:
        number = Decimal(raw)
    except InvalidOperation:
        return None
    return int(number) if number.is_finite() and number == number.to_integral_value() else None


def _deletion_time(value: Any) -> int:
    """`deletedAt` of any type marks a tombstone; its time is read when it is a number, else 0."""
    raw = value.get("N") if isinstance(value, Mapping) else None
    try:
        return int(Decimal(raw)) if isinstance(raw, str) else 0
    except (InvalidOperation, ValueError, OverflowError):
        return 0


def item_to_record(item: Mapping[str, Any], operation: str = "GetItem") -> UserRecord:
    """A stored item as a `UserRecord`, tolerantly (contract §3).

    - `deletedAt` present, of any type or value: a tombstone, whatever else the item holds or lacks;
    - only `S` and `N` values are read, unknown attributes of every type are ignored, and a missing
      `source`, `syncedAt`, `createdAt` or profile attribute is simply absent; a `source` we do not
      know (another writer's) reads as absent;
    - a key that is not a non-empty string, or a needed attribute (profile strings, integer times)
      present with another type or a decimal, raises `UninterpretableItemError` (a RepositoryError).
    """
    user_id = item.get("userId", {}).get("S") if isinstance(item.get("userId"), Mapping) else None
    if not isinstance(user_id, str) or not user_id:
        raise UninterpretableItemError(operation, "userId is not a non-empty string")
    if "deletedAt" in item:
        return UserRecord(user_id=user_id, deleted_at=_deletion_time(item["deletedAt"]), source=_source(item))
    fields: dict[str, Any] = {"userId": user_id}
    for name in _STRING_ATTRIBUTES[1:]:
        if name in item:
            value = item[name].get("S") if isinstance(item[name], Mapping) else None
            if not isinstance(value, str):
                raise UninterpretableItemError(operation, f"{name} is not a string")
            fields[name] = value or None  # an empty string is an unknown value
    for name in _INTEGER_ATTRIBUTES:
        if name in item:
            number = _integer(item[name])
            if number is None:
                raise UninterpretableItemError(operation, f"{name} is not an integer")
            fields[name] = number
    for name in ("syncedAt", "lastEventId"):
        value = item.get(name)
        if isinstance(value, Mapping) and isinstance(value.get("S"), str):
            fields[name] = value["S"]
    fields["source"] = _source(item)
    return UserRecord.model_validate(fields)


def _source(item: Mapping[str, Any]) -> SyncSource | None:
    value = item.get("source")
    raw = value.get("S") if isinstance(value, Mapping) else None
    try:
        return SyncSource(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


def ensure_storable_item(attributes: Mapping[str, Any], key_limits: Mapping[str, int], kind: str) -> None:
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


def ensure_storable(record: UserRecord) -> None:
    """Raise UnstorableRecordError for a user record DynamoDB would refuse on every retry."""
    ensure_storable_item(record.to_attributes(), {"userId": MAX_KEY_BYTES}, "user")


def _condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def put_if(
    client: DynamoDBClient,
    table_name: str,
    attributes: Mapping[str, Any],
    condition: str,
    values: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """One PutItem under `condition`: None when it landed, else the stored item it lost to (ALL_OLD).

    The one conditional write of every table (users here, organizations in usersync.store.organizations);
    any other failure is a RepositoryError.
    """
    extra: dict[str, Any] = {"ExpressionAttributeNames": dict(names)} if names else {}
    try:
        client.put_item(
            TableName=table_name,
            Item=attributes_to_item(attributes),
            ConditionExpression=condition,
            **extra,
            ExpressionAttributeValues=attributes_to_item(values),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if not _condition_failed(exc):
            raise RepositoryError("PutItem", error_code(exc)) from exc
        response: dict[str, Any] = dict(exc.response)
        stored: dict[str, Any] = response.get("Item") or {}
        return stored
    except BotoCoreError as exc:
        raise RepositoryError("PutItem", error_code(exc)) from exc
    return None


def lost_write(event_id: str | None, stored: Mapping[str, Any]) -> WriteOutcome:
    """Why a conditional write lost: the same delivery (svix-id) already applied, or a newer copy."""
    if event_id and stored.get("lastEventId") == {"S": event_id}:
        return WriteOutcome.DUPLICATE
    return WriteOutcome.STALE


class UserRepository:
    """Reads and writes `UserRecord`s; every AWS failure surfaces as `RepositoryError`."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table_name = table_name

    @property
    def table_name(self) -> str:
        return self._table_name

    # ------------------------------------------------------------ writes

    def save(self, record: UserRecord) -> WriteOutcome:
        """Write `record` by the rule of its writer: a tombstone, a token profile or a Clerk record."""
        if record.is_tombstone:
            return self.save_tombstone(record)
        if record.source is SyncSource.AUTHORIZER:
            return self.save_token_profile(record)
        return self.save_clerk_record(record)

    def save_tombstone(self, record: UserRecord) -> WriteOutcome:
        assert record.deleted_at is not None
        stored = self._put(record, TOMBSTONE_CONDITION, {":deletedAt": record.deleted_at})
        return WriteOutcome.APPLIED if stored is None else lost_write(record.last_event_id, stored)

    def save_clerk_record(self, record: UserRecord) -> WriteOutcome:
        """Clerk's record (webhook, reconcile): replace an older copy, or merge into a fresher token row."""
        if record.updated_at is None:
            raise ValueError("a live user record needs updatedAt to be ordered")
        version = record.updated_at
        record = record.model_copy(update={"clerk_updated_at": version})
        values = {":updatedAt": version, ":authorizer": SyncSource.AUTHORIZER.value}
        stored = self._put(record, CLERK_RECORD_CONDITION, values)
        if stored is None:
            return WriteOutcome.APPLIED
        if self._fresher_token_row(stored, version):
            return self._merge_into_token_row(record)
        return lost_write(record.last_event_id, stored)

    def save_token_profile(self, record: UserRecord) -> WriteOutcome:
        """What a verified token says (updatedAt = iat ms): one conditional UpdateItem.

        The token is the user's whole profile as of `iat`: an optional claim the token lacks is
        removed from the item (Clerk renders a null field as an absent claim), so stored and token
        profiles compare equal afterwards and the authorizer's compare-first check stays write-free.
        """
        if record.updated_at is None:
            raise ValueError("a token profile needs updatedAt (the token's iat) to be ordered")
        ensure_storable(record)
        present = {_ATTRIBUTE_OF[field]: value for field, value in record.profile().items() if value}
        absent = [name for name in PROFILE_ATTRIBUTES if name not in present]
        names = {f"#{name}": name for name in (*present, "updatedAt", "source", "syncedAt")}
        sets = [f"#{name} = :{name}" for name in (*present, "updatedAt", "source", "syncedAt")]
        expression = "SET " + ", ".join(sets)
        if absent:
            names.update({f"#{name}": name for name in absent})
            expression += " REMOVE " + ", ".join(f"#{name}" for name in absent)
        values = {
            **{f":{name}": value for name, value in present.items()},
            ":updatedAt": record.updated_at,
            ":source": SyncSource.AUTHORIZER.value,
            ":syncedAt": utc_now_iso(),
        }
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key={"userId": {"S": record.user_id}},
                UpdateExpression=expression,
                ConditionExpression=AUTHORIZER_CONDITION,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=attributes_to_item(values),
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return WriteOutcome.STALE
            raise RepositoryError("UpdateItem", error_code(exc)) from exc
        except BotoCoreError as exc:
            raise RepositoryError("UpdateItem", error_code(exc)) from exc
        return WriteOutcome.APPLIED

    @staticmethod
    def _fresher_token_row(stored: Mapping[str, Any], clerk_version: int) -> bool:
        """A live authorizer row whose token is newer than this Clerk record (so the put lost)."""
        if "deletedAt" in stored or stored.get("source") != {"S": SyncSource.AUTHORIZER.value}:
            return False
        stored_version = _integer(stored.get("clerkUpdatedAt", {}))
        token_time = _integer(stored.get("updatedAt", {}))
        return (stored_version is None or stored_version < clerk_version) and (
            token_time is not None and token_time > clerk_version
        )

    def _merge_into_token_row(self, record: UserRecord) -> WriteOutcome:
        values: dict[str, Any] = {
            ":clerkUpdatedAt": record.updated_at,
            ":authorizer": SyncSource.AUTHORIZER.value,
            ":syncedAt": utc_now_iso(),
        }
        sets = ["clerkUpdatedAt = :clerkUpdatedAt", "syncedAt = :syncedAt"]
        if record.created_at is not None:
            values[":createdAt"] = record.created_at
            sets.append("createdAt = :createdAt")
        if record.last_event_id is not None:
            values[":lastEventId"] = record.last_event_id
            sets.append("lastEventId = :lastEventId")
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key={"userId": {"S": record.user_id}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=MERGE_CONDITION,
                ExpressionAttributeNames=_SOURCE_NAME,
                ExpressionAttributeValues=attributes_to_item(values),
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return WriteOutcome.STALE  # a newer Clerk version or a tombstone got there first
            raise RepositoryError("UpdateItem", error_code(exc)) from exc
        except BotoCoreError as exc:
            raise RepositoryError("UpdateItem", error_code(exc)) from exc
        return WriteOutcome.MERGED

    def _put(self, record: UserRecord, condition: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """PutItem under `condition`: None when it landed, else the stored item (ALL_OLD)."""
        ensure_storable(record)
        names = _SOURCE_NAME if "#source" in condition else None
        return put_if(self._client, self._table_name, record.to_attributes(), condition, values, names)

    # ------------------------------------------------------------ reads

    def get(self, user_id: str) -> UserRecord | None:
        try:
            response = self._client.get_item(
                TableName=self._table_name, Key={"userId": {"S": user_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise RepositoryError("GetItem", error_code(exc)) from exc
        item = response.get("Item")
        return item_to_record(dict(item)) if item else None

    def scan_versions(self) -> Iterator[UserRecord]:
        """Every item's id and versions (no profile), one paginated, eventually consistent Scan.

        An item that cannot be interpreted is skipped with a warning rather than failing the whole
        scan: its user is then treated as not stored, and the conditional write decides.
        """
        try:
            for page in self._client.get_paginator("scan").paginate(
                TableName=self._table_name,
                ProjectionExpression="userId, updatedAt, clerkUpdatedAt, deletedAt, #source",
                ExpressionAttributeNames={"#source": "source"},
            ):
                for item in page.get("Items", []):
                    try:
                        yield item_to_record(dict(item), "Scan")
                    except UninterpretableItemError as exc:
                        logger.warning("uninterpretable item skipped", extra={"problem": exc.problem})
        except (ClientError, BotoCoreError) as exc:
            raise RepositoryError("Scan", error_code(exc)) from exc
