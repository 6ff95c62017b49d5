"""Clerk's webhook events applied to their tables: the one dispatch, for users and organizations alike.

Each handled event type names the record it asks for (`_RECORD_FOR`); `apply_event` validates the
event's data into that record and writes it with the record's one conditional write, counted (see
usersync.sync.users). Deletes carry no `updated_at` worth ordering by: their tombstones are timed by
the envelope's `timestamp` (ms), else the signed svix timestamp. A new Clerk entity adds its event
types here, and nothing in the HTTP face changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from usersync.clerk.organizations import (
    ClerkDeletedMembership,
    ClerkDeletedOrganization,
    ClerkMembership,
    ClerkOrganization,
)
from usersync.clerk.payload import ClerkEvent, ClerkPayloadError, describe
from usersync.clerk.users import ClerkDeletedUser, ClerkUser
from usersync.clerk.webhooks import SignedMessage
from usersync.runtime.metrics import SyncSource
from usersync.runtime.observability import logger
from usersync.store import organizations as organizations_table
from usersync.store import users as users_table
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import RepositoryError
from usersync.store.organizations import MembershipRecord, OrganizationItem, OrganizationRecord
from usersync.store.records import UserRecord, Writer
from usersync.sync.organizations import write_organization_item
from usersync.sync.users import write_user

if TYPE_CHECKING:  # the repositories are handed in: named here only in annotations, as in api.webhook
    from usersync.store.organizations import OrganizationRepository
    from usersync.store.users import UserRepository

SyncedRecord = UserRecord | OrganizationItem
# The record an event's data asks for, given the data, the tombstone time and the writer.
RecordFactory = Callable[[Mapping[str, Any], int, Writer], SyncedRecord]


def _user(data: Mapping[str, Any], _deleted_at: int, writer: Writer) -> UserRecord:
    return UserRecord.from_clerk_user(ClerkUser.model_validate(data), **writer)


def _deleted_user(data: Mapping[str, Any], deleted_at: int, writer: Writer) -> UserRecord:
    deleted = ClerkDeletedUser.model_validate(data)
    return UserRecord.tombstone(deleted.id, deleted_at=deleted_at, **writer)


def _organization(data: Mapping[str, Any], _deleted_at: int, writer: Writer) -> OrganizationRecord:
    return OrganizationRecord.from_clerk(ClerkOrganization.model_validate(data), **writer)


def _deleted_organization(data: Mapping[str, Any], deleted_at: int, writer: Writer) -> OrganizationRecord:
    deleted = ClerkDeletedOrganization.model_validate(data)
    return OrganizationRecord.tombstone(deleted.id, deleted_at=deleted_at, **writer)


def _membership(data: Mapping[str, Any], _deleted_at: int, writer: Writer) -> MembershipRecord:
    return MembershipRecord.from_clerk(ClerkMembership.model_validate(data), **writer)


def _deleted_membership(data: Mapping[str, Any], deleted_at: int, writer: Writer) -> MembershipRecord:
    gone = ClerkDeletedMembership.model_validate(data)
    user_id = gone.public_user_data.user_id
    return MembershipRecord.tombstone(gone.organization.id, gone.id, user_id, deleted_at=deleted_at, **writer)


_RECORD_FOR: dict[str, RecordFactory] = {
    "user.created": _user,
    "user.updated": _user,
    "user.deleted": _deleted_user,
    "organization.created": _organization,
    "organization.updated": _organization,
    "organization.deleted": _deleted_organization,
    "organizationMembership.created": _membership,
    "organizationMembership.updated": _membership,
    "organizationMembership.deleted": _deleted_membership,
}
# Every event type the webhook applies (what the Clerk endpoint should subscribe to).
HANDLED_EVENT_TYPES = frozenset(_RECORD_FOR)


@dataclass(frozen=True)
class AppliedEvent:
    """What one event did: its write's outcome (None for an event type usersync does not handle)."""

    outcome: WriteOutcome | None
    user_id: str | None = None


def record_for_event(
    event_type: str, data: Mapping[str, Any], *, deleted_at: int, event_id: str
) -> SyncedRecord | None:
    """The item a webhook event asks for; None for event types usersync does not handle.

    Raises pydantic's ValidationError when the data lacks what its type needs.
    """
    factory = _RECORD_FOR.get(event_type)
    if factory is None:
        return None
    return factory(data, deleted_at, {"source": SyncSource.WEBHOOK, "event_id": event_id})


def record_for(event: ClerkEvent, message: SignedMessage) -> SyncedRecord | None:
    """The item a verified event asks for (raises ClerkPayloadError for data its type cannot use)."""
    deleted_at = event.timestamp if event.timestamp is not None else message.timestamp * 1000
    try:
        return record_for_event(event.type, event.data, deleted_at=deleted_at, event_id=message.message_id)
    except ValidationError as exc:
        raise ClerkPayloadError(f"invalid {event.type} data: {describe(exc)}") from None


def apply_event(
    event: ClerkEvent,
    message: SignedMessage,
    users: UserRepository,
    organizations: OrganizationRepository | None,
) -> AppliedEvent:
    """Apply one verified event with one conditional write.

    Raises ClerkPayloadError (data its type cannot use), UnstorableRecordError (an item DynamoDB would
    refuse on every retry) or RepositoryError (the table failed, or is not configured).
    """
    return apply_record(record_for(event, message), users, organizations)


def apply_record(
    record: SyncedRecord | None, users: UserRepository, organizations: OrganizationRepository | None
) -> AppliedEvent:
    """Write the record an event asked for (None: an event type usersync does not handle)."""
    if record is None:
        return AppliedEvent(None)
    if isinstance(record, UserRecord):
        users_table.ensure_storable(record)
        return AppliedEvent(write_user(users, record), record.user_id)
    logger.append_keys(orgId=record.org_id)
    if organizations is None:
        # Misconfigured (no ORGANIZATIONS_TABLE_NAME): a failure, so Svix retries once it is fixed.
        raise RepositoryError("PutItem", "OrganizationsTableNotConfigured")
    organizations_table.ensure_storable(record)
    user_id = record.user_id if isinstance(record, MembershipRecord) else None
    return AppliedEvent(write_organization_item(organizations, record), user_id)
