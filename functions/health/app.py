"""GET /health (public): 200 when the user table and the sync failure rate are healthy, 503 if not."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usersync.api.health import HealthCheck
from usersync.api.http import json_response
from usersync.runtime.aws import health_clients
from usersync.runtime.budget import with_time_budget
from usersync.runtime.observability import logger
from usersync.runtime.settings import HealthSettings

settings = HealthSettings.from_env()
clients = health_clients()
health_check = HealthCheck(
    settings, dynamodb=clients.dynamodb, cloudwatch=clients.cloudwatch, cache_seconds=settings.cache_seconds
)


@with_time_budget()
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(_event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    report = health_check.run()
    response = json_response(200 if report.healthy else 503, report.to_dict())
    response["headers"]["Cache-Control"] = "no-store"  # monitors must see the current state
    return response
