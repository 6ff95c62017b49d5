"""POST /webhooks/clerk: Clerk (Svix) user, organization and membership events applied to their tables."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usersync.aws import dynamodb_client
from usersync.http import BadRequestError, PayloadTooLargeError, json_response, parse_proxy_event
from usersync.metrics import SyncMetric, emit_metric
from usersync.models import SyncSource
from usersync.observability import logger, metrics
from usersync.organizations import OrganizationRepository
from usersync.repository import RepositoryError, UserRepository
from usersync.settings import WebhookSettings
from usersync.webhooks import (
    PayloadError,
    SecretUnavailableError,
    SignatureError,
    WebhookError,
    process_webhook,
    signing_secret,
)

settings = WebhookSettings.from_env()
repository = UserRepository(dynamodb_client(), settings.users_table_name)
organizations = OrganizationRepository.from_env(dynamodb_client())

_REJECTION_STATUS: dict[type[Exception], int] = {
    SignatureError: 401,
    PayloadError: 400,
    BadRequestError: 400,
    PayloadTooLargeError: 413,
}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        result = process_webhook(
            parse_proxy_event(event), signing_secret(settings), repository, organizations
        )
    except (WebhookError, BadRequestError, PayloadTooLargeError) as exc:
        status_code = _REJECTION_STATUS[type(exc)]
        reason = exc.reason if isinstance(exc, WebhookError) else str(exc)
        emit_metric(SyncMetric.WEBHOOK_REJECTED, SyncSource.WEBHOOK)
        logger.warning("webhook rejected", extra={"statusCode": status_code, "reason": reason})
        return json_response(status_code, {"status": "rejected", "message": reason})
    except SecretUnavailableError as exc:
        # Without the secret nothing can be verified: 503 so Svix retries later; nothing is lost.
        logger.error("webhook signing secret unavailable", extra={"errorType": str(exc)})
        return json_response(503, {"status": "error", "message": "signing secret unavailable"})
    except RepositoryError as exc:
        # Svix retries any non-2xx: throttling is a 503, anything else a 500. Nothing is lost.
        status_code = 503 if "Throttl" in exc.code or "Throughput" in exc.code else 500
        return json_response(status_code, {"status": "error", "message": "user table write failed"})
    logger.info("webhook processed", extra={"status": result.status.value, "userId": result.user_id})
    return json_response(200, {"status": result.status.value})
