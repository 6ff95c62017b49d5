"""Translate a SAM template to CloudFormation offline, as CloudFormation's transforms would.

Run by the SAM CLI's own interpreter (.venv/sam-cli/bin/python, where samtranslator lives; the
project venv keeps the layer's library versions) and driven by tests/infrastructure/cfn.py: reads one
{"template": ..., "parameters": ...} JSON request per line on stdin and answers each with one JSON line
on stdout, {"template": translated} or {"error": traceback}, until stdin closes (importing the SAM CLI
costs far more than a translation, so one process serves a whole test run). AWS::LanguageExtensions is
expanded first with the SAM CLI's implementation, then the Serverless transform runs, the same
pipeline `sam validate` uses. Local CodeUri/ContentUri become S3 URIs, as they are after `sam package`.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions
from samtranslator.parser import parser
from samtranslator.translator.translator import Translator

PSEUDO_PARAMETERS = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


def translate(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    values = {**PSEUDO_PARAMETERS, **parameters}
    for name, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            properties["CodeUri"] = f"s3://artifacts/{name}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = f"s3://artifacts/{name}.zip"
    expanded = expand_language_extensions(template, dict(values), enabled=True)
    if expanded.had_language_extensions:
        template = expanded.expanded_template
    translator = Translator(managed_policy_map={}, sam_parser=parser.Parser(), plugins=[])
    translated: dict[str, Any] = translator.translate(
        sam_template=template, parameter_values=values, get_managed_policy_map=dict
    )
    return translated


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply: dict[str, Any] = {"template": translate(request["template"], request["parameters"])}
        except Exception:  # noqa: BLE001 - reported to the test that asked, which fails with it
            reply = {"error": traceback.format_exc()}
        sys.stdout.write(json.dumps(reply, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
