"""Running the template's functions in-process: their environment, routes and authorizers read from
template.yaml, handlers loaded as Lambda loads them, EMF metrics forwarded to the local CloudWatch.

Shared by the local stack (`usersync-dev serve`) and `usersync-dev invoke`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from usersync_dev.cors import CorsConfigurationError, CorsPolicy
from usersync_dev.devstate import DEV_AUTHORIZED_PARTY, DEV_ISSUER, DevSecrets
from usersync_dev.handlers import import_handler
from usersync_dev.local_aws import ACCOUNT_ID, REGION, LocalLambdaContext
from usersync_dev.template import REPO_ROOT, template

LOCAL_STAGE = "local"
JWKS_PATH = "/.well-known/jwks.json"
_NO_VALUE = object()


class TemplateError(ValueError):
    """template.yaml uses something the local runtime cannot reproduce."""


# ---------------------------------------------------------------------------------------- intrinsics
# Hand-written: only the handful of intrinsics our Globals/Environment/names use. The full resolvers
# live in sam-cli (a large dependency, and Docker-oriented); this one fails loudly on anything else.


@dataclass(frozen=True)
class TemplateValues:
    """Parameter values and pseudo parameters used to resolve !Ref / !Sub / !If locally."""

    parameters: Mapping[str, str]

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"usersync-{LOCAL_STAGE}",
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = template()["Resources"].get(name)
        if resource is None:
            raise TemplateError(f"!Ref {name}: no such parameter or resource")
        properties = resource.get("Properties", {})
        physical = next((properties[key] for key in ("TableName", "FunctionName") if key in properties), None)
        name_value = self.resolve(physical) if physical is not None else _NO_VALUE
        if name_value is not _NO_VALUE:
            return name_value
        # No physical name: CloudFormation generates `<stack>-<logical id>-<suffix>`; locally the same
        # without the random suffix, so restarts find the same table.
        return f"{self.ref('AWS::StackName')}-{name}"

    def condition(self, name: str) -> bool:
        return self._truth(template().get("Conditions", {})[name])

    def _truth(self, node: Any) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            ((function, argument),) = node.items()
            if function == "Fn::Not":
                return not self._truth(argument[0])
            if function == "Fn::And":
                return all(self._truth(item) for item in argument)
            if function == "Fn::Or":
                return any(self._truth(item) for item in argument)
            if function == "Fn::Equals":
                left, right = (self.resolve(item) for item in argument)
                return bool(left == right)
            if function == "Condition":
                return self.condition(argument)
        raise TemplateError(f"unsupported condition {node!r}")

    def resolve(self, node: Any) -> Any:
        if isinstance(node, bool):
            return str(node).lower()
        if isinstance(node, int | float):
            return str(node)
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            return {key: self.resolve(value) for key, value in node.items()}
        ((function, argument),) = node.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda match: str(
                    self.resolve(variables[match[1]]) if match[1] in variables else self.ref(match[1])
                ),
                text,
            )
        if function == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.condition(name) else when_false)
        if function == "Fn::Split":
            delimiter, text = argument
            return str(self.resolve(text)).split(delimiter)
        if function.startswith("Fn::") or function == "Condition":
            raise TemplateError(f"unsupported intrinsic {function}")
        return {function: self.resolve(argument)}


def local_parameters(
    secrets: DevSecrets, *, jwks_url: str | None, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Template parameters for the local stack: defaults, then local values, then `overrides`.

    With a JWKS URL the authorizer fetches keys as in production; without one (no gateway running)
    it gets the dev public key as CLERK_JWT_KEY (networkless).
    """
    # A parameter without a default (a deploy-time ARN, say) is empty locally, as an unset one would be.
    values = {name: str(spec.get("Default", "")) for name, spec in template().get("Parameters", {}).items()}
    values.update(
        {
            "Stage": LOCAL_STAGE,
            "ClerkWebhookSecretArn": "",  # the dev secret is passed inline instead, see function_environment
            "ClerkJwksUrl": jwks_url or "",
            "ClerkJwtKey": "" if jwks_url else secrets.public_pem(),
            "ClerkIssuer": DEV_ISSUER,
            "ClerkAuthorizedParties": DEV_AUTHORIZED_PARTY,
            "AlarmTopicArn": "",
        }
    )
    values.update(overrides or {})
    return values


# ---------------------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    module_file: str
    handler_name: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    unresolved: tuple[str, ...] = ()  # variables left out: the template uses what we cannot resolve

    @property
    def name(self) -> str:
        """The folder name (`webhook`, `me`...), which is what `usersync-dev invoke` takes."""
        return self.code_dir.name

    @property
    def handler_path(self) -> Path:
        return self.code_dir / f"{self.module_file}.py"


