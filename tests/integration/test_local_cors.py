"""The local stack applies the template's CORS configuration as API Gateway HTTP API does (CONTRACT §10).

`CorsAllowedOrigins` and `AuthMode` drive the HttpApi's `CorsConfiguration` (template.yaml); the stack
(`usersync-dev serve --parameter-overrides ...`, as a developer runs it) must answer preflights itself,
echo an allowed origin on actual responses, allow credentials only in cookie mode, and give a disallowed
origin no CORS header at all. The rules and their AWS source: usersync_dev/cors.py. A real browser
exercising the same stack: tests/browser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.dev_stack import (
    RunningStack,
    dev_token,
    local_stack,
    request,
    send_webhook,
)
from usersync_dev.clerk import clerk_event, clerk_user, new_user_id

pytestmark = pytest.mark.slow

APP = "http://localhost:5173"
OTHER_APP = "https://admin.example.com"
EVIL = "https://evil.example.com"
ORIGINS = f"CorsAllowedOrigins={APP},{OTHER_APP}"


@dataclass
class Stack:
    running: RunningStack
    user_id: str
    token: str

    def url(self, path: str) -> str:
        return self.running.gateway_url + path


def _stack_with_a_user(tmp_path_factory: pytest.TempPathFactory, *overrides: str) -> Iterator[Stack]:
    with local_stack(tmp_path_factory.mktemp("stack"), *overrides) as running:
        user_id = new_user_id()
        created = send_webhook(
            running, clerk_event("user.created", clerk_user(user_id, email="c@example.com"))
        )
        assert created == (200, {"status": "applied"})
        yield Stack(running, user_id, dev_token(running, user_id, "c@example.com"))


@pytest.fixture(scope="module")
def header_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _stack_with_a_user(tmp_path_factory, ORIGINS)


@pytest.fixture(scope="module")
def cookie_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _stack_with_a_user(tmp_path_factory, ORIGINS, "AuthMode=cookie")


def _preflight(stack: Stack, path: str, origin: str, headers: str = "authorization") -> dict[str, str]:
    reply = request(
        "OPTIONS",
        stack.url(path),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": headers,
        },
    )
    # Answered by the gateway itself: 204, no body, whatever the route's authorizer would say.
    assert (reply.status, reply.body) == (204, b"")
    return reply.cors_headers()


# ------------------------------------------------------------------------------------ header mode


def test_header_mode_preflight_echoes_an_allowed_origin_without_credentials(header_stack: Stack) -> None:
    for origin in (APP, OTHER_APP):
        assert _preflight(header_stack, "/me", origin) == {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": "GET,POST,OPTIONS",
            "access-control-allow-headers": "authorization,content-type",
            "access-control-max-age": "600",
        }


def test_preflight_is_answered_for_every_path_before_any_authorizer(header_stack: Stack) -> None:
    # /me needs an Authorization header (a 401 from the gateway otherwise): the preflight has none.
    for path in ("/me", "/health", "/webhooks/clerk", "/no-such-route"):
        assert _preflight(header_stack, path, APP)["access-control-allow-origin"] == APP


def test_a_disallowed_origin_gets_no_cors_header(header_stack: Stack) -> None:
    assert _preflight(header_stack, "/me", EVIL) == {}
    # An origin differing only by scheme or port is another origin.
    assert _preflight(header_stack, "/me", "http://localhost:5174") == {}
    assert _preflight(header_stack, "/me", "https://localhost:5173") == {}
    reply = request(
        "GET",
        header_stack.url("/me"),
        headers={"Origin": EVIL, "Authorization": f"Bearer {header_stack.token}"},
    )
    assert reply.status == 200  # the server answers; the browser is what withholds it from the page
    assert reply.cors_headers() == {}


def test_header_mode_actual_request_carries_the_allowed_origin(header_stack: Stack) -> None:
    reply = request(
        "GET",
        header_stack.url("/me"),
        headers={"Origin": APP, "Authorization": f"Bearer {header_stack.token}"},
    )
    assert reply.status == 200
    assert json.loads(reply.body)["userId"] == header_stack.user_id
    assert reply.cors_headers() == {"access-control-allow-origin": APP}
    assert "Origin" in (reply.header("Vary") or "")


def test_gateway_answers_carry_cors_headers_too(header_stack: Stack) -> None:
    # 401 (no identity source) and 403 (authorizer deny) come from the gateway: readable by the app.
    unauthenticated = request("GET", header_stack.url("/me"), headers={"Origin": APP})
    assert unauthenticated.status == 401
    assert unauthenticated.cors_headers() == {"access-control-allow-origin": APP}
    denied = request("GET", header_stack.url("/me"), headers={"Origin": APP, "Authorization": "Bearer nope"})
    assert denied.status == 403
    assert denied.cors_headers() == {"access-control-allow-origin": APP}


def test_without_origin_there_is_no_cors_and_options_is_routed_as_usual(header_stack: Stack) -> None:
    plain = request("GET", header_stack.url("/health"))
    assert plain.status in (200, 503)
    assert plain.cors_headers() == {}
    # OPTIONS without Access-Control-Request-Method is not a preflight: no OPTIONS route, so 404.
    assert request("OPTIONS", header_stack.url("/me"), headers={"Origin": APP}).status == 404


# ------------------------------------------------------------------------------------ cookie mode


def test_cookie_mode_preflight_allows_credentials(cookie_stack: Stack) -> None:
    assert _preflight(cookie_stack, "/me", APP, headers="content-type") == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET,POST,OPTIONS",
        "access-control-allow-headers": "authorization,content-type",
        "access-control-max-age": "600",
    }
    assert _preflight(cookie_stack, "/me", EVIL) == {}


def test_cookie_mode_actual_request_with_the_session_cookie(cookie_stack: Stack) -> None:
    reply = request(
        "GET", cookie_stack.url("/me"), headers={"Origin": APP, "Cookie": f"__session={cookie_stack.token}"}
    )
    assert reply.status == 200
    assert json.loads(reply.body)["userId"] == cookie_stack.user_id
    assert reply.cors_headers() == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
    }
    assert "Origin" in (reply.header("Vary") or "")
    blocked = request(
        "GET", cookie_stack.url("/me"), headers={"Origin": EVIL, "Cookie": f"__session={cookie_stack.token}"}
    )
    assert blocked.cors_headers() == {}


# ------------------------------------------------------------------------------------ no CORS


def test_without_cors_origins_the_stack_answers_no_preflight(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with local_stack(tmp_path_factory.mktemp("stack")) as running:
        preflight = request(
            "OPTIONS",
            running.gateway_url + "/me",
            headers={"Origin": APP, "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status == 404
        assert preflight.cors_headers() == {}
        health = request("GET", running.gateway_url + "/health", headers={"Origin": APP})
        assert health.cors_headers() == {}
        assert any("CORS: off" in line for line in running.banner())
