"""Shared pieces of the reliability suite: hypothesis budgets, the run report, table access.

Hypothesis settings are applied per test (as the `parent` of each test's own settings) instead of
loading a global profile, so the rest of the suite keeps hypothesis' defaults.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer
from hypothesis import HealthCheck, settings

from tests.helpers import REPO_ROOT
from usersync.runtime.aws import dynamodb_client

# ---------------------------------------------------------------- hypothesis profiles

Property = TypeVar("Property", bound=Callable[..., None])

# `default` keeps the whole suite within ~3 minutes on a 2-core machine while running at least
# 2,000 convergence examples; `deep` (HYPOTHESIS_PROFILE=deep) runs 10x as many for a longer soak.
PROFILE_SCALE = {"default": 1, "deep": 10}
_COMMON: dict[str, Any] = {
    "deadline": None,  # examples touch moto: wall time varies with machine load, not with the code
    "database": None,  # no example database in the working tree
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "print_blob": True,
}
for _name in PROFILE_SCALE:
    settings.register_profile(f"usersync-reliability-{_name}", **_COMMON)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
if PROFILE not in PROFILE_SCALE:
    PROFILE = "default"


def budget(max_examples: int) -> Callable[[Property], Property]:
    """Settings for one property (the active profile with `max_examples` scaled to it), whose examples
    after the first TRACED_EXAMPLES run with coverage's tracer paused (`traced_first`)."""
    parent = settings.get_profile(f"usersync-reliability-{PROFILE}")
    chosen = settings(parent=parent, max_examples=max_examples * PROFILE_SCALE[PROFILE])

    def apply(test: Property) -> Property:
        test = chosen(test)
        handle = test.hypothesis  # type: ignore[attr-defined]  # @given's handle, read at each run
        handle.inner_test = traced_first(TRACED_EXAMPLES, handle.inner_test)
        return test

    return apply


# Coverage's tracer roughly doubles the cost of an example (every call into moto, botocore and
# hypothesis is reported to it), and the reliability properties run ~3,500 examples through the same
# handlers. The first TRACED_EXAMPLES of each property are traced, the rest run untraced: what only
# later examples reached is pinned by named tests instead (docs/testing.md, "Coverage").
TRACED_EXAMPLES = 100


def traced_first(traced: int, example: Callable[..., None]) -> Callable[..., None]:
    """`example` (a property's inner test), run from its `traced`+1-th call on with this thread's trace
    function (coverage's tracer, when `make test` measures) removed, and put back after."""
    calls = 0

    @functools.wraps(example)
    def run(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        tracer = sys.gettrace()
        if tracer is None or calls <= traced:
            example(*args, **kwargs)
            return
        # Not Coverage.stop(): under xdist a worker holds two started Coverage objects, and stopping
        # the current one resumes the other's tracer.
        sys.settrace(None)
        try:
            example(*args, **kwargs)
        finally:
            sys.settrace(tracer)

    return run


# ---------------------------------------------------------------- the run report

REPORT: Counter[str] = Counter()
REPORT_PATH = REPO_ROOT / ".hypothesis" / "reliability-report.json"  # .hypothesis/ is git-ignored


def write_report(path: Path = REPORT_PATH) -> dict[str, int]:
    summary = dict(sorted(REPORT.items()))
    if summary:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"profile": PROFILE, **summary}, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------- table access


_deserializer = TypeDeserializer()


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal: integral ones compare as int."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def read_item(table_name: str, user_id: str) -> dict[str, Any] | None:
    response = dynamodb_client().get_item(
        TableName=table_name, Key={"userId": {"S": user_id}}, ConsistentRead=True
    )
    item = response.get("Item")
    if item is None:
        return None
    return {name: plain(_deserializer.deserialize(value)) for name, value in item.items()}


def scan_all(table_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
    while True:
        page = dynamodb_client().scan(**kwargs)
        items.extend(
            {name: plain(_deserializer.deserialize(value)) for name, value in item.items()}
            for item in page.get("Items", [])
        )
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda item: str(item["userId"]))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def without_synced_at(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if item is None else {k: v for k, v in item.items() if k != "syncedAt"}


# ---------------------------------------------------------------- faults


def unused_port() -> int:
    """A loopback port nothing listens on once this returns: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
