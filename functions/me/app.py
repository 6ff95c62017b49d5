"""GET /me: the caller's stored profile and organizations, read by the userId the authorizer put in the
context. The event parsing and response shaping live in the layer (usersync.api.me, usersync.api.http).

Plain code rather than a Powertools resolver: one route, and the resolver adds import time.
A tombstone is not a profile: a deleted user gets 404 like one never stored.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usersync.api.me import me_response
from usersync.runtime.aws import dynamodb_client
from usersync.runtime.budget import with_time_budget
from usersync.runtime.observability import logger
from usersync.runtime.settings import TableSettings
from usersync.store.organizations import OrganizationRepository
from usersync.store.users import UserRepository

settings = TableSettings.from_env()
repository = UserRepository(dynamodb_client(), settings.users_table_name)
organizations = OrganizationRepository.from_env(dynamodb_client())


@with_time_budget()
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    return me_response(event, repository, organizations)
