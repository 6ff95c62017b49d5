"""(2) Webhook in-process path vs the floor `svix Webhook.verify` + `json.loads`.

The candidate is the real `lambda_handler` (Powertools decorators, event normalisation, signature
check, pydantic parsing, record building, metrics, logs, response) with the DynamoDB client replaced
by a stub that returns at once: AWS is outside our system and its latency is not what is measured.
A second, informational figure keeps boto3's real request building (validation + serialisation)
and short-circuits only the HTTP send, as botocore's Stubber does.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from typing import Any

from bench._common import (
    Goal,
    interleaved,
    lambda_context,
    median_ratio,
    offline_env,
    quiet_stdout,
    time_per_call_us,
)
from usersync_dev.handlers import load_function

GOAL_RATIO = 1.5
TABLE_NAME = "usersync-bench-users"


class StubDynamoDB:
    """A DynamoDB client whose PutItem succeeds at once; it counts what it was asked."""

    def __init__(self) -> None:
        self.put_items = 0

    def put_item(self, **_: Any) -> dict[str, Any]:
        self.put_items += 1
        return {}


def _short_circuit_send(client: Any) -> None:
    """Answer every call after botocore built the request, before anything is sent."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    def respond(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        answer = {"ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse("http://stub", 200, HTTPHeaders(), None), answer

    client.meta.events.register("before-call.dynamodb.PutItem", respond)


def run(*, rounds: int = 11, calls: int = 200) -> list[Goal]:
    offline_env()
    from svix.webhooks import Webhook as SvixWebhook

    from usersync.api.http import parse_proxy_event
    from usersync.api.webhook import process_webhook
    from usersync.clerk.webhooks import parse_clerk_event, verify_signature
    from usersync.runtime.aws import dynamodb_client, reset_clients
    from usersync.runtime.observability import logger, metrics
    from usersync.store.codec import attributes_to_item
    from usersync.store.records import UserRecord
    from usersync.store.users import UserRepository
    from usersync.sync.events import record_for
    from usersync.sync.users import write_user
    from usersync_dev.apigw import http_api_event
    from usersync_dev.clerk import clerk_event, clerk_user, new_user_id, new_webhook_secret, sign_delivery

    secret = new_webhook_secret()
    os.environ.update({"USERS_TABLE_NAME": TABLE_NAME, "CLERK_WEBHOOK_SIGNING_SECRET": secret})
    reset_clients()
    app = load_function("webhook")
    stub = StubDynamoDB()
    stub_repository = UserRepository(stub, TABLE_NAME)  # type: ignore[arg-type]
    app.repository = stub_repository  # type: ignore[attr-defined]
    botocore_app = load_function("webhook")
    _short_circuit_send(dynamodb_client())
    botocore_app.repository = UserRepository(dynamodb_client(), TABLE_NAME)  # type: ignore[attr-defined]

    delivery = sign_delivery(secret, clerk_event("user.created", clerk_user(new_user_id())))
    event = http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers)
    context = lambda_context()
    svix_webhook = SvixWebhook(secret)

    def floor() -> None:
        svix_webhook.verify(delivery.body, delivery.headers)
        json.loads(delivery.body)

    def in_process() -> None:
        process_webhook(parse_proxy_event(event), secret, stub_repository)

    def handler() -> None:
        app.lambda_handler(event, context)

    def handler_botocore() -> None:
        botocore_app.lambda_handler(event, context)

    request = parse_proxy_event(event)
    message = verify_signature(request.body, request.headers, secret)
    parsed = parse_clerk_event(request.body)
    record = record_for(parsed, message)
    assert isinstance(record, UserRecord)
    # Where the time goes, stage by stage (informational; each stage timed alone).
    stages: dict[str, Callable[[], Any]] = {
        "parse_proxy_event": lambda: parse_proxy_event(event),
        "verify_signature": lambda: verify_signature(request.body, request.headers, secret),
        "parse_clerk_event (json + pydantic envelope)": lambda: parse_clerk_event(request.body),
        "record_for (pydantic user + record)": lambda: record_for(parsed, message),
        "PutItem params (item codec)": lambda: attributes_to_item(record.to_attributes()),
        "one logger.info line": lambda: logger.info("bench", extra={"userId": record.user_id}),
        "write_user (metrics + log + save on stub)": lambda: write_user(stub_repository, record),
    }

    with quiet_stdout():
        first = app.lambda_handler(event, context)
        assert first["statusCode"] == 200, first
        samples = interleaved(
            {
                "floor": floor,
                "in_process": in_process,
                "handler": handler,
                "handler_botocore": handler_botocore,
            },
            rounds=rounds,
            calls=calls,
        )
        breakdown = {
            name: statistics.median(time_per_call_us(fn, calls) for _ in range(3))
            for name, fn in stages.items()
        }
        metrics.clear_metrics()
    assert stub.put_items > 0
    assert json.loads(first["body"])["status"] == "applied"
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {name: median_ratio(samples[name], samples["floor"]) for name in samples if name != "floor"}
    details = {
        "body_bytes": len(delivery.body),
        "median_us_per_call": medians,
        "stage_us_per_call": breakdown,
        "rounds": rounds,
        "calls_per_round": calls,
    }
    return [
        Goal(
            "webhook in-process",
            "process_webhook (verify+parse+put on stub client) / (svix verify + json.loads)",
            ratios["in_process"],
            f"<= {GOAL_RATIO}x",
            ratios["in_process"] <= GOAL_RATIO,
            "x",
            f"{medians['in_process']:.0f} us vs floor {medians['floor']:.0f} us",
            details,
        ),
        Goal(
            "webhook in-process",
            "full lambda_handler (Powertools logger/metrics, stub client) / floor",
            ratios["handler"],
            "info",
            None,
            "x",
            f"{medians['handler']:.0f} us",
        ),
        Goal(
            "webhook in-process",
            "full lambda_handler, boto3 builds the PutItem (send short-circuited) / floor",
            ratios["handler_botocore"],
            "info",
            None,
            "x",
            f"{medians['handler_botocore']:.0f} us",
        ),
    ]
