"""Attack matrix: forged or replayed credentials are refused, change nothing, and leak nothing.

Rows come from the OWASP JSON Web Token Cheat Sheet / RFC 8725 (alg `none`, RS256→HS256 key
confusion, key material named in the header: `kid`, `jku`, `x5u`, `jwk`; missing claim checks;
replay of expired tokens), from Clerk's session token v2 (a pending session is signed out; malformed
or tampered `o`/`act` claims never grant an organization, a role or an actor) and from Svix's
manual-verification guide (signed content
`id.timestamp.body`, 5-minute tolerance, `v1` only, space-separated signature list).
Every row asserts: denied (401 / `isAuthorized: false`), the table unchanged, the denial logged with
a reason, and neither the token, the signature nor the secret in the logs or on stdout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import FakeLambdaContext, LogCapture, WebhookDriver, authorize_bearer, metric_counts
from tests.jwks_server import JwksServer
from tests.reliability.counted import counted
from tests.reliability.support import scan_all
from tests.session_tokens import (
    ISSUER,
    ORIGIN,
    b64url,
    hs256_with_public_pem,
    huge_integer,
    nested_json,
    signed_raw_token,
    trust_pem,
    unsigned_token,
)
from tests.session_tokens import alg_none as unsigned_alg_none
from usersync_dev.apigw import (
    http_api_authorizer_event,
    rest_request_authorizer_event,
    rest_token_authorizer_event,
)
from usersync_dev.clerk import (
    SignedDelivery,
    SigningKey,
    clerk_event,
    clerk_user,
    mint_token,
    new_webhook_secret,
    session_claims,
    sign_delivery,
)

TABLE = "usersync-test-users"
USER_ID = "user_2victimVICTIMvictim00000"
T0 = 1_730_279_325_025

# Each attack row counts in the run report: tried, and denied once the test passes.
attack_case = counted("attacks tried", "attacks denied")


def _with_payload(token: str, claims: dict[str, Any]) -> str:
    """`token`'s header and signature around another payload: what tampering in transit produces."""
    header, _, signature = token.split(".")
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


def _claims(**overrides: Any) -> dict[str, Any]:
    """A session token that would be accepted, and would sync a changed profile, if it were genuine."""
    claims = session_claims(
        USER_ID, email="mallory@example.com", first_name="Mallory", issuer=ISSUER, azp=ORIGIN
    )
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


# ---------------------------------------------------------------- JWT attacks


@dataclass(frozen=True)
class Keys:
    ours: SigningKey
    attacker: SigningKey
    attacker_jwks: JwksServer  # the attacker's key set, named in jku/x5u headers

    @property
    def attacker_jwks_url(self) -> str:
        return self.attacker_jwks.url


TokenForgery = Callable[[Keys], str]

# The matrix: attack id (the builder's name) -> (token builder, reasons the denial may give).
JWT_ATTACKS: dict[str, tuple[TokenForgery, set[str]]] = {}


def jwt_attack(*reasons: str) -> Callable[[TokenForgery], TokenForgery]:
    """Add the decorated token builder to JWT_ATTACKS, under its name with dashes."""

    def register(build: TokenForgery) -> TokenForgery:
        JWT_ATTACKS[build.__name__.replace("_", "-")] = (build, set(reasons))
        return build

    return register


# A token signed by a key we do not trust: with a PEM the signature fails, with a JWKS the kid is
# unknown (after one rate-limited refetch). Either way the attacker's key is never used.
FOREIGN_KEY = ("bad_signature", "unknown_key")


@jwt_attack("bad_algorithm")
def alg_none(_keys: Keys) -> str:
    return unsigned_alg_none(_claims())


@jwt_attack("bad_algorithm")
def alg_none_mixed_case(keys: Keys) -> str:
    return unsigned_token({"alg": "nOnE", "typ": "JWT", "kid": keys.ours.kid}, _claims()) + "."


