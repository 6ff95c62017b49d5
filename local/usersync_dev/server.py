"""The local stack behind `make run`: the whole API in one process, no Docker, no AWS account.

- an in-process moto server on a free 127.0.0.1 port (DynamoDB with the table created from
  template.yaml, CloudWatch receiving the metrics the handlers print as EMF);
- a JWKS for the dev key at `GET /.well-known/jwks.json`, which the authorizer is configured to
  fetch (CLERK_JWKS_URL), as it fetches Clerk's in production;
- an HTTP gateway (werkzeug) whose routes, methods and authorizers are read from the template's
  HttpApi events: each request becomes an API Gateway HTTP API 2.0 event for the real
  `lambda_handler`, after the Lambda authorizer where the template attaches one.

CORS follows the HttpApi's CorsConfiguration (usersync_dev.cors: preflight answered by the gateway).
Differences from API Gateway: no authorizer result cache (the authorizer runs on every request), no
throttling, and function timeouts are not enforced.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import parse_qsl

import boto3
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from usersync_dev import apigw
from usersync_dev.cors import PREFLIGHT_STATUS, CorsPolicy, is_cors_header, is_preflight
from usersync_dev.devstate import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DevSecrets,
    StackInfo,
    clear_stack_info,
    dev_secrets,
    state_dir,
    write_stack_info,
)
from usersync_dev.local_aws import REGION
from usersync_dev.runtime import (
    JWKS_PATH,
    FunctionSpec,
    LocalFunctions,
    Route,
    TemplateError,
    TemplateValues,
    function_specs,
    http_api_cors,
    http_api_routes,
    local_parameters,
)
from usersync_dev.template import create_organizations_table, create_users_table

# How often the gateway's serve loop checks for shutdown (socketserver's default is 0.5 s).
GATEWAY_POLL_SECONDS = 0.1
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
_TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded")


def local_aws_environment(endpoint: str | None) -> dict[str, str]:
    """Process environment for talking to moto: fake credentials, the region, no proxy for loopback."""
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    environment = {
        **LOCAL_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }
    if endpoint:
        environment["AWS_ENDPOINT_URL"] = endpoint
    return environment


def use_local_aws(endpoint: str | None) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(local_aws_environment(endpoint))


def moto_client(service: str, endpoint: str) -> Any:
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def cloudwatch_sink(endpoint: str) -> Any:
    """Forwards captured EMF output to the CloudWatch at `endpoint` (the stack's moto)."""
    from usersync_dev.emf import forward_emf_lines

    client = moto_client("cloudwatch", endpoint)
    return lambda output: forward_emf_lines(output, client)


def _template_rule(route: Route, index: int) -> Rule:
    """Template path → werkzeug rule: `{id}` → `<id>`, greedy `{proxy+}` → `<path:proxy>`."""
    path = route.path
    for name in [part[1:-2] for part in path.split("/") if part.startswith("{") and part.endswith("+}")]:
        path = path.replace(f"{{{name}+}}", f"<path:{name}>")
    path = path.replace("{", "<").replace("}", ">")
    methods = None if route.method == "ANY" else [route.method]
    return Rule(path, endpoint=index, methods=methods)


def _json(status: int, document: Mapping[str, Any]) -> Response:
    return Response(json.dumps(document), status=status, content_type="application/json")


@dataclass(frozen=True)
class _Incoming:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    cookies: list[str]
    body: bytes


def _incoming(request: Request) -> _Incoming:
    """What API Gateway passes on: lower-case headers with repeated values comma-joined, cookies apart."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[lowered] = f"{headers[lowered]},{value}" if lowered in headers else value
    return _Incoming(
        method=request.method,
        path=request.path,
        query=request.query_string.decode("latin-1"),
        headers=headers,
        cookies=cookies,
        body=request.get_data(),
    )


class Gateway:
    """A WSGI app standing in for the HTTP API: routing, Lambda authorizer, proxy integration."""

    def __init__(
        self,
        functions: LocalFunctions,
        routes: list[Route],
        secrets: DevSecrets,
        cors: CorsPolicy | None = None,
    ) -> None:
        self.functions = functions
        self.routes = routes
        self.cors = cors
        self._jwks = json.dumps(secrets.signing_key.jwks())
        # Set when the stack stops: werkzeug's request threads are daemons a stop does not wait for (it
        # must end within 2 s), so a request still being answered then must not log after "stopped".
        self.silenced = False
        self._map = Map(
            [_template_rule(route, index) for index, route in enumerate(routes)], strict_slashes=False
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        started = time.perf_counter()
        response = self.dispatch(request)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if self.silenced:
            return response(environ, start_response)
        print(
            f"{request.method} {request.full_path.rstrip('?')} {response.status_code} {elapsed_ms:.1f}ms",
            flush=True,
        )
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.method == "GET" and request.path == JWKS_PATH:  # the dev Clerk's, not the API's
            return Response(self._jwks, content_type="application/json")
        if self.cors is None:
            return self._route(request)
        origin = request.headers.get("Origin", "")
        if is_preflight(request.method, {name.lower(): value for name, value in request.headers.items()}):
            # A preflight: API Gateway answers it itself, for any path (no route, authorizer or handler).
            requested = request.headers.get("Access-Control-Request-Headers", "")
            preflight = Response(
                status=PREFLIGHT_STATUS, headers=self.cors.preflight_headers(origin, requested)
            )
            preflight.headers.pop("Content-Type", None)  # no body, so no type (werkzeug adds text/plain)
            return preflight
        response = self._route(request)
        # API Gateway ignores the integration's own CORS headers and adds the configured ones.
        for name in {name for name, _ in response.headers if is_cors_header(name)}:
            del response.headers[name]
        if origin:
            for name, value in self.cors.response_headers(origin):
                if name == "Vary" and "Vary" in response.headers:
                    response.headers["Vary"] = f"{response.headers['Vary']}, {value}"
                else:
                    response.headers.add(name, value)
        return response

    def _route(self, request: Request) -> Response:
        try:
            index, path_parameters = self._map.bind_to_environ(request.environ).match()
        except HTTPException:  # unknown path or method: HTTP API answers 404 to both
            return _json(404, {"message": "Not Found"})
        route = self.routes[index]
        incoming = _incoming(request)
        try:
            context = self._authorize(route, incoming)
        except Exception:  # noqa: BLE001 - a raising authorizer is API Gateway's 500, as deployed
            traceback.print_exc()
            return _json(500, {"message": "Internal Server Error"})
        if isinstance(context, Response):
            return context
        event = self._proxy_event(route, incoming, path_parameters, context)
        try:
            result = self.functions.invoke(route.function_id, event)
        except Exception:  # noqa: BLE001 - a raising function is API Gateway's 500, as deployed
            traceback.print_exc()
            return _json(500, {"message": "Internal Server Error"})
        return _proxy_response(result)

    def _authorize(self, route: Route, incoming: _Incoming) -> Response | dict[str, Any] | None:
        """None (no authorizer), the authorizer's context, or the response API Gateway would send."""
        authorizer = route.authorizer
        if authorizer is None:
            return None
        identity = [incoming.headers.get(name.lower(), "") for name in authorizer.identity_headers]
        if not all(identity):  # API Gateway answers 401 itself when an identity source is missing
            return _json(401, {"message": "Unauthorized"})
        if authorizer.payload_version != "2.0":
            raise NotImplementedError(
                f"authorizer payload format {authorizer.payload_version} is not run locally"
            )
        event = apigw.http_api_authorizer_event(
            incoming.method, incoming.path, headers=incoming.headers, cookies=incoming.cookies or None
        )
        event.update(
            {"routeKey": route.route_key, "identitySource": identity, "rawQueryString": incoming.query}
        )
        event["requestContext"]["routeKey"] = route.route_key
        if incoming.query:
            event["queryStringParameters"] = _query_parameters(incoming.query)
        result = self.functions.invoke(authorizer.function_id, event)
        if authorizer.simple_responses:
            allowed = isinstance(result, dict) and result.get("isAuthorized") is True
        else:
            statements = (result or {}).get("policyDocument", {}).get("Statement", [])
            effects = {statement.get("Effect") for statement in statements}
            allowed = "Allow" in effects and "Deny" not in effects
        if not allowed:
            return _json(403, {"message": "Forbidden"})
        context = result.get("context") or {}
        return dict(context)

    @staticmethod
    def _proxy_event(
        route: Route, incoming: _Incoming, path_parameters: Mapping[str, str], context: dict[str, Any] | None
    ) -> dict[str, Any]:
        content_type = incoming.headers.get("content-type", "")
        textual = not incoming.body or any(kind in content_type for kind in _TEXT_TYPES)
        event = apigw.http_api_event(
            incoming.method,
            incoming.path,
            body=incoming.body if incoming.body else None,
            headers=incoming.headers,
            cookies=incoming.cookies or None,
            query=incoming.query,
            base64_body=not textual,
            route_key=route.route_key,
            authorizer_context=context,
        )
        if incoming.query:
            event["queryStringParameters"] = _query_parameters(incoming.query)
        if path_parameters:
            event["pathParameters"] = dict(path_parameters)
        return event


def _query_parameters(query: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


def _proxy_response(result: Any) -> Response:
    """A payload 2.0 handler result as API Gateway turns it into HTTP."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # Without a statusCode, HTTP API assumes 200 and sends the returned value as JSON.
        return _json(200, result) if isinstance(result, dict) else Response(json.dumps(result), status=200)
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(raw, status=int(result["statusCode"]))
    response.headers.pop("Content-Type", None)
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.add(name, str(value))
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


# ---------------------------------------------------------------------------------------- the stack


class LocalStack:
    """moto + table + gateway in this process. `start()` returns once everything accepts requests."""

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        parameter_overrides: Mapping[str, str] | None = None,
        state_directory: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.parameter_overrides = dict(parameter_overrides or {})
        self.state_directory = state_directory or state_dir()
        self.secrets = dev_secrets(self.state_directory)
        self._moto: Any = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.gateway: Gateway | None = None
        self.info: StackInfo | None = None

    def start(self) -> StackInfo:
        from moto.server import ThreadedMotoServer

        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        moto_host, moto_port = self._moto.get_host_and_port()
        moto_endpoint = f"http://{moto_host}:{moto_port}"
        use_local_aws(moto_endpoint)
        # Bind first: the authorizer's JWKS URL needs the gateway's real port (port 0 = any free one).
        self._server = make_server(self.host, self.port, self._app, threaded=True)
        gateway_url = f"http://{self.host}:{self._server.server_port}"
        values = TemplateValues(
            local_parameters(
                self.secrets, jwks_url=gateway_url + JWKS_PATH, overrides=self.parameter_overrides
            )
        )
        specs = function_specs(values, self.secrets)
        table_name = _users_table_name(specs)
        create_users_table(moto_client("dynamodb", moto_endpoint), table_name)
        organizations_table = _table_name(specs, "ORGANIZATIONS_TABLE_NAME")
        create_organizations_table(moto_client("dynamodb", moto_endpoint), organizations_table)
        functions = LocalFunctions(specs, metrics_sink=cloudwatch_sink(moto_endpoint))
        routes = http_api_routes(values)
        self.gateway = Gateway(functions, routes, self.secrets, _one_cors_policy(routes, values))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": GATEWAY_POLL_SECONDS},
            name="gateway",
            daemon=True,
        )
        self._thread.start()
        self.info = StackInfo(
            pid=os.getpid(),
            gateway_url=gateway_url,
            moto_endpoint=moto_endpoint,
            table_name=table_name,
            organizations_table_name=organizations_table,
        )
        write_stack_info(self.info, self.state_directory)
        return self.info

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self.gateway is None:
            return _json(503, {"message": "Service Unavailable"})(environ, start_response)
        return self.gateway(environ, start_response)

    def stop(self) -> None:
        """Stop whatever `start()` got to (it may have been interrupted half-way) and free the ports.

        The gateway and moto shut down in parallel: each `shutdown()` waits for its server's next poll.
        """
        if self.info is not None:
            clear_stack_info(self.info.pid, self.state_directory)
        if self.gateway is not None:
            self.gateway.silenced = True
        stoppers = [
            threading.Thread(target=self._stop_gateway, name="stop-gateway", daemon=True),
            threading.Thread(target=self._stop_moto, name="stop-moto", daemon=True),
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def _stop_gateway(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # shutdown() waits for serve_forever to acknowledge: it would wait forever if never started.
        if self._thread is not None and self._thread.is_alive():
            server.shutdown()
        server.server_close()

    def _stop_moto(self) -> None:
        moto, self._moto = self._moto, None
        if moto is not None:
            moto.stop()


def _one_cors_policy(routes: list[Route], values: TemplateValues) -> CorsPolicy | None:
    """The CORS configuration of the one HttpApi the routes belong to (one gateway serves one API)."""
    apis = sorted({route.api_id for route in routes})
    policies = {api_id: http_api_cors(api_id, values) for api_id in apis}
    if len(set(policies.values())) > 1:
        raise TemplateError(f"the local gateway serves one API; these differ in CORS: {', '.join(apis)}")
    return next(iter(policies.values()), None)


def _users_table_name(specs: Mapping[str, FunctionSpec]) -> str:
    return _table_name(specs, "USERS_TABLE_NAME")


def _table_name(specs: Mapping[str, FunctionSpec], variable: str) -> str:
    """The one table name the functions' `variable` holds."""
    (name,) = {spec.environment[variable] for spec in specs.values() if variable in spec.environment}
    return name


def cli_command() -> str:
    """How to run `usersync-dev` from the current directory: the venv's script, relative when possible."""
    script = Path(sys.executable).parent / "usersync-dev"
    if not script.exists():
        return f"{sys.executable} -m usersync_dev"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def banner(stack: LocalStack) -> str:
    assert stack.info is not None
    assert stack.gateway is not None
    info, gateway = stack.info, stack.gateway
    url = info.gateway_url
    lines = [f"usersync local stack: {url}  (routes and authorizer from template.yaml)"]
    for route in gateway.routes:
        spec = gateway.functions.specs[route.function_id]
        guard = f"authorizer {route.authorizer.name}" if route.authorizer else "public"
        missing = "" if gateway.functions.available(route.function_id) else "  [handler not written yet]"
        lines.append(
            f"  {route.method:<6} {route.path:<20} -> functions/{spec.name}/app.py ({guard}){missing}"
        )
    lines.append(f"  {gateway.cors.describe()}" if gateway.cors else "  CORS: off (CorsAllowedOrigins empty)")
    for spec in gateway.functions.specs.values():
        for variable in spec.unresolved:
            lines.append(f"  warning: {spec.logical_id}: environment variable {variable} left unset locally")
    try:
        secrets_path = str((stack.state_directory / "dev-secrets.json").relative_to(Path.cwd()))
    except ValueError:
        secrets_path = str(stack.state_directory / "dev-secrets.json")
    lines += [
        f"  JWKS of the dev key: {url}{JWKS_PATH}  (dev key and whsec_ secret in {secrets_path})",
        f"  moto (DynamoDB table {info.table_name}, CloudWatch metrics): {info.moto_endpoint}",
        "",
        "Try it from another terminal in this directory (paste the lines):",
        "",
    ]
    command = cli_command()
    user = "user_2dev0ada0lovelace0000000"
    email = "ada@example.com"
    curl = "curl -sS --fail-with-body --max-time 10 -w '\\n'"
    # Commands are indented 4 spaces, their captions 2: no `#` comments, which zsh would try to run.
    org = "org_2dev0analytical0engines00"
    lines += [
        "  1. Send a signed Clerk user.created webhook, as Svix delivers it:",
        f"    {command} webhook created --user-id {user} --email {email} --first-name Ada",
        "  2. Create an organization and make that user its admin (organization, then membership event):",
        f"    {command} webhook organization.created --org-id {org} --name 'Analytical Engines'",
        f"    {command} webhook organizationMembership.created --org-id {org} --user-id {user}"
        f" --role org:admin --name 'Analytical Engines'",
        "  3. Mint a 60-second session token for that user and call the protected route with it"
        " (profile and organizations):",
        f"    TOKEN=$({command} token --sub {user} --email {email} --first-name Ada)",
        f'    {curl} -H "Authorization: Bearer $TOKEN" {url}/me',
        "  3b. The same, acting in that organization (the authorizer adds orgId, orgSlug, orgRole):",
        f"    TOKEN=$({command} token --sub {user} --email {email} --org-id {org}"
        " --org-slug analytical-engines --org-role admin)",
        f'    {curl} -H "Authorization: Bearer $TOKEN" {url}/me',
        "  4. The public health check (table reachable, sync failure rate from the local CloudWatch):",
        f"    {curl} {url}/health",
    ]
    lines += route_requirement_examples(stack, command=command, user=user, email=email, org=org)
    lines += [
        "",
        "One line per request (method path status time) follows, with the handlers' logs. Ctrl-C stops.",
    ]
    return "\n".join(lines)


DEMO_REQUIREMENTS = '{"GET /me":{"role":"org:admin"}}'


def _token_options(requirement: Any, org: str) -> str:
    """`usersync-dev token` options for a token that meets `requirement` (usersync.clerk.permissions)."""
    options = []
    if requirement.role is not None or requirement.permission is not None:
        role = requirement.role or "org:member"
        options.append(f"--org-id {org} --org-role {role}")
    if requirement.permission is not None:
        options.append(f"--permission {requirement.permission}")
    for flag, value in (("--feature", requirement.feature), ("--plan", requirement.plan)):
        if value is not None:
            scope, name = value
            options.append(f"{flag} {'o' if scope == 'org' else 'u'}:{name}")
    return " ".join(options)


def route_requirement_examples(
    stack: LocalStack, *, command: str, user: str, email: str, org: str
) -> list[str]:
    """Step 5 of the banner: one allowed and one forbidden call under the route requirements in force
    (RouteRequirements), or, when none are, the same two calls after a restart with a demo requirement."""
    from usersync.api.route_requirements import RouteRequirements

    assert stack.info is not None
    assert stack.gateway is not None
    url = stack.info.gateway_url
    curl = "curl -sS -w ' %{http_code}\\n'"
    protected = [route for route in stack.gateway.routes if route.authorizer is not None]
    configured: str | None = None
    for route in protected:
        if route.authorizer is not None:
            environment = stack.gateway.functions.specs[route.authorizer.function_id].environment
            configured = configured or environment.get("CLERK_ROUTE_REQUIREMENTS")
    requirements = RouteRequirements.parse(configured or DEMO_REQUIREMENTS)
    served = [(route, requirements.for_route_key(route.route_key)) for route in protected]
    guarded = [(route, requirement) for route, requirement in served if requirement is not None]
    title = "  5. Who may call which route (RouteRequirements, docs/authorization.md)"
    # A key naming no route protects nothing (a typo leaves the real route open): say so.
    routes = {route.route_key for route in stack.gateway.routes}
    warnings = [
        f"  warning: RouteRequirements names {key!r}, which is no route of template.yaml: it guards nothing"
        for key, _ in (requirements.items() if configured else [])
        if key not in routes
    ]
    if not guarded:
        keys = ", ".join(key for key, _ in requirements.items())
        served_keys = ", ".join(route.route_key for route in protected)
        return [f"{title}: none of [{keys}] is served locally (protected here: {served_keys})", *warnings]
    route, requirement = guarded[0]
    if configured is None:  # captions only: every command printed must work when pasted now
        return [
            f"{title}: none configured. For one call allowed and one forbidden (403), restart with:"
            f" make run ROUTE_REQUIREMENTS='{DEMO_REQUIREMENTS}'"
        ]
    path = route.path if "{" not in route.path else route.path.split("{")[0]
    return [
        f"{title}: {route.route_key} needs {requirement.describe()}.",
        "  5a. Allowed: a token that meets it (200):",
        f"    TOKEN=$({command} token --sub {user} --email {email} {_token_options(requirement, org)})",
        f'    {curl} -H "Authorization: Bearer $TOKEN" {url}{path}',
        "  5b. Forbidden: a session without it (403, and a `forbidden` denial naming what is missing below):",
        f"    TOKEN=$({command} token --sub {user} --email {email})",
        f'    {curl} -H "Authorization: Bearer $TOKEN" {url}{path}',
        *warnings,
    ]


class StopRequested(BaseException):
    """Raised in the main thread by the first SIGINT/SIGTERM (a BaseException, like KeyboardInterrupt,
    so no `except Exception` on the way swallows it)."""


# A second signal during shutdown exits at once, as a second Ctrl-C does in most servers.
FORCED_EXIT_STATUS = 130
# Shutdown normally takes well under a second (werkzeug polls every 0.5 s); past this a watchdog ends
# the process anyway, so a stuck thread can never keep the port bound.
SHUTDOWN_DEADLINE_SECONDS = 1.5
# The main thread waits in short sleeps, not one long one. The kernel may deliver SIGTERM to any thread
# of the process (a request's, moto's); Python then runs the handler in the main thread, but only once
# that thread runs again: a sleep of an hour was not cut short, and a CI run saw a stack ignore SIGTERM
# for 2 s. At most this long passes before the handler runs.
SIGNAL_CHECK_SECONDS = 0.1


class StopSignals:
    """SIGINT/SIGTERM handling that cannot deadlock.

    A Python signal handler runs in the main thread between bytecodes, possibly while that thread
    holds a lock (an Event's, a logging handler's, stdout's). So the handler takes no lock and does
    no I/O: the first signal raises `StopRequested` (interrupting `time.sleep` or startup, exactly as
    the default SIGINT raises KeyboardInterrupt), a signal after that calls `os._exit`.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            os._exit(FORCED_EXIT_STATUS)
        self.received = signum
        raise StopRequested(signum)


def _force_exit_after(seconds: float) -> None:
    """A daemon watchdog that ends the process if shutdown has not finished in `seconds`."""
    timer = threading.Timer(seconds, os._exit, args=(FORCED_EXIT_STATUS,))
    timer.daemon = True
    timer.start()


def serve(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    parameter_overrides: Mapping[str, str] | None = None,
) -> int:
    """`usersync-dev serve`: run until Ctrl-C or SIGTERM, then stop everything within 2 s."""
    # Our gateway logs one line per request itself; werkzeug's (and moto's, per AWS call) would be noise.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stack = LocalStack(host=host, port=port, parameter_overrides=parameter_overrides)
    signals = StopSignals()
    signals.install()
    try:
        stack.start()
        print(banner(stack), flush=True)
        while True:  # the signal handler raises out of this sleep
            time.sleep(SIGNAL_CHECK_SECONDS)
    except StopRequested:
        pass
    finally:
        # From here on a signal forces the exit: mark the stop as begun before anything can block.
        if signals.received is None:
            signals.received = 0
        _force_exit_after(SHUTDOWN_DEADLINE_SECONDS)
        stack.stop()
    # The real stdout: a request still in flight may have swapped sys.stdout to capture a handler's output.
    print("usersync local stack stopped", file=sys.__stdout__, flush=True)
    return 0


def exit_now(status: int) -> NoReturn:
    """End the process once the stack is stopped, skipping interpreter teardown.

    Everything that needs closing is closed by then (servers, sockets, the state record); tearing down
    moto's large module graph would only add about a second before the shell prompt returns.
    """
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(status)
