"""Session-token verification: PEM and JWKS keys, every forgery and claim failure, JWKS caching."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.helpers import DOCS_AUTHORIZATION_CONTEXT, DOCS_CONTEXT, docs_context
from tests.jwks_server import JwksServer
from tests.session_tokens import (
    ISSUER,
    ORIGIN,
    USER_ID,
    ada_claims,
    alg_none,
    b64url,
    hs256_with_public_pem,
    huge_integer,
    nested_json,
    signed_raw_token,
    unsigned_token,
)
from usersync.clerk.jwks import JwksKeySource
from usersync.clerk.session_claims import SessionClaims, parse_claims
from usersync.clerk.token_errors import DenyReason, TokenError
from usersync.clerk.tokens import MAX_TOKEN_BYTES, TokenVerifier, load_public_key
from usersync.runtime.settings import AuthorizerSettings, ConfigurationError
from usersync.sync.users import record_from_claims
from usersync_dev.clerk import SigningKey, clerk_documented_claims, mint_token

claims = ada_claims  # the token tests' default claims; `key` is tests/conftest.py's


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate("ins_key_two")


def without(*names: str) -> dict[str, Any]:
    return {name: value for name, value in claims().items() if name not in names}


def pem_verifier(key: SigningKey, **kwargs: Any) -> TokenVerifier:
    options: dict[str, Any] = {"issuer": ISSUER, "authorized_parties": (ORIGIN,)}
    options.update(kwargs)
    return TokenVerifier(public_key=load_public_key(key.public_pem()), **options)


def reason_of(verifier: TokenVerifier, token: str | None) -> DenyReason:
    with pytest.raises(TokenError) as caught:
        verifier.verify(token)
    return caught.value.reason


# ---------------------------------------------------------------------------------------- accepted


def test_valid_token_from_pem_yields_the_claims(key: SigningKey) -> None:
    payload = claims(imageUrl="https://img.clerk.com/ada.png")
    verified = pem_verifier(key).verify(mint_token(key, payload))

    assert verified == SessionClaims(
        sub=USER_ID,
        email="ada@example.com",
        first_name="Ada",
        last_name="Lovelace",
        image_url="https://img.clerk.com/ada.png",
        sid=payload["sid"],
        iat=payload["iat"],
        v=2,
        sts="active",
    )
    assert verified.context() == {
        "userId": USER_ID,
        "email": "ada@example.com",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "imageUrl": "https://img.clerk.com/ada.png",
        "sessionId": payload["sid"],
    }


def test_absent_and_blank_optional_claims_are_omitted_from_the_context(key: SigningKey) -> None:
    token = mint_token(key, without("firstName", "lastName", "sid") | {"imageUrl": ""})
    verified = pem_verifier(key).verify(token)

    assert verified.context() == {"userId": USER_ID, "email": "ada@example.com"}
    assert record_from_claims(verified).to_attributes().keys() == {
        "userId",
        "email",
        "updatedAt",
        "syncedAt",
        "source",
    }


def test_token_record_is_ordered_by_iat_in_milliseconds(key: SigningKey) -> None:
    payload = claims()
    record = record_from_claims(pem_verifier(key).verify(mint_token(key, payload)))

    assert record.updated_at == payload["iat"] * 1000
    assert record.source is not None
    assert record.source.value == "authorizer"
    assert record.created_at is None


def test_issuer_and_azp_are_not_checked_when_not_configured(key: SigningKey) -> None:
    token = mint_token(key, claims(iss="https://elsewhere.example", azp="https://evil.example"))
    assert pem_verifier(key, issuer=None, authorized_parties=()).verify(token).sub == USER_ID


def test_exp_within_the_leeway_is_accepted(key: SigningKey) -> None:
    now = int(time.time())
    token = mint_token(key, claims(iat=now - 62, nbf=now - 62, exp=now - 2))
    assert pem_verifier(key).verify(token).sub == USER_ID


def test_settings_pem_with_escaped_newlines_is_accepted(key: SigningKey) -> None:
    settings = AuthorizerSettings.from_env(
        {
            "USERS_TABLE_NAME": "t",
            "CLERK_JWT_KEY": key.public_pem().replace("\n", "\\n"),
            "CLERK_ISSUER": ISSUER,
            "CLERK_AUTHORIZED_PARTIES": f"{ORIGIN}, https://app.example.com",
        }
    )
    verifier = TokenVerifier.from_settings(settings)
    assert verifier.verify(mint_token(key, claims(azp="https://app.example.com"))).sub == USER_ID


def test_a_key_that_is_not_a_pem_fails_the_cold_start() -> None:
    with pytest.raises(ConfigurationError, match="CLERK_JWT_KEY"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----")


# ---------------------------------------------------------------------------------------- denied


def now_s() -> int:
    return int(time.time())


DENIALS: list[tuple[str, Callable[[SigningKey, SigningKey], str | None], DenyReason]] = [
    ("no token", lambda _k, _o: None, DenyReason.NO_TOKEN),
    ("empty token", lambda _k, _o: "", DenyReason.NO_TOKEN),
    ("garbage", lambda _k, _o: "not-a-jwt", DenyReason.MALFORMED),
    ("garbage with dots", lambda _k, _o: "abc.def.ghi", DenyReason.MALFORMED),
    ("two segments", lambda k, _o: ".".join(mint_token(k, claims()).split(".")[:2]), DenyReason.MALFORMED),
    ("four segments", lambda k, _o: mint_token(k, claims()) + ".x", DenyReason.MALFORMED),
    ("header not an object", lambda _k, _o: b64url(b"[1]") + ".e30.c2ln", DenyReason.MALFORMED),
    ("non-ascii", lambda k, _o: "\u00e9" + mint_token(k, claims()), DenyReason.MALFORMED),
    (
        "alg none",
        lambda _k, _o: alg_none(claims()),
        DenyReason.BAD_ALGORITHM,
    ),
    ("HS256 with the public PEM", lambda k, _o: hs256_with_public_pem(k, claims()), DenyReason.BAD_ALGORITHM),
    ("another RSA key", lambda _k, o: mint_token(o, claims()), DenyReason.BAD_SIGNATURE),
    (
        "another RSA key, our kid",
        lambda k, o: mint_token(o, claims(), headers={"kid": k.kid}),
        DenyReason.BAD_SIGNATURE,
    ),
    (
        "tampered payload",
        lambda k, _o: (
            lambda t: (
                t.split(".")[0]
                + "."
                + b64url(json.dumps(claims(sub="user_x")).encode())
                + "."
                + t.split(".")[2]
            )
        )(mint_token(k, claims())),
        DenyReason.BAD_SIGNATURE,
    ),
    (
        "expired",
        lambda k, _o: mint_token(k, claims(iat=now_s() - 120, nbf=now_s() - 120, exp=now_s() - 60)),
        DenyReason.EXPIRED,
    ),
    ("nbf in the future", lambda k, _o: mint_token(k, claims(nbf=now_s() + 60)), DenyReason.NOT_YET_VALID),
    ("iat in the future", lambda k, _o: mint_token(k, claims(iat=now_s() + 60)), DenyReason.NOT_YET_VALID),
    ("wrong iss", lambda k, _o: mint_token(k, claims(iss="https://evil.example")), DenyReason.WRONG_ISSUER),
    ("no iss", lambda k, _o: mint_token(k, without("iss")), DenyReason.WRONG_ISSUER),
    (
        "azp not allowed",
        lambda k, _o: mint_token(k, claims(azp="https://evil.example")),
        DenyReason.WRONG_AZP,
    ),
    ("no azp", lambda k, _o: mint_token(k, without("azp")), DenyReason.WRONG_AZP),
    ("missing email", lambda k, _o: mint_token(k, without("email")), DenyReason.MISSING_EMAIL),
    ("empty email", lambda k, _o: mint_token(k, claims(email="")), DenyReason.MISSING_EMAIL),
    ("missing sub", lambda k, _o: mint_token(k, without("sub")), DenyReason.MISSING_CLAIM),
    ("missing exp", lambda k, _o: mint_token(k, without("exp")), DenyReason.MISSING_CLAIM),
    ("missing iat", lambda k, _o: mint_token(k, without("iat")), DenyReason.MISSING_CLAIM),
    (
        "audience we do not expect",
        lambda k, _o: mint_token(k, claims(aud="other-api")),
        DenyReason.WRONG_AUDIENCE,
    ),
    ("email not a string", lambda k, _o: mint_token(k, claims(email=["a@b.c"])), DenyReason.INVALID_CLAIMS),
    (
        "over 8 KiB",
        lambda k, _o: mint_token(k, claims(padding="x" * MAX_TOKEN_BYTES)),
        DenyReason.TOO_LARGE,
    ),
]


@pytest.mark.parametrize(
    ("token_factory", "reason"), [(f, r) for _, f, r in DENIALS], ids=[n for n, _, _ in DENIALS]
)
def test_denied_with_pem(
    key: SigningKey,
    other_key: SigningKey,
    token_factory: Callable[[SigningKey, SigningKey], str | None],
    reason: DenyReason,
) -> None:
    assert reason_of(pem_verifier(key), token_factory(key, other_key)) is reason


def test_pyjwt_would_refuse_the_hs256_forgery_even_without_our_header_check(key: SigningKey) -> None:
    """Defence in depth: the decode itself pins RS256."""
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(hs256_with_public_pem(key, claims()), key.public_pem(), algorithms=["RS256"])


# ---------------------------------------------------------------------------------------- JWKS


@pytest.fixture
def jwks(key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer(key) as server:
        yield server


class FakeClock:
    """Monotonic time the test advances; injected into the key source (not a mock of our code)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwks_verifier(url: str, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(jwks=JwksKeySource(url, **kwargs), issuer=ISSUER, authorized_parties=(ORIGIN,))


def test_valid_token_from_jwks_and_the_key_set_is_cached(key: SigningKey, jwks: JwksServer) -> None:
    verifier = jwks_verifier(jwks.url)

    assert verifier.verify(mint_token(key, claims())).sub == USER_ID
    assert verifier.verify(mint_token(key, claims(firstName="Augusta"))).first_name == "Augusta"
    assert jwks.request_count == 1


def test_settings_with_only_a_jwks_url_verify_through_it(key: SigningKey, jwks: JwksServer) -> None:
    settings = AuthorizerSettings.from_env({"USERS_TABLE_NAME": "t", "CLERK_JWKS_URL": jwks.url})
    assert TokenVerifier.from_settings(settings).verify(mint_token(key, claims())).sub == USER_ID
    assert jwks.request_count == 1


def test_key_rotation_is_picked_up_and_unknown_kids_refetch_at_most_once_per_5_seconds(
    key: SigningKey, other_key: SigningKey, jwks: JwksServer
) -> None:
    clock = FakeClock()
    verifier = jwks_verifier(jwks.url, clock=clock)
    assert verifier.verify(mint_token(key, claims())).sub == USER_ID
    assert jwks.request_count == 1

    jwks.serve_keys(key, other_key)  # Clerk rotates: the new kid appears in the JWKS
    assert verifier.verify(mint_token(other_key, claims())).sub == USER_ID
    assert jwks.request_count == 2

    stranger = SigningKey.generate("ins_unknown")
    assert reason_of(verifier, mint_token(stranger, claims())) is DenyReason.UNKNOWN_KEY
    assert reason_of(verifier, mint_token(stranger, claims())) is DenyReason.UNKNOWN_KEY
    assert jwks.request_count == 2  # inside the 5 s window: no refetch for a forged kid

    clock.now += 5.1
    assert reason_of(verifier, mint_token(stranger, claims())) is DenyReason.UNKNOWN_KEY
    assert jwks.request_count == 3  # the window passed: one refetch, then denied again


def test_forged_kids_cost_at_most_3_fetches_and_hold_back_no_real_rotation(
    key: SigningKey, other_key: SigningKey, jwks: JwksServer
) -> None:
    """40 forged kids (each a different name) arrive over 4 s; Clerk rotates meanwhile. Fetches stay
    bounded (the limit is for all kids, not per kid), and the real key is accepted 6 s after the flood
    began: no forged kid can hold a rotation back for longer than the 5 s window."""
    clock = FakeClock()
    verifier = jwks_verifier(jwks.url, clock=clock)
    forger = SigningKey.generate("ins_forger")
    start = clock.now
    for number in range(40):
        clock.now = start + number * 0.1
        forged = mint_token(forger, claims(), headers={"kid": f"ins_forged_{number}"})
        assert reason_of(verifier, forged) is DenyReason.UNKNOWN_KEY
        if number == 20:
            jwks.serve_keys(key, other_key)  # the real rotation, in the middle of the flood
    assert jwks.request_count <= 3

    clock.now = start + 6
    assert verifier.verify(mint_token(other_key, claims())).sub == USER_ID
    assert jwks.request_count <= 3


def test_a_rotation_is_never_held_back_more_than_5_seconds_by_forged_kids(
    key: SigningKey, other_key: SigningKey, jwks: JwksServer
) -> None:
    """Whatever kid uses a refetch, the refetch reloads the whole set: once the window allows one after
    the rotation, the real key is there, even if a forged kid's refetch got it."""
    clock = FakeClock()
    verifier = jwks_verifier(jwks.url, clock=clock)
    forger = SigningKey.generate("ins_forger")
    assert reason_of(verifier, mint_token(forger, claims(), headers={"kid": "ins_forged"})) is (
        DenyReason.UNKNOWN_KEY
    )
    jwks.serve_keys(key, other_key)
    clock.now += 1
    assert reason_of(verifier, mint_token(other_key, claims())) is DenyReason.UNKNOWN_KEY  # window closed
    clock.now += 4.5  # a forged kid arrives first once the window reopens, and uses the refetch
    assert reason_of(verifier, mint_token(forger, claims(), headers={"kid": "ins_forged_2"})) is (
        DenyReason.UNKNOWN_KEY
    )
    fetches = jwks.request_count
    assert verifier.verify(mint_token(other_key, claims())).sub == USER_ID  # from the forged kid's refetch
    assert jwks.request_count == fetches


def test_forged_headers_never_reach_the_network(
    key: SigningKey, other_key: SigningKey, jwks: JwksServer
) -> None:
    verifier = jwks_verifier(jwks.url)
    with JwksServer(other_key) as attacker:
        forged = mint_token(
            other_key, claims(), headers={"kid": key.kid, "jku": attacker.url, "x5u": attacker.url}
        )
        assert reason_of(verifier, forged) is DenyReason.BAD_SIGNATURE
        embedded = mint_token(other_key, claims(), headers={"kid": "ins_mine", "jwk": other_key.jwk()})
        assert reason_of(verifier, embedded) is DenyReason.UNKNOWN_KEY
        assert attacker.request_count == 0
    # Algorithm forgeries are refused from the header alone, before any key lookup.
    fresh = JwksServer(key)
    with fresh:
        verifier = jwks_verifier(fresh.url)
        assert reason_of(verifier, hs256_with_public_pem(key, claims())) is DenyReason.BAD_ALGORITHM
        assert (
            reason_of(verifier, unsigned_token({"alg": "none"}, claims()) + ".") is DenyReason.BAD_ALGORITHM
        )
        assert fresh.request_count == 0


def test_token_without_kid_is_denied_with_jwks(key: SigningKey, jwks: JwksServer) -> None:
    token = jwt.encode(claims(), key.private_pem(), algorithm="RS256")
    assert reason_of(jwks_verifier(jwks.url), token) is DenyReason.UNKNOWN_KEY


def test_jwks_server_down_denies(key: SigningKey, jwks: JwksServer) -> None:
    jwks.down()
    assert reason_of(jwks_verifier(jwks.url), mint_token(key, claims())) is DenyReason.JWKS_UNAVAILABLE


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda s: s.fail(503), id="http-503"),
        pytest.param(lambda s: s.serve_body(b"<html>not json</html>"), id="not-json"),
        pytest.param(lambda s: s.serve_jwks({"keys": []}), id="no-keys"),
        pytest.param(lambda s: s.serve_body(b"[1, 2]"), id="not-an-object"),
    ],
)
def test_broken_jwks_denies(
    key: SigningKey, jwks: JwksServer, breakage: Callable[[JwksServer], None]
) -> None:
    breakage(jwks)
    assert reason_of(jwks_verifier(jwks.url), mint_token(key, claims())) is DenyReason.JWKS_UNAVAILABLE
    assert jwks.request_count == 1


