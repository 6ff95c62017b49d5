"""The /health check: is the user table usable, and is sync failing more often than it should?

The failure rate is read back from CloudWatch, never from memory: every Lambda container (webhook and
authorizer alike) emits its own `SyncAttempts`/`SyncFailures` through EMF, so only the metric store
sees them all. The answer is shaped like a Terminus health check (`status`, `info`, `error`,
`details`), every dependency failure becomes a down indicator with a `message`, and the whole check
is bounded in time so a hanging dependency cannot make the endpoint hang with it.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from usersync.runtime.aws import THROTTLING_ERROR_CODES, attempt_seconds, error_code
from usersync.runtime.budget import current_budget
from usersync.runtime.metrics import SERVICE_DIMENSION, SOURCE_DIMENSION, SyncMetric, SyncSource
from usersync.runtime.observability import logger
from usersync.runtime.settings import HealthSettings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef
    from mypy_boto3_dynamodb import DynamoDBClient

Indicator = dict[str, Any]
IndicatorStatus = Literal["up", "down"]

USER_TABLE = "userTable"
SYNC_FAILURE_RATE = "syncFailureRate"


def sync_sources(settings: HealthSettings) -> tuple[SyncSource, ...]:
    """The sources whose writes count towards the failure rate (the alarm in template.yaml uses the
    same): reconciliation's only where it is deployed, so a stack without it pays for 4 metrics."""
    if settings.reconcile_deployed:
        return (SyncSource.WEBHOOK, SyncSource.AUTHORIZER, SyncSource.RECONCILE)
    return (SyncSource.WEBHOOK, SyncSource.AUTHORIZER)


# One-minute buckets summed here, rather than one bucket as long as the window: every returned
# datapoint lies inside [start, end) whatever CloudWatch's period alignment, and a 1440-minute
# window is 4 x 1440 datapoints, far below GetMetricData's 100,800 per call (no NextToken paging).
PERIOD_SECONDS = 60

# EndTime is exclusive and CloudWatch (and moto, which drops the sub-second part of EndTime) would
# leave out datapoints stamped in the current second; ending the window slightly in the future keeps
# them. Data is never stamped in the future, so nothing extra is counted.
END_MARGIN = timedelta(seconds=1)

# Both checks run in parallel; whatever has not answered by then is reported down. The botocore
# timeouts (usersync.runtime.aws health config) normally end a call well before this. Within an invocation the
# deadline is also capped by its time budget (usersync.runtime.budget), so the answer comes before Lambda's
# Timeout even when both dependencies hang.
DEFAULT_DEADLINE_SECONDS = 2.5


def _indicator(status: IndicatorStatus, **fields: Any) -> Indicator:
    return {"status": status, **fields}


def _aws_failure(service: str, exc: Exception) -> str:
    """A short, safe description of an AWS call failure (error code or exception type, no payloads)."""
    if isinstance(exc, ClientError):
        return f"{service} call failed: {error_code(exc)}"
    return f"{service} unreachable: {error_code(exc)}"


# ---------------------------------------------------------------- userTable


def check_user_table(client: DynamoDBClient, table_name: str) -> Indicator:
    """Up when DescribeTable succeeds and the table is ACTIVE."""
    try:
        table_status = client.describe_table(TableName=table_name)["Table"].get("TableStatus", "UNKNOWN")
    except client.exceptions.ResourceNotFoundException:
        return _indicator("down", message="user table not found")
    except (ClientError, BotoCoreError) as exc:
        return _indicator("down", message=_aws_failure("DynamoDB DescribeTable", exc))
    if table_status != "ACTIVE":
        return _indicator("down", message=f"user table is {table_status}, not ACTIVE")
    return _indicator("up")


# ---------------------------------------------------------------- syncFailureRate


def _query_id(metric: SyncMetric, source: SyncSource) -> str:
    name = "attempts" if metric is SyncMetric.ATTEMPTS else "failures"
    return f"{name}{source.value.capitalize()}"


