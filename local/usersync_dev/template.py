"""Reading template.yaml, so local resources and tests are built from the deployed definition."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class TemplateDecodeError(ValueError):
    """template.yaml cannot be read as a CloudFormation template."""


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template with short-form tags (!Ref, !GetAtt, !Sub ...) as their long form ({"Ref": ...}).

    Decoded by cfn-lint (already a dev dependency, and what `make cfn-lint` reads the template with);
    imported here, on first use, because it costs ~0.5 s of imports.
    """
    from cfnlint.decode import decode

    document, problems = decode(str(path))
    if document is None or problems:
        raise TemplateDecodeError(f"{path}: " + "; ".join(str(problem) for problem in problems))
    decoded: dict[str, Any] = document
    return decoded


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


# ---------------------------------------------------------------- the runtime's Python

LAYER_MAKEFILE_DIR = REPO_ROOT / "layers" / "shared"


def runtime_python_version() -> str:
    """ "3.13" from the template's `Globals.Function.Runtime` (`python3.13`): what Lambda runs."""
    runtime = str(template()["Globals"]["Function"]["Runtime"])
    if not runtime.startswith("python"):
        raise TemplateDecodeError(f"Globals.Function.Runtime is {runtime!r}, not a python runtime")
    return runtime.removeprefix("python")


def runtime_python() -> str:
    """A working interpreter of the runtime's Python: $RUNTIME_PYTHON (`make bench` sets it), else the one
    layers/shared/Makefile finds (its PYTHON_RUNTIME_VERSION; a failing pyenv shim is skipped). One finder
    for `make build`, the layer build test and the deployed-mode bench."""
    import os
    import subprocess

    explicit = os.environ.get("RUNTIME_PYTHON")
    if explicit:
        return explicit
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    found = subprocess.run(  # noqa: S603 - our own Makefile, a fixed command line
        ["make", "-s", "--no-print-directory", "-C", str(LAYER_MAKEFILE_DIR), "print-runtime-python"],  # noqa: S607
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if found.returncode != 0:
        raise RuntimeError(found.stderr.strip() or "layers/shared/Makefile found no runtime python")
    return found.stdout.strip()
