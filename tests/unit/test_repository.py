"""The one conditional PutItem: ordering, tombstones, duplicates, and failures as RepositoryError."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import RepositoryError
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository


@pytest.fixture
def repository(users_table: str) -> UserRepository:
    return UserRepository(dynamodb_client(), users_table)


def live(updated_at: int, *, event_id: str | None = None, **fields: Any) -> UserRecord:
    return UserRecord(
        user_id="user_1",
        email=fields.get("email", "a@example.com"),
        first_name=fields.get("first_name", "A"),
        updated_at=updated_at,
        created_at=1,
        source=SyncSource.WEBHOOK,
        last_event_id=event_id,
    )


def test_create_then_newer_then_older(repository: UserRepository) -> None:
    assert repository.save(live(10, first_name="first")) is WriteOutcome.APPLIED
    assert repository.save(live(20, first_name="second")) is WriteOutcome.APPLIED
    assert repository.save(live(15, first_name="older")) is WriteOutcome.STALE
    stored = repository.get("user_1")
    assert stored is not None
    assert stored.first_name == "second"
    assert stored.updated_at == 20


def test_equal_updated_at_does_not_replace(repository: UserRepository) -> None:
    repository.save(live(10, first_name="first"))
    assert repository.save(live(10, first_name="same-time")) is WriteOutcome.STALE
    stored = repository.get("user_1")
    assert stored is not None
    assert stored.first_name == "first"


def test_duplicate_is_recognised_by_event_id(repository: UserRepository) -> None:
    repository.save(live(10, event_id="msg_1"))
    assert repository.save(live(10, event_id="msg_1")) is WriteOutcome.DUPLICATE
    assert repository.save(live(5, event_id="msg_0")) is WriteOutcome.STALE


def test_tombstone_blocks_every_later_upsert(repository: UserRepository) -> None:
    repository.save(live(10))
    assert repository.save(UserRecord.tombstone("user_1", deleted_at=11)) is WriteOutcome.APPLIED
    assert repository.save(live(10**13)) is WriteOutcome.STALE
    stored = repository.get("user_1")
    assert stored is not None
    assert stored.is_tombstone
    assert stored.email is None


def test_earliest_tombstone_wins(repository: UserRepository) -> None:
    assert repository.save(UserRecord.tombstone("user_1", deleted_at=30)) is WriteOutcome.APPLIED
    assert repository.save(UserRecord.tombstone("user_1", deleted_at=20)) is WriteOutcome.APPLIED
    assert repository.save(UserRecord.tombstone("user_1", deleted_at=25)) is WriteOutcome.STALE
    stored = repository.get("user_1")
    assert stored is not None
    assert stored.deleted_at == 20


def test_live_record_without_updated_at_is_refused(repository: UserRepository) -> None:
    with pytest.raises(ValueError, match="updatedAt"):
        repository.save(UserRecord(user_id="user_1", source=SyncSource.AUTHORIZER))


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError"]
)
def test_aws_errors_become_repository_errors(repository: UserRepository, code: str) -> None:
    with Stubber(dynamodb_client()) as stubber:
        stubber.add_client_error("put_item", service_error_code=code, http_status_code=500)
        with pytest.raises(RepositoryError) as raised:
            repository.save(live(10))
    assert raised.value.code == code
    assert raised.value.operation == "PutItem"


@pytest.mark.usefixtures("aws")
def test_missing_table_is_a_repository_error() -> None:
    repository = UserRepository(dynamodb_client(), "no-such-table")
    with pytest.raises(RepositoryError, match="ResourceNotFoundException"):
        repository.get("user_1")
