"""The sync metrics, their one dimension, and the only way the code emits them.

Powertools adds a `service` dimension to every metric, so what CloudWatch stores is keyed by
`{service, Source}`; the health check and the alarm query exactly that set.
"""

from __future__ import annotations

import threading
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from usersync.runtime.observability import metrics

SOURCE_DIMENSION = "Source"
SERVICE_DIMENSION = "service"


class SyncSource(StrEnum):
    """Who wrote a record; also the `Source` metric dimension."""

    WEBHOOK = "webhook"
    AUTHORIZER = "authorizer"
    RECONCILE = "reconcile"


class SyncMetric(StrEnum):
    ATTEMPTS = "SyncAttempts"
    FAILURES = "SyncFailures"
    STALE = "SyncStale"
    WEBHOOK_REJECTED = "WebhookRejected"
    AUTHORIZER_DENIED = "AuthorizerDenied"
    # Reconciliation (Source=reconcile): one datapoint per run, valued with the run's counts.
    RECONCILE_CREATED = "ReconcileCreated"
    RECONCILE_UPDATED = "ReconcileUpdated"
    RECONCILE_UNCHANGED = "ReconcileUnchanged"
    RECONCILE_PRUNED = "ReconcilePruned"
    RECONCILE_FAILED = "ReconcileFailed"


# Powertools' metric set is not thread-safe: two threads adding the 100th value both print the set
# before either clears it, counting 99 datapoints twice. Reconcile's writes emit from a thread pool.
_EMIT_LOCK = threading.Lock()


def emit_metric(metric: SyncMetric, source: SyncSource, value: int = 1) -> None:
    """Add `value` (1) to `metric` for `source`; flushed as EMF when the handler returns.

    The dimension is set per call, not as a default, so handlers that share one process (the local
    stack) cannot leak their `Source` into each other's metrics.
    """
    with _EMIT_LOCK:
        metrics.add_dimension(name=SOURCE_DIMENSION, value=source.value)
        metrics.add_metric(name=metric.value, unit=MetricUnit.Count, value=value)
