"""Convergence: any order and duplication of users' webhook events ends in the in-order item.

Histories (created, updates with distinct random `updated_at`, maybe a delete with an envelope
timestamp) for one or several users go through the real webhook handler on moto. The reference is
sequential in-order application: `test_in_order_...` checks that the handler applied in Clerk order
leaves exactly the hand-written item (newest update, or the tombstone, with the winning event's
svix-id); the convergence tests apply random permutations with random redeliveries (same svix-id,
fresh signature) and must end with that same item. Items are compared without `syncedAt`.
One moto table and one cold-started handler serve every example of a test; examples use fresh user
ids and remove their items afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import WebhookDriver
from tests.reliability.support import REPORT, budget, read_item, without_synced_at
from usersync.aws import dynamodb_client
from usersync.observability import logger
from usersync_dev.apigw import http_api_authorizer_event
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, deleted_user, session_claims

TABLE = "usersync-test-users"
T_MIN = 1_700_000_000_000  # epoch ms, Nov 2023
T_MAX = T_MIN + 10**9
IN_ORDER_EXAMPLES = 150
SINGLE_USER_EXAMPLES = 1300
MULTI_USER_EXAMPLES = 450
MIXED_EXAMPLES = 300
ISSUER = "https://clerk.example.test"
PROFILE_FIELDS = ("email", "firstName", "lastName", "imageUrl")

# Unicode names exercise the JSON/DynamoDB round trip; "" and None must both mean "absent".
names = st.one_of(st.none(), st.just(""), st.text(st.characters(codec="utf-8"), min_size=1, max_size=12))
emails = st.one_of(st.none(), st.from_regex(r"[a-z]{1,8}@example\.(com|org)", fullmatch=True))


@dataclass(frozen=True)
class Profile:
    email: str | None
    first_name: str | None
    last_name: str | None
    image_url: str | None


profiles = st.builds(
    Profile,
    email=emails,
    first_name=names,
    last_name=names,
    image_url=st.one_of(st.none(), st.from_regex(r"https://img\.clerk\.com/[a-z0-9]{1,8}", fullmatch=True)),
)


@dataclass(frozen=True)
class History:
    """One user's events in the order Clerk produced them: created, updates, maybe deleted."""

    times: list[int]  # updated_at of created then of each update, strictly increasing
    profiles: list[Profile]
    deleted_at: int | None


@st.composite
def histories(draw: st.DrawFn) -> History:
    count = draw(st.integers(min_value=1, max_value=4))
    times = sorted(draw(st.lists(st.integers(T_MIN, T_MAX), min_size=count, max_size=count, unique=True)))
    deleted = draw(st.booleans())
    deleted_at = times[-1] + draw(st.integers(1, 10**7)) if deleted else None
    return History(times, draw(st.lists(profiles, min_size=count, max_size=count)), deleted_at)


@dataclass(frozen=True)
class Event:
    message_id: str
    user_id: str
    payload: dict[str, Any]
    expected_item: dict[str, Any]  # what the table holds if this event is the user's last word


def _present(**attributes: Any) -> dict[str, Any]:
    return {name: value for name, value in attributes.items() if value not in (None, "")}


def events_for(user_id: str, history: History) -> list[Event]:
    """The user's events in Clerk order, each with the item it should leave (written by hand here,
    independently of the code under test)."""
    created_at = history.times[0]
    events = []
    for index, (updated_at, profile) in enumerate(zip(history.times, history.profiles, strict=True)):
        event_type = "user.created" if index == 0 else "user.updated"
        data = clerk_user(
            user_id,
            email=profile.email,
            first_name=profile.first_name,
            last_name=profile.last_name,
            image_url=profile.image_url,
            created_at=created_at,
            updated_at=updated_at,
        )
        message_id = f"msg_{uuid.uuid4().hex}"
        expected = _present(
            userId=user_id,
            email=profile.email,
            firstName=profile.first_name,
            lastName=profile.last_name,
            imageUrl=profile.image_url,
            createdAt=created_at,
            updatedAt=updated_at,
            source="webhook",
            lastEventId=message_id,
        )
        events.append(
            Event(message_id, user_id, clerk_event(event_type, data, timestamp=updated_at), expected)
        )
    if history.deleted_at is not None:
        message_id = f"msg_{uuid.uuid4().hex}"
        payload = clerk_event("user.deleted", deleted_user(user_id), timestamp=history.deleted_at)
        expected = {
            "userId": user_id,
            "deletedAt": history.deleted_at,
            "source": "webhook",
            "lastEventId": message_id,
        }
        events.append(Event(message_id, user_id, payload, expected))
    return events


