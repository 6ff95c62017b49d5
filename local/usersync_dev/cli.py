"""`usersync-dev`: the local stack and the tools to exercise it (dev-only, never shipped).

    usersync-dev serve [--port 3000] [--host 127.0.0.1] [--parameter-overrides K=V ...]
                       [--route-requirements JSON|FILE]
    usersync-dev token --sub ID --email E [--first-name F] [--last-name L] [--image-url U]
                       [--org-id O [--org-slug S] [--org-role R] [--permission org:F:P ...]]
                       [--feature o:F ...] [--plan u:P ...] [--pending] [--actor ID] [--v1]
    usersync-dev webhook {created,updated,deleted} --user-id ID [--email E] [--first-name F]
                         [--url URL] [--print]
    usersync-dev webhook organization.{created,updated,deleted} --org-id ORG [--name N] [--slug S]
    usersync-dev webhook organizationMembership.{created,updated,deleted} --org-id ORG --user-id ID
                         [--role org:admin] [--name N] [--membership-id ID]
    usersync-dev events [--out DIR]
    usersync-dev invoke FN EVENT_FILE
    usersync-dev reconcile ...
    usersync-dev next-steps [--stack-name S] [--region R] [--config-env default]

Every command shares the dev key and webhook secret stored under `.local/` (see devstate), so tokens
and signatures are the ones the running stack accepts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from usersync_dev.devstate import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEV_AUTHORIZED_PARTY,
    DEV_ISSUER,
    dev_secrets,
    running_stack,
)

HTTP_TIMEOUT_SECONDS = 10


def _parameter_overrides(values: list[list[str]] | None) -> dict[str, str]:
    overrides = {}
    for item in [part for group in values or [] for value in group for part in value.split()]:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"usersync-dev: --parameter-overrides expects Name=Value, got {item!r}")
        overrides[name] = value
    return overrides


ROUTE_REQUIREMENTS_ENV = "USERSYNC_ROUTE_REQUIREMENTS"


def route_requirements_override(value: str | None) -> str | None:
    """The RouteRequirements parameter from `--route-requirements` (or USERSYNC_ROUTE_REQUIREMENTS): JSON
    inline or a file holding it, checked now with the authorizer's own parser so a mistake is reported
    before the stack starts. None: the template's value (its default, or --parameter-overrides)."""
    from pathlib import Path

    from usersync.api.route_requirements import RouteRequirements
    from usersync.runtime.settings import ConfigurationError

    if not value or not value.strip():
        return None
    text = value if value.lstrip().startswith("{") else Path(value).read_text(encoding="utf-8")
    try:
        RouteRequirements.parse(text)
    except ConfigurationError as exc:
        raise SystemExit(f"usersync-dev: {exc}") from None
    return json.dumps(json.loads(text), separators=(",", ":"))


def _serve(args: argparse.Namespace) -> int:
    import os

    from usersync_dev.server import exit_now, serve

    overrides = _parameter_overrides(args.parameter_overrides)
    try:
        requirements = route_requirements_override(
            args.route_requirements or os.environ.get(ROUTE_REQUIREMENTS_ENV)
        )
    except OSError as exc:
        print(f"usersync-dev: cannot read the route requirements: {exc}", file=sys.stderr)
        return 2
    if requirements is not None:
        overrides["RouteRequirements"] = requirements
    try:
        status = serve(host=args.host, port=args.port, parameter_overrides=overrides)
    except OSError as exc:
        print(
            f"usersync-dev: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr
        )
        print("usersync-dev: is `make run` already running? Pick another port with --port.", file=sys.stderr)
        return 1
    exit_now(status)


def _token(args: argparse.Namespace) -> int:
    from usersync_dev.clerk import mint_token

    if (args.org_slug or args.org_role != "org:member" or args.permission) and not args.org_id:
        print("usersync-dev token: --org-slug, --org-role and --permission need --org-id", file=sys.stderr)
        return 2
    if args.v1 and (args.feature or args.plan):
        print(
            "usersync-dev token: --feature and --plan are session token v2 claims (not with --v1)",
            file=sys.stderr,
        )
        return 2
    try:
        claims = _token_claims(args)
    except ValueError as exc:
        print(f"usersync-dev token: {exc}", file=sys.stderr)
        return 2
    print(mint_token(dev_secrets().signing_key, claims))
    return 0


