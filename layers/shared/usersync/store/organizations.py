"""Organizations and memberships: Clerk's payloads, their table items, and one conditional write each.

The organizations table (`ORGANIZATIONS_TABLE_NAME`) holds two kinds of item, keyed `pk`/`sk`:

    organization  pk=ORG#<orgId>  sk=PROFILE
    membership    pk=ORG#<orgId>  sk=MEMBER#<membershipId>  gsi1pk=USER#<userId>  gsi1sk=ORG#<orgId>

so an organization's profile is one GetItem, its profile and members one Query of its partition, and a
user's memberships one Query of the `UserOrganizationsIndex` GSI. A membership tombstone drops its
`gsi1*` attributes: the index is sparse and holds live memberships only.

Memberships are keyed by Clerk's membership id, not by (organization, user): a user removed and later
re-added gets a new `orgmem_` id, and keying on the pair would let the first removal's tombstone
block the re-addition forever.

Writes follow the user table's rules (see repository.py): one conditional PutItem, ordered by
`updatedAt`, a tombstone (`deletedAt`, the envelope timestamp) is never resurrected and the earliest
one wins, and a lost condition is stale or (same svix-id) a duplicate, both successes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AfterValidator, Field

from usersync.clerk.payload import ClerkPayload, ClerkRecord, ClerkText, EpochMs
from usersync.runtime.aws import attempt_seconds, error_code
from usersync.runtime.budget import current_budget
from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import logger
from usersync.store.records import SyncedItem, Writer, clerk_stamp, utc_now_iso
from usersync.store.users import RepositoryError, WriteOutcome, lost_write, put_if
from usersync.sync.users import sync_attempt

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ORG_PREFIX = "ORG#"
MEMBER_PREFIX = "MEMBER#"
USER_PREFIX = "USER#"
PROFILE_SORT_KEY = "PROFILE"
USER_ORGANIZATIONS_INDEX = "UserOrganizationsIndex"
BATCH_GET_LIMIT = 100  # DynamoDB: at most 100 keys per BatchGetItem

ORGANIZATION_UPSERT_EVENTS = frozenset({"organization.created", "organization.updated"})
ORGANIZATION_DELETED_EVENT = "organization.deleted"
MEMBERSHIP_UPSERT_EVENTS = frozenset({"organizationMembership.created", "organizationMembership.updated"})
MEMBERSHIP_DELETED_EVENT = "organizationMembership.deleted"
ORGANIZATION_EVENT_TYPES = (
    ORGANIZATION_UPSERT_EVENTS
    | MEMBERSHIP_UPSERT_EVENTS
    | frozenset({ORGANIZATION_DELETED_EVENT, MEMBERSHIP_DELETED_EVENT})
)

# The same conditions as the user table's, on the composite key (pk exists iff the item exists).
UPSERT_CONDITION = "attribute_not_exists(pk) OR (attribute_not_exists(deletedAt) AND updatedAt < :updatedAt)"
TOMBSTONE_CONDITION = "attribute_not_exists(pk) OR attribute_not_exists(deletedAt) OR deletedAt > :deletedAt"

# DynamoDB caps a sort key at 1,024 bytes and `sk`/`gsi1sk` embed these ids behind a prefix: an id that
# cannot be stored is a 400 at parse time, not a write that fails on every Svix retry.
MAX_ID_BYTES = 1000
# DynamoDB's key limits per key attribute (partition keys 2,048 bytes, sort keys 1,024 bytes).
ORGANIZATION_KEY_LIMITS = {"pk": 2048, "sk": 1024, "gsi1pk": 2048, "gsi1sk": 1024}


def _storable_id(value: str) -> str:
    if len(value.encode("utf-8", errors="surrogatepass")) > MAX_ID_BYTES:
        raise ValueError(f"id longer than {MAX_ID_BYTES} bytes")
    return value


ClerkId = Annotated[str, Field(min_length=1), AfterValidator(_storable_id)]


# ---------------------------------------------------------------------------------------- Clerk's shapes


class OrganizationProfile(TypedDict):
    """What usersync mirrors of an organization (the organization item's fields)."""

    name: str | None
    slug: str | None
    image_url: str | None


class MembershipOrganizationCopy(TypedDict):
    """The copy of its organization a membership item embeds (its `org_*` fields)."""

    org_name: str | None
    org_slug: str | None
    org_updated_at: int | None


class ClerkOrganization(ClerkRecord):
    """The Backend API Organization object (`organization.created|updated`, `GET /v1/organizations`)."""

    id: ClerkId
    name: ClerkText = None
    slug: ClerkText = None
    image_url: ClerkText = None

    def profile(self) -> OrganizationProfile:
        return {"name": self.name, "slug": self.slug, "image_url": self.image_url}


class ClerkDeletedOrganization(ClerkPayload):
    """`organization.deleted` data: `{id, object, deleted}`."""

    id: ClerkId


class ClerkEmbeddedOrganization(ClerkPayload):
    """The organization copy a membership embeds: its id keys the item, the rest is the item's copy."""

    id: ClerkId
    name: ClerkText = None
    slug: ClerkText = None
    updated_at: EpochMs | None = None

    def membership_copy(self) -> MembershipOrganizationCopy:
        """This copy under the membership item's field names."""
        return {"org_name": self.name, "org_slug": self.slug, "org_updated_at": self.updated_at}


class ClerkPublicUserData(ClerkPayload):
    user_id: ClerkId


class ClerkDeletedMembership(ClerkPayload):
    """What a membership tombstone needs. A real `organizationMembership.deleted` carries the whole
    membership (role `org:member`, `role_name`, `permissions`...); only these parts are required."""

    id: ClerkId
    organization: ClerkEmbeddedOrganization
    public_user_data: ClerkPublicUserData


class ClerkMembership(ClerkDeletedMembership, ClerkRecord):
    """The Backend API OrganizationMembership object (`organizationMembership.created|updated`)."""

    role: ClerkText = None


# ---------------------------------------------------------------------------------------- table items


class _Item(SyncedItem):
    """Fields every item of the organizations table has; unlike users' rows, always stamped."""

    org_id: str = Field(alias="orgId", min_length=1)
    synced_at: str = Field(default_factory=utc_now_iso, alias="syncedAt")
    source: SyncSource = SyncSource.WEBHOOK

    @property
    def pk(self) -> str:
        return ORG_PREFIX + self.org_id

    @property
    def sk(self) -> str:
        raise NotImplementedError

    def keys(self) -> dict[str, str]:
        return {"pk": self.pk, "sk": self.sk}

    def to_attributes(self) -> dict[str, Any]:
        return {**self.keys(), **self.model_dump(by_alias=True, exclude_none=True, mode="json")}


class OrganizationRecord(_Item):
    """An organization's profile item (pk=ORG#id, sk=PROFILE)."""

    name: str | None = None
    slug: str | None = None
    image_url: str | None = Field(default=None, alias="imageUrl")

    @property
    def sk(self) -> str:
        return PROFILE_SORT_KEY

    @classmethod
    def from_clerk(
        cls, organization: ClerkOrganization, *, source: SyncSource, event_id: str | None = None
    ) -> OrganizationRecord:
        stamp = clerk_stamp(organization, source=source, event_id=event_id)
        return cls(org_id=organization.id, **organization.profile(), **stamp)

    @classmethod
    def tombstone(
        cls, org_id: str, *, deleted_at: int, source: SyncSource, event_id: str | None = None
    ) -> OrganizationRecord:
        """Only the id and the deletion time: the tombstone depends on the delete event alone."""
        return cls(org_id=org_id, deleted_at=deleted_at, source=source, last_event_id=event_id)


class MembershipRecord(_Item):
    """A membership item (pk=ORG#orgId, sk=MEMBER#membershipId; in the user index while live).

    `orgName`/`orgSlug`/`orgUpdatedAt` are the membership's embedded copy of its organization, used
    by /me when the organization's own profile is missing or older.
    """

    membership_id: str = Field(alias="membershipId", min_length=1)
    user_id: str = Field(alias="userId", min_length=1)
    role: str | None = None
    org_name: str | None = Field(default=None, alias="orgName")
    org_slug: str | None = Field(default=None, alias="orgSlug")
    org_updated_at: int | None = Field(default=None, alias="orgUpdatedAt")

    @property
    def sk(self) -> str:
        return MEMBER_PREFIX + self.membership_id

    def keys(self) -> dict[str, str]:
        keys = super().keys()
        if not self.is_tombstone:  # tombstones leave the sparse user index
            keys.update(gsi1pk=USER_PREFIX + self.user_id, gsi1sk=ORG_PREFIX + self.org_id)
        return keys

    @classmethod
    def from_clerk(
        cls, membership: ClerkMembership, *, source: SyncSource, event_id: str | None = None
    ) -> MembershipRecord:
        organization = membership.organization
        return cls(
            org_id=organization.id,
            membership_id=membership.id,
            user_id=membership.public_user_data.user_id,
            role=membership.role,
            **organization.membership_copy(),
            **clerk_stamp(membership, source=source, event_id=event_id),
        )

    @classmethod
    def tombstone(
        cls,
        org_id: str,
        membership_id: str,
        user_id: str,
        *,
        deleted_at: int,
        source: SyncSource,
        event_id: str | None = None,
    ) -> MembershipRecord:
        """The keys (organization, membership, user) and the deletion time; role and copies dropped."""
        return cls(
            org_id=org_id,
            membership_id=membership_id,
            user_id=user_id,
            deleted_at=deleted_at,
            source=source,
            last_event_id=event_id,
        )


OrganizationItem = OrganizationRecord | MembershipRecord


def record_for_event(
    event_type: str, data: Mapping[str, Any], *, deleted_at: int, event_id: str
) -> OrganizationItem | None:
    """The item an organization/membership webhook asks for; None for other event types.

    Raises pydantic's ValidationError when the data lacks what its type needs (the caller's 400).
    Deletes carry no `updated_at` worth ordering by: they are timed by `deleted_at` (the envelope).
    """
    writer: Writer = {"source": SyncSource.WEBHOOK, "event_id": event_id}
    if event_type in ORGANIZATION_UPSERT_EVENTS:
        return OrganizationRecord.from_clerk(ClerkOrganization.model_validate(data), **writer)
    if event_type == ORGANIZATION_DELETED_EVENT:
        deleted = ClerkDeletedOrganization.model_validate(data)
        return OrganizationRecord.tombstone(deleted.id, deleted_at=deleted_at, **writer)
    if event_type in MEMBERSHIP_UPSERT_EVENTS:
        return MembershipRecord.from_clerk(ClerkMembership.model_validate(data), **writer)
    if event_type == MEMBERSHIP_DELETED_EVENT:
        gone = ClerkDeletedMembership.model_validate(data)
        user_id = gone.public_user_data.user_id
        return MembershipRecord.tombstone(
            gone.organization.id, gone.id, user_id, deleted_at=deleted_at, **writer
        )
    return None


# ---------------------------------------------------------------------------------------- repository


def _plain(item: Mapping[str, Any]) -> dict[str, str | int]:
    """Strings and integral numbers back; other DynamoDB types (written by someone else) ignored."""
    plain: dict[str, str | int] = {}
    for name, value in item.items():
        if "S" in value:
            plain[name] = value["S"]
        elif "N" in value:
            try:
                plain[name] = int(value["N"])
            except ValueError:
                continue  # a decimal is nothing we wrote
    return plain


def item_from_dynamodb(item: Mapping[str, Any], operation: str) -> OrganizationItem | None:
    """An item of the table as a record; None for an item of no kind we know (someone else's).

    An item that claims to be ours but cannot be read is a read failure (RepositoryError), as for
    users: the caller answers 503 rather than guess.
    """
    plain = _plain(item)
    sort_key = plain.get("sk")
    try:
        if sort_key == PROFILE_SORT_KEY:
            return OrganizationRecord.model_validate(plain)
        if isinstance(sort_key, str) and sort_key.startswith(MEMBER_PREFIX):
            return MembershipRecord.model_validate(plain)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise RepositoryError(operation, "UnreadableItem") from exc
    return None


# Unprocessed keys mean DynamoDB throttled part of a batch: asked for again after a short, growing,
# jittered pause (AWS's advice for BatchGetItem), at most three rounds, and only while the invocation's
# budget leaves room for the pause and one more attempt.
BATCH_GET_ROUNDS = 3


def batch_get(client: DynamoDBClient, request: dict[str, Any], table_name: str) -> list[dict[str, Any]]:
    """Every item of one BatchGetItem `request` on `table_name`; RepositoryError if some stay unread."""
    items: list[dict[str, Any]] = []
    for round_number in range(BATCH_GET_ROUNDS):
        if round_number:
            pause = random.uniform(0, 0.05 * 2**round_number)  # noqa: S311 - jitter, not a secret
            if not current_budget().allows(pause + attempt_seconds(client)):
                break
            time.sleep(pause)
        try:
            response = client.batch_get_item(RequestItems=request)
        except (ClientError, BotoCoreError) as exc:
            raise RepositoryError("BatchGetItem", error_code(exc)) from exc
        items.extend(dict(item) for item in response.get("Responses", {}).get(table_name, []))
        request = dict(response.get("UnprocessedKeys") or {})
        if not request:
            return items
    raise RepositoryError("BatchGetItem", "UnprocessedKeys")


class OrganizationRepository:
    """Reads and writes the organizations table; every AWS failure surfaces as `RepositoryError`."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table_name = table_name

    @classmethod
    def from_env(cls, client: DynamoDBClient) -> OrganizationRepository | None:
        """The repository of ORGANIZATIONS_TABLE_NAME, or None when the deployment names no table."""
        from usersync.runtime.settings import OrganizationsTableSettings

        table_name = OrganizationsTableSettings.from_env().organizations_table_name
        return cls(client, table_name) if table_name else None

    @property
    def table_name(self) -> str:
        return self._table_name

    def save(self, record: OrganizationItem) -> WriteOutcome:
        """One conditional PutItem: newer than what is stored, never over a tombstone."""
        if record.is_tombstone:
            condition, values = TOMBSTONE_CONDITION, {":deletedAt": record.deleted_at}
        elif record.updated_at is None:
            raise ValueError("a live organization or membership record needs updatedAt to be ordered")
        else:
            condition, values = UPSERT_CONDITION, {":updatedAt": record.updated_at}
        stored = put_if(self._client, self._table_name, record.to_attributes(), condition, values)
        return WriteOutcome.APPLIED if stored is None else lost_write(record.last_event_id, stored)

    def get_organization(self, org_id: str) -> OrganizationRecord | None:
        """An organization's profile (tombstone included): one GetItem."""
        try:
            response = self._client.get_item(
                TableName=self._table_name,
                Key={"pk": {"S": ORG_PREFIX + org_id}, "sk": {"S": PROFILE_SORT_KEY}},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            raise RepositoryError("GetItem", error_code(exc)) from exc
        item = response.get("Item")
        record = item_from_dynamodb(dict(item), "GetItem") if item else None
        return record if isinstance(record, OrganizationRecord) else None

    def get_organizations(self, org_ids: Iterable[str]) -> dict[str, OrganizationRecord]:
        """Profiles (tombstones included) by id: one BatchGetItem per 100 ids.

        Unprocessed keys (throttling) are asked for again, a few times, then the read fails.
        """
        wanted = sorted(set(org_ids))
        found: dict[str, OrganizationRecord] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            keys = [
                {"pk": {"S": ORG_PREFIX + org_id}, "sk": {"S": PROFILE_SORT_KEY}}
                for org_id in wanted[start : start + BATCH_GET_LIMIT]
            ]
            request: dict[str, Any] = {self._table_name: {"Keys": keys, "ConsistentRead": True}}
            for item in batch_get(self._client, request, self._table_name):
                record = item_from_dynamodb(dict(item), "BatchGetItem")
                if isinstance(record, OrganizationRecord):
                    found[record.org_id] = record
        return found

    def _query(self, operation: str, **kwargs: Any) -> list[OrganizationItem]:
        """Every page of a Query (one request per 1 MB of items)."""
        records: list[OrganizationItem] = []
        while True:
            try:
                response = self._client.query(TableName=self._table_name, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise RepositoryError(operation, error_code(exc)) from exc
            for item in response.get("Items", []):
                record = item_from_dynamodb(dict(item), operation)
                if record is not None:
                    records.append(record)
            last = response.get("LastEvaluatedKey")
            if not last:
                return records
            kwargs["ExclusiveStartKey"] = last

    def memberships_of_user(self, user_id: str) -> list[MembershipRecord]:
        """The user's live memberships (tombstones are not in the index): one Query of the GSI.

        Eventually consistent, as every GSI read is. Liveness of the organizations and of the user is
        the caller's to check (see usersync.api.me).
        """
        records = self._query(
            "Query",
            IndexName=USER_ORGANIZATIONS_INDEX,
            KeyConditionExpression="gsi1pk = :user",
            ExpressionAttributeValues={":user": {"S": USER_PREFIX + user_id}},
        )
        return [r for r in records if isinstance(r, MembershipRecord) and not r.is_tombstone]

    def members_of_organization(self, org_id: str) -> list[MembershipRecord]:
        """The organization's live memberships: one Query of its partition, profile included, so a
        deleted organization has no members. Membership tombstones are filtered out server-side.

        Users' liveness lives in the user table: `without_deleted_users` drops deleted users with one
        BatchGetItem there.
        """
        records = self._query(
            "Query",
            KeyConditionExpression="pk = :org",
            FilterExpression="attribute_not_exists(deletedAt) OR sk = :profile",
            ExpressionAttributeValues={
                ":org": {"S": ORG_PREFIX + org_id},
                ":profile": {"S": PROFILE_SORT_KEY},
            },
            ConsistentRead=True,
        )
        if any(isinstance(r, OrganizationRecord) and r.is_tombstone for r in records):
            return []
        return [r for r in records if isinstance(r, MembershipRecord) and not r.is_tombstone]

    def scan_versions(self) -> dict[tuple[str, str], StoredVersion]:
        """(pk, sk) -> what reconciliation needs of every item: one paginated, eventually consistent Scan
        (a snapshot that only picks what to write: the conditional put decides, so staleness is harmless)."""
        versions: dict[tuple[str, str], StoredVersion] = {}
        try:
            for page in self._client.get_paginator("scan").paginate(
                TableName=self._table_name,
                ProjectionExpression="pk, sk, orgId, membershipId, userId, updatedAt, deletedAt",
            ):
                for item in page.get("Items", []):
                    plain = _plain(item)
                    updated, deleted = plain.get("updatedAt"), plain.get("deletedAt")
                    versions[(str(plain.get("pk")), str(plain.get("sk")))] = StoredVersion(
                        org_id=str(plain.get("orgId", "")),
                        membership_id=str(plain.get("membershipId", "")),
                        user_id=str(plain.get("userId", "")),
                        updated_at=updated if isinstance(updated, int) else None,
                        deleted_at=deleted if isinstance(deleted, int) else None,
                    )
        except (ClientError, BotoCoreError) as exc:
            raise RepositoryError("Scan", error_code(exc)) from exc
        return versions


@dataclass(frozen=True)
class StoredVersion:
    """An item's identity and version, as reconciliation's snapshot holds it."""

    org_id: str
    membership_id: str
    user_id: str
    updated_at: int | None
    deleted_at: int | None


def without_deleted_users(
    client: DynamoDBClient, users_table: str, members: list[MembershipRecord]
) -> list[MembershipRecord]:
    """Members whose user is not a tombstone in the user table: one BatchGetItem per 100 users.

    A user missing from the user table (not synced yet) counts as live: only a tombstone is proof of
    deletion.
    """
    user_ids = sorted({m.user_id for m in members})
    deleted: set[str] = set()
    for start in range(0, len(user_ids), BATCH_GET_LIMIT):
        request: dict[str, Any] = {
            users_table: {
                "Keys": [{"userId": {"S": u}} for u in user_ids[start : start + BATCH_GET_LIMIT]],
                "ProjectionExpression": "userId, deletedAt",
                "ConsistentRead": True,
            }
        }
        for item in batch_get(client, request, users_table):
            if "deletedAt" in item:
                deleted.add(str(item["userId"]["S"]))
    return [m for m in members if m.user_id not in deleted]


# ---------------------------------------------------------------------------------------- writes


def write_organization_item(repository: OrganizationRepository, record: OrganizationItem) -> WriteOutcome:
    """`repository.save`, counted as user writes are (sync.write_user): one SyncAttempts per write,
    SyncStale for a lost condition, SyncFailures (plus its attempt) for a failed call, re-raised."""
    try:
        with sync_attempt(record.source):
            outcome = repository.save(record)
    except RepositoryError as exc:
        logger.error(
            "organization write failed",
            extra={"orgId": record.org_id, "source": record.source.value, "errorCode": exc.code},
        )
        raise
    if outcome is not WriteOutcome.APPLIED:
        emit_metric(SyncMetric.STALE, record.source)
    logger.debug(
        "organization write",
        extra={"orgId": record.org_id, "source": record.source.value, "outcome": outcome.value},
    )
    return outcome
