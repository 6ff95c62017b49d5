"""The authorizer Lambda end to end on moto: three event formats, denials, compare-first sync, metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.helpers import (
    REPO_ROOT,
    FakeLambdaContext,
    LogCapture,
    bearer_authorizer_event,
    docs_context,
    metric_counts,
)
from tests.jwks_server import JwksServer
from tests.session_tokens import (
    ISSUER,
    ORIGIN,
    USER_ID,
    ada_claims,
    alg_none,
    hs256_with_public_pem,
    trust_pem,
)
from usersync.api.authorizer import Authorizer, Unauthorized
from usersync.clerk.tokens import TokenVerifier, load_public_key
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.metrics import SyncSource
from usersync.store.records import UserRecord
from usersync.store.users import UserRepository
from usersync.sync.users import UserCache
from usersync_dev.apigw import (
    http_api_authorizer_event,
    method_arn,
    rest_request_authorizer_event,
    rest_token_authorizer_event,
)
from usersync_dev.clerk import SigningKey, clerk_documented_claims, mint_token
from usersync_dev.devstate import DevSecrets
from usersync_dev.runtime import TemplateValues, function_specs, local_parameters

TABLE = "usersync-test-users"
API_WILDCARD = "arn:aws:execute-api:us-east-1:123456789012:localapi01/prod/*/*"


def token(key: SigningKey, **overrides: Any) -> str:
    """Ada's session token signed by `key` (`key` the fixture is tests/conftest.py's)."""
    return mint_token(key, ada_claims(**overrides))


def context_for(tok: str) -> dict[str, str]:
    import jwt

    claims = jwt.decode(tok, options={"verify_signature": False})
    return {"userId": USER_ID, "email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"} | {
        "sessionId": claims["sid"]
    }


class CallCounter:
    """Counts DynamoDB API calls the handler's client makes (botocore event hooks: AWS, not our code)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._client = dynamodb_client()
        self._client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def reset(self) -> None:
        self.calls.clear()


class AuthorizerClient:
    def __init__(self, loader: Callable[[str], ModuleType], context: FakeLambdaContext) -> None:
        self._loader = loader
        self.context = context
        self.module = loader("authorizer")

    def cold_start(self) -> None:
        self.module = self._loader("authorizer")

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.module.lambda_handler(event, self.context)
        return response

    def http(self, tok: str | None, **kwargs: Any) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {tok}"} if tok is not None else {}
        return self(http_api_authorizer_event("GET", "/me", headers=headers, **kwargs))


@pytest.fixture
def pem_env(key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    trust_pem(monkeypatch, key, authorized_parties=ORIGIN)


@pytest.fixture
def start_authorizer(
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> Callable[[], AuthorizerClient]:
    """Cold-starts the authorizer on the moto table, configured by the environment set before the call."""
    return lambda: AuthorizerClient(function_loader, lambda_context)


@pytest.fixture
def authorizer(
    pem_env: None,  # noqa: ARG001 - fixture wanted for its side effect
    start_authorizer: Callable[[], AuthorizerClient],
) -> AuthorizerClient:
    return start_authorizer()


@pytest.fixture
def calls(authorizer: AuthorizerClient) -> CallCounter:  # noqa: ARG001 - fixture wanted for its side effect
    return CallCounter()


def stored(user_id: str = USER_ID) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table(TABLE)
    item: dict[str, Any] | None = table.get_item(Key={"userId": user_id}, ConsistentRead=True).get("Item")
    return item


def repository() -> UserRepository:
    return UserRepository(dynamodb_client(), TABLE)


def allow_policy(principal: str, context: dict[str, str]) -> dict[str, Any]:
    """A REST authorizer's answer allowing `principal` on the whole API, with `context`."""
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": API_WILDCARD}],
        },
        "context": context,
    }


# ------------------------------------------------------------------------------------ allowed


def test_http_api_bearer_allows_with_the_exact_context(authorizer: AuthorizerClient, key: SigningKey) -> None:
    tok = token(key)
    assert authorizer.http(tok) == {"isAuthorized": True, "context": context_for(tok)}


