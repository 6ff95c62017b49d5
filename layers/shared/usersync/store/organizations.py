"""The organizations table: its items (organizations and memberships) and every read and write of it.

The table (`ORGANIZATIONS_TABLE_NAME`) holds two kinds of item, keyed `pk`/`sk`:

    organization  pk=ORG#<orgId>  sk=PROFILE
    membership    pk=ORG#<orgId>  sk=MEMBER#<membershipId>  gsi1pk=USER#<userId>  gsi1sk=ORG#<orgId>

so an organization's profile is one GetItem, its profile and members one Query of its partition, and a
user's memberships one Query of the `UserOrganizationsIndex` GSI. A membership tombstone drops its
`gsi1*` attributes: the index is sparse and holds live memberships only.

Memberships are keyed by Clerk's membership id, not by (organization, user): a user removed and later
re-added gets a new `orgmem_` id, and keying on the pair would let the first removal's tombstone
block the re-addition forever.

Writes follow the user table's rules (usersync.store.users): one conditional request, ordered by
`updatedAt` (an item someone else wrote without one can be replaced), a tombstone (`deletedAt`, the
envelope timestamp, one PutItem) is never resurrected and the earliest one wins, and a lost condition
is stale or (same svix-id) a duplicate, both successes. A live item is one UpdateItem, because absent
is unknown, not empty (contract §3): a key missing from Clerk's payload keeps the stored value, a
`null` clears it. Reading uses the one codec (usersync.store.codec).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from usersync.clerk.organizations import ClerkMembership, ClerkOrganization
from usersync.runtime.metrics import SyncSource
from usersync.store.codec import (
    ItemSchema,
    attributes_to_item,
    decode_item,
    deletion_time,
    integer_value,
    string_value,
)
from usersync.store.dynamodb import (
    BATCH_GET_LIMIT,
    TableRepository,
    WriteOutcome,
    batch_get,
    conditional_write,
    ensure_storable_item,
    lost_write,
    put_if,
    query_items,
    scan_items,
)
from usersync.store.errors import UninterpretableItemError
from usersync.store.records import SyncedItem, clerk_stamp, tombstone_stamp, utc_now_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import KeysAndAttributesTypeDef

    from usersync.store.codec import Item

ORG_PREFIX = "ORG#"
MEMBER_PREFIX = "MEMBER#"
USER_PREFIX = "USER#"
PROFILE_SORT_KEY = "PROFILE"
USER_ORGANIZATIONS_INDEX = "UserOrganizationsIndex"

# The user table's conditions on the composite key (pk exists iff the item exists).
UPSERT_CONDITION = (
    "attribute_not_exists(pk) OR (attribute_not_exists(deletedAt) AND "
    "(attribute_not_exists(updatedAt) OR updatedAt < :updatedAt))"
)
TOMBSTONE_CONDITION = "attribute_not_exists(pk) OR attribute_not_exists(deletedAt) OR deletedAt > :deletedAt"

# DynamoDB's key limits per key attribute (partition keys 2,048 bytes, sort keys 1,024 bytes).
ORGANIZATION_KEY_LIMITS = {"pk": 2048, "sk": 1024, "gsi1pk": 2048, "gsi1sk": 1024}


# ---------------------------------------------------------------------------------------- items


class _Item(SyncedItem):
    """Fields every item of the organizations table has; unlike users' rows, always stamped.

    `CLEARABLE` names the fields Clerk's payload may leave out: given (even as None) they are in
    `model_fields_set`, and None then clears the stored value; left out, the stored value stays."""

    CLEARABLE: ClassVar[tuple[str, ...]] = ()

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

    def cleared_attributes(self) -> list[str]:
        """Attributes the payload explicitly nulled, and a delivery id this write does not carry."""
        fields = self.__class__.model_fields
        cleared = [fields[name].alias or name for name in self.CLEARABLE if name in self.model_fields_set]
        cleared = [name for name in cleared if name not in self.to_attributes()]
        return [*cleared, *(["lastEventId"] if self.last_event_id is None else [])]


class OrganizationRecord(_Item):
    """An organization's profile item (pk=ORG#id, sk=PROFILE)."""

    CLEARABLE = ("name", "slug", "image_url")

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
        given = organization.model_fields_set  # a key Clerk left out is unknown, not empty
        profile = {name: value for name, value in organization.profile().items() if name in given}
        return cls(org_id=organization.id, **profile, **stamp)

    @classmethod
    def tombstone(
        cls, org_id: str, *, deleted_at: int, source: SyncSource, event_id: str | None = None
    ) -> OrganizationRecord:
        """Only the id and the deletion time: the tombstone depends on the delete event alone."""
        return cls(org_id=org_id, **tombstone_stamp(deleted_at, source=source, event_id=event_id))