@jwt_attack("bad_algorithm")
def alg_confusion_hs256_with_public_key(keys: Keys) -> str:
    # Hand-made: PyJWT refuses to sign HS256 with a PEM key (its own key-confusion guard), which is
    # exactly what an attacker's tooling does not do.
    return hs256_with_public_pem(keys.ours, _claims())


@jwt_attack(*FOREIGN_KEY)
def kid_unknown(keys: Keys) -> str:
    return mint_token(keys.attacker, _claims(), headers={"kid": "ins_attacker_unknown"})


@jwt_attack(*FOREIGN_KEY)
def kid_path_traversal(keys: Keys) -> str:
    return mint_token(keys.attacker, _claims(), headers={"kid": "../../../../dev/null"})


@jwt_attack(*FOREIGN_KEY)
def jku_attacker_jwks(keys: Keys) -> str:
    return mint_token(keys.attacker, _claims(), headers={"jku": keys.attacker_jwks_url})


@jwt_attack(*FOREIGN_KEY)
def x5u_attacker_url(keys: Keys) -> str:
    return mint_token(keys.attacker, _claims(), headers={"x5u": keys.attacker_jwks_url})


@jwt_attack(*FOREIGN_KEY)
def embedded_jwk(keys: Keys) -> str:
    # CVE-2018-0114: a verifier that trusts the `jwk` in the header accepts any self-signed token.
    return mint_token(keys.attacker, _claims(), headers={"jwk": keys.attacker.jwk()})


@jwt_attack(*FOREIGN_KEY)
def another_clerk_instance(keys: Keys) -> str:
    # A genuine token of a different Clerk instance: valid signature by its own key, its own issuer.
    return mint_token(keys.attacker, _claims(iss="https://clerk.other-app.test"))


@jwt_attack("wrong_issuer")
def our_key_foreign_issuer(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(iss="https://clerk.other-app.test"))


@jwt_attack("wrong_azp")
def foreign_azp(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(azp="https://evil.example"))


@jwt_attack("expired")
def expired_1s_beyond_leeway(keys: Keys) -> str:
    now = int(time.time())
    return mint_token(keys.ours, _claims(iat=now - 66, nbf=now - 70, exp=now - 6))  # leeway is 5 s


@jwt_attack("missing_claim")
def missing_exp(keys: Keys) -> str:
    claims = _claims()
    del claims["exp"]
    return mint_token(keys.ours, claims)


@jwt_attack("not_yet_valid")
def nbf_in_future(keys: Keys) -> str:
    now = int(time.time())
    return mint_token(keys.ours, _claims(iat=now + 60, nbf=now + 60, exp=now + 120))


@jwt_attack("bad_signature")
def tampered_payload(keys: Keys) -> str:
    genuine = mint_token(keys.ours, _claims(email="ada@example.com"))
    return _with_payload(genuine, _claims(email="mallory@example.com"))


@jwt_attack("bad_signature", "malformed")
def signature_stripped(keys: Keys) -> str:
    header, payload, _ = mint_token(keys.ours, _claims()).split(".")
    return f"{header}.{payload}."


@jwt_attack("too_large")
def oversized_9kib(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(padding="A" * (9 * 1024)))  # validly signed, 9 KiB


@jwt_attack("session_pending")
def v2_pending_session(keys: Keys) -> str:
    # Genuine, but the session has an unfinished task (e.g. choose-organization): Clerk's SDKs treat it
    # as signed out, so it must neither pass nor sync the profile it carries.
    return mint_token(keys.ours, _claims(sts="pending", o={"id": "org_victim", "rol": "admin"}))


@jwt_attack("invalid_claims")
def v2_org_claim_not_an_object(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(o="org_victim:admin"))


@jwt_attack("invalid_claims")
def v2_org_claim_without_id(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(o={"slg": "victim-inc", "rol": "admin"}))


@jwt_attack("invalid_claims")
def v2_actor_claim_not_an_object(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(act=["user_admin"]))