def test_slow_jwks_times_out_and_denies(key: SigningKey, jwks: JwksServer) -> None:
    jwks.slow(5.0)
    verifier = jwks_verifier(jwks.url, fetch_timeout=0.2)
    assert reason_of(verifier, mint_token(key, claims())) is DenyReason.JWKS_UNAVAILABLE


def test_jwks_recovers_after_an_outage(key: SigningKey, jwks: JwksServer) -> None:
    verifier = jwks_verifier(jwks.url)
    jwks.fail(503)
    assert reason_of(verifier, mint_token(key, claims())) is DenyReason.JWKS_UNAVAILABLE
    jwks.up()
    assert verifier.verify(mint_token(key, claims())).sub == USER_ID


def test_error_messages_never_contain_the_token(key: SigningKey, other_key: SigningKey) -> None:
    token = mint_token(other_key, claims())
    with pytest.raises(TokenError) as caught:
        pem_verifier(key).verify(token)
    assert str(caught.value) == "bad_signature"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# ---------------------------------------------------------------------------------------- session token v2


def clerk_docs_v2_example(**overrides: Any) -> dict[str, Any]:
    return clerk_documented_claims(2, now_s(), **overrides)


def clerk_docs_v1_example(**overrides: Any) -> dict[str, Any]:
    return clerk_documented_claims(1, now_s(), **overrides)