def test_http_api_session_cookie_allows(authorizer: AuthorizerClient, key: SigningKey) -> None:
    tok = token(key, imageUrl="https://img.clerk.com/ada.png")
    response = authorizer(
        http_api_authorizer_event("GET", "/me", cookies=["theme=dark", f"__session={tok}", "__client_uat=1"])
    )
    assert response == {
        "isAuthorized": True,
        "context": context_for(tok) | {"imageUrl": "https://img.clerk.com/ada.png"},
    }


@pytest.mark.parametrize("header", ["bearer {}", "BEARER   {}  ", "  Bearer\t{}", "{}"])
def test_bearer_scheme_is_case_insensitive_and_space_tolerant(
    authorizer: AuthorizerClient, key: SigningKey, header: str
) -> None:
    tok = token(key)
    event = http_api_authorizer_event("GET", "/me", headers={"Authorization": header.format(tok)})
    assert authorizer(event)["isAuthorized"] is True


def test_rest_token_event_gets_an_allow_policy_on_the_whole_api(
    authorizer: AuthorizerClient, key: SigningKey
) -> None:
    tok = token(key)
    assert authorizer(rest_token_authorizer_event(f"Bearer {tok}", "GET", "/me")) == allow_policy(
        USER_ID, context_for(tok)
    )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda t: {"Authorization": f"Bearer {t}"}, id="authorization"),
        pytest.param(lambda t: {"AUTHORIZATION": f"bearer {t}"}, id="upper-case-name"),
        pytest.param(lambda t: {"Cookie": f"a=1; __session={t}; b=2"}, id="cookie"),
        # A pair without "=" is ignored; of two cookies of one name the first counts (RFC 6265 §5.4: the
        # more specific path comes first), so a later forged __session cannot displace the real one.
        pytest.param(lambda t: {"Cookie": f"flag; __session={t}; __session=forged"}, id="first-cookie"),
        pytest.param(
            lambda t: {"Authorization": "Basic dXNlcjpwYXNz", "cookie": f"__session={t}"}, id="fallback"
        ),
    ],
)
def test_rest_request_event_gets_an_allow_policy(
    authorizer: AuthorizerClient, key: SigningKey, headers: Callable[[str], dict[str, str]]
) -> None:
    tok = token(key)
    response = authorizer(rest_request_authorizer_event("POST", "/orders/42", headers=headers(tok)))
    assert response == allow_policy(USER_ID, context_for(tok))


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a.b.c extra", "Token {}"])
def test_other_schemes_are_not_a_token(authorizer: AuthorizerClient, key: SigningKey, header: str) -> None:
    event = http_api_authorizer_event("GET", "/me", headers={"Authorization": header.format(token(key))})
    assert authorizer(event) == {"isAuthorized": False}


def test_authorization_header_wins_over_the_cookie(authorizer: AuthorizerClient, key: SigningKey) -> None:
    good, bad = token(key), token(key, iss="https://evil.example")
    event = http_api_authorizer_event(
        "GET", "/me", headers={"authorization": f"Bearer {good}"}, cookies=[f"__session={bad}"]
    )
    assert authorizer(event)["isAuthorized"] is True


def test_allowed_from_jwks_including_a_rotated_key(
    key: SigningKey, monkeypatch: pytest.MonkeyPatch, start_authorizer: Callable[[], AuthorizerClient]
) -> None:
    rotated = SigningKey.generate("ins_rotated")
    with JwksServer(key) as jwks:
        monkeypatch.delenv("CLERK_JWT_KEY", raising=False)
        monkeypatch.setenv("CLERK_JWKS_URL", jwks.url)
        monkeypatch.setenv("CLERK_ISSUER", ISSUER)
        client = start_authorizer()
        assert jwks.request_count == 0  # nothing fetched at cold start

        first = token(key)
        assert client.http(first) == {"isAuthorized": True, "context": context_for(first)}
        jwks.serve_keys(key, rotated)
        second = token(rotated)
        assert client.http(second) == {"isAuthorized": True, "context": context_for(second)}
        assert jwks.request_count == 2

        jwks.down()
        client.cold_start()  # a new container cannot fetch keys: fail closed
        assert client.http(token(key)) == {"isAuthorized": False}


# ------------------------------------------------------------------------------------ denied


