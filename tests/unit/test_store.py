"""The store's shared rules, held for both tables: one reader (a decimal in a known attribute is an
UninterpretableItemError, unknown attributes of any type are ignored, `deletedAt` of any type is a
tombstone), one botocore -> RepositoryError translation, and conditional writes that replace an item
another writer stored without `updatedAt`. On moto, through the repositories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.stub import Stubber

from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.store.codec import attributes_to_item
from usersync.store.dynamodb import WriteOutcome
from usersync.store.errors import RepositoryError, UninterpretableItemError
from usersync.store.organizations import (
    MembershipRecord,
    OrganizationRecord,
    OrganizationRepository,
    item_from_dynamodb,
)
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository, item_to_record

T0 = 1_730_279_325_025
USER_ITEM = {"userId": {"S": "user_1"}, "email": {"S": "a@example.com"}, "updatedAt": {"N": str(T0)}}
PROFILE_ITEM = {
    "pk": {"S": "ORG#org_1"},
    "sk": {"S": "PROFILE"},
    "orgId": {"S": "org_1"},
    "name": {"S": "Acme"},
    "updatedAt": {"N": str(T0)},
}
MEMBERSHIP_ITEM = {
    "pk": {"S": "ORG#org_1"},
    "sk": {"S": "MEMBER#orgmem_1"},
    "gsi1pk": {"S": "USER#user_1"},
    "gsi1sk": {"S": "ORG#org_1"},
    "orgId": {"S": "org_1"},
    "membershipId": {"S": "orgmem_1"},
    "userId": {"S": "user_1"},
    "role": {"S": "org:admin"},
    "updatedAt": {"N": str(T0)},
}
FOREIGN = {"score": {"N": "1.5"}, "tags": {"L": [{"S": "x"}]}, "flag": {"BOOL": True}, "m": {"M": {}}}


def _read_user(item: dict[str, Any]) -> Any:
    return item_to_record(item)


def _read_organization_item(item: dict[str, Any]) -> Any:
    return item_from_dynamodb(item, "GetItem")


@dataclass(frozen=True)
class Reader:
    """One table's reader with an item it reads and one known integer and one known text attribute."""

    read: Callable[[dict[str, Any]], Any]
    item: dict[str, Any]
    known_integer: str
    known_text: str


READERS = pytest.mark.parametrize(
    "reader",
    [
        pytest.param(Reader(_read_user, USER_ITEM, "createdAt", "firstName"), id="user"),
        pytest.param(Reader(_read_organization_item, PROFILE_ITEM, "createdAt", "slug"), id="organization"),
        pytest.param(
            Reader(_read_organization_item, MEMBERSHIP_ITEM, "orgUpdatedAt", "orgName"), id="membership"
        ),
    ],
)


@READERS
def test_unknown_attributes_of_any_type_are_ignored(reader: Reader) -> None:
    plain = reader.read(reader.item)
    assert plain.updated_at == T0
    with_foreign = reader.read({**reader.item, **FOREIGN})
    # syncedAt: organizations' items are always stamped, so an item without it reads as stamped now
    assert with_foreign.model_dump(exclude={"synced_at"}) == plain.model_dump(exclude={"synced_at"})


@READERS
@pytest.mark.parametrize("value", [{"N": "1.5"}, {"S": "1730279325025"}, {"BOOL": True}, {"N": "nan"}])
def test_a_known_integer_that_cannot_be_interpreted_is_an_uninterpretable_item(
    reader: Reader, value: dict[str, Any]
) -> None:
    with pytest.raises(UninterpretableItemError, match="UninterpretableItem") as raised:
        reader.read({**reader.item, reader.known_integer: value})
    assert reader.known_integer in raised.value.problem
    with pytest.raises(UninterpretableItemError):
        reader.read({**reader.item, "updatedAt": {"N": "1730279325025.5"}})


@READERS
def test_a_known_text_attribute_of_another_type_is_an_uninterpretable_item(reader: Reader) -> None:
    with pytest.raises(UninterpretableItemError) as raised:
        reader.read({**reader.item, reader.known_text: {"N": "1"}})
    assert reader.known_text in raised.value.problem


@READERS
@pytest.mark.parametrize("deleted_at", [{"N": "1.5"}, {"S": "yesterday"}, {"BOOL": True}])
def test_deleted_at_of_any_type_is_a_tombstone_whatever_else_the_item_holds(
    reader: Reader, deleted_at: dict[str, Any]
) -> None:
    broken = {reader.known_integer: {"N": "0.5"}, reader.known_text: {"N": "1"}}
    record = reader.read({**reader.item, "deletedAt": deleted_at, **broken})
    assert record.is_tombstone


def test_an_organizations_item_of_another_kind_is_not_ours() -> None:
    assert item_from_dynamodb({**PROFILE_ITEM, "sk": {"S": "NOTE#1"}}, "Query") is None
    assert item_from_dynamodb({**PROFILE_ITEM, "sk": {"N": "1"}}, "Query") is None
    with pytest.raises(UninterpretableItemError):  # claims to be a profile, has no orgId
        item_from_dynamodb({"pk": {"S": "ORG#org_1"}, "sk": {"S": "PROFILE"}}, "Query")


