#!/usr/bin/env python3
"""Validates custom resources against the openAPIV3Schema of their CRD.

kubernetes-validate knows only the built-in kinds: for a Registry or a
ServiceMonitor it warns that it has no schema and passes. This script fills that
gap the way the API server would check the object: each document whose
apiVersion and kind match a version of a CRD given with --crd is checked with
Python's jsonschema against that version's structural schema, in strict mode
(an unknown field is an error, as with `kubectl apply --validate=strict`).

The Kubernetes extensions are translated to JSON Schema: `nullable: true`
accepts null, `x-kubernetes-int-or-string` accepts an integer or a string,
`x-kubernetes-preserve-unknown-fields` keeps unknown fields, and apiVersion,
kind and metadata are added at the top as the API server does. CEL rules
(`x-kubernetes-validations`) are not evaluated.

Usage: validate-custom-resources.py --crd CRD.yaml [--crd ...] FILE.yaml...
Prints one line per custom resource checked ("OK file kind/name" or "ERROR
..."), ignores the documents of other kinds, and exits 1 on any error.
"""

import argparse
import sys

import jsonschema
import yaml


def structural_to_jsonschema(node):
    """A CRD structural schema node as a strict JSON Schema."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: structural_to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = structural_to_jsonschema(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [structural_to_jsonschema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "default", "example", "externalDocs"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"allOf": [out], "anyOf": [{"type": "integer"}, {"type": "string"}]}
    elif (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def load_crds(paths):
    schemas = {}
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
                    schema.setdefault("properties", {})
                    schema["properties"].update(
                        {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string", "minLength": 1}},
                            },
                        }
                    )
                    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
                    api_version = f"{spec['group']}/{version['name']}"
                    schemas[(api_version, spec["names"]["kind"])] = schema
    if not schemas:
        sys.exit("validate-custom-resources: no CustomResourceDefinition in " + ", ".join(paths))
    return schemas


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crd", action="append", required=True, help="a file holding CRDs")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    schemas = load_crds(args.crd)
    failed = False
    for path in args.files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            schema = schemas.get((doc.get("apiVersion"), doc.get("kind")))
            if schema is None:
                continue
            name = f"{doc['kind'].lower()}/{(doc.get('metadata') or {}).get('name')}"
            validator = jsonschema.Draft7Validator(schema)
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            if errors:
                failed = True
                for error in errors:
                    where = ".".join(str(p) for p in error.absolute_path) or "(top)"
                    print(f"ERROR {path} {name}: {where}: {error.message}")
            else:
                print(f"OK {path} {name} against {doc['apiVersion']} {doc['kind']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