ORG_KEYS = {"orgId", "orgSlug", "orgRole"}


def docs_verifier(key: SigningKey, **kwargs: Any) -> TokenVerifier:
    return pem_verifier(
        key, issuer="https://clerk.your-site.com", authorized_parties=("https://example.com",), **kwargs
    )


@pytest.mark.parametrize("example", [clerk_docs_v2_example, clerk_docs_v1_example], ids=["v2", "v1"])
def test_clerk_documented_tokens_give_exactly_the_contract_context(
    key: SigningKey, example: Callable[..., dict[str, Any]]
) -> None:
    context = docs_verifier(key).verify(mint_token(key, example())).context()

    assert context == docs_context(2 if example is clerk_docs_v2_example else 1)
    assert all(isinstance(value, str) for value in context.values())


@pytest.mark.parametrize("example", [clerk_docs_v2_example, clerk_docs_v1_example], ids=["v2", "v1"])
def test_no_active_organization_gives_none_of_the_organization_keys(
    key: SigningKey, example: Callable[..., dict[str, Any]]
) -> None:
    payload = example(o=None, org_id=None, org_slug=None, org_role=None, org_permissions=None, act=None)
    context = docs_verifier(key).verify(mint_token(key, payload)).context()

    # `fea` and `pla` are the session's, not the organization's: they stay (v2 only)
    unchanged = {"features", "plan"} if example is clerk_docs_v2_example else set()
    assert context == {
        name: value for name, value in DOCS_CONTEXT.items() if name not in ORG_KEYS | {"actorId"}
    } | {name: value for name, value in DOCS_AUTHORIZATION_CONTEXT[2].items() if name in unchanged}


