"""Clerk session tokens as the suite mints and forges them, and the authorizer environment that trusts
them: one definition for the token tests (unit), the authorizer handler tests (integration) and the
reliability suite."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from usersync_dev.clerk import SigningKey, session_claims

USER_ID = "user_2abcDEFghiJKLmnoPQRstuVW"
ISSUER = "https://clerk.example.test"  # session_claims' default issuer
ORIGIN = "http://localhost:3000"  # session_claims' default azp


def ada_claims(**overrides: Any) -> dict[str, Any]:
    """Session claims of Ada (USER_ID) from ISSUER for ORIGIN; an override of None removes that claim."""
    claims = session_claims(
        USER_ID, email="ada@example.com", first_name="Ada", last_name="Lovelace", issuer=ISSUER, azp=ORIGIN
    )
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """`header.payload`, base64url-encoded JSON, without a signature segment."""
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"


def alg_none(payload: dict[str, Any]) -> str:
    """An unsigned token that says so (`alg: none`, empty signature): no verifier may accept it."""
    return unsigned_token({"alg": "none", "typ": "JWT"}, payload) + "."


def hs256_with_public_pem(key: SigningKey, payload: dict[str, Any]) -> str:
    """The classic RS→HS confusion: HMAC keyed with the public PEM. PyJWT refuses to make it, so by hand."""
    signing_input = unsigned_token({"alg": "HS256", "typ": "JWT", "kid": key.kid}, payload)
    signature = hmac.new(key.public_pem().encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def nested_json(depth: int, *, kind: str = "array") -> bytes:
    """A JSON text nested `depth` deep (`[[[...]]]` or `{"":{"":...}}`): built as text, since
    json.dumps cannot write what Python's recursion limit forbids it to hold."""
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"":' * depth + b"0" + b"}" * depth


def huge_integer(digits: int) -> bytes:
    """A JSON integer of `digits` digits: past 4,300, Python's int() refuses to read it (ValueError)."""
    return b"9" * digits


def signed_raw_token(key: SigningKey, payload: bytes, header: bytes | None = None) -> str:
    """An RS256 token whose segments are these exact bytes, validly signed by `key`: what a hostile
    (or broken) signer could send, which PyJWT's own encoder would never produce."""
    if header is None:
        header = json.dumps({"alg": "RS256", "typ": "JWT", "kid": key.kid}).encode()
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def trust_pem(
    monkeypatch: pytest.MonkeyPatch, key: SigningKey, *, issuer: str = ISSUER, authorized_parties: str | None
) -> None:
    """The authorizer's environment: `key`'s PEM (networkless, no JWKS), `issuer` checked, and azp
    checked against `authorized_parties` (None: any azp)."""
    monkeypatch.delenv("CLERK_JWKS_URL", raising=False)
    monkeypatch.setenv("CLERK_JWT_KEY", key.public_pem())
    monkeypatch.setenv("CLERK_ISSUER", issuer)
    if authorized_parties is None:
        monkeypatch.delenv("CLERK_AUTHORIZED_PARTIES", raising=False)
    else:
        monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", authorized_parties)
