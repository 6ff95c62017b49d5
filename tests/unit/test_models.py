"""Clerk payloads parse leniently; the stored record never holds empty strings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from usersync.clerk.users import ClerkUser
from usersync.runtime.metrics import SyncSource
from usersync.store.records import UserRecord
from usersync_dev.clerk import clerk_user


def test_primary_email_is_chosen_by_id_not_position() -> None:
    user = ClerkUser.model_validate(clerk_user("user_1", extra_emails=("first@example.com",)))
    assert user.email_addresses[0].email_address == "first@example.com"
    assert user.primary_email == "ada@example.com"


def test_null_primary_email_id_means_no_email() -> None:
    data = clerk_user("user_1")
    data["primary_email_address_id"] = None
    assert ClerkUser.model_validate(data).primary_email is None


def test_unknown_fields_and_nulls_are_accepted() -> None:
    data = clerk_user("user_1", first_name=None, last_name=None)
    data["brand_new_field"] = {"nested": [1, 2]}
    user = ClerkUser.model_validate(data)
    assert user.first_name is None
    assert user.last_name is None


def test_updated_at_is_required() -> None:
    data = clerk_user("user_1")
    del data["updated_at"]
    with pytest.raises(ValidationError, match="updated_at"):
        ClerkUser.model_validate(data)


def test_record_drops_empty_and_absent_values() -> None:
    user = ClerkUser.model_validate(clerk_user("user_1", first_name="", image_url=None, email=None))
    attributes = UserRecord.from_clerk_user(user, source=SyncSource.WEBHOOK).to_attributes()
    assert not {"firstName", "imageUrl", "email", "deletedAt", "lastEventId"} & attributes.keys()
    assert attributes["lastName"] == "Lovelace"
    assert attributes["source"] == "webhook"


def test_tombstone_holds_only_id_and_deletion() -> None:
    attributes = UserRecord.tombstone("user_1", deleted_at=5, event_id="msg_1").to_attributes()
    assert set(attributes) == {"userId", "deletedAt", "syncedAt", "source", "lastEventId"}
