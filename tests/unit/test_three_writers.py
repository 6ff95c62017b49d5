"""The three-writer rule of the repository, case by case (contract §3, "Three writers, one outcome").

The property test in tests/reliability/test_convergence.py checks every interleaving; these pin the
cases the rule exists for, each on moto with the real conditional requests.
"""

from __future__ import annotations

from typing import Any

import pytest

from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.store.dynamodb import WriteOutcome
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository
from usersync.sync.users import SyncResult, UserCache, sync_from_token

USER_ID = "user_3writers"
CREATED = 1_700_000_000_000


@pytest.fixture
def repository(users_table: str) -> UserRepository:
    return UserRepository(dynamodb_client(), users_table)


def clerk(updated_at: int, first_name: str, *, source: SyncSource = SyncSource.WEBHOOK) -> UserRecord:
    return UserRecord(
        user_id=USER_ID,
        email="ada@example.com",
        first_name=first_name,
        created_at=CREATED,
        updated_at=updated_at,
        source=source,
        last_event_id=f"msg_{first_name}" if source is SyncSource.WEBHOOK else None,
    )


def token(iat_ms: int, first_name: str) -> UserRecord:
    return UserRecord(
        user_id=USER_ID,
        email="ada@example.com",
        first_name=first_name,
        updated_at=iat_ms,
        source=SyncSource.AUTHORIZER,
    )


def stored(repository: UserRepository) -> UserRecord:
    record = repository.get(USER_ID)
    assert record is not None
    return record


def stored_after_a_newer_write(
    repository: UserRepository, first: UserRecord, newer: UserRecord
) -> UserRecord:
    """Saves `first`, then `newer`, which must replace it (APPLIED): the row as it then stands."""
    repository.save(first)
    assert repository.save(newer) is WriteOutcome.APPLIED
    return stored(repository)


@pytest.mark.parametrize("writer", [SyncSource.WEBHOOK, SyncSource.RECONCILE])
def test_a_user_first_stored_by_the_authorizer_gets_created_at_from_an_older_clerk_record(
    repository: UserRepository, writer: SyncSource
) -> None:
    assert repository.save(token(CREATED + 60_000, "FromToken")) is WriteOutcome.APPLIED
    assert repository.save(clerk(CREATED + 1, "FromClerk", source=writer)) is WriteOutcome.MERGED
    record = stored(repository)
    assert (record.created_at, record.first_name, record.clerk_updated_at) == (
        CREATED,
        "FromToken",  # the token is newer than Clerk's record: its profile stays
        CREATED + 1,
    )
    # Replaying the record is stale now, and an even older one too
    assert repository.save(clerk(CREATED + 1, "FromClerk", source=writer)) in (
        WriteOutcome.STALE,
        WriteOutcome.DUPLICATE,
    )
    assert repository.save(clerk(CREATED, "Oldest", source=writer)) is WriteOutcome.STALE


def test_a_newer_clerk_record_replaces_an_authorizer_row_and_a_tie_goes_to_clerk(
    repository: UserRepository,
) -> None:
    record = stored_after_a_newer_write(
        repository, token(CREATED + 60_000, "FromToken"), clerk(CREATED + 60_000, "FromClerk")
    )
    assert (record.first_name, record.created_at, record.source) == ("FromClerk", CREATED, SyncSource.WEBHOOK)
    # A token of the same time, or older, changes nothing
    assert repository.save(token(CREATED + 60_000, "Tie")) is WriteOutcome.STALE
    assert stored(repository).first_name == "FromClerk"


def test_a_newer_token_keeps_created_at_and_clerk_version_and_an_older_webhook_stays_out(
    repository: UserRepository,
) -> None:
    record = stored_after_a_newer_write(
        repository, clerk(CREATED + 10, "V10"), token(CREATED + 60_000, "FromToken")
    )
    assert (record.first_name, record.created_at, record.clerk_updated_at, record.last_event_id) == (
        "FromToken",
        CREATED,
        CREATED + 10,
        "msg_V10",
    )
    # Clerk version 5 is older than the stored Clerk version 10: no merge, no write
    assert repository.save(clerk(CREATED + 5, "V5")) is WriteOutcome.STALE
    assert stored(repository).clerk_updated_at == CREATED + 10


def test_legacy_rows_without_clerk_updated_at_keep_their_order(repository: UserRepository) -> None:
    client: Any = dynamodb_client()
    # Written by an older version: a webhook row whose Clerk version is its updatedAt
    client.put_item(
        TableName=repository.table_name,
        Item={
            "userId": {"S": USER_ID},
            "firstName": {"S": "Legacy"},
            "updatedAt": {"N": str(CREATED + 50)},
            "source": {"S": "webhook"},
        },
    )
    assert repository.save(clerk(CREATED + 40, "Older")) is WriteOutcome.STALE
    assert repository.save(clerk(CREATED + 60, "Newer")) is WriteOutcome.APPLIED
    assert stored(repository).first_name == "Newer"


def test_nothing_resurrects_a_tombstone(repository: UserRepository) -> None:
    repository.save(token(CREATED + 60_000, "FromToken"))
    assert repository.save(UserRecord.tombstone(USER_ID, deleted_at=CREATED + 70_000)) is WriteOutcome.APPLIED
    assert repository.save(clerk(CREATED + 1, "Late")) is WriteOutcome.STALE
    assert repository.save(clerk(CREATED + 90_000, "Later")) is WriteOutcome.STALE
    assert repository.save(token(CREATED + 90_000, "Token")) is WriteOutcome.STALE
    assert stored(repository).is_tombstone


