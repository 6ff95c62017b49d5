"""Scheduled reconciliation as a Lambda durable function (CONTRACT §12): a pass outlives invocations.

Each page is a checkpointed step (`context.step`) whose result is the small `PassState` (cursor or
offset, prune position, counts), so a new invocation replays the finished steps from their checkpoints
and lists only where the last one stopped: no page is read twice but the one in flight when an
invocation ended. A users' step reads the next page while it applies its own (engine.ReadAhead, kept
in the invocation's source): the step that takes it is still that page's step, its result the state
after it; a new invocation has nothing read ahead and reads its first page itself.
Users and organizations run as two branches of `context.parallel`, each with its own state and
retries: a failure or a timeout in one never starves the other.

Waits cost no compute: a rate limit or a `Retry-After` longer than MAX_SLEEP_SECONDS ends the step
early and becomes a `context.wait`; when less than STEP_RESERVE_SECONDS of the invocation is left, a
step starts nothing and asks for INVOCATION_GAP_SECONDS of wait, which ends the invocation cleanly
(contract §6a) and starts a fresh one a Clerk rate-limit window later, so the new container's empty
limiter cannot add a burst to the old one's last window.

The durable SDK (functions/reconcile/requirements.txt) is imported only here: the shared layer does
not ship it. The logic is the layer's (usersync.sync.reconcile); this module only wires it to steps.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CompletionConfig, Duration, ParallelConfig, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision

from usersync.clerk.backend_api import ClerkApiError, ClerkBackendApi
from usersync.clerk.rate_limit import Sleep, SlidingWindowLimiter
from usersync.runtime.aws import SecretUnavailableError, dynamodb_client, secret_string
from usersync.runtime.budget import TimeBudget, time_budget
from usersync.runtime.observability import logger, metrics
from usersync.runtime.settings import ReconcileSettings
from usersync.sync.reconcile import (
    OrganizationSource,
    PassState,
    ReconcileError,
    ReconcileOptions,
    Source,
    UserSource,
    fail_pass,
    finish_pass,
    run_step,
)
from usersync.sync.reconcile.engine import Writer

STEP_RESERVE_SECONDS = 60.0  # a step starts only with this much of the invocation left
# A step reads the next page ahead only with this much left, so the step that takes it surely starts in
# this invocation (a page's work is well under a second): a page read ahead is never wasted but at a failure.
READ_AHEAD_RESERVE_SECONDS = STEP_RESERVE_SECONDS + 10.0
INVOCATION_GAP_SECONDS = 10  # the wait that ends an invocation: one Clerk rate-limit window
MAX_SLEEP_SECONDS = 1.0  # longer waits become context.wait: no compute billed while waiting
CLIENT_RETRIES = 2  # in-process retries of one request (0.5 s, 1 s); longer backoff is the step's
STEP_ATTEMPTS = 3  # a failing step (Clerk or DynamoDB down) is tried this often, backing off
STEP_RETRY_BASE_SECONDS = 30


class Budget(Protocol):
    def allows(self, seconds: float) -> bool: ...

    def remaining(self) -> float: ...


class Invocation:
    """What one invocation builds, lazily: a replayed step needs neither the secret nor a client."""

    def __init__(
        self,
        settings: ReconcileSettings,
        budget: Budget,
        options: ReconcileOptions,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.settings = settings
        self.budget = budget
        self.options = options
        self.sleep = sleep
        self._limiter: SlidingWindowLimiter | None = None
        self._secret: str | None = None
        self._sources: dict[str, Source] = {}
        self._writers: list[Writer] = []
        self._lock = threading.Lock()

    def source(self, entity: str) -> Source:
        """`entity`'s source; the branches' steps run in threads, so it is built under a lock."""
        with self._lock:
            if entity not in self._sources:
                self._sources[entity] = self._build(entity)
            return self._sources[entity]

    def _build(self, entity: str) -> Source:
        if self._limiter is None:  # one limiter: both entities share the rate
            self._limiter = SlidingWindowLimiter(
                self.settings.max_requests_per_10s, sleep=self.sleep, max_sleep_seconds=MAX_SLEEP_SECONDS
            )
        if self._secret is None:  # read once per invocation, only when a step needs Clerk
            self._secret = secret_key(self.settings)
        clerk = ClerkBackendApi(
            self._secret,
            self.settings.clerk_api_url,
            limiter=self._limiter,
            max_sleep_seconds=MAX_SLEEP_SECONDS,
            max_retries=CLIENT_RETRIES,
            sleep=self.sleep,
            budget=self.budget if isinstance(self.budget, TimeBudget) else None,
        )
        writer = Writer(self.options.write_threads)
        self._writers.append(writer)
        if entity == UserSource.entity:
            return UserSource(clerk, dynamodb_client(), self.settings.users_table_name, self.options, writer)
        table = self.settings.organizations_table_name or ""
        return OrganizationSource(clerk, dynamodb_client(), table, self.options, writer)

    def start(self, entity: str) -> PassState:
        kinds = UserSource.kinds if entity == UserSource.entity else OrganizationSource.kinds
        return PassState.start(entity, kinds, self.options)

    def step(self, entity: str, state: PassState) -> PassState:
        """One page of `entity`'s pass, or, when the invocation is nearly over, a request to end it."""
        source = self.source(entity)
        # A page already read ahead (only with READ_AHEAD_RESERVE_SECONDS left) gets its step even late:
        # ending the invocation here would drop it and read it again in the next one.
        allowed = self.budget.allows(STEP_RESERVE_SECONDS)
        if not allowed and not source.holds_next_page(state):
            return PassState.from_dict({**state.to_dict(), "wait_seconds": INVOCATION_GAP_SECONDS})
        with time_budget(self.budget if isinstance(self.budget, TimeBudget) else TimeBudget.unlimited()):
            return run_step(source, state)

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


