"""Metric emission: names, the Source dimension, and the namespace the health check will read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import emitted_metrics
from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import metrics
from usersync.runtime.settings import HealthSettings


def test_count_emits_the_metric_with_service_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    # (A SyncFailures alone would break contract §8, which tests/conftest.py checks on every flush.)
    emit_metric(SyncMetric.STALE, SyncSource.AUTHORIZER)
    metrics.flush_metrics()
    (emitted,) = emitted_metrics(capsys.readouterr().out)
    assert (emitted.name, emitted.value) == ("SyncStale", 1)
    assert emitted.dimensions == {"service": "usersync", "Source": "authorizer"}


def test_without_a_namespace_variable_emitters_and_health_agree_on_the_default() -> None:
    # A fresh interpreter: the shared Metrics object reads the environment when it is created.
    env = {key: value for key, value in os.environ.items() if key != "POWERTOOLS_METRICS_NAMESPACE"}
    script = (
        "from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric\n"
        "from usersync.runtime.observability import metrics\n"
        "emit_metric(SyncMetric.ATTEMPTS, SyncSource.WEBHOOK)\n"
        "metrics.flush_metrics()\n"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    document = json.loads(result.stdout.strip().splitlines()[-1])
    emitted_namespace = document["_aws"]["CloudWatchMetrics"][0]["Namespace"]
    health = HealthSettings.from_env({"USERS_TABLE_NAME": "t"})
    assert emitted_namespace == health.metrics_namespace == "usersync"