@pytest.mark.parametrize(
    ("version", "changes", "expected"),
    [
        pytest.param(2, {"o": {"id": "org_1"}}, {"orgId": "org_1"}, id="v2-id-only"),
        pytest.param(2, {"o": None}, {}, id="v2-o-null"),
        pytest.param(
            2,
            {"o": {"id": "org_1", "slg": "", "rol": "org:admin"}},
            {"orgId": "org_1", "orgRole": "org:admin"},
            id="v2-blank-slug-prefixed-role-not-doubled",
        ),
        pytest.param(
            1,
            {"org_role": "basic_member"},
            {"orgId": "org_123", "orgSlug": "org-slug", "orgRole": "org:basic_member"},
            id="v1-unprefixed-role-gains-the-prefix",
        ),
        pytest.param(1, {"org_id": None}, {}, id="v1-slug-and-role-without-id"),
        # Clerk's SDK reads `o` in a v2 token and `org_*` otherwise: a custom claim named like the
        # other version's never grants an organization or a role.
        pytest.param(
            2, {"o": None, "org_id": "org_evil", "org_role": "org:admin"}, {}, id="v2-ignores-org_*"
        ),
        pytest.param(1, {"org_id": None, "o": {"id": "org_evil", "rol": "admin"}}, {}, id="v1-ignores-o"),
        pytest.param(1, {"org_id": None, "o": "anything"}, {}, id="v1-ignores-malformed-o"),
    ],
)
def test_organization_claims_are_normalised_as_clerks_sdk_reports_them(
    key: SigningKey, version: int, changes: dict[str, Any], expected: dict[str, str]
) -> None:
    payload = clerk_documented_claims(version, now_s()) | changes  # None stays in the token as null
    context = docs_verifier(key).verify(mint_token(key, payload)).context()
    assert {name: value for name, value in context.items() if name in ORG_KEYS} == expected


