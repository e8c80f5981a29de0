#!/usr/bin/env python3
"""Validate rendered Kubernetes objects: built-in kinds against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields are errors), custom resources against their
vendored CRDs' openAPIV3Schema (jsonschema), and Istio's mesh configuration (the `mesh` key of
the istio ConfigMap) against the field names of istio/api's mesh/v1alpha1/config.proto.

    validate.py KUBERNETES_VERSION FILE...      (prints one line per object; exit 1 on any error)
"""
import glob
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def crd_schemas():
    schemas = {}
    for path in glob.glob(os.path.join(HERE, "crds", "*", "*.yaml")):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec["versions"]:
                    api = f'{spec["group"]}/{v["name"]}'
                    schemas[(api, spec["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return schemas


def strict(schema):
    """Unknown fields are errors, as in the API server's strict field validation."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


def proto_fields():
    """message name -> {field name: type name}, from the vendored mesh config proto."""
    text = open(os.path.join(HERE, "crds", "istio", "mesh-config.proto")).read()
    text = re.sub(r"//[^\n]*", "", text)
    messages, stack = {}, []
    for token in re.finditer(r"(message|enum|oneof)\s+(\w+)\s*\{|\}|((?:repeated\s+)?[\w.]+)\s+(\w+)\s*=\s*\d+", text):
        if token.group(1):
            stack.append((token.group(1), token.group(2)))
            if token.group(1) == "message":
                messages.setdefault(token.group(2), {})
        elif token.group(0) == "}":
            if stack:
                stack.pop()
        else:
            owner = next((n for k, n in reversed(stack) if k == "message"), None)
            if owner and not any(k == "enum" for k, _ in stack):
                messages[owner][token.group(4)] = token.group(3).split()[-1].split(".")[-1]
    return messages


def snake(name):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def check_proto(value, message, messages, path, errors):
    fields = messages.get(message)
    if fields is None or not isinstance(value, dict):
        return
    for key, v in value.items():
        field = snake(key)
        if field not in fields:
            errors.append(f"{path}.{key}: not a field of {message}")
            continue
        items = v if isinstance(v, list) else [v]
        for i, item in enumerate(items):
            check_proto(item, fields[field], messages, f"{path}.{key}[{i}]" if isinstance(v, list) else f"{path}.{key}", errors)


def main():
    version, files = sys.argv[1], sys.argv[2:]
    schemas = crd_schemas()
    messages = proto_fields()
    failed = False
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            api, kind = doc.get("apiVersion"), doc.get("kind")
            name = f'{kind}/{doc.get("metadata", {}).get("name")}'
            errors = []
            if (api, kind) in schemas:
                schema = strict(schemas[(api, kind)])
                # Every object has these, whether its CRD spells them out or not.
                schema.setdefault("properties", {}).update(
                    {k: schema["properties"].get(k, {}) for k in ("apiVersion", "kind", "metadata")}
                )
                validator = jsonschema.Draft7Validator(schema)
                errors = [f'{"/".join(map(str, e.absolute_path))}: {e.message}' for e in validator.iter_errors(doc)]
                source = "its CRD"
            else:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.utils.ValidationError as e:
                    errors = [f'{"/".join(map(str, e.path))}: {e.message}']
                except kubernetes_validate.utils.SchemaNotFoundError as e:
                    errors = [f"no schema: {e}"]
                source = f"Kubernetes {version}"
            if kind == "ConfigMap" and "mesh" in doc.get("data", {}):
                check_proto(yaml.safe_load(doc["data"]["mesh"]), "MeshConfig", messages, "mesh", errors)
                source += " and istio/api's MeshConfig"
            for e in errors:
                print(f"{path}: {name}: {e}")
            failed |= bool(errors)
            if not errors:
                print(f"{path}: {name}: valid ({source})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