@jwt_attack("bad_signature")
def v2_org_role_escalated_by_tampering(keys: Keys) -> str:
    # A genuine member token whose payload is rewritten to claim the admin role in the organization.
    genuine = mint_token(keys.ours, _claims(o={"id": "org_victim", "rol": "member"}))
    return _with_payload(genuine, _claims(o={"id": "org_victim", "rol": "admin"}))


@jwt_attack("bad_signature")
def v2_impersonation_stripped_by_tampering(keys: Keys) -> str:
    # An impersonation token with `act` stripped, to act as the user without the audit trail.
    genuine = mint_token(keys.ours, _claims(act={"sub": "user_admin", "iss": "https://dashboard.clerk.com"}))
    return _with_payload(genuine, _claims())


# Hostile input (CONTRACT §5: denials, never crashes) and tokens that are not user sessions. Each
# also runs in the three event formats, with and without CLERK_ACCEPT_JWT_TEMPLATES, below.
HOSTILE_ATTACKS: dict[str, tuple[TokenForgery, set[str]]] = {}


def hostile_attack(*reasons: str) -> Callable[[TokenForgery], TokenForgery]:
    """Register in both matrices: JWT_ATTACKS (PEM and JWKS keys) and HOSTILE_ATTACKS (every format)."""

    def register(build: TokenForgery) -> TokenForgery:
        jwt_attack(*reasons)(build)
        HOSTILE_ATTACKS[build.__name__.replace("_", "-")] = (build, set(reasons))
        return build

    return register


@hostile_attack("malformed")
def header_bomb(_keys: Keys) -> str:
    # The issue's report: a 4,008-byte token whose header is `[` x 1,500 + `]` x 1,500; no signature.
    return f"{b64url(nested_json(1500))}.{b64url(json.dumps(_claims()).encode())}.c2ln"


@hostile_attack("malformed")
def header_huge_integer(_keys: Keys) -> str:
    header = b'{"alg":"RS256","kid":' + huge_integer(4400) + b"}"
    return f"{b64url(header)}.{b64url(json.dumps(_claims()).encode())}.c2ln"


@hostile_attack("malformed")
def payload_bomb_signed(keys: Keys) -> str:
    # Signed by the instance's own key (a leaked key or a broken signer): still a denial.
    return signed_raw_token(keys.ours, nested_json(2000))


@hostile_attack("malformed")
def payload_huge_integer_signed(keys: Keys) -> str:
    claims = json.dumps({name: value for name, value in _claims().items() if name != "iat"}).encode()
    return signed_raw_token(keys.ours, claims[:-1] + b', "iat": ' + huge_integer(4400) + b"}")


@hostile_attack("malformed")
def payload_not_utf8_signed(keys: Keys) -> str:
    return signed_raw_token(keys.ours, b'{"sub":"' + bytes([0xFF, 0xFE, 0xC3, 0x28]) + b'"}')


@hostile_attack("not_a_session")
def cat_machine_to_machine(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(), headers={"cat": "cl_B7d4PD333AAA"})


@hostile_attack("not_a_session")
def sub_machine(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(sub="mch_2victimMachine"))


@hostile_attack("not_a_session")
def typ_at_jwt(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(), headers={"typ": "at+jwt"})


@hostile_attack("not_a_session")
def typ_application_at_jwt(keys: Keys) -> str:
    return mint_token(keys.ours, _claims(), headers={"typ": "application/at+jwt"})


def cat_jwt_template(keys: Keys) -> str:
    """A JWT-template token (`getToken({ template })`): no `sid`; denied unless templates are accepted."""
    return mint_token(keys.ours, _claims(sid=None), headers={"cat": "cl_B7d4PD222AAA"})


JWT_ATTACKS["cat-jwt-template"] = (cat_jwt_template, {"not_a_session"})


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    attacker = SigningKey.generate("ins_attacker")
    with JwksServer(attacker) as attacker_jwks:
        yield Keys(SigningKey.generate("ins_ours"), attacker, attacker_jwks)