# ---------------------------------------------------------------- the same through the repositories


def test_reads_fail_closed_on_a_decimal_in_either_table(organizations_table: str, users_table: str) -> None:
    client = dynamodb_client()
    client.put_item(TableName=users_table, Item={**USER_ITEM, "createdAt": {"N": "1.5"}})
    with pytest.raises(UninterpretableItemError):
        UserRepository(client, users_table).get("user_1")
    client.put_item(TableName=organizations_table, Item={**MEMBERSHIP_ITEM, "updatedAt": {"N": "1.5"}})
    with pytest.raises(UninterpretableItemError):
        OrganizationRepository(client, organizations_table).memberships_of_user("user_1")


def test_a_foreign_user_item_without_updated_at_is_replaced_by_clerks_record(users_table: str) -> None:
    client = dynamodb_client()
    client.put_item(TableName=users_table, Item={"userId": {"S": "user_1"}, "email": {"S": "old@x.com"}})
    record = UserRecord(user_id="user_1", email="new@x.com", updated_at=T0, source=SyncSource.WEBHOOK)
    assert UserRepository(client, users_table).save(record) is WriteOutcome.APPLIED
    stored = UserRepository(client, users_table).get("user_1")
    assert stored is not None
    assert stored.email == "new@x.com"
    assert stored.updated_at == T0


@pytest.mark.parametrize("kind", ["organization", "membership"])
def test_a_foreign_organizations_item_without_updated_at_is_updated(
    organizations_table: str, kind: str
) -> None:
    client = dynamodb_client()
    foreign = dict(PROFILE_ITEM if kind == "organization" else MEMBERSHIP_ITEM)
    del foreign["updatedAt"]
    client.put_item(TableName=organizations_table, Item={**foreign, "name": {"S": "Console"}})
    repository = OrganizationRepository(client, organizations_table)
    record: OrganizationRecord | MembershipRecord
    if kind == "organization":
        record = OrganizationRecord(org_id="org_1", name="Acme", updated_at=T0)
    else:
        record = MembershipRecord(
            org_id="org_1", membership_id="orgmem_1", user_id="user_1", role="org:admin", updated_at=T0
        )
    assert repository.save(record) is WriteOutcome.APPLIED
    assert repository.save(record) is WriteOutcome.STALE  # and ordered from then on
    key = {"pk": {"S": record.pk}, "sk": {"S": record.sk}}
    stored = client.get_item(TableName=organizations_table, Key=key)["Item"]
    assert stored["updatedAt"] == {"N": str(T0)}
    # Clerk's values landed; an attribute Clerk's record does not name is kept (absent is unknown).
    if kind == "organization":
        assert stored["name"] == {"S": "Acme"}
    else:
        assert stored["role"] == {"S": "org:admin"}
        assert stored["name"] == {"S": "Console"}


def test_a_foreign_tombstone_is_never_resurrected(organizations_table: str) -> None:
    client = dynamodb_client()
    client.put_item(TableName=organizations_table, Item={**PROFILE_ITEM, "deletedAt": {"S": "yes"}})
    repository = OrganizationRepository(client, organizations_table)
    newer = OrganizationRecord(org_id="org_1", name="Back", updated_at=T0 + 1)
    assert repository.save(newer) is WriteOutcome.STALE


@pytest.mark.parametrize(
    ("call", "operation"),
    [
        (lambda client, table: UserRepository(client, table).get("user_1"), "GetItem"),
        (lambda client, table: list(UserRepository(client, table).scan_versions()), "Scan"),
        (lambda client, table: OrganizationRepository(client, table).memberships_of_user("u"), "Query"),
        (lambda client, table: OrganizationRepository(client, table).scan_versions(), "Scan"),
        (
            lambda client, table: OrganizationRepository(client, table).save(
                OrganizationRecord(org_id="org_1", updated_at=T0)
            ),
            "UpdateItem",
        ),
    ],
    ids=[
        "user GetItem",
        "user Scan",
        "organizations Query",
        "organizations Scan",
        "organizations UpdateItem",
    ],
)
def test_every_botocore_failure_is_a_repository_error_naming_its_operation(call: Any, operation: str) -> None:
    client = dynamodb_client()
    with Stubber(client) as stubber:
        api = {"GetItem": "get_item", "Scan": "scan", "Query": "query", "UpdateItem": "update_item"}[
            operation
        ]
        stubber.add_client_error(api, service_error_code="ProvisionedThroughputExceededException")
        with pytest.raises(RepositoryError) as raised:
            call(client, "t")
    error = raised.value
    assert (error.operation, error.code) == (operation, "ProvisionedThroughputExceededException")


def test_the_codec_writes_strings_and_integers_only() -> None:
    assert attributes_to_item({"a": "x", "b": 3}) == {"a": {"S": "x"}, "b": {"N": "3"}}
    for value in (True, 1.5, None):
        with pytest.raises(TypeError):
            attributes_to_item({"a": value})
