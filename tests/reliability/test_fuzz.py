"""Bad input: whatever API Gateway (or a misconfigured integration) hands a handler, it answers.

Hypothesis generates events with missing or wrongly typed fields (no requestContext, null or
non-string bodies, invalid base64, huge strings, unicode incl. lone surrogates, non-dict events),
arbitrary headers, validly signed webhook bodies with drifting field types, and validly signed
tokens with drifting claims. Every handler must return a well-formed response: proxy handlers an
int statusCode and a JSON object body; the authorizer a simple response or an IAM policy (or the
`Unauthorized` error that API Gateway maps to 401). Never another exception.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import FakeLambdaContext, WebhookDriver, check_http_response
from tests.reliability.support import REPORT, budget
from tests.session_tokens import b64url, huge_integer, nested_json, signed_raw_token
from usersync_dev.apigw import (
    http_api_authorizer_event,
    http_api_event,
    method_arn,
    rest_request_authorizer_event,
    rest_token_authorizer_event,
)
from usersync_dev.clerk import (
    SignedDelivery,
    SigningKey,
    clerk_event,
    clerk_organization,
    clerk_user,
    session_claims,
)

ISSUER = "https://clerk.example.test"

texts = st.text(max_size=40) | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3)
huge = st.integers(250 * 1024, 300 * 1024).map(lambda n: "é" * (n // 2))  # > 256 KiB in UTF-8, fewer chars
scalars = st.none() | st.booleans() | st.integers() | st.integers(10**30, 10**60) | st.floats() | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
HEADER_NAMES = [
    "svix-id",
    "Svix-Timestamp",
    "SVIX-SIGNATURE",
    "webhook-id",
    "webhook-signature",
    "authorization",
    "Authorization",
    "cookie",
    "content-type",
]
header_maps = st.dictionaries(st.sampled_from(HEADER_NAMES) | texts, texts | json_values, max_size=6)
bodies = (
    st.none()
    | texts
    | huge
    | st.binary(max_size=200).map(lambda raw: base64.b64encode(raw).decode())
    | st.just("***not base64***")
    | json_values.map(json.dumps)
    | json_values
)
tokens = (
    texts
    | st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}", texts, texts, texts)
    | st.builds(lambda raw: "Bearer " + base64.urlsafe_b64encode(raw).decode(), st.binary(max_size=64))
    | st.just("Bearer " + "A" * 10_000)
)
request_contexts = json_values | st.fixed_dictionaries(
    {},
    optional={
        "http": json_values
        | st.fixed_dictionaries({"method": texts | json_values, "path": texts | json_values}),
        "authorizer": json_values
        | st.fixed_dictionaries(
            {"lambda": json_values | st.fixed_dictionaries({"userId": texts | json_values})}
        )
        | st.fixed_dictionaries({"userId": texts | json_values}),
    },
)
dict_events = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["2.0", "1.0"]) | json_values,
        "type": st.sampled_from(["TOKEN", "REQUEST"]) | json_values,
        "headers": header_maps | json_values,
        "multiValueHeaders": json_values,
        "cookies": st.lists(texts | json_values, max_size=3) | json_values,
        "body": bodies,
        "isBase64Encoded": st.booleans() | json_values,
        "requestContext": request_contexts,
        "rawPath": texts | json_values,
        "httpMethod": texts | json_values,
        "authorizationToken": tokens | json_values,
        "methodArn": st.just(method_arn("GET", "/me")) | texts | json_values,
        "routeArn": texts | json_values,
        "identitySource": json_values,
    },
)
events = dict_events | json_values


def _fuzz(name: str, examples: int, strategy: st.SearchStrategy[Any], check: Callable[[Any], None]) -> None:
    count = 0

    @budget(examples)
    @given(strategy)
    def run(value: Any) -> None:
        nonlocal count
        count += 1
        check(value)

    run()
    REPORT["fuzz examples"] += count
    REPORT[f"fuzz examples ({name})"] += count
    assert count >= examples


# ---------------------------------------------------------------- webhook


def test_webhook_answers_any_event(webhook: WebhookDriver) -> None:
    def check(event: Any) -> None:
        response = webhook.invoke(event)
        assert response.status in {400, 401, 413}, (response.status, response.body)

    _fuzz("webhook events", 250, events, check)


# Integers DynamoDB cannot store exactly (more than 38 significant digits), negative, or huge.
odd_times = st.integers(10**38 + 1, 10**60).filter(lambda n: n % 10 != 0) | st.integers(-(10**20), -1)
user_data = st.fixed_dictionaries(
    {},
    optional={
        "id": texts | json_values,
        "first_name": texts | json_values,
        "email_addresses": json_values
        | st.lists(st.fixed_dictionaries({"id": texts | json_values, "email_address": texts | json_values})),
        "primary_email_address_id": texts | json_values,
        "image_url": texts | json_values,
        "created_at": json_values | odd_times,
        "updated_at": json_values | odd_times,
    },
)
signed_payloads = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["user.created", "user.updated", "user.deleted", "session.created"])
        | json_values,
        "data": user_data | json_values,
    },
    optional={"timestamp": json_values | odd_times, "object": json_values},
)


def test_webhook_answers_any_validly_signed_body(webhook: WebhookDriver) -> None:
    """Signed by the real secret, so the parser and the table write see the drifting shapes."""

    def check(payload: Any) -> None:
        if isinstance(payload.get("data"), dict) and "id" in payload["data"]:
            payload["data"] = {**clerk_user("user_fuzz", updated_at=1), **payload["data"]}
        body = json.dumps(payload).encode("utf-8", "surrogatepass")
        response = webhook.post(webhook.sign(body))
        assert response.status in {200, 400}, (response.status, response.body, payload)

    _fuzz("signed webhook bodies", 250, signed_payloads, check)


@pytest.mark.parametrize("field", ["updated_at", "created_at", "timestamp"])
@pytest.mark.parametrize("value", [10**40 + 1, -1], ids=["41-digits", "negative"])
def test_webhook_time_out_of_range_is_400_not_a_crash(webhook: WebhookDriver, field: str, value: int) -> None:
    """Found by the fuzz: DynamoDB numbers hold 38 significant digits, boto3's serializer raises on
    more. A signed event with such a time must be a 400 (Svix stops retrying), never an exception."""
    event_type = "user.deleted" if field == "timestamp" else "user.updated"
    data = clerk_user("user_range", created_at=1, updated_at=2) | (
        {field: value} if field != "timestamp" else {}
    )
    if field == "timestamp":
        data = {"id": "user_range", "object": "user", "deleted": True}
    payload = {
        "type": event_type,
        "data": data,
        "object": "event",
        "timestamp": value if field == "timestamp" else 1,
    }
    response = webhook.post(webhook.sign(json.dumps(payload).encode()))
    assert response.status == 400
    assert field in response.body["message"]


# ---------------------------------------------------------------- authorizer


def check_authorizer_response(module: ModuleType, event: Any, context: FakeLambdaContext) -> dict[str, Any]:
    raised: Exception | None = None
    try:
        response = module.lambda_handler(event, context)
    except Exception as exc:  # noqa: BLE001 - the harness judges whatever escapes the handler, below
        raised = exc
    if raised is not None:
        # API Gateway's REST contract for 401 is exactly this error; anything else is a 500.
        assert type(raised).__name__ == "Unauthorized", repr(raised)
        assert str(raised) == "Unauthorized", repr(raised)
        return {"unauthorized": True}
    assert isinstance(response, dict)
    if "isAuthorized" in response:
        assert isinstance(response["isAuthorized"], bool)
        context_values = response.get("context", {})
        assert isinstance(context_values, dict)
        assert all(isinstance(v, str) for v in context_values.values())
    else:
        assert isinstance(response["principalId"], str)
        assert response["principalId"]
        (statement,) = response["policyDocument"]["Statement"]
        assert statement["Effect"] in {"Allow", "Deny"}
        assert isinstance(statement["Resource"], str)
    json.dumps(response)  # what API Gateway receives must serialise
    return response


def test_authorizer_answers_any_event(pem_authorizer: ModuleType, lambda_context: FakeLambdaContext) -> None:
    def check(event: Any) -> None:
        response = check_authorizer_response(pem_authorizer, event, lambda_context)
        assert response.get("isAuthorized") is not True  # nothing here carries a valid token

    _fuzz("authorizer events", 300, events, check)


claim_values = json_values | texts
drifting_claims = st.fixed_dictionaries(
    {},
    optional={
        "email": claim_values,
        "firstName": claim_values,
        "lastName": claim_values,
        "imageUrl": claim_values,
        "sid": claim_values,
        "sub": claim_values,
        "iat": st.integers(-(10**12), 10**15) | json_values,
    },
)


def test_authorizer_answers_any_validly_signed_claims(
    pem_authorizer: ModuleType, key: SigningKey, lambda_context: FakeLambdaContext
) -> None:
    """Signed by the trusted key: claim validation and the table sync see drifting types and sizes."""

    def check(overrides: dict[str, Any]) -> None:
        claims = session_claims("user_fuzz", issuer=ISSUER) | overrides
        try:  # the key object, not its PEM: re-parsing an RSA private key per example is slow
            token = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})
        except (TypeError, ValueError):  # PyJWT cannot encode it: nobody can send it
            return
        event = http_api_event("GET", "/me", headers={"authorization": f"Bearer {token}"})
        check_authorizer_response(pem_authorizer, {**event, "type": "REQUEST"}, lambda_context)

    _fuzz("signed token claims", 200, drifting_claims, check)


@pytest.mark.parametrize(
    "event",
    [{"version": "2.0", "cookies": True}, {"version": "2.0", "cookies": 7}, {"headers": {"cookie": None}}],
    ids=["cookies-bool", "cookies-int", "cookie-header-null"],
)
def test_authorizer_answers_non_list_cookies(
    pem_authorizer: ModuleType, lambda_context: FakeLambdaContext, event: dict[str, Any]
) -> None:
    """Minimal case hypothesis found: `cookies` that is not a list must deny, not raise TypeError."""
    assert check_authorizer_response(pem_authorizer, event, lambda_context) == {"isAuthorized": False}


@pytest.mark.parametrize("cookies", [True, 7], ids=["bool", "int"])
def test_webhook_answers_non_list_cookies(webhook: WebhookDriver, cookies: Any) -> None:
    event = http_api_event("POST", "/webhooks/clerk", body="{}") | {"cookies": cookies}
    assert webhook.invoke(event).status == 401


# ---------------------------------------------------------------- health and /me


@pytest.mark.parametrize(
    ("function", "examples", "statuses"),
    [
        pytest.param("health", 60, {200, 503}, id="health answers 200 or 503"),
        pytest.param("me", 200, {200, 401, 404}, id="me answers 200, 401 or 404"),
    ],
)
@pytest.mark.usefixtures("users_table")
def test_http_function_answers_any_event(
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
    function: str,
    examples: int,
    statuses: set[int],
) -> None:
    module = function_loader(function)

    def check(event: Any) -> None:
        response = check_http_response(module.lambda_handler(event, lambda_context))
        assert response.status in statuses

    _fuzz(f"{function} events", examples, events, check)


@pytest.mark.parametrize("event", [None, [], "GET /me", 42], ids=["null", "list", "string", "number"])
@pytest.mark.usefixtures("users_table")
def test_me_answers_a_non_object_event(
    function_loader: Callable[[str], ModuleType],
    lambda_context: FakeLambdaContext,
    event: Any,
) -> None:
    """The minimal case hypothesis found: /me must answer 401, not raise, when the event is no object."""
    response = check_http_response(function_loader("me").lambda_handler(event, lambda_context))
    assert response.status == 401


# ---------------------------------------------------------------- hostile JSON (CONTRACT §4, §5)
# Depth up to 50,000 (Python's parser gives up near 1,000), integers past the 4,300-digit limit, and
# text in encodings nobody should send, placed where each parser meets it: a token's header or payload
# (unsigned, and signed with the trusted key so the payload reaches the claims parser), a webhook body
# or the `public_metadata` of a user or organization inside a validly signed delivery.

depths = st.integers(1, 50_000) | st.integers(900, 1_100)  # around the recursion limit, and far past it
nests = st.builds(nested_json, depths, kind=st.sampled_from(["array", "object"]))
huge_integers = st.builds(huge_integer, st.integers(4_000, 50_000))
ENCODINGS = ["utf-8-sig", "utf-16", "utf-16-be", "utf-32", "latin-1", "cp1252"]


@st.composite
def odd_encodings(draw: st.DrawFn) -> bytes:
    """A JSON document re-encoded, or with bytes that are no UTF-8, or escaping half a surrogate pair."""
    document = json.dumps({"alg": "RS256", "sub": "user_é", "email": "ada@example.com", "n": "ü€"})
    encoding = draw(st.sampled_from(ENCODINGS))
    variant = draw(st.sampled_from(["re-encoded", "invalid-bytes", "surrogate-escape"]))
    if variant == "invalid-bytes":
        return b'{"sub": "' + draw(st.binary(min_size=1, max_size=8)) + b'\xff"}'
    if variant == "surrogate-escape":
        return b'{"sub": "\\ud800\\udfff\\ud83d", "email": "a@b.c"}'
    return document.encode(encoding, errors="replace")


hostile_json = (
    nests
    | huge_integers
    | odd_encodings()
    | st.builds(
        lambda claims, value: claims[:-1] + b', "firstName": ' + value + b"}",
        st.just(json.dumps({"sub": "user_fuzz", "email": "a@b.c", "iat": 1, "exp": 2**31}).encode()),
        nests | huge_integers,
    )
)
AUTHORIZER_EVENT_BUILDERS: list[Callable[[str], dict[str, Any]]] = [
    lambda token: http_api_authorizer_event("GET", "/me", headers={"authorization": f"Bearer {token}"}),
    lambda token: rest_token_authorizer_event(f"Bearer {token}"),
    lambda token: rest_request_authorizer_event("GET", "/me", headers={"Authorization": f"Bearer {token}"}),
]


def test_authorizer_denies_hostile_json_in_every_token_part_and_format(
    pem_authorizer: ModuleType, key: SigningKey, lambda_context: FakeLambdaContext
) -> None:
    """Unsigned (the header or payload is hostile), or signed with the trusted key (the payload is):
    every one is an answer (a denial), in each of the three event formats; never an exception."""
    header = json.dumps({"alg": "RS256", "typ": "JWT", "kid": key.kid}).encode()
    tokens = st.one_of(
        st.builds(lambda raw: f"{b64url(raw)}.{b64url(b'{}')}.c2ln", hostile_json),  # header
        st.builds(lambda raw: f"{b64url(header)}.{b64url(raw)}.c2ln", hostile_json),  # payload, unsigned
        st.builds(lambda raw: signed_raw_token(key, raw), hostile_json),  # payload, signed
    )

    def check(case: tuple[str, int]) -> None:
        token, fmt = case
        response = check_authorizer_response(
            pem_authorizer, AUTHORIZER_EVENT_BUILDERS[fmt](token), lambda_context
        )
        assert response.get("isAuthorized") is not True
        assert "policyDocument" not in response

    _fuzz("hostile token JSON", 60, st.tuples(tokens, st.integers(0, 2)), check)


def _with_data_field(event_type: str, data: dict[str, Any], field: str, raw: bytes) -> bytes:
    """A genuine event body with `raw` (exact JSON text, maybe invalid) as `data.<field>`."""
    document = json.dumps(clerk_event(event_type, data)).encode()
    return document.replace(b'"data": {', b'"data": {"' + field.encode() + b'": ' + raw + b", ", 1)


signed_hostile_bodies = st.one_of(
    hostile_json,
    st.builds(
        lambda raw: _with_data_field(
            "user.updated", clerk_user("user_fuzz", updated_at=1), "public_metadata", raw
        ),
        hostile_json,
    ),
    st.builds(
        lambda raw: _with_data_field(
            "organization.updated", clerk_organization("org_fuzz", updated_at=1), "public_metadata", raw
        ),
        hostile_json,
    ),
    st.builds(
        lambda raw: _with_data_field(
            "user.updated", clerk_user("user_fuzz", updated_at=1), "updated_at", raw
        ),
        huge_integers,
    ),
)


@pytest.mark.usefixtures("organizations_table")
def test_webhook_answers_hostile_signed_bodies(webhook: WebhookDriver) -> None:
    """Validly signed (Svix signs text, so only bodies that are UTF-8 can be): a 400 with a message,
    a 413 when over 256 KiB, or 200 when a re-encoding is still a readable event; never a 5xx."""

    def check(body: bytes) -> None:
        try:
            body.decode()
        except UnicodeDecodeError:  # nobody can sign it: sent with another body's signature, a 401
            signed = webhook.sign(b"{}")
            unsigned = SignedDelivery(body, signed.headers, signed.message_id)
            assert webhook.post(unsigned, base64_body=True).status == 401
            return
        response = webhook.post(webhook.sign(body))
        assert response.status in {200, 400, 413}, (response.status, response.body)
        if response.status == 400:
            assert response.body["message"]

    _fuzz("hostile signed webhook bodies", 60, signed_hostile_bodies, check)