def function_specs(values: TemplateValues, secrets: DevSecrets) -> dict[str, FunctionSpec]:
    """Every AWS::Serverless::Function, by logical id, with Globals merged and local values filled in."""
    globals_function = template().get("Globals", {}).get("Function", {})
    specs: dict[str, FunctionSpec] = {}
    for logical_id, resource in template()["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = {**globals_function, **resource.get("Properties", {})}
        variables = {
            **globals_function.get("Environment", {}).get("Variables", {}),
            **resource.get("Properties", {}).get("Environment", {}).get("Variables", {}),
        }
        environment = {}
        unresolved = []
        for name, raw in variables.items():
            try:
                value = values.resolve(raw)
            except TemplateError as exc:
                unresolved.append(f"{name} ({exc})")
                continue
            if value is not _NO_VALUE:
                environment[name] = str(value)
        if "CLERK_WEBHOOK_SECRET_ARN" in environment:
            # No Secrets Manager locally: the function gets the dev secret inline, as the settings allow.
            del environment["CLERK_WEBHOOK_SECRET_ARN"]
            environment["CLERK_WEBHOOK_SIGNING_SECRET"] = secrets.webhook_secret
        environment["POWERTOOLS_TRACE_DISABLED"] = "true"
        environment["AWS_LAMBDA_FUNCTION_NAME"] = f"usersync-{LOCAL_STAGE}-{logical_id}"
        module_file, _, handler_name = str(properties["Handler"]).rpartition(".")
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=(REPO_ROOT / str(properties["CodeUri"])).resolve(),
            module_file=module_file,
            handler_name=handler_name,
            environment=environment,
            timeout_seconds=int(properties.get("Timeout", 3)),
            memory_mb=int(properties.get("MemorySize", 128)),
            unresolved=tuple(unresolved),
        )
    return specs


# ---------------------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class AuthorizerSpec:
    name: str
    function_id: str
    payload_version: str
    simple_responses: bool
    identity_headers: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str  # as in the template: /users/{id}
    function_id: str
    authorizer: AuthorizerSpec | None
    api_id: str = "ServerlessHttpApi"

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def _logical_id(node: Any) -> str:
    """The resource a !Ref / !GetAtt X.Arn (or !Ref X.Alias, SAM's alias of X) points to."""
    if isinstance(node, dict) and "Fn::If" in node:
        # The SnapStart parameter picks the function's alias or the function: locally both are the
        # function itself (no versions here), so both branches must name the same one.
        _condition, when_true, when_false = node["Fn::If"]
        chosen = {_logical_id(when_true), _logical_id(when_false)}
        if len(chosen) == 1:
            return chosen.pop()
    if isinstance(node, dict) and "Ref" in node:
        return str(node["Ref"]).removesuffix(".Alias")
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        return str(node["Fn::GetAtt"][0])
    raise TemplateError(f"expected !Ref or !GetAtt, got {node!r}")


def default_values() -> TemplateValues:
    """The template's parameter defaults (what a deploy without overrides would use)."""
    parameters = template().get("Parameters", {})
    return TemplateValues({name: str(spec.get("Default", "")) for name, spec in parameters.items()})


def _authorizers(api_id: str, values: TemplateValues) -> tuple[dict[str, AuthorizerSpec], str | None]:
    api = template()["Resources"].get(api_id, {})
    auth = api.get("Properties", {}).get("Auth", {})
    found = {}
    for name, config in auth.get("Authorizers", {}).items():
        if "FunctionArn" not in config:
            raise TemplateError(f"authorizer {name}: only Lambda authorizers run locally")
        # Identity may be an !If on AuthMode (resolved before SAM by AWS::LanguageExtensions).
        identity = values.resolve(config.get("Identity", {}))
        found[name] = AuthorizerSpec(
            name=name,
            function_id=_logical_id(config["FunctionArn"]),
            payload_version=str(config.get("AuthorizerPayloadFormatVersion", "2.0")),
            simple_responses=bool(config.get("EnableSimpleResponses", False)),
            identity_headers=tuple(identity.get("Headers", []) if isinstance(identity, dict) else []),
        )
    return found, auth.get("DefaultAuthorizer")


