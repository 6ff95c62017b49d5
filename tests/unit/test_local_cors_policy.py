"""The local stack's CORS policy read from template.yaml (usersync_dev.cors), per AuthMode and origins."""

from __future__ import annotations

import pytest

from usersync_dev.cors import CorsConfigurationError, CorsPolicy, is_preflight
from usersync_dev.runtime import TemplateError, TemplateValues, default_values, http_api_cors


def _values(**overrides: str) -> TemplateValues:
    return TemplateValues({**default_values().parameters, **overrides})


def test_the_template_drives_the_policy_from_cors_allowed_origins_and_auth_mode() -> None:
    assert http_api_cors("UsersApi", _values()) is None  # CorsAllowedOrigins empty: no CORS
    header = http_api_cors("UsersApi", _values(CorsAllowedOrigins="http://localhost:5173,https://a.example"))
    assert header == CorsPolicy(
        allow_origins=("http://localhost:5173", "https://a.example"),
        allow_methods=("GET", "POST", "OPTIONS"),
        allow_headers=("authorization", "content-type"),
        allow_credentials=False,
        max_age=600,
    )
    cookie = http_api_cors("UsersApi", _values(CorsAllowedOrigins="https://a.example", AuthMode="cookie"))
    assert cookie is not None
    assert cookie.allow_credentials


def test_cookie_mode_with_any_origin_is_refused_as_the_template_rule_refuses_it() -> None:
    with pytest.raises(TemplateError, match="explicit origins"):
        http_api_cors("UsersApi", _values(CorsAllowedOrigins="*", AuthMode="cookie"))


def test_origin_matching_exact_any_and_scheme_wildcards() -> None:
    exact = CorsPolicy(allow_origins=("https://a.example",))
    assert exact.allows("https://a.example")
    assert not exact.allows("https://a.example:8443")
    assert not exact.allows("http://a.example")
    assert not exact.allows("https://a.example.evil.test")
    https_any = CorsPolicy(allow_origins=("https://*",))
    assert https_any.allows("https://anything.test")
    assert not https_any.allows("http://anything.test")
    assert not https_any.allows("https://")
    anyone = CorsPolicy(allow_origins=("*",), allow_methods=("GET",))
    assert anyone.response_headers("https://x.test") == [("Access-Control-Allow-Origin", "*")]


def test_credentials_are_sent_only_when_configured() -> None:
    policy = CorsPolicy(
        allow_origins=("https://a.example",), allow_credentials=True, expose_headers=("date",)
    )
    assert policy.response_headers("https://a.example") == [
        ("Access-Control-Allow-Origin", "https://a.example"),
        ("Vary", "Origin"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", "date"),
    ]
    assert policy.response_headers("https://b.example") == []
    assert policy.preflight_headers("https://b.example") == []
    with pytest.raises(CorsConfigurationError):
        CorsPolicy.from_configuration({"AllowOrigins": ["*"], "AllowCredentials": "true"})


def test_a_preflight_needs_origin_and_the_requested_method() -> None:
    assert is_preflight("OPTIONS", {"origin": "https://a.example", "access-control-request-method": "GET"})
    assert not is_preflight("OPTIONS", {"origin": "https://a.example"})
    assert not is_preflight("GET", {"origin": "https://a.example", "access-control-request-method": "GET"})