def _seed_victim() -> None:
    """A stored user an accepted forgery would overwrite (older than any token, different profile)."""
    from usersync.runtime.aws import dynamodb_client

    dynamodb_client().put_item(
        TableName=TABLE,
        Item={
            "userId": {"S": USER_ID},
            "email": {"S": "ada@example.com"},
            "firstName": {"S": "Ada"},
            "updatedAt": {"N": str(T0)},
            "createdAt": {"N": str(T0)},
            "syncedAt": {"S": "2024-10-30T09:08:45.025Z"},
            "source": {"S": "webhook"},
        },
    )


class Authorizer:
    def __init__(self, module: ModuleType, context: FakeLambdaContext) -> None:
        self.module = module
        self.context = context

    def http(self, token: str) -> dict[str, Any]:
        return authorize_bearer(self.module, self.context, token)


@pytest.fixture(params=["pem", "jwks"])
def authorizer(
    request: pytest.FixtureRequest,
    keys: Keys,
    users_table: str,  # noqa: ARG001 - fixture wanted for its side effect
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
) -> Iterator[Authorizer]:
    """The real authorizer on moto, keyed by our PEM (networkless) or by our loopback JWKS."""
    _seed_victim()
    if request.param == "pem":
        trust_pem(monkeypatch, keys.ours, authorized_parties=ORIGIN)
        yield Authorizer(function_loader("authorizer"), lambda_context)
        return
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", ORIGIN)
    monkeypatch.delenv("CLERK_JWT_KEY", raising=False)
    with JwksServer(keys.ours) as ours:
        monkeypatch.setenv("CLERK_JWKS_URL", ours.url)
        yield Authorizer(function_loader("authorizer"), lambda_context)


def test_control_genuine_token_is_allowed_and_syncs(authorizer: Authorizer, keys: Keys) -> None:
    """The matrix below is meaningful only if the same setup accepts and writes a genuine token."""
    before = scan_all(TABLE)
    assert authorizer.http(mint_token(keys.ours, _claims()))["isAuthorized"] is True
    after = scan_all(TABLE)
    assert after != before
    assert after[0]["email"] == "mallory@example.com"


