"""(1) Authorizer warm path vs the floor `jwt.decode` and the peer clerk-backend-api.

Warm path: PEM key, the user already stored and cached, claims unchanged, so no DynamoDB call.
The candidate is the real `lambda_handler` on an HTTP API REQUEST event (Powertools decorators,
bearer extraction, RS256 verification with iss/azp/required claims, pydantic claims, cache check,
simple response). The floor is `jwt.decode(token, <parsed key>, algorithms=["RS256"])` alone.
The peers are Clerk's Python SDK networkless paths on the same token with the same PEM:
`verify_token` and `authenticate_request(..., accepts_token=["session_token"])`.
The table is moto's in-process mock, used only to seed; the timed calls are counted to prove they
make no DynamoDB call at all.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from bench._common import (
    DynamoCallCounter,
    Goal,
    interleaved,
    lambda_context,
    median_ratio,
    offline_env,
    quiet_stdout,
)
from usersync_dev.handlers import load_function

GOAL_FLOOR_RATIO = 1.3
GOAL_PEER_RATIO = 1.0
TABLE_NAME = "usersync-bench-users"
ISSUER = "https://clerk.example.test"
AZP = "http://localhost:3000"


@dataclass
class AuthorizerSetup:
    app: ModuleType
    counter: DynamoCallCounter
    key: Any  # usersync_dev.clerk.SigningKey
    pem: str


@contextmanager
def authorizer_app() -> Iterator[AuthorizerSetup]:
    """The authorizer loaded as a cold start would, on moto's in-process DynamoDB with the table."""
    offline_env()
    from moto import mock_aws

    from usersync.runtime.aws import dynamodb_client, reset_clients
    from usersync_dev.clerk import SigningKey
    from usersync_dev.template import create_users_table

    key = SigningKey.generate()
    pem = key.public_pem()
    os.environ.update(
        {
            "USERS_TABLE_NAME": TABLE_NAME,
            "CLERK_JWT_KEY": pem,
            "CLERK_ISSUER": ISSUER,
            "CLERK_AUTHORIZED_PARTIES": AZP,
        }
    )
    with mock_aws():
        reset_clients()
        client = dynamodb_client()
        create_users_table(client, TABLE_NAME)
        app = load_function("authorizer")
        try:
            yield AuthorizerSetup(app, DynamoCallCounter(client), key, pem)
        finally:
            reset_clients()


def bearer_event(token: str) -> dict[str, Any]:
    from usersync_dev.apigw import http_api_authorizer_event

    return http_api_authorizer_event("GET", "/me", headers={"authorization": f"Bearer {token}"})


def is_allowed(response: dict[str, Any]) -> bool:
    return bool(response.get("isAuthorized"))


def run(*, rounds: int = 11, calls: int = 200) -> list[Goal]:
    import httpx
    import jwt
    from clerk_backend_api.security import authenticate_request, verify_token
    from clerk_backend_api.security.types import AuthenticateRequestOptions, VerifyTokenOptions
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from usersync_dev.clerk import mint_token, new_user_id, session_claims

    with authorizer_app() as setup:
        claims = session_claims(
            new_user_id(),
            first_name="Ada",
            last_name="Lovelace",
            issuer=ISSUER,
            azp=AZP,
            lifetime_seconds=3600,
        )
        token = mint_token(setup.key, claims)
        event = bearer_event(token)
        context = lambda_context()
        public_key = load_pem_public_key(setup.pem.encode())
        assert isinstance(public_key, RSAPublicKey)
        verify_options = VerifyTokenOptions(jwt_key=setup.pem, authorized_parties=[AZP])
        request = httpx.Request(
            "GET", "https://api.example.test/me", headers={"Authorization": f"Bearer {token}"}
        )
        request_options = AuthenticateRequestOptions(
            jwt_key=setup.pem, authorized_parties=[AZP], accepts_token=["session_token"]
        )

        def floor() -> None:
            jwt.decode(token, public_key, algorithms=["RS256"])

        def handler() -> None:
            setup.app.lambda_handler(event, context)

        def peer_verify_token() -> None:
            verify_token(token, verify_options)

        def peer_authenticate_request() -> None:
            authenticate_request(request, request_options)

        with quiet_stdout():
            first = setup.app.lambda_handler(event, context)  # stores the user, fills the cache
            second = setup.app.lambda_handler(event, context)
            assert is_allowed(first), (first, second)
            assert is_allowed(second), (first, second)
            assert verify_token(token, verify_options)["sub"] == claims["sub"]
            assert authenticate_request(request, request_options).is_signed_in
            setup.counter.reset()
            samples = interleaved(
                {
                    "floor": floor,
                    "handler": handler,
                    "peer_verify_token": peer_verify_token,
                    "peer_authenticate_request": peer_authenticate_request,
                },
                rounds=rounds,
                calls=calls,
            )
        warm_calls = dict(setup.counter.calls)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    vs_floor = median_ratio(samples["handler"], samples["floor"])
    vs_verify = median_ratio(samples["handler"], samples["peer_verify_token"])
    vs_authenticate = median_ratio(samples["handler"], samples["peer_authenticate_request"])
    peer_vs_floor = median_ratio(samples["peer_verify_token"], samples["floor"])
    details = {"median_us_per_call": medians, "rounds": rounds, "calls_per_round": calls}
    note = f"{medians['handler']:.0f} us vs floor {medians['floor']:.0f} us"
    return [
        Goal(
            "authorizer warm",
            "lambda_handler / jwt.decode(token, key, RS256)",
            vs_floor,
            f"<= {GOAL_FLOOR_RATIO}x",
            vs_floor <= GOAL_FLOOR_RATIO,
            "x",
            note,
            details,
        ),
        Goal(
            "authorizer warm",
            "lambda_handler / clerk verify_token(jwt_key=PEM)",
            vs_verify,
            f"<= {GOAL_PEER_RATIO}x",
            vs_verify <= GOAL_PEER_RATIO,
            "x",
            f"peer {medians['peer_verify_token']:.0f} us ({peer_vs_floor:.2f}x floor)",
        ),
        Goal(
            "authorizer warm",
            "lambda_handler / clerk authenticate_request(session_token)",
            vs_authenticate,
            f"<= {GOAL_PEER_RATIO}x",
            vs_authenticate <= GOAL_PEER_RATIO,
            "x",
            f"peer {medians['peer_authenticate_request']:.0f} us",
        ),
        Goal(
            "authorizer warm",
            "DynamoDB calls during the timed warm calls",
            float(sum(warm_calls.values())),
            "0",
            not warm_calls,
            "calls",
            "user cached" if not warm_calls else f"{warm_calls}",
        ),
    ]