def test_actor_claim_gives_actor_id_and_nothing_else_of_it(key: SigningKey) -> None:
    payload = clerk_docs_v2_example(o=None, act={"sub": "user_admin", "iss": "https://dashboard.clerk.com"})
    context = docs_verifier(key).verify(mint_token(key, payload)).context()
    assert context["actorId"] == "user_admin"
    assert context["userId"] == "user_123"
    assert context["sessionId"] == "sess_123"  # the impersonated session, not act.sid


MALFORMED = [
    pytest.param({"o": "org_123"}, id="o-a-string"),
    pytest.param({"o": ["org_123"]}, id="o-a-list"),
    pytest.param({"o": {}}, id="o-without-id"),
    pytest.param({"o": {"id": ""}}, id="o-empty-id"),
    pytest.param({"o": {"id": 123}}, id="o-id-a-number"),
    pytest.param({"o": {"id": "org_1", "rol": ["admin"]}}, id="o-role-a-list"),
    pytest.param({"o": {"id": "org_1", "slg": {"x": 1}}}, id="o-slug-an-object"),
    pytest.param({"act": "user_456"}, id="act-a-string"),
    pytest.param({"act": {}}, id="act-without-sub"),
    pytest.param({"act": {"sub": 456}}, id="act-sub-a-number"),
    pytest.param({"sts": 1}, id="sts-a-number"),
    pytest.param({"v": "2"}, id="v-a-string"),
    pytest.param({"v": True}, id="v-a-boolean"),
]


@pytest.mark.parametrize("overrides", MALFORMED)
def test_malformed_v2_claims_deny_with_invalid_claims(key: SigningKey, overrides: dict[str, Any]) -> None:
    token = mint_token(key, clerk_docs_v2_example(**overrides))
    assert reason_of(docs_verifier(key), token) is DenyReason.INVALID_CLAIMS


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"org_id": 123}, id="org_id-a-number"),
        pytest.param({"org_role": ["org:admin"]}, id="org_role-a-list"),
        pytest.param({"act": ["user_456"]}, id="act-a-list"),
    ],
)
def test_malformed_v1_claims_deny_with_invalid_claims(key: SigningKey, overrides: dict[str, Any]) -> None:
    token = mint_token(key, clerk_docs_v1_example(**overrides))
    assert reason_of(docs_verifier(key), token) is DenyReason.INVALID_CLAIMS


def test_pending_session_is_signed_out_unless_allowed(key: SigningKey) -> None:
    pending = mint_token(key, clerk_docs_v2_example(sts="pending"))  # the docs' own `sts` example

    with pytest.raises(TokenError) as caught:
        docs_verifier(key).verify(pending)
    assert caught.value.reason is DenyReason.SESSION_PENDING
    assert str(caught.value) == "session_pending"

    allowed = docs_verifier(key, allow_pending_sessions=True).verify(pending)
    assert allowed.session_pending
    assert allowed.context() == docs_context(2)


