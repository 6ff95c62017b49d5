"""One pass engine for every entity: a pass is a sequence of steps, each one page of work.

A source (users, organizations) supplies the steps: `list_step` reads one page from Clerk, reads the
stored versions of that page's items (BatchGetItem) and writes only what changed; `prune_step` walks
one page of the table and tombstones what Clerk confirms it no longer has. The engine runs a step on
a `PassState` and returns the next state, so whoever drives the pass (the durable function, the local
CLI, the bench) can checkpoint between steps and continue elsewhere.

Memory is bounded by two pages (the one applied and the one read ahead, `ReadAhead`): no snapshot of
the table, no set of every id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import copy_context
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import ValidationError

from usersync.clerk.backend_api import ClerkApiError, ClerkBackendApi
from usersync.clerk.rate_limit import RateLimitWait
from usersync.runtime.metrics import SOURCE_DIMENSION, SyncMetric, SyncSource
from usersync.runtime.observability import logger, metrics
from usersync.store.dynamodb import BATCH_GET_LIMIT, WriteOutcome, batch_get, dynamodb_call
from usersync.store.errors import RepositoryError
from usersync.sync.reconcile.state import Counts, PassState, Phase, ReconcileError, ReconcileOptions

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from usersync.store.codec import Item

_T = TypeVar("_T")
_R = TypeVar("_R")
_K = TypeVar("_K")

ENTITY_DIMENSION = "Entity"


class Source(Protocol):
    """What an entity supplies to the engine."""

    entity: str
    kinds: tuple[str, ...]  # what its counts are kept for (users; organizations and memberships)

    def list_step(self, state: PassState) -> None:
        """List one page from `state`'s position, apply it, advance `state` (LIST -> PRUNE/DONE)."""

    def prune_step(self, state: PassState) -> None:
        """Prune one page of the table from `state.scan_key`, advance `state` (PRUNE -> DONE)."""

    def holds_next_page(self, state: PassState) -> bool:
        """Whether `state`'s next page was already read ahead (its step must run, or it is read twice)."""