OTHER_KEY = SigningKey.generate("ins_other")

DENIED: list[tuple[str, Callable[[SigningKey], str | None], str]] = [
    ("no token", lambda _k: None, "no_token"),
    ("garbage", lambda _k: "garbage", "malformed"),
    ("alg none", lambda _k: alg_none(ada_claims()), "bad_algorithm"),
    ("HS256 with public PEM", lambda k: hs256_with_public_pem(k, ada_claims()), "bad_algorithm"),
    ("another RSA key", lambda _k: token(OTHER_KEY), "bad_signature"),
    (
        "expired",
        lambda k: token(k, iat=int(time.time()) - 120, nbf=int(time.time()) - 120, exp=int(time.time()) - 60),
        "expired",
    ),
    ("nbf in future", lambda k: token(k, nbf=int(time.time()) + 60), "not_yet_valid"),
    ("wrong iss", lambda k: token(k, iss="https://evil.example"), "wrong_issuer"),
    ("azp not allowed", lambda k: token(k, azp="https://evil.example"), "wrong_azp"),
    ("missing email", lambda k: token(k, email=None), "missing_email"),
    ("missing sub", lambda k: token(k, sub=None), "missing_claim"),
    ("missing exp", lambda k: token(k, exp=None), "missing_claim"),
]


@pytest.mark.parametrize(("make", "reason"), [(m, r) for _, m, r in DENIED], ids=[n for n, _, _ in DENIED])
def test_denied_http_api(
    authorizer: AuthorizerClient,
    calls: CallCounter,
    key: SigningKey,
    capsys: pytest.CaptureFixture[str],
    logs: LogCapture,
    make: Callable[[SigningKey], str | None],
    reason: str,
) -> None:
    tok = make(key)
    assert authorizer.http(tok) == {"isAuthorized": False}

    counts = metric_counts(capsys.readouterr().out, "authorizer")
    assert counts == Counter({"AuthorizerDenied": 1})
    denials = [r for r in logs.records if r.get("message") == "authorizer denied"]
    assert [d["reason"] for d in denials] == [reason]
    for part in (tok or "").split("."):
        if len(part) > 8:  # no part of the token (header, claims, signature) is logged
            assert part not in logs.text
    assert calls.calls == Counter()  # a denied token never touches the table
    assert stored() is None


def test_denied_rest_without_a_caller_raises_unauthorized_and_still_counts(
    authorizer: AuthorizerClient, capsys: pytest.CaptureFixture[str], logs: LogCapture
) -> None:
    with pytest.raises(Unauthorized, match=r"^Unauthorized$"):
        authorizer(rest_token_authorizer_event(f"Bearer {token(OTHER_KEY)}"))
    with pytest.raises(Unauthorized, match=r"^Unauthorized$"):
        authorizer(rest_request_authorizer_event("GET", "/me", headers={}))

    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter({"AuthorizerDenied": 2})
    assert [r["reason"] for r in logs.records if r.get("message") == "authorizer denied"] == [
        "bad_signature",
        "no_token",
    ]


def test_soft_deleted_user_is_denied_in_every_format(
    authorizer: AuthorizerClient, key: SigningKey, capsys: pytest.CaptureFixture[str], logs: LogCapture
) -> None:
    repository().save(UserRecord.tombstone(USER_ID, deleted_at=int(time.time() * 1000) - 5000))
    tombstone = stored()

    assert authorizer.http(token(key)) == {"isAuthorized": False}
    assert authorizer(rest_token_authorizer_event(f"Bearer {token(key)}", "DELETE", "/me")) == {
        "principalId": USER_ID,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": method_arn("DELETE", "/me")}
            ],
        },
    }
    assert stored() == tombstone  # never resurrected
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter({"AuthorizerDenied": 2})
    denials = [r for r in logs.records if r.get("message") == "authorizer denied"]
    assert [(d["reason"], d["userId"]) for d in denials] == [("user_deleted", USER_ID)] * 2


# ------------------------------------------------------------------------------------ compare-first sync


