"""(4) Sync cost: DynamoDB calls and time for N webhook events, ours vs a naive read-then-write.

Both run against a moto server on 127.0.0.1 (real HTTP, real botocore), each on its own table,
rounds interleaved. Ours is the real webhook `lambda_handler` (one conditional PutItem per event).
The baseline is what the seed did, written here: the same verification and parsing, then "find +
update/create" = GetItem, then PutItem (new user) or UpdateItem (newer data) or nothing.
It runs without Powertools' per-invocation decorators, which only favours the baseline.

The events: per user a create, a newer update, an older (stale) update delivered after it, and a
redelivery (duplicate svix-id) of the newer update: 25 % each, shuffled within each phase.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import statistics
import time
import uuid
from typing import Any

from bench._common import DynamoCallCounter, Goal, lambda_context, offline_env, quiet_stdout
from usersync_dev.handlers import load_function

OURS_TABLE = "usersync-bench-ours"
NAIVE_TABLE = "usersync-bench-naive"
T0 = 1_730_279_325_025  # ms


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _events(secret: str, users: int, rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """API Gateway events for `users` users x 4 deliveries, and the expected final updatedAt per user."""
    from usersync_dev.apigw import http_api_event
    from usersync_dev.clerk import clerk_event, clerk_user, sign_delivery

    phases: list[list[Any]] = [[], [], [], []]
    final: dict[str, int] = {}
    prefix = uuid.uuid4().hex[:8]
    for index in range(users):
        user_id = f"user_{prefix}{index:06d}"
        created = sign_delivery(secret, clerk_event("user.created", clerk_user(user_id, created_at=T0)))
        newer_payload = clerk_user(user_id, created_at=T0, updated_at=T0 + 2000, first_name=f"New{index}")
        newer = sign_delivery(secret, clerk_event("user.updated", newer_payload))
        older_payload = clerk_user(user_id, created_at=T0, updated_at=T0 + 1000, first_name=f"Old{index}")
        older = sign_delivery(secret, clerk_event("user.updated", older_payload))
        for phase, delivery in zip(phases, (created, newer, older, newer), strict=True):
            phase.append(delivery)
        final[user_id] = T0 + 2000
    events: list[dict[str, Any]] = []
    for phase in phases:
        rng.shuffle(phase)
        events.extend(
            http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers)
            for delivery in phase
        )
    return events, final


def _naive_handler(client: Any, secret: str) -> Any:
    """The seed's read-then-write, kept to the same verification/parsing so only the write differs."""
    from boto3.dynamodb.types import TypeSerializer

    from usersync.api.http import json_response, parse_proxy_event
    from usersync.clerk.webhooks import parse_clerk_event, verify_signature
    from usersync.store.records import UserRecord
    from usersync.sync.events import record_for

    serializer = TypeSerializer()

    def handle(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        request = parse_proxy_event(event)
        message = verify_signature(request.body, request.headers, secret)
        record = record_for(parse_clerk_event(request.body), message)
        assert isinstance(record, UserRecord)
        attributes = record.to_attributes()
        found = client.get_item(TableName=NAIVE_TABLE, Key={"userId": {"S": record.user_id}}).get("Item")
        if found is None:
            client.put_item(
                TableName=NAIVE_TABLE, Item={k: serializer.serialize(v) for k, v in attributes.items()}
            )
            return json_response(200, {"status": "applied"})
        if int(found["updatedAt"]["N"]) >= (record.updated_at or 0):
            return json_response(200, {"status": "ignored"})
        updates = {k: v for k, v in attributes.items() if k != "userId"}
        client.update_item(
            TableName=NAIVE_TABLE,
            Key={"userId": {"S": record.user_id}},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(updates))),
            ExpressionAttributeNames={f"#a{i}": name for i, name in enumerate(updates)},
            ExpressionAttributeValues={
                f":v{i}": serializer.serialize(v) for i, v in enumerate(updates.values())
            },
        )
        return json_response(200, {"status": "applied"})

    return handle


def _stored_versions(client: Any, table: str) -> dict[str, tuple[int, str]]:
    paginator = client.get_paginator("scan")
    return {
        item["userId"]["S"]: (int(item["updatedAt"]["N"]), item.get("firstName", {}).get("S", ""))
        for page in paginator.paginate(TableName=table)
        for item in page["Items"]
    }


def run(*, events: int = 1000, rounds: int = 3, seed: int = 8) -> list[Goal]:
    offline_env()
    from moto.server import ThreadedMotoServer

    from usersync.runtime.aws import dynamodb_client, reset_clients
    from usersync_dev.clerk import new_webhook_secret
    from usersync_dev.template import create_users_table

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved_endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    try:
        secret = new_webhook_secret()
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{port}",
                "USERS_TABLE_NAME": OURS_TABLE,
                "CLERK_WEBHOOK_SIGNING_SECRET": secret,
            }
        )
        reset_clients()
        client = dynamodb_client()
        create_users_table(client, OURS_TABLE)
        create_users_table(client, NAIVE_TABLE)
        app = load_function("webhook")
        naive = _naive_handler(client, secret)
        counter = DynamoCallCounter(client)
        context = lambda_context()
        rng = random.Random(seed)
        users = max(1, events // 4)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "naive": []}
        statuses: dict[str, int] = {}
        for round_no in range(rounds):
            batch, expected = _events(secret, users, rng)
            order = [("ours", app.lambda_handler), ("naive", naive)]
            for name, handler in order if round_no % 2 == 0 else order[::-1]:
                counter.reset()
                with quiet_stdout():
                    start = time.perf_counter()
                    responses = [handler(event, context) for event in batch]
                    elapsed = time.perf_counter() - start
                assert all(response["statusCode"] == 200 for response in responses), responses[:3]
                if name == "ours":
                    for response in responses:
                        status = json.loads(response["body"])["status"]
                        statuses[status] = statuses.get(status, 0) + 1
                runs[name].append({"seconds": elapsed, "calls": dict(counter.calls), "events": len(batch)})
            counter.reset()
            for table in (OURS_TABLE, NAIVE_TABLE):
                stored = _stored_versions(client, table)
                assert all(stored[user][0] == version for user, version in expected.items()), table
    finally:
        server.stop()
        if saved_endpoint is None:
            os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
        else:
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = saved_endpoint
        reset_clients()

    total_events = users * 4
    ours_calls = [sum(run["calls"].values()) for run in runs["ours"]]
    naive_calls = [sum(run["calls"].values()) for run in runs["naive"]]
    ratio = statistics.median(
        o["seconds"] / n["seconds"] for o, n in zip(runs["ours"], runs["naive"], strict=True)
    )
    per_event = max(ours_calls) / total_events
    details = {"events_per_round": total_events, "rounds": rounds, "runs": runs, "our_statuses": statuses}
    return [
        Goal(
            "sync cost",
            f"DynamoDB calls per event, ours (N={total_events})",
            per_event,
            "exactly 1",
            all(calls == total_events for calls in ours_calls),
            "calls",
            f"naive read-then-write: {statistics.median(naive_calls) / total_events:.2f} calls/event",
            details,
        ),
        Goal(
            "sync cost",
            f"time for N={total_events} events, ours / naive read-then-write (moto server)",
            ratio,
            "< 1.0x",
            ratio < 1.0,
            "x",
            "ours {:.2f} s vs naive {:.2f} s (median)".format(
                statistics.median(run["seconds"] for run in runs["ours"]),
                statistics.median(run["seconds"] for run in runs["naive"]),
            ),
        ),
    ]