def _token_claims(args: argparse.Namespace) -> dict[str, Any]:
    from usersync.clerk.users import user_profile
    from usersync_dev.clerk import session_claims

    return session_claims(
        args.sub,
        **user_profile(args, email=args.email),
        issuer=DEV_ISSUER,
        azp=DEV_AUTHORIZED_PARTY,
        lifetime_seconds=args.lifetime,
        org_id=args.org_id,
        org_slug=args.org_slug,
        org_role=args.org_role,
        pending=args.pending,
        actor=args.actor,
        version=1 if args.v1 else 2,
        permissions=args.permission or (),
        features=args.feature or (),
        plans=args.plan or (),
    )


def _default_webhook_url() -> str:
    from usersync_dev.sample_events import _route

    stack = running_stack()
    base = stack.gateway_url if stack else f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    return base + _route("webhook").path


USER_KINDS = ("created", "updated", "deleted")
ORGANIZATION_KINDS = tuple(
    f"{family}.{action}" for family in ("organization", "organizationMembership") for action in USER_KINDS
)


def _slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split()) or "org"


def _organization_payload(args: argparse.Namespace, now: int) -> dict[str, Any]:
    """organization.* and organizationMembership.* events; the membership id defaults to one derived
    from (organization, user), so `created` then `deleted` name the same membership."""
    import uuid

    from usersync_dev.clerk import clerk_event, clerk_membership, clerk_organization, deleted_organization

    if not args.org_id:
        raise SystemExit(f"usersync-dev: webhook {args.kind} needs --org-id")
    name = args.name or "Acme Inc"
    organization = clerk_organization(args.org_id, name=name, slug=args.slug or _slug(name), updated_at=now)
    if args.kind == "organization.deleted":
        return clerk_event(args.kind, deleted_organization(args.org_id), timestamp=now)
    if args.kind.startswith("organization."):
        return clerk_event(args.kind, organization, timestamp=now)
    if not args.user_id:
        raise SystemExit(f"usersync-dev: webhook {args.kind} needs --user-id")
    membership_id = (
        args.membership_id
        or "orgmem_" + uuid.uuid5(uuid.NAMESPACE_URL, f"{args.org_id}/{args.user_id}").hex[:24]
    )
    membership = clerk_membership(
        membership_id,
        organization=organization,
        user_id=args.user_id,
        role=args.role,
        updated_at=now,
        identifier=args.email or "ada@example.com",
    )
    return clerk_event(args.kind, membership, timestamp=now)


def _webhook_payload(args: argparse.Namespace) -> dict[str, Any]:
    from usersync.clerk.users import user_profile
    from usersync_dev.clerk import clerk_event, clerk_user, deleted_user, now_ms

    # A fresh, increasing updated_at: a later update always wins the table's conditional write.
    now = now_ms()
    if args.kind in ORGANIZATION_KINDS:
        return _organization_payload(args, now)
    if not args.user_id:
        raise SystemExit(f"usersync-dev: webhook {args.kind} needs --user-id")
    if args.kind == "deleted":
        return clerk_event("user.deleted", deleted_user(args.user_id), timestamp=now)
    data = clerk_user(args.user_id, **user_profile(args, email=args.email), created_at=now, updated_at=now)
    return clerk_event(f"user.{args.kind}", data, timestamp=now)


