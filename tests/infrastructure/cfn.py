"""What CloudFormation does with template.yaml for given parameter values, offline.

- `translate(values)`: the AWS::LanguageExtensions step (resolve `!If` on parameter-only conditions,
  drop `AWS::NoValue`, split known strings), then the AWS SAM translator (`samtranslator`, the library
  behind `sam validate` and CloudFormation's AWS::Serverless transform) with the same values.
- `failed_assertions(values)`: the template's `Rules` evaluated as CloudFormation does before creating a
  change set: a rule whose RuleCondition holds must have every Assert true.

Hand-written evaluators (no library evaluates Rules offline): they cover the functions our template
uses and raise on any other, so a new construct fails the tests instead of being misread.
"""

from __future__ import annotations

import copy
from typing import Any

from samtranslator.translator.transform import transform

from usersync_dev.template import load_template

_NO_VALUE = object()


class Unsupported(AssertionError):
    """The template uses a construct these evaluators do not know."""


def parameter_values(template: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then `overrides`; a parameter without a default and no override is an error, as on deploy."""
    values: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        if name in overrides:
            values[name] = overrides[name]
        elif "Default" in spec:
            values[name] = spec["Default"]
    missing = set(template["Parameters"]) - set(values)
    if missing:
        raise AssertionError(f"no value for parameters without a default: {sorted(missing)}")
    return {name: str(value) for name, value in values.items()}


def _ref(name: str, values: dict[str, Any]) -> Any:
    if name in values:
        return values[name]
    raise Unsupported(f"Ref {name} is not a parameter")


def _truth(node: Any, values: dict[str, Any], conditions: dict[str, Any]) -> bool:
    """A Conditions/Rules boolean expression over parameter values."""
    if not (isinstance(node, dict) and len(node) == 1):
        raise Unsupported(f"not a condition function: {node!r}")
    ((function, argument),) = node.items()
    if function == "Fn::Not":
        return not _truth(argument[0], values, conditions)
    if function == "Fn::And":
        return all(_truth(item, values, conditions) for item in argument)
    if function == "Fn::Or":
        return any(_truth(item, values, conditions) for item in argument)
    if function == "Fn::Equals":
        left, right = (_scalar(item, values) for item in argument)
        return str(left) == str(right)
    if function == "Fn::Contains":
        options, value = argument
        return str(_scalar(value, values)) in [str(_scalar(option, values)) for option in options]
    if function == "Condition":
        return _truth(conditions[argument], values, conditions)
    raise Unsupported(f"condition function {function}")


def _scalar(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return _ref(node["Ref"], values)
    if isinstance(node, dict):
        raise Unsupported(f"not a scalar: {node!r}")
    return node


def _language_extensions(node: Any, values: dict[str, Any], conditions: dict[str, Any]) -> Any:
    """Resolve what AWS::LanguageExtensions resolves before the SAM transform sees the template."""
    if isinstance(node, list):
        resolved = [_language_extensions(item, values, conditions) for item in node]
        return [item for item in resolved if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if node == {"Ref": "AWS::NoValue"}:
        return _NO_VALUE
    if set(node) == {"Fn::If"}:
        name, when_true, when_false = node["Fn::If"]
        chosen = when_true if _truth(conditions[name], values, conditions) else when_false
        return _language_extensions(chosen, values, conditions)
    if set(node) == {"Fn::Split"}:
        delimiter, source = node["Fn::Split"]
        text = _scalar(_language_extensions(source, values, conditions), values)
        return str(text).split(delimiter)
    members = {key: _language_extensions(value, values, conditions) for key, value in node.items()}
    return {key: value for key, value in members.items() if value is not _NO_VALUE}


def resolve_parameter_refs(node: Any, overrides: dict[str, Any]) -> Any:
    """`node` with every `Ref` to a parameter replaced by its value (Number parameters as numbers),
    as CloudFormation does when it creates the resources; other intrinsics are left alone."""
    template = load_template()
    values = parameter_values(template, overrides)

    def typed(name: str) -> Any:
        if template["Parameters"][name]["Type"] == "Number":
            number = float(values[name])
            return int(number) if number.is_integer() else number
        return values[name]

    def walk(item: Any) -> Any:
        if isinstance(item, list):
            return [walk(element) for element in item]
        if isinstance(item, dict):
            if set(item) == {"Ref"} and item["Ref"] in values:
                return typed(item["Ref"])
            return {key: walk(value) for key, value in item.items()}
        return item

    return walk(node)


class _NoManagedPolicies:
    """The translator asks for AWS managed policy ARNs only when a function names one; ours never do."""

    def load(self) -> dict[str, str]:
        return {}


def translate(overrides: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template a deploy with these parameter values produces."""
    template = copy.deepcopy(load_template())
    values = parameter_values(template, overrides)
    transforms = template.pop("Transform")
    assert transforms == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"], transforms
    conditions = template.get("Conditions", {})
    rules = template.pop("Rules", None)
    resources = _language_extensions(template["Resources"], values, conditions)
    for resource in resources.values():  # what `sam deploy` does first: upload code, point at S3
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"s3://usersync-artifacts/{properties[key].strip('/')}.zip"
    template["Resources"] = resources
    template["Transform"] = "AWS::Serverless-2016-10-31"
    translated: dict[str, Any] = transform(template, dict(values), _NoManagedPolicies())
    if rules is not None:
        translated["Rules"] = rules
    return translated


def failed_assertions(overrides: dict[str, Any]) -> list[str]:
    """AssertDescriptions of the Rules assertions that fail for these values (empty: deploy goes ahead)."""
    template = load_template()
    values = parameter_values(template, overrides)
    failed = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not _truth(rule["RuleCondition"], values, {}):
            continue
        for assertion in rule["Assertions"]:
            if not _truth(assertion["Assert"], values, {}):
                failed.append(" ".join(str(assertion["AssertDescription"]).split()))
    return failed