def sync_metric_queries(settings: HealthSettings) -> list[MetricDataQueryTypeDef]:
    """One plain MetricStat (no SEARCH, no Metrics Insights) per metric and source: 4 (6 with
    reconciliation), as billed.

    The dimension set is exactly what Powertools emits, `{service, Source}` (`{Source}` when no
    service name is set): CloudWatch matches a metric only on its full dimension set, so leaving
    `service` out would match nothing. CloudWatch treats that set as unordered; it is listed in one
    canonical order (by name, case-insensitive), the order the local EMF forwarder puts datapoints in.
    moto, the tests' stand-in, compares dimension lists in order: usersync_dev.moto_compat fixes that
    in test and dev code, so production never pays for a second query per series.
    """
    queries: list[MetricDataQueryTypeDef] = []
    for metric in (SyncMetric.ATTEMPTS, SyncMetric.FAILURES):
        for source in sync_sources(settings):
            dimension_values = {SOURCE_DIMENSION: source.value}
            if settings.service_name:
                dimension_values[SERVICE_DIMENSION] = settings.service_name
            queries.append(
                {
                    "Id": _query_id(metric, source),
                    "MetricStat": {
                        "Metric": {
                            "Namespace": settings.metrics_namespace,
                            "MetricName": metric.value,
                            "Dimensions": [
                                {"Name": name, "Value": dimension_values[name]}
                                for name in sorted(dimension_values, key=str.casefold)
                            ],
                        },
                        "Period": PERIOD_SECONDS,
                        "Stat": "Sum",
                    },
                    "ReturnData": True,
                }
            )
    return queries


@dataclass(frozen=True)
class SyncCounts:
    attempts: int
    failures: int


def read_sync_counts(client: CloudWatchClient, settings: HealthSettings, now: datetime) -> SyncCounts:
    """Attempts and failures summed over the window, from one GetMetricData call.

    No datapoints (no traffic, or metrics not yet ingested: EMF lags a minute or two) means 0.
    """
    end = now + END_MARGIN
    start = end - timedelta(minutes=settings.window_minutes)
    response = client.get_metric_data(
        MetricDataQueries=sync_metric_queries(settings), StartTime=start, EndTime=end
    )
    totals = {result["Id"]: sum(result.get("Values", [])) for result in response["MetricDataResults"]}

    def total(metric: SyncMetric) -> int:
        return round(sum(totals.get(_query_id(metric, source), 0.0) for source in sync_sources(settings)))

    return SyncCounts(attempts=total(SyncMetric.ATTEMPTS), failures=total(SyncMetric.FAILURES))


def evaluate_failure_rate(counts: SyncCounts, settings: HealthSettings) -> Indicator:
    """Down when failures/attempts exceeds the threshold, but only once there were enough attempts
    for the rate to mean something (1 failure out of 2 is not an outage)."""
    rate = counts.failures / counts.attempts if counts.attempts else 0.0
    fields: dict[str, Any] = {
        "failureRate": round(rate, 3),
        "attempts": counts.attempts,
        "failures": counts.failures,
        "threshold": settings.failure_threshold,
        "minAttempts": settings.min_attempts,
        "windowMinutes": settings.window_minutes,
    }
    if counts.attempts >= settings.min_attempts and rate > settings.failure_threshold:
        message = (
            f"sync failure rate {rate:.3f} is above the threshold {settings.failure_threshold} "
            f"({counts.failures} of {counts.attempts} attempts failed in the last "
            f"{settings.window_minutes} minutes)"
        )
        return _indicator("down", message=message, **fields)
    return _indicator("up", **fields)


# GetMetricData has a per-account request quota: a burst of cold containers (or a monitoring storm
# past the route throttle) can meet it. One retry after a short jittered pause, only when the budget
# leaves room for it; the health CloudWatch client itself does not retry (usersync.runtime.aws), so
# this is the only retry and its cost is known.
THROTTLE_RETRY_PAUSE_SECONDS = (0.05, 0.25)


def _throttled(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) in THROTTLING_ERROR_CODES


def _read_with_one_throttle_retry(
    client: CloudWatchClient, settings: HealthSettings, now: datetime, pause: Callable[[float], None]
) -> SyncCounts:
    try:
        return read_sync_counts(client, settings, now)
    except ClientError as exc:
        if not _throttled(exc):
            raise
        delay = random.uniform(*THROTTLE_RETRY_PAUSE_SECONDS)  # noqa: S311 - jitter, not a secret
        if not current_budget().allows(delay + attempt_seconds(client)):
            raise
        logger.info("CloudWatch GetMetricData throttled; retrying once", extra={"errorCode": error_code(exc)})
        pause(delay)
    return read_sync_counts(client, settings, now)


