"""(8) The item codec: the hand-written one (usersync.store.codec) against boto3's TypeSerializer /
TypeDeserializer doing the same job, in the same run.

Both readers apply the same rules (contract §3: keys non-empty strings, known integers integral,
known text strings, `deletedAt` of any type a tombstone, the rest ignored) to the same stored user
and membership items; both writers encode the same record. Figures are ratios against the
hand-written codec measured moments apart, plus the cold-start cost of importing
`boto3.dynamodb.types` in a fresh interpreter that has already loaded the store (what the layer's
handlers would pay: they load botocore only). The layer keeps the hand-written codec while the
deserializer costs more than `ACCEPTABLE_RATIO` times as much per item, or its import adds to every
cold start.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bench._common import LAYER_DIR, Goal, interleaved, median_ratio

if TYPE_CHECKING:
    from usersync.store.codec import ItemSchema

ACCEPTABLE_RATIO = 1.25
T0 = 1_730_279_325_025
USER_ITEM = {
    "userId": {"S": "user_2abcDEFghiJKLmnoPQRstuVW"},
    "email": {"S": "ada@example.com"},
    "firstName": {"S": "Ada"},
    "lastName": {"S": "Lovelace"},
    "imageUrl": {"S": "https://img.clerk.com/abc"},
    "createdAt": {"N": str(T0)},
    "updatedAt": {"N": str(T0 + 5)},
    "clerkUpdatedAt": {"N": str(T0 + 5)},
    "syncedAt": {"S": "2024-10-30T09:08:45.025Z"},
    "source": {"S": "webhook"},
    "lastEventId": {"S": "msg_2abc"},
    "appScore": {"N": "1.5"},  # another writer's attribute: ignored by both
}


def _integral(value: Any) -> int | None:
    ok = isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value()
    return int(value) if ok else None


class _DeserializerReader:
    """A reader with the codec's rules on top of boto3's TypeDeserializer (Decimals in, ints out);
    imported when built, so loading this module costs the bench nothing."""

    def __init__(self) -> None:
        from boto3.dynamodb.types import TypeDeserializer

        from usersync.store.codec import source_value
        from usersync.store.errors import UninterpretableItemError

        self._deserializer = TypeDeserializer()
        self._source_value = source_value
        self._error = UninterpretableItemError

    def __call__(self, item: dict[str, Any], schema: ItemSchema, operation: str) -> dict[str, Any]:
        wanted = {*schema.keys, *schema.text, *schema.integers, *schema.notes, "deletedAt"}
        try:
            plain = {name: self._deserializer.deserialize(item[name]) for name in wanted if name in item}
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise self._error(operation, str(exc)) from None
        fields = self._keys(plain, schema, operation)
        if "deletedAt" in plain:
            return {**fields, "deletedAt": _integral(plain["deletedAt"]) or 0}
        fields.update(self._texts(plain, schema, operation))
        fields.update(self._integers(plain, schema, operation))
        fields.update({n: plain[n] for n in schema.notes if isinstance(plain.get(n), str)})
        source = self._source_value(item)
        return fields if source is None else {**fields, "source": source}

    def _keys(self, plain: dict[str, Any], schema: ItemSchema, operation: str) -> dict[str, Any]:
        for name in schema.keys:
            if not isinstance(plain.get(name), str) or not plain[name]:
                raise self._error(operation, f"{name} is not a non-empty string")
        return {name: plain[name] for name in schema.keys}

    def _texts(self, plain: dict[str, Any], schema: ItemSchema, operation: str) -> dict[str, Any]:
        present = [name for name in schema.text if name in plain]
        for name in present:
            if not isinstance(plain[name], str):
                raise self._error(operation, f"{name} is not a string")
        return {name: plain[name] or None for name in present}

    def _integers(self, plain: dict[str, Any], schema: ItemSchema, operation: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name in (name for name in schema.integers if name in plain):
            number = _integral(plain[name])
            if number is None:
                raise self._error(operation, f"{name} is not an integer")
            fields[name] = number
        return fields


def _added_import_ms(rounds: int) -> tuple[float, float]:
    """Median ms a fresh interpreter spends importing the store, then `boto3.dynamodb.types` after it
    (each timed inside the process, so interpreter start-up is not counted)."""
    script = (
        "import time\n"
        "t0 = time.perf_counter()\n"
        "import usersync.store.users\n"
        "t1 = time.perf_counter()\n"
        "import boto3.dynamodb.types\n"
        "print((t1 - t0) * 1000, (time.perf_counter() - t1) * 1000)\n"
    )
    store, added = [], []
    for _ in range(rounds):
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONPATH": str(LAYER_DIR)},
            check=True,
            capture_output=True,
            text=True,
        )
        first, second = done.stdout.split()
        store.append(float(first))
        added.append(float(second))
    return statistics.median(store), statistics.median(added)


def run(*, rounds: int = 7, calls: int = 20_000, import_rounds: int = 9) -> list[Goal]:
    from boto3.dynamodb.types import TypeSerializer

    import usersync.store.users as users
    from usersync.store.codec import attributes_to_item, decode_item

    schema = users._SCHEMA
    decode_with_boto3 = _DeserializerReader()
    assert decode_with_boto3(USER_ITEM, schema, "GetItem") == decode_item(USER_ITEM, schema, "GetItem")
    serializer = TypeSerializer()
    attributes = users.item_to_record(USER_ITEM).to_attributes()
    assert {k: serializer.serialize(v) for k, v in attributes.items()} == attributes_to_item(attributes)

    samples = interleaved(
        {
            "decode (hand-written)": lambda: decode_item(USER_ITEM, schema, "GetItem"),
            "decode (TypeDeserializer)": lambda: decode_with_boto3(USER_ITEM, schema, "GetItem"),
            "encode (hand-written)": lambda: attributes_to_item(attributes),
            "encode (TypeSerializer)": lambda: {k: serializer.serialize(v) for k, v in attributes.items()},
        },
        rounds=rounds,
        calls=calls,
    )
    decode_ratio = median_ratio(samples["decode (TypeDeserializer)"], samples["decode (hand-written)"])
    encode_ratio = median_ratio(samples["encode (TypeSerializer)"], samples["encode (hand-written)"])
    store_ms, boto3_ms = _added_import_ms(import_rounds)
    details = {name: round(statistics.median(values), 3) for name, values in samples.items()}
    note = f"hand-written {details['decode (hand-written)']:.2f} us/item"
    return [
        Goal(
            "codec", "TypeDeserializer decode / hand-written", decode_ratio, "info", None, "x", note, details
        ),
        Goal("codec", "TypeSerializer encode / hand-written", encode_ratio, "info", None, "x"),
        Goal(
            "codec",
            "cold import of boto3.dynamodb.types on top of the store",
            boto3_ms,
            "info",
            None,
            "ms",
            f"the store's own import: {store_ms:.0f} ms ({(store_ms + boto3_ms) / store_ms:.2f}x with boto3)",
        ),
    ]


if __name__ == "__main__":
    for goal in run():
        print(goal.metric, goal.value, goal.note)
