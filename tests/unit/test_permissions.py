"""Clerk's permissions, features and plans decoded and decided as Clerk's JS SDK does
(`packages/shared/src/jwtPayloadParser.ts`, `authorization.ts`; CONTRACT §5 "Who may call which route")."""

from __future__ import annotations

import sys

import pytest

from usersync.clerk.permissions import (
    Authorization,
    Requirement,
    decode_org_permissions,
    mask_bits,
    split_by_scope,
)

# ---------------------------------------------------------------- decoding o.per + o.fpm over fea


def test_clerks_own_example_grants_exactly_these_permissions() -> None:
    """The SDK's parser test "case 3"."""
    granted = decode_org_permissions("o:repositories,o:projects", "read,create,update,delete,revoke", "7,21")

    assert sorted(granted) == sorted(
        [
            "org:repositories:read",
            "org:repositories:create",
            "org:repositories:update",
            "org:projects:read",
            "org:projects:update",
            "org:projects:revoke",
        ]
    )
    assert len(granted) == len(set(granted)) == 6


@pytest.mark.parametrize(
    ("fea", "per", "fpm", "expected"),
    [
        # masks run over the org-scoped features only, in order: user features take no mask entry
        (
            "o:repositories,uo:projects,u:goldprofileborder",
            "read,create,update,delete,revoke",
            "7,21,0",
            [
                "org:repositories:read",
                "org:repositories:create",
                "org:repositories:update",
                "org:projects:read",
                "org:projects:update",
                "org:projects:revoke",
            ],
        ),
        (
            "ou:memberships,u:impersonation",
            "read,manage",
            "3,0",
            ["org:memberships:read", "org:memberships:manage"],
        ),
        ("u:a,o:b", "read,manage", "2", ["org:b:manage"]),
        # a zero mask keeps the following features aligned
        (
            "o:repositories,o:impersonation,o:billing",
            "manage,read,update",
            "6,0,3",
            ["org:repositories:read", "org:repositories:update", "org:billing:manage", "org:billing:read"],
        ),
        # fewer masks than features: the rest get nothing; more masks: the extra ones are unused
        ("o:a,o:b", "read", "1", ["org:a:read"]),
        ("o:a", "read", "1,1,1", ["org:a:read"]),
        # whitespace around entries is trimmed, as the SDK trims
        (" o:a , o:b ", " read , manage ", " 1 , 2 ", ["org:a:read", "org:b:manage"]),
        # unknown scopes are ignored (not org features, so they take no mask)
        ("x:a,o:b", "read", "1", ["org:b:read"]),
    ],
)
def test_masks_are_read_least_significant_bit_first_over_org_features(
    fea: str, per: str, fpm: str, expected: list[str]
) -> None:
    assert list(decode_org_permissions(fea, per, fpm)) == expected


def test_a_60_permission_mask_past_2_53_decodes_exactly() -> None:
    names = [f"p{index}" for index in range(60)]
    chosen = {0, 1, 2, 52, 53, 54, 58, 59}
    mask = sum(1 << index for index in chosen)
    assert mask > 2**53
    assert float(mask) != mask  # a double could not hold it

    granted = decode_org_permissions("o:feature", ",".join(names), str(mask))

    assert list(granted) == [f"org:feature:p{index}" for index in sorted(chosen)]


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        # the SDK's own boundary cases (54 permissions)
        ("9007199254740993", [0, 53]),
        ("9007199254740995", [0, 1, 53]),
        ("18014398509481984", []),  # bit 54: past the declared permissions
    ],
)
def test_the_sdks_safe_integer_boundary_cases(mask: str, expected: list[int]) -> None:
    names = [f"permission_{index}" for index in range(54)]
    assert list(decode_org_permissions("o:feature", ",".join(names), mask)) == [
        f"org:feature:permission_{index}" for index in expected
    ]


@pytest.mark.parametrize(
    "entry",
    # Arabic-Indic, fullwidth and Devanagari sevens: str.isdigit() says yes, the SDK's /^\d+$/ says no
    ["1invalid", "-1", "1.5", "+3", "0x7", "1_1", "", " ", "\u0667", "\uff17", "3\n3", "1e3", "\u096d"],
)
def test_an_entry_that_is_not_a_plain_decimal_grants_nothing_for_its_feature(entry: str) -> None:
    granted = decode_org_permissions("o:first,o:second,o:third", "read,manage", f"3,{entry},1")

    # the features around it keep their own masks
    assert list(granted) == ["org:first:read", "org:first:manage", "org:third:read"]
    assert mask_bits(entry, 2) is None


def test_a_decimal_of_any_length_is_exact_past_pythons_int_digit_limit() -> None:
    """int() refuses strings past 4,300 digits (and is quadratic below that): the low bits stay exact."""
    text = "1" + "0" * 7999  # 10**7999: more digits than an 8 KiB token can carry
    if sys.get_int_max_str_digits():
        with pytest.raises(ValueError, match="integer string conversion"):
            int(text)

    assert mask_bits(text, 60) == pow(10, 7999, 2**60)
    assert mask_bits(text + "7", 3) == 7
    names = ",".join(f"p{index}" for index in range(60))
    assert list(decode_org_permissions("o:f", names, "0" * 5000 + "5")) == ["org:f:p0", "org:f:p2"]


