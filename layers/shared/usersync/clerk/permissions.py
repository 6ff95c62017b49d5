"""Clerk's authorization data in a session token, decoded as Clerk's JavaScript SDK decodes it, and
`has()` decided by the same rules (clerk/javascript `packages/shared/src/jwtPayloadParser.ts` and
`authorization.ts`).

- `fea` (v2): a comma list `scope:name`, scope `o` (organization), `u` (user) or `ou`/`uo` (both);
  other scopes are ignored. An element without a colon makes the whole claim unreadable (the SDK
  throws there): no features and no organization permissions, which fails closed.
- `pla` (v2): the same format for plans (`u:free,o:pro`).
- `o.per` + `o.fpm` (v2): `per` names the permissions, `fpm` holds one decimal bit mask per
  organization-scoped feature of `fea`, in order; bit j (least significant first) of feature i's mask
  grants `org:<feature i>:<per[j]>`. A mask that is not a plain ASCII decimal grants nothing for its
  feature; bits past the end of `per` grant nothing.
- `org_permissions` (v1): the list as the token carries it.
- Roles compare with the `org:` prefix (`admin` is `org:admin`); role and permission need an active
  organization. `feature`/`plan` scoped `o:`/`org:`/`organization:` or `u:`/`user:` check that scope,
  unscoped either. Every condition asked must hold; missing data fails closed.

Nothing here reads API Gateway: the authorizer builds an `Authorization` from verified claims, a
handler from the authorizer context (`usersync.api.access`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TypedDict, Unpack

ORG_PREFIX = "org:"
ORG_SCOPES = frozenset({"o", "org", "organization"})
USER_SCOPES = frozenset({"u", "user"})
ORG = "org"
USER = "user"
# What follows `org:` in a role key (any name) and in a permission key (`<feature>:<permission>`);
# `check_name` has already refused spaces (so newlines) and commas.
_ROLE_NAME = re.compile(r".+")
_PERMISSION_NAME = re.compile(r"[^:]+:[^:]+")
# Digits parsed per step when a mask is reduced modulo 2**len(per): small enough that each step's int
# stays cheap, and every step stays far below Python's 4,300-digit int() limit.
_MASK_CHUNK_DIGITS = 18


def with_org_prefix(value: str) -> str:
    """`admin`, `org:admin` and `org:org:admin` all become `org:admin` (the SDK's `prefixWithOrg`)."""
    while value.startswith(ORG_PREFIX):
        value = value[len(ORG_PREFIX) :]
    return ORG_PREFIX + value


# Built per request: plain slotted dataclasses, not frozen ones (a frozen __init__ costs ~1 us more for
# its object.__setattr__ calls, on the authorizer's per-request path). Treat them as read-only.
@dataclass(slots=True)
class Scoped:
    """Features or plans of a `fea`/`pla` claim, split by scope (`ou`/`uo` entries are in both)."""

    org: frozenset[str]
    user: frozenset[str]

    def has(self, scope: str | None, name: str) -> bool:
        if scope == ORG:
            return name in self.org
        if scope == USER:
            return name in self.user
        return name in self.org or name in self.user


def split_by_scope_ordered(claim: str) -> tuple[list[str], list[str]] | None:
    """(organization names in order, user names in order), or None when an element has no colon."""
    org: list[str] = []
    user: list[str] = []
    for element in claim.split(","):
        scope, colon, name = element.strip().partition(":")
        if not colon:
            return None
        if scope == "o":
            org.append(name)
        elif scope == "u":
            user.append(name)
        elif scope in ("ou", "uo"):
            org.append(name)
            user.append(name)
    return org, user


def split_by_scope(claim: str | None) -> Scoped | None:
    """A `fea`/`pla` claim by scope; None when the claim is absent or unreadable (grants nothing)."""
    if not claim:
        return None
    split = split_by_scope_ordered(claim)
    if split is None:
        return None
    return Scoped(frozenset(split[0]), frozenset(split[1]))


def mask_bits(entry: str, width: int) -> int | None:
    """The low `width` bits of a decimal mask, exactly, whatever its length; None if not a decimal.

    `int()` would be exact too, but refuses strings past 4,300 digits and costs quadratic time on long
    ones: reducing modulo 2**width chunk by chunk keeps every step small and the work linear.
    """
    digits = entry.strip()
    if not digits or not digits.isascii() or not digits.isdigit():  # ASCII 0-9 only, as the SDK's /^\d+$/
        return None
    if width <= 0:
        return 0
    modulus_mask = (1 << width) - 1
    if len(digits) <= _MASK_CHUNK_DIGITS:
        return int(digits) & modulus_mask
    value = 0
    for start in range(0, len(digits), _MASK_CHUNK_DIGITS):
        chunk = digits[start : start + _MASK_CHUNK_DIGITS]
        value = (value * 10 ** len(chunk) + int(chunk)) & modulus_mask
    return value


def decode_org_permissions(fea: str | None, per: str | None, fpm: str | None) -> tuple[str, ...]:
    """`org:<feature>:<permission>` for every set bit, in the order of `fea` then `per`."""
    if not fea or not per or not fpm:
        return ()
    split = split_by_scope_ordered(fea)
    if split is None:
        return ()
    features = split[0]
    permissions = [name.strip() for name in per.split(",")]
    width = len(permissions)
    granted: list[str] = []
    for feature, entry in zip(features, fpm.split(","), strict=False):
        bits = mask_bits(entry, width)
        if not bits:
            continue
        for index in range(min(width, bits.bit_length())):
            if bits >> index & 1 and permissions[index]:
                granted.append(f"{ORG_PREFIX}{feature}:{permissions[index]}")
    return tuple(granted)


class Conditions(TypedDict, total=False):
    """The keywords of Clerk's `has()`, declared once for its three doors (`Requirement.of`,
    `Authorization.has`, `usersync.api.access.has`): mypy checks every caller's keywords against it."""

    role: str | None
    permission: str | None
    feature: str | None
    plan: str | None


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route (or a handler's `has()`) asks for; every condition given must hold.

    Values are normalised once: `role`/`permission` carry the `org:` prefix, `feature`/`plan` are
    (scope, name) with scope ORG, USER or None (either).
    """

    role: str | None = None
    permission: str | None = None
    feature: tuple[str | None, str] | None = None
    plan: tuple[str | None, str] | None = None

    @classmethod
    def of(cls, **conditions: Unpack[Conditions]) -> Requirement:
        """Normalise Clerk-style values; raises ValueError naming the field for an unusable one."""
        role, permission = conditions.get("role"), conditions.get("permission")
        feature, plan = conditions.get("feature"), conditions.get("plan")
        return cls(
            role=None if role is None else check_role(role),
            permission=None if permission is None else check_permission(permission),
            feature=None if feature is None else parse_scoped("feature", feature),
            plan=None if plan is None else parse_scoped("plan", plan),
        )

    def describe(self) -> str:
        """The conditions as Clerk's `has()` arguments would name them (for logs and messages)."""
        parts = [
            f"{name}={_scoped_text(value) if isinstance(value, tuple) else value}"
            for name, value in (
                ("role", self.role),
                ("permission", self.permission),
                ("feature", self.feature),
                ("plan", self.plan),
            )
            if value is not None
        ]
        return ",".join(parts)


def check_name(field: str, value: str) -> str:
    """A name as Clerk writes keys: non-empty, no spaces, no commas (the claims' separator)."""
    if not value or "," in value or any(c.isspace() for c in value):
        raise ValueError(f"{field} must be a non-empty name without spaces or commas, got {value!r}")
    return value


def check_role(value: str) -> str:
    """`admin` or `org:admin` → `org:admin`."""
    return _check_org_key("role", value, _ROLE_NAME, "name a role, such as org:admin")


def check_permission(value: str) -> str:
    """`org:<feature>:<permission>` (the `org:` optional), as Clerk names permission keys."""
    return _check_org_key("permission", value, _PERMISSION_NAME, "be org:<feature>:<permission>")


def _check_org_key(field: str, value: str, name: re.Pattern[str], expected: str) -> str:
    """The key with its `org:` prefix (`with_org_prefix`), once what follows the prefix is a `name`."""
    key = with_org_prefix(check_name(field, value))
    if name.fullmatch(key, len(ORG_PREFIX)) is None:
        raise ValueError(f"{field} must {expected}, got {value!r}")
    return key


def parse_scoped(field: str, value: str) -> tuple[str | None, str]:
    """`o:x`/`org:x`/`organization:x` → (ORG, x); `u:x`/`user:x` → (USER, x); `x` → (None, x)."""
    scope, colon, name = check_name(field, value).partition(":")
    if not colon:
        return None, scope
    if ":" in name or not name:
        raise ValueError(f"{field} must be `name` or `scope:name`, got {value!r}")
    if scope in ORG_SCOPES:
        return ORG, name
    if scope in USER_SCOPES:
        return USER, name
    raise ValueError(f"{field} scope must be o/org/organization or u/user, got {scope!r}")


def _scoped_text(value: tuple[str | None, str]) -> str:
    scope, name = value
    return name if scope is None else f"{scope[0]}:{name}"


@dataclass(slots=True)
class Authorization:
    """The caller's organization, role, permissions, features and plans, as `has()` reads them."""

    org_id: str | None = None
    org_role: str | None = None
    org_permissions: Collection[str] | None = None  # a tuple of a few: `in` is as fast as a set's
    features: Scoped | None = None
    plans: Scoped | None = None

    @classmethod
    def build(
        cls,
        *,
        org_id: str | None,
        org_role: str | None,
        org_permissions: Iterable[str] | None,
        fea: str | None,
        pla: str | None,
    ) -> Authorization:
        return cls(
            org_id=org_id or None,
            org_role=org_role or None,
            org_permissions=None if org_permissions is None else tuple(org_permissions),
            features=split_by_scope(fea),
            plans=split_by_scope(pla),
        )

    def missing(self, requirement: Requirement) -> str | None:
        """The first condition of `requirement` that does not hold (as `name=value`), or None."""
        if requirement.role is not None or requirement.permission is not None:
            if self.org_id is None:
                return "organization (none active) for " + requirement.describe()
            role = requirement.role
            if role is not None and (self.org_role is None or with_org_prefix(self.org_role) != role):
                return f"role={role}"
            permission = requirement.permission
            if permission is not None and (
                self.org_permissions is None or permission not in self.org_permissions
            ):
                return f"permission={permission}"
        feature = requirement.feature
        if feature is not None and (self.features is None or not self.features.has(*feature)):
            return f"feature={_scoped_text(feature)}"
        plan = requirement.plan
        if plan is not None and (self.plans is None or not self.plans.has(*plan)):
            return f"plan={_scoped_text(plan)}"
        return None

    def has(self, **conditions: Unpack[Conditions]) -> bool:
        """Clerk's `has()`: every condition given holds; none given, or an unusable value, is False."""
        if all(value is None for value in conditions.values()):
            return False
        try:
            requirement = Requirement.of(**conditions)
        except ValueError:  # as the SDK: an invalid scope fails closed rather than raising
            return False
        return self.missing(requirement) is None
