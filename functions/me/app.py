"""GET /me: the caller's stored profile, read by the userId the authorizer put in the context.

Plain code rather than a Powertools resolver: one route, and the resolver adds import time.
A tombstone is not a profile: a deleted user gets 404 like one never stored.
"""

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usersync.aws import dynamodb_client
from usersync.budget import with_time_budget
from usersync.http import json_response
from usersync.models import UserRecord
from usersync.observability import accepts_missing_context, logger
from usersync.repository import RepositoryError, UserRepository
from usersync.settings import TableSettings

settings = TableSettings.from_env()
repository = UserRepository(dynamodb_client(), settings.users_table_name)


def caller_id(event: Any) -> str | None:
    """HTTP API puts Lambda authorizer context under `authorizer.lambda`; REST directly under `authorizer`."""
    if not isinstance(event, Mapping):
        return None
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    if not isinstance(authorizer, Mapping):
        return None
    nested = authorizer.get("lambda")
    values: Mapping[str, Any] = nested if isinstance(nested, Mapping) else authorizer
    user_id = values.get("userId")
    return user_id if isinstance(user_id, str) and user_id else None


def profile(record: UserRecord) -> dict[str, Any]:
    """What the caller may see of their own record (no internal bookkeeping such as lastEventId)."""
    return {
        "userId": record.user_id,
        "email": record.email,
        "firstName": record.first_name,
        "lastName": record.last_name,
        "imageUrl": record.image_url,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "syncedAt": record.synced_at,
        "source": record.source.value if record.source else None,
    }


@accepts_missing_context
@with_time_budget()
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    user_id = caller_id(event)
    if user_id is None:  # only reachable if the route is wired without the authorizer
        return json_response(401, {"status": "unauthorized", "message": "no authenticated user"})
    try:
        record = repository.get(user_id)
    except RepositoryError as exc:  # unreachable, throttled, out of time, or an uninterpretable item
        logger.error("user read failed", extra={"userId": user_id, "errorCode": exc.code})
        return json_response(503, {"status": "error", "message": "user table unavailable"})
    if record is None or record.is_tombstone:
        return json_response(404, {"status": "not-found", "message": "user not synced yet"})
    return json_response(200, profile(record))
