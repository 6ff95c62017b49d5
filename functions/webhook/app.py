"""POST /webhooks/clerk: Clerk (Svix) user, organization and membership events applied to their tables."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usersync.api.http import json_response
from usersync.api.webhook import WebhookRejection, process_webhook, read_request, signing_secret
from usersync.runtime.aws import THROTTLING_ERROR_CODES, SecretUnavailableError, dynamodb_client
from usersync.runtime.budget import with_time_budget
from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import logger, metrics
from usersync.runtime.settings import WebhookSettings
from usersync.store.errors import RepositoryError
from usersync.store.organizations import OrganizationRepository
from usersync.store.users import UserRepository

settings = WebhookSettings.from_env()
repository = UserRepository(dynamodb_client(), settings.users_table_name)
organizations = OrganizationRepository.from_env(dynamodb_client())

# Answers Svix retries: "slow down" (throttled) and "out of time" are 503, any other table failure 500.
_RETRY_LATER_CODES = THROTTLING_ERROR_CODES | {"TimeBudgetExhaustedError"}


@with_time_budget()
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    try:
        request = read_request(event)
        result = process_webhook(request, signing_secret(settings), repository, organizations)
    except WebhookRejection as exc:
        emit_metric(SyncMetric.WEBHOOK_REJECTED, SyncSource.WEBHOOK)
        logger.warning("webhook rejected", extra={"statusCode": exc.status_code, "reason": exc.reason})
        return json_response(exc.status_code, {"status": "rejected", "message": exc.reason})
    except SecretUnavailableError as exc:
        # Without the secret nothing can be verified: 503 so Svix retries later; nothing is lost.
        logger.error("webhook signing secret unavailable", extra={"errorCode": exc.code})
        return json_response(503, {"status": "error", "message": "signing secret unavailable"})
    except RepositoryError as exc:
        # Svix retries any non-2xx; nothing is lost. (User and organization writes alike.) The write's
        # own failure is already logged and counted; this also covers a failure before any write.
        status_code = 503 if exc.code in _RETRY_LATER_CODES else 500
        logger.error("webhook not applied", extra={"statusCode": status_code, "errorCode": exc.code})
        return json_response(status_code, {"status": "error", "message": "table write failed"})
    logger.info("webhook processed", extra={"status": result.status.value, "userId": result.user_id})
    return json_response(200, {"status": result.status.value})
