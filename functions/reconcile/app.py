"""Scheduled reconciliation: re-apply every Clerk user to the table (see usersync.reconcile).

Returns the counts; any failure raises, so the invocation is marked failed (and ReconcileFailed is
emitted) after the pages read before the failure have been applied.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usersync.aws import dynamodb_client
from usersync.observability import logger, metrics
from usersync.organizations import OrganizationRepository
from usersync.reconcile import reconcile
from usersync.reconcile_orgs import ClerkOrganizationsClient, reconcile_organizations
from usersync.settings import ReconcileSettings

settings = ReconcileSettings.from_env()


def secret_key(config: ReconcileSettings) -> str:
    """The `sk_...` key: inline (local use) or from Secrets Manager (a plain-string secret)."""
    if config.clerk_secret_key:
        return config.clerk_secret_key
    # Only this configuration needs Parameters (and its Secrets Manager client): import it here.
    from aws_lambda_powertools.utilities.parameters import get_secret

    assert config.clerk_secret_key_arn is not None  # guaranteed by ReconcileSettings
    value = get_secret(config.clerk_secret_key_arn, max_age=300)
    return value.decode() if isinstance(value, bytes) else str(value)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The schedule sends an EventBridge event; a manual invoke may ask for {"dryRun": true}.
    dry_run = isinstance(event, dict) and event.get("dryRun") is True
    clerk = ClerkOrganizationsClient(secret_key(settings), settings.clerk_api_url)
    report = reconcile(
        clerk,
        dynamodb_client(),
        settings.users_table_name,
        dry_run=dry_run,
        prune=settings.prune,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    # Organizations and memberships (CONTRACT §11), when the deployment has their table.
    organizations = OrganizationRepository.from_env(dynamodb_client())
    if organizations is None:
        return report.counts()
    organizations_report = reconcile_organizations(
        clerk,
        organizations,
        dry_run=dry_run,
        prune=settings.prune,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    return {**report.counts(), "organizations": organizations_report.counts()}
