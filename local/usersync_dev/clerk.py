"""Clerk-shaped payloads, Svix-signed deliveries and session tokens, for tests and local use.

Payloads follow Clerk's documented `user.*` webhook examples (Backend API User object, epoch-ms
times, `email_addresses` + `primary_email_address_id`); tokens carry Clerk's v2 default claims plus
the custom claims docs/deploying.md tells you to configure.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from svix.webhooks import Webhook


def now_ms() -> int:
    return int(time.time() * 1000)


def new_user_id() -> str:
    return "user_" + uuid.uuid4().hex[:27]


def clerk_user(
    user_id: str,
    *,
    email: str | None = "ada@example.com",
    first_name: str | None = "Ada",
    last_name: str | None = "Lovelace",
    image_url: str | None = "https://img.clerk.com/ada.png",
    created_at: int | None = None,
    updated_at: int | None = None,
    extra_emails: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The `data` of a user.created / user.updated event. `email=None` makes a phone-only user."""
    created = created_at if created_at is not None else now_ms()
    addresses = [
        {
            "id": f"idn_{uuid.uuid5(uuid.NAMESPACE_DNS, address).hex[:24]}",
            "object": "email_address",
            "email_address": address,
            "linked_to": [],
            "verification": {"status": "verified", "strategy": "email_code"},
        }
        for address in (*extra_emails, *([email] if email else []))
    ]
    return {
        "id": user_id,
        "object": "user",
        "external_id": None,
        "first_name": first_name,
        "last_name": last_name,
        "image_url": image_url,
        "profile_image_url": image_url,
        "has_image": image_url is not None,
        "email_addresses": addresses,
        # The primary address is deliberately last when extra addresses exist: never take [0].
        "primary_email_address_id": addresses[-1]["id"] if email else None,
        "phone_numbers": [] if email else [{"id": "idn_phone", "phone_number": "+15555550100"}],
        "primary_phone_number_id": None if email else "idn_phone",
        "external_accounts": [],
        "public_metadata": {},
        "private_metadata": {},
        "unsafe_metadata": {},
        "password_enabled": True,
        "two_factor_enabled": False,
        "last_sign_in_at": None,
        "created_at": created,
        "updated_at": updated_at if updated_at is not None else created,
    }


def clerk_event(event_type: str, data: dict[str, Any], *, timestamp: int | None = None) -> dict[str, Any]:
    """The webhook envelope around `data`."""
    return {
        "data": data,
        "event_attributes": {"http_request": {"client_ip": "192.0.2.1", "user_agent": "Mozilla/5.0"}},
        "instance_id": "ins_2abcDEFghiJKLmnoPQRstuVWxyz",
        "object": "event",
        "timestamp": timestamp if timestamp is not None else now_ms(),
        "type": event_type,
    }


def deleted_user(user_id: str) -> dict[str, Any]:
    return {"deleted": True, "id": user_id, "object": "user"}


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class SignedDelivery:
    body: bytes
    headers: dict[str, str]
    message_id: str


def sign_delivery(
    secret: str,
    payload: dict[str, Any] | bytes,
    *,
    message_id: str | None = None,
    timestamp: datetime | None = None,
) -> SignedDelivery:
    """Sign `payload` as Svix does for Clerk: `svix-id`, `svix-timestamp`, `svix-signature`."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    msg_id = message_id or f"msg_{uuid.uuid4().hex[:27]}"
    when = timestamp or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return SignedDelivery(
        body=body,
        headers={
            "svix-id": msg_id,
            "svix-timestamp": str(int(when.timestamp())),
            "svix-signature": signature,
            "content-type": "application/json",
        },
        message_id=msg_id,
    )


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair standing in for a Clerk instance's JWT key."""

    private_key: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            kid or f"ins_{uuid.uuid4().hex[:12]}",
        )

    @classmethod
    def from_pem(cls, pem: bytes, kid: str) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(key, kid)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}


