"""API Gateway event shapes (HTTP API 2.0, REST 1.0, authorizer inputs) for tests, events/, local stack."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import Any

from usersync_dev.local_aws import ACCOUNT_ID, REGION

API_ID = "localapi01"


def http_api_event(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: list[str] | None = None,
    query: str = "",
    base64_body: bool = False,
    route_key: str | None = None,
    authorizer_context: Mapping[str, Any] | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway HTTP API payload 2.0 proxy event, as Lambda receives it."""
    raw = body.encode() if isinstance(body, str) else body
    now = time.time()
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        "domainPrefix": API_ID,
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": (headers or {}).get("user-agent", "usersync-dev"),
        },
        "requestId": uuid.uuid4().hex,
        "routeKey": route_key or f"{method.upper()} {path}",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if authorizer_context is not None:
        request_context["authorizer"] = {"lambda": dict(authorizer_context)}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": request_context["routeKey"],
        "rawPath": path,
        "rawQueryString": query,
        "headers": {name.lower(): value for name, value in (headers or {}).items()},
        "requestContext": request_context,
        "isBase64Encoded": base64_body,
    }
    if cookies:
        event["cookies"] = list(cookies)
    if raw is not None:
        event["body"] = base64.b64encode(raw).decode() if base64_body else raw.decode()
    return event


def rest_event(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST API (payload 1.0) proxy event; header case is kept as sent."""
    raw = body.encode() if isinstance(body, str) else body
    header_map = dict(headers or {})
    return {
        "resource": path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": header_map,
        "multiValueHeaders": {name: [value] for name, value in header_map.items()},
        "queryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "httpMethod": method.upper(),
            "path": f"/prod{path}",
            "resourcePath": path,
            "stage": "prod",
            "requestId": uuid.uuid4().hex,
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None if raw is None else (base64.b64encode(raw).decode() if base64_body else raw.decode()),
        "isBase64Encoded": base64_body,
    }


def route_arn(method: str, path: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/$default/{method.upper()}{path}"


def method_arn(method: str, path: str, stage: str = "prod") -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{stage}/{method.upper()}{path}"


def http_api_authorizer_event(
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    cookies: list[str] | None = None,
    route_key: str | None = None,
) -> dict[str, Any]:
    """The HTTP API Lambda authorizer REQUEST event, payload format 2.0 (`route_key`: the route API
    Gateway matched, `GET /orders/{id}`; default `METHOD path`)."""
    proxy = http_api_event(method, path, headers=headers, cookies=cookies, route_key=route_key)
    lowered = proxy["headers"]
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": route_arn(method, path),
        "identitySource": [lowered["authorization"]] if "authorization" in lowered else [],
        "routeKey": proxy["routeKey"],
        "rawPath": path,
        "rawQueryString": "",
        "headers": lowered,
        "requestContext": proxy["requestContext"],
    }
    if cookies:
        event["cookies"] = list(cookies)
    return event


def rest_token_authorizer_event(token: str, method: str = "GET", path: str = "/me") -> dict[str, Any]:
    return {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn(method, path)}


def rest_request_authorizer_event(
    method: str, path: str, *, headers: Mapping[str, str] | None = None, resource: str | None = None
) -> dict[str, Any]:
    """A REST REQUEST authorizer event; `resource` is the matched resource template (default: `path`)."""
    proxy = rest_event(method, path, headers=headers)
    proxy["requestContext"]["resourcePath"] = resource or path
    return {
        "type": "REQUEST",
        "methodArn": method_arn(method, path),
        "resource": resource or path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": proxy["headers"],
        "multiValueHeaders": proxy["multiValueHeaders"],
        "queryStringParameters": {},
        "pathParameters": {},
        "stageVariables": {},
        "requestContext": proxy["requestContext"],
    }
