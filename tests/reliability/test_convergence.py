"""Convergence: any order and duplication of users' webhook events ends in the in-order item.

Histories (created, updates with distinct random `updated_at`, maybe a delete with an envelope
timestamp) for one or several users go through the real webhook handler on moto. The reference is
sequential in-order application: `test_in_order_...` checks that the handler applied in Clerk order
leaves exactly the hand-written item (newest update, or the tombstone, with the winning event's
svix-id); the convergence tests apply random permutations with random redeliveries (same svix-id,
fresh signature) and must end with that same item. Items are compared without `syncedAt`.
One moto table and one cold-started handler serve every example of a test; examples use fresh user
ids and remove their items afterwards.

The three-writer property (contract §3, "Three writers, one outcome") mixes in reconciliation runs
and the authorizer's token syncs and compares what users see (profile, createdAt, tombstone-ness):
bookkeeping attributes (`syncedAt`, `source`, `updatedAt`, `lastEventId`) may differ between orders.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import jwt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.helpers import WebhookDriver, authorize_bearer
from tests.reliability.support import REPORT, budget, read_item, without_synced_at
from tests.session_tokens import ISSUER
from usersync.clerk.backend_api import ClerkBackendApi
from usersync.clerk.users import ClerkUser
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.observability import metrics
from usersync.store.records import UserRecord
from usersync.sync.reconcile import Counts, ReconcileOptions, UserSource
from usersync.sync.reconcile.engine import Writer
from usersync_dev.clerk import SigningKey, clerk_event, clerk_user, deleted_user, session_claims

TABLE = "usersync-test-users"
T_MIN = 1_700_000_000_000  # epoch ms, Nov 2023
T_MAX = T_MIN + 10**9
IN_ORDER_EXAMPLES = 150
SINGLE_USER_EXAMPLES = 1300
MULTI_USER_EXAMPLES = 450
THREE_WRITER_EXAMPLES = 400
PROFILE_FIELDS = ("email", "firstName", "lastName", "imageUrl")
OPTIONAL_CLAIMS = frozenset({"firstName", "lastName", "imageUrl"})  # a session token's optional claims
CLAIM_OF_FIELD = {"first_name": "firstName", "last_name": "lastName", "image_url": "imageUrl"}

# Unicode names exercise the JSON/DynamoDB round trip; "" and None must both mean "absent".
names = st.one_of(st.none(), st.just(""), st.text(st.characters(codec="utf-8"), min_size=1, max_size=12))
emails = st.one_of(st.none(), st.from_regex(r"[a-z]{1,8}@example\.(com|org)", fullmatch=True))


@dataclass(frozen=True)
class Profile:
    email: str | None
    first_name: str | None
    last_name: str | None
    image_url: str | None

    def clerk_fields(self) -> dict[str, Any]:
        """As keyword arguments of `clerk_user` (a webhook or reconcile record) and of `session_claims`
        (a token): both name the profile as this dataclass does."""
        return asdict(self)

    def item_attributes(self) -> dict[str, str | None]:
        """As the user item's attributes."""
        return {
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "imageUrl": self.image_url,
        }


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
        data = clerk_user(user_id, **profile.clerk_fields(), created_at=created_at, updated_at=updated_at)
        message_id = f"msg_{uuid.uuid4().hex}"
        expected = _present(
            userId=user_id,
            **profile.item_attributes(),
            createdAt=created_at,
            updatedAt=updated_at,
            clerkUpdatedAt=updated_at,
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


# ---------------------------------------------------------------- three writers


@dataclass(frozen=True)
class ThreeWriterScenario:
    """One user's Clerk history and what each writer does with it, in schedule order.

    - webhook: a subset of the history's events (some may be lost), each maybe redelivered;
    - reconcile: runs that each list Clerk at some version (`versions` index; a run after the delete
      does not list the user, so writes nothing); a run scans the table at its first schedule entry
      and writes at its second, so its snapshot can be stale;
    - authorizer: tokens issued at some time after the user was created and before any delete,
      carrying Clerk's profile as of their `iat` (Clerk mints session tokens from the current user),
      each with its own subset of the optional claims (a session-token template may leave any of
      `firstName`, `lastName`, `imageUrl` out: absent is unknown, not empty).
    """

    history: History
    webhook_events: list[int]  # indices into the history's events, each at least once
    reconcile_versions: list[int]  # version listed by each run
    token_offsets: list[int]  # iat of each token, ms after the first version (rounded to seconds)
    schedule: list[tuple[str, int]]
    token_claims: list[frozenset[str]] = field(default_factory=list)  # optional claims each token carries

    def claims_of(self, token: int) -> frozenset[str]:
        return self.token_claims[token] if token < len(self.token_claims) else OPTIONAL_CLAIMS


@st.composite
def three_writer_scenarios(draw: st.DrawFn) -> ThreeWriterScenario:
    history = _versioned(draw(histories()))
    event_count = len(history.times) + (history.deleted_at is not None)
    delivered = draw(st.lists(st.integers(0, event_count - 1), max_size=event_count + 2))
    runs = draw(st.lists(st.integers(0, len(history.times) - 1), max_size=3))
    end = (history.deleted_at if history.deleted_at is not None else history.times[-1] + 10**7) - 1
    span = end - history.times[0]
    tokens = draw(st.lists(st.integers(1_000, max(1_000, span)), max_size=4))
    entries = (
        [("webhook", index) for index in delivered]
        + [("reconcile", run) for run in range(len(runs)) for _ in range(2)]
        + [("token", token) for token in range(len(tokens))]
    )
    # Every optional claim half of the time (a full template), else any subset of them.
    subsets = st.just(OPTIONAL_CLAIMS) | st.frozensets(st.sampled_from(sorted(OPTIONAL_CLAIMS)))
    claims = draw(st.lists(subsets, min_size=len(tokens), max_size=len(tokens)))
    return ThreeWriterScenario(history, delivered, runs, tokens, draw(st.permutations(entries)), claims)


def _versioned(history: History) -> History:
    """Each version's profile is distinct (its last name ends with the version), as Clerk's versions
    of one user differ in something; see docs/behaviour.md on why compare-first needs that."""
    profiles = [
        Profile(p.email, p.first_name, f"{p.last_name or ''}v{index}", p.image_url)
        for index, p in enumerate(history.profiles)
    ]
    return History(history.times, profiles, history.deleted_at)


def _profile_at(history: History, at: int) -> Profile:
    """Clerk's profile of the user at time `at` (the newest version not after it)."""
    index = max(i for i, updated_at in enumerate(history.times) if updated_at <= at)
    return history.profiles[index]


def _projection(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """What users see: the profile, createdAt, and whether it is a tombstone (bookkeeping differs)."""
    if item is None:
        return None
    if "deletedAt" in item:
        return {"tombstone": True}
    return {name: item[name] for name in (*PROFILE_FIELDS, "createdAt") if name in item}


def check_projection(final: dict[str, Any] | None, scenario: ThreeWriterScenario, delta: int) -> None:
    """The contract's outcome, written independently of the code (contract §3):

    - a delivered delete wins; nothing written means no item;
    - createdAt is there once any Clerk record was delivered;
    - no attribute Clerk holds is ever lost: every attribute of the newest Clerk record delivered is in
      the item, whatever tokens (with whichever optional claims) came before or after;
    - nothing is invented: each profile value is one that a delivered record or a written token said;
    - the newest writer wins: the newest Clerk record's whole profile when no written token is newer;
      with every optional claim carried, the newest token's claims when it is newer than every record.
    """
    history = scenario.history
    projection = _projection(final)
    delete_index = len(history.times) if history.deleted_at is not None else None
    if delete_index is not None and delete_index in scenario.webhook_events:
        assert projection == {"tombstone": True}
        return
    clerk_versions = [history.times[i] for i in scenario.webhook_events if i != delete_index]
    clerk_versions += [history.times[v] for v in scenario.reconcile_versions]
    # A token whose profile has no email is denied (contract §5): it writes nothing.
    tokens = [
        (t, scenario.claims_of(index))
        for index, offset in enumerate(scenario.token_offsets)
        if _profile_at(history, t := _token_time(history, offset, delta) - delta).email
    ]
    if not clerk_versions and not tokens:
        assert projection is None
        return
    assert projection is not None
    assert "tombstone" not in projection
    profile = {name: value for name, value in projection.items() if name != "createdAt"}
    assert projection.get("createdAt") == (history.times[0] + delta if clerk_versions else None)

    said = _said(history, clerk_versions, tokens)
    for name, value in profile.items():
        assert value in said[name], (name, value, "invented")
    _check_the_newest_wins(profile, history, clerk_versions, tokens)


def _said(
    history: History, clerk_versions: list[int], tokens: list[tuple[int, frozenset[str]]]
) -> dict[str, set[Any]]:
    """Every profile value a delivered Clerk record or a written token said, by attribute."""
    said: dict[str, set[Any]] = {name: set() for name in PROFILE_FIELDS}
    for version in clerk_versions:
        for name, value in _present(**_profile_at(history, version).item_attributes()).items():
            said[name].add(value)
    for t, carried in tokens:
        for name, value in _present(**_profile_at(history, t).item_attributes()).items():
            if name == "email" or name in carried:
                said[name].add(value)
    return said


def _check_the_newest_wins(
    profile: dict[str, Any],
    history: History,
    clerk_versions: list[int],
    tokens: list[tuple[int, frozenset[str]]],
) -> None:
    """The newest Clerk record's whole profile (nothing of it lost) unless a written token is newer;
    then, when every token carried every optional claim, the newest token's claims."""
    newest_token = max((t for t, _ in tokens), default=None)
    if clerk_versions:
        newest = _present(**_profile_at(history, max(clerk_versions)).item_attributes())
        assert set(newest) <= set(profile), ("lost", set(newest) - set(profile))
        if newest_token is None or max(clerk_versions) >= newest_token:
            assert profile == newest
            return
    assert newest_token is not None
    if all(carried == OPTIONAL_CLAIMS for _, carried in tokens):
        claimed = _present(**_profile_at(history, newest_token).item_attributes())
        assert {name: profile.get(name) for name in claimed} == claimed


def _token_time(history: History, offset: int, delta: int) -> int:
    """The token's iat in ms on the shifted time line: whole seconds, never before the user existed."""
    at = history.times[0] + delta + offset
    return max(at // 1000 * 1000, (history.times[0] + delta + 999) // 1000 * 1000)


WRITER = Writer(1)  # reconciliation's write pool, one thread: these writes happen one at a time


def check_three_writers(
    webhook: WebhookDriver, authorizer: tuple[ModuleType, SigningKey], scenario: ThreeWriterScenario
) -> None:
    module, key = authorizer
    # Tokens must be valid now: the whole time line ends in the recent past (iat never ahead).
    delta = (int(time.time()) - 60) * 1000 - (T_MAX + 2 * 10**7)
    history = _shifted(scenario.history, delta)
    user_id = f"user_{uuid.uuid4().hex[:27]}"
    events = events_for(user_id, history)
    # Reconciliation reads a page's stored versions, then writes what they lack: the read is taken at
    # the schedule's first "reconcile" turn, the write happens at its second, however stale by then.
    source = UserSource(
        ClerkBackendApi("sk_test_unused", "http://127.0.0.1:9"),
        dynamodb_client(),
        TABLE,
        ReconcileOptions(),
        WRITER,
    )
    snapshots: dict[int, dict[str, UserRecord]] = {}
    first_writer: str | None = None
    for writer, index in scenario.schedule:
        if writer == "webhook":
            _apply(webhook, events[index])
        elif writer == "reconcile" and index not in snapshots:
            snapshots[index] = source.stored_versions([user_id])
        elif writer == "reconcile":
            version = scenario.reconcile_versions[index]
            listed = clerk_user(
                user_id,
                **history.profiles[version].clerk_fields(),
                created_at=history.times[0],
                updated_at=history.times[version],
            )
            source.apply_stored([ClerkUser.model_validate(listed)], snapshots[index], Counts(), dry_run=False)
            # Its metrics leave with its own invocation (as the reconcile function's handler flushes them),
            # not with the next webhook's: one flush carries one Source.
            metrics.flush_metrics()
            REPORT["reconcile writes mixed into convergence"] += 1
        else:
            iat_ms = _token_time(scenario.history, scenario.token_offsets[index], delta)
            profile = _profile_at(history, iat_ms)
            carried = scenario.claims_of(index)
            fields = {
                name: value
                for name, value in profile.clerk_fields().items()
                if name == "email" or CLAIM_OF_FIELD[name] in carried
            }
            claims = session_claims(
                user_id,
                **fields,
                issuer=ISSUER,
                issued_at=iat_ms // 1000,
                lifetime_seconds=int(time.time()) - iat_ms // 1000 + 600,
            )
            token = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})
            response = authorize_bearer(module, webhook.context, token)
            assert isinstance(response["isAuthorized"], bool)
            REPORT["authorizer syncs mixed into convergence"] += 1
        if first_writer is None and read_item(TABLE, user_id) is not None:
            first_writer = writer
    final = _stored_then_forget([user_id])[user_id]
    check_projection(final, scenario, delta)
    if any(carried != OPTIONAL_CLAIMS for carried in scenario.token_claims):
        REPORT["three-writer examples with partial tokens"] += 1
    if first_writer == "token" and final is not None and "createdAt" in final:
        REPORT["users first stored by the authorizer that got createdAt"] += 1


# Two versions; the second changes the email (so a token carrying it must write) and clears the image.
_TWO_VERSIONS = History(
    [T_MIN, T_MIN + 10**6],
    [
        Profile("ada@example.com", "Ada", "Lovelace", "https://img.clerk.com/ada"),
        Profile("ada@example.org", "Ada", "Lovelace-King", None),
    ],
    None,
)
# The must-show cases, always run: a token with only email after a webhook leaves every attribute; a
# row first written by such a token is filled by the older Clerk record.
PARTIAL_TOKEN_AFTER_A_WEBHOOK = ThreeWriterScenario(
    _TWO_VERSIONS, [0], [], [2 * 10**6], [("webhook", 0), ("token", 0)], [frozenset()]
)
PARTIAL_TOKEN_BEFORE_AN_OLDER_WEBHOOK = ThreeWriterScenario(
    _TWO_VERSIONS, [0], [], [2 * 10**6], [("token", 0), ("webhook", 0)], [frozenset()]
)


@pytest.fixture
def authorizer(pem_authorizer: ModuleType, key: SigningKey) -> tuple[ModuleType, SigningKey]:
    return pem_authorizer, key


def _shifted(history: History, delta: int) -> History:
    deleted_at = None if history.deleted_at is None else history.deleted_at + delta
    return History([t + delta for t in history.times], history.profiles, deleted_at)


@pytest.mark.usefixtures("quiet_logs")
def test_webhook_reconcile_and_authorizer_writes_converge_in_any_order(
    webhook: WebhookDriver, authorizer: tuple[ModuleType, SigningKey]
) -> None:
    """Contract §3 "Three writers, one outcome": any interleaving of webhook deliveries (some lost,
    some repeated), reconciliation runs (with stale snapshots) and token syncs ends in the same
    user-visible item: tombstone if deleted; else createdAt once Clerk's record arrived, and the
    profile of the newest of (Clerk record, token)."""
    examples = 0

    @budget(THREE_WRITER_EXAMPLES)
    @given(three_writer_scenarios())
    @example(PARTIAL_TOKEN_AFTER_A_WEBHOOK)
    @example(PARTIAL_TOKEN_BEFORE_AN_OLDER_WEBHOOK)
    def converges(scenario: ThreeWriterScenario) -> None:
        nonlocal examples
        examples += 1
        check_three_writers(webhook, authorizer, scenario)

    converges()
    REPORT["convergence examples"] += examples
    REPORT["three-writer convergence examples"] += examples
    assert examples >= THREE_WRITER_EXAMPLES
