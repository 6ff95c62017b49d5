"""Reading template.yaml, so local resources and tests are built from the deployed definition."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation short-form tags (!Ref, !GetAtt, !Sub ...) as dicts."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return document


@cache
def template() -> dict[str, Any]:
    return load_template()


def resources_of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template()["Resources"].items()
        if resource.get("Type") == resource_type
    }


def table_definition(logical_id: str) -> dict[str, Any]:
    """A table's CreateTable arguments, straight from template.yaml (TableName excluded)."""
    properties = resources_of_type("AWS::DynamoDB::Table")[logical_id]["Properties"]
    keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    return {key: properties[key] for key in keys if key in properties}


def users_table_definition() -> dict[str, Any]:
    return table_definition("UsersTable")


def organizations_table_definition() -> dict[str, Any]:
    return table_definition("OrganizationsTable")


def create_users_table(client: Any, table_name: str) -> None:
    """Create the user table on `client` (moto) exactly as the template defines it."""
    client.create_table(TableName=table_name, **users_table_definition())
    client.get_waiter("table_exists").wait(TableName=table_name)


def create_organizations_table(client: Any, table_name: str) -> None:
    """Create the organizations table on `client` (moto) exactly as the template defines it."""
    client.create_table(TableName=table_name, **organizations_table_definition())
    client.get_waiter("table_exists").wait(TableName=table_name)