# ---------------------------------------------------------------- profile fidelity (contract §3)


def partial_token(iat_ms: int, **claims: str) -> UserRecord:
    """A token carrying `email` and only the optional claims given (absent ones are unknown)."""
    return UserRecord(
        user_id=USER_ID,
        email=claims.pop("email", "ada@example.com"),
        updated_at=iat_ms,
        source=SyncSource.AUTHORIZER,
        **claims,
    )


def full_clerk(updated_at: int, **profile: str | None) -> UserRecord:
    values: dict[str, str | None] = {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "image_url": "https://img.clerk.com/ada.png",
    }
    values.update(profile)
    return UserRecord(
        user_id=USER_ID,
        created_at=CREATED,
        updated_at=updated_at,
        source=SyncSource.WEBHOOK,
        last_event_id=f"msg_{updated_at}",
        **values,
    )


def test_a_token_with_only_email_after_a_webhook_leaves_every_profile_attribute(
    repository: UserRepository,
) -> None:
    repository.save(full_clerk(CREATED + 10))
    assert repository.save(partial_token(CREATED + 60_000, email="ada@new.example")) is WriteOutcome.APPLIED
    record = stored(repository)
    assert (record.email, record.first_name, record.last_name, record.image_url) == (
        "ada@new.example",  # the claim the token carries
        "Ada",
        "Lovelace",
        "https://img.clerk.com/ada.png",  # and every attribute it does not carry, untouched
    )
    # A later Clerk record older than the token still updates what the token did not claim
    assert (
        repository.save(full_clerk(CREATED + 20, first_name="Augusta", image_url=None)) is WriteOutcome.MERGED
    )
    record = stored(repository)
    assert (record.email, record.first_name, record.image_url, record.clerk_updated_at) == (
        "ada@new.example",  # the token's fresher claim stays
        "Augusta",
        None,  # Clerk cleared it, and no newer token said otherwise
        CREATED + 20,
    )


def test_an_authorizer_first_row_is_filled_by_an_older_clerk_record(repository: UserRepository) -> None:
    assert repository.save(partial_token(CREATED + 60_000, email="ada@token.example")) is WriteOutcome.APPLIED
    assert repository.save(full_clerk(CREATED + 10)) is WriteOutcome.MERGED
    record = stored(repository)
    assert (record.email, record.first_name, record.last_name, record.image_url, record.created_at) == (
        "ada@token.example",  # the token's, fresher than Clerk's record
        "Ada",
        "Lovelace",
        "https://img.clerk.com/ada.png",
        CREATED,
    )


def test_an_older_clerk_record_never_overwrites_a_newer_one(repository: UserRepository) -> None:
    repository.save(full_clerk(CREATED + 20, first_name="Newer"))
    assert repository.save(full_clerk(CREATED + 10, first_name="Older", image_url=None)) is WriteOutcome.STALE
    # Nor after a token moved the row on: the merge is only for records newer than the row's Clerk version
    repository.save(partial_token(CREATED + 60_000))
    assert repository.save(full_clerk(CREATED + 15, first_name="Older", image_url=None)) is WriteOutcome.STALE
    record = stored(repository)
    assert (record.first_name, record.image_url, record.clerk_updated_at) == (
        "Newer",
        "https://img.clerk.com/ada.png",
        CREATED + 20,
    )


def test_a_merge_after_a_token_wrote_in_between_is_written_again(repository: UserRepository) -> None:
    """The merge respects the claims the put saw; a token writing in between makes it start over."""
    repository.save(partial_token(CREATED + 60_000, first_name="FromToken"))
    client: Any = dynamodb_client()
    calls = {"count": 0}

    def token_lands_before_the_first_merge(**_kwargs: Any) -> None:
        calls["count"] += 1
        if calls["count"] == 1:  # between the lost put and the merge: a newer token
            client.meta.events.unregister(
                "before-call.dynamodb.UpdateItem", token_lands_before_the_first_merge
            )
            UserRepository(client, repository.table_name).save(
                partial_token(CREATED + 70_000, last_name="Token2")
            )

    client.meta.events.register("before-call.dynamodb.UpdateItem", token_lands_before_the_first_merge)
    try:
        assert repository.save(full_clerk(CREATED + 10)) is WriteOutcome.MERGED
    finally:
        client.meta.events.unregister("before-call.dynamodb.UpdateItem", token_lands_before_the_first_merge)
    record = stored(repository)
    assert (record.first_name, record.last_name, record.created_at, record.updated_at) == (
        "FromToken",
        "Token2",  # claimed by the token that landed in between: kept, not Clerk's older value
        CREATED,
        CREATED + 70_000,
    )


def test_a_token_write_losing_to_a_write_since_the_cached_read_is_stale(repository: UserRepository) -> None:
    """The authorizer compared the token with its cached row, and a newer Clerk version landed since: the
    write loses the condition, the row is read again (live), and the answer is STALE, not a failure;
    the cache then holds the newer row. (The reliability property reaches this by chance; this pins it.)"""
    cache = UserCache()
    cached = clerk(CREATED + 1_000, "Ada")
    repository.save(cached)
    cache.put(USER_ID, cached)  # what this container read a moment ago
    assert repository.save(clerk(CREATED + 3_000, "Augusta")) is WriteOutcome.APPLIED  # a webhook since

    assert sync_from_token(repository, token(CREATED + 2_000, "Lovelace"), cache) is SyncResult.STALE
    assert stored(repository).first_name == "Augusta"
    hit, record = cache.get(USER_ID)
    assert hit
    assert record is not None
    assert record.first_name == "Augusta"