def secret_key(settings: ReconcileSettings) -> str:
    """The `sk_...` key: inline (local use) or from Secrets Manager (a plain-string secret)."""
    if settings.clerk_secret_key:
        return settings.clerk_secret_key
    assert settings.clerk_secret_key_arn is not None  # guaranteed by ReconcileSettings
    try:
        return secret_string(settings.clerk_secret_key_arn)
    except SecretUnavailableError as exc:
        raise ReconcileError(f"Clerk secret key unavailable: {exc.code}") from exc


def retry_step(error: Exception, attempt: int) -> RetryDecision:
    """Clerk or the table failing: back off (a wait, no compute) and try again. Not for what a retry
    cannot fix: a refused key or request (4xx other than 429), or the mass-prune guard."""
    cause = error.__cause__
    refused = isinstance(cause, ClerkApiError) and cause.status is not None and 400 <= cause.status < 500
    if attempt >= STEP_ATTEMPTS or refused or "refusing to prune" in str(error):
        return RetryDecision.no_retry()
    return RetryDecision.retry(Duration.from_seconds(STEP_RETRY_BASE_SECONDS * 2 ** (attempt - 1)))


STEP_CONFIG = StepConfig(retry_strategy=retry_step)


def page_step(invocation: Invocation, entity: str, state: PassState) -> Callable[[Any], dict[str, Any]]:
    """The function of one page's step (bound to its state: the step may run in another thread)."""
    return lambda _: invocation.step(entity, state).to_dict()


def entity_pass(entity: str, invocation: Invocation) -> Callable[[DurableContext], dict[str, Any]]:
    """One entity's pass as a branch: a start step, a step per page, waits, and a finishing step."""

    def branch(context: DurableContext) -> dict[str, Any]:
        state = PassState.from_dict(
            context.step(lambda _: invocation.start(entity).to_dict(), f"{entity}-start")
        )
        number = 0
        try:
            while not state.done:
                if state.wait_seconds:
                    context.wait(
                        Duration.from_seconds(math.ceil(state.wait_seconds)), f"{entity}-wait-{number}"
                    )
                result = context.step(page_step(invocation, entity, state), f"{entity}-{number}", STEP_CONFIG)
                state, number = PassState.from_dict(result), number + 1
        except Exception as exc:  # the step's last attempt failed: count the pass as failed, once
            message = str(exc)
            context.step(lambda _: fail_pass(state, entity, message), f"{entity}-failed")
            raise
        return context.step(lambda _: finish_pass(state), f"{entity}-finish")

    return branch


def make_handler(
    settings: ReconcileSettings,
    budget_of: Callable[[Any], Budget] = TimeBudget.from_context,
    sleep: Sleep = time.sleep,
) -> Callable[[Any, Any], Any]:
    """The durable handler over `settings`; `budget_of` gives an invocation's budget from its context,
    `sleep` waits out the short in-process pauses (client backoff, rate limit): tests record them."""

    def reconcile(event: Any, context: DurableContext) -> dict[str, Any]:
        # The schedule sends an EventBridge event; a manual invoke may ask for {"dryRun": true}.
        dry_run = isinstance(event, dict) and event.get("dryRun") is True
        budget = budget_of(context.lambda_context)
        options = ReconcileOptions(
            dry_run=dry_run,
            prune=settings.prune,
            read_ahead=lambda: budget.remaining() >= READ_AHEAD_RESERVE_SECONDS,
        )
        invocation = Invocation(settings, budget, options, sleep)
        entities = [UserSource.entity] + (
            [OrganizationSource.entity] if settings.organizations_table_name else []
        )
        try:
            batch = context.parallel(
                [entity_pass(entity, invocation) for entity in entities],
                "reconcile",
                ParallelConfig(completion_config=CompletionConfig(tolerated_failure_count=len(entities))),
            )
        finally:
            invocation.close()
        answer: dict[str, Any] = {}
        for item, entity in zip(batch.all, entities, strict=True):
            answer[entity] = item.result if item.result is not None else {"error": str(item.error)}
        if any(item.error is not None for item in batch.all):
            logger.error("reconcile pass failed", extra={"reconcile": answer})
            raise ReconcileError(f"reconcile failed: {answer}")
        return answer

    return metrics.log_metrics(logger.inject_lambda_context(durable_execution(reconcile), clear_state=True))


lambda_handler = make_handler(ReconcileSettings.from_env())
