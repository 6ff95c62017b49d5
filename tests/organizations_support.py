"""Test support for organizations and memberships: Clerk-shaped events, a DynamoDB call counter
(botocore event hooks on the real client, never a patch of our code), and /me calls."""

from __future__ import annotations

import json
from collections import Counter
from types import ModuleType
from typing import Any

from tests.helpers import FakeLambdaContext
from usersync.runtime.aws import dynamodb_client
from usersync_dev.apigw import http_api_event
from usersync_dev.clerk import clerk_event, clerk_membership, clerk_organization, deleted_organization

T0 = 1_730_279_325_025  # ms


class DynamoCalls:
    """Counts the DynamoDB API calls the shared client sends, by operation (`before-call` fires once per
    call, before any retry). Use as a context manager so the hook is removed."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._client = dynamodb_client()

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def __enter__(self) -> DynamoCalls:
        self._client.meta.events.register("before-call.dynamodb", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.meta.events.unregister("before-call.dynamodb", self._count)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def organization_event(
    event_type: str, org_id: str, *, name: str = "Acme", updated_at: int = T0, timestamp: int | None = None
) -> dict[str, Any]:
    """organization.created|updated|deleted for `org_id` (the slug follows the name)."""
    if event_type == "organization.deleted":
        return clerk_event(event_type, deleted_organization(org_id), timestamp=timestamp or updated_at)
    data = clerk_organization(
        org_id, name=name, slug=name.lower().replace(" ", "-"), created_at=T0, updated_at=updated_at
    )
    return clerk_event(event_type, data, timestamp=timestamp or updated_at)


def membership_event(
    event_type: str,
    membership_id: str,
    org_id: str,
    user_id: str,
    *,
    role: str = "org:member",
    org_name: str = "Acme",
    org_updated_at: int = T0,
    updated_at: int = T0,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """organizationMembership.*; a delete carries the whole membership, as Clerk's do."""
    organization = clerk_organization(
        org_id,
        name=org_name,
        slug=org_name.lower().replace(" ", "-"),
        created_at=T0,
        updated_at=org_updated_at,
    )
    data = clerk_membership(
        membership_id,
        organization=organization,
        user_id=user_id,
        role=role,
        created_at=T0,
        updated_at=updated_at,
    )
    return clerk_event(event_type, data, timestamp=timestamp or updated_at)


def call_me(module: ModuleType, user_id: str, context: FakeLambdaContext) -> tuple[int, dict[str, Any]]:
    """GET /me as API Gateway sends it after the authorizer allowed `user_id`."""
    event = http_api_event("GET", "/me", authorizer_context={"userId": user_id, "email": "a@example.com"})
    response = module.lambda_handler(event, context)
    body: dict[str, Any] = json.loads(response["body"])
    return int(response["statusCode"]), body
