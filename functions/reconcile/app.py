"""Scheduled reconciliation: re-apply every Clerk user to the table (see usersync.sync.reconcile).

Returns the counts; any failure raises, so the invocation is marked failed (and ReconcileFailed is
emitted) after the pages read before the failure have been applied. Running out of time is a clean
stop too: every outbound call checks the invocation's budget first (usersync.runtime.budget).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usersync.runtime.aws import SecretUnavailableError, dynamodb_client, secret_string
from usersync.runtime.budget import current_budget, with_time_budget
from usersync.runtime.metrics import SyncMetric, SyncSource, emit_metric
from usersync.runtime.observability import logger, metrics
from usersync.runtime.settings import ReconcileSettings
from usersync.store.organizations import OrganizationRepository
from usersync.sync.reconcile import ReconcileError, ReconcileOptions, reconcile
from usersync.sync.reconcile_orgs import ClerkOrganizationsClient, reconcile_organizations

settings = ReconcileSettings.from_env()


def secret_key(config: ReconcileSettings) -> str:
    """The `sk_...` key: inline (local use) or from Secrets Manager (a plain-string secret)."""
    if config.clerk_secret_key:
        return config.clerk_secret_key
    assert config.clerk_secret_key_arn is not None  # guaranteed by ReconcileSettings
    try:
        return secret_string(config.clerk_secret_key_arn)
    except SecretUnavailableError as exc:
        # A failed run like any other: counted, logged, and the invocation fails (no write happened).
        emit_metric(SyncMetric.RECONCILE_FAILED, SyncSource.RECONCILE)
        logger.error("reconcile failed: Clerk secret key unavailable", extra={"errorCode": exc.code})
        raise ReconcileError(f"Clerk secret key unavailable: {exc.code}") from exc


@with_time_budget()
@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The schedule sends an EventBridge event; a manual invoke may ask for {"dryRun": true}.
    dry_run = isinstance(event, dict) and event.get("dryRun") is True
    budget = current_budget()
    options = ReconcileOptions(dry_run=dry_run, prune=settings.prune, remaining_seconds=budget.remaining)
    clerk = ClerkOrganizationsClient(secret_key(settings), settings.clerk_api_url, budget=budget)
    report = reconcile(clerk, dynamodb_client(), settings.users_table_name, options)
    # Organizations and memberships (CONTRACT §11), when the deployment has their table.
    organizations = OrganizationRepository.from_env(dynamodb_client())
    if organizations is None:
        return report.counts()
    organizations_report = reconcile_organizations(clerk, organizations, options)
    return {**report.counts(), "organizations": organizations_report.counts()}