@pytest.mark.parametrize("status", [None, "active", ""], ids=["no-sts", "active", "blank"])
def test_a_session_without_pending_status_is_active(key: SigningKey, status: str | None) -> None:
    payload = clerk_docs_v2_example()
    if status is not None:
        payload["sts"] = status
    verified = docs_verifier(key).verify(mint_token(key, payload))
    assert not verified.session_pending
    assert verified.context() == docs_context(2)


def test_signature_and_claim_checks_come_before_the_session_status(
    key: SigningKey, other_key: SigningKey
) -> None:
    """A pending status is only believed from a token that is otherwise valid."""
    assert reason_of(docs_verifier(key), mint_token(other_key, clerk_docs_v2_example(sts="pending"))) is (
        DenyReason.BAD_SIGNATURE
    )
    assert reason_of(docs_verifier(key), mint_token(key, clerk_docs_v2_example(sts="pending", o="x"))) is (
        DenyReason.INVALID_CLAIMS
    )


def test_organization_claims_never_reach_the_user_record(key: SigningKey) -> None:
    # One issue time for both tokens: two clocks reads can straddle a second, and iat orders the record.
    issued = now_s()
    with_org = docs_verifier(key).verify(mint_token(key, clerk_documented_claims(2, issued)))
    without_org = docs_verifier(key).verify(
        mint_token(key, clerk_documented_claims(2, issued, o=None, act=None))
    )
    assert record_from_claims(with_org) == record_from_claims(without_org)


@pytest.mark.parametrize(
    ("environment", "allowed"),
    [
        ({}, False),
        ({"CLERK_ALLOW_PENDING_SESSIONS": "true"}, True),
        ({"CLERK_ALLOW_PENDING_SESSIONS": "false"}, False),
    ],
)
def test_settings_decide_whether_pending_sessions_pass(
    key: SigningKey, environment: dict[str, str], allowed: bool
) -> None:
    settings = AuthorizerSettings.from_env(
        {"USERS_TABLE_NAME": "t", "CLERK_JWT_KEY": key.public_pem(), **environment}
    )
    verifier = TokenVerifier.from_settings(settings)
    pending = mint_token(key, claims(sts="pending"))
    if allowed:
        assert verifier.verify(pending).sub == USER_ID
    else:
        assert reason_of(verifier, pending) is DenyReason.SESSION_PENDING


def test_an_unreadable_pending_setting_fails_the_cold_start_naming_it(key: SigningKey) -> None:
    with pytest.raises(ConfigurationError, match="CLERK_ALLOW_PENDING_SESSIONS"):
        AuthorizerSettings.from_env(
            {
                "USERS_TABLE_NAME": "t",
                "CLERK_JWT_KEY": key.public_pem(),
                "CLERK_ALLOW_PENDING_SESSIONS": "maybe",
            }
        )


_CLAIM_TEXT = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40)  # JSON-encodable


@settings(max_examples=60, deadline=None)
@given(org_id=_CLAIM_TEXT, slug=_CLAIM_TEXT, role=_CLAIM_TEXT, actor=st.none() | _CLAIM_TEXT)
def test_v1_and_v2_of_one_session_give_the_same_string_context(
    org_id: str, slug: str, role: str, actor: str | None
) -> None:
    """What Clerk's own parser test asserts (`jwtPayloadParser`), for any organization values."""
    bare = role.removeprefix("org:")
    assume(bare and not bare.startswith("org:"))  # Clerk role keys are `org:<key>`, the key never empty
    act = {"sub": actor} if actor is not None else None
    # the same permissions both ways: v2's fpm 3,2 over read,manage and fea, v1's list
    o = {"id": org_id, "slg": slug, "rol": bare, "per": "read,manage", "fpm": "3,2"}
    v2 = parse_claims(clerk_docs_v2_example(o=o, act=act))
    permissions = ["org:dashboard:read", "org:dashboard:manage", "org:impersonation:manage"]
    v1 = parse_claims(
        clerk_docs_v1_example(
            org_id=org_id, org_slug=slug, org_role=f"org:{bare}", org_permissions=permissions, act=act
        )
    )

    # `fea` and `pla` are v2 claims Clerk's auth object leaves in the session claims: v2 passes them on
    assert {k: v for k, v in v2.context().items() if k not in ("features", "plan")} == v1.context()
    context = v2.context()
    assert all(isinstance(value, str) for value in context.values())
    assert context["orgId"] == org_id
    assert context["orgRole"].startswith("org:")
    assert context.get("actorId") == actor


# ---------------------------------------------------------------------------------------- usersync-dev token


