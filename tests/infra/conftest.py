"""One synthesized app for the whole infra suite: bundling skipped, cdk-nag registered, maxConcurrentJobs as a string.

Synth starts jsii (Node) and takes seconds, so every test reads the same assembly and template.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import cx_api
from aws_cdk.assertions import Capture, Template

from stacks.batch_inference_stack import BatchInferenceStack
from stacks.gateway_stack import GatewayStack
from stacks.synth import build_app, gateway_stack

# -c values arrive as strings: the shared app proves the cast ("7" -> 7).
CONTEXT = {"maxConcurrentJobs": "7"}


@dataclass(frozen=True)
class Synthesized:
    app: cdk.App
    stack: BatchInferenceStack
    assembly: cx_api.CloudAssembly
    template: Template

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)

    def resource(self, construct: Any) -> dict[str, Any]:
        return self.template.to_json()["Resources"][self.logical_id(construct)]


@dataclass(frozen=True)
class Gateway:
    """The gateway stack of a synthesized app (cdk-nag ran on both stacks)."""

    app: cdk.App
    stack: GatewayStack
    assembly: cx_api.CloudAssembly
    template: Template

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template.to_json()["Resources"]
        return resources

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v["Properties"] for k, v in self.resources.items() if v["Type"] == type_}

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)


def synth_gateway(context: Mapping[str, Any], outdir: Path) -> Gateway:
    """Both stacks synthesized with ``context`` (bundling skipped) into ``outdir``; raises on a cdk-nag finding."""
    app, _ = build_app(dict(context), skip_bundling=True, outdir=str(outdir), gateway=True)
    assembly = app.synth()
    stack = gateway_stack(app)
    return Gateway(app=app, stack=stack, assembly=assembly, template=Template.from_stack(stack))


@pytest.fixture(scope="session")
def synthesized() -> Synthesized:
    app, stack = build_app(CONTEXT, skip_bundling=True)  # == App(context={"aws:cdk:bundling-stacks": [], ...})
    assembly = app.synth()  # runs cdk-nag: raises on an unacknowledged finding
    return Synthesized(app=app, stack=stack, assembly=assembly, template=Template.from_stack(stack))


@pytest.fixture(scope="session")
def template(synthesized: Synthesized) -> Template:
    return synthesized.template


@pytest.fixture(scope="session")
def definition(template: Template) -> dict[str, Any]:
    """The state machine definition as a dict; CloudFormation references become "<LogicalId.Attr>" strings."""
    parts = Capture()
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine", {"DefinitionString": {"Fn::Join": ["", parts]}}
    )
    return json.loads("".join(part if isinstance(part, str) else _reference(part) for part in parts.as_array()))


@pytest.fixture(scope="session")
def states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state by name, the Distributed Map's item processor included."""
    found = dict(definition["States"])
    for state in definition["States"].values():
        found.update(state.get("ItemProcessor", {}).get("States", {}))
    return found


def policy_statements(template: Template, role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of every AWS::IAM::Policy attached to the role."""
    policies = template.find_resources("AWS::IAM::Policy")
    return [
        statement
        for policy in policies.values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def flat(node: Any) -> Any:
    """A template value made readable: references as ``<LogicalId>`` / ``<Id.Attr>``, ``Fn::FindInMap`` as
    ``<Map[key].name>``, ``Fn::Join`` joined into one string (ARNs, JSON strings with tokens inside); lists and other
    dicts are walked, anything else is returned as it is."""
    if isinstance(node, list):
        return [flat(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "Fn::Join" in node:
        delimiter, parts = node["Fn::Join"]
        return delimiter.join(str(flat(part)) for part in parts)
    if "Ref" in node:
        return f"<{node['Ref']}>"
    if "Fn::GetAtt" in node:
        return "<{}.{}>".format(*node["Fn::GetAtt"])
    if "Fn::FindInMap" in node:
        mapping, top, second = (flat(part) for part in node["Fn::FindInMap"])
        return f"<{mapping}[{top}].{second}>"
    return {key: flat(value) for key, value in node.items()}


def _reference(node: dict[str, Any]) -> str:
    if "Ref" in node:
        return f"<{node['Ref']}>"
    logical_id, attribute = node["Fn::GetAtt"]
    return f"<{logical_id}.{attribute}>"


CFN_LINT = Path(sys.executable).parent / "cfn-lint"  # the venv's entry point (cfnlint has no __main__)


def cfn_lint(templates: Mapping[str, Any], directory: Path) -> str:
    """cfn-lint's findings on ``templates`` (stack name -> template JSON), written to ``directory``; "" when none.
    W3005 (a redundant DependsOn, which CDK output has) is ignored."""
    paths = []
    for name, template in templates.items():
        path = directory / f"{name}.template.json"
        path.write_text(json.dumps(template))
        paths.append(str(path))
    result = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", "W3005", "--", *paths], capture_output=True, text=True, check=False
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr
