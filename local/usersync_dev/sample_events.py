"""events/: one realistic event per route and case, for `sam local invoke -e` and `make invoke`.

Webhook events are signed with the dev secret and session tokens with the dev key (see devstate), so
they are accepted by the local stack and `usersync-dev invoke` while fresh: Svix signatures are only
valid for 5 minutes and Clerk session tokens for 60 s. `make events` regenerates them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from usersync_dev import apigw
from usersync_dev.clerk import (
    clerk_event,
    clerk_membership,
    clerk_organization,
    clerk_user,
    deleted_organization,
    deleted_user,
    mint_token,
    now_ms,
    session_claims,
    sign_delivery,
)
from usersync_dev.devstate import DEV_AUTHORIZED_PARTY, DEV_ISSUER, DevSecrets
from usersync_dev.runtime import Route, http_api_routes
from usersync_dev.template import REPO_ROOT

EVENTS_DIR = REPO_ROOT / "events"
SAMPLE_USER_ID = "user_2dev0ada0lovelace0000000"
SAMPLE_EMAIL = "ada@example.com"
SAMPLE_ORG_ID = "org_2dev0analytical0engines00"
SAMPLE_ORG_SLUG = "analytical-engines"
SAMPLE_MEMBERSHIP_ID = "orgmem_2dev0ada0analytical000"


def _route(code_dir: str) -> Route:
    """The template's route served by functions/<code_dir>/ (so events follow template changes)."""
    from usersync_dev.template import template

    for route in http_api_routes():
        uri = str(template()["Resources"][route.function_id]["Properties"]["CodeUri"]).strip("/")
        if uri.endswith(f"functions/{code_dir}"):
            return route
    raise LookupError(f"no HttpApi route for functions/{code_dir} in template.yaml")


def session_token(secrets: DevSecrets, lifetime_seconds: int = 60, *, with_organization: bool = False) -> str:
    """A v2 session token for the sample user; `with_organization` makes SAMPLE_ORG_ID active (admin)."""
    organization: dict[str, Any] = (
        {"org_id": SAMPLE_ORG_ID, "org_slug": SAMPLE_ORG_SLUG, "org_role": "org:admin"}
        if with_organization
        else {}
    )
    claims = session_claims(
        SAMPLE_USER_ID,
        email=SAMPLE_EMAIL,
        first_name="Ada",
        last_name="Lovelace",
        issuer=DEV_ISSUER,
        azp=DEV_AUTHORIZED_PARTY,
        lifetime_seconds=lifetime_seconds,
        **organization,
    )
    return mint_token(secrets.signing_key, claims)


def _webhook(route: Route, secret: str, payload: dict[str, Any]) -> dict[str, Any]:
    delivery = sign_delivery(secret, payload)
    headers = {**delivery.headers, "user-agent": "Svix-Webhooks/1.24.0", "host": "localhost:3000"}
    return apigw.http_api_event(
        route.method, route.path, body=delivery.body, headers=headers, route_key=route.route_key
    )


def _organization_webhooks(
    route: Route, secret: str, created: int, updated: int
) -> dict[str, dict[str, Any]]:
    """Organization and membership deliveries (CONTRACT §11) for the sample user."""
    organization = clerk_organization(
        SAMPLE_ORG_ID, name="Analytical Engines", slug="analytical-engines", created_at=created
    )
    renamed = clerk_organization(
        SAMPLE_ORG_ID,
        name="Analytical Engines Ltd",
        slug="analytical-engines",
        created_at=created,
        updated_at=updated,
    )
    membership = clerk_membership(
        SAMPLE_MEMBERSHIP_ID,
        organization=organization,
        user_id=SAMPLE_USER_ID,
        role="org:admin",
        created_at=created,
    )
    promoted = clerk_membership(
        SAMPLE_MEMBERSHIP_ID,
        organization=renamed,
        user_id=SAMPLE_USER_ID,
        role="org:member",
        created_at=created,
        updated_at=updated,
    )
    events = {
        "webhook-organization-created.json": clerk_event("organization.created", organization),
        "webhook-organization-updated.json": clerk_event("organization.updated", renamed),
        "webhook-organization-deleted.json": clerk_event(
            "organization.deleted", deleted_organization(SAMPLE_ORG_ID)
        ),
        "webhook-membership-created.json": clerk_event("organizationMembership.created", membership),
        "webhook-membership-updated.json": clerk_event("organizationMembership.updated", promoted),
        # As really delivered: the whole membership, not just its id.
        "webhook-membership-deleted.json": clerk_event("organizationMembership.deleted", promoted),
    }
    return {name: _webhook(route, secret, payload) for name, payload in events.items()}


