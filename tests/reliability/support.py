"""Shared pieces of the reliability suite: hypothesis budgets, the run report, and handler drivers.

Hypothesis settings are applied per test (as the `parent` of each test's own settings) instead of
loading a global profile, so the rest of the suite keeps hypothesis' defaults.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from hypothesis import HealthCheck, settings

from tests.helpers import REPO_ROOT, FakeLambdaContext
from usersync.aws import dynamodb_client
from usersync_dev.apigw import http_api_event, rest_event
from usersync_dev.clerk import SignedDelivery, sign_delivery

# ---------------------------------------------------------------- hypothesis profiles

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


def budget(max_examples: int) -> settings:
    """Settings for one property: the active profile with `max_examples` scaled to it."""
    parent = settings.get_profile(f"usersync-reliability-{PROFILE}")
    return settings(parent=parent, max_examples=max_examples * PROFILE_SCALE[PROFILE])


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


# ---------------------------------------------------------------- handler drivers


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    raw: dict[str, Any]


def check_http_response(response: Any) -> Response:
    """Assert the shape API Gateway needs from a proxy integration, and return it parsed."""
    assert isinstance(response, dict), response
    assert type(response["statusCode"]) is int and 100 <= response["statusCode"] <= 599
    assert isinstance(response["body"], str)
    body = json.loads(response["body"])
    assert isinstance(body, dict)
    headers = response.get("headers", {})
    assert isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    return Response(response["statusCode"], body, response)


class WebhookDriver:
    """Signs deliveries as Svix does and hands them to the real webhook handler."""

    def __init__(self, module: ModuleType, secret: str, context: FakeLambdaContext) -> None:
        self.module = module
        self.secret = secret
        self.context = context

    def sign(self, payload: dict[str, Any] | bytes, **kwargs: Any) -> SignedDelivery:
        return sign_delivery(self.secret, payload, **kwargs)

    def invoke(self, event: Any) -> Response:
        return check_http_response(self.module.lambda_handler(event, self.context))

    def post(
        self, delivery: SignedDelivery, *, headers: Mapping[str, str] | None = None, fmt: str = "http"
    ) -> Response:
        build = http_api_event if fmt == "http" else rest_event
        sent = dict(headers) if headers is not None else delivery.headers
        return self.invoke(build("POST", "/webhooks/clerk", body=delivery.body, headers=sent))

    def deliver(self, message_id: str, payload: dict[str, Any]) -> Response:
        """One (re)delivery: Svix keeps the id and body, and signs with a fresh timestamp."""
        return self.post(self.sign(json.dumps(payload).encode(), message_id=message_id))
