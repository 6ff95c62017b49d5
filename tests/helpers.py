"""Test support: loading handlers as Lambda would, a Lambda context, and reading emitted EMF."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usersync_dev.handlers import load_function
from usersync_dev.local_aws import LocalLambdaContext as FakeLambdaContext

__all__ = ["FakeLambdaContext", "load_function"]  # the one Lambda-context stand-in, and the loader

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO_ROOT / "functions"


@dataclass(frozen=True)
class EmittedMetric:
    name: str
    value: float
    dimensions: dict[str, str]
    namespace: str


def emitted_metrics(stdout: str) -> list[EmittedMetric]:
    """Every metric in the EMF documents printed to stdout."""
    found: list[EmittedMetric] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            (dimension_names,) = directive["Dimensions"]
            dimensions = {name: document[name] for name in dimension_names}
            for metric in directive["Metrics"]:
                values = document[metric["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    found.append(EmittedMetric(metric["Name"], value, dimensions, directive["Namespace"]))
    return found


def metric_counts(stdout: str, source: str | None = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    for metric in emitted_metrics(stdout):
        if source is None or metric.dimensions.get("Source") == source:
            counts[metric.name] += int(metric.value)
    return counts


class LogCapture:
    """Collects what the shared Powertools logger writes (it keeps the stream it was created with,
    so capsys alone misses it): a handler with the logger's own JSON formatter on a StringIO."""

    def __init__(self) -> None:
        from usersync.observability import logger

        self._logger = logging.getLogger(logger.name)  # the stdlib logger Powertools writes through
        self._buffer = io.StringIO()
        self._handler = logging.StreamHandler(self._buffer)
        self._handler.setFormatter(logger.registered_formatter)
        self._logger.addHandler(self._handler)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)

    @property
    def text(self) -> str:
        return self._buffer.getvalue()

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]
