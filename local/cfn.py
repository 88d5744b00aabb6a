"""Just enough of CloudFormation to run a synthesized template locally: resolve the intrinsics our stack uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LocalResources:
    """What each logical id stands for locally: its Ref value and its attributes."""

    refs: Mapping[str, str]
    attributes: Mapping[tuple[str, str], str]
    region: str = "us-east-1"
    account: str = "123456789012"

    def pseudo(self, name: str) -> str:
        values = {
            "AWS::Partition": "aws",
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "local",
            "AWS::NoValue": "",
        }
        if name not in values:
            raise KeyError(f"pseudo parameter {name} is not supported locally")
        return values[name]


def resolve(value: Any, resources: LocalResources) -> Any:
    """Resolve Ref, Fn::GetAtt, Fn::Join, Fn::Select, Fn::Split and Fn::Sub (simple form) recursively."""
    if isinstance(value, list):
        return [resolve(item, resources) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return resources.pseudo(arg) if arg.startswith("AWS::") else resources.refs[arg]
        if key == "Fn::GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return resources.attributes[(logical_id, attribute)]
        if key == "Fn::Join":
            separator, parts = arg
            return separator.join(str(resolve(part, resources)) for part in parts)
        if key == "Fn::Select":
            index, items = arg
            return resolve(items, resources)[int(resolve(index, resources))]
        if key == "Fn::Split":
            separator, text = arg
            return str(resolve(text, resources)).split(separator)
        if key == "Fn::Sub" and isinstance(arg, str):
            return _sub(arg, resources)
    return {key: resolve(item, resources) for key, item in value.items()}


def _sub(text: str, resources: LocalResources) -> str:
    out, pos = [], 0
    while (start := text.find("${", pos)) != -1:
        end = text.index("}", start)
        out.append(text[pos:start])
        name = text[start + 2 : end]
        if name.startswith("AWS::"):
            out.append(resources.pseudo(name))
        elif "." in name:
            logical_id, attribute = name.split(".", 1)
            out.append(resources.attributes[(logical_id, attribute)])
        else:
            out.append(resources.refs[name])
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)
