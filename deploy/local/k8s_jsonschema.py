"""Kubernetes' OpenAPI v2 document (swagger.json) -> JSON schemas that kubeconform reads
from a local directory: one ``<kind>[-<group>]-<version>.json`` per resource kind and one
shared ``_definitions.json`` that they reference (kubeconform resolves relative $refs as
files). Strict: an object with declared properties accepts no other keys, so a misspelt
field fails validation as it would fail ``kubectl apply --validate=strict``.

Usage: python3 k8s_jsonschema.py SWAGGER_JSON OUT_DIR (stdlib only).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFS = "_definitions.json"
PREFIX = "#/definitions/"


def _fix(node: Any) -> Any:
    """Rewrite one schema node: refs to the shared file, strict objects, optional nulls."""
    if isinstance(node, list):
        return [_fix(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _fix(v) for k, v in node.items() if not k.startswith("x-kubernetes-list")}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(PREFIX):
        return {"$ref": f"{DEFS}#/definitions/{ref[len(PREFIX) :]}"}
    if out.get("format") == "int-or-string":
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    props = out.get("properties")
    if isinstance(props, dict):
        required = set(out.get("required", ()))
        for name, prop in props.items():
            if name not in required and isinstance(prop.get("type"), str):
                prop["type"] = [prop["type"], "null"]
        preserve = out.get("x-kubernetes-preserve-unknown-fields")
        out.setdefault("additionalProperties", bool(preserve))
    return out


def _definitions(swagger: dict[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for name, schema in swagger["definitions"].items():
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            defs[name] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
        else:
            defs[name] = _fix(schema)
    return defs


def _file_name(group: str, version: str, kind: str) -> str:
    suffix = f"-{group.split('.')[0]}" if group else ""
    return f"{kind.lower()}{suffix}-{version.lower()}.json"


def convert(swagger_path: Path, out: Path) -> int:
    swagger = json.loads(swagger_path.read_text(encoding="utf-8"))
    defs = _definitions(swagger)
    out.mkdir(parents=True)
    (out / DEFS).write_text(json.dumps({"definitions": defs}), encoding="utf-8")
    written = 0
    for name, schema in swagger["definitions"].items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            api_version = f"{group}/{version}" if group else version
            body = dict(defs[name])
            props = dict(body.get("properties", {}))
            props["apiVersion"] = {"type": "string", "enum": [api_version]}
            props["kind"] = {"type": "string", "enum": [kind]}
            body["properties"] = props
            (out / _file_name(group, version, kind)).write_text(json.dumps(body), encoding="utf-8")
            written += 1
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: k8s_jsonschema.py SWAGGER_JSON OUT_DIR")
    count = convert(Path(sys.argv[1]), Path(sys.argv[2]))
    sys.stderr.write(f"{count} kind schemas written to {sys.argv[2]}\n")
