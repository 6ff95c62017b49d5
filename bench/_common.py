"""Shared bench machinery: offline environment, handler loading, interleaved timing, result rows.

Shared machines are noisy, so no figure stands alone: each candidate is timed in rounds interleaved
with its baseline, a ratio is taken per round, and the median of those ratios is what is reported.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO_ROOT / "functions"
LAYER_DIR = REPO_ROOT / "layers" / "shared"

# What every benchmark runs under: fake credentials, a region, never a real AWS endpoint.
BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "usersync",
    "POWERTOOLS_METRICS_NAMESPACE": "usersync-bench",
    "LOG_LEVEL": "INFO",  # as template.yaml deploys it: log formatting is part of the cost
}
_UNSAFE_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def offline_env() -> None:
    """Put BASE_ENV into os.environ before anything creates a boto3 client."""
    for name in _UNSAFE_ENV:
        os.environ.pop(name, None)
    os.environ.update(BASE_ENV)


def function_exists(name: str) -> bool:
    return (FUNCTIONS_DIR / name / "app.py").is_file()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send fd 1 to /dev/null: handlers log JSON and print EMF on every call (we time that cost,
    we do not want to read it). Powertools' logger keeps the stream object it was created with, so
    redirecting sys.stdout alone would not silence it; fd-level redirection does."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def time_per_call_us(fn: Callable[[], Any], calls: int) -> float:
    """Mean µs per call over `calls` calls, GC paused as timeit does."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter_ns() - start
    finally:
        if enabled:
            gc.enable()
    return elapsed / calls / 1000


def interleaved(
    candidates: dict[str, Callable[[], Any]], *, rounds: int, calls: int
) -> dict[str, list[float]]:
    """µs/call of every candidate in each round; the order rotates so no one always goes first."""
    names = list(candidates)
    for name in names:  # warm-up: caches, lazy imports, branch predictors
        time_per_call_us(candidates[name], max(1, calls // 10))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_per_call_us(candidates[name], calls))
    return samples


def median_ratio(candidate: list[float], baseline: list[float]) -> float:
    """Median of per-round ratios: each ratio compares two figures taken moments apart."""
    return statistics.median(c / b for c, b in zip(candidate, baseline, strict=True))


class DynamoCallCounter:
    """Counts DynamoDB API calls a botocore client makes (the `before-call` event fires once per
    API call, before retries), by operation name."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def reset(self) -> None:
        self.calls.clear()

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class Goal:
    """One row of the results table."""

    benchmark: str
    metric: str
    value: float | None
    goal: str
    met: bool | None  # None: could not be measured (the note says why)
    unit: str = ""
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if unit in {"calls", "count"}:
        return f"{value:g}"
    return f"{value:.1f} {unit}".strip()


def lambda_context() -> Any:
    """The dev tools' Lambda-context stand-in (handlers need a real context, as Lambda always gives)."""
    from usersync_dev.local_aws import LocalLambdaContext

    return LocalLambdaContext(function_name="usersync-bench")