def http_api_routes(values: TemplateValues | None = None) -> list[Route]:
    """Every HttpApi event of every function, with the authorizer API Gateway would run first."""
    values = values or default_values()
    routes = []
    for logical_id, resource in template()["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            properties = event.get("Properties", {})
            api_id = _logical_id(properties["ApiId"]) if "ApiId" in properties else "ServerlessHttpApi"
            authorizers, default = _authorizers(api_id, values)
            name = properties.get("Auth", {}).get("Authorizer", default)
            routes.append(
                Route(
                    method=str(properties.get("Method", "ANY")).upper(),
                    path=str(properties.get("Path", "/")),
                    function_id=logical_id,
                    authorizer=None if name in (None, "NONE") else authorizers[name],
                    api_id=api_id,
                )
            )
    return routes


def http_api_cors(api_id: str, values: TemplateValues | None = None) -> CorsPolicy | None:
    """The HttpApi's `CorsConfiguration` (an !If on CorsAllowedOrigins/AuthMode, resolved), or None.

    `true` alone is SAM's shorthand for "any origin"; anything else must be the property's mapping.
    """
    values = values or default_values()
    api = template()["Resources"].get(api_id, {})
    configuration = values.resolve(api.get("Properties", {}).get("CorsConfiguration", _NO_VALUE))
    if configuration is _NO_VALUE or configuration in ("false", None):
        return None
    if configuration == "true":
        return CorsPolicy(allow_origins=("*",), allow_methods=("*",), allow_headers=("*",))
    if not isinstance(configuration, dict):
        raise TemplateError(f"{api_id}: unsupported CorsConfiguration {configuration!r}")
    try:
        return CorsPolicy.from_configuration(configuration)
    except CorsConfigurationError as exc:
        raise TemplateError(f"{api_id}: {exc}") from None


# ---------------------------------------------------------------------------------------- invoking


@contextlib.contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """The function's environment for the duration of a load or an invocation (callers hold the lock)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _import_handler_module(spec: FunctionSpec) -> ModuleType:
    try:
        return import_handler(spec.handler_path, f"usersync_local_{spec.name}")
    except ImportError as exc:
        raise TemplateError(str(exc)) from None


MetricsSink = Callable[[str], int]


class LocalFunctions:
    """Loads each function once (its cold start) and invokes it with its own environment.

    Invocations are serialised: Powertools Metrics keeps class-level state that concurrent handlers
    in one process would mix. Whatever a handler prints is captured: EMF documents go to `metrics_sink`
    (the local CloudWatch), everything else is echoed to `echo`.
    """

    def __init__(
        self,
        specs: Mapping[str, FunctionSpec],
        *,
        metrics_sink: MetricsSink | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.specs = dict(specs)
        self._metrics_sink = metrics_sink
        self._echo = echo or (lambda line: print(line, flush=True))
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._lock = threading.Lock()

    def by_name(self, name: str) -> FunctionSpec:
        """A function by folder name (`webhook`) or logical id (`WebhookFunction`)."""
        for spec in self.specs.values():
            if name in (spec.name, spec.logical_id):
                return spec
        known = ", ".join(sorted(spec.name for spec in self.specs.values()))
        raise KeyError(f"no function {name!r} in template.yaml (known: {known})")

    def available(self, logical_id: str) -> bool:
        return self.specs[logical_id].handler_path.exists()

    def invoke(self, logical_id: str, event: Any) -> Any:
        spec = self.specs[logical_id]
        with self._lock, function_environment(spec.environment):
            handler = self._handlers.get(logical_id)
            if handler is None:
                module = _import_handler_module(spec)
                handler = getattr(module, spec.handler_name)
                self._handlers[logical_id] = handler
            context = LocalLambdaContext(
                function_name=spec.environment["AWS_LAMBDA_FUNCTION_NAME"],
                memory_limit_in_mb=spec.memory_mb,
                timeout_seconds=spec.timeout_seconds,
            )
            captured = io.StringIO()
            try:
                with contextlib.redirect_stdout(captured):
                    return handler(event, context)
            finally:
                self._publish(captured.getvalue())

    def _publish(self, output: str) -> None:
        from usersync_dev.emf import parse_emf_document

        emf_lines = []
        for line in output.splitlines():
            if parse_emf_document(line) is not None:
                emf_lines.append(line)
            elif line.strip():
                self._echo(line)
        if not emf_lines:
            return
        if self._metrics_sink is None:
            for line in emf_lines:
                self._echo(line)
            return
        try:
            self._metrics_sink("\n".join(emf_lines))
        except Exception as exc:  # noqa: BLE001 - a metrics hiccup must not fail the request it describes
            self._echo(f"usersync-dev: could not forward metrics to local CloudWatch: {exc!r}")
