"""Reconciliation at scale (CONTRACT §12): cursor paging under concurrent change, memory bounded by a
page, compare-first without a snapshot."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from usersync.runtime.aws import dynamodb_client
from usersync.store.users import UserRepository
from usersync.sync.reconcile import ReconcileOptions, run_whole_pass
from usersync_dev.clerk import clerk_user
from usersync_dev.loopback_clerk import LoopbackClerk, serve_from_child_process

# `make test` only, like test_reconcile.py: a loopback Clerk with thousands of users.
pytestmark = pytest.mark.slow

T0 = 1_700_000_000_000


def user(index: int) -> dict[str, Any]:
    return clerk_user(
        f"user_{index:06d}", email=f"u{index}@example.com", created_at=T0 + index, updated_at=T0 + index
    )


@pytest.fixture
def clerk() -> Iterator[LoopbackClerk]:
    fake = LoopbackClerk()
    with fake.serve():
        yield fake


def written_user_ids(client: Any) -> Counter[str]:
    """Every user id the client sends a PutItem for (botocore's event hook: observation only)."""
    puts: Counter[str] = Counter()

    def record(params: dict[str, Any], **_: Any) -> None:
        puts[params["Item"]["userId"]["S"]] += 1

    client.meta.events.register("provide-client-params.dynamodb.PutItem", record)
    return puts


def test_users_created_and_deleted_during_a_pass_are_neither_skipped_nor_written_twice(
    clerk: LoopbackClerk, users_table: str
) -> None:
    for index in range(600):
        clerk.add_user(user(index))
    changed = {"done": False}

    def change_mid_pass(path: str, query: dict[str, list[str]]) -> None:
        # When the third page is asked for: delete users already listed (offset paging would then skip
        # as many users) and users not listed yet, and create new ones.
        if path == "/v1/users" and query.get("starting_after") == ["user_000199"] and not changed["done"]:
            changed["done"] = True
            for index in (3, 50, 120, 199, 350, 599):
                clerk.delete_user(f"user_{index:06d}")
            for index in range(600, 610):
                clerk.add_user(user(index))

    clerk.on_request = change_mid_pass
    client = dynamodb_client()
    puts = written_user_ids(client)

    result = run_whole_pass(clerk.url, clerk.secret_key, client, users_table, page_size=100)

    assert changed["done"]
    assert not result.errors
    assert clerk.listed_twice() == {}
    expected = {f"user_{i:06d}" for i in range(610)} - {f"user_{i:06d}" for i in (350, 599)}
    assert set(puts) == expected  # the users deleted before they were listed are not written...
    assert max(puts.values()) == 1  # ...and nobody twice
    assert result.states["users"].counts["users"].created == len(expected)
    repository = UserRepository(client, users_table)
    assert all(repository.get(user_id) is not None for user_id in ("user_000200", "user_000609"))


def test_a_rerun_reads_but_writes_nothing(clerk: LoopbackClerk, users_table: str) -> None:
    for index in range(300):
        clerk.add_user(user(index))
    run_whole_pass(clerk.url, clerk.secret_key, dynamodb_client(), users_table, page_size=100)
    client = dynamodb_client()
    puts = written_user_ids(client)
    clerk.users["user_000042"] = {**user(42), "first_name": "Changed", "updated_at": T0 + 10_000}

    again = run_whole_pass(clerk.url, clerk.secret_key, client, users_table, page_size=100)

    counts = again.states["users"].counts["users"]
    assert (counts.unchanged, counts.updated, counts.created) == (299, 1, 0)
    assert puts == Counter({"user_000042": 1})


def peak_of_pass(users_table: str, users: int, *, read_ahead: bool = False) -> int:
    """The pass's peak traced memory against a Clerk served from another process (its serializing
    of pages is not this process's memory)."""
    with serve_from_child_process([user(index) for index in range(users)]) as url:
        tracemalloc.start()
        try:
            result = run_whole_pass(
                url,
                LoopbackClerk.secret_key,
                dynamodb_client(),
                users_table,
                options=ReconcileOptions(dry_run=True, read_ahead=lambda: read_ahead),
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.states["users"].counts["users"].created == users  # dry run: would create every one
    return peak


def test_peak_memory_of_a_pass_does_not_grow_with_the_number_of_users(users_table: str) -> None:
    """A dry run over an empty table (every user read from Clerk, every page's versions read from the
    table, nothing written, so moto's own storage does not grow): the pass's peak at 1,000 and at
    12,000 users. Holding ~900 bytes per user (the old snapshot and id set) would add ~10 MB, a set of
    the 11,000 more ids alone ~800 KB: the bound is half of that."""
    small = peak_of_pass(users_table, 1_000)
    large = peak_of_pass(users_table, 12_000)
    assert large - small < 400_000, (small, large)
    # Reading the next page ahead holds a second page at most: under twice the one-page peak, whatever
    # the number of users.
    ahead = peak_of_pass(users_table, 12_000, read_ahead=True)
    assert ahead < 2 * large, (large, ahead)
