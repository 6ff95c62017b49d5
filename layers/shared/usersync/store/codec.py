"""The one item codec of every table: plain attributes to DynamoDB's typed JSON, and stored items back,
tolerantly (contract §3: the tables are shared with the application, backfills and the console).

Reading, for every table alike:
- an item carrying `deletedAt`, of any type or value, is a tombstone whatever else it holds or lacks;
- only the attributes a table's `ItemSchema` names are read; unknown attributes of any type (decimal
  numbers, lists, maps, booleans) are ignored;
- a key that is not a non-empty string, or a known attribute present with a value we cannot interpret
  (another type, a decimal where an integer belongs), raises `UninterpretableItemError`: a read failure
  of the repository, never a guess;
- bookkeeping another writer may have written its own way (`syncedAt`, `lastEventId`, `source`) is read
  when we can and otherwise treated as absent.

Hand-written rather than boto3's TypeSerializer/TypeDeserializer (`python -m bench --only codec`
measures both in one run): with the rules above on top, TypeDeserializer reads an item in ~1.7-2x the
time, TypeSerializer writes one in ~4.7x, and importing `boto3.dynamodb.types` adds ~17 ms to every
cold start of handlers that otherwise load botocore only. The tables hold strings and integers only,
so the hand-written pair stays small.

Types: what we write is an `Item` (mypy-boto3-dynamodb's `AttributeValueTypeDef` per attribute, for
mypy only); the readers take `Mapping[str, object]`, since another writer's item may hold anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from usersync.runtime.metrics import SyncSource
from usersync.store.errors import UninterpretableItemError

if TYPE_CHECKING:  # the stubs are a dev dependency: nothing of them is imported at run time
    from typing import TypeAlias

    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    # One item in DynamoDB's typed JSON, as the client sends and returns it.
    Item: TypeAlias = dict[str, AttributeValueTypeDef]

DELETED_AT = "deletedAt"


def attributes_to_item(attributes: Mapping[str, object]) -> Item:
    """Plain attributes (strings, integers) as DynamoDB's typed JSON; anything else is a bug here."""
    item: Item = {}
    for name, value in attributes.items():
        if isinstance(value, str):
            item[name] = {"S": value}
        elif isinstance(value, int) and not isinstance(value, bool):
            item[name] = {"N": str(value)}
        else:
            raise TypeError(f"attribute {name} must be a string or an integer")
    return item


def string_value(value: object) -> str | None:
    """An `S` value, else None (another type, garbage)."""
    raw = value.get("S") if isinstance(value, Mapping) else None
    return raw if isinstance(raw, str) else None


def integer_value(value: object) -> int | None:
    """An integral `N`, else None (decimals, other types, garbage)."""
    raw = value.get("N") if isinstance(value, Mapping) else None
    if not isinstance(raw, str):
        return None
    try:
        number = Decimal(raw)
    except InvalidOperation:
        return None
    return int(number) if number.is_finite() and number == number.to_integral_value() else None


def deletion_time(value: object) -> int:
    """`deletedAt` of any type marks a tombstone; its time is read when it is a number, else 0."""
    raw = value.get("N") if isinstance(value, Mapping) else None
    try:
        return int(Decimal(raw)) if isinstance(raw, str) else 0
    except (InvalidOperation, ValueError, OverflowError):
        return 0


def source_value(item: Mapping[str, object]) -> SyncSource | None:
    """The item's writer, or None when absent or another writer's own value."""
    raw = string_value(item.get("source"))
    try:
        return SyncSource(raw) if raw is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class ItemSchema:
    """The attributes of a table's items that the code reads (table names); the rest is ignored."""

    keys: tuple[str, ...]  # non-empty strings, required: they say which item this is
    text: tuple[str, ...] = ()  # strings; "" reads as absent (an unknown value is never "")
    integers: tuple[str, ...] = ()  # integral numbers (Clerk's epoch-ms times)
    notes: tuple[str, ...] = ("syncedAt", "lastEventId")  # read when strings, else absent


def decode_item(item: Mapping[str, object], schema: ItemSchema, operation: str) -> dict[str, Any]:
    """The attributes `schema` names, as plain values (absent ones left out), by the rules above. A
    tombstone keeps its keys, `deletedAt` and `source` only: nothing else of it is ever read."""
    fields: dict[str, Any] = {}
    for name in schema.keys:
        key = string_value(item.get(name))
        if not key:
            raise UninterpretableItemError(operation, f"{name} is not a non-empty string")
        fields[name] = key
    if DELETED_AT in item:
        fields[DELETED_AT] = deletion_time(item[DELETED_AT])
        return _with_source(fields, item)
    readers = ((schema.text, string_value, "a string"), (schema.integers, integer_value, "an integer"))
    for names, read, kind in readers:
        for name in names:
            if name not in item:
                continue
            value = read(item[name])
            if value is None:
                raise UninterpretableItemError(operation, f"{name} is not {kind}")
            fields[name] = None if value == "" else value  # "" is an unknown value, never stored
    for name in schema.notes:
        note = string_value(item.get(name))
        if note is not None:
            fields[name] = note
    return _with_source(fields, item)


def _with_source(fields: dict[str, Any], item: Mapping[str, object]) -> dict[str, Any]:
    """`source` added when it is one of ours: absent, the record's default stands."""
    source = source_value(item)
    if source is not None:
        fields["source"] = source
    return fields
