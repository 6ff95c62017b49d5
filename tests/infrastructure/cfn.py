"""What CloudFormation does with template.yaml for given parameter values, offline.

- `translate(overrides, template=None)`: the template (template.yaml unless one is given) translated
  with its parameter defaults plus `overrides`, by the SAM CLI's own pipeline (sam_translate.py, run by
  the SAM CLI's interpreter): AWS::LanguageExtensions, then the AWS::Serverless transform.
- `failed_assertions(overrides)`: the template's `Rules` evaluated as CloudFormation does before creating
  a change set: a rule whose RuleCondition holds must have every Assert true.

Rules are evaluated by hand (no library evaluates them offline): the evaluator covers the functions our
template uses and raises on any other, so a new construct fails the tests instead of being misread.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import IO, Any

from usersync_dev.template import REPO_ROOT, load_template

SAM_PYTHON = REPO_ROOT / ".venv" / "sam-cli" / "bin" / "python"
SAM_TRANSLATE = Path(__file__).with_name("sam_translate.py")
TRANSLATION_TIMEOUT_S = 120


class Unsupported(AssertionError):
    """The template uses a construct the Rules evaluator does not know."""


def parameter_values(template: dict[str, Any], overrides: dict[str, Any]) -> dict[str, str]:
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


def _truth(node: Any, values: dict[str, str]) -> bool:
    """A Rules boolean expression over parameter values (Rules may not name Conditions)."""
    if not (isinstance(node, dict) and len(node) == 1):
        raise Unsupported(f"not a condition function: {node!r}")
    ((function, argument),) = node.items()
    if function == "Fn::Not":
        return not _truth(argument[0], values)
    if function == "Fn::And":
        return all(_truth(item, values) for item in argument)
    if function == "Fn::Or":
        return any(_truth(item, values) for item in argument)
    if function == "Fn::Equals":
        left, right = (_scalar(item, values) for item in argument)
        return str(left) == str(right)
    if function == "Fn::Contains":
        options, value = argument
        return str(_scalar(value, values)) in [str(_scalar(option, values)) for option in options]
    raise Unsupported(f"condition function {function}")


def _scalar(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict) and set(node) == {"Ref"}:
        if node["Ref"] in values:
            return values[node["Ref"]]
        raise Unsupported(f"Ref {node['Ref']} is not a parameter")
    if isinstance(node, dict):
        raise Unsupported(f"not a scalar: {node!r}")
    return node


class _SamTranslator:
    """One SAM CLI interpreter serving every translation of a test run (sam_translate.py): importing the
    SAM CLI takes about 0.6 s, a translation about 0.03 s."""

    def __init__(self) -> None:
        assert SAM_PYTHON.exists(), "aws-sam-cli not found: `make sam-cli` installs it in .venv/sam-cli"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION")) and k != "PYTHONPATH"
        }
        env.update({"AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"})
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(  # noqa: S603 - our own script, the SAM CLI's interpreter
            [str(SAM_PYTHON), str(SAM_TRANSLATE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        atexit.register(self.close)

    def translate(self, template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(json.dumps({"template": template, "parameters": parameters}) + "\n")
        stdin.flush()
        if not select.select([stdout], [], [], TRANSLATION_TIMEOUT_S)[0]:
            self._process.kill()
            raise AssertionError(f"sam_translate.py gave no answer in {TRANSLATION_TIMEOUT_S} s")
        line = stdout.readline()
        if not line:
            self._stderr.seek(0)
            stderr = self._stderr.read().decode(errors="replace")
            raise AssertionError(f"sam_translate.py exited ({self._process.wait()}): {stderr[-3000:]}")
        reply: dict[str, Any] = json.loads(line)
        assert "error" not in reply, reply.get("error")
        translated: dict[str, Any] = reply["template"]
        return translated

    def close(self) -> None:
        """End of stdin ends the script."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)
        self._stderr.close()


@cache
def _sam_translator() -> _SamTranslator:
    return _SamTranslator()


def translate(overrides: dict[str, Any], template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CloudFormation template a deploy of `template` (template.yaml when None) with these parameter
    values produces."""
    template = load_template() if template is None else template
    return _sam_translator().translate(template, parameter_values(template, overrides))


def failed_assertions(overrides: dict[str, Any]) -> list[str]:
    """AssertDescriptions of the Rules assertions that fail for these values (empty: deploy goes ahead)."""
    template = load_template()
    values = parameter_values(template, overrides)
    failed = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not _truth(rule["RuleCondition"], values):
            continue
        for assertion in rule["Assertions"]:
            if not _truth(assertion["Assert"], values):
                failed.append(" ".join(str(assertion["AssertDescription"]).split()))
    return failed
