"""Typed shapes at the system's edges: Clerk's webhook payloads and the stored user record.

Clerk's real payloads drift from its documented examples, so the inbound models ignore unknown
fields and accept nulls wherever Clerk has been seen to send them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol, TypedDict

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Clerk times are epoch milliseconds; 10**15 is the year 33658. Anything outside is not a Clerk time
# (and past 38 digits DynamoDB cannot store it): rejecting it at parse time makes a webhook a 400,
# which Svix does not retry, instead of a write that fails on every retry.
EpochMs = Annotated[int, Field(ge=0, lt=10**15)]


class SyncSource(StrEnum):
    """Who wrote a record; also the `Source` metric dimension."""

    WEBHOOK = "webhook"
    AUTHORIZER = "authorizer"
    RECONCILE = "reconcile"


class ClerkPayload(BaseModel):
    """Base of every shape Clerk sends (webhook data, Backend API objects, token claims): Clerk adds
    fields over time, so unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def empty_string_as_absent(value: Any) -> Any:
    """Clerk renders an unset text field or claim as "" (or null): both mean absent."""
    return None if value == "" else value


# Optional Clerk text, "" read as None at parse time: an unknown value is never stored as "".
ClerkText = Annotated[str | None, BeforeValidator(empty_string_as_absent)]


class ClerkRecord(ClerkPayload):
    """A Clerk object usersync mirrors (user, organization, membership): Clerk's times version it."""

    created_at: EpochMs | None = None
    updated_at: EpochMs


class UserProfile(TypedDict):
    """What usersync mirrors of a user, under the record's field names: the same four fields whether
    Clerk reports them (webhook, reconcile), a session token carries them, or the table holds them."""

    email: str | None
    first_name: str | None
    last_name: str | None
    image_url: str | None


class NamesAndImage(Protocol):
    """A source of a user's profile under usersync's field names (Clerk user, token claims, record)."""

    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def image_url(self) -> str | None: ...


def user_profile(source: NamesAndImage, *, email: str | None) -> UserProfile:
    """The profile `source` describes; `email` is given because each source finds it its own way."""
    return {
        "email": email,
        "first_name": source.first_name,
        "last_name": source.last_name,
        "image_url": source.image_url,
    }


class ClerkEmailAddress(ClerkPayload):
    id: str
    email_address: str


class ClerkUser(ClerkRecord):
    """The Backend API User object carried by `user.created` / `user.updated` (and `GET /v1/users`)."""

    id: str = Field(min_length=1)
    first_name: ClerkText = None
    last_name: ClerkText = None
    image_url: ClerkText = None
    email_addresses: list[ClerkEmailAddress] = Field(default_factory=list)
    primary_email_address_id: str | None = None

    @property
    def primary_email(self) -> str | None:
        """The address whose id is `primary_email_address_id`; never simply the first one."""
        if self.primary_email_address_id is None:
            return None
        for address in self.email_addresses:
            if address.id == self.primary_email_address_id:
                return address.email_address or None
        return None

    def profile(self) -> UserProfile:
        """The profile as Clerk reports it: the email is the primary address."""
        return user_profile(self, email=self.primary_email)


class ClerkDeletedUser(ClerkPayload):
    """`user.deleted` data: only `{id, object, deleted}`, no `updated_at`."""

    id: str = Field(min_length=1)


class ClerkEvent(ClerkPayload):
    """The webhook envelope; `data` is validated per event type once the type is known."""

    type: str
    data: dict[str, Any]
    timestamp: EpochMs | None = None
    object: Literal["event"] | None = None


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SyncedItem(BaseModel):
    """What every item usersync writes carries (user, organization and membership tables): Clerk's
    times, the deletion time that makes it a tombstone, and the delivery that wrote it. Attribute
    names are the table's; None means absent."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    created_at: int | None = Field(default=None, alias="createdAt")
    updated_at: int | None = Field(default=None, alias="updatedAt")
    deleted_at: int | None = Field(default=None, alias="deletedAt")
    last_event_id: str | None = Field(default=None, alias="lastEventId")

    @property
    def is_tombstone(self) -> bool:
        return self.deleted_at is not None


class Writer(TypedDict):
    """Who writes an item, as every record factory takes it: the writer, and for a webhook the
    delivery (svix-id) that idempotency and `lastEventId` need."""

    source: SyncSource
    event_id: str | None


class ClerkStamp(TypedDict):
    """What an item written from a Clerk object records besides its data: Clerk's times (they order
    the writes) and the writer, with the delivery (svix-id) when a webhook wrote it."""

    created_at: int | None
    updated_at: int
    source: SyncSource
    last_event_id: str | None


def clerk_stamp(clerk: ClerkRecord, *, source: SyncSource, event_id: str | None) -> ClerkStamp:
    return {
        "created_at": clerk.created_at,
        "updated_at": clerk.updated_at,
        "source": source,
        "last_event_id": event_id,
    }


class UserRecord(SyncedItem):
    """One item of the user table. Attribute names are the table's; None means absent.

    `updated_at` orders writes (Clerk's `updated_at`, or the token's `iat` for the authorizer);
    `clerk_updated_at` is the newest Clerk record version applied (webhook/reconcile only), so an
    authorizer write never hides which Clerk version the row already holds. `source` and `synced_at`
    are optional: items written by other writers (a backfill, the console) may lack them.
    """

    user_id: str = Field(alias="userId", min_length=1)
    email: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    image_url: str | None = Field(default=None, alias="imageUrl")
    clerk_updated_at: int | None = Field(default=None, alias="clerkUpdatedAt")
    synced_at: str | None = Field(default=None, alias="syncedAt")
    source: SyncSource | None = None

    @classmethod
    def from_clerk_user(
        cls, user: ClerkUser, *, source: SyncSource, event_id: str | None = None
    ) -> UserRecord:
        stamp = clerk_stamp(user, source=source, event_id=event_id)
        return cls(user_id=user.id, clerk_updated_at=user.updated_at, **user.profile(), **stamp)

    @classmethod
    def tombstone(
        cls,
        user_id: str,
        *,
        deleted_at: int,
        source: SyncSource = SyncSource.WEBHOOK,
        event_id: str | None = None,
    ) -> UserRecord:
        """A deleted user keeps only its id and deletion time: the profile (PII) is dropped.

        The tombstone depends only on the delete event, so every delivery order ends in the same item.
        """
        return cls(user_id=user_id, deleted_at=deleted_at, source=source, last_event_id=event_id)

    def profile(self) -> UserProfile:
        """The fields a session token also carries, for compare-first checks."""
        return user_profile(self, email=self.email)

    def to_attributes(self) -> dict[str, Any]:
        """Plain attribute dict (table names, absent values dropped), stamped with `syncedAt` now."""
        attributes = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        attributes.setdefault("syncedAt", utc_now_iso())
        return attributes
