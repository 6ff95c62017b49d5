"""`has()` for handlers behind the authorizer: finer checks than the route's, by the same rules.

The authorizer puts what Clerk's `has()` reads into the request context (`orgId`, `orgRole`,
`orgPermissions`, `features`, `plan`); this reads it back from either payload version and decides
with `usersync.clerk.permissions`, so a handler and the gateway never disagree:

    from usersync.api.access import has

    if not has(event, permission="org:invoices:void"):
        return json_response(403, {"message": "Forbidden"})
"""

from __future__ import annotations

from typing import Any, Unpack

from usersync.api.http import authorizer_value
from usersync.clerk.permissions import Authorization, Conditions


def authorization_from_event(event: Any) -> Authorization | None:
    """The caller's authorization from the authorizer context; None when no authorizer vouched for one."""
    if authorizer_value(event, "userId") is None:
        return None
    permissions = authorizer_value(event, "orgPermissions")
    return Authorization.build(
        org_id=authorizer_value(event, "orgId"),
        org_role=authorizer_value(event, "orgRole"),
        org_permissions=permissions.split(",") if permissions else (),
        fea=authorizer_value(event, "features"),
        pla=authorizer_value(event, "plan"),
    )


def has(event: Any, **conditions: Unpack[Conditions]) -> bool:
    """Clerk's `has()` over the authorizer context: every condition given holds (none given: False)."""
    authorization = authorization_from_event(event)
    if authorization is None:
        return False
    return authorization.has(**conditions)
