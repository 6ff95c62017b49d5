"""Contract §8: every SyncFailures is also a SyncAttempts, by construction (usersync.sync.users).

Also proves that the suite-wide check in tests/conftest.py sees flushes: a deliberately broken
flush is caught by it (and then removed, so this test's own teardown passes).
"""

from __future__ import annotations

from typing import Any

import pytest

from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import metrics
from usersync.sync.users import record_failed_attempt, sync_attempt


def _totals(document: dict[str, Any]) -> tuple[float, float]:
    def total(name: str) -> float:
        value = document.get(name, 0)
        return float(sum(value)) if isinstance(value, list) else float(value)

    return total("SyncAttempts"), total("SyncFailures")


def test_a_failure_inside_an_attempt_counts_both(
    flushed_emf_documents: list[dict[str, Any]],
) -> None:
    with pytest.raises(ZeroDivisionError), sync_attempt(SyncSource.WEBHOOK):
        _ = 1 / 0
    with sync_attempt(SyncSource.WEBHOOK):
        pass
    metrics.flush_metrics()
    assert _totals(flushed_emf_documents[-1]) == (2, 1)


def test_a_failure_before_any_write_counts_both(
    flushed_emf_documents: list[dict[str, Any]],
) -> None:
    record_failed_attempt(SyncSource.AUTHORIZER)
    metrics.flush_metrics()
    assert _totals(flushed_emf_documents[-1]) == (1, 1)


def test_the_suite_wide_check_sees_a_failure_without_attempt(
    flushed_emf_documents: list[dict[str, Any]],
) -> None:
    emit_metric(SyncMetric.FAILURES, SyncSource.WEBHOOK)  # what the old catch-all did
    metrics.flush_metrics()
    attempts, failures = _totals(flushed_emf_documents[-1])
    assert failures > attempts  # the fixture would fail this test at teardown...
    flushed_emf_documents.clear()  # ...so the deliberate breach is removed here