@pytest.fixture
def dev_cli_verifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TokenVerifier:
    """The verifier the local stack builds: the dev key (created under tmp_path), issuer and origin."""
    from usersync_dev.devstate import DEV_AUTHORIZED_PARTY, DEV_ISSUER, STATE_DIR_ENV, dev_secrets

    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    key = dev_secrets().signing_key
    return TokenVerifier(
        public_key=load_public_key(key.public_pem()),
        issuer=DEV_ISSUER,
        authorized_parties=(DEV_AUTHORIZED_PARTY,),
    )


def dev_cli_token(capsys: pytest.CaptureFixture[str], *options: str) -> str:
    from usersync_dev.cli import main

    capsys.readouterr()
    assert main(["token", "--sub", USER_ID, "--email", "ada@example.com", *options]) == 0
    return capsys.readouterr().out.strip()


@pytest.mark.parametrize("version", [[], ["--v1"]], ids=["v2", "v1"])
def test_dev_cli_mints_organization_and_actor_tokens_the_authorizer_reads(
    dev_cli_verifier: TokenVerifier, capsys: pytest.CaptureFixture[str], version: list[str]
) -> None:
    options = ["--org-id", "org_1", "--org-slug", "acme", "--org-role", "admin", "--actor", "user_admin"]
    tok = dev_cli_token(capsys, *options, *version)

    payload = jwt.decode(tok, options={"verify_signature": False})
    if version:
        assert "v" not in payload
        assert "o" not in payload
        assert payload["org_role"] == "org:admin"
    else:
        assert payload["v"] == 2
        assert payload["o"] == {"id": "org_1", "slg": "acme", "rol": "admin"}
    assert dev_cli_verifier.verify(tok).context() == {
        "userId": USER_ID,
        "email": "ada@example.com",
        "sessionId": payload["sid"],
        "orgId": "org_1",
        "orgSlug": "acme",
        "orgRole": "org:admin",
        "actorId": "user_admin",
    }


def test_dev_cli_pending_token_is_denied(
    dev_cli_verifier: TokenVerifier, capsys: pytest.CaptureFixture[str]
) -> None:
    assert reason_of(dev_cli_verifier, dev_cli_token(capsys, "--pending")) is DenyReason.SESSION_PENDING
    assert "orgId" not in dev_cli_verifier.verify(dev_cli_token(capsys)).context()


