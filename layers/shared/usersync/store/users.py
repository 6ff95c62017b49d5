"""The user table: every read and every write of it, one conditional request per change.

Writes never read first. Three writers share the table (contract §3, "Three writers, one outcome"):

- webhook and reconciliation write Clerk's record (`save_clerk_record`, one PutItem): it lands when
  the item is absent, or is not a tombstone and holds an older Clerk version (`clerkUpdatedAt`; for
  rows written before that attribute existed, `updatedAt` unless the authorizer wrote it) and nothing
  newer at all (`updatedAt` older, or an authorizer row whose token is not newer than the record).
  Clerk's record is the profile's truth: it sets the whole profile (a null field clears);
- the authorizer writes what a token says (`save_token_profile`, one UpdateItem), when the item is
  absent, or is not a tombstone and its `updatedAt` is older. Absent is unknown, not empty: it sets
  only the claims the token carries (names and image are optional claims) and never removes a stored
  attribute; it records their names in `tokenClaims` (a string set) so a Clerk record older than the
  token knows which values are the token's. It never touches `createdAt`, `clerkUpdatedAt` or
  `lastEventId`;
- a Clerk record that loses to a fresher token (the authorizer row's `iat` is newer) is merged
  instead (`_merge_into_token_row`, one conditional UpdateItem built from the item the put lost to):
  it sets `createdAt`, `clerkUpdatedAt`, `lastEventId` and every profile attribute the tokens did not
  claim (a null clears), fills a claimed attribute only where the row lacks it, and keeps the tokens'
  fresher values, so an authorizer row never locks out Clerk's own record; if a token wrote in between,
  the record is written again from the start;
- a tombstone (`deletedAt`) is a PutItem that lands unless an earlier tombstone is stored, and no
  write above lands on a tombstone.

Every order of the same writes therefore ends with: the tombstone if any delete was applied, else
`createdAt` from Clerk, the newest Clerk record's profile, with the claims of tokens newer than it in
place of its values, Clerk winning a tie. Bookkeeping (`syncedAt`, `source`, `updatedAt`,
`lastEventId`, `tokenClaims`) may differ. One imprecision, written down in docs/security.md: a token
older than the row writes nothing, even a claim the row's newer writers did not carry.

Reading is tolerant (contract §3): the table is shared with the application, backfills and the
console. See `item_to_record`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from usersync.clerk.users import UserProfile
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import logger
from usersync.store.codec import ItemSchema, attributes_to_item, decode_item, integer_value
from usersync.store.dynamodb import (
    TableRepository,
    WriteOutcome,
    conditional_write,
    dynamodb_call,
    ensure_storable_item,
    lost_write,
    put_if,
    scan_items,
    update_if,
)
from usersync.store.errors import UninterpretableItemError
from usersync.store.records import UserRecord, utc_now_iso

if TYPE_CHECKING:
    from usersync.store.codec import Item

# DynamoDB limits: a partition key value is at most 2,048 bytes (UTF-8).
MAX_KEY_BYTES = 2048

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
# The profile attributes tokens set since Clerk's record last replaced the row (a string set).
TOKEN_CLAIMS = "tokenClaims"  # noqa: S105 - an attribute name, not a secret
# A merge loses when a token wrote between the put and the merge: the record is written again, a few
# times at most (each retry means another writer made progress).
_MERGE_ATTEMPTS = 3

# A record field's table attribute (its alias): `UserProfile` keys are the record's field names.
_ATTRIBUTE_OF = {field: info.alias or field for field, info in UserRecord.model_fields.items()}
PROFILE_ATTRIBUTES = tuple(_ATTRIBUTE_OF[field] for field in UserProfile.__annotations__)
# Attributes whose value the code needs: present but unreadable makes the item uninterpretable.
_SCHEMA = ItemSchema(
    keys=("userId",), text=PROFILE_ATTRIBUTES, integers=("createdAt", "updatedAt", "clerkUpdatedAt")
)


def item_to_record(item: Mapping[str, object], operation: str = "GetItem") -> UserRecord:
    """A stored item as a `UserRecord`, tolerantly (contract §3).

    - `deletedAt` present, of any type or value: a tombstone, whatever else the item holds or lacks;
    - only `S` and `N` values are read, unknown attributes of every type are ignored, and a missing
      `source`, `syncedAt`, `createdAt` or profile attribute is simply absent; a `source` we do not
      know (another writer's) reads as absent;
    - a key that is not a non-empty string, or a needed attribute (profile strings, integer times)
      present with another type or a decimal, raises `UninterpretableItemError` (a RepositoryError).
    """
    return UserRecord.model_validate(decode_item(item, _SCHEMA, operation))


def ensure_storable(record: UserRecord) -> None:
    """Raise UnstorableRecordError for a user record DynamoDB would refuse on every retry."""
    ensure_storable_item(record.to_attributes(), {"userId": MAX_KEY_BYTES}, "user")


class UserRepository(TableRepository):
    """Reads and writes `UserRecord`s; every AWS failure surfaces as `RepositoryError`."""

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
        for _ in range(_MERGE_ATTEMPTS):
            stored = self._put(record, CLERK_RECORD_CONDITION, values)
            if stored is None:
                return WriteOutcome.APPLIED
            if not self._fresher_token_row(stored, version):
                return lost_write(record.last_event_id, stored)
            if self._merge_into_token_row(record, stored):
                return WriteOutcome.MERGED
        return WriteOutcome.STALE  # tokens kept writing in between: the next delivery or run merges

    def save_token_profile(self, record: UserRecord) -> WriteOutcome:
        """What a verified token says (updatedAt = iat ms): one conditional UpdateItem.

        Absent is unknown, not empty (contract §3): only the claims the token carries are set, nothing
        is removed, and their names join `tokenClaims`.
        """
        if record.updated_at is None:
            raise ValueError("a token profile needs updatedAt (the token's iat) to be ordered")
        ensure_storable(record)
        present = {_ATTRIBUTE_OF[field]: value for field, value in record.profile().items() if value}
        names = {f"#{name}": name for name in (*present, "updatedAt", "source", "syncedAt")}
        sets = [f"#{name} = :{name}" for name in (*present, "updatedAt", "source", "syncedAt")]
        values = attributes_to_item(
            {
                **{f":{name}": value for name, value in present.items()},
                ":updatedAt": record.updated_at,
                ":source": SyncSource.AUTHORIZER.value,
                ":syncedAt": utc_now_iso(),
            }
        )
        expression = "SET " + ", ".join(sets)
        if present:  # always, for a verified token (email is required); a string set cannot be empty
            names["#claims"] = TOKEN_CLAIMS
            values[":claims"] = {"SS": sorted(present)}  # the codec writes strings and integers only
            expression += " ADD #claims :claims"
        lost = conditional_write(
            "UpdateItem",
            lambda: self._client.update_item(
                TableName=self._table_name,
                Key={"userId": {"S": record.user_id}},
                UpdateExpression=expression,
                ConditionExpression=AUTHORIZER_CONDITION,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ),
        )
        return WriteOutcome.APPLIED if lost is None else WriteOutcome.STALE

    @staticmethod
    def _fresher_token_row(stored: Mapping[str, object], clerk_version: int) -> bool:
        """A live authorizer row whose token is newer than this Clerk record (so the put lost)."""
        if "deletedAt" in stored or stored.get("source") != {"S": SyncSource.AUTHORIZER.value}:
            return False
        stored_version = integer_value(stored.get("clerkUpdatedAt", {}))
        token_time = integer_value(stored.get("updatedAt", {}))
        return (stored_version is None or stored_version < clerk_version) and (
            token_time is not None and token_time > clerk_version
        )

    @staticmethod
    def _token_claims(stored: Mapping[str, Any]) -> set[str]:
        """The profile attributes the row's tokens set. A row written before `tokenClaims` existed
        holds a whole token profile: every profile attribute it has is the token's."""
        raw = stored.get(TOKEN_CLAIMS)
        claims = raw.get("SS") if isinstance(raw, Mapping) else None
        if isinstance(claims, list):
            return {name for name in claims if name in PROFILE_ATTRIBUTES}
        return {name for name in PROFILE_ATTRIBUTES if name in stored}

    def _merge_into_token_row(self, record: UserRecord, stored: Mapping[str, Any]) -> bool:
        """Clerk's older record into a fresher token row (`stored`, what the put lost to): True when it
        landed, False when a token wrote in between (or a newer Clerk version or a tombstone did)."""
        token_time = integer_value(stored.get("updatedAt", {}))
        assert token_time is not None  # _fresher_token_row checked it
        claimed = self._token_claims(stored)
        values: dict[str, Any] = {
            ":clerkUpdatedAt": record.updated_at,
            ":authorizer": SyncSource.AUTHORIZER.value,
            ":syncedAt": utc_now_iso(),
            ":tokenTime": token_time,
        }
        names = dict(_SOURCE_NAME)
        sets = ["clerkUpdatedAt = :clerkUpdatedAt", "syncedAt = :syncedAt"]
        removes = []
        for field, value in record.profile().items():
            name = _ATTRIBUTE_OF[field]
            if value or name not in claimed:
                names[f"#{name}"] = name  # DynamoDB refuses names an expression does not use
            if value:
                values[f":{name}"] = value
                # A claimed attribute keeps the token's fresher value; Clerk only fills it if absent.
                sets.append(
                    f"#{name} = if_not_exists(#{name}, :{name})" if name in claimed else f"#{name} = :{name}"
                )
            elif name not in claimed:
                removes.append(f"#{name}")  # Clerk cleared it, and no token newer than Clerk set it
        if record.created_at is not None:
            values[":createdAt"] = record.created_at
            sets.append("createdAt = :createdAt")
        if record.last_event_id is not None:
            values[":lastEventId"] = record.last_event_id
            sets.append("lastEventId = :lastEventId")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        # No token wrote since the put read the row: its claims are the ones this merge respects.
        condition = f"{MERGE_CONDITION} AND updatedAt = :tokenTime"
        key = {"userId": record.user_id}
        return update_if(self._client, self._table_name, key, expression, condition, values, names)

    def _put(self, record: UserRecord, condition: str, values: Mapping[str, object]) -> Item | None:
        """PutItem under `condition`: None when it landed, else the stored item (ALL_OLD)."""
        ensure_storable(record)
        names = _SOURCE_NAME if "#source" in condition else None
        return put_if(self._client, self._table_name, record.to_attributes(), condition, values, names)

    # ------------------------------------------------------------ reads

    def get(self, user_id: str) -> UserRecord | None:
        with dynamodb_call("GetItem"):
            response = self._client.get_item(
                TableName=self._table_name, Key={"userId": {"S": user_id}}, ConsistentRead=True
            )
        item = response.get("Item")
        return item_to_record(dict(item)) if item else None

    def scan_versions(self) -> Iterator[UserRecord]:
        """Every item's id and versions (no profile), one paginated, eventually consistent Scan.

        An item that cannot be interpreted is skipped with a warning rather than failing the whole
        scan: its user is then treated as not stored, and the conditional write decides.
        """
        for item in scan_items(
            self._client,
            self._table_name,
            ProjectionExpression="userId, updatedAt, clerkUpdatedAt, deletedAt, #source",
            ExpressionAttributeNames={"#source": "source"},
        ):
            try:
                yield item_to_record(item, "Scan")
            except UninterpretableItemError as exc:
                logger.warning("uninterpretable item skipped", extra={"problem": exc.problem})
