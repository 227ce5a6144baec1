"""The CloudFormation document: intrinsic functions and a stable YAML rendering.

Intrinsics are written in their long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``) so a
plain YAML dumper renders them and every YAML or JSON parser reads them back.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["dump", "get_att", "ref", "sub", "template"]


def ref(name: str) -> dict[str, str]:
    """``{"Ref": name}``."""
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> dict[str, list[str]]:
    """``{"Fn::GetAtt": [resource, attribute]}``."""
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str) -> str | dict[str, str]:
    """``Fn::Sub`` only when ``text`` holds ``${...}``; cfn-lint flags a needless one."""
    return {"Fn::Sub": text} if "${" in text else text


def template(
    description: str,
    parameters: dict[str, Any],
    resources: dict[str, Any],
    outputs: dict[str, Any],
) -> dict[str, Any]:
    """A whole template in the order people read one."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": description,
        "Parameters": parameters,
        "Resources": resources,
        "Outputs": outputs,
    }


def dump(document: dict[str, Any], header: str) -> str:
    """YAML in the document's own key order, preceded by ``header`` as comments."""
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    return comments + body