@pytest.mark.usefixtures("dev_cli_verifier")
def test_dev_cli_refuses_organization_details_without_an_organization(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from usersync_dev.cli import main

    assert main(["token", "--sub", USER_ID, "--email", "a@b.c", "--org-slug", "acme"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--org-id" in captured.err


# ---------------------------------------------------------------------------------------- hostile tokens


def _header_segment(raw: bytes) -> str:
    return f"{b64url(raw)}.{b64url(json.dumps(claims()).encode())}.c2ln"


HOSTILE_UNSIGNED = {
    # The issue's report: 4,008 bytes, header `[` x 1,500 + `]` x 1,500 (RecursionError in json).
    "header-bomb-arrays": _header_segment(nested_json(1500)),
    "header-bomb-objects": _header_segment(nested_json(900, kind="object")),
    "header-huge-int": _header_segment(b'{"alg":"RS256","kid":' + huge_integer(4400) + b"}"),
    "header-invalid-utf8-bytes": _header_segment(b'{"alg":"RS256","kid":"' + bytes([0xC3, 0x28]) + b'"}'),
    "header-bad-base64": "!!!!.e30.c2ln",
    "header-lone-surrogate-escape": _header_segment(b'{"alg":"RS256","kid":"\\ud800"}'),
    "token-with-a-lone-surrogate": "\ud800" + _header_segment(b'{"alg":"RS256"}'),
}


@pytest.mark.parametrize("token", list(HOSTILE_UNSIGNED.values()), ids=list(HOSTILE_UNSIGNED))
def test_hostile_unsigned_tokens_are_denials(key: SigningKey, token: str) -> None:
    """Under the size limit, so the parsers see them; each is a TokenError (reason_of fails on any
    other exception). A header that does parse (the escaped surrogate) fails at the signature."""
    assert len(token) <= MAX_TOKEN_BYTES
    reasons = {DenyReason.MALFORMED, DenyReason.BAD_ALGORITHM, DenyReason.BAD_SIGNATURE}
    assert reason_of(pem_verifier(key), token) in reasons


def test_the_reported_header_bomb_names_the_parser_error_not_the_token(key: SigningKey) -> None:
    token = HOSTILE_UNSIGNED["header-bomb-arrays"]
    with pytest.raises(TokenError) as caught:
        pem_verifier(key).verify(token)
    assert caught.value.reason is DenyReason.MALFORMED
    assert caught.value.details == {"errorType": "RecursionError"}
    assert token not in str(caught.value)


def _signed_payload(key: SigningKey, payload: bytes) -> str:
    return signed_raw_token(key, payload)


HOSTILE_SIGNED: dict[str, Callable[[SigningKey], str]] = {
    "payload-bomb-arrays": lambda k: _signed_payload(k, nested_json(2000)),
    "payload-bomb-objects": lambda k: _signed_payload(k, nested_json(1100, kind="object")),
    "payload-bomb-in-a-claim": lambda k: _signed_payload(
        k, json.dumps(claims())[:-1].encode() + b', "firstName": ' + nested_json(1200) + b"}"
    ),
    "payload-huge-int-iat": lambda k: _signed_payload(
        k, json.dumps(claims(iat=None))[:-1].encode() + b', "iat": ' + huge_integer(4400) + b"}"
    ),
    "payload-not-utf8": lambda k: _signed_payload(k, b'{"sub":"' + bytes([0xFF, 0xFE]) + b'"}'),
    "payload-not-json": lambda k: _signed_payload(k, b"\x00\x01 not json"),
}


@pytest.mark.parametrize("build", list(HOSTILE_SIGNED.values()), ids=list(HOSTILE_SIGNED))
def test_hostile_payloads_signed_by_our_own_key_are_denials(
    key: SigningKey, build: Callable[[SigningKey], str]
) -> None:
    """Even a payload our own key signed (a broken signer, or a leaked key) cannot crash the verifier."""
    token = build(key)
    assert len(token) <= MAX_TOKEN_BYTES
    assert reason_of(pem_verifier(key), token) in {
        DenyReason.MALFORMED,
        DenyReason.INVALID_CLAIMS,
        DenyReason.MISSING_CLAIM,
    }


# ---------------------------------------------------------------------------------------- token kinds

SESSION, TEMPLATE, MACHINE = "cl_B7d4PD111AAA", "cl_B7d4PD222AAA", "cl_B7d4PD333AAA"


@pytest.mark.parametrize(
    ("headers", "overrides", "denied", "denied_with_templates"),
    [
        pytest.param({}, {}, False, False, id="no-cat"),
        pytest.param({"cat": SESSION}, {}, False, False, id="session-cat"),
        pytest.param({"cat": TEMPLATE}, {"sid": None}, True, False, id="jwt-template-cat"),
        pytest.param({"cat": MACHINE}, {}, True, True, id="m2m-cat"),
        pytest.param({"cat": "cl_I7d4PD111III"}, {}, True, True, id="other-cat"),
        pytest.param({"cat": 7}, {}, True, True, id="cat-not-a-string"),
        pytest.param({}, {"sub": "mch_2abcMachine"}, True, True, id="mch-subject"),
        pytest.param({"cat": TEMPLATE}, {"sub": "mch_2abcMachine"}, True, True, id="template-mch-subject"),
        pytest.param({"typ": "at+jwt"}, {}, True, True, id="typ-at+jwt"),
        pytest.param({"typ": "application/at+JWT"}, {}, True, True, id="typ-application-at+jwt"),
        pytest.param({"typ": "JWT"}, {}, False, False, id="typ-jwt"),
    ],
)
def test_only_user_sessions_pass(
    key: SigningKey,
    headers: dict[str, Any],
    overrides: dict[str, Any],
    denied: bool,
    denied_with_templates: bool,
) -> None:
    token = mint_token(key, claims(**overrides), headers=headers)
    for accept_templates, expect_denied in ((False, denied), (True, denied_with_templates)):
        verifier = pem_verifier(key, accept_jwt_templates=accept_templates)
        if expect_denied:
            assert reason_of(verifier, token) is DenyReason.NOT_A_SESSION
        else:
            assert verifier.verify(token).sub == claims(**overrides)["sub"]


def test_a_forged_token_of_another_kind_is_a_bad_signature_not_a_category(
    key: SigningKey, other_key: SigningKey
) -> None:
    """The category is read from a header only once the signature proves it authentic."""
    token = mint_token(other_key, claims(), headers={"cat": MACHINE, "kid": key.kid})
    assert reason_of(pem_verifier(key), token) is DenyReason.BAD_SIGNATURE


@pytest.mark.parametrize(("value", "accepted"), [(None, False), ("false", False), ("true", True)])
def test_settings_decide_whether_jwt_templates_pass(
    key: SigningKey, value: str | None, accepted: bool
) -> None:
    env = {"USERS_TABLE_NAME": "t", "CLERK_JWT_KEY": key.public_pem()}
    if value is not None:
        env["CLERK_ACCEPT_JWT_TEMPLATES"] = value
    verifier = TokenVerifier.from_settings(AuthorizerSettings.from_env(env))
    token = mint_token(key, claims(), headers={"cat": TEMPLATE})
    if accepted:
        assert verifier.verify(token).sub == USER_ID
    else:
        assert reason_of(verifier, token) is DenyReason.NOT_A_SESSION
