"""A real browser uses the local stack's API from another origin (CONTRACT §10, issue 24).

Headless Chromium loads a page from one origin (a page server on 127.0.0.1:<p>) that calls `/me` on
`usersync-dev serve`'s API on another origin (127.0.0.1:<q>), with `CorsAllowedOrigins` naming the page's
origin: in header mode with a Bearer token (a preflighted request), in cookie mode with the `__session`
cookie sent by `credentials: "include"`, and from a second page origin the stack does not list, which
the browser must block.

Origins: everything is on 127.0.0.1, told apart by port. A port makes another *origin* (so CORS applies)
but not another *site*: cookies ignore ports, so the `__session` cookie the page sets on 127.0.0.1 is
sent to the API on 127.0.0.1:<q>, and a same-site request carries a SameSite=Lax cookie. `localhost`
vs `127.0.0.1` would be two sites: the page's cookie would never reach the API, as a Clerk cookie on
app.example.com never reaches api.other-domain.com. (Deployed, the API sits on a subdomain of the app's
site for the same reason.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.pages import PageServer, page_server
from tests.integration.dev_stack import RunningStack, dev_token, local_stack, send_webhook
from usersync_dev.clerk import clerk_event, clerk_user, new_user_id

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

# One worker: Chromium and the two local stacks are started once for the module.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("browser")]

EMAIL = "grace@example.com"


@dataclass(frozen=True)
class Origins:
    app: PageServer  # listed in CorsAllowedOrigins
    stranger: PageServer  # not listed


@dataclass(frozen=True)
class Api:
    stack: RunningStack
    user_id: str
    token: str


@pytest.fixture(scope="module")
def origins() -> Iterator[Origins]:
    with page_server() as app, page_server() as stranger:
        yield Origins(app, stranger)


def _api(home: Path, origins: Origins, *overrides: str) -> Iterator[Api]:
    with local_stack(home, f"CorsAllowedOrigins={origins.app.origin}", *overrides) as stack:
        user_id = new_user_id()
        event = clerk_event("user.created", clerk_user(user_id, email=EMAIL, first_name="Grace"))
        assert send_webhook(stack, event) == (200, {"status": "applied"})
        yield Api(stack, user_id, dev_token(stack, user_id, EMAIL, "Grace"))


@pytest.fixture(scope="module")
def header_api(tmp_path_factory: pytest.TempPathFactory, origins: Origins) -> Iterator[Api]:
    yield from _api(tmp_path_factory.mktemp("header"), origins)


@pytest.fixture(scope="module")
def cookie_api(tmp_path_factory: pytest.TempPathFactory, origins: Origins) -> Iterator[Api]:
    yield from _api(tmp_path_factory.mktemp("cookie"), origins, "AuthMode=cookie")


@dataclass
class Visit:
    result: dict[str, Any]
    console: list[str]


def _call_me(context: BrowserContext, page_origin: str, api: Api, *, cookie: bool) -> Visit:
    """Open the page at `page_origin` and let it fetch `/me` from the API, as the app would."""
    context.clear_cookies()
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        page.goto(page_origin + "/")
        argument = {
            "api": api.stack.gateway_url,
            "token": None if cookie else api.token,
            "cookieToken": api.token if cookie else None,
        }
        result = page.evaluate("argument => window.callMe(argument)", argument)
    finally:
        page.close()
    assert isinstance(result, dict)
    return Visit(result, console)


def _profile_of(api: Api, visit: Visit) -> None:
    assert "error" not in visit.result, (visit.result, visit.console)
    assert visit.result["status"] == 200
    body = visit.result["body"]
    assert (body["userId"], body["email"], body["firstName"]) == (api.user_id, EMAIL, "Grace")


def _blocked_by_cors(visit: Visit) -> None:
    # fetch() rejects with a TypeError: the page learns nothing, not even the status.
    assert visit.result.get("error", "").startswith("TypeError"), visit.result
    assert any("blocked by CORS policy" in line for line in visit.console), visit.console


def test_header_mode_bearer_token_from_an_allowed_origin(
    browser_context: BrowserContext, origins: Origins, header_api: Api
) -> None:
    _profile_of(header_api, _call_me(browser_context, origins.app.origin, header_api, cookie=False))


def test_cookie_mode_session_cookie_with_credentials_from_an_allowed_origin(
    browser_context: BrowserContext, origins: Origins, cookie_api: Api
) -> None:
    # No Authorization header: a 200 means Chromium sent the cookie and accepted the credentialed reply.
    _profile_of(cookie_api, _call_me(browser_context, origins.app.origin, cookie_api, cookie=True))


def test_header_mode_disallowed_origin_is_blocked(
    browser_context: BrowserContext, origins: Origins, header_api: Api
) -> None:
    _blocked_by_cors(_call_me(browser_context, origins.stranger.origin, header_api, cookie=False))


def test_cookie_mode_disallowed_origin_is_blocked(
    browser_context: BrowserContext, origins: Origins, cookie_api: Api
) -> None:
    _blocked_by_cors(_call_me(browser_context, origins.stranger.origin, cookie_api, cookie=True))