def check_sync_failure_rate(
    client: CloudWatchClient,
    settings: HealthSettings,
    now: datetime | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> Indicator:
    bounds = {
        "threshold": settings.failure_threshold,
        "minAttempts": settings.min_attempts,
        "windowMinutes": settings.window_minutes,
    }
    try:
        counts = _read_with_one_throttle_retry(client, settings, now or datetime.now(UTC), pause)
    except (ClientError, BotoCoreError) as exc:
        if _throttled(exc):
            # Not "above the threshold": the rate is unknown because CloudWatch refused to answer.
            message = (
                f"CloudWatch GetMetricData throttled ({error_code(exc)}), also on the retry: the "
                "account's request quota is exhausted, so the sync failure rate is unknown"
            )
            return _indicator("down", message=message, throttled=True, **bounds)
        return _indicator("down", message=_aws_failure("CloudWatch GetMetricData", exc), **bounds)
    return evaluate_failure_rate(counts, settings)


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class HealthReport:
    """The Terminus-shaped result: `info` holds the up indicators, `error` the down ones."""

    indicators: Mapping[str, Indicator]

    @property
    def healthy(self) -> bool:
        return all(indicator["status"] == "up" for indicator in self.indicators.values())

    def to_dict(self) -> dict[str, Any]:
        details = dict(self.indicators)
        return {
            "status": "ok" if self.healthy else "error",
            "info": {name: value for name, value in details.items() if value["status"] == "up"},
            "error": {name: value for name, value in details.items() if value["status"] != "up"},
            "details": details,
        }


@dataclass
class HealthCheck:
    """Runs both checks in parallel within a deadline and caches the report for a few seconds.

    The cache is per container: at most one DescribeTable and one GetMetricData per container every
    `cache_seconds`, however often the endpoint is polled.
    """

    settings: HealthSettings
    dynamodb: DynamoDBClient
    cloudwatch: CloudWatchClient
    cache_seconds: float = 5.0
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    clock: Callable[[], float] = time.monotonic
    _cached: tuple[float, HealthReport] | None = field(default=None, init=False, repr=False)

    def run(self) -> HealthReport:
        now = self.clock()
        if self._cached is not None and now < self._cached[0]:
            return self._cached[1]
        report = self._check()
        self._cached = (self.clock() + self.cache_seconds, report)
        return report

    def _check(self) -> HealthReport:
        checks: dict[str, Callable[[], Indicator]] = {
            USER_TABLE: lambda: check_user_table(self.dynamodb, self.settings.users_table_name),
            SYNC_FAILURE_RATE: lambda: check_sync_failure_rate(self.cloudwatch, self.settings),
        }
        # A fresh pool each time (cheap next to two AWS calls): a call stuck past the deadline must
        # not hold a worker that the next check would queue behind. shutdown(wait=False) leaves it to
        # finish on its own, bounded by the botocore timeouts.
        deadline = min(self.deadline_seconds, current_budget().remaining())
        pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health")
        try:
            # Each check runs in a copy of this context, so its AWS calls see the invocation's budget.
            futures = {
                name: pool.submit(contextvars.copy_context().run, check) for name, check in checks.items()
            }
            wait(futures.values(), timeout=deadline)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        indicators = {name: self._outcome(name, future, deadline) for name, future in futures.items()}
        report = HealthReport(indicators)
        if not report.healthy:
            logger.warning("health check failing", extra={"error": report.to_dict()["error"]})
        return report

    def _outcome(self, name: str, future: Future[Indicator], deadline: float) -> Indicator:
        if not future.done():
            return _indicator("down", message=f"no answer within {round(deadline, 2):g} s")
        exc = future.exception()
        if exc is not None:  # a bug, not a dependency failure: still an answer, never a crash
            logger.error("health indicator raised", extra={"indicator": name}, exc_info=exc)
            return _indicator("down", message=f"check failed: {type(exc).__name__}")
        return future.result()