@pytest.mark.parametrize("attack", list(JWT_ATTACKS), ids=list(JWT_ATTACKS))
@attack_case
def test_jwt_attack_is_denied_without_write_or_leak(
    authorizer: Authorizer,
    keys: Keys,
    attack: str,
    logs: LogCapture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    build, reasons = JWT_ATTACKS[attack]
    token = build(keys)
    before = scan_all(TABLE)

    response = authorizer.http(token)

    assert response == {"isAuthorized": False}
    assert scan_all(TABLE) == before
    denials = [record for record in logs.records if record["message"] == "authorizer denied"]
    assert len(denials) == 1, logs.text
    assert denials[0]["reason"] in reasons, logs.text
    stdout = capsys.readouterr().out
    signature = token.rsplit(".", 1)[1]
    for secret in (token, *([signature] if signature else []), keys.ours.private_pem().decode()):
        assert secret not in logs.text
        assert secret not in stdout
    assert keys.attacker_jwks.request_count == 0  # URLs named in the header are never followed


# ---------------------------------------------------------------- webhook attacks


def _genuine(webhook: WebhookDriver, **kwargs: Any) -> SignedDelivery:
    """A delivery the victim's instance really signed: an update that would change the user."""
    data = clerk_user(
        USER_ID, email="mallory@example.com", first_name="Mallory", created_at=T0, updated_at=T0 + 9
    )
    return webhook.sign(clerk_event("user.updated", data), **kwargs)


DeliveryForgery = Callable[[WebhookDriver], tuple[bytes, dict[str, str]]]

# The matrix: attack id (the builder's name) -> builder of the (body, headers) sent.
WEBHOOK_ATTACKS: dict[str, DeliveryForgery] = {}


def webhook_attack(build: DeliveryForgery) -> DeliveryForgery:
    """Add the decorated delivery builder to WEBHOOK_ATTACKS, under its name with dashes."""
    WEBHOOK_ATTACKS[build.__name__.replace("_", "-")] = build
    return build


@webhook_attack
def tampered_body(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    genuine = _genuine(webhook)
    return genuine.body.replace(b"Mallory", b"Mallorx"), genuine.headers


# Svix's tolerance is 5 minutes either way; the header holds whole seconds (truncated) and the
# delivery reaches the verifier a moment after signing, so the rows step 5 s past the boundary.
@webhook_attack
def replay_old_timestamp_5m5s(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    genuine = _genuine(webhook, timestamp=datetime.now(UTC) - timedelta(minutes=5, seconds=5))
    return genuine.body, genuine.headers


@webhook_attack
def timestamp_future_5m5s(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    genuine = _genuine(webhook, timestamp=datetime.now(UTC) + timedelta(minutes=5, seconds=5))
    return genuine.body, genuine.headers


@webhook_attack
def signature_for_other_svix_id(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    genuine = _genuine(webhook, message_id="msg_signed_for_this_one")
    return genuine.body, {**genuine.headers, "svix-id": "msg_but_sent_as_this_one"}


@webhook_attack
def empty_signature_list(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    genuine = _genuine(webhook)
    return genuine.body, {**genuine.headers, "svix-signature": "   "}


@webhook_attack
def unsupported_version_v2(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    # The right HMAC, labelled v2: only `v1` entries may be trusted.
    genuine = _genuine(webhook)
    mac = genuine.headers["svix-signature"].split(",", 1)[1]
    return genuine.body, {**genuine.headers, "svix-signature": f"v2,{mac}"}


@webhook_attack
def signature_without_version(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    genuine = _genuine(webhook)
    return genuine.body, {
        **genuine.headers,
        "svix-signature": genuine.headers["svix-signature"].split(",")[1],
    }


@webhook_attack
def wrong_secret(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    forged = sign_delivery(new_webhook_secret(), json.loads(_genuine(webhook).body))
    return forged.body, forged.headers


@webhook_attack
def duplicated_mixed_case_headers(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    # Genuine lower-case headers for one body, mixed-case copies from another genuine delivery,
    # and a third (tampered) body: whichever copy a parser picks, nothing matches the body sent.
    first, second = _genuine(webhook), _genuine(webhook)
    headers = {**first.headers, **{name.title(): value for name, value in second.headers.items()}}
    headers["SVIX-SIGNATURE"] = first.headers["svix-signature"]
    return first.body.replace(b"Mallory", b"Mallorx"), headers


@webhook_attack
def mixed_svix_and_webhook_headers(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    # svix-id/-timestamp of one delivery, webhook-signature (Standard Webhooks name) of another.
    first, second = _genuine(webhook), _genuine(webhook)
    headers = {name: value for name, value in first.headers.items() if name != "svix-signature"}
    headers["webhook-signature"] = second.headers["svix-signature"]
    return first.body, headers


@webhook_attack
def missing_signature_header(webhook: WebhookDriver) -> tuple[bytes, dict[str, str]]:
    genuine = _genuine(webhook)
    return genuine.body, {name: value for name, value in genuine.headers.items() if name != "svix-signature"}


@pytest.fixture
def seeded_webhook(webhook: WebhookDriver) -> WebhookDriver:
    _seed_victim()
    return webhook


def test_control_genuine_delivery_is_applied(seeded_webhook: WebhookDriver) -> None:
    before = scan_all(TABLE)
    assert seeded_webhook.post(_genuine(seeded_webhook)).status == 200
    after = scan_all(TABLE)
    assert after != before
    assert after[0]["firstName"] == "Mallory"


@pytest.mark.parametrize("fmt", ["http", "rest"])
@pytest.mark.parametrize("attack", list(WEBHOOK_ATTACKS), ids=list(WEBHOOK_ATTACKS))
@attack_case
def test_webhook_attack_is_401_without_write_or_leak(
    seeded_webhook: WebhookDriver,
    attack: str,
    fmt: str,
    logs: LogCapture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body, headers = WEBHOOK_ATTACKS[attack](seeded_webhook)
    before = scan_all(TABLE)

    response = seeded_webhook.post(SignedDelivery(body, headers, ""), headers=headers, fmt=fmt)

    assert response.status == 401, response.body
    assert response.body["status"] == "rejected"
    assert response.body["message"]
    assert scan_all(TABLE) == before
    rejections = [record for record in logs.records if record["message"] == "webhook rejected"]
    assert len(rejections) == 1, logs.text
    assert rejections[0]["reason"].startswith(("invalid signature", "missing signature headers"))
    stdout = capsys.readouterr().out
    signatures = {
        part
        for name, value in headers.items()
        if name.lower().endswith("-signature")
        for entry in value.split()
        for part in (entry, entry.partition(",")[2])
        if len(part) > 8
    }
    for secret in (*signatures, seeded_webhook.secret, seeded_webhook.secret.removeprefix("whsec_")):
        assert secret not in logs.text
        assert secret not in stdout


# ---------------------------------------------------------------- every event format


def _event(fmt: str, token: str) -> dict[str, Any]:
    if fmt == "http-api":
        return http_api_authorizer_event("GET", "/me", headers={"authorization": f"Bearer {token}"})
    if fmt == "rest-token":
        return rest_token_authorizer_event(f"Bearer {token}")
    return rest_request_authorizer_event("GET", "/me", headers={"Authorization": f"Bearer {token}"})


FORMATS = ["http-api", "rest-token", "rest-request"]
HOSTILE_CASES = [*HOSTILE_ATTACKS, "cat-jwt-template"]


@pytest.mark.parametrize("accept_templates", [False, True], ids=["templates-refused", "templates-accepted"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("attack", HOSTILE_CASES, ids=HOSTILE_CASES)
@attack_case
@pytest.mark.usefixtures("users_table")
def test_hostile_and_non_session_tokens_are_counted_denials_in_every_format(
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
    logs: LogCapture,
    capsys: pytest.CaptureFixture[str],
    attack: str,
    fmt: str,
    accept_templates: bool,
) -> None:
    """HTTP API: `isAuthorized: false`; REST: the `Unauthorized` error API Gateway maps to 401. Either
    way one logged denial with its reason, one AuthorizerDenied, no write, no token in the logs. With
    CLERK_ACCEPT_JWT_TEMPLATES=true a template token is allowed instead (and everything else still
    denied)."""
    _seed_victim()
    trust_pem(monkeypatch, keys.ours, authorized_parties=ORIGIN)
    monkeypatch.setenv("CLERK_ACCEPT_JWT_TEMPLATES", "true" if accept_templates else "false")
    module = function_loader("authorizer")
    build, reasons = JWT_ATTACKS[attack]
    token = build(keys)
    before = scan_all(TABLE)
    capsys.readouterr()

    if attack == "cat-jwt-template" and accept_templates:
        response = module.lambda_handler(_event(fmt, token), lambda_context)
        allowed = response.get("isAuthorized") is True or (
            response.get("policyDocument", {}).get("Statement", [{}])[0].get("Effect") == "Allow"
        )
        assert allowed, response
        assert metric_counts(capsys.readouterr().out, "authorizer")["AuthorizerDenied"] == 0
        return

    if fmt == "http-api":
        assert module.lambda_handler(_event(fmt, token), lambda_context) == {"isAuthorized": False}
    else:
        with pytest.raises(Exception, match=r"^Unauthorized$") as raised:
            module.lambda_handler(_event(fmt, token), lambda_context)
        assert type(raised.value).__name__ == "Unauthorized"
    assert scan_all(TABLE) == before
    denials = [record for record in logs.records if record["message"] == "authorizer denied"]
    assert len(denials) == 1, logs.text
    assert denials[0]["reason"] in reasons, logs.text
    assert denials[0]["eventFormat"] == fmt
    stdout = capsys.readouterr().out
    assert metric_counts(stdout, "authorizer")["AuthorizerDenied"] == 1
    for part in token.split("."):
        if len(part) > 8:
            assert part not in logs.text
            assert part not in stdout
