"""Settings are parsed once from the environment and name what is missing."""

from __future__ import annotations

import pytest

from usersync.runtime.settings import (
    AuthorizerSettings,
    ConfigurationError,
    HealthSettings,
    ReconcileSettings,
    TableSettings,
    WebhookSettings,
)


def test_missing_table_name_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="USERS_TABLE_NAME"):
        TableSettings.from_env({})


def test_blank_value_counts_as_missing() -> None:
    with pytest.raises(ConfigurationError, match="missing required environment variable USERS_TABLE_NAME"):
        TableSettings.from_env({"USERS_TABLE_NAME": "  "})


def test_webhook_needs_a_secret_source() -> None:
    with pytest.raises(ConfigurationError, match="CLERK_WEBHOOK_SIGNING_SECRET"):
        WebhookSettings.from_env({"USERS_TABLE_NAME": "t"})
    inline = WebhookSettings.from_env({"USERS_TABLE_NAME": "t", "CLERK_WEBHOOK_SIGNING_SECRET": "whsec_x"})
    assert inline.webhook_signing_secret == "whsec_x"
    by_arn = WebhookSettings.from_env(
        {"USERS_TABLE_NAME": "t", "CLERK_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:s"}
    )
    assert by_arn.webhook_secret_arn
    assert by_arn.webhook_signing_secret is None


def test_secret_is_not_in_repr() -> None:
    settings = WebhookSettings.from_env(
        {"USERS_TABLE_NAME": "t", "CLERK_WEBHOOK_SIGNING_SECRET": "whsec_hide"}
    )
    assert "whsec_hide" not in repr(settings)


def test_authorizer_parties_are_split_and_a_key_source_required() -> None:
    with pytest.raises(ConfigurationError, match="CLERK_JWT_KEY"):
        AuthorizerSettings.from_env({"USERS_TABLE_NAME": "t"})
    settings = AuthorizerSettings.from_env(
        {
            "USERS_TABLE_NAME": "t",
            "CLERK_JWKS_URL": "https://clerk.example.test/.well-known/jwks.json",
            "CLERK_AUTHORIZED_PARTIES": " https://a.example , https://b.example,,",
        }
    )
    assert settings.authorized_parties == ("https://a.example", "https://b.example")


def test_health_defaults_and_validation() -> None:
    base = {"USERS_TABLE_NAME": "t", "POWERTOOLS_METRICS_NAMESPACE": "ns", "POWERTOOLS_SERVICE_NAME": "svc"}
    settings = HealthSettings.from_env(base)
    assert (settings.failure_threshold, settings.window_minutes, settings.min_attempts) == (0.05, 15, 20)
    with pytest.raises(ConfigurationError, match="SYNC_FAILURE_THRESHOLD"):
        HealthSettings.from_env({**base, "SYNC_FAILURE_THRESHOLD": "lots"})
    assert HealthSettings.from_env({"USERS_TABLE_NAME": "t"}).metrics_namespace == "usersync"
    assert (
        HealthSettings.from_env({"USERS_TABLE_NAME": "t", "POWERTOOLS_METRICS_NAMESPACE": "ns"}).service_name
        is None
    )


def test_health_needs_no_clerk_secret() -> None:
    settings = HealthSettings.from_env(
        {"USERS_TABLE_NAME": "t", "POWERTOOLS_METRICS_NAMESPACE": "ns", "POWERTOOLS_SERVICE_NAME": "svc"}
    )
    assert settings.users_table_name == "t"


def test_webhook_cold_start_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import load_function

    monkeypatch.delenv("USERS_TABLE_NAME", raising=False)
    monkeypatch.setenv("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_dGVzdA==")
    with pytest.raises(ConfigurationError, match="USERS_TABLE_NAME"):
        load_function("webhook")


@pytest.mark.parametrize(
    ("settings_class", "inline", "by_reference"),
    [
        (WebhookSettings, "CLERK_WEBHOOK_SIGNING_SECRET", "CLERK_WEBHOOK_SECRET_ARN"),
        (AuthorizerSettings, "CLERK_JWT_KEY", "CLERK_JWKS_URL"),
        (ReconcileSettings, "CLERK_SECRET_KEY", "CLERK_SECRET_KEY_ARN"),
    ],
)
def test_each_one_of_two_pair_needs_either_and_names_both(
    settings_class: type[WebhookSettings | AuthorizerSettings | ReconcileSettings],
    inline: str,
    by_reference: str,
) -> None:
    expected = f"missing required environment variable {inline} (or {by_reference})"
    with pytest.raises(ConfigurationError) as raised:
        settings_class.from_env({"USERS_TABLE_NAME": "t", inline: " ", by_reference: ""})
    assert str(raised.value) == f"{settings_class.__name__}: {expected}"
    for name in (inline, by_reference):
        settings_class.from_env({"USERS_TABLE_NAME": "t", name: "value"})  # either one is enough
