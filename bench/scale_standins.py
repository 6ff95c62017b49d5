"""Loopback stand-ins for reconciliation at scale: a Clerk Backend API and a DynamoDB endpoint, each an
HTTP server on 127.0.0.1 with the latency of the real service (bench/reconcile_scale.py).

Why not moto for DynamoDB: a pass over 100,000 users makes ~100,000 conditional PutItems and ~1,000
BatchGetItems; moto's server spends milliseconds of CPU per conditional write (werkzeug, its expression
parser, its item model), so on a shared 2-core machine it, not the engine, would set the pace, and its
memory would sit in the process we measure. `LatencyDynamo` is a minimal DynamoDB JSON 1.0 endpoint
instead: botocore talks to it exactly as to AWS (same serialization, same connection pool, same
retries), items live in a dict in the bench's process (never in the measured one), each condition
expression is parsed once and evaluated per write, and every request waits 5-8 ms (uniform, seeded)
before it answers, in its own thread, so requests in flight overlap as they do against DynamoDB.
It serves what reconciliation uses: PutItem (ConditionExpression, ReturnValuesOnConditionCheckFailure),
GetItem, BatchGetItem (<= 100 keys, ProjectionExpression), Scan (segments, Limit, ExclusiveStartKey),
BatchWriteItem puts, CreateTable/DescribeTable. Anything else answers a ValidationException naming the
operation, so an engine that needs more fails loudly instead of being measured on a guess.

`LoopbackClerk` (not usersync_dev.loopback_clerk, which the tests use: that one holds its users as
dicts, ~300 MB per 100,000, so 1,000,000 could not even be built) serves `GET /v1/users` for a synthetic
instance of N users generated on demand from their index (Clerk's user object shape,
usersync_dev.clerk.clerk_user): `order_by=+created_at` with `starting_after` (cursor) or `offset`,
`limit` <= 500, and `user_id=` filters (<= 100 ids). Each answer waits PAGE_BASE_MS + PER_USER_MS per
user returned: ~300 ms for a 500-user page (what a production instance answers, issue 22). It counts
requests and the pages it served per position (a page served twice is a page read twice), and the
largest number of requests in any 10 s window (the rate cap check).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from usersync_dev.clerk import clerk_user

# ---------------------------------------------------------------- Clerk

PAGE_BASE_MS = 40.0
PER_USER_MS = 0.52  # 40 + 500 x 0.52 = 300 ms per 500-user page
MAX_LIMIT = 500
MAX_USER_IDS = 100
BASE_CREATED_AT = 1_600_000_000_000  # ms; user i is created i seconds later


def user_id_of(index: int) -> str:
    """Ids sort like creation times, as Clerk's do for the bench's purposes (order_by=created_at)."""
    return f"user_{index:012d}"


def index_of(user_id: str) -> int | None:
    match = re.fullmatch(r"user_(\d{12})", user_id)
    return int(match.group(1)) if match else None


class _LoopbackServer:
    """An HTTP stand-in on a free loopback port, served from a thread while used as a context manager."""

    _server: ThreadingHTTPServer
    _thread: threading.Thread

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _serve(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class ClerkCounts:
    requests: int = 0
    list_pages: Counter[str] = field(default_factory=Counter)  # position -> times served
    id_lookups: int = 0
    max_requests_per_10s: int = 0
    _window: deque[float] = field(default_factory=deque)

    @property
    def pages_read_twice(self) -> int:
        return sum(count - 1 for count in self.list_pages.values() if count > 1)


class LoopbackClerk(_LoopbackServer):
    """GET /v1/users for `users` synthetic users; `version` shifts every user's updated_at (a new
    version of every user: what a pass after a bulk change sees)."""

    def __init__(self, users: int, *, version: int = 0, latency: bool = True) -> None:
        self.users = users
        self.version = version
        self.latency = latency
        self.counts = ClerkCounts()
        self._lock = threading.Lock()
        self._serve()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts = ClerkCounts()

    def user(self, index: int) -> dict[str, Any]:
        created = BASE_CREATED_AT + index * 1000
        return clerk_user(
            user_id_of(index),
            email=f"user{index}@example.com",
            first_name=f"First{index}",
            last_name=f"Last{index}",
            created_at=created,
            updated_at=created + 1000 * self.version,
        )

    def _count_request(self) -> None:
        """Every request counts towards Clerk's rate limit, refused ones too."""
        now = time.monotonic()
        with self._lock:
            counts = self.counts
            counts.requests += 1
            counts._window.append(now)
            while counts._window and counts._window[0] <= now - 10.0:
                counts._window.popleft()
            counts.max_requests_per_10s = max(counts.max_requests_per_10s, len(counts._window))

    def _count(self, position: str | None) -> None:
        with self._lock:
            if position is None:
                self.counts.id_lookups += 1
            else:
                self.counts.list_pages[position] += 1

    def answer(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        """(status, body) of GET /v1/users, as Clerk's Backend API answers it."""
        self._count_request()
        ids = query.get("user_id")
        if ids:
            if len(ids) > MAX_USER_IDS:
                return 422, {"errors": [{"code": "form_param_invalid", "message": "too many user_id"}]}
            self._count(None)
            found = [index for index in map(index_of, ids) if index is not None and index < self.users]
            return 200, [self.user(index) for index in sorted(found)]
        try:
            limit = int(query.get("limit", ["10"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            return 422, {"errors": [{"code": "form_param_invalid", "message": "limit/offset"}]}
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            return 422, {"errors": [{"code": "form_param_invalid", "message": "limit/offset out of range"}]}
        after = query.get("starting_after", [None])[0]
        if after is not None:
            order = query.get("order_by", [""])[0]
            if order.lstrip("+") != "created_at" or offset:
                return 422, {"errors": [{"code": "form_param_invalid", "message": "starting_after"}]}
            index = index_of(after)
            if index is None:
                return 422, {"errors": [{"code": "form_param_invalid", "message": "starting_after id"}]}
            start, position = index + 1, f"after:{after}"
        else:
            start, position = offset, f"offset:{offset}"
        self._count(position)
        stop = min(self.users, start + limit)
        return 200, [self.user(index) for index in range(start, stop)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        clerk = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs: +40 ms a request

            def do_GET(self) -> None:
                started = time.perf_counter()
                url = urlsplit(self.path)
                body: object  # an error object here, Clerk's list of users from `answer`
                if url.path != "/v1/users":
                    status, body = 404, {"errors": [{"code": "resource_not_found", "message": url.path}]}
                elif self.headers.get("Authorization", "") != "Bearer sk_test_bench":
                    status, body = 401, {"errors": [{"code": "authentication_invalid", "message": "key"}]}
                else:
                    status, body = clerk.answer(parse_qs(url.query))
                data = json.dumps(body, separators=(",", ":")).encode()
                if clerk.latency:
                    returned = len(body) if isinstance(body, list) else 0
                    wait = (PAGE_BASE_MS + PER_USER_MS * returned) / 1000 - (time.perf_counter() - started)
                    if wait > 0:
                        time.sleep(wait)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler


SECRET_KEY = "sk_test_bench"  # the key LoopbackClerk accepts (any other answers 401)


# ---------------------------------------------------------------- DynamoDB: condition expressions

_TOKEN = re.compile(r"\s*(<=|>=|<>|[=<>(),]|[#:]?[A-Za-z_][A-Za-z0-9_.]*)")
Item = dict[str, dict[str, Any]]
Evaluator = Callable[[Item, dict[str, str], Item], Any]


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise ValueError(f"cannot parse expression at {expression[position:]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _comparable(value: dict[str, Any] | None) -> Any:
    if value is None:
        return None
    if "N" in value:
        return ("N", Decimal(value["N"]))
    if "S" in value:
        return ("S", value["S"])
    return ("J", json.dumps(value, sort_keys=True))


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _Parser:
    """Recursive descent over DynamoDB's condition grammar: OR, AND, NOT, parentheses, comparisons,
    attribute_exists / attribute_not_exists / begins_with; #name and :value placeholders."""

    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token.upper() != expected):
            raise ValueError(f"expected {expected or 'a token'}, found {token!r}")
        self.at += 1
        return token

    def parse(self) -> Evaluator:
        tree = self.disjunction()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()!r}")
        return tree

    def disjunction(self) -> Evaluator:
        parts = [self.conjunction()]
        while (self.peek() or "").upper() == "OR":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda i, n, v: any(p(i, n, v) for p in parts))

    def conjunction(self) -> Evaluator:
        parts = [self.negation()]
        while (self.peek() or "").upper() == "AND":
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda i, n, v: all(p(i, n, v) for p in parts))

    def negation(self) -> Evaluator:
        if (self.peek() or "").upper() == "NOT":
            self.take()
            inner = self.negation()
            return lambda i, n, v: not inner(i, n, v)
        return self.primary()

    def operand(self) -> Evaluator:
        token = self.take()
        if token.startswith(":"):
            return lambda _i, _n, v: _comparable(v.get(token))
        name = token
        return lambda i, n, _v: _comparable(i.get(n.get(name, name)))

    def primary(self) -> Evaluator:
        token = self.peek()
        if token == "(":
            self.take()
            inner = self.disjunction()
            self.take(")")
            return inner
        lowered = (token or "").lower()
        if lowered in {"attribute_exists", "attribute_not_exists", "begins_with"}:
            self.take()
            self.take("(")
            path = self.take()
            if lowered == "begins_with":
                self.take(",")
                prefix = self.operand()
                self.take(")")

                def begins(i: Item, n: dict[str, str], v: Item) -> bool:
                    value = i.get(n.get(path, path), {}).get("S")
                    wanted = prefix(i, n, v)
                    return isinstance(value, str) and wanted is not None and value.startswith(wanted[1])

                return begins
            self.take(")")
            exists = lowered == "attribute_exists"
            return lambda i, n, _v: (n.get(path, path) in i) is exists
        left = self.operand()
        comparator = self.take()
        if comparator not in _COMPARE:
            raise ValueError(f"unsupported comparator {comparator!r}")
        right = self.operand()
        compare = _COMPARE[comparator]

        def comparison(i: Item, n: dict[str, str], v: Item) -> bool:
            a, b = left(i, n, v), right(i, n, v)
            if a is None or b is None or a[0] != b[0]:
                return comparator == "<>" and (a is not None and b is not None)
            return compare(a[1], b[1])

        return comparison


_PARSED: dict[str, Evaluator] = {}


def condition_holds(expression: str, item: Item, names: dict[str, str], values: Item) -> bool:
    """DynamoDB's verdict on `expression` for `item` ({} when absent); parsed once per expression."""
    evaluator = _PARSED.get(expression)
    if evaluator is None:
        evaluator = _PARSED[expression] = _Parser(expression).parse()
    return bool(evaluator(item, names, values))


# ---------------------------------------------------------------- DynamoDB: the endpoint


class DynamoError(Exception):
    def __init__(self, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra or {}


@dataclass
class _Table:
    key_names: tuple[str, ...]
    items: dict[tuple[str, ...], Item] = field(default_factory=dict)

    def key_of(self, item: Item) -> tuple[str, ...]:
        try:
            return tuple(json.dumps(item[name], sort_keys=True) for name in self.key_names)
        except KeyError as exc:
            raise DynamoError("ValidationException", f"missing key attribute {exc}") from None


def _project(item: Item, projection: str | None, names: dict[str, str]) -> Item:
    if not projection:
        return item
    wanted = (names.get(part.strip(), part.strip()) for part in projection.split(","))
    return {name: item[name] for name in wanted if name in item}


class LatencyDynamo(_LoopbackServer):
    """A DynamoDB JSON endpoint on 127.0.0.1 whose every request waits `latency_ms` (uniform)."""

    def __init__(self, *, latency_ms: tuple[float, float] = (5.0, 8.0), seed: int = 22) -> None:
        self.latency_ms = latency_ms
        self.tables: dict[str, _Table] = {}
        self.calls: Counter[str] = Counter()
        self.in_flight_max = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._serve()

    def create_table(self, name: str, key_names: Iterable[str]) -> None:
        self.tables[name] = _Table(tuple(key_names))

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self.in_flight_max = 0

    def _table(self, name: str) -> _Table:
        table = self.tables.get(name)
        if table is None:
            raise DynamoError("ResourceNotFoundException", f"Requested resource not found: {name}")
        return table

    # Each operation runs under the lock: the dict is the table, and a conditional write is atomic.
    def op_PutItem(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body["TableName"])
        item: Item = body["Item"]
        key = table.key_of(item)
        stored = table.items.get(key)
        condition = body.get("ConditionExpression")
        if condition and not condition_holds(
            condition,
            stored or {},
            body.get("ExpressionAttributeNames", {}),
            body.get("ExpressionAttributeValues", {}),
        ):
            extra = (
                {"Item": stored}
                if stored and body.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
                else {}
            )
            raise DynamoError("ConditionalCheckFailedException", "The conditional request failed", extra)
        table.items[key] = item
        return {}

    def op_GetItem(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body["TableName"])
        stored = table.items.get(table.key_of(body["Key"]))
        if stored is None:
            return {}
        return {
            "Item": _project(
                stored, body.get("ProjectionExpression"), body.get("ExpressionAttributeNames", {})
            )
        }

    def op_BatchGetItem(self, body: dict[str, Any]) -> dict[str, Any]:
        requests: dict[str, Any] = body["RequestItems"]
        if sum(len(r["Keys"]) for r in requests.values()) > 100:
            raise DynamoError("ValidationException", "Too many items requested for the BatchGetItem call")
        responses: dict[str, list[Item]] = {}
        for name, request in requests.items():
            table = self._table(name)
            names = request.get("ExpressionAttributeNames", {})
            found = (table.items.get(table.key_of(key)) for key in request["Keys"])
            responses[name] = [_project(i, request.get("ProjectionExpression"), names) for i in found if i]
        return {"Responses": responses, "UnprocessedKeys": {}}

    def op_BatchWriteItem(self, body: dict[str, Any]) -> dict[str, Any]:
        for name, writes in body["RequestItems"].items():
            table = self._table(name)
            for write in writes:
                if "PutRequest" not in write:
                    raise DynamoError("ValidationException", "the bench stand-in serves PutRequest only")
                item = write["PutRequest"]["Item"]
                table.items[table.key_of(item)] = item
        return {"UnprocessedItems": {}}

    def op_Scan(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body["TableName"])
        total, segment = body.get("TotalSegments", 1), body.get("Segment", 0)
        keys = sorted(k for k in table.items if hash(k) % total == segment)
        start = body.get("ExclusiveStartKey")
        if start:
            after = table.key_of(start)
            keys = [k for k in keys if k > after]
        limit = body.get("Limit", 1000)  # ~1 MB of our items
        page = keys[:limit]
        names = body.get("ExpressionAttributeNames", {})
        items = [_project(table.items[k], body.get("ProjectionExpression"), names) for k in page]
        answer: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
        if len(keys) > limit:
            last = table.items[page[-1]]
            answer["LastEvaluatedKey"] = {name: last[name] for name in table.key_names}
        return answer

    def op_CreateTable(self, body: dict[str, Any]) -> dict[str, Any]:
        keys = [k["AttributeName"] for k in sorted(body["KeySchema"], key=lambda k: k["KeyType"] != "HASH")]
        self.create_table(body["TableName"], keys)
        return {"TableDescription": {"TableName": body["TableName"], "TableStatus": "ACTIVE"}}

    def op_DescribeTable(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body["TableName"])
        return {
            "Table": {"TableName": body["TableName"], "TableStatus": "ACTIVE", "ItemCount": len(table.items)}
        }

    def handle(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        method = getattr(self, f"op_{operation}", None)
        with self._lock:
            self.calls[operation] += 1
            self._in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self._in_flight)
            wait = self._random.uniform(*self.latency_ms) / 1000
        started = time.perf_counter()
        try:
            if method is None:
                raise DynamoError("ValidationException", f"{operation} is not served by the bench stand-in")
            with self._lock:
                status, answer = 200, method(body)
        except DynamoError as exc:
            status = 400
            answer = {
                "__type": f"com.amazonaws.dynamodb.v20120810#{exc.code}",
                "message": exc.message,
                **exc.extra,
            }
        finally:
            left = wait - (time.perf_counter() - started)
            if left > 0:
                time.sleep(left)
            with self._lock:
                self._in_flight -= 1
        return status, answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        dynamo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs: +40 ms a request

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                status, answer = dynamo.handle(operation, body)
                data = json.dumps(answer, separators=(",", ":")).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", "bench")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
