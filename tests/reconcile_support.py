"""Shared pieces of the reconciliation tests: a loopback Clerk with users, PutItem counting, and
running one entity's pass the way the CLI and the bench do (usersync.sync.reconcile.run_pass)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from usersync.clerk.backend_api import ClerkBackendApi
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.budget import TimeBudget
from usersync.runtime.observability import metrics
from usersync.sync.reconcile import Counts, PassState, ReconcileOptions, new_state, run_pass, sources
from usersync_dev.clerk import clerk_user
from usersync_dev.loopback_clerk import LoopbackClerk

T0 = 1_700_000_000_000
SECRET_KEY = "sk_test_loopback"


def add_users(clerk: LoopbackClerk, count: int, *, start: int = 0) -> list[dict[str, Any]]:
    added = [
        clerk_user(
            f"user_{index:04d}",
            email=f"user{index}@example.com",
            first_name=f"First{index}",
            created_at=T0 + index,
            updated_at=T0 + index,
        )
        for index in range(start, start + count)
    ]
    for user in added:
        clerk.add_user(user)
    return added


@contextmanager
def loopback() -> Iterator[LoopbackClerk]:
    """A loopback Clerk that takes SECRET_KEY, served for the block."""
    fake = LoopbackClerk(secret_key=SECRET_KEY)
    with fake.serve():
        yield fake


class PutCounter:
    """Counts the PutItem calls the DynamoDB client actually sends, by key (botocore event hook)."""

    def __init__(self, key: str = "userId") -> None:
        self.key = key
        self.ids: list[str] = []
        self._client = dynamodb_client()
        self._client.meta.events.register("before-parameter-build.dynamodb.PutItem", self._on_put)

    def _on_put(self, params: dict[str, Any], **_kwargs: Any) -> None:
        item = params["Item"]
        self.ids.append(item[self.key]["S"] if self.key in item else item["pk"]["S"] + "/" + item["sk"]["S"])

    @property
    def count(self) -> int:
        return len(self.ids)

    def reset(self) -> None:
        self.ids.clear()

    def close(self) -> None:
        self._client.meta.events.unregister("before-parameter-build.dynamodb.PutItem", self._on_put)


def table_items(table_name: str, key: str = "userId") -> dict[str, dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(table_name)
    found: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        found.update(
            {
                str(item[key]) if key in item else str(item["pk"]) + "/" + str(item["sk"]): item
                for item in page["Items"]
            }
        )
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def flushed_metrics(capsys: pytest.CaptureFixture[str]) -> str:
    """Everything printed so far (Powertools flushes by itself every 100 values) plus the rest."""
    printed = capsys.readouterr().out
    metrics.flush_metrics()
    return printed + capsys.readouterr().out


@dataclass
class Runner:
    """Runs one entity's pass over the loopback Clerk; the client's sleeps are recorded, not slept."""

    clerk: LoopbackClerk
    users_table: str
    organizations_table: str | None = None
    sleeps: list[float] = field(default_factory=list)

    def client(self, **kwargs: Any) -> ClerkBackendApi:
        kwargs.setdefault("page_size", 100)
        return ClerkBackendApi(SECRET_KEY, self.clerk.url, sleep=self.sleeps.append, **kwargs)

    def run(
        self,
        entity: str = "users",
        *,
        state: PassState | None = None,
        budget: TimeBudget | None = None,
        **kwargs: Any,
    ) -> PassState:
        """The pass's final state (raises ReconcileError carrying the last good state)."""
        client_args = {key: kwargs.pop(key) for key in ("page_size", "max_retries") if key in kwargs}
        options = ReconcileOptions(**kwargs)
        clerk = self.client(budget=budget, **client_args)
        with sources(clerk, dynamodb_client(), self.users_table, self.organizations_table, options) as found:
            (source,) = [source for source in found if source.entity == entity]
            return run_pass(source, state or new_state(source, options), sleep=self.sleeps.append)

    def counts(self, entity: str = "users", kind: str | None = None, **kwargs: Any) -> Counts:
        return self.run(entity, **kwargs).counts[kind or entity]