def _webhook(args: argparse.Namespace) -> int:
    from usersync_dev.clerk import sign_delivery

    url = args.url or _default_webhook_url()
    delivery = sign_delivery(dev_secrets().webhook_secret, _webhook_payload(args))
    if args.print:
        headers = " ".join(
            f"-H {shlex.quote(f'{name}: {value}')}" for name, value in delivery.headers.items()
        )
        body = shlex.quote(delivery.body.decode())
        print(f"curl -sS -X POST {headers} --data-binary {body} {shlex.quote(url)}")
        return 0
    request = urllib.request.Request(url, data=delivery.body, headers=delivery.headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 - dev URL
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        print(f"usersync-dev: cannot reach {url}: {exc.reason}. Is `make run` running?", file=sys.stderr)
        return 2
    print(f"{status} {body}")
    return 0 if 200 <= status < 300 else 1


def _events(args: argparse.Namespace) -> int:
    from usersync_dev.sample_events import EVENTS_DIR, write_events

    for path in write_events(dev_secrets(), Path(args.out) if args.out else EVENTS_DIR):
        print(path)
    print(
        "Signatures are valid for 5 minutes and session tokens for 60 s: re-run to refresh.", file=sys.stderr
    )
    return 0


def _invoke(args: argparse.Namespace) -> int:
    """Invoke functions/FN/app.py in this process. Against the running local stack's moto (same table,
    metrics forwarded to its CloudWatch, JWKS from its gateway) if there is one; otherwise against a
    fresh in-process moto holding the table, with the dev public key as CLERK_JWT_KEY."""
    from moto import mock_aws

    from usersync_dev.runtime import (
        JWKS_PATH,
        LocalFunctions,
        TemplateValues,
        function_environment,
        function_specs,
        local_parameters,
    )
    from usersync_dev.server import cloudwatch_sink, use_local_aws
    from usersync_dev.template import create_organizations_table, create_users_table

    stack = running_stack()
    use_local_aws(stack.moto_endpoint if stack else None)
    event = json.loads(Path(args.event_file).read_text(encoding="utf-8"))
    secrets = dev_secrets()
    jwks_url = stack.gateway_url + JWKS_PATH if stack else None
    specs = function_specs(TemplateValues(local_parameters(secrets, jwks_url=jwks_url)), secrets)
    with contextlib.nullcontext() if stack else mock_aws():
        functions = LocalFunctions(
            specs,
            metrics_sink=cloudwatch_sink(stack.moto_endpoint) if stack else None,
            echo=lambda line: print(line, file=sys.stderr, flush=True),
        )
        try:
            spec = functions.by_name(args.function)
        except KeyError as exc:
            print(f"usersync-dev: {exc.args[0]}", file=sys.stderr)
            return 2
        # Handler logs go to stderr so stdout is only the response: Powertools' Logger binds the stream
        # current when it is created, so create it now (in the function's environment: Metrics reads
        # its namespace then too), with stdout pointed at stderr.
        with function_environment(spec.environment), contextlib.redirect_stdout(sys.stderr):
            importlib.import_module("usersync.runtime.observability")
        if stack is None:
            import boto3

            dynamodb = boto3.client("dynamodb")
            create_users_table(dynamodb, spec.environment["USERS_TABLE_NAME"])
            if "ORGANIZATIONS_TABLE_NAME" in spec.environment:
                create_organizations_table(dynamodb, spec.environment["ORGANIZATIONS_TABLE_NAME"])
        where = (
            f"the local stack at {stack.gateway_url}" if stack else "an in-process moto (no stack running)"
        )
        print(f"usersync-dev: invoking {spec.logical_id} against {where}", file=sys.stderr)
        result = functions.invoke(spec.logical_id, event)
    print(json.dumps(result, indent=2))
    return 0


def _next_steps(args: argparse.Namespace) -> int:
    from usersync_dev.next_steps import NextStepsError, print_next_steps

    try:
        return print_next_steps(args.stack_name, args.region, args.config_env)
    except NextStepsError as exc:
        print(f"usersync-dev: {exc}", file=sys.stderr)
        return 1


def _reconcile(args: argparse.Namespace) -> int:
    """`usersync_dev.reconcile_cmd`; with a local stack running (and no AWS endpoint chosen), against its
    table: `CLERK_SECRET_KEY=sk_test_... usersync-dev reconcile --dry-run`."""
    import os

    stack = running_stack()
    if stack is not None and not os.environ.get("AWS_ENDPOINT_URL"):
        from usersync_dev.server import use_local_aws

        use_local_aws(stack.moto_endpoint)
        os.environ.setdefault("USERS_TABLE_NAME", stack.table_name)
        if stack.organizations_table_name:
            os.environ.setdefault("ORGANIZATIONS_TABLE_NAME", stack.organizations_table_name)
    try:
        # Imported late: it creates AWS clients and reads USERS_TABLE_NAME from the environment above.
        module = importlib.import_module("usersync_dev.reconcile_cmd")
    except ModuleNotFoundError:
        print("usersync-dev: reconcile is not available in this checkout", file=sys.stderr)
        return 2
    result = module.main(list(args.rest))
    return int(result or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usersync-dev", description="usersync local development tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the whole API locally (moto, dev keys; what `make run` runs)"
    )
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    serve.add_argument(
        "--parameter-overrides",
        action="append",
        nargs="+",
        metavar="NAME=VALUE",
        help="template parameters, as for sam (e.g. SyncMinAttempts=5)",
    )
    serve.add_argument(
        "--route-requirements",
        metavar="JSON|FILE",
        help=f"the RouteRequirements parameter (who may call which route), inline JSON or a file; "
        f"default ${ROUTE_REQUIREMENTS_ENV}, else the template's",
    )
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="print a session token signed with the dev key")
    token.add_argument("--sub", required=True, help="Clerk user id (user_...)")
    token.add_argument("--email", required=True)
    token.add_argument("--first-name")
    token.add_argument("--last-name")
    token.add_argument("--image-url")
    token.add_argument("--lifetime", type=int, default=60, help="seconds (Clerk's session tokens: 60)")
    token.add_argument("--org-id", help="make an organization active (org_...)")
    token.add_argument("--org-slug", help="its slug (with --org-id)")
    token.add_argument(
        "--org-role", default="org:member", help="role in it, with or without `org:` (default org:member)"
    )
    token.add_argument(
        "--pending", action="store_true", help='sts: "pending", a session with an unfinished task (denied)'
    )
    token.add_argument("--actor", metavar="USER_ID", help="an impersonation token: act.sub is this user")
    token.add_argument("--v1", action="store_true", help="the deprecated v1 shape (org_id/org_slug/org_role)")
    token.add_argument(
        "--permission",
        action="append",
        metavar="org:FEATURE:NAME",
        help="an organization permission (repeatable; needs --org-id): v2 o.per/o.fpm, v1 org_permissions",
    )
    token.add_argument(
        "--feature",
        action="append",
        metavar="SCOPE:NAME",
        help="a feature in fea: o:x, u:x or ou:x (repeatable)",
    )
    token.add_argument(
        "--plan", action="append", metavar="SCOPE:NAME", help="a plan in pla: u:free, o:pro (repeatable)"
    )
    token.set_defaults(run=_token)

    webhook = commands.add_parser(
        "webhook", help="sign a Clerk user, organization or membership event with the dev secret and POST it"
    )
    webhook.add_argument(
        "kind",
        choices=[*USER_KINDS, *ORGANIZATION_KINDS],
        help="created/updated/deleted (a user), or organization.* / organizationMembership.*",
    )
    webhook.add_argument("--user-id", help="Clerk user id (user events and memberships)")
    webhook.add_argument("--org-id", help="Clerk organization id (org_...)")
    webhook.add_argument("--name", help="organization name (default: Acme Inc)")
    webhook.add_argument("--slug", help="organization slug (default: from the name)")
    webhook.add_argument("--role", default="org:member", help="membership role (default: org:member)")
    webhook.add_argument("--membership-id", help="default: derived from the organization and user ids")
    webhook.add_argument("--email", help="primary email (omitted: a phone-only user)")
    webhook.add_argument("--first-name")
    webhook.add_argument("--last-name")
    webhook.add_argument("--image-url")
    webhook.add_argument("--url", help="default: the running local stack's webhook route")
    webhook.add_argument("--print", action="store_true", help="print the signed request as curl instead")
    webhook.set_defaults(run=_webhook)

    events = commands.add_parser("events", help="regenerate events/ with fresh signatures and tokens")
    events.add_argument("--out", help="directory (default: events/)")
    events.set_defaults(run=_events)

    invoke = commands.add_parser("invoke", help="invoke functions/FN/app.py with an event file, in-process")
    invoke.add_argument("function", metavar="FN", help="function folder (webhook, authorizer, health, me)")
    invoke.add_argument("event_file", metavar="EVENT_FILE")
    invoke.set_defaults(run=_invoke)

    next_steps = commands.add_parser(
        "next-steps", help="after `make deploy`: the Clerk setup with the deployed stack's values"
    )
    next_steps.add_argument("--stack-name", help="default: samconfig.toml")
    next_steps.add_argument("--region", help="default: samconfig.toml")
    next_steps.add_argument("--config-env", default="default", help="samconfig.toml environment")
    next_steps.set_defaults(run=_next_steps)

    reconcile = commands.add_parser("reconcile", help="reconcile the table with Clerk", add_help=False)
    reconcile.add_argument("rest", nargs=argparse.REMAINDER)
    reconcile.set_defaults(run=_reconcile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["reconcile"]:
        # Everything after `reconcile` belongs to it, options first included (argparse.REMAINDER in a
        # subparser does not capture a leading `--option`).
        return _reconcile(argparse.Namespace(rest=arguments[1:]))
    args = build_parser().parse_args(arguments)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