@st.composite
def schedules(draw: st.DrawFn, event_count: int) -> list[int]:
    """Every event at least once, some redelivered, in any order."""
    redeliveries = draw(st.lists(st.integers(0, event_count - 1), max_size=max(2, event_count // 2)))
    return draw(st.permutations([*range(event_count), *redeliveries]))


@st.composite
def scenarios(draw: st.DrawFn, max_users: int) -> tuple[list[History], list[int]]:
    users = draw(st.lists(histories(), min_size=1, max_size=max_users))
    event_count = sum(len(h.times) + (h.deleted_at is not None) for h in users)
    return users, draw(schedules(event_count))


def _apply(webhook: WebhookDriver, event: Event) -> None:
    response = webhook.deliver(event.message_id, event.payload)
    assert response.status == 200, response.body
    assert response.body["status"] in {"applied", "ignored-stale", "ignored-duplicate"}


def _build(users: list[History]) -> tuple[list[str], list[list[Event]]]:
    user_ids = [f"user_{uuid.uuid4().hex[:27]}" for _ in users]
    return user_ids, [events_for(user_id, history) for user_id, history in zip(user_ids, users, strict=True)]


def _expected(per_user: list[list[Event]]) -> dict[str, dict[str, Any]]:
    """The in-order result: the user's last event in Clerk order (newest update, or the tombstone)."""
    return {user_events[-1].user_id: user_events[-1].expected_item for user_events in per_user}


def _stored_then_forget(user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    stored = {user_id: without_synced_at(read_item(TABLE, user_id)) for user_id in user_ids}
    # Removing the example's items keeps moto's table (and its per-request cost) small.
    dynamodb_client().batch_write_item(
        RequestItems={TABLE: [{"DeleteRequest": {"Key": {"userId": {"S": uid}}}} for uid in user_ids]}
    )
    return stored


def check_in_order(webhook: WebhookDriver, users: list[History]) -> None:
    user_ids, per_user = _build(users)
    for user_events in per_user:
        for event in user_events:
            _apply(webhook, event)
    assert _stored_then_forget(user_ids) == _expected(per_user)


def check_convergence(webhook: WebhookDriver, users: list[History], schedule: list[int]) -> None:
    user_ids, per_user = _build(users)
    events = [event for user_events in per_user for event in user_events]
    for index in schedule:
        _apply(webhook, events[index])
    assert _stored_then_forget(user_ids) == _expected(per_user)


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """INFO lines for thousands of deliveries cost time and say nothing here; warnings still show."""
    level = logger.log_level
    logger.setLevel("WARNING")
    yield
    logger.setLevel(level)


def test_in_order_application_gives_newest_update_or_tombstone(webhook: WebhookDriver) -> None:
    """The reference: applied in Clerk order, the handler leaves exactly the hand-written item."""
    examples = 0

    @budget(IN_ORDER_EXAMPLES)
    @given(st.lists(histories(), min_size=1, max_size=3))
    def in_order(users: list[History]) -> None:
        nonlocal examples
        examples += 1
        check_in_order(webhook, users)

    in_order()
    REPORT["in-order reference examples"] += examples
    assert examples >= IN_ORDER_EXAMPLES


@pytest.mark.usefixtures("quiet_logs")
@pytest.mark.parametrize(("max_users", "minimum"), [(1, SINGLE_USER_EXAMPLES), (3, MULTI_USER_EXAMPLES)])
def test_any_order_with_redeliveries_converges_to_in_order_item(
    webhook: WebhookDriver, max_users: int, minimum: int
) -> None:
    examples = 0

    @budget(minimum)
    @given(scenarios(max_users=max_users))
    def converges(scenario: tuple[list[History], list[int]]) -> None:
        nonlocal examples
        examples += 1
        check_convergence(webhook, *scenario)

    converges()
    REPORT["convergence examples"] += examples
    assert examples >= minimum


# ---------------------------------------------------------------- webhook + authorizer


@dataclass(frozen=True)
class TokenSync:
    user: int  # index of the user in the scenario
    iat_offset_ms: int  # position on the same time line as the webhook times (T_MIN + offset)
    profile: Profile


TOKEN_SPAN = T_MAX - T_MIN + 10**7  # up to the latest possible delete
token_syncs = st.builds(
    TokenSync,
    user=st.integers(0, 1),
    # Hypothesis favours small integers: half the draws come from the newest stretch of the time line
    # so that tokens newer than every webhook write (which may then legitimately win) are common.
    iat_offset_ms=st.integers(0, TOKEN_SPAN) | st.integers(T_MAX - T_MIN - 10**6, TOKEN_SPAN),
    profile=profiles.filter(lambda profile: profile.email is not None),
)


@st.composite
def mixed_scenarios(draw: st.DrawFn) -> tuple[list[History], list[TokenSync], list[int]]:
    """Webhook histories for 1-2 users plus authorizer syncs; schedule indices past the webhook
    events' count are token syncs."""
    users = draw(st.lists(histories(), min_size=1, max_size=2))
    tokens = draw(st.lists(token_syncs, min_size=1, max_size=4))
    tokens = [TokenSync(t.user % len(users), t.iat_offset_ms, t.profile) for t in tokens]
    event_count = sum(len(h.times) + (h.deleted_at is not None) for h in users)
    webhook_schedule = draw(schedules(event_count))
    return (
        users,
        tokens,
        draw(st.permutations(webhook_schedule + [event_count + i for i in range(len(tokens))])),
    )


@pytest.fixture
def authorizer(pem_authorizer: ModuleType, key: SigningKey) -> tuple[ModuleType, SigningKey]:
    return pem_authorizer, key


def _shifted(history: History, delta: int) -> History:
    deleted_at = None if history.deleted_at is None else history.deleted_at + delta
    return History([t + delta for t in history.times], history.profiles, deleted_at)


def check_mixed(
    webhook: WebhookDriver,
    authorizer: tuple[ModuleType, SigningKey],
    users: list[History],
    tokens: list[TokenSync],
    schedule: list[int],
) -> None:
    module, key = authorizer
    # Tokens must be valid now, so the whole time line ends in the recent past (iat never ahead).
    delta = (int(time.time()) - 60) * 1000 - (T_MIN + TOKEN_SPAN)
    user_ids, per_user = _build([_shifted(history, delta) for history in users])
    events = [event for user_events in per_user for event in user_events]
    for index in schedule:
        if index < len(events):
            _apply(webhook, events[index])
            continue
        sync = tokens[index - len(events)]
        iat = (T_MIN + delta + sync.iat_offset_ms) // 1000
        claims = session_claims(
            user_ids[sync.user],
            email=sync.profile.email,
            first_name=sync.profile.first_name,
            last_name=sync.profile.last_name,
            image_url=sync.profile.image_url,
            issuer=ISSUER,
            issued_at=iat,
            lifetime_seconds=int(time.time()) - iat + 600,
        )
        token = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})
        event = http_api_authorizer_event("GET", "/me", headers={"authorization": f"Bearer {token}"})
        response = module.lambda_handler(event, webhook.context)
        assert isinstance(response["isAuthorized"], bool)
        REPORT["authorizer syncs mixed into convergence"] += 1

    stored = _stored_then_forget(user_ids)
    for position, (user_id, user_events) in enumerate(zip(user_ids, per_user, strict=True)):
        final, webhook_item = stored[user_id], user_events[-1].expected_item
        assert final is not None
        if users[position].deleted_at is not None:
            assert final == webhook_item  # the tombstone: no token resurrects it
            continue
        # A token never replaces a newer webhook write: the item is the webhook's newest update
        # unless a token issued later than it carried a different profile and was written.
        assert final["updatedAt"] >= webhook_item["updatedAt"]
        if final["source"] == "webhook":
            assert final == webhook_item
            continue
        written_by = [
            sync
            for sync in tokens
            if sync.user == position
            and ((T_MIN + delta + sync.iat_offset_ms) // 1000) * 1000 == final["updatedAt"]
        ]
        stored_profile = {name: final[name] for name in PROFILE_FIELDS if name in final}
        token_profiles = [
            _present(
                email=sync.profile.email,
                firstName=sync.profile.first_name,
                lastName=sync.profile.last_name,
                imageUrl=sync.profile.image_url,
            )
            for sync in written_by
        ]
        # Two tokens issued in the same second may carry different profiles: either may win.
        assert stored_profile in token_profiles, (final, token_profiles)
        # Equal times are a tie (the token's iat is whole seconds): whichever landed first stays.
        assert final["updatedAt"] >= webhook_item["updatedAt"] and "lastEventId" not in final
        REPORT["mixed examples where a token's profile won (newer or tied)"] += 1


@pytest.mark.usefixtures("quiet_logs")
def test_authorizer_syncs_never_overwrite_newer_webhook_writes_nor_resurrect(
    webhook: WebhookDriver, authorizer: tuple[ModuleType, SigningKey]
) -> None:
    examples = 0

    @budget(MIXED_EXAMPLES)
    @given(mixed_scenarios())
    def converges(scenario: tuple[list[History], list[TokenSync], list[int]]) -> None:
        nonlocal examples
        examples += 1
        check_mixed(webhook, authorizer, *scenario)

    converges()
    REPORT["convergence examples"] += examples
    REPORT["convergence examples with authorizer syncs"] += examples
    assert examples >= MIXED_EXAMPLES
