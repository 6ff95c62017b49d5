"""usersync.runtime.aws: clients built once per session, service models read once per process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from usersync.runtime.aws import dynamodb_client, reset_clients


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    reset_clients()
    yield
    reset_clients()


@pytest.mark.usefixtures("fresh_clients")
def test_a_fresh_session_reuses_the_service_models_already_read() -> None:
    first = dynamodb_client()
    reset_clients()
    second = dynamodb_client()
    assert first is not second  # reset_clients gives new clients (tests switch endpoints)...
    # ...built from the one loader, whose cache holds the parsed model: nothing is read twice.
    loader = first._loader  # type: ignore[attr-defined]  # botocore's own attribute
    assert loader is second._loader  # type: ignore[attr-defined]


@pytest.mark.usefixtures("fresh_clients")
def test_the_loader_searches_aws_data_path_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    reset_clients()
    loader = dynamodb_client()._loader  # type: ignore[attr-defined]
    assert loader.search_paths[0] == str(tmp_path)