class Writer:
    """Several conditional writes in flight at once: a page's writes take a few round trips, not 500.

    botocore clients are thread-safe; each task runs in a copy of the caller's context, so the
    invocation's time budget (a context variable) still bounds every write.
    """

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="reconcile-write")

    def map(self, function: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        futures = [self._pool.submit(copy_context().run, function, item) for item in items]
        return [future.result() for future in futures]

    def submit(self, function: Callable[[], _R]) -> Future[_R]:
        """`function` in the pool, in a copy of the caller's context (its time budget)."""
        return self._pool.submit(copy_context().run, function)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class ReadAhead(Generic[_K, _R]):
    """The next page read while this one is applied: at most one read ahead, taken by its key.

    A step applies its page with the next page's request already in flight, so Clerk's latency and the
    step's own work overlap. The read is only a read: the step that takes it is still the step of that
    page (its result is the state after it), and a read ahead no step takes is dropped with the process
    (the page in flight when an invocation ends, the only page a pass may read twice). Its failure
    (a rate limit's long wait, Clerk down) is raised by `take`, in the step that owns the page.
    """

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._ahead: tuple[_K, Future[_R]] | None = None

    def start(self, key: _K, fetch: Callable[[], _R]) -> None:
        """Read `key`'s page in the background (kept if it is already being read)."""
        if self._ahead is None or self._ahead[0] != key:
            self._ahead = (key, self._writer.submit(fetch))

    def holds(self, key: _K) -> bool:
        return self._ahead is not None and self._ahead[0] == key

    def take(self, key: _K, fetch: Callable[[], _R]) -> _R:
        """`key`'s page: the one read ahead, or read now. A read ahead of another key is kept: a step
        tried again reads its own page, and the next step still finds its page read ahead."""
        if self._ahead is not None and self._ahead[0] == key:
            future, self._ahead = self._ahead[1], None
            return future.result()
        return fetch()


@dataclass(eq=False)
class TableSource:
    """What every entity's source shares: Clerk, its table, the options and the write pool, and the
    page work that is the same whatever the entity (a subclass supplies the steps, and opens its
    table's repository in `__post_init__`).

    Entries Clerk lists that do not parse are counted skipped, never fatal; the stored versions of a
    page are read 100 keys a BatchGetItem, all in flight at once; each write is counted by its outcome;
    the prune walks the table one Scan page at a time.
    """

    clerk: ClerkBackendApi
    client: DynamoDBClient
    table_name: str
    options: ReconcileOptions
    writer: Writer

    def __post_init__(self) -> None:
        """A subclass opens its table's repository here (the dataclass calls it only if the base has it)."""

    @staticmethod
    def parse(
        entries: list[dict[str, Any]],
        build: Callable[[dict[str, Any]], _T],
        counts: Counts,
        *,
        kind: str,
        id_key: str,
    ) -> list[_T]:
        """`build(entry)` for each entry; an invalid one (ValidationError) is logged and counted skipped."""
        built: list[_T] = []
        for entry in entries:
            try:
                built.append(build(entry))
            except ValidationError:
                logger.warning(f"Clerk {kind} entry skipped: invalid", extra={id_key: entry.get("id")})
                counts.skipped += 1
        return built

    def stored_items(
        self, keys: list[dict[str, Any]], projection: str, names: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """The stored items of `keys` (`projection` only): one BatchGetItem per 100 keys, all in flight at
        once, unprocessed keys asked again within the time budget."""
        attributes: dict[str, Any] = {"ProjectionExpression": projection}
        if names:
            attributes["ExpressionAttributeNames"] = names
        chunks = [keys[start : start + BATCH_GET_LIMIT] for start in range(0, len(keys), BATCH_GET_LIMIT)]

        def read(chunk: list[dict[str, Any]]) -> list[Item]:
            request: dict[str, Any] = {self.table_name: {"Keys": chunk, **attributes}}
            return batch_get(self.client, request, self.table_name)

        pages = self.writer.map(read, chunks)
        return [dict(item) for items in pages for item in items]

    def write_counted(
        self,
        to_write: list[tuple[_T, bool]],
        write: Callable[[_T], WriteOutcome],
        counts: Counts,
        *,
        dry_run: bool,
        written: tuple[WriteOutcome, ...] = (WriteOutcome.APPLIED,),
    ) -> None:
        """Write each `(record, created)` of `to_write` (nothing in a dry run) and count its outcome: one
        not `written` means a newer version or a tombstone landed since the read, and it wins."""
        if dry_run:
            outcomes = [WriteOutcome.APPLIED] * len(to_write)
        else:
            outcomes = self.writer.map(lambda pair: write(pair[0]), to_write)
        for (_, created), outcome in zip(to_write, outcomes, strict=True):
            if outcome not in written:
                counts.skipped += 1
            elif created:
                counts.created += 1
            else:
                counts.updated += 1

    def scan_page(
        self, start: dict[str, Any] | None, **request: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One Scan page of the table from `start` (`request`: projection, filter, limit) and where the
        next page starts (None: the table is walked)."""
        if start:
            request["ExclusiveStartKey"] = start
        with dynamodb_call("Scan"):
            response = self.client.scan(TableName=self.table_name, **request)
        last = response.get("LastEvaluatedKey")
        return [dict(item) for item in response.get("Items", [])], (dict(last) if last else None)


def run_step(source: Source, state: PassState) -> PassState:
    """One step of `source`'s pass from `state`: the next state (the input is left untouched).

    A rate limit that asks for a long wait ends the step early with `wait_seconds` set, nothing
    consumed: the caller waits (outside the invocation, when it is durable) and runs the step again.
    Clerk and table failures raise ReconcileError carrying the state the step started from.
    """
    after = replace(state, counts={kind: replace(counts) for kind, counts in state.counts.items()})
    after.wait_seconds = 0.0
    try:
        if after.phase is Phase.LIST:
            source.list_step(after)
        elif after.phase is Phase.PRUNE:
            source.prune_step(after)
    except RateLimitWait as wait:
        logger.info(
            "reconcile waits", extra={"entity": state.entity, "reason": wait.reason, "seconds": wait.seconds}
        )
        return replace(state, wait_seconds=wait.seconds)
    except (ClerkApiError, RepositoryError) as exc:
        raise ReconcileError(f"{state.entity} reconcile step failed: {exc}", state) from exc
    after.steps += 1
    logger.info("reconcile checkpoint", extra={"reconcile": after.summary(), "cursor": after.cursor})
    return after


_PASS_METRICS = (
    (SyncMetric.RECONCILE_CREATED, "created"),
    (SyncMetric.RECONCILE_UPDATED, "updated"),
    (SyncMetric.RECONCILE_UNCHANGED, "unchanged"),
    (SyncMetric.RECONCILE_PRUNED, "pruned"),
)


def _pass_metric(metric: SyncMetric, kind: str, value: int) -> None:
    """One datapoint with its own dimensions ({service, Source, Entity}): Powertools' shared metric set
    holds one dimension set for everything it flushes, and the Sync* metrics must keep {service, Source}."""
    with single_metric(
        name=metric.value, unit=MetricUnit.Count, value=value, namespace=metrics.namespace
    ) as datapoint:
        datapoint.add_dimension(SOURCE_DIMENSION, SyncSource.RECONCILE.value)
        datapoint.add_dimension(ENTITY_DIMENSION, kind)


def finish_pass(state: PassState, *, emit: bool = True) -> dict[str, object]:
    """Log the pass and emit its metrics (once per pass: the durable function runs this as a step).
    `emit=False` for a shell: EMF printed there reaches no CloudWatch and would only clutter stdout."""
    if emit and not state.dry_run:
        for kind, counts in state.counts.items():
            for metric, name in _PASS_METRICS:
                _pass_metric(metric, kind, getattr(counts, name))
    logger.info("reconcile finished", extra={"reconcile": state.summary()})
    return state.summary()


def fail_pass(state: PassState | None, entity: str, error: str, *, emit: bool = True) -> None:
    """Log a pass that stopped and count it (ReconcileFailed; not for a dry run)."""
    if emit and (state is None or not state.dry_run):
        _pass_metric(SyncMetric.RECONCILE_FAILED, entity, 1)
    summary = state.summary() if state is not None else {"entity": entity}
    logger.error("reconcile failed", extra={"error": error, "reconcile": summary})


Checkpoint = Callable[[PassState], None]


def run_pass(
    source: Source,
    state: PassState,
    *,
    on_checkpoint: Checkpoint | None = None,
    sleep: Callable[[float], None] = time.sleep,
    emit_metrics: bool = True,
) -> PassState:
    """Drive a whole pass in this process (CLI, bench, tests): step until done, sleeping through waits.

    `on_checkpoint` sees every state (the CLI saves it to resume an interrupted pass). Raises
    ReconcileError (ReconcileFailed counted) with the last good state when a step fails.
    """
    try:
        while not state.done:
            state = run_step(source, state)
            if state.wait_seconds:
                sleep(state.wait_seconds)
            elif on_checkpoint is not None:
                on_checkpoint(state)
    except ReconcileError as exc:
        fail_pass(exc.state or state, source.entity, str(exc), emit=emit_metrics)
        raise
    finish_pass(state, emit=emit_metrics)
    return state


@contextmanager
def writer(threads: int) -> Iterator[Writer]:
    pool = Writer(threads)
    try:
        yield pool
    finally:
        pool.close()