class MembershipRecord(_Item):
    """A membership item (pk=ORG#orgId, sk=MEMBER#membershipId; in the user index while live).

    `orgName`/`orgSlug`/`orgUpdatedAt` are the membership's embedded copy of its organization, used
    by /me when the organization's own profile is missing or older.
    """

    CLEARABLE = ("role", "org_name", "org_slug", "org_updated_at")

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
        # A key Clerk left out is unknown, not empty: only the given ones are set.
        copied = {"name": "org_name", "slug": "org_slug", "updated_at": "org_updated_at"}
        copy = organization.membership_copy()
        given: dict[str, Any] = {
            copied[name]: copy[copied[name]]  # type: ignore[literal-required]
            for name in copied
            if name in organization.model_fields_set
        }
        if "role" in membership.model_fields_set:
            given["role"] = membership.role
        return cls(
            org_id=organization.id,
            membership_id=membership.id,
            user_id=membership.public_user_data.user_id,
            **given,
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
        stamp = tombstone_stamp(deleted_at, source=source, event_id=event_id)
        return cls(org_id=org_id, membership_id=membership_id, user_id=user_id, **stamp)


OrganizationItem = OrganizationRecord | MembershipRecord

_TIMES = ("createdAt", "updatedAt")
_ORGANIZATION_SCHEMA = ItemSchema(keys=("orgId",), text=("name", "slug", "imageUrl"), integers=_TIMES)
_MEMBERSHIP_SCHEMA = ItemSchema(
    keys=("orgId", "membershipId", "userId"),
    text=("role", "orgName", "orgSlug"),
    integers=(*_TIMES, "orgUpdatedAt"),
)


def item_from_dynamodb(item: Mapping[str, object], operation: str) -> OrganizationItem | None:
    """An item of the table as a record; None for an item of no kind we know (someone else's).

    An item that claims to be ours but cannot be read raises UninterpretableItemError (a
    RepositoryError), as for users: the caller answers 503 rather than guess.
    """
    sort_key = string_value(item.get("sk"))
    if sort_key == PROFILE_SORT_KEY:
        model: type[OrganizationItem] = OrganizationRecord
        schema = _ORGANIZATION_SCHEMA
    elif sort_key is not None and sort_key.startswith(MEMBER_PREFIX):
        model, schema = MembershipRecord, _MEMBERSHIP_SCHEMA
    else:
        return None
    fields = decode_item(item, schema, operation)
    try:
        return model.model_validate(fields)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise UninterpretableItemError(operation, f"{model.__name__}: {exc.__class__.__name__}") from exc


def ensure_storable(record: OrganizationItem) -> None:
    """Raise UnstorableRecordError for an item DynamoDB would refuse on every retry."""
    ensure_storable_item(record.to_attributes(), ORGANIZATION_KEY_LIMITS, "organization")


def profile_key(org_id: str) -> Item:
    """The key of an organization's profile item."""
    return {"pk": {"S": ORG_PREFIX + org_id}, "sk": {"S": PROFILE_SORT_KEY}}


# ---------------------------------------------------------------------------------------- repository


@dataclass(frozen=True)
class StoredVersion:
    """An item's identity and version, as reconciliation's snapshot holds it."""

    org_id: str
    membership_id: str
    user_id: str
    updated_at: int | None
    deleted_at: int | None


class OrganizationRepository(TableRepository):
    """Reads and writes the organizations table; every AWS failure surfaces as `RepositoryError`."""

    @classmethod
    def from_env(cls, client: DynamoDBClient) -> OrganizationRepository | None:
        """The repository of ORGANIZATIONS_TABLE_NAME, or None when the deployment names no table."""
        from usersync.runtime.settings import OrganizationsTableSettings

        table_name = OrganizationsTableSettings.from_env().organizations_table_name
        return cls(client, table_name) if table_name else None

    def save(self, record: OrganizationItem) -> WriteOutcome:
        """One conditional write: newer than what is stored, never over a tombstone. A tombstone is a
        PutItem (it replaces the item); a live record an UpdateItem that sets what the payload gave,
        removes what it nulled and keeps what it left out."""
        if record.is_tombstone:
            values = {":deletedAt": record.deleted_at}
            stored = put_if(
                self._client, self._table_name, record.to_attributes(), TOMBSTONE_CONDITION, values
            )
        elif record.updated_at is None:
            raise ValueError("a live organization or membership record needs updatedAt to be ordered")
        else:
            stored = self._update(record)
        return WriteOutcome.APPLIED if stored is None else lost_write(record.last_event_id, stored)

    def _update(self, record: OrganizationItem) -> dict[str, Any] | None:
        """One UpdateItem under UPSERT_CONDITION: None when it landed, else the item it lost to."""
        attributes = record.to_attributes()
        keys = {name: attributes.pop(name) for name in ("pk", "sk")}
        names = {f"#a{index}": name for index, name in enumerate(attributes)}
        values: dict[str, Any] = {f":a{index}": value for index, value in enumerate(attributes.values())}
        expression = "SET " + ", ".join(f"#a{index} = :a{index}" for index in range(len(attributes)))
        cleared = record.cleared_attributes()
        if cleared:
            names.update({f"#c{index}": name for index, name in enumerate(cleared)})
            expression += " REMOVE " + ", ".join(f"#c{index}" for index in range(len(cleared)))
        values[":updatedAt"] = record.updated_at
        return conditional_write(
            "UpdateItem",
            lambda: self._client.update_item(
                TableName=self._table_name,
                Key=attributes_to_item(keys),
                UpdateExpression=expression,
                ConditionExpression=UPSERT_CONDITION,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=attributes_to_item(values),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )

    def get_organizations(self, org_ids: Iterable[str]) -> dict[str, OrganizationRecord]:
        """Profiles (tombstones included) by id: one BatchGetItem per 100 ids.

        Unprocessed keys (throttling) are asked for again, a few times, then the read fails.
        """
        wanted = sorted(set(org_ids))
        found: dict[str, OrganizationRecord] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            keys = [profile_key(org_id) for org_id in wanted[start : start + BATCH_GET_LIMIT]]
            request: dict[str, KeysAndAttributesTypeDef] = {
                self._table_name: {"Keys": keys, "ConsistentRead": True}
            }
            for item in batch_get(self._client, request, self._table_name):
                record = item_from_dynamodb(item, "BatchGetItem")
                if isinstance(record, OrganizationRecord):
                    found[record.org_id] = record
        return found

    def memberships_of_user(self, user_id: str) -> list[MembershipRecord]:
        """The user's live memberships (tombstones are not in the index): one Query of the GSI.

        Eventually consistent, as every GSI read is. Liveness of the organizations and of the user is
        the caller's to check (see usersync.api.me).
        """
        items = query_items(
            self._client,
            self._table_name,
            IndexName=USER_ORGANIZATIONS_INDEX,
            KeyConditionExpression="gsi1pk = :user",
            ExpressionAttributeValues={":user": {"S": USER_PREFIX + user_id}},
        )
        records = (item_from_dynamodb(item, "Query") for item in items)
        return [r for r in records if isinstance(r, MembershipRecord) and not r.is_tombstone]

    def scan_versions(self) -> dict[tuple[str, str], StoredVersion]:
        """(pk, sk) -> what reconciliation needs of every item: one paginated, eventually consistent Scan
        (a snapshot that only picks what to write: the conditional put decides, so staleness is harmless)."""
        versions: dict[tuple[str, str], StoredVersion] = {}
        projection = "pk, sk, orgId, membershipId, userId, updatedAt, deletedAt"
        for item in scan_items(self._client, self._table_name, ProjectionExpression=projection):
            key = (string_value(item.get("pk")) or "", string_value(item.get("sk")) or "")
            versions[key] = StoredVersion(
                org_id=string_value(item.get("orgId")) or "",
                membership_id=string_value(item.get("membershipId")) or "",
                user_id=string_value(item.get("userId")) or "",
                updated_at=integer_value(item.get("updatedAt")),
                deleted_at=deletion_time(item["deletedAt"]) if "deletedAt" in item else None,
            )
        return versions
