"""Reconciliation: re-apply Clerk's truth to the tables, a page at a time (CONTRACT §12, §11).

Webhooks can be missed (endpoint disabled, retries exhausted, table created after the users), so a
pass lists every Clerk user (cursor) and organization with its memberships (offset) and writes what
the tables lack, through the webhook's conditional writes. A pass is a sequence of steps over a small
`PassState` (engine.run_step): the durable function (functions/reconcile) checkpoints each step, the
local CLI a file, and `run_whole_pass` simply loops, which is what the bench and the tests measure.

Public API:
- `users_source(...)` / `organizations_source(...)`: the entity sources, built over a Clerk client, a
  DynamoDB client and a table;
- `new_state(source, options)`, `run_step(source, state)`, `run_pass(source, state)`;
- `run_whole_pass(api_url, secret_key, client, users_table, organizations_table)`: one whole pass of
  both entities in this process, each independent of the other's failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from usersync.clerk.backend_api import DEFAULT_MAX_REQUESTS_PER_10S, MAX_PAGE_SIZE, ClerkBackendApi
from usersync.sync.reconcile.engine import Source, fail_pass, finish_pass, run_pass, run_step, writer
from usersync.sync.reconcile.organizations import OrganizationSource
from usersync.sync.reconcile.state import Counts, PassState, Phase, ReconcileError, ReconcileOptions
from usersync.sync.reconcile.users import UserSource

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "Counts",
    "OrganizationSource",
    "PassState",
    "Phase",
    "ReconcileError",
    "ReconcileOptions",
    "Source",
    "UserSource",
    "WholePass",
    "fail_pass",
    "finish_pass",
    "new_state",
    "run_pass",
    "run_step",
    "run_whole_pass",
    "sources",
]


def new_state(source: Source, options: ReconcileOptions) -> PassState:
    return PassState.start(source.entity, source.kinds, options)


@contextmanager
def sources(
    clerk: ClerkBackendApi,
    client: DynamoDBClient,
    users_table: str,
    organizations_table: str | None,
    options: ReconcileOptions,
) -> Iterator[list[Source]]:
    """The users' source and, when the deployment has the table, the organizations' (one write pool each)."""
    with writer(options.write_threads) as users_pool, writer(options.write_threads) as orgs_pool:
        found: list[Source] = [UserSource(clerk, client, users_table, options, users_pool)]
        if organizations_table:
            found.append(OrganizationSource(clerk, client, organizations_table, options, orgs_pool))
        yield found


@dataclass
class WholePass:
    """What `run_whole_pass` did: each entity's final state, and the errors of those that failed."""

    states: dict[str, PassState] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            **{entity: state.summary() for entity, state in self.states.items()},
            **({"errors": self.errors} if self.errors else {}),
        }


def run_whole_pass(
    api_url: str,
    secret_key: str,
    client: DynamoDBClient,
    users_table: str,
    organizations_table: str | None = None,
    *,
    options: ReconcileOptions | None = None,
    max_requests_per_10s: int = DEFAULT_MAX_REQUESTS_PER_10S,
    page_size: int | None = None,
) -> WholePass:
    """One whole pass over a Clerk Backend API at `api_url` and the tables, in this process.

    Users first, then organizations; a failure of one is recorded in `errors` (and ReconcileFailed
    counted) and never stops the other. The bench's entry point: the result holds every count and the
    Clerk requests each entity sent.
    """
    options = options or ReconcileOptions()
    clerk = ClerkBackendApi(
        secret_key, api_url, max_requests_per_10s=max_requests_per_10s, page_size=page_size or MAX_PAGE_SIZE
    )
    result = WholePass()
    with sources(clerk, client, users_table, organizations_table, options) as found:
        for source in found:
            state = new_state(source, options)
            try:
                result.states[source.entity] = run_pass(source, state)
            except ReconcileError as exc:
                result.states[source.entity] = exc.state or state
                result.errors[source.entity] = str(exc)
    return result
