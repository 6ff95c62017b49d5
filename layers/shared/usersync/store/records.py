"""The items usersync writes: what every item carries, and the user table's record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from usersync.clerk.payload import ClerkRecord
from usersync.clerk.users import ClerkUser, UserProfile, user_profile
from usersync.runtime.metrics import SyncSource


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


class TombstoneStamp(TypedDict):
    """What a tombstone records besides its keys: the deletion time and the writer (with the delivery's
    svix-id when a webhook wrote it). It depends on the delete alone, so every delivery order ends in
    the same item."""

    deleted_at: int
    source: SyncSource
    last_event_id: str | None


def tombstone_stamp(deleted_at: int, *, source: SyncSource, event_id: str | None) -> TombstoneStamp:
    return {"deleted_at": deleted_at, "source": source, "last_event_id": event_id}


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
        return cls(user_id=user_id, **tombstone_stamp(deleted_at, source=source, event_id=event_id))

    def profile(self) -> UserProfile:
        """The fields a session token also carries, for compare-first checks."""
        return user_profile(self, email=self.email)

    def to_attributes(self) -> dict[str, Any]:
        """Plain attribute dict (table names, absent values dropped), stamped with `syncedAt` now."""
        attributes = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        attributes.setdefault("syncedAt", utc_now_iso())
        return attributes