def session_claims(
    user_id: str,
    *,
    email: str | None = "ada@example.com",
    first_name: str | None = None,
    last_name: str | None = None,
    image_url: str | None = None,
    issuer: str = "https://clerk.example.test",
    azp: str | None = "http://localhost:3000",
    lifetime_seconds: int = 60,
    issued_at: int | None = None,
    org_id: str | None = None,
    org_slug: str | None = None,
    org_role: str = "org:member",
    pending: bool = False,
    actor: str | None = None,
    version: int = 2,
    permissions: Sequence[str] = (),
    features: Sequence[str] = (),
    plans: Sequence[str] = (),
) -> dict[str, Any]:
    """Clerk session-token claims (v2 by default, `version=1` the deprecated shape) plus the custom
    profile claims usersync reads.

    `org_id` makes an organization active: v2 writes it as `o` (`rol` without the `org:` prefix),
    v1 as `org_id`/`org_slug`/`org_role`. `pending` sets `sts: "pending"` (an unfinished session
    task), `actor` the impersonator's user id in `act`. `permissions` (`org:<feature>:<name>`, need an
    organization) become v2 `o.per`/`o.fpm` over `fea` (`encode_org_permissions`) or v1
    `org_permissions`; `features` (`o:x`, `u:x`, `ou:x`) and `plans` (`u:free`, `o:pro`) become v2
    `fea` and `pla` (v1 has neither).
    """
    if permissions and org_id is None:
        raise ValueError("permissions need an active organization (org_id)")
    if version != 2 and (features or plans):
        raise ValueError("features and plans are session token v2 claims")
    iat = issued_at if issued_at is not None else int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "sid": f"sess_{uuid.uuid4().hex[:24]}",
        "iss": issuer,
        "iat": iat,
        "nbf": iat - 10,
        "exp": iat + lifetime_seconds,
        "fva": [0, -1],
    }
    if version == 2:
        claims.update({"jti": uuid.uuid4().hex[:20], "v": 2, "sts": "active"})
        if plans:
            claims["pla"] = ",".join(plans)
    if pending:
        claims["sts"] = "pending"
    if azp is not None:
        claims["azp"] = azp
    if org_id is not None:
        organization, features = _organization_claims(
            version, org_id, org_slug, org_role, permissions, features
        )
        claims.update(organization)
    if version == 2 and features:
        claims["fea"] = ",".join(features)
    if actor is not None:
        claims["act"] = {
            "iss": "https://dashboard.clerk.com",
            "sid": f"sess_{uuid.uuid4().hex[:24]}",
            "sub": actor,
        }
    optional = {"email": email, "firstName": first_name, "lastName": last_name, "imageUrl": image_url}
    claims.update({name: value for name, value in optional.items() if value is not None})
    return claims


def _organization_claims(
    version: int,
    org_id: str,
    org_slug: str | None,
    org_role: str,
    permissions: Sequence[str],
    features: Sequence[str],
) -> tuple[dict[str, Any], Sequence[str]]:
    """The active organization's claims in `version`'s shape, and the features `fea` then lists (v2
    organization permissions add the features they belong to)."""
    role = org_role if org_role.startswith("org:") else f"org:{org_role}"
    if version != 2:
        claims: dict[str, Any] = {"org_id": org_id, "org_role": role} | (
            {"org_slug": org_slug} if org_slug else {}
        )
        if permissions:
            claims["org_permissions"] = [_org_prefixed(permission) for permission in permissions]
        return claims, features
    organization = {"id": org_id, "rol": role.removeprefix("org:")} | ({"slg": org_slug} if org_slug else {})
    if permissions:
        fea, per, fpm = encode_org_permissions(features, permissions)
        organization |= {"per": per, "fpm": fpm}
        features = fea.split(",")
    return {"o": organization}, features


def _org_prefixed(permission: str) -> str:
    return permission if permission.startswith("org:") else f"org:{permission}"


def encode_org_permissions(features: Sequence[str], permissions: Sequence[str]) -> tuple[str, str, str]:
    """(`fea`, `o.per`, `o.fpm`) as Clerk encodes organization permissions in a v2 session token.

    `per` lists each permission name once; `fpm` holds one decimal mask per organization-scoped
    feature of `fea` (`o:`, `ou:`, `uo:`), in order, bit j (least significant first) set when that
    feature grants `per[j]`. A permission's feature is added to `fea` as `o:<feature>` when `features`
    does not already give it the organization scope. The inverse of `usersync.clerk.permissions`.
    """
    granted: dict[str, list[str]] = {}
    for permission in permissions:
        feature, colon, name = _org_prefixed(permission).removeprefix("org:").partition(":")
        if not feature or not colon or not name or ":" in name:
            raise ValueError(f"a permission is org:<feature>:<permission>, got {permission!r}")
        granted.setdefault(feature, [])
        if name not in granted[feature]:
            granted[feature].append(name)
    elements = list(features)
    org_features = [
        element.partition(":")[2] for element in elements if element.partition(":")[0] in ("o", "ou", "uo")
    ]
    for feature in granted:
        if feature not in org_features:
            elements.append(f"o:{feature}")
            org_features.append(feature)
    per: list[str] = []
    for names in granted.values():
        per.extend(name for name in names if name not in per)
    masks = [sum(1 << per.index(name) for name in granted.get(feature, [])) for feature in org_features]
    return ",".join(elements), ",".join(per), ",".join(str(mask) for mask in masks)


