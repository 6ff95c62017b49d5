"""The store's errors, one family for every table: callers catch `RepositoryError` and answer as for an
unavailable table (the webhook 5xx so Svix retries, /me 503, the authorizer counts a sync failure)."""

from __future__ import annotations


class RepositoryError(Exception):
    """The table could not be read or written (throttled, unreachable, out of time), or an item
    could not be interpreted: the caller answers as for an unavailable table."""

    def __init__(self, operation: str, code: str) -> None:
        super().__init__(f"DynamoDB {operation} failed: {code}")
        self.operation = operation
        self.code = code


class UninterpretableItemError(RepositoryError):
    """A stored item whose key or a needed attribute has a type or value we cannot read."""

    CODE = "UninterpretableItem"

    def __init__(self, operation: str, problem: str) -> None:
        super().__init__(operation, self.CODE)
        self.problem = problem


class UnstorableRecordError(ValueError):
    """The record can never be stored (key over its limit, item over 400 KB): retrying cannot help."""
