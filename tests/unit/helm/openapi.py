"""Strict validation of rendered objects against Kubernetes' own OpenAPI document.

The document is api/openapi-spec/swagger.json of the k8s.io/kubernetes Go module of a pinned
release (`make k8s-openapi` copies it to K8S_OPENAPI). Its definitions become JSON Schemas that
refuse what the API server would drop or refuse: unknown fields (every object is closed unless
the definition says otherwise), wrong types, missing required fields, nulls, malformed quantities.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator

__all__ = ["KubeSchemas", "UnknownKind", "crd_schemas"]

_QUANTITY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[mkMGTPE])?$"
#: Definitions whose JSON form is not what their Swagger type says.
_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": ["integer", "string"]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "anyOf": [{"type": "number"}, {"type": "string", "pattern": _QUANTITY}]},
}


class UnknownKind(LookupError):
    """No definition in the OpenAPI document has this apiVersion and kind."""


def _closed(node: Any) -> Any:
    """A copy of a schema node with every object that lists properties closed to others (as the
    API server's strict field validation is), except where unknown fields are kept on purpose."""
    if isinstance(node, dict):
        out = {key: _closed(value) for key, value in node.items()}
        if node.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["type"] = ["integer", "string"]
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_closed(item) for item in node]
    return node


def crd_schemas(crd: dict[str, Any]) -> dict[tuple[str, str], Draft4Validator]:
    """Validators of a CustomResourceDefinition's served versions, by (apiVersion, kind)."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    return {(f"{group}/{v['name']}", kind): Draft4Validator(_closed(v["schema"]["openAPIV3Schema"]))
            for v in crd["spec"]["versions"] if v.get("served")}


@dataclass(frozen=True)
class KubeSchemas:
    """The definitions of one swagger.json, closed, by (apiVersion, kind)."""

    path: Path
    #: Validators of custom kinds (see crd_schemas), used for objects the document does not define.
    custom: dict[tuple[str, str], Draft4Validator] = field(default_factory=dict)

    @cached_property
    def definitions(self) -> dict[str, Any]:
        raw = json.loads(self.path.read_text())["definitions"]
        closed = {name: _closed(schema) for name, schema in raw.items()}
        closed.update(copy.deepcopy(_SPECIAL))
        return closed

    @cached_property
    def _by_kind(self) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for name, schema in self.definitions.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                found.setdefault((api_version, gvk["kind"]), name)
        return found

    def validator(self, api_version: str, kind: str) -> Draft4Validator:
        """A validator of whole objects of this kind (apiVersion and kind included)."""
        name = self._by_kind.get((api_version, kind))
        if name is None and (api_version, kind) in self.custom:
            return self.custom[(api_version, kind)]
        if name is None:
            raise UnknownKind(f"{api_version} {kind} is not in {self.path.name}")
        root = {"allOf": [{"$ref": f"#/definitions/{name}"},
                          {"properties": {"apiVersion": {"enum": [api_version]}, "kind": {"enum": [kind]}},
                           "required": ["apiVersion", "kind"]}],
                "definitions": self.definitions}
        return Draft4Validator(root)

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """What is wrong with one object, as `<kind>/<name>: <path>: <message>` lines."""
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        validator = self.validator(obj.get("apiVersion", ""), obj.get("kind", ""))
        return [f"{where}: {'.'.join(str(p) for p in error.absolute_path) or '<object>'}: {error.message}"
                for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]