def clerk_documented_claims(version: int, now: int, **overrides: Any) -> dict[str, Any]:
    """Clerk's documented session-token claims, each with the example value of its docs row
    (clerk-docs `guides/sessions/session-tokens`, "Version 2" / "Version 1" tabs: `o`, `org_*` and
    `act` included), plus the custom profile claims docs/deploying.md configures. Times are moved to `now`
    so the token is current; `sts` is left out (a session without it is active). An override of
    None removes that claim.
    """
    claims: dict[str, Any] = {
        "azp": "https://example.com",
        "exp": now + 60,
        "fva": [7, -1],
        "iat": now,
        "iss": "https://clerk.your-site.com",
        "nbf": now - 5,
        "sid": "sess_123",
        "sub": "user_123",
        "act": {"iss": "https://dashboard.clerk.com", "sid": "sess_456", "sub": "user_456"},
        "email": "ada@example.com",
        "firstName": "Ada",
        "lastName": "Lovelace",
    }
    if version == 2:
        claims |= {
            "jti": "1234567890",
            "v": 2,
            "pla": "u:free,o:pro",
            "fea": "o:dashboard,o:impersonation",
            "o": {"id": "org_123", "slg": "org-slug", "rol": "admin", "per": "read,manage", "fpm": "3,2"},
        }
    else:
        claims |= {
            "org_id": "org_123",
            "org_permissions": ["org:admin:example_permission", "org:member:example_permission"],
            "org_slug": "org-slug",
            "org_role": "org:admin",
        }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def mint_token(key: SigningKey, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(
        claims, key.private_pem(), algorithm="RS256", headers={"kid": key.kid, **(headers or {})}
    )


# ---------------------------------------------------------------- organizations and memberships
# Shapes from Clerk's Backend API (Organization, OrganizationMembership) and from real deliveries: a real
# organizationMembership.deleted carries the whole membership (role, role_name, permissions...).

ROLE_PERMISSIONS = {
    "org:admin": [
        "org:sys_domains:manage",
        "org:sys_domains:read",
        "org:sys_memberships:manage",
        "org:sys_memberships:read",
        "org:sys_profile:delete",
        "org:sys_profile:manage",
    ],
    "org:member": ["org:sys_memberships:read"],
}


def new_org_id() -> str:
    return "org_" + uuid.uuid4().hex[:27]


def new_membership_id() -> str:
    return "orgmem_" + uuid.uuid4().hex[:24]


def clerk_organization(
    org_id: str,
    *,
    name: str = "Acme Inc",
    slug: str | None = "acme-inc",
    image_url: str | None = "https://img.clerk.com/acme.png",
    created_at: int | None = None,
    updated_at: int | None = None,
    created_by: str | None = None,
) -> dict[str, Any]:
    """The `data` of organization.created / organization.updated (and an entry of GET /v1/organizations)."""
    created = created_at if created_at is not None else now_ms()
    return {
        "object": "organization",
        "id": org_id,
        "name": name,
        "slug": slug,
        "image_url": image_url,
        "has_image": image_url is not None,
        "max_allowed_memberships": 5,
        "admin_delete_enabled": True,
        "public_metadata": {},
        "private_metadata": {},
        "created_by": created_by,
        "created_at": created,
        "updated_at": updated_at if updated_at is not None else created,
    }


def deleted_organization(org_id: str) -> dict[str, Any]:
    return {"deleted": True, "id": org_id, "object": "organization"}


def clerk_membership(
    membership_id: str,
    *,
    organization: dict[str, Any],
    user_id: str,
    role: str = "org:member",
    created_at: int | None = None,
    updated_at: int | None = None,
    identifier: str = "ada@example.com",
) -> dict[str, Any]:
    """The `data` of organizationMembership.created|updated|deleted (and of GET .../memberships)."""
    created = created_at if created_at is not None else now_ms()
    role_key = role.removeprefix("org:")
    return {
        "object": "organization_membership",
        "id": membership_id,
        "role": role,
        "role_name": role_key.replace("_", " ").title(),
        "permissions": ROLE_PERMISSIONS.get(role, []),
        "public_metadata": {},
        "private_metadata": {},
        "organization": organization,
        "public_user_data": {
            "user_id": user_id,
            "first_name": "Ada",
            "last_name": "Lovelace",
            "image_url": "https://img.clerk.com/ada.png",
            "has_image": True,
            "identifier": identifier,
            "username": None,
        },
        "created_at": created,
        "updated_at": updated_at if updated_at is not None else created,
    }