def test_first_request_writes_the_user_from_the_claims(
    authorizer: AuthorizerClient, key: SigningKey, calls: CallCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    iat = int(time.time()) - 1
    authorizer.http(token(key, iat=iat, imageUrl="https://img.clerk.com/ada.png"))

    item = stored()
    assert item is not None
    assert {k: v for k, v in item.items() if k != "syncedAt"} == {
        "userId": USER_ID,
        "email": "ada@example.com",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "imageUrl": "https://img.clerk.com/ada.png",
        "updatedAt": iat * 1000,
        "source": "authorizer",
        "tokenClaims": {"email", "firstName", "lastName", "imageUrl"},  # what the token's claims set
    }
    assert calls.calls == Counter({"GetItem": 1, "UpdateItem": 1})
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter({"SyncAttempts": 1})


def test_identical_requests_perform_no_write(
    authorizer: AuthorizerClient, key: SigningKey, calls: CallCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    authorizer.http(token(key, iat=int(time.time()) - 2))
    first = stored()
    calls.reset()
    capsys.readouterr()

    assert authorizer.http(token(key))["isAuthorized"] is True  # a later token, same profile
    assert calls.calls == Counter()  # served from the container cache: no read, no write

    authorizer.cold_start()  # a new container: one read, still no write
    assert authorizer.http(token(key))["isAuthorized"] is True
    assert calls.calls == Counter({"GetItem": 1})
    assert stored() == first
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter()  # a check is not an attempt


def test_changed_name_is_written_and_created_at_is_kept(
    authorizer: AuthorizerClient, key: SigningKey, calls: CallCounter
) -> None:
    now = int(time.time())
    webhook_record = UserRecord(
        user_id=USER_ID,
        email="ada@example.com",
        first_name="Ada",
        last_name="Lovelace",
        created_at=1_700_000_000_000,
        updated_at=(now - 3600) * 1000,
        source=SyncSource.WEBHOOK,
        last_event_id="msg_1",
    )
    repository().save(webhook_record)
    calls.reset()
    authorizer.http(token(key, iat=now - 10))
    assert calls.calls["PutItem"] + calls.calls["UpdateItem"] == 0

    authorizer.http(token(key, iat=now, lastName="King"))
    item = stored()
    assert item is not None
    assert (item["lastName"], item["updatedAt"], item["createdAt"], item["source"]) == (
        "King",
        now * 1000,
        1_700_000_000_000,
        "authorizer",
    )
    # The authorizer's UpdateItem writes only the profile and its bookkeeping: createdAt and the
    # webhook's lastEventId stay.
    assert item["lastEventId"] == "msg_1"
    assert calls.calls["UpdateItem"] == 1
    assert calls.calls["PutItem"] == 0


def test_token_older_than_the_stored_update_does_not_overwrite(
    authorizer: AuthorizerClient, key: SigningKey, calls: CallCounter, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time())
    repository().save(
        UserRecord(
            user_id=USER_ID,
            email="new@example.com",
            first_name="Ada",
            updated_at=(now + 30) * 1000,  # the webhook wrote after this token was issued
            source=SyncSource.WEBHOOK,
        )
    )
    before = stored()
    calls.reset()

    assert authorizer.http(token(key, iat=now))["isAuthorized"] is True
    assert stored() == before
    assert calls.calls["PutItem"] + calls.calls["UpdateItem"] == 0
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter()


def test_deletion_after_caching_is_enforced_on_the_next_write(
    authorizer: AuthorizerClient, key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time())
    authorizer.http(token(key, iat=now - 20))  # cached as live in this container
    repository().save(UserRecord.tombstone(USER_ID, deleted_at=(now - 5) * 1000))
    tombstone = stored()
    capsys.readouterr()

    assert authorizer.http(token(key, iat=now, firstName="Augusta")) == {"isAuthorized": False}
    assert stored() == tombstone  # the conditional put refused to resurrect it
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter(
        {"SyncAttempts": 1, "SyncStale": 1, "AuthorizerDenied": 1}
    )


def throttle(operation: str) -> Callable[..., Any]:
    """A botocore hook answering `operation` as a throttled DynamoDB would (the AWS side, not our code)."""

    class _Http:
        status_code = 400

    def hook(model: Any, **_: Any) -> Any:
        if model.name == operation:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            return _Http(), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    return hook


def test_put_failure_still_allows_and_emits_the_failure_metric(
    authorizer: AuthorizerClient, key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    dynamodb_client().meta.events.register_first("before-call.dynamodb", throttle("UpdateItem"))
    tok = token(key)

    assert authorizer.http(tok) == {"isAuthorized": True, "context": context_for(tok)}
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter(
        {"SyncAttempts": 1, "SyncFailures": 1}
    )
    assert stored() is None


def test_read_failure_falls_through_to_the_conditional_write(
    authorizer: AuthorizerClient, key: SigningKey, capsys: pytest.CaptureFixture[str], logs: LogCapture
) -> None:
    dynamodb_client().meta.events.register_first("before-call.dynamodb", throttle("GetItem"))

    assert authorizer.http(token(key))["isAuthorized"] is True
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter({"SyncAttempts": 1})
    item = stored()
    assert item is not None
    assert item["email"] == "ada@example.com"
    assert any(r["message"].startswith("stored user read failed") for r in logs.records)


def test_table_gone_still_allows_and_emits_the_failure_metric(
    authorizer: AuthorizerClient, key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    dynamodb_client().delete_table(TableName=TABLE)
    assert authorizer.http(token(key))["isAuthorized"] is True
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter(
        {"SyncAttempts": 1, "SyncFailures": 1}
    )


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_user_cache_expires_after_its_ttl_and_stays_bounded() -> None:
    clock = ManualClock()
    cache = UserCache(ttl_seconds=60, max_entries=2, clock=clock)
    record = UserRecord(user_id=USER_ID, email="a@b.c", updated_at=1, source=SyncSource.AUTHORIZER)
    cache.put(USER_ID, record)
    cache.put("user_missing", None)

    assert cache.get(USER_ID) == (True, record)
    assert cache.get("user_missing") == (True, None)  # "not stored" is cached too
    assert cache.get("user_other") == (False, None)

    cache.put("user_third", None)  # full: the oldest entry goes
    assert cache.get(USER_ID) == (False, None)

    clock.now += 60
    assert cache.get("user_third") == (False, None)


def test_a_warm_container_rereads_after_the_cache_ttl(
    authorizer: AuthorizerClient, key: SigningKey, calls: CallCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    verifier = TokenVerifier(public_key=load_public_key(key.public_pem()), issuer=ISSUER)
    # The handler's per-container Authorizer, rebuilt with a clock the test moves.
    rebuilt = Authorizer(verifier, repository(), UserCache(ttl_seconds=60, clock=clock))
    monkeypatch.setattr(authorizer.module, "authorizer", rebuilt)
    authorizer.http(token(key))
    authorizer.http(token(key))
    assert calls.calls == Counter({"GetItem": 1, "UpdateItem": 1})
    clock.now += 61
    authorizer.http(token(key))
    assert calls.calls == Counter({"GetItem": 2, "UpdateItem": 1})


# ------------------------------------------------------------------------------------ session token v2

DOCS_ISSUER, DOCS_ORIGIN = "https://clerk.your-site.com", "https://example.com"


def documented(key: SigningKey, version: int, **overrides: Any) -> str:
    return mint_token(key, clerk_documented_claims(version, int(time.time()), **overrides))


@pytest.fixture
def docs_env(
    pem_env: None,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issuer and origin of Clerk's documented example (the authorizer checks both)."""
    monkeypatch.setenv("CLERK_ISSUER", DOCS_ISSUER)
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", DOCS_ORIGIN)


@pytest.mark.parametrize("version", [2, 1], ids=["v2", "v1"])
@pytest.mark.usefixtures("docs_env")
def test_clerk_documented_tokens_are_allowed_with_exactly_the_contract_context_in_every_format(
    authorizer: AuthorizerClient, key: SigningKey, version: int
) -> None:
    tok = documented(key, version)
    expected = docs_context(version)
    assert authorizer.http(tok) == {"isAuthorized": True, "context": expected}
    assert authorizer(rest_token_authorizer_event(f"Bearer {tok}")) == allow_policy("user_123", expected)
    rest_request = rest_request_authorizer_event("GET", "/me", headers={"Cookie": f"__session={tok}"})
    assert authorizer(rest_request) == allow_policy("user_123", expected)


def pending_in_each_format(tok: str) -> list[dict[str, Any]]:
    """The same token in the three event formats the authorizer accepts."""
    return [
        bearer_authorizer_event(tok),
        rest_token_authorizer_event(f"Bearer {tok}"),
        rest_request_authorizer_event("GET", "/me", headers={"Authorization": f"Bearer {tok}"}),
    ]


def answer(authorizer: AuthorizerClient, event: dict[str, Any]) -> dict[str, Any] | str:
    """The authorizer's response, or "401" when it raises `Unauthorized` (REST's 401)."""
    try:
        return authorizer(event)
    except Unauthorized:
        return "401"


@pytest.mark.usefixtures("docs_env")
def test_pending_session_is_denied_in_every_format_logged_and_counted(
    authorizer: AuthorizerClient,
    calls: CallCounter,
    key: SigningKey,
    capsys: pytest.CaptureFixture[str],
    logs: LogCapture,
) -> None:
    tok = documented(key, 2, sts="pending")
    answers = [answer(authorizer, event) for event in pending_in_each_format(tok)]

    # Signed out, as Clerk's SDKs treat a pending session: HTTP API 403, REST 401 like no token.
    assert answers == [{"isAuthorized": False}, "401", "401"]
    denials = [r for r in logs.records if r.get("message") == "authorizer denied"]
    assert [(d["reason"], d["userId"], d["eventFormat"]) for d in denials] == [
        ("session_pending", "user_123", "http-api"),
        ("session_pending", "user_123", "rest-token"),
        ("session_pending", "user_123", "rest-request"),
    ]
    assert metric_counts(capsys.readouterr().out, "authorizer") == Counter({"AuthorizerDenied": 3})
    assert calls.calls == Counter()
    assert stored("user_123") is None  # no sync for a signed-out session
    assert tok.split(".")[1] not in logs.text


@pytest.mark.usefixtures("docs_env")
def test_pending_sessions_pass_when_the_template_parameter_allows_them(
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    start_authorizer: Callable[[], AuthorizerClient],
) -> None:
    secrets = DevSecrets(signing_key=key, webhook_secret="whsec_unused")

    def authorizer_environment(overrides: dict[str, str]) -> dict[str, str]:
        values = TemplateValues(local_parameters(secrets, jwks_url=None, overrides=overrides))
        return function_specs(values, secrets)["AuthorizerFunction"].environment

    assert authorizer_environment({})["CLERK_ALLOW_PENDING_SESSIONS"] == "false"
    # ClerkAllowPendingSessions=true in template.yaml reaches the function as this variable:
    allowed = authorizer_environment({"ClerkAllowPendingSessions": "true"})["CLERK_ALLOW_PENDING_SESSIONS"]
    monkeypatch.setenv("CLERK_ALLOW_PENDING_SESSIONS", allowed)
    client = start_authorizer()

    tok = documented(key, 2, sts="pending")
    answers = [answer(client, event) for event in pending_in_each_format(tok)]
    assert answers == [
        {"isAuthorized": True, "context": docs_context(2)},
        allow_policy("user_123", docs_context(2)),
        allow_policy("user_123", docs_context(2)),
    ]
    item = stored("user_123")
    assert item is not None
    assert item["email"] == "ada@example.com"


@pytest.mark.usefixtures("pem_env")
def test_jwt_template_tokens_pass_only_when_the_template_parameter_accepts_them(
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    start_authorizer: Callable[[], AuthorizerClient],
) -> None:
    """ClerkAcceptJwtTemplates (default false) reaches the authorizer as CLERK_ACCEPT_JWT_TEMPLATES."""
    secrets = DevSecrets(signing_key=key, webhook_secret="whsec_unused")

    def accept_templates(overrides: dict[str, str]) -> str:
        values = TemplateValues(local_parameters(secrets, jwks_url=None, overrides=overrides))
        return function_specs(values, secrets)["AuthorizerFunction"].environment["CLERK_ACCEPT_JWT_TEMPLATES"]

    template_token = mint_token(key, ada_claims(sid=None), headers={"cat": "cl_B7d4PD222AAA"})
    event = http_api_authorizer_event("GET", "/me", headers={"authorization": f"Bearer {template_token}"})
    for overrides, allowed in (({}, False), ({"ClerkAcceptJwtTemplates": "true"}, True)):
        monkeypatch.setenv("CLERK_ACCEPT_JWT_TEMPLATES", accept_templates(overrides))
        assert start_authorizer()(event)["isAuthorized"] is allowed


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"o": "org_123"}, id="o-a-string"),
        pytest.param({"o": {"slg": "org-slug", "rol": "admin"}}, id="o-without-id"),
        pytest.param({"act": {"iss": "https://dashboard.clerk.com"}}, id="act-without-sub"),
    ],
)
@pytest.mark.usefixtures("docs_env")
def test_malformed_organization_or_actor_claims_deny_with_invalid_claims(
    authorizer: AuthorizerClient,
    key: SigningKey,
    logs: LogCapture,
    overrides: dict[str, Any],
) -> None:
    assert authorizer.http(documented(key, 2, **overrides)) == {"isAuthorized": False}
    with pytest.raises(Unauthorized):
        authorizer(rest_token_authorizer_event(f"Bearer {documented(key, 2, **overrides)}"))
    denials = [r for r in logs.records if r.get("message") == "authorizer denied"]
    assert [d["reason"] for d in denials] == ["invalid_claims"] * 2
    assert stored("user_123") is None


@pytest.mark.usefixtures("docs_env")
def test_organization_claims_are_not_written_and_switching_organization_costs_no_write(
    authorizer: AuthorizerClient, key: SigningKey, calls: CallCounter
) -> None:
    iat = int(time.time()) - 2
    authorizer.http(mint_token(key, clerk_documented_claims(2, iat)))
    item = stored("user_123")
    assert item is not None
    assert set(item) == {
        "userId",
        "email",
        "firstName",
        "lastName",
        "updatedAt",
        "syncedAt",
        "source",
        "tokenClaims",
    }
    calls.reset()

    # The same user, now in another organization, impersonated by nobody: the profile is unchanged.
    other_org = documented(key, 2, o={"id": "org_999", "slg": "other", "rol": "member"}, act=None)
    authorizer.cold_start()  # even with a fresh container (one read), nothing is written
    assert authorizer.http(other_org)["context"]["orgId"] == "org_999"
    assert calls.calls == Counter({"GetItem": 1})
    assert stored("user_123") == item


def test_the_sample_organization_event_is_allowed_with_the_organization(
    key: SigningKey, monkeypatch: pytest.MonkeyPatch, start_authorizer: Callable[[], AuthorizerClient]
) -> None:
    """`make events` writes authorizer-http-request-organization.json: a v2 token with `o`."""
    from usersync_dev.devstate import DEV_AUTHORIZED_PARTY, DEV_ISSUER
    from usersync_dev.sample_events import sample_events

    trust_pem(monkeypatch, key, issuer=DEV_ISSUER, authorized_parties=DEV_AUTHORIZED_PARTY)
    events = sample_events(DevSecrets(signing_key=key, webhook_secret="whsec_unused"))
    client = start_authorizer()

    response = client(events["authorizer-http-request-organization.json"])
    assert response["isAuthorized"] is True
    assert {name: response["context"][name] for name in ("orgId", "orgSlug", "orgRole")} == {
        "orgId": "org_2dev0analytical0engines00",
        "orgSlug": "analytical-engines",
        "orgRole": "org:admin",
    }
    assert "orgId" not in client(events["authorizer-http-request.json"])["context"]


# ------------------------------------------------------------------------------------ cold start


def test_importing_the_authorizer_does_not_import_the_webhook_verifier(key: SigningKey) -> None:
    app_path = str(REPO_ROOT / "functions" / "authorizer" / "app.py")
    watched = ("svix", "standardwebhooks", "usersync.api.webhook", "jwt")
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('app', {app_path!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert callable(module.lambda_handler)\n"
        f"print(sorted(m for m in {watched!r} if m in sys.modules))\n"
    )
    env = {
        **os.environ,
        "USERS_TABLE_NAME": TABLE,
        "CLERK_JWT_KEY": key.public_pem(),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("CLERK_JWKS_URL", None)
    result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "['jwt']"
