"""Lambda authorizer for the HTTP API (and REST APIs): Clerk session token in, allow/deny out.

Everything slow happens once per container here: settings, the PEM or JWKS client, the DynamoDB
client, the per-container user cache. Nothing here imports the webhook verifier (svix).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usersync.api.authorizer import Authorizer
from usersync.api.route_requirements import RouteRequirements
from usersync.clerk.tokens import TokenVerifier
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.budget import with_time_budget
from usersync.runtime.observability import logger, metrics
from usersync.runtime.settings import AuthorizerSettings
from usersync.store.users import UserRepository
from usersync.sync.users import UserCache

settings = AuthorizerSettings.from_env()
authorizer = Authorizer(
    TokenVerifier.from_settings(settings),
    UserRepository(dynamodb_client(), settings.users_table_name),
    UserCache(ttl_seconds=60),
    RouteRequirements.parse(settings.route_requirements),  # a malformed value stops the cold start here
)


@with_time_budget()
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return authorizer.handle(event)