def test_leading_zeros_and_bits_past_per_grant_nothing_extra() -> None:
    assert list(decode_org_permissions("o:f", "a,b", "0007")) == ["org:f:a", "org:f:b"]


@pytest.mark.parametrize(
    ("fea", "per", "fpm"),
    [
        (None, "read", "1"),
        ("o:a", None, "1"),
        ("o:a", "read", None),
        ("", "read", "1"),
        ("o:a,broken", "read", "1"),  # an element without a colon: the SDK throws; we grant nothing
        ("u:a", "read", "1"),  # no org-scoped feature
    ],
)
def test_missing_or_unreadable_claims_grant_no_permission(
    fea: str | None, per: str | None, fpm: str | None
) -> None:
    assert decode_org_permissions(fea, per, fpm) == ()


def test_split_by_scope() -> None:
    scoped = split_by_scope("o:a,u:b,ou:c,uo:d,x:e")
    assert scoped is not None
    assert (scoped.org, scoped.user) == (frozenset("acd"), frozenset("bcd"))
    assert split_by_scope("") is None
    assert split_by_scope(None) is None
    assert split_by_scope("o:a,b") is None


# ---------------------------------------------------------------- has()


def org_member(**changes: object) -> Authorization:
    values: dict[str, object] = {
        "org_id": "org_1",
        "org_role": "org:admin",
        "org_permissions": decode_org_permissions(
            "o:repositories,o:projects", "read,create,update,delete,revoke", "7,21"
        ),
        "fea": "o:repositories,o:projects,u:beta",
        "pla": "u:free,o:pro",
    }
    values.update(changes)
    return Authorization.build(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ({"role": "org:admin"}, True),
        ({"role": "admin"}, True),  # roles compare with the org: prefix
        ({"role": "org:member"}, False),
        ({"permission": "org:repositories:create"}, True),
        ({"permission": "repositories:create"}, True),
        ({"permission": "org:repositories:delete"}, False),
        ({"permission": "org:projects:revoke"}, True),
        ({"feature": "repositories"}, True),  # unscoped: either scope
        ({"feature": "beta"}, True),
        ({"feature": "o:beta"}, False),  # beta is a user feature
        ({"feature": "u:beta"}, True),
        ({"feature": "user:beta"}, True),
        ({"feature": "org:repositories"}, True),
        ({"feature": "organization:projects"}, True),
        ({"feature": "u:repositories"}, False),
        ({"feature": "x:repositories"}, False),  # unknown scope: false, as the SDK
        ({"plan": "pro"}, True),
        ({"plan": "o:pro"}, True),
        ({"plan": "u:pro"}, False),
        ({"plan": "u:free"}, True),
        ({"plan": "o:free"}, False),
        (
            {
                "role": "org:admin",
                "permission": "org:projects:update",
                "feature": "o:projects",
                "plan": "o:pro",
            },
            True,
        ),
        ({"role": "org:admin", "permission": "org:projects:delete"}, False),  # all must hold
        ({"role": "org:member", "plan": "o:pro"}, False),
        ({}, False),  # nothing asked: the SDK answers false
    ],
)
def test_has_decides_as_clerks_sdk(question: dict[str, str], expected: bool) -> None:
    assert org_member().has(**question) is expected


def test_role_and_permission_need_an_active_organization() -> None:
    personal = org_member(org_id=None, org_role=None, org_permissions=None, fea="u:beta", pla="u:free")
    assert not personal.has(role="org:admin")
    assert not personal.has(permission="org:repositories:read")
    assert personal.has(feature="beta")
    assert personal.has(plan="free")
    # an org role without an org id is no organization either
    assert not org_member(org_id=None).has(role="org:admin")


def test_missing_data_fails_closed() -> None:
    bare = Authorization.build(org_id="org_1", org_role=None, org_permissions=None, fea=None, pla=None)
    assert not bare.has(role="org:admin")
    assert not bare.has(permission="org:a:b")
    assert not bare.has(feature="a")
    assert not bare.has(plan="a")


def test_missing_names_the_first_condition_that_fails() -> None:
    requirement = Requirement.of(role="admin", permission="projects:delete", plan="o:pro")
    assert org_member().missing(requirement) == "permission=org:projects:delete"
    assert org_member(org_role="org:member").missing(requirement) == "role=org:admin"
    assert org_member(org_id=None).missing(requirement) == (
        "organization (none active) for role=org:admin,permission=org:projects:delete,plan=o:pro"
    )
    assert org_member().missing(Requirement.of(feature="u:repositories")) == "feature=u:repositories"
    assert org_member().missing(Requirement.of(plan="enterprise")) == "plan=enterprise"
    assert org_member().missing(Requirement.of(role="org:admin", feature="o:projects")) is None


@pytest.mark.parametrize(
    "arguments",
    [
        {"role": ""},
        {"role": "org:"},
        {"role": "org admin"},
        {"permission": "billing"},
        {"permission": "org:billing"},
        {"permission": "org:a:b:c"},
        {"feature": "o:"},
        {"feature": "x:a"},
        {"feature": "o:a:b"},
        {"plan": "a,b"},
    ],
)
def test_unusable_requirement_values_are_refused_by_name(arguments: dict[str, str]) -> None:
    (field,) = arguments
    with pytest.raises(ValueError, match=field):
        Requirement.of(**arguments)