def sample_events(secrets: DevSecrets) -> dict[str, dict[str, Any]]:
    """File name → event."""
    webhook, health, me = _route("webhook"), _route("health"), _route("me")
    created = now_ms() - 60_000
    updated = now_ms()
    token = session_token(secrets)
    bearer = {"authorization": f"Bearer {token}", "user-agent": "Mozilla/5.0", "origin": DEV_AUTHORIZED_PARTY}
    context = {
        "userId": SAMPLE_USER_ID,
        "email": SAMPLE_EMAIL,
        "firstName": "Ada",
        "lastName": "Lovelace",
        "sessionId": "sess_2dev0session0000000000",
    }
    me_event = apigw.http_api_event(
        me.method, me.path, headers=bearer, route_key=me.route_key, authorizer_context=context
    )
    http_authorizer = apigw.http_api_authorizer_event(me.method, me.path, headers=bearer)
    http_authorizer["routeKey"] = http_authorizer["requestContext"]["routeKey"] = me.route_key
    org_bearer = bearer | {"authorization": f"Bearer {session_token(secrets, with_organization=True)}"}
    org_authorizer = apigw.http_api_authorizer_event(me.method, me.path, headers=org_bearer)
    org_authorizer["routeKey"] = org_authorizer["requestContext"]["routeKey"] = me.route_key
    return {
        "webhook-user-created.json": _webhook(
            webhook,
            secrets.webhook_secret,
            clerk_event("user.created", clerk_user(SAMPLE_USER_ID, created_at=created, updated_at=created)),
        ),
        "webhook-user-updated.json": _webhook(
            webhook,
            secrets.webhook_secret,
            clerk_event(
                "user.updated",
                clerk_user(SAMPLE_USER_ID, first_name="Augusta Ada", created_at=created, updated_at=updated),
            ),
        ),
        "webhook-user-deleted.json": _webhook(
            webhook, secrets.webhook_secret, clerk_event("user.deleted", deleted_user(SAMPLE_USER_ID))
        ),
        **_organization_webhooks(webhook, secrets.webhook_secret, created, updated),
        "authorizer-http-request.json": http_authorizer,
        # A v2 token with an active organization (`o`): the allow carries orgId, orgSlug, orgRole.
        "authorizer-http-request-organization.json": org_authorizer,
        "authorizer-rest-token.json": apigw.rest_token_authorizer_event(
            f"Bearer {token}", me.method, me.path
        ),
        "authorizer-rest-request.json": apigw.rest_request_authorizer_event(
            me.method, me.path, headers={"Authorization": f"Bearer {token}"}
        ),
        "health.json": apigw.http_api_event(health.method, health.path, route_key=health.route_key),
        "me.json": me_event,
    }


def declared_variables(logical_id: str) -> list[str]:
    """The environment variables template.yaml declares for a function (Globals included): the only
    ones `sam local invoke --env-vars` can set."""
    from usersync_dev.template import template

    globals_variables = template().get("Globals", {}).get("Function", {}).get("Environment", {})
    own = template()["Resources"][logical_id].get("Properties", {}).get("Environment", {})
    return sorted({**globals_variables.get("Variables", {}), **own.get("Variables", {})})


def sam_local_env_vars(secrets: DevSecrets) -> dict[str, dict[str, str]]:
    """`sam local invoke --env-vars` document: template function logical id → its variables.

    The same values as `make invoke` and the local stack use: the dev `whsec_` secret inline (no
    Secrets Manager) and the dev public key as CLERK_JWT_KEY (networkless: a container cannot reach the
    local JWKS), so the signed events and tokens written beside it verify. Every declared variable is
    listed, blank where no local value exists (blank counts as unset).
    """
    from usersync_dev.runtime import TemplateValues, function_specs, local_parameters

    specs = function_specs(TemplateValues(local_parameters(secrets, jwks_url=None)), secrets)
    return {
        logical_id: {name: spec.environment.get(name, "") for name in declared_variables(logical_id)}
        for logical_id, spec in sorted(specs.items())
    }


SAM_ENV_VARS_FILE = "env.json"


def write_events(secrets: DevSecrets, directory: Path = EVENTS_DIR) -> list[Path]:
    """The sample events and, beside them, the env-vars file that makes them verify under SAM."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, event in sample_events(secrets).items():
        path = directory / name
        path.write_text(json.dumps(event, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    env_vars = directory / SAM_ENV_VARS_FILE
    env_vars.write_text(json.dumps(sam_local_env_vars(secrets), indent=2) + "\n", encoding="utf-8")
    written.append(env_vars)
    return written
