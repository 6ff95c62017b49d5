"""Test support: loading handlers as Lambda would, a Lambda context, driving the webhook handler,
and reading emitted EMF and logs."""

from __future__ import annotations

import io
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from usersync_dev.apigw import http_api_event, rest_event
from usersync_dev.clerk import SignedDelivery, sign_delivery
from usersync_dev.emf import emf_metrics
from usersync_dev.handlers import load_function
from usersync_dev.local_aws import LocalLambdaContext as FakeLambdaContext

__all__ = ["FakeLambdaContext", "load_function"]  # the one Lambda-context stand-in, and the loader

REPO_ROOT = Path(__file__).resolve().parents[1]


class Response(NamedTuple):
    """A proxy-integration answer with its JSON body parsed; unpacks as `status, body`."""

    status: int
    body: dict[str, Any]


def check_http_response(response: Any) -> Response:
    """Assert the shape API Gateway needs from a proxy integration, and return it parsed."""
    assert isinstance(response, dict), response
    assert type(response["statusCode"]) is int
    assert 100 <= response["statusCode"] <= 599
    assert isinstance(response["body"], str)
    body = json.loads(response["body"])
    assert isinstance(body, dict)
    headers = response.get("headers", {})
    assert isinstance(headers, dict)
    assert all(isinstance(v, str) for v in headers.values())
    return Response(response["statusCode"], body)


class WebhookDriver:
    """Signs deliveries as Svix does and hands them to the real webhook handler as API Gateway would."""

    def __init__(self, module: ModuleType, secret: str, context: FakeLambdaContext) -> None:
        self.module = module
        self.secret = secret
        self.context = context

    def sign(self, payload: dict[str, Any] | bytes, **kwargs: Any) -> SignedDelivery:
        return sign_delivery(self.secret, payload, **kwargs)

    def invoke(self, event: Any) -> Response:
        # Each invocation gets its own remaining time, as on Lambda: a long property test must not
        # run the one context's clock down to a time-budget 503.
        fresh = replace(self.context, _started=time.monotonic())
        return check_http_response(self.module.lambda_handler(event, fresh))

    def post(
        self,
        delivery: SignedDelivery,
        *,
        fmt: str = "http",
        base64_body: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """`delivery` as an HTTP API (`http`) or REST (`rest`) event; `headers` replace its own."""
        build = http_api_event if fmt == "http" else rest_event
        sent = dict(headers) if headers is not None else delivery.headers
        return self.invoke(
            build("POST", "/webhooks/clerk", body=delivery.body, headers=sent, base64_body=base64_body)
        )

    def send(self, payload: dict[str, Any], **kwargs: Any) -> Response:
        """Sign `payload` and post it (`kwargs` as for `post`)."""
        return self.post(self.sign(payload), **kwargs)

    def deliver(self, message_id: str, payload: dict[str, Any]) -> Response:
        """One (re)delivery: Svix keeps the id and body, and signs with a fresh timestamp."""
        return self.post(self.sign(json.dumps(payload).encode(), message_id=message_id))


@dataclass(frozen=True)
class EmittedMetric:
    """One value of one metric a handler printed as EMF."""

    name: str
    value: float
    dimensions: dict[str, str]
    namespace: str


def emitted_metrics(stdout: str) -> list[EmittedMetric]:
    """Every metric value in the EMF documents printed to stdout (read by the local stack's parser)."""
    return [
        EmittedMetric(metric.name, value, metric.dimensions, metric.namespace)
        for metric in emf_metrics(stdout)
        for value in metric.values
    ]


def metric_counts(stdout: str, source: str | None = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    for metric in emitted_metrics(stdout):
        if source is None or metric.dimensions.get("Source") == source:
            counts[metric.name] += int(metric.value)
    return counts


class LogCapture:
    """Collects what the shared Powertools logger writes (it keeps the stream it was created with,
    so capsys alone misses it): a handler with the logger's own JSON formatter on a StringIO."""

    def __init__(self) -> None:
        from usersync.runtime.observability import logger

        self._logger = logging.getLogger(logger.name)  # the stdlib logger Powertools writes through
        self._buffer = io.StringIO()
        self._handler = logging.StreamHandler(self._buffer)
        self._handler.setFormatter(logger.registered_formatter)
        self._logger.addHandler(self._handler)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)

    @property
    def text(self) -> str:
        return self._buffer.getvalue()

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


# The authorizer context of Clerk's documented example session tokens
# (usersync_dev.clerk.clerk_documented_claims): v1 and v2 must both give exactly this.
DOCS_CONTEXT = {
    "userId": "user_123",
    "email": "ada@example.com",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "sessionId": "sess_123",
    "orgId": "org_123",
    "orgSlug": "org-slug",
    "orgRole": "org:admin",
    "actorId": "user_456",
}
# What each version adds (CONTRACT §5 "Who may call which route"): v2 decodes `o.per`/`o.fpm` over `fea`
# (fpm 3,2 over read,manage) and passes `fea`/`pla` on; v1 carries `org_permissions` as a list.
DOCS_AUTHORIZATION_CONTEXT = {
    2: {
        "orgPermissions": "org:dashboard:read,org:dashboard:manage,org:impersonation:manage",
        "features": "o:dashboard,o:impersonation",
        "plan": "u:free,o:pro",
    },
    1: {"orgPermissions": "org:admin:example_permission,org:member:example_permission"},
}


def docs_context(version: int) -> dict[str, str]:
    """The authorizer context of Clerk's documented example token of `version`."""
    return DOCS_CONTEXT | DOCS_AUTHORIZATION_CONTEXT[version]


# ------------------------------------------------------------------------ invoking handlers

# `invoke_function(name, event)` (tests/conftest.py): functions/<name>/app.py's handler, as Lambda calls it.
InvokeFunction = Callable[[str, dict[str, Any]], dict[str, Any]]


# ------------------------------------------------ the authorizer called as API Gateway does


def bearer_authorizer_event(token: str) -> dict[str, Any]:
    """`GET /me` with `token` in a Bearer header, as an HTTP API hands it to a Lambda authorizer."""
    from usersync_dev.apigw import http_api_authorizer_event

    return http_api_authorizer_event("GET", "/me", headers={"authorization": f"Bearer {token}"})


def authorize_bearer(module: ModuleType, context: FakeLambdaContext, token: str) -> dict[str, Any]:
    """The authorizer handler's answer to `GET /me` with `token` in a Bearer header."""
    response: dict[str, Any] = module.lambda_handler(bearer_authorizer_event(token), context)
    return response
