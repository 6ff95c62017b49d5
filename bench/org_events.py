"""(6) Organization and membership events: DynamoDB calls per event, and /me's requests (CONTRACT §11).

The real webhook handler on moto's in-process DynamoDB (tables created from template.yaml) receives,
per organization: organization.created, a newer organization.updated, an older (stale) update, a
redelivery (duplicate svix-id), a membership created, updated, stale, duplicated and deleted, and
organization.deleted; every delivery is shuffled within its phase. DynamoDB calls are counted on the
client with botocore's `before-call` hook, per event type. Goal: exactly one call per event, whatever
its outcome (applied, stale, duplicate, tombstone). Then /me for each member: its request count.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

from bench._common import DynamoCallCounter, Goal, lambda_context, offline_env, quiet_stdout

USERS_TABLE = "usersync-bench-users"
ORGS_TABLE = "usersync-bench-organizations"
T0 = 1_730_279_325_025


def _deliveries(secret: str, organizations: int, rng: random.Random) -> tuple[list[Any], list[str]]:
    """(event type, API Gateway event) in phases, shuffled within each; and the member user ids."""
    from usersync_dev.apigw import http_api_event
    from usersync_dev.clerk import (
        clerk_event,
        clerk_membership,
        clerk_organization,
        deleted_organization,
        sign_delivery,
    )

    phases: list[list[tuple[str, Any]]] = [[] for _ in range(5)]
    users = []
    prefix = uuid.uuid4().hex[:8]
    for index in range(organizations):
        org_id, user_id = f"org_{prefix}{index:05d}", f"user_{prefix}{index:05d}"
        users.append(user_id)
        v1 = clerk_organization(org_id, name=f"Org {index}", created_at=T0, updated_at=T0)
        v2 = clerk_organization(org_id, name=f"Org {index} Ltd", created_at=T0, updated_at=T0 + 2000)
        v0 = clerk_organization(org_id, name=f"Org {index} old", created_at=T0, updated_at=T0 + 1000)

        def signed(event_type: str, data: dict[str, Any], timestamp: int | None = None) -> Any:
            return sign_delivery(secret, clerk_event(event_type, data, timestamp=timestamp))

        def membership(role: str, at: int, org: dict[str, Any], mid: str, user: str = user_id) -> Any:
            return clerk_membership(
                f"{mid}_{prefix}", organization=org, user_id=user, role=role, updated_at=at
            )

        first, second = f"orgmem_{index}", f"orgmem_b{index}"
        newer_org = signed("organization.updated", v2)
        newer_member = signed("organizationMembership.updated", membership("org:admin", T0 + 2000, v2, first))
        stale_member = signed(
            "organizationMembership.updated", membership("org:member", T0 + 1000, v1, first)
        )
        plan = [
            (0, "organization.created", signed("organization.created", v1)),
            (0, "organizationMembership.created",
             signed("organizationMembership.created", membership("org:member", T0, v1, first))),
            (1, "organization.updated", newer_org),
            (1, "organizationMembership.updated", newer_member),
            (2, "organization.updated (stale)", signed("organization.updated", v0)),
            (2, "organizationMembership.updated (stale)", stale_member),
            (3, "organization.updated (duplicate)", newer_org),
            (3, "organizationMembership.updated (duplicate)", newer_member),
            # A second membership, removed again: the real deleted payload (the whole membership)
            (0, "organizationMembership.created",
             signed("organizationMembership.created", membership("org:member", T0, v1, second))),
            (4, "organizationMembership.deleted",
             signed("organizationMembership.deleted", membership("org:member", T0, v1, second), T0 + 3000)),
        ]  # fmt: skip
        if index % 2:  # half the organizations are deleted at the end: their member's /me lists none
            deleted = clerk_event("organization.deleted", deleted_organization(org_id), timestamp=T0 + 4000)
            plan.append((4, "organization.deleted", sign_delivery(secret, deleted)))
        for phase_no, label, delivery in plan:
            event = http_api_event("POST", "/webhooks/clerk", body=delivery.body, headers=delivery.headers)
            phases[phase_no].append((label, event))
    ordered: list[tuple[str, Any]] = []
    for phase in phases:
        rng.shuffle(phase)
        ordered.extend(phase)
    return ordered, users


def run(*, organizations: int = 200, seed: int = 18) -> list[Goal]:
    offline_env()
    from moto import mock_aws

    from usersync.runtime.aws import dynamodb_client, reset_clients
    from usersync_dev.apigw import http_api_event
    from usersync_dev.clerk import clerk_event, clerk_user, new_webhook_secret, sign_delivery
    from usersync_dev.handlers import load_function
    from usersync_dev.template import create_organizations_table, create_users_table

    secret = new_webhook_secret()
    rng = random.Random(seed)
    saved = {name: os.environ.get(name) for name in ("USERS_TABLE_NAME", "ORGANIZATIONS_TABLE_NAME")}
    per_type: dict[str, Counter[int]] = defaultdict(Counter)
    statuses: Counter[str] = Counter()
    me_calls: Counter[int] = Counter()
    listed: Counter[int] = Counter()
    try:
        with mock_aws():
            reset_clients()
            client = dynamodb_client()
            create_users_table(client, USERS_TABLE)
            create_organizations_table(client, ORGS_TABLE)
            os.environ.update(
                USERS_TABLE_NAME=USERS_TABLE,
                ORGANIZATIONS_TABLE_NAME=ORGS_TABLE,
                CLERK_WEBHOOK_SIGNING_SECRET=secret,
            )
            webhook, me = load_function("webhook"), load_function("me")
            context = lambda_context()
            counter = DynamoCallCounter(client)
            deliveries, users = _deliveries(secret, organizations, rng)
            started = time.perf_counter()
            with quiet_stdout():
                for label, event in deliveries:
                    counter.reset()
                    response = webhook.lambda_handler(event, context)
                    statuses[f"{response['statusCode']} {json.loads(response['body'])['status']}"] += 1
                    per_type[label][counter.total] += 1
                elapsed = time.perf_counter() - started
                for user_id in users:
                    user = sign_delivery(secret, clerk_event("user.created", clerk_user(user_id)))
                    webhook.lambda_handler(
                        http_api_event("POST", "/webhooks/clerk", body=user.body, headers=user.headers),
                        context,
                    )
                    counter.reset()
                    event = http_api_event("GET", "/me", authorizer_context={"userId": user_id})
                    body = json.loads(me.lambda_handler(event, context)["body"])
                    me_calls[counter.total] += 1
                    listed[len(body.get("organizations", []))] += 1
    finally:
        reset_clients()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    calls = [n for counts in per_type.values() for n in counts.elements()]
    exactly_one = bool(calls) and all(n == 1 for n in calls)
    details = {
        "events": len(calls),
        "calls_per_event_by_type": {label: dict(counts) for label, counts in sorted(per_type.items())},
        "statuses": dict(statuses),
        "me_requests_histogram": dict(me_calls),
        "me_organizations_listed_histogram": dict(listed),
        "seconds": elapsed,
    }
    worst_me = max(me_calls) if me_calls else None
    return [
        Goal(
            "org events",
            f"DynamoDB calls per organization/membership event ({len(calls)} events)",
            float(max(calls)) if calls else None,
            "exactly 1",
            exactly_one,
            "calls",
            f"min {min(calls, default=0)}, max {max(calls, default=0)}; statuses {dict(statuses)}",
            details,
        ),
        Goal(
            "org events",
            f"DynamoDB requests per GET /me ({len(users)} members)",
            float(worst_me) if worst_me is not None else None,
            "<= 3",
            worst_me is not None and worst_me <= 3,
            "calls",
            "GetItem user + Query memberships + BatchGetItem organizations (none when no memberships)",
        ),
    ]
